//! What a newcomer hits in the first hour (issue 17), each through the
//! binary as they would type it: the demo never touches a sandbox it did
//! not make, a taken --port is an error, bad numbers get their real reason,
//! COPY reads standard input, row estimates are right after a load, and a
//! bad DATABASE_URL is named.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A user's sandbox, with a table of theirs in it, survives every demo
/// invocation that could have removed it.
#[test]
fn the_demo_never_removes_a_sandbox_it_did_not_make() {
    let tmp = common::temp_dir();
    let mine = tmp.path().join("my-sandbox");
    let started = common::shardready()
        .arg("--dir")
        .arg(&mine)
        .args(["sandbox", "start", "--no-citus"])
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", text(&started));
    let url = String::from_utf8_lossy(&started.stdout).trim().to_string();
    let psql = |sql: &str| {
        let sb = shardready::sandbox::Sandbox::open(&mine).unwrap();
        let out = std::process::Command::new(sb.psql_path())
            .args(["-XAtq", "-d", &url, "-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    psql("CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)");
    let demo = |env_dir: bool, args: &[&str]| {
        let mut cmd = common::shardready();
        if env_dir {
            cmd.env("SHARDREADY_SANDBOX_DIR", &mine);
        } else {
            cmd.arg("--dir").arg(&mine);
        }
        cmd.arg("demo").args(args).output().unwrap()
    };
    // The demo on the user's directory, named with --dir: refused before
    // anything, with the way out.
    let out = demo(false, &["--scale", "0.001", "--workers", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("holds a sandbox the demo did not create")
            && text(&out).contains("nothing was changed"),
        "{}",
        text(&out)
    );
    // Bad values are refused by their reason before any sandbox is looked
    // at, whichever way the directory was given.
    for (env_dir, args, why) in [
        (true, vec!["--scale", "0"], "must be greater than 0"),
        (false, vec!["--scale", "-1"], "must be greater than 0"),
        (true, vec!["--connections", "0"], "must be at least 1"),
        (true, vec!["--settle", "-2s"], "cannot be negative"),
    ] {
        let out = demo(env_dir, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(why), "{args:?}: {}", text(&out));
        assert!(
            !text(&out).contains("unexpected argument"),
            "{}",
            text(&out)
        );
    }
    // --db means nothing to the demo: said, not ignored.
    let out = common::shardready()
        .args(["demo", "--db", &url, "--scale", "0.001"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--db is not used"), "{}", text(&out));
    assert_eq!(
        psql("SELECT x FROM precious"),
        "42",
        "the user's data is there"
    );
    // --db on sandbox commands is refused too; stop twice says so.
    let out = common::shardready()
        .arg("--dir")
        .arg(&mine)
        .args(["sandbox", "status", "--db", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--db means nothing"), "{}", text(&out));
    let stop = || {
        common::shardready()
            .arg("--dir")
            .arg(&mine)
            .args(["sandbox", "stop"])
            .output()
            .unwrap()
    };
    assert!(text(&stop()).contains("sandbox stopped"));
    let again = stop();
    assert!(again.status.success());
    assert!(text(&again).contains("was not running"), "{}", text(&again));
    let destroyed = common::shardready()
        .arg("--dir")
        .arg(&mine)
        .args(["sandbox", "destroy"])
        .output()
        .unwrap();
    assert!(destroyed.status.success(), "{}", text(&destroyed));
}

/// A --port the user chose and another program holds is an error; nothing
/// is left running.
#[test]
fn a_taken_port_is_an_error_not_another_port() {
    let tmp = common::temp_dir();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let out = common::shardready()
        .arg("--dir")
        .arg(tmp.path().join("sb"))
        .args(["sandbox", "start", "--no-citus", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("port {port} is taken")),
        "{}",
        text(&out)
    );
    let sb = shardready::sandbox::Sandbox::open(&tmp.path().join("sb"));
    assert!(
        sb.map(|s| s.running_pid().is_none()).unwrap_or(true),
        "nothing runs"
    );
}

/// Numbers and durations a user gets wrong are refused with the real
/// reason, not clap's "unexpected argument '-1'"; a bad DATABASE_URL is
/// named.
#[test]
fn bad_values_are_refused_with_their_reason() {
    for (args, why) in [
        (
            vec!["apply", "--lock-timeout", "-5ms"],
            "cannot be negative",
        ),
        (vec!["apply", "--lock-timeout", "0s"], "longer than 0"),
        (vec!["apply", "--app-p99-limit", "-3"], "greater than 0"),
        (vec!["workload", "--connections", "0"], "at least 1"),
        (vec!["tailspin", "load", "--scale", "-1"], "greater than 0"),
    ] {
        let out = common::shardready().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(why), "{args:?}: {}", text(&out));
    }
    let out = common::shardready()
        .args(["analyze"])
        .env("DATABASE_URL", "garbage")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("DATABASE_URL"), "{}", text(&out));
}

/// `copy TABLE -` reads standard input, as every COPY user expects; the
/// row estimates are right as soon as a load returns.
#[test]
fn copy_reads_standard_input_and_loads_leave_statistics() {
    let (c, _t) = common::cluster();
    let url = c.url();
    assert!(common::run_on(&url, &["tailspin", "schema"])
        .status
        .success());
    let out = copy_from_stdin(
        &url,
        &["--header"],
        b"store_id,name,category\n1,One,toys\n2,\"Two, Inc\",games\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stores: 2 rows"), "{}", text(&out));
    // A bad row from a stream names it, and nothing is written.
    let out = copy_from_stdin(&url, &[], b"3,Three,toys\nx,Four,toys\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("standard input:2"), "{}", text(&out));
    // apply on a database with nothing to prepare fails, saying why, and
    // leaves nothing of its own behind.
    let empty = c.create_database("empty").unwrap();
    let out = common::run_on(&empty, &["apply"]);
    assert!(!out.status.success(), "{}", text(&out));
    let left = std::process::Command::new(c.sandbox().psql_path())
        .args([
            "-XAt",
            "-d",
            &empty,
            "-c",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'shardready'",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "0",
        "{}",
        text(&out)
    );
    // After `tailspin load`, analyze's row estimates are the rows loaded.
    let db = c.create_database("loaded").unwrap();
    assert!(common::run_on(&db, &["tailspin", "schema"])
        .status
        .success());
    assert!(
        common::run_on(&db, &["tailspin", "load", "--scale", "0.003"])
            .status
            .success()
    );
    let out = common::run_on(&db, &["analyze", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", text(&out));
    });
    let line_items = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"]["name"] == "line_items")
        .unwrap_or_else(|| panic!("{v}"));
    let estimate = line_items["row_estimate"]
        .as_f64()
        .unwrap_or_else(|| panic!("{line_items}"));
    assert!(
        (11_000.0..13_000.0).contains(&estimate),
        "12009 rows loaded, estimated {estimate}"
    );
}

/// Every command a newcomer looks up has a runnable example in --help.
#[test]
fn help_has_an_example_for_every_command() {
    for args in [
        vec!["status"],
        vec!["verify"],
        vec!["pause"],
        vec!["resume"],
        vec!["sandbox", "start"],
        vec!["sandbox", "status"],
        vec!["sandbox", "url"],
        vec!["sandbox", "stop"],
        vec!["sandbox", "destroy"],
        vec!["jobs", "list"],
        vec!["jobs", "schedule"],
        vec!["copy"],
        vec!["demo"],
        vec!["distribute"],
        vec!["scale-out"],
        vec!["queries"],
    ] {
        let out = common::shardready()
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        let help = text(&out);
        assert!(out.status.success(), "{args:?}: {help}");
        assert!(
            help.contains("Example"),
            "{args:?} --help has no example: {help}"
        );
    }
    let schedule = common::shardready()
        .args(["jobs", "schedule", "--help"])
        .output()
        .unwrap();
    assert!(text(&schedule).contains("a job of that name is replaced"));
}

/// `shardready copy stores - ARGS` with `input` on its standard input.
fn copy_from_stdin(url: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = common::shardready()
        .args(["copy", "stores", "-", "--db", url])
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

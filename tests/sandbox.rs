//! The sandbox lifecycle against the real PostgreSQL binaries: the library
//! (`TestCluster`) and the `shardready sandbox` command.

mod common;

use std::path::Path;

use shardready::sandbox::{find_bin_dir, SandboxError, TestCluster};

fn shardready(dir: &Path, args: &[&str]) -> std::process::Output {
    common::shardready()
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("shardready runs")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The postmaster removes its pid file a moment before it exits.
fn gone_soon(pid: i32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn throwaway_cluster_starts_answers_and_is_removed() {
    let cluster = TestCluster::start().expect("test cluster starts");
    let dir = cluster.sandbox().dir.clone();
    let pid = cluster.sandbox().running_pid().expect("running");
    cluster
        .sandbox()
        .psql_command("SELECT 1")
        .expect("psql connects");
    drop(cluster);
    assert!(!dir.exists(), "directory removed");
    assert!(gone_soon(pid), "server process gone");
}

#[test]
fn clusters_run_side_by_side_on_their_own_ports() {
    let clusters: Vec<TestCluster> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| TestCluster::start().expect("starts")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ports: Vec<u16> = clusters.iter().map(|c| c.sandbox().state.port).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 4, "distinct ports");
    for c in &clusters {
        c.sandbox()
            .psql_command("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
            .expect("each cluster is its own");
    }
}

#[test]
fn pg_cron_is_preloaded_and_created_when_installed() {
    let cluster = TestCluster::start().unwrap();
    let sb = cluster.sandbox();
    if !sb.state.pg_cron {
        panic!("postgresql-15-cron is not installed: `make test` installs it (scripts/install-deps.sh)");
    }
    sb.psql_command(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') \
         THEN RAISE EXCEPTION 'pg_cron missing'; END IF; END $$",
    )
    .expect("pg_cron extension exists");
}

#[test]
fn the_sandbox_command_manages_a_lifecycle() {
    // The server runs as `postgres` when we are root: it may enter.
    let tmp = common::temp_dir();
    let dir = tmp.path().join("sb");
    // Nothing there yet.
    let out = shardready(&dir, &["sandbox", "status"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("no sandbox"));
    let out = shardready(&dir, &["sandbox", "url"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shardready sandbox start"));

    let out = shardready(&dir, &["sandbox", "start"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = stdout(&out).trim().to_string();
    assert!(url.starts_with("postgresql://postgres@127.0.0.1:"), "{url}");
    // start is idempotent: same server, same URL.
    let out = shardready(&dir, &["sandbox", "start"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), url);
    assert_eq!(stdout(&shardready(&dir, &["sandbox", "url"])).trim(), url);

    let out = shardready(&dir, &["sandbox", "status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["running"], true);
    let pid = v["pid"].as_i64().unwrap() as i32;
    assert!(alive(pid));

    let out = shardready(&dir, &["sandbox", "psql", "--", "-XAtc", "SELECT 40 + 2"]);
    assert_eq!(stdout(&out).trim(), "42");

    // Stop keeps the data; start brings it back on the same port.
    shardready(
        &dir,
        &["sandbox", "psql", "--", "-Xqc", "CREATE TABLE kept (x int)"],
    );
    assert!(shardready(&dir, &["sandbox", "stop"]).status.success());
    assert!(gone_soon(pid));
    let out = shardready(&dir, &["sandbox", "status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["running"], false);
    let out = shardready(&dir, &["sandbox", "start"]);
    assert_eq!(stdout(&out).trim(), url);
    let out = shardready(
        &dir,
        &[
            "sandbox",
            "psql",
            "--",
            "-XAtc",
            "SELECT count(*) FROM kept",
        ],
    );
    assert_eq!(stdout(&out).trim(), "0");

    let out = shardready(&dir, &["sandbox", "destroy"]);
    assert!(out.status.success());
    assert!(!dir.exists());
}

#[test]
fn missing_binaries_say_what_to_install() {
    let err = find_bin_dir(Some(Path::new("/nonexistent/bin"))).unwrap_err();
    assert!(matches!(err, SandboxError::BinariesNotFound { .. }));
    let msg = err.to_string();
    assert!(msg.contains("apt-get install postgresql-15"), "{msg}");
    assert!(msg.contains("--pg-bin"), "{msg}");

    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let out = common::shardready()
        .args(["sandbox", "start", "--pg-bin", "/nonexistent/bin", "--dir"])
        .arg(tmp.path().join("sb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgresql-15"));
}

#[test]
fn test_clusters_do_not_load_citus_unless_asked() {
    let cluster = TestCluster::start().unwrap();
    let sb = cluster.sandbox();
    assert!(!sb.state.citus);
    // Even where Citus is installed, a plain test cluster has none of it.
    sb.psql_command(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') \
         OR current_setting('shared_preload_libraries') LIKE '%citus%' \
         THEN RAISE EXCEPTION 'citus loaded unasked'; END IF; END $$",
    )
    .expect("no Citus in a plain test cluster");
}

/// `sandbox start --workers N` on a machine with Citus: a local Citus
/// cluster that survives stop/start, shown by `status`; without Citus, a
/// clear refusal.
#[test]
fn sandbox_with_citus_workers_restarts_and_reports_them() {
    let tmp = common::temp_dir();
    let dir = tmp.path().join("sb");
    if !common::citus_here("sandbox_with_citus_workers_restarts_and_reports_them") {
        let out = shardready(&dir, &["sandbox", "start", "--workers", "1"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Citus is not installed"), "{err}");
        return;
    }
    let out = shardready(&dir, &["sandbox", "start", "--workers", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = stdout(&out).trim().to_string();
    let nodes = |url: &str| {
        let out = std::process::Command::new(find_bin_dir(None).unwrap().join("psql"))
            .args(["-XAt", "-d", url, "-c"])
            .arg("SELECT count(*) FROM citus_check_cluster_node_health() WHERE result")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Coordinator and worker reach each other both ways: 4 healthy pairs.
    assert_eq!(nodes(&url), "4");
    assert!(shardready(&dir, &["sandbox", "stop"]).status.success());
    let out = shardready(&dir, &["sandbox", "start"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = stdout(&out).trim().to_string();
    assert_eq!(nodes(&url), "4", "the cluster is whole after a restart");
    let out = shardready(&dir, &["sandbox", "status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["citus"], true);
    assert_eq!(v["workers"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["workers"][0]["running"], true, "{v}");
    let worker_pid_file = dir.join("worker-1/data/postmaster.pid");
    assert!(worker_pid_file.exists());
    assert!(shardready(&dir, &["sandbox", "destroy"]).status.success());
    assert!(!dir.exists());
}

//! The commands a user types, end to end through the binary, against a
//! throwaway cluster: tailspin schema/generate/load and copy.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

fn run(url: &str, args: &[&str]) -> Output {
    common::run_on(url, args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).unwrap().lines().count()
}

#[test]
fn generate_writes_the_seed_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::shardready()
        .args(["tailspin", "generate", "--scale", "0.002", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stores = std::fs::read_to_string(dir.path().join("stores.csv")).unwrap();
    assert!(
        stores.starts_with("store_id,name,category\n"),
        "header in stores.csv only"
    );
    assert_eq!(stores.lines().count(), 1 + 5);
    assert_eq!(lines(&dir.path().join("products.csv")), 20);
    let first = std::fs::read_to_string(dir.path().join("products.csv")).unwrap();
    assert!(first.starts_with("1,"), "no header in products.csv");
    assert_eq!(lines(&dir.path().join("orders_1.csv")), 3999);
    assert!(dir.path().join("line_items_1.csv").exists());
    assert!(text(&out.stderr).contains("5 stores, 20 products, 3999 orders"));
    // Same scale and seed, same bytes.
    let again = tempfile::tempdir().unwrap();
    common::shardready()
        .args(["tailspin", "generate", "--scale", "0.002", "--out"])
        .arg(again.path())
        .output()
        .unwrap();
    for f in [
        "stores.csv",
        "products.csv",
        "orders_1.csv",
        "line_items_1.csv",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join(f)).unwrap(),
            std::fs::read(again.path().join(f)).unwrap(),
            "{f} deterministic"
        );
    }
    // A bad scale says what is allowed.
    let out = common::shardready()
        .args(["tailspin", "generate", "--scale=-1", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("scale"), "{}", text(&out.stderr));
}

#[test]
fn schema_load_and_counts_from_generated_files_zip_and_stream() {
    let (c, _t) = common::cluster();
    let data = tempfile::tempdir().unwrap();
    let out = common::shardready()
        .args(["tailspin", "generate", "--scale", "0.003", "--out"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let zip_path = data.path().join("data.zip");
    {
        let f = std::fs::File::create(&zip_path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let mut names: Vec<_> = std::fs::read_dir(data.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".csv"))
            .collect();
        names.sort();
        for n in names {
            z.start_file(&n, opts).unwrap();
            z.write_all(&std::fs::read(data.path().join(&n)).unwrap())
                .unwrap();
        }
        z.finish().unwrap();
    }
    let want = "SELECT COUNT(*) FROM stores      -- 5\n\
                SELECT COUNT(*) FROM products    -- 30\n\
                SELECT COUNT(*) FROM orders      -- 5999\n\
                SELECT COUNT(*) FROM line_items  -- 12009\n";
    for (i, from) in [
        Some(data.path().display().to_string()),
        Some(zip_path.display().to_string()),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let url = c.create_database(&format!("load{i}")).unwrap();
        let out = run(&url, &["tailspin", "schema"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        // A second schema call refuses to clobber the tables.
        let out = run(&url, &["tailspin", "schema"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("--replace"));
        let mut args = vec!["tailspin", "load", "--scale", "0.003"];
        if let Some(f) = &from {
            args.extend(["--from", f.as_str()]);
        }
        let out = run(&url, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), want, "load from {from:?}");
    }
    // The same data whichever way it came in.
    let digest = |db: &str| {
        let out = Command::new(c.sandbox().psql_path())
            .args(["-XAt", "-d", &c.sandbox().url_for(db), "-c"])
            .arg(
                "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM \
                 (SELECT l::text FROM line_items l UNION ALL SELECT o::text FROM orders o \
                  UNION ALL SELECT p::text FROM products p UNION ALL SELECT s::text FROM stores s) t(t)",
            )
            .output()
            .unwrap();
        text(&out.stdout)
    };
    assert_eq!(digest("load0"), digest("load1"));
    assert_eq!(digest("load0"), digest("load2"));
    // JSON output for automation.
    let url = c.create_database("loadjson").unwrap();
    run(&url, &["tailspin", "schema"]);
    let out = run(
        &url,
        &["tailspin", "load", "--scale", "0.001", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["counts"][0]["table"], "stores");
    assert!(v["counts"][0]["rows"].as_i64().unwrap() > 0, "{v}");
    assert_eq!(v["load"]["fk_revalidated"].as_array().unwrap().len(), 4);
}

#[test]
fn copy_command_loads_and_refuses_bad_input_without_writing() {
    let (c, _t) = common::cluster();
    let url = c.url();
    assert!(run(&url, &["tailspin", "schema"]).status.success());
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores.csv");
    std::fs::write(
        &stores,
        "store_id,name,category\n1,One,toys\n2,\"Two, Inc\",games\n",
    )
    .unwrap();
    let out = run(
        &url,
        &["copy", "stores", stores.to_str().unwrap(), "--header"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("stores: 2 rows"));

    // Missing file, empty glob, unknown table: clear errors, nothing written.
    let missing = dir.path().join("nope.csv");
    let out = run(&url, &["copy", "stores", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nope.csv"),
        "{}",
        text(&out.stderr)
    );
    let glob = format!("{}/orders_*.csv", dir.path().display());
    let out = run(&url, &["copy", "orders", &glob]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("orders_*.csv"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&url, &["copy", "no_such_table", stores.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no_such_table"),
        "{}",
        text(&out.stderr)
    );

    // A malformed row names file, line and column; the table is unchanged.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "3,Three,toys\n4,Four\n").unwrap();
    let out = run(&url, &["copy", "stores", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bad.csv:2"), "{err}");
    let bad = dir.path().join("bad2.csv");
    std::fs::write(&bad, "3,Three,toys\nx,Four,toys\n").unwrap();
    let out = run(&url, &["copy", "stores", bad.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(
        err.contains("bad2.csv:2") && err.contains("store_id"),
        "{err}"
    );
    let n = Command::new(c.sandbox().psql_path())
        .args(["-XAt", "-d", &url, "-c", "SELECT count(*) FROM stores"])
        .output()
        .unwrap();
    assert_eq!(
        text(&n.stdout).trim(),
        "2",
        "table exactly as before the failed loads"
    );
}

#[test]
fn explain_prints_a_rules_page_and_refuses_an_unknown_rule() {
    let out = common::shardready()
        .args(["explain", "fk-without-tenant"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.starts_with("## `fk-without-tenant`"), "{page}");
    assert!(
        page.contains("ERROR:  cannot create foreign key constraint"),
        "{page}"
    );
    assert!(page.contains("NOT VALID"), "{page}");
    assert!(page.contains("src/analyze/rules/foreign_keys.rs"), "{page}");

    let out = common::shardready().args(["explain"]).output().unwrap();
    assert!(out.status.success());
    let list = text(&out.stdout);
    assert_eq!(
        list.lines().count(),
        shardready::analyze::RuleId::ALL.len(),
        "{list}"
    );
    assert!(list.contains("user-trigger"));

    let out = common::shardready()
        .args(["explain", "no-such-rule"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no rule `no-such-rule`") && err.contains("fk-without-tenant"),
        "{err}"
    );
}

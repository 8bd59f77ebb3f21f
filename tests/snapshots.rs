//! Every SQL artefact a DBA reviews, as snapshots (`cargo insta review`
//! after an intended change): `plan --format sql` and `plan` text for the
//! seed's Tailspin schema, a SaaS schema of ours (`fixtures/saas.sql`) and
//! Pagila (`../shared/realworld/pagila`), `analyze` text, and
//! `distribute --dry-run`, `verify` of the unprepared schema. Each schema is loaded into its own throwaway
//! cluster; sizes and row estimates are masked (they vary with the server).

mod common;

use common::{cluster, connect};

/// Runs shardready against `url` and returns its stdout (any exit code:
/// `analyze` exits 2 on blockers).
fn run(url: &str, args: &[String]) -> String {
    let out = common::run_on(url, args);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 2,
        "shardready {args:?} exited {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Masks what varies between servers and runs: sizes and row estimates.
macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({
            filters => vec![
                (r"~\d+ rows, \d+(\.\d+)? [kMG]?B", "~[rows], [size]"),
                (r"\d+(\.\d+)? [kMG]?B of tenant data", "[size] of tenant data"),
                (r"shards of about \d+(\.\d+)? [kMG]?B", "shards of about [size]"),
                // plan's estimate: sizes, and the machine's free space.
                (r" *\+?\d+(\.\d+)? [kMG]B", " [size]"),
            ],
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

/// The five artefacts for a schema: plan SQL, plan text, analyze text,
/// distribute --dry-run, and verify before anything was prepared.
fn snapshot_all(name: &str, url: &str, tenant: &[&'static str]) {
    let with = |args: &[&'static str]| -> Vec<String> {
        args.iter().chain(tenant).map(|s| s.to_string()).collect()
    };
    snapshot!(
        format!("{name}_plan_sql"),
        run(url, &with(&["plan", "--format", "sql"]))
    );
    snapshot!(format!("{name}_plan_text"), run(url, &with(&["plan"])));
    snapshot!(
        format!("{name}_analyze_text"),
        run(url, &with(&["analyze", "--catalog-only"]))
    );
    snapshot!(
        format!("{name}_distribute_dry_run"),
        run(url, &with(&["distribute", "--dry-run"]))
    );
    snapshot!(
        format!("{name}_verify_unprepared"),
        run(url, &with(&["verify"]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailspin_artefacts() {
    let (c, t) = cluster();
    let client = connect(&t).await;
    shardready::ingest::create_tailspin_schema(&client, false)
        .await
        .unwrap();
    snapshot_all("tailspin", &c.url(), &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saas_artefacts() {
    let (c, t) = cluster();
    let client = connect(&t).await;
    shardready::db::exec_script(&client, include_str!("fixtures/saas.sql"))
        .await
        .unwrap();
    snapshot_all("saas", &c.url(), &["--tenant-column", "account_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagila_artefacts() {
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/realworld/pagila/pagila-schema.sql");
    let Ok(sql) = std::fs::read_to_string(&schema) else {
        common::skip_or_fail(
            "pagila_artefacts",
            &format!(
                "{} is not there (the shared/ folder beside the checkout)",
                schema.display()
            ),
        );
        return;
    };
    let (c, t) = cluster();
    let client = connect(&t).await;
    shardready::db::exec_script(&client, &sql).await.unwrap();
    snapshot_all("pagila", &c.url(), &["--tenant-column", "store_id"]);
}

//! `plan`'s estimate before anything runs: per step the time, WAL and
//! disk it will take, the local data directory's free space, and a warning
//! when the backfill writes several times `max_wal_size` — which apply then
//! shows happening (checkpoints requested by WAL volume, in its signals and
//! its report's chart).

mod common;

use common::run_on;
use shardready::conn::Target;
use shardready::sandbox::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_estimates_each_step_and_warns_of_a_small_max_wal_size() {
    let c = TestCluster::start_with(vec![
        ("max_wal_size".into(), "32MB".into()),
        ("min_wal_size".into(), "32MB".into()),
    ])
    .expect("a cluster starts");
    let t = Target::parse(&c.url()).unwrap();
    let mut client = common::connect(&t).await;
    shardready::ingest::create_tailspin_schema(&client, false)
        .await
        .unwrap();
    shardready::ingest::load_tailspin(&mut client, None, 0.1, 42, false)
        .await
        .unwrap();
    let url = c.url();

    let out = run_on(&url, &["plan"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("\nestimate ("), "{text}");
    let backfill = text
        .lines()
        .find(|l| l.contains("backfill:line_items"))
        .expect("the backfill's estimate");
    assert!(backfill.contains("short batches"), "{backfill}");
    assert!(text.contains("free in the data directory"), "{text}");
    assert!(
        text.contains("warning: WAL: one step writes about")
            && text.contains("max_wal_size (34 MB)"),
        "{text}"
    );

    // JSON: the plan as before, the estimate beside it.
    let out = run_on(&url, &["plan", "--format", "json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["steps"].as_array().is_some_and(|s| !s.is_empty()));
    let e = &v["estimate"];
    assert_eq!(e["schema"], "shardready.estimate/v1");
    let step = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "backfill:line_items")
        .unwrap();
    let (rows, secs) = (400_000.0, step["seconds"].as_f64().unwrap());
    assert!(
        (rows / 400_000.0..rows / 50_000.0).contains(&secs),
        "400k rows at the reference rate: {secs} s"
    );
    let wal = step["wal_bytes"].as_i64().unwrap();
    assert!(wal > 2 * 33_554_432, "{wal}");
    assert!(e["free_bytes"].as_i64().unwrap() > 0);
    assert!(
        e["disk_bytes"].as_i64().unwrap() >= step["disk_bytes"].as_i64().unwrap(),
        "the peak holds the backfill's growth"
    );
    assert!(
        out.stderr.starts_with(b"warning: WAL:"),
        "warnings to stderr"
    );

    // What the warning predicted: apply's backfill makes WAL request
    // checkpoints; its signals count them, the report charts them.
    let dir = common::temp_dir();
    let report = dir.path().join("report");
    let out = run_on(
        &url,
        &[
            "apply",
            "--report",
            report.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seconds = r["signals"]["seconds"].as_array().unwrap();
    let requested = seconds
        .iter()
        .filter_map(|s| s["checkpoints_req"].as_i64())
        .max()
        .unwrap_or(0);
    assert!(requested > 0, "checkpoints were requested by WAL volume");
    let svg = std::fs::read_to_string(report.join("signals.svg")).unwrap();
    assert!(svg.contains("checkpoint requested by WAL volume"));
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("## The database's signals"), "{md}");
    assert!(md.contains("checkpoints requested by WAL volume"), "{md}");
}

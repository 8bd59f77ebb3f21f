//! Reliability against real clusters: apply killed with SIGKILL at many
//! points then rerun; the server restarted (fast and immediate) under apply
//! and under the workload.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{checksum, checksum_upto, connect, maxima, scalar_i64};
use rand::{Rng, SeedableRng};
use shardready::apply::{self, ApplyOptions};
use shardready::conn::Target;
use shardready::workload::{Mode, StoreIdMode, Workload, WorkloadConfig};
use tokio_postgres::Client;

/// Everything a finished preparation must show (`upto`: compare only the
/// rows that existed then).
async fn assert_clean(c: &Client, t: &Target, before: &str, upto: Option<(i64, i64)>, label: &str) {
    let v = shardready::verify::verify(c, &Default::default())
        .await
        .unwrap();
    assert!(v.ok, "{label}: verify failed: {:#?}", v.checks);
    let now = match upto {
        Some(m) => checksum_upto(c, m).await,
        None => checksum(c).await,
    };
    assert_eq!(now, before, "{label}: row contents changed");
    let invalid = scalar_i64(c, "SELECT count(*) FROM pg_index WHERE NOT indisvalid").await;
    assert_eq!(invalid, 0, "{label}: invalid indexes left");
    common::assert_no_helpers_left(c).await;
    // No trigger at all on the seed's tables, and autovacuum reset as it was
    // (not merely back on).
    let left = scalar_i64(
        c,
        "SELECT (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                  WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace) \
              + (SELECT count(*) FROM pg_class WHERE reloptions::text LIKE '%autovacuum_enabled%')",
    )
    .await;
    assert_eq!(left, 0, "{label}: helper objects left behind");
    let st = apply::status(t).await.unwrap();
    assert!(st.finished, "{label}: plan not finished");
}

fn apply_child(url: &str) -> std::process::Child {
    common::shardready()
        .args([
            "apply",
            "--db",
            url,
            "--trigger-window",
            "200ms",
            "--max-rate",
            "60000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn running_step(c: &Client) -> Option<String> {
    c.query_opt(
        "SELECT id FROM shardready.step WHERE status = 'running' LIMIT 1",
        &[],
    )
    .await
    .ok()
    .flatten()
    .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_thirty_plus_points_then_rerun_always_finishes() {
    // One loaded source database, copied for every trial (CREATE DATABASE
    // ... TEMPLATE: a file copy, no reload).
    let cluster = common::tailspin_template(0.01).await;
    // Kill points: every kind of step (after it is seen running, plus a
    // random few ms) and random instants over the whole run.
    let targets = [
        "add-column",
        "sync-trigger",
        "hold-autovacuum",
        "backfill",
        "backfill",
        "backfill",
        "not-null",
        "not-null",
        "unique-index",
        "unique-index",
        "unique-index",
        "foreign-key",
        "foreign-key",
        "foreign-key",
        "swap-key",
        "swap-key",
        "drop-trigger",
        "vacuum",
        "analyze",
    ];
    let mut rng = rand_pcg::Pcg64::seed_from_u64(2026);
    let mut outcomes: Vec<String> = Vec::new();
    let trials = targets.len() + 15;
    for trial in 0..trials {
        let db = format!("trial{trial}");
        let url = common::copy_of(&cluster, &db);
        let tt = Target::parse(&url).unwrap();
        let c = connect(&tt).await;
        let before = checksum(&c).await;
        let mut child = apply_child(&url);
        let t0 = Instant::now();
        let killed_in = if trial < targets.len() {
            let want = targets[trial];
            let mut seen = None;
            while t0.elapsed() < Duration::from_secs(30) {
                if let Some(s) = running_step(&c).await {
                    if s.starts_with(want) {
                        seen = Some(s);
                        break;
                    }
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..40))).await;
            seen
        } else {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..2500))).await;
            None
        };
        let _ = child.kill();
        child.wait().unwrap();
        let at = running_step(&c)
            .await
            .or(killed_in)
            .unwrap_or_else(|| "between steps / finished".into());
        // Rerun at once, to the end: the killed run's session may still
        // hold the lock for a moment, and the rerun waits for it instead of
        // reporting "another apply is running".
        let out = common::shardready()
            .args(["apply", "--db", &url, "--trigger-window", "200ms"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "trial {trial} (killed in {at}): rerun failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(
            &c,
            &tt,
            &before,
            None,
            &format!("trial {trial} (killed in {at})"),
        )
        .await;
        outcomes.push(format!(
            "trial {trial:>2}: killed during {at:<48} rerun ok, verified"
        ));
        drop(c);
        cluster
            .sandbox()
            .psql_command(&format!("DROP DATABASE {db}"))
            .unwrap();
    }
    let report = format!(
        "crash-safety: {} kill -9 trials, {} recovered and verified\n{}\n",
        outcomes.len(),
        outcomes.len(),
        outcomes.join("\n")
    );
    println!("{report}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("crash-trials.txt"),
        &report,
    );
    assert!(outcomes.len() >= 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarts_during_backfill_and_index_build() {
    let (cluster, t) = common::tailspin(0.02).await;
    let c = connect(&t).await;
    let max = maxima(&c).await;
    let before = checksum_upto(&c, max).await;
    drop(c);
    let w = Workload::start(
        &t,
        WorkloadConfig {
            rate: 20.0,
            duration: None,
            connections: 2,
            mode: Mode::Client,
            store_id: StoreIdMode::Auto,
            batch: 3,
            seed: 4,
            live: false,
        },
    )
    .await
    .unwrap();
    let opts = ApplyOptions {
        progress: false,
        trigger_window: Duration::from_millis(300),
        await_app: Duration::from_secs(30),
        pace: shardready::apply::backfill::Pace {
            max_rate: Some(30000.0),
            ..Default::default()
        },
        ..Default::default()
    };
    let tt = t.clone();
    let handle = tokio::spawn(async move { apply::apply(&tt, &opts, None).await });
    // A fast shutdown in the middle of the backfill.
    let watcher = connect(&t).await;
    let start = Instant::now();
    while running_step(&watcher).await.as_deref() != Some("backfill:line_items") {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(watcher);
    cluster.sandbox().restart("fast").unwrap();
    // An immediate shutdown (a crash) in the middle of an index build.
    let watcher = connect(&t).await;
    let start = Instant::now();
    loop {
        if let Some(s) = running_step(&watcher).await {
            if s.starts_with("unique-index:") {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never reached an index build"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(watcher);
    cluster.sandbox().restart("immediate").unwrap();
    let report = handle
        .await
        .unwrap()
        .expect("apply reconnects and finishes");
    assert!(report.finished);
    assert!(
        report.reconnects >= 2,
        "reconnected after both restarts: {}",
        report.reconnects
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = w.stop().await;
    // The application saw the restarts as errors and carried on.
    assert!(r.summary.errors >= 1, "{:?}", r.summary.errors_by_sqlstate);
    let last = r
        .timeline
        .iter()
        .rev()
        .take(2)
        .map(|x| x.transactions)
        .sum::<u64>();
    assert!(last > 0, "the workload recovered after the restarts");
    let c = connect(&t).await;
    assert_clean(&c, &t, &before, Some(max), "after restarts").await;
}

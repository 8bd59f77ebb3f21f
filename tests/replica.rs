//! A real streaming replica (pg_basebackup, replaying one second behind)
//! while apply backfills: after each batch the backfill waits while the
//! standby is further behind than `--max-replica-lag`, so the lag stays
//! within the budget plus about one batch, and the backfill still ends.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{connect, run_on, tailspin};
use shardready::apply::control::ReplicaBudget;

/// Waits until the primary shows a standby streaming (30 s at most).
async fn streaming(client: &tokio_postgres::Client) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while shardready::apply::control::replica_lag(client)
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_waits_for_a_standby_beyond_its_lag_budget() {
    let (c, t) = tailspin(0.05).await;
    let _standby = c
        .start_replica(vec![
            ("recovery_min_apply_delay".into(), "1s".into()),
            ("wal_receiver_status_interval".into(), "1s".into()),
        ])
        .expect("a streaming replica starts");
    let client = connect(&t).await;
    // The primary sees it streaming.
    streaming(&client).await;
    // What the standby lags while the backfill of line_items runs.
    let budget: i64 = 4_000_000;
    let worst = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (worst, done, c) = (worst.clone(), done.clone(), connect(&t).await);
        tokio::spawn(async move {
            let mut samples = 0;
            while !done.load(Ordering::SeqCst) {
                let running = c
                    .query_opt(
                        "SELECT 1 FROM shardready.step WHERE id LIKE 'backfill:%line_items' AND status = 'running'",
                        &[],
                    )
                    .await
                    .ok()
                    .flatten()
                    .is_some();
                if running {
                    if let Some(lag) = shardready::apply::control::replica_lag(&c).await.unwrap() {
                        worst.fetch_max(lag.bytes, Ordering::SeqCst);
                        samples += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        })
    };
    let mut opts = common::quiet();
    opts.pace.max_replica_lag = Some(ReplicaBudget::Bytes(budget));
    opts.pace.batch_target = Duration::from_millis(20);
    let report = shardready::apply::apply(&t, &opts, None).await.unwrap();
    done.store(true, Ordering::SeqCst);
    let samples = sampler.await.unwrap();
    let b = report
        .backfills
        .iter()
        .find(|b| b.table.ends_with("line_items"))
        .unwrap();
    assert!(samples > 5, "the backfill was watched ({samples} samples)");
    assert!(
        b.replica_wait_seconds > 0.5,
        "the backfill waited for the standby: {} s",
        b.replica_wait_seconds
    );
    // Within the budget plus what one batch (20 ms of updates) and the
    // standby's once-a-second reports add.
    let worst = worst.load(Ordering::SeqCst);
    eprintln!(
        "standby at most {worst} bytes behind (budget {budget}); the backfill waited {:.1} s of {:.1} s",
        b.replica_wait_seconds, b.seconds
    );
    assert!(
        worst <= budget + 4_000_000,
        "the standby fell {worst} bytes behind (budget {budget})"
    );
    // The signals recorded the standby's write, flush and replay lag.
    let seconds = &report.signals.as_ref().expect("signals").seconds;
    let seen: Vec<_> = seconds.iter().flat_map(|s| s.standbys.iter()).collect();
    assert!(!seen.is_empty(), "the standby is in the signals");
    assert!(seen.iter().any(|s| s.replay_mb > 0.0), "{seen:?}");
    // (each position is read against the current WAL position of its own call)
    assert!(
        seen.iter().all(|s| s.write_mb <= s.replay_mb + 1.0),
        "{seen:?}"
    );
    let verify = run_on(&c.url(), &["verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

/// A role without pg_monitor does not see the standbys' positions in
/// pg_stat_replication, so nothing would hold its backfill back; given the
/// standby with `--replica`, apply reads the standby's own replay position
/// and waits for it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_given_by_url_is_watched_where_the_primary_hides_it() {
    let (c, t) = tailspin(0.05).await;
    let admin = connect(&t).await;
    admin
        .batch_execute(
            "CREATE ROLE owner LOGIN; GRANT CREATE ON DATABASE postgres TO owner; \
             GRANT CREATE, USAGE ON SCHEMA public TO owner; \
             ALTER TABLE stores OWNER TO owner; ALTER TABLE products OWNER TO owner; \
             ALTER TABLE orders OWNER TO owner; ALTER TABLE line_items OWNER TO owner;",
        )
        .await
        .unwrap();
    let standby = c
        .start_replica(vec![
            ("recovery_min_apply_delay".into(), "1s".into()),
            ("wal_receiver_status_interval".into(), "1s".into()),
        ])
        .expect("a streaming replica starts");
    let mut cfg = t.config.clone();
    cfg.user("owner");
    let owner = shardready::conn::Target {
        config: cfg,
        ..t.clone()
    };
    // The owner's view of the standby: no position.
    streaming(&admin).await;
    let as_owner = connect(&owner).await;
    assert!(
        shardready::apply::control::replica_lag(&as_owner)
            .await
            .unwrap()
            .is_none(),
        "the owner cannot see the standby's position"
    );
    // A wrong URL is refused before anything changes.
    let mut opts = common::quiet();
    opts.standbys = vec![t.clone()];
    let err = shardready::apply::apply(&owner, &opts, None)
        .await
        .expect_err("the primary is not a standby");
    assert!(err.to_string().contains("it is not a standby"), "{err}");
    let added = common::scalar_i64(
        &admin,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'line_items'::regclass AND attname = 'store_id'",
    )
    .await;
    assert_eq!(added, 0, "nothing changed");
    // With the standby given: the backfill waits for it.
    let standby_url = shardready::conn::Target::parse(&standby.url()).unwrap();
    opts.standbys = vec![standby_url];
    opts.pace.max_replica_lag = Some(ReplicaBudget::Bytes(4_000_000));
    opts.pace.batch_target = Duration::from_millis(20);
    let report = shardready::apply::apply(&owner, &opts, None).await.unwrap();
    let b = report
        .backfills
        .iter()
        .find(|b| b.table.ends_with("line_items"))
        .unwrap();
    assert!(
        b.replica_wait_seconds > 0.5,
        "waited {:.1} s for the standby it was given",
        b.replica_wait_seconds
    );
    let verify = run_on(&c.url(), &["verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

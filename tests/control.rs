//! `shardready pause` / `resume` from a second process while apply's
//! backfill runs: the cursor stops moving, `status` says paused, nothing
//! holds a lock meanwhile, and `resume --max-rate` lets it finish.

mod common;

use std::time::Duration;

use common::{connect, run_on, scalar_i64, tailspin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_from_another_process_during_the_backfill() {
    let (c, t) = tailspin(0.05).await;
    let url = c.url();
    let client = connect(&t).await;
    // Nothing to pause before a preparation exists: said, not ignored.
    let early = run_on(&url, &["pause"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&early.stderr).contains("shardready apply"));
    // A slow backfill (2000 rows/s over 200k line items), in the background.
    let apply = {
        let t = t.clone();
        tokio::spawn(async move {
            let mut opts = common::quiet();
            opts.pace.max_rate = Some(2000.0);
            // Short batches: a batch and its rate pause take well under
            // the second after which the backfill looks at the control row.
            opts.pace.batch_target = Duration::from_millis(10);
            shardready::apply::apply(&t, &opts, None).await
        })
    };
    let cursor = || async {
        client
            .query_opt(
                "SELECT cursor FROM shardready.backfill WHERE step_id LIKE 'backfill:%line_items'",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get::<_, i64>(0))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while cursor().await.unwrap_or(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backfill never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paused = run_on(&url, &["pause"]);
    assert!(paused.status.success(), "{paused:?}");
    assert!(String::from_utf8_lossy(&paused.stdout).contains("paused"));
    // Within a second and a batch it stops; then it stays where it is.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at = cursor().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cursor().await.unwrap(), at, "the cursor moved while paused");
    let status = run_on(&url, &["status"]);
    let said = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        said.contains("PAUSED by `shardready pause` since"),
        "{said}"
    );
    // No lock on line_items is held while paused (besides ours, none).
    let locks = scalar_i64(
        &client,
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
         WHERE l.relation = 'line_items'::regclass AND a.application_name = 'shardready' \
         AND a.pid <> pg_backend_pid()",
    )
    .await;
    assert_eq!(locks, 0, "a paused apply holds no lock on the table");
    // Resume with a higher cap: it goes on and finishes.
    let resumed = run_on(&url, &["resume", "--max-rate", "1000000"]);
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("at most 1000000 rows/s"));
    let report = tokio::time::timeout(Duration::from_secs(120), apply)
        .await
        .expect("apply finishes after resume")
        .unwrap()
        .expect("apply succeeds");
    let b = report
        .backfills
        .iter()
        .find(|b| b.table.ends_with("line_items"))
        .unwrap();
    assert!(b.paused_seconds >= 2.0, "paused {} s", b.paused_seconds);
    assert!(cursor().await.unwrap() > at);
    let verify = run_on(&url, &["verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

/// The pg_cron job's procedure (`--backfill-via pg-cron`) obeys `shardready
/// pause` between its batches, and waits for standbys beyond the budget,
/// called here directly (pg_cron runs it once a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pg_cron_procedure_stops_while_paused() {
    use shardready::plan::{StandbyBudget, Step, StepKind};
    let (_c, t) = tailspin(0.02).await;
    let client = connect(&t).await;
    // The plan stored and its first steps run (the column and the trigger).
    let mut opts = common::quiet();
    opts.max_steps = Some(3);
    opts.signals = false;
    shardready::apply::apply(&t, &opts, None).await.unwrap();
    let (plan, _) = shardready::apply::state::load_plan(&client)
        .await
        .unwrap()
        .unwrap();
    let step = plan
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Backfill(b) if b.table.name == "line_items" => Some(b.clone()),
            _ => None,
        })
        .unwrap();
    let range = client.query_one(&step.key_range_sql(), &[]).await.unwrap();
    let (lo, hi): (i64, i64) = (range.get(0), range.get(1));
    client
        .execute(
            "INSERT INTO shardready.backfill (step_id, cursor, max_key, min_key) VALUES ($1, $2, $3, $2)",
            &[&step.id(), &lo, &hi],
        )
        .await
        .unwrap();
    let cursor = || async {
        client
            .query_one(
                "SELECT cursor FROM shardready.backfill WHERE step_id = $1",
                &[&step.id()],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let procedure = |budget| step.pg_cron_procedure(100, 50, 200, 200_000, budget, None);
    // Paused: a run returns at once and fills nothing.
    let p = procedure(StandbyBudget::Off);
    client.batch_execute(&p.create).await.unwrap();
    shardready::apply::control::pause(&client).await.unwrap();
    let started = std::time::Instant::now();
    client
        .batch_execute(&p.call.replace("'50 seconds'", "'5 seconds'"))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it returned at once"
    );
    assert_eq!(cursor().await, lo, "nothing filled while paused");
    // Held by the governor (apply sets the hold while the application is
    // over its budget): a run waits and fills nothing until it expires.
    shardready::apply::control::resume(&client, None, None)
        .await
        .unwrap();
    shardready::apply::control::hold(&client, Duration::from_secs(5))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    client
        .batch_execute(&p.call.replace("'50 seconds'", "'2 seconds'"))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited");
    assert_eq!(cursor().await, lo, "nothing filled while held");
    // Resumed with a rate cap (`resume --max-rate`): 300 rows a second, so
    // a 2 s run starting at batches of 200 fills about 600 rows (one
    // batch past it at most), where uncapped it fills them by the
    // thousand.
    shardready::apply::control::hold(&client, Duration::ZERO)
        .await
        .unwrap();
    shardready::apply::control::resume(&client, Some(300.0), None)
        .await
        .unwrap();
    client
        .batch_execute(
            &p.call
                .replace("(1000,", "(200,")
                .replace("'50 seconds'", "'2 seconds'"),
        )
        .await
        .unwrap();
    let capped = cursor().await - lo;
    assert!(
        capped > 0 && capped <= 1000,
        "{capped} keys in 2 s at 300 rows/s"
    );
    shardready::apply::control::resume(&client, Some(1e9), None)
        .await
        .unwrap();
    // A standby budget no standby exceeds (there are none) holds nothing.
    let p = procedure(StandbyBudget::Bytes(1));
    client.batch_execute(&p.create).await.unwrap();
    client
        .batch_execute(&p.call.replace("'50 seconds'", "'30 seconds'"))
        .await
        .unwrap();
    assert_eq!(cursor().await, hi, "the whole range filled");
    client.batch_execute(&p.drop).await.unwrap();
}

/// `resume --app-p99-limit` from another process gives the running
/// backfill's governor a new latency budget: apply says so, holds the
/// backfill while the application is over a budget it cannot meet, and
/// finishes once the budget is loose. (How the governor holds the backfill
/// within a budget is tested in `apply::governor`'s unit tests, look by
/// look.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_changed_while_apply_runs_is_taken_by_the_backfill() {
    budget_changed_while_apply_runs(&[]).await;
}

/// The same for the backfill pg_cron runs in the server: apply governs the
/// job (its hold in `shardready.control`) as it governs its own batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_changed_while_apply_runs_is_taken_by_the_pg_cron_backfill() {
    budget_changed_while_apply_runs(&["--backfill-via", "pg-cron"]).await;
}

async fn budget_changed_while_apply_runs(via: &[&str]) {
    let (c, t) = tailspin(0.05).await;
    let url = c.url();
    let client = connect(&t).await;
    // A slow backfill (2000 rows/s) beside the application's traffic.
    let mut args = vec![
        "apply",
        "--workload",
        "1200/min",
        "--max-rate",
        "2000",
        "--batch-target",
        "10ms",
        "--format",
        "json",
    ];
    args.extend_from_slice(via);
    let apply = common::spawn_on(&url, &args);
    let started = || async {
        client
            .query_one(
                "SELECT count(*) FROM shardready.backfill WHERE cursor > min_key",
                &[],
            )
            .await
            .ok()
            .is_some_and(|r| r.get::<_, i64>(0) > 0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !started().await {
        assert!(
            std::time::Instant::now() < deadline && apply.running(),
            "the backfill never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A budget no transaction meets: the backfill is held.
    let tight = run_on(&url, &["resume", "--app-p99-limit", "0.01"]);
    assert!(tight.status.success(), "{tight:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let resumed = run_on(
        &url,
        &["resume", "--app-p99-limit", "1000", "--max-rate", "1000000"],
    );
    assert!(resumed.status.success(), "{resumed:?}");
    let said = String::from_utf8_lossy(&resumed.stdout).to_string();
    assert!(said.contains("latency budget is 1000.0 ms"), "{said}");
    // A factor needs apply's baseline: refused with what to give instead.
    let factor = run_on(&url, &["resume", "--app-p99-limit", "2x"]);
    assert!(!factor.status.success(), "{factor:?}");
    assert!(String::from_utf8_lossy(&factor.stderr).contains("give milliseconds"));
    let out = apply.finished(Duration::from_secs(240));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the application's budget is now 1000.0 ms"),
        "{err}"
    );
    assert!(
        err.contains("the application's budget is now 0.0 ms"),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["finished"], true, "{report}");
    let held = &report["backfills"];
    let throttled: f64 = held
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["throttled_seconds"].as_f64().unwrap())
        .sum();
    assert!(throttled >= 1.0, "held while over the budget: {held}");
    let verify = run_on(&url, &["verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

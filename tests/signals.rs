//! The database's own signals pace the backfill when shardready cannot see
//! the application from inside (no `--workload`): an external client that
//! keeps locking rows the backfill is about to fill waits on the batch's
//! row locks; the sampler sees it in pg_stat_activity, the backfill holds
//! back and says why, `status` shows the signals while apply runs, and the
//! report carries them with pg_stat_statements' view of the application.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{connect, run_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_waiting_on_the_backfill_holds_it_back() {
    let (c, t, _client) = common::tailspin_with_statements(0.05).await;
    // The application: three connections of its own (not shardready's
    // workload). Each first locks a line item just past the backfill's
    // saved cursor (`FOR SHARE`, as an application does before it changes
    // what hangs on a row): the running batch holds that row's lock for
    // its whole length, so the application waits on it. The lock changes
    // nothing, so the row is still the backfill's to fill when the next
    // batch comes (an UPDATE there would fill it through the sync trigger
    // first, and the batch would pass it by). Then each writes a line
    // item in a short transaction. Every statement must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let (writes, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut app = Vec::new();
    for i in 0..3 {
        let app_target = t.with_application_name("the-application");
        let (stop, writes, errors) = (stop.clone(), writes.clone(), errors.clone());
        app.push(tokio::spawn(async move {
            let c = app_target.connect().await.unwrap();
            let mut n = 0_i64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let locked = c
                    .query_opt(
                        "SELECT quantity FROM line_items WHERE line_item_id = \
                           coalesce((SELECT cursor FROM shardready.backfill \
                                     WHERE step_id LIKE 'backfill:%line_items'), 0) + 1 + $1 \
                         FOR SHARE",
                        &[&((n * 37 + i * 101) % 400)],
                    )
                    .await
                    .map(|_| ());
                let written = c
                    .execute(
                        "UPDATE line_items SET quantity = quantity WHERE line_item_id = $1",
                        &[&(n % 1000 + 1)],
                    )
                    .await
                    .map(|_| ());
                if written.is_ok() {
                    writes.fetch_add(1, Ordering::SeqCst);
                }
                for r in [locked, written] {
                    match r {
                        Ok(()) => {}
                        // Before apply creates its state the table is missing.
                        Err(e)
                            if e.code()
                                == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {}
                        Err(e) => {
                            eprintln!("application statement failed: {e}");
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // `status` from another process while the backfill runs.
    let url = c.url();
    let watcher = {
        let client = connect(&t).await;
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while std::time::Instant::now() < deadline {
                let running = client
                    .query_opt(
                        "SELECT 1 FROM shardready.step WHERE id LIKE 'backfill:%line_items' AND status = 'running'",
                        &[],
                    )
                    .await
                    .ok()
                    .flatten()
                    .is_some();
                if running {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    let out = run_on(&url, &["status"]);
                    return String::from_utf8_lossy(&out.stdout).to_string();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            String::new()
        })
    };
    let mut opts = common::quiet();
    // A slow enough backfill that the application meets it many times, in
    // batches that each hold their locks over two or more of the
    // sampler's ticks (100 ms).
    opts.pace.max_rate = Some(20_000.0);
    opts.pace.batch_target = Duration::from_millis(250);
    let report = shardready::apply::apply(&t, &opts, None).await.unwrap();
    stop.store(true, Ordering::SeqCst);
    for a in app {
        a.await.unwrap();
    }
    let status = watcher.await.unwrap();
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "every application statement succeeds"
    );
    assert!(writes.load(Ordering::SeqCst) > 100);

    // The sampler saw the application wait on the backfill's locks, and the
    // backfill held back for it.
    let sig = report.signals.as_ref().expect("signals were sampled");
    let base = sig.baseline.as_ref().expect("a baseline before any change");
    assert!(base.samples >= 10, "{base:?}");
    assert!(base.canary_p99_ms > 0.0 && base.canary_limit_ms > base.canary_p99_ms);
    let summary = sig.summary();
    assert!(
        summary.waits_on_us_ms > opts.pace.app_p99_limit_ms,
        "the application's waits on the backfill were seen: {summary:?}"
    );
    let b = report
        .backfills
        .iter()
        .find(|b| b.table.ends_with("line_items"))
        .unwrap();
    let held = b.held_back.get("lock waits").copied().unwrap_or(0.0);
    assert!(held > 0.0, "held back by the lock waits: {:?}", b.held_back);
    assert!(
        sig.seconds
            .iter()
            .any(|s| s.holding.as_deref().is_some_and(|h| h.contains("waited"))),
        "the series says what held the backfill back"
    );
    // pg_stat_statements: the application's statements, not shardready's.
    assert!(
        sig.seconds.iter().any(|s| s.stmt_mean_ms.is_some()),
        "the application's statements were timed"
    );
    assert!(summary.wal_peak_mb_s.is_some_and(|w| w > 0.0));
    // `status` during the backfill showed the signals and the governor.
    assert!(status.contains("signals "), "{status}");
    assert!(status.contains("canary commit"), "{status}");
    assert!(status.contains("governor: "), "{status}");
    // The backfill step's budget: the signals' samples during it, some
    // over budget (the lock waits), and the seconds it was held back.
    let step = report
        .steps
        .iter()
        .find(|s| s.id.contains("backfill") && s.id.contains("line_items"))
        .expect("the backfill's step");
    let used = step
        .budget
        .iter()
        .find(|u| u.source == shardready::apply::budget::Source::DatabaseSignals)
        .expect("the signals' samples during the backfill");
    assert!(used.samples >= 10 && used.over > 0, "{used:?}");
    assert!((step.held_s - b.throttled_seconds).abs() < 1e-9, "{step:?}");
    // The summary names them too, with what the headroom cost.
    let text = shardready::report::text::apply_summary(&report);
    assert!(text.contains("database signals over"), "{text}");
    assert!(text.contains("by lock waits"), "{text}");
    assert!(
        text.contains("the application's headroom cost")
            && text.contains("the step most over budget"),
        "{text}"
    );
    let md = shardready::report::apply_markdown(&report, None);
    assert!(md.contains("| over budget | waited / held s |"), "{md}");
    let verify = run_on(&c.url(), &["verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_signals_nothing_is_sampled() {
    let (_c, t) = common::tailspin(0.01).await;
    let mut opts = common::quiet();
    opts.signals = false;
    let report = shardready::apply::apply(&t, &opts, None).await.unwrap();
    assert!(report.signals.is_none());
    let client = connect(&t).await;
    let written = common::scalar_i64(&client, "SELECT count(*) FROM shardready.canary").await;
    assert_eq!(written, 0, "no canary was written");
}

/// The application: four connections looking orders up by id.
fn four_lookers(t: &shardready::conn::Target, max_order: i64) -> Vec<common::Sending> {
    (0..4)
        .map(|_| {
            common::send_repeatedly(
                t,
                "SELECT status FROM orders WHERE order_id = $1",
                max_order,
                Duration::from_millis(5),
            )
        })
        .collect()
}

/// The canary's table, as apply creates it with its state.
async fn canary_table(client: &tokio_postgres::Client) {
    client
        .batch_execute("CREATE SCHEMA shardready")
        .await
        .unwrap();
    client
        .batch_execute(shardready::apply::signals::CANARY_SQL)
        .await
        .unwrap();
}

/// Something else than shardready makes the application queue: a session
/// of its own takes the orders' lock (until COMMIT); when it took it.
async fn lock_orders(t: &shardready::conn::Target) -> (tokio_postgres::Client, Instant) {
    let blocker = t
        .with_application_name("a-long-migration")
        .connect()
        .await
        .unwrap();
    let from = Instant::now();
    blocker
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    (blocker, from)
}

/// An application with no headroom left shows it in its rate and its
/// queue, not in the canary (one tiny commit does not wait behind it): when
/// its backends pile up and the statements it gets through per second fall
/// well below their baseline, the signals call the seconds slow and say
/// why; the report says how busy the application and the machine were
/// before the first change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_queues_is_seen() {
    use shardready::apply::Pressure;
    let (_c, t, client) = common::tailspin_with_statements(0.01).await;
    let max_order = common::scalar_i64(&client, "SELECT max(order_id) FROM orders").await;
    let app = four_lookers(&t, max_order);
    common::wait_until(
        &client,
        "SELECT coalesce(sum(calls), 0) >= 200 FROM pg_stat_statements \
         WHERE query = 'SELECT status FROM orders WHERE order_id = $1'",
        Duration::from_secs(30),
        "pg_stat_statements counts the application's lookups",
        &String::new,
    )
    .await;
    canary_table(&client).await;
    let signals = shardready::apply::signals::Signals::start(&t, Instant::now(), Vec::new())
        .await
        .expect("the signals start");
    // The lock is held a few seconds.
    let (blocker, from) = lock_orders(&t).await;
    let mut held = None;
    while held.is_none() && from.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        held = signals
            .holding(from, 10_000.0)
            .filter(|h| h.signal == "application rate" || h.signal == "active backends");
    }
    blocker.batch_execute("COMMIT").await.unwrap();
    let held = held.expect("the queue is seen within seconds");
    assert!(held.why.contains("it is queueing"), "{held:?}");
    let (n, slow) = signals.slow_since(from, 10_000.0).unwrap();
    assert!(n > 0 && slow > 0, "{slow} of {n} ticks slow");
    for a in app {
        assert_eq!(common::stop_sending(a).await, 0);
    }
    let report = signals.stop().await;
    let text = shardready::report::text::signals_line(&report);
    assert!(text.contains("before the first change:"), "{text}");
    assert!(
        text.contains("application backends active on average"),
        "{text}"
    );
    if std::fs::read_to_string("/proc/pressure/cpu").is_ok() {
        assert!(text.contains("waited for a CPU"), "{text}");
    }
}

/// Index builds yield the CPU to the application: while apply builds a
/// unique index concurrently, its backend runs at nice 10 (the server runs
/// here, and the tests run as root; otherwise apply says why not), and
/// gets its priority back before the next step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_builds_run_at_a_lower_cpu_priority() {
    let (c, t) = common::tailspin(0.1).await;
    let url = c.url();
    let client = connect(&t).await;
    // Two parallel workers per build where the server gives them.
    let apply = common::spawn_on(
        &url,
        &[
            "apply",
            "--trigger-window",
            "300ms",
            "--parallel-workers",
            "2",
        ],
    );
    // The niceness (the 19th field of /proc/PID/stat) of apply's backend
    // and its parallel workers at each look, beside what it ran then (or
    // `idle`).
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut workers = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    while apply.running() && Instant::now() < deadline {
        let rows = client
            .query(
                "SELECT pid, coalesce(CASE WHEN state = 'active' THEN query ELSE state END, ''), \
                        backend_type = 'parallel worker' \
                 FROM pg_stat_activity WHERE application_name = 'shardready-apply'",
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            let (pid, query, worker): (i32, String, bool) = (r.get(0), r.get(1), r.get(2));
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The fields after the command's closing parenthesis: state
            // is the 3rd field, nice the 19th.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let nice: i64 = after.split(' ').nth(16).unwrap().parse().unwrap();
            // A worker just started is lowered within a look of apply's.
            if worker {
                workers += 1;
            }
            seen.push((query, nice));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = apply.finished(Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let builds: Vec<i64> = seen
        .iter()
        .filter(|(q, _)| q.contains("CREATE UNIQUE INDEX CONCURRENTLY"))
        .map(|(_, n)| *n)
        .collect();
    assert!(!builds.is_empty(), "an index build was seen running");
    // The backend's own niceness, as the server started it (a harness run
    // under `nice` passes its own on).
    let base = seen[0].1;
    let lowered = builds.iter().filter(|&&n| n == base.max(10)).count();
    if nix::unistd::geteuid().is_root() {
        assert!(
            err.contains("index builds and validations run at CPU priority nice 10"),
            "{err}"
        );
        // Most looks saw the build lowered (a look can land between the
        // build's end and pg_stat_activity saying so).
        assert!(lowered * 2 > builds.len(), "{builds:?} (base {base})");
        assert!(workers > 0, "parallel workers were seen building");
        // The last steps (the swaps, VACUUM, ANALYZE) ran at the backend's
        // own priority: each build gave it back.
        let last = seen.last().unwrap();
        assert_eq!(last.1, base, "{last:?}");
    } else {
        assert!(err.contains("run at normal CPU priority"), "{err}");
        assert!(builds.iter().all(|&n| n == base), "{builds:?}");
    }
}

/// Without pg_stat_statements the application's rate is the database's
/// commits (less the sampler's own): an application that queues behind
/// another session's lock shows it as commits falling well below their
/// baseline, and as its backends waiting on that lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pg_stat_statements_the_commit_rate_sees_the_queue() {
    let (_c, t) = common::tailspin(0.01).await;
    let client = connect(&t).await;
    let max_order = common::scalar_i64(&client, "SELECT max(order_id) FROM orders").await;
    let app = four_lookers(&t, max_order);
    canary_table(&client).await;
    let signals = shardready::apply::signals::Signals::start(&t, Instant::now(), Vec::new())
        .await
        .expect("the signals start");
    let base = signals.baseline().unwrap();
    assert!(base.stmt_calls_per_s.is_none(), "{base:?}");
    let commits = base.commits_per_s.expect("the commit rate's baseline");
    assert!(commits >= 50.0, "four connections commit often: {base:?}");
    let (blocker, from) = lock_orders(&t).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    for a in app {
        assert_eq!(common::stop_sending(a).await, 0);
    }
    let (n, slow) = shardready::apply::Pressure::slow_since(&signals, from, 10_000.0).unwrap();
    assert!(n > 0 && slow > 0, "{slow} of {n} ticks slow");
    let report = signals.stop().await;
    let fell = report
        .seconds
        .iter()
        .filter_map(|s| s.commits_per_s)
        .fold(f64::INFINITY, f64::min);
    assert!(
        fell < commits * shardready::apply::signals::CALLS_SHARE,
        "the commits fell: {fell:.0}/s against {commits:.0}/s"
    );
    let text = shardready::report::text::signals_line(&report);
    assert!(
        text.contains("transactions/s (no pg_stat_statements)"),
        "{text}"
    );
    assert!(text.contains("waited most on Lock:relation"), "{text}");
}

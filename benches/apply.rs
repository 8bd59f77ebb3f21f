//! Apply benchmark: on one sandbox with Tailspin data and the create_orders
//! workload at a steady rate, (a) the seed's procedure as written and (b)
//! `shardready apply`, each on its own copy, plus (c) the single-statement
//! `UPDATE … FROM orders` as the lower bound of a backfill. Prints, per
//! phase, the time and what the application felt.
//!
//!   cargo bench --bench apply                      # full scale, 3000 orders/min
//!   SCALE=0.1 RATE=3000/min cargo bench --bench apply
//!   TRADEOFF=25ms,50ms,100ms,200ms cargo bench --bench apply   # batch target sweep
//!   SKIP_SEED=1 cargo bench --bench apply          # (c) and (b) only, to iterate faster
//!   REPEAT=3 cargo bench --bench apply             # (b) again on fresh copies: how steady the max is

use std::time::{Duration, Instant};

mod common;

use common::{fresh_db, quiesce};
use shardready::apply::{self, ApplyOptions};
use shardready::baseline;
use shardready::conn::Target;
use shardready::sandbox::{Profile, Sandbox, SandboxOptions};
use shardready::workload::{self, Latency, Mode, StoreIdMode, Workload, WorkloadConfig};

struct Row {
    what: String,
    seconds: f64,
    app: (Latency, u64, u64),
    /// Transactions slower than 20 ms.
    slow: u64,
    lock_timeouts: u32,
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

async fn start_workload(t: &Target, rate: f64, store_id: StoreIdMode) -> Workload {
    Workload::start(
        t,
        WorkloadConfig {
            rate,
            duration: None,
            connections: 4,
            mode: Mode::Client,
            store_id,
            batch: 3,
            seed: 11,
            live: false,
        },
    )
    .await
    .unwrap()
}

/// What the application felt between two instants.
fn app_row(w: &Workload, what: &str, from: Instant, to: Instant) -> Row {
    let (l, tx, errors, slow) = w.window(from, to, 20.0);
    Row {
        what: what.to_string(),
        seconds: (to - from).as_secs_f64(),
        app: (l, tx, errors),
        slow,
        lock_timeouts: 0,
    }
}

fn print_rows(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!(
        "  {:<34} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>9}",
        "phase", "seconds", "app p50", "app p99", "app max", "errors", ">20ms", "lock t/o"
    );
    for r in rows {
        println!(
            "  {:<34} {:>9.1} {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7} {:>7} {:>9}",
            r.what,
            r.seconds,
            r.app.0.p50_ms,
            r.app.0.p99_ms,
            r.app.0.max_ms,
            r.app.2,
            r.slow,
            r.lock_timeouts
        );
    }
}

fn main() {
    let scale: f64 = env("SCALE", "1").parse().unwrap();
    let rate = workload::parse_rate(&env("RATE", "3000/min")).unwrap();
    let settle = Duration::from_secs(env("SETTLE_SECONDS", "10").parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("shardready-bench-apply")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut opts = SandboxOptions::new(dir.path().join("sb"));
    opts.profile = Profile::Bulk;
    let sb = Sandbox::start(&opts).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { run(&sb, scale, rate, settle).await })
    }));
    sb.destroy().unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

async fn run(sb: &Sandbox, scale: f64, rate: f64, settle: Duration) {
    println!(
        "apply benchmark: scale {scale}, workload {:.0} orders/min ({:.0}/s), 4 connections",
        rate * 60.0,
        rate
    );
    eprintln!("loading three copies of Tailspin (scale {scale})...");
    let skip_seed = std::env::var_os("SKIP_SEED").is_some();
    let seed_db = if skip_seed {
        None
    } else {
        Some(fresh_db(sb, "seed", scale).await)
    };
    let ours_db = fresh_db(sb, "ours", scale).await;
    let lower_db = fresh_db(sb, "lower", scale).await;
    quiesce(sb, None).await;

    // (c) lower bound, under the same workload.
    eprintln!("single UPDATE ... FROM orders (lower bound)...");
    let w = start_workload(&lower_db, rate, StoreIdMode::Never).await;
    tokio::time::sleep(settle).await;
    let c = lower_db.connect().await.unwrap();
    let t0 = Instant::now();
    let single = baseline::single_update(&c).await.unwrap();
    let lower_app = w.stats_between(t0, Instant::now());
    w.stop().await;
    drop(c);
    quiesce(sb, Some("lower")).await;

    // (a) the seed's procedure as written.
    let (seed_rows, seed_backfill, seed_total) = match &seed_db {
        Some(db) => {
            let r = seed_run(db, rate, settle).await;
            quiesce(sb, Some("seed")).await;
            r
        }
        None => (Vec::new(), f64::NAN, f64::NAN),
    };

    // (b) shardready apply with default settings.
    eprintln!("shardready apply...");
    let (ours_rows, ours_backfill, ours_total) = apply_run(&ours_db, rate, settle, None).await;
    quiesce(sb, Some("ours")).await;

    if !skip_seed {
        print_rows(
            "(a) the seed's procedure as written (1M-row batches back to back, its key swap)",
            &seed_rows,
        );
    }
    print_rows("(b) shardready apply (defaults)", &ours_rows);
    println!("\nsummary");
    println!(
        "  {:<44} {:>10}",
        "single UPDATE ... FROM orders (lower bound)",
        format!("{:.1} s", single.as_secs_f64())
    );
    println!(
        "  {:<44} {:>10}   app p99 {:.1} ms, max {:.1} ms, errors {}",
        "  app while it ran", "", lower_app.0.p99_ms, lower_app.0.max_ms, lower_app.2
    );
    println!(
        "  {:<44} {:>10}   ({:.2}x the single UPDATE)",
        "seed backfill",
        format!("{seed_backfill:.1} s"),
        seed_backfill / single.as_secs_f64()
    );
    println!(
        "  {:<44} {:>10}   ({:.2}x the single UPDATE; target <= 1.5x)",
        "shardready backfill",
        format!("{ours_backfill:.1} s"),
        ours_backfill / single.as_secs_f64()
    );
    println!(
        "  {:<44} {:>10}",
        "seed total",
        format!("{seed_total:.1} s")
    );
    println!(
        "  {:<44} {:>10}",
        "shardready total",
        format!("{ours_total:.1} s")
    );
    let whole = ours_rows.iter().find(|r| r.what == "whole apply").unwrap();
    println!(
        "  shardready whole apply: app p99 {:.1} ms (target <= 20), max {:.1} ms (target <= 150), errors {} (target 0)",
        whole.app.0.p99_ms, whole.app.0.max_ms, whole.app.2
    );

    let repeat: usize = env("REPEAT", "1").parse().unwrap();
    if repeat > 1 {
        println!("\nrepeats of (b): whole-apply p99 / max (the step it fell in) -> backfill time");
        let mut runs = vec![(
            whole.app.0.p99_ms,
            whole.app.0.max_ms,
            worst_step(&ours_rows),
            ours_backfill,
        )];
        for i in 1..repeat {
            let name = format!("repeat{i}");
            let db = fresh_db(sb, &name, scale).await;
            quiesce(sb, None).await;
            let (rows, backfill, _) = apply_run(&db, rate, settle, None).await;
            quiesce(sb, Some(&name)).await;
            let whole = rows.iter().find(|r| r.what == "whole apply").unwrap();
            runs.push((
                whole.app.0.p99_ms,
                whole.app.0.max_ms,
                worst_step(&rows),
                backfill,
            ));
        }
        for (i, (p99, max, step, backfill)) in runs.iter().enumerate() {
            println!(
                "  run {}: app p99 {:>6.1} ms, max {:>6.1} ms ({}), backfill {:>6.1} s ({:.2}x single UPDATE)",
                i + 1,
                p99,
                max,
                step,
                backfill,
                backfill / single.as_secs_f64()
            );
        }
        let held = runs.iter().filter(|r| r.0 <= 20.0 && r.1 <= 150.0).count();
        println!("  targets (p99 <= 20 ms, max <= 150 ms) held in {held} of {repeat} runs");
    }

    if let Ok(list) = std::env::var("TRADEOFF") {
        println!("\ntrade-off: batch target -> app p99 / max -> backfill time");
        for (i, target) in list.split(',').enumerate() {
            let d: Duration = humantime::parse_duration(target.trim()).unwrap();
            let name = format!("tradeoff{i}");
            let db = fresh_db(sb, &name, scale).await;
            quiesce(sb, None).await;
            let (rows, backfill, _) = apply_run(&db, rate, settle, Some(d)).await;
            quiesce(sb, Some(&name)).await;
            let whole = rows.iter().find(|r| r.what == "whole apply").unwrap();
            println!(
                "  batch target {:>6}: app p99 {:>6.1} ms, max {:>6.1} ms, errors {}, backfill {:>6.1} s ({:.2}x single UPDATE)",
                target.trim(),
                whole.app.0.p99_ms,
                whole.app.0.max_ms,
                whole.app.2,
                backfill,
                backfill / single.as_secs_f64()
            );
        }
    }
}

/// The step in which the application's slowest transaction fell.
fn worst_step(rows: &[Row]) -> String {
    rows.iter()
        .filter(|r| r.what != "whole apply" && r.what != "before (baseline)")
        .max_by(|a, b| a.app.0.max_ms.total_cmp(&b.app.0.max_ms))
        .map(|r| r.what.clone())
        .unwrap_or_default()
}

/// The seed's procedure as written, under the workload: its phases, the
/// backfill's and the whole procedure's seconds.
async fn seed_run(db: &Target, rate: f64, settle: Duration) -> (Vec<Row>, f64, f64) {
    eprintln!("the seed's procedure...");
    let w = start_workload(db, rate, StoreIdMode::Never).await;
    tokio::time::sleep(settle).await;
    let base_t = Instant::now();
    let c = db.connect().await.unwrap();
    let phases =
        baseline::run_seed_procedure(&c, 1_000_000, || w.set_store_id(StoreIdMode::Always))
            .await
            .unwrap();
    let seed_total = base_t.elapsed().as_secs_f64();
    let mut seed_rows = vec![app_row(&w, "before (baseline)", base_t - settle, base_t)];
    for p in &phases {
        seed_rows.push(app_row(&w, &p.name, p.start.unwrap(), p.end.unwrap()));
    }
    seed_rows.push(app_row(&w, "whole procedure", base_t, Instant::now()));
    w.stop().await;
    let seed_backfill = phases
        .iter()
        .find(|p| p.name == "backfill")
        .unwrap()
        .seconds;

    (seed_rows, seed_backfill, seed_total)
}

async fn apply_run(
    db: &Target,
    rate: f64,
    settle: Duration,
    batch_target: Option<Duration>,
) -> (Vec<Row>, f64, f64) {
    let w = start_workload(db, rate, StoreIdMode::Auto).await;
    tokio::time::sleep(settle).await;
    let t0 = Instant::now();
    let base_row = app_row(&w, "before (baseline)", t0 - settle, t0);
    let mut opts = ApplyOptions {
        progress: false,
        ..ApplyOptions::default()
    };
    if let Some(b) = batch_target {
        opts.pace.batch_target = b;
    }
    let report = apply::apply(db, &opts, Some(&w)).await.unwrap();
    let total = t0.elapsed().as_secs_f64();
    let whole = app_row(&w, "whole apply", t0, Instant::now());
    w.stop().await;
    let mut rows = vec![base_row];
    for s in &report.steps {
        let Some(a) = s.app.as_ref() else { continue };
        rows.push(Row {
            what: s.id.chars().take(34).collect(),
            seconds: s.seconds,
            app: (
                Latency {
                    p50_ms: a.p50_ms,
                    p99_ms: a.p99_ms,
                    max_ms: a.max_ms,
                    ..Latency::default()
                },
                a.transactions,
                a.errors,
            ),
            slow: a.over_20ms,
            lock_timeouts: s.lock_timeouts,
        });
    }
    rows.push(whole);
    let backfill = report.backfills.iter().map(|b| b.seconds).sum();
    for b in &report.backfills {
        println!(
            "  backfill {}: {} rows in {} batches, {:.1} s, throttled {:.1} s, last batch {} keys, {} light vacuums",
            b.table, b.rows, b.batches, b.seconds, b.throttled_seconds, b.final_batch_keys, b.reclaims
        );
    }
    (rows, backfill, total)
}

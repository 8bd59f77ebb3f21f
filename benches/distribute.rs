//! Distribution benchmark: what the application feels while a prepared
//! Tailspin moves onto Citus on a single node (the seed's environment),
//! under the seed's traffic, in each way of doing it, side by side in one
//! run. The baseline is the seed's next unit done by hand: each table's
//! `create_distributed_table` call in FK order, as the Citus docs show it,
//! with nothing else. Each mode gets a fresh single-node Citus sandbox:
//! Tailspin loaded and prepared by `apply`; the built-in order workload
//! runs at RATE before, during and after. After each run it checks that
//! nothing the application committed was lost (no order id missing from
//! the range the run wrote, no line item without its order). Needs Citus
//! installed for the PostgreSQL binaries (says so and stops when not).
//!
//!   cargo bench --bench distribute                    # scale 1 (the seed's 6M rows), 20000/min
//!   SCALE=0.1 cargo bench --bench distribute
//!   MODES=manual,auto cargo bench --bench distribute  # a subset of
//!       manual | auto | concurrently | blocking

use std::time::{Duration, Instant};

mod common;

use shardready::conn::Target;
use shardready::report::PhaseRow;
use shardready::workload::Workload;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// One mode's figures.
struct Outcome {
    label: &'static str,
    seconds: f64,
    ok: bool,
    phases: Vec<PhaseRow>,
    errors: String,
    missing_orders: i64,
    orphan_line_items: i64,
}

/// The baseline: the calls a DBA runs by hand, one statement each, no
/// lock timeout, no retry.
async fn by_hand(t: &Target) -> bool {
    let c = t.connect().await.unwrap();
    let calls = [
        "SELECT create_distributed_table('stores', 'store_id')",
        "SELECT create_distributed_table('orders', 'store_id', colocate_with => 'stores')",
        "SELECT create_distributed_table('products', 'store_id', colocate_with => 'stores')",
        "SELECT create_distributed_table('line_items', 'store_id', colocate_with => 'stores')",
    ];
    for call in calls {
        if let Err(e) = c.batch_execute(call).await {
            eprintln!("  [manual] {call}: {}", shardready::conn::error_text(&e));
            return false;
        }
    }
    true
}

async fn scalar(t: &Target, sql: &str) -> i64 {
    let c = t.connect().await.unwrap();
    c.query_one(sql, &[]).await.unwrap().get(0)
}

async fn run_mode(label: &'static str, scale: f64, rate: &str) -> Outcome {
    let dir = std::env::temp_dir().join(format!("shardready-bench-distribute-{label}"));
    let (sb, t) = common::citus_prepared(&dir, scale, 0).await;
    let c = t.connect().await.unwrap();
    c.batch_execute("VACUUM ANALYZE").await.unwrap();
    c.batch_execute("CHECKPOINT").await.unwrap();
    let first_id = scalar(&t, "SELECT coalesce(max(order_id), 0) FROM orders").await;
    let settle = Duration::from_secs(10);
    let w = Workload::beside(&t, rate).await.unwrap();
    let t0 = w.started();
    tokio::time::sleep(settle).await;
    let from = Instant::now();
    let ok = match label {
        "manual" => by_hand(&t).await,
        _ => {
            let mut args = vec!["distribute"];
            match label {
                "concurrently" => args.push("--concurrently"),
                "blocking" => args.push("--blocking"),
                _ => {}
            }
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardready"))
                .env("DATABASE_URL", sb.url())
                .args(&args)
                .output()
                .await
                .unwrap();
            for line in String::from_utf8_lossy(&out.stderr).lines() {
                eprintln!("  [{label}] {line}");
            }
            out.status.success()
        }
    };
    let to = Instant::now();
    tokio::time::sleep(settle).await;
    let phases = common::three_phases(&w, t0, from, to);
    let summary = w.stop().await.summary;
    let errors = summary
        .errors_by_sqlstate
        .iter()
        .map(|(k, v)| format!("{v} x {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    // Every order id the run drew exists (the workload draws one per
    // transaction and none failed, or counts the failures), and every line
    // item has its order.
    let missing_orders = scalar(
        &t,
        &format!(
            "SELECT (coalesce(max(order_id), {first_id}) - {first_id}) - count(*) \
               FROM orders WHERE order_id > {first_id}"
        ),
    )
    .await
        - summary.errors as i64;
    let orphan_line_items = scalar(
        &t,
        "SELECT count(*) FROM line_items l LEFT JOIN orders o \
            ON o.store_id = l.store_id AND o.order_id = l.order_id WHERE o.order_id IS NULL",
    )
    .await;
    sb.destroy().unwrap();
    Outcome {
        label,
        seconds: (to - from).as_secs_f64(),
        ok,
        phases,
        errors,
        missing_orders,
        orphan_line_items,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !shardready::sandbox::citus_installed(None) {
        eprintln!("distribute bench: Citus is not installed for these PostgreSQL binaries (no citus.so): nothing to measure");
        return;
    }
    let scale: f64 = env("SCALE", "1").parse().unwrap();
    let rate = env("RATE", "20000/min");
    let modes = env("MODES", "manual,auto,concurrently,blocking");
    let mut outcomes = Vec::new();
    for label in ["manual", "auto", "concurrently", "blocking"] {
        if !modes.split(',').any(|m| m.trim() == label) {
            continue;
        }
        eprintln!("== {label}: scale {scale}, application {rate}");
        outcomes.push(run_mode(label, scale, &rate).await);
    }
    println!(
        "\ndistribute on a single Citus node, Tailspin scale {scale} prepared, application {rate}\n"
    );
    println!(
        "| mode | finished | seconds | before p50/p99/max ms | during p50/p99/max ms | failed during | lost orders | orphan line items | after p50/p99/max ms |"
    );
    println!("|---|---|---:|---|---|---|---:|---:|---|");
    let cell = common::cell;
    for o in &outcomes {
        let name = match o.label {
            "manual" => "by hand (baseline): create_distributed_table per table",
            "auto" => "shardready distribute",
            "concurrently" => "shardready distribute --concurrently",
            _ => "shardready distribute --blocking",
        };
        println!(
            "| {name} | {} | {:.1} | {} | {} | {} | {} | {} | {} |",
            if o.ok { "yes" } else { "no" },
            o.seconds,
            cell(&o.phases[0]),
            cell(&o.phases[1]),
            if o.errors.is_empty() {
                "0".to_string()
            } else {
                o.errors.clone()
            },
            o.missing_orders,
            o.orphan_line_items,
            cell(&o.phases[2])
        );
    }
}

//! Scale-out benchmark: what the application feels before, during and
//! after spreading a single Citus node's shards onto two new local workers,
//! in each transfer mode, in one run. The baseline is Citus's own way, as
//! its docs show it: `citus_add_node` for each node, then
//! `citus_rebalance_start()` and `citus_rebalance_wait()` (its background
//! job, whose moves switch without the commit guard). Each mode gets a fresh single-node
//! Citus sandbox (the seed's environment) with two spare nodes: Tailspin
//! loaded, prepared by `apply` and distributed on the coordinator; then the
//! built-in order workload runs at RATE while `scale-out` adds the nodes.
//! Needs Citus installed for the PostgreSQL binaries (says so and stops
//! when it is not).
//!
//!   cargo bench --bench scale_out                     # scale 0.2 (~166 MB), 3000/min
//!   SCALE=0.05 RATE=1200/min cargo bench --bench scale_out
//!   MODES=by-hand,tuned cargo bench --bench scale_out # a subset of
//!       by-hand | logical | tuned | block-writes | drain

use std::time::{Duration, Instant};

mod common;

use shardready::citus::scale::{self, ScaleOptions, TransferMode};
use shardready::conn::Target;
use shardready::report::PhaseRow;
use shardready::sandbox::Sandbox;
use shardready::workload::Workload;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// One mode's figures.
struct Outcome {
    label: &'static str,
    moves: i64,
    rebalance_s: f64,
    pauses: usize,
    phases: Vec<PhaseRow>,
}

/// A fresh single-node Citus sandbox with two spare nodes, Tailspin at
/// `scale` prepared and distributed on the coordinator.
async fn distributed(dir: &std::path::Path, scale: f64) -> (Sandbox, Target) {
    let (sb, t) = common::citus_prepared(dir, scale, 2).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardready"))
        .env("DATABASE_URL", sb.url())
        .args(["distribute", "--blocking"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = t.connect().await.unwrap();
    c.batch_execute("VACUUM ANALYZE").await.unwrap();
    c.batch_execute("CHECKPOINT").await.unwrap();
    (sb, t)
}

async fn run_mode(
    label: &'static str,
    mode: TransferMode,
    tune: bool,
    drain: bool,
    scale: f64,
    rate: &str,
) -> Outcome {
    let dir = std::env::temp_dir().join(format!("shardready-bench-scale-{label}"));
    let (sb, t) = distributed(&dir, scale).await;
    let settle = Duration::from_secs(10);
    let w = Workload::beside(&t, rate).await.unwrap();
    let t0 = w.started();
    tokio::time::sleep(settle).await;
    let opts = ScaleOptions {
        add: sb
            .node_addresses()
            .iter()
            .map(|n| n.parse().unwrap())
            .collect(),
        drain_coordinator: drain,
        mode,
        tune,
        ..Default::default()
    };
    let signals = shardready::apply::signals::Signals::start(&t, t0, Vec::new())
        .await
        .ok();
    let mut pressures: Vec<&dyn shardready::apply::Pressure> = vec![&w];
    if let Some(s) = &signals {
        pressures.push(s);
    }
    let session = shardready::citus::lock(t.connect().await.unwrap())
        .await
        .unwrap();
    let from = Instant::now();
    let (moves, rebalance_s, pauses) = if label == "by-hand" {
        by_hand(&session, &opts).await
    } else {
        let r = scale::scale_out(&session, &t, &opts, &pressures, t0, &|s| {
            eprintln!("  [{label}] {s}")
        })
        .await
        .unwrap();
        (r.moves, r.rebalance_seconds, r.pauses.len())
    };
    let to = Instant::now();
    tokio::time::sleep(settle).await;
    let phases = common::three_phases(&w, t0, from, to);
    if let Some(s) = signals {
        s.stop().await;
    }
    w.stop().await;
    session.unlock().await;
    sb.destroy().unwrap();
    Outcome {
        label,
        moves,
        rebalance_s,
        pauses,
        phases,
    }
}

/// The baseline: Citus's background rebalance as its docs show it; the
/// moves it made and how long it took.
async fn by_hand(c: &tokio_postgres::Client, opts: &ScaleOptions) -> (i64, f64, usize) {
    for n in &opts.add {
        c.execute(
            "SELECT citus_add_node($1, $2)",
            &[&n.host, &(n.port as i32)],
        )
        .await
        .unwrap();
    }
    let start = Instant::now();
    let job: i64 = c
        .query_one("SELECT citus_rebalance_start()", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute("SELECT citus_rebalance_wait()")
        .await
        .unwrap();
    let moves: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_dist_background_task WHERE job_id = $1 \
              AND command LIKE '%move_shard_placement%'",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    (moves, start.elapsed().as_secs_f64(), 0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !shardready::sandbox::citus_installed(None) {
        eprintln!("scale_out bench: Citus is not installed for these PostgreSQL binaries (no citus.so): nothing to measure");
        return;
    }
    let scale: f64 = env("SCALE", "0.2").parse().unwrap();
    let rate = env("RATE", "3000/min");
    let modes = env("MODES", "by-hand,logical,tuned,block-writes,drain");
    let all: [(&str, TransferMode, bool, bool); 5] = [
        ("by-hand", TransferMode::Logical, false, false),
        ("logical", TransferMode::Logical, false, false),
        ("tuned", TransferMode::Logical, true, false),
        ("block-writes", TransferMode::BlockWrites, false, false),
        ("drain", TransferMode::Logical, true, true),
    ];
    let mut outcomes = Vec::new();
    for (label, mode, tune, drain) in all {
        if !modes.split(',').any(|m| m.trim() == label) {
            continue;
        }
        eprintln!("== {label}: scale {scale}, application {rate}");
        outcomes.push(run_mode(label, mode, tune, drain, scale, &rate).await);
    }
    println!(
        "\nscale-out of a single Citus node onto 2 new workers, Tailspin scale {scale}, application {rate}\n"
    );
    println!(
        "| mode | moves | rebalance s | stops | before p50/p99/max ms | during p50/p99/max ms | during failed | after p50/p99/max ms |"
    );
    println!("|---|---:|---:|---:|---|---|---:|---|");
    let cell = common::cell;
    for o in &outcomes {
        let name = match o.label {
            "by-hand" => "by hand (baseline): citus_rebalance_start + wait",
            "logical" => "logical (wal_retrieve_retry_interval 5 s)",
            "tuned" => "logical, --tune (500 ms)",
            "block-writes" => "block-writes",
            _ => "logical, --tune, --drain-coordinator",
        };
        println!(
            "| {name} | {} | {:.1} | {} | {} | {} | {} | {} |",
            o.moves,
            o.rebalance_s,
            o.pauses,
            cell(&o.phases[0]),
            cell(&o.phases[1]),
            o.phases[1].errors,
            cell(&o.phases[2])
        );
    }
}

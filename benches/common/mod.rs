//! What the benchmarks share: a fresh copy of Tailspin in the bench's
//! sandbox, and letting the machine settle between runs.
#![allow(dead_code)]

use std::time::Duration;

use shardready::conn::Target;
use shardready::sandbox::Sandbox;

pub async fn fresh_db(sb: &Sandbox, name: &str, scale: f64) -> Target {
    sb.psql_command(&format!("CREATE DATABASE {name}")).unwrap();
    let t = Target::parse(&sb.url_for(name)).unwrap();
    load(&t, scale).await;
    t
}

/// The seed's tables created in `t` and loaded at `scale`, vacuumed and
/// analyzed; pg_stat_statements created in it (the sandbox preloads it), so
/// that apply's signals see the application's statements, as they would on
/// a server that has it.
pub async fn load(t: &Target, scale: f64) {
    let mut c = t.connect().await.unwrap();
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    shardready::ingest::create_tailspin_schema(&c, false)
        .await
        .unwrap();
    shardready::ingest::load_tailspin(&mut c, None, scale, 42, false)
        .await
        .unwrap();
    c.batch_execute("VACUUM ANALYZE").await.unwrap();
}

/// Lets the machine settle between runs: drops a finished database (its
/// autovacuum would compete with the next run), checkpoints, and waits
/// until no autovacuum worker is busy.
pub async fn quiesce(sb: &Sandbox, drop_db: Option<&str>) {
    if let Some(db) = drop_db {
        sb.psql_command(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .unwrap();
    }
    sb.psql_command("CHECKPOINT").unwrap();
    let admin = Target::parse(&sb.url()).unwrap().connect().await.unwrap();
    for _ in 0..120 {
        let busy: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A fresh single-node Citus sandbox in `dir` (a previous one there
/// removed) with `nodes` spare nodes, Tailspin at `scale` loaded and
/// prepared by `apply`.
pub async fn citus_prepared(dir: &std::path::Path, scale: f64, nodes: u16) -> (Sandbox, Target) {
    if let Ok(old) = Sandbox::open(dir) {
        old.destroy().unwrap();
    }
    let mut opts = shardready::sandbox::SandboxOptions::new(dir);
    opts.nodes = nodes;
    opts.citus = shardready::sandbox::CitusChoice::On;
    let sb = Sandbox::start(&opts).unwrap();
    let t = Target::parse(&sb.url()).unwrap();
    load(&t, scale).await;
    shardready::apply::apply(
        &t,
        &shardready::apply::ApplyOptions {
            progress: false,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    (sb, t)
}

/// What the application felt before, during and after `from..to`.
pub fn three_phases(
    w: &shardready::workload::Workload,
    t0: std::time::Instant,
    from: std::time::Instant,
    to: std::time::Instant,
) -> Vec<shardready::report::PhaseRow> {
    use shardready::report::PhaseRow;
    vec![
        PhaseRow::measure(w, t0, "before", "", t0, from),
        PhaseRow::measure(w, t0, "during", "", from, to),
        PhaseRow::measure(w, t0, "after", "", to, std::time::Instant::now()),
    ]
}

/// A phase as a table cell: `p50 / p99 / max` in ms.
pub fn cell(p: &shardready::report::PhaseRow) -> String {
    format!(
        "{} / {} / {}",
        p.ms(p.p50_ms),
        p.ms(p.p99_ms),
        p.ms(p.max_ms)
    )
}

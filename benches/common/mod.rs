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
/// analyzed.
pub async fn load(t: &Target, scale: f64) {
    let mut c = t.connect().await.unwrap();
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

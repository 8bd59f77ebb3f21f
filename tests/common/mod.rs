//! Shared fixtures for the integration tests: a throwaway cluster per test,
//! optionally with the Tailspin tables loaded at a small scale.
#![allow(dead_code)]

use shardready::conn::Target;
use shardready::sandbox::TestCluster;
use tokio_postgres::Client;

/// A fresh cluster and a target for its `postgres` database.
pub fn cluster() -> (TestCluster, Target) {
    let c = TestCluster::start().expect("a throwaway cluster starts");
    let t = Target::parse(&c.url()).expect("sandbox URL parses");
    (c, t)
}

/// A fresh cluster with the seed's schema and a generated load at `scale`.
pub async fn tailspin(scale: f64) -> (TestCluster, Target) {
    let (c, t) = cluster();
    let mut client = t.connect().await.expect("connect");
    shardready::ingest::create_tailspin_schema(&client, false)
        .await
        .expect("schema");
    shardready::ingest::load_tailspin(&mut client, None, scale, 42, false)
        .await
        .expect("load");
    (c, t)
}

pub async fn connect(t: &Target) -> Client {
    t.connect().await.expect("connect")
}

pub async fn scalar_i64(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

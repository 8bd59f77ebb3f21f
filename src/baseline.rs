//! The seed's procedure as written — its `ALTER TABLE`, its `backfill_batch`
//! with 1M-row `FOR UPDATE SKIP LOCKED` batches, its `CREATE UNIQUE INDEX
//! CONCURRENTLY` and key-swap transactions — run step by step so benchmarks
//! and `demo --compare-seed` can measure what it costs the application next
//! to `apply`. Also the single-statement `UPDATE … FROM orders`, the lower
//! bound of any backfill.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

/// The seed's `backfill_batch(batch_size)`, verbatim.
pub const BACKFILL_BATCH_SQL: &str = r#"CREATE OR REPLACE FUNCTION backfill_batch(batch_size bigint)
RETURNS void
LANGUAGE PLPGSQL
AS
$$
BEGIN
    WITH batch AS (
        SELECT line_item_id, order_id
        FROM line_items
        WHERE store_id IS NULL
        LIMIT batch_size
            FOR UPDATE
            SKIP LOCKED
    )
    UPDATE line_items AS li
        SET store_id = orders.store_id
    FROM batch, orders
    WHERE batch.line_item_id = li.line_item_id
        AND batch.order_id = orders.order_id;
END;
$$;"#;

/// The seed's key swap: three concurrent index builds, then three
/// transactions.
pub const KEY_SWAP_INDEXES: [&str; 3] = [
    "CREATE UNIQUE INDEX CONCURRENTLY orders_tmp_idx ON orders (store_id, order_id);",
    "CREATE UNIQUE INDEX CONCURRENTLY products_tmp_idx ON products (store_id, product_id);",
    "CREATE UNIQUE INDEX CONCURRENTLY line_items_tmp_idx ON line_items (store_id, line_item_id);",
];

pub const KEY_SWAP_TRANSACTIONS: [&str; 3] = [
    "BEGIN;
ALTER TABLE orders
  DROP CONSTRAINT orders_pkey CASCADE,
  ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_tmp_idx;
ALTER TABLE line_items
  ADD CONSTRAINT line_items_orders_fkey FOREIGN KEY (store_id, order_id) REFERENCES orders (store_id, order_id);
COMMIT;",
    "BEGIN;
ALTER TABLE products
  DROP CONSTRAINT products_pkey CASCADE,
  ADD CONSTRAINT products_pkey PRIMARY KEY USING INDEX products_tmp_idx;
ALTER TABLE line_items
  ADD CONSTRAINT line_items_products_fkey FOREIGN KEY (store_id, product_id) REFERENCES products (store_id, product_id);
COMMIT;",
    "BEGIN;
ALTER TABLE line_items
  DROP CONSTRAINT line_items_pkey,
  ADD CONSTRAINT line_items_pkey PRIMARY KEY USING INDEX line_items_tmp_idx;
ALTER TABLE line_items
  ADD CONSTRAINT line_items_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (store_id);
COMMIT;",
];

/// One phase of a procedure, with the instants that bound it (to slice the
/// application's latency by phase).
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
    #[serde(skip)]
    pub start: Option<Instant>,
    #[serde(skip)]
    pub end: Option<Instant>,
}

impl Phase {
    fn timed(name: &str, start: Instant) -> Phase {
        let end = Instant::now();
        Phase {
            name: name.into(),
            seconds: end.duration_since(start).as_secs_f64(),
            start: Some(start),
            end: Some(end),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the seed's procedure failed in {phase}: {}", crate::conn::error_text(.source))]
pub struct BaselineError {
    pub phase: String,
    #[source]
    pub source: tokio_postgres::Error,
}

fn fail(phase: &str) -> impl FnOnce(tokio_postgres::Error) -> BaselineError + '_ {
    move |e| BaselineError {
        phase: phase.into(),
        source: e,
    }
}

/// Runs the seed's procedure: add the column, backfill with 1M-row batches
/// back to back until no NULL is left (the seed schedules one a minute;
/// back to back is the same work without the waiting), then the key swap.
///
/// `update_application` runs right after the column exists: the seed's
/// "update application queries" step (its new `create_orders` writes
/// `store_id`), without which NULLs keep arriving and the key swap fails.
pub async fn run_seed_procedure(
    client: &Client,
    batch: i64,
    update_application: impl FnOnce(),
) -> Result<Vec<Phase>, BaselineError> {
    let mut phases = Vec::new();
    let t = Instant::now();
    crate::db::exec(client, "ALTER TABLE line_items ADD COLUMN store_id bigint;")
        .await
        .map_err(fail("add column"))?;
    update_application();
    phases.push(Phase::timed("add column", t));

    let t = Instant::now();
    crate::db::exec_script(client, BACKFILL_BATCH_SQL)
        .await
        .map_err(fail("backfill"))?;
    loop {
        client
            .execute("SELECT backfill_batch($1)", &[&batch])
            .await
            .map_err(fail("backfill"))?;
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM line_items WHERE store_id IS NULL",
                &[],
            )
            .await
            .map_err(fail("backfill"))?
            .get(0);
        if left == 0 {
            break;
        }
    }
    phases.push(Phase::timed("backfill", t));

    let t = Instant::now();
    for sql in KEY_SWAP_INDEXES {
        crate::db::exec_script(client, sql)
            .await
            .map_err(fail("key swap"))?;
    }
    for sql in KEY_SWAP_TRANSACTIONS {
        crate::db::exec_script(client, sql)
            .await
            .map_err(fail("key swap"))?;
    }
    phases.push(Phase::timed("key swap", t));
    Ok(phases)
}

/// The lower bound of a backfill: one `UPDATE … FROM orders`.
pub async fn single_update(client: &Client) -> Result<Duration, BaselineError> {
    crate::db::exec(
        client,
        "ALTER TABLE line_items ADD COLUMN IF NOT EXISTS store_id bigint;",
    )
    .await
    .map_err(fail("single update"))?;
    let t = Instant::now();
    crate::db::exec(
        client,
        "UPDATE line_items li SET store_id = o.store_id FROM orders o WHERE o.order_id = li.order_id;",
    )
        .await
        .map_err(fail("single update"))?;
    Ok(t.elapsed())
}

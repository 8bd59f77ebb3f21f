//! Any key for the backfill: tables whose keys are `integer` and
//! `smallint` (Pagila's, and most schemas'), a composite primary key and a
//! uuid primary key are prepared under the application's writes — walked by
//! their integer key, or by their pages when they have none — with every
//! original column unchanged; where Citus is installed, distributed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{cluster, connect, run_on, scalar_i64};

const SCHEMA: &str = "
CREATE TABLE shops (shop_id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (
    order_id integer PRIMARY KEY,
    shop_id integer NOT NULL REFERENCES shops (shop_id),
    placed date NOT NULL);
CREATE TABLE order_lines (
    order_id integer NOT NULL REFERENCES orders (order_id),
    line_no smallint NOT NULL,
    qty integer NOT NULL,
    PRIMARY KEY (order_id, line_no));
CREATE TABLE receipts (
    receipt_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id integer NOT NULL REFERENCES orders (order_id),
    total numeric(10, 2) NOT NULL);
INSERT INTO shops SELECT g, 's' || g FROM generate_series(1, 4) g;
INSERT INTO orders SELECT g, 1 + g % 4, date '2026-01-01' + g % 300 FROM generate_series(1, 2000) g;
INSERT INTO order_lines SELECT o, l, 1 + (o * l) % 7 FROM generate_series(1, 2000) o, generate_series(1, 12) l;
INSERT INTO receipts (order_id, total) SELECT g, g % 97 + 0.5 FROM generate_series(1, 2000) g;
ANALYZE;
";

/// Every original column of every table, as one digest.
async fn originals(c: &tokio_postgres::Client) -> String {
    c.query_one(
        "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM ( \
           SELECT format('s%s|%s', shop_id, name) FROM shops UNION ALL \
           SELECT format('o%s|%s|%s', order_id, shop_id, placed) FROM orders WHERE order_id <= 2000 UNION ALL \
           SELECT format('l%s|%s|%s', order_id, line_no, qty) FROM order_lines WHERE order_id <= 2000 UNION ALL \
           SELECT format('r%s|%s|%s', receipt_id, order_id, total) FROM receipts WHERE order_id <= 2000) v(x)",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_composite_and_uuid_keys_are_backfilled_under_writes() {
    let citus = common::citus_cluster(
        "integer_composite_and_uuid_keys_are_backfilled_under_writes",
        1,
    );
    let (cl, t) = citus.unwrap_or_else(cluster);
    let url = cl.url();
    let c = connect(&t).await;
    shardready::db::exec_script(&c, SCHEMA).await.unwrap();
    let before = originals(&c).await;
    // How each is walked.
    let plan = run_on(
        &url,
        &["plan", "--format", "json", "--tenant-column", "shop_id"],
    );
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let walks: Vec<(String, String, bool)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "backfill")
        .map(|s| {
            (
                s["table"]["name"].as_str().unwrap().to_string(),
                s["key"].as_str().unwrap().to_string(),
                s["pages"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        walks,
        [
            ("order_lines".into(), "ctid".into(), true),
            ("receipts".into(), "ctid".into(), true),
        ],
        "{plan}"
    );
    // The application goes on: new orders with lines and receipts, written
    // the old way (no shop_id) for at least 1.5 s, then the new way once
    // the column exists (its deployment), and updates of old lines.
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let (stop, c) = (stop.clone(), connect(&t).await);
        tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut id = 100_000;
            let start = std::time::Instant::now();
            let mut new_way = false;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                if !new_way && start.elapsed() > Duration::from_millis(1500) {
                    new_way = c
                        .query_one(
                            "SELECT count(*) = 2 FROM pg_attribute WHERE attname = 'shop_id' \
                             AND attrelid IN ('order_lines'::regclass, 'receipts'::regclass)",
                            &[],
                        )
                        .await
                        .is_ok_and(|r| r.get(0));
                }
                let r = async {
                    if new_way {
                        c.execute(
                            "INSERT INTO orders (order_id, shop_id, placed) VALUES ($1, 1 + $1 % 4, current_date)",
                            &[&id],
                        )
                        .await?;
                        c.execute(
                            "INSERT INTO order_lines (shop_id, order_id, line_no, qty) VALUES (1 + $1 % 4, $1, 1, 3)",
                            &[&id],
                        )
                        .await?;
                        return c
                            .execute(
                                "INSERT INTO receipts (shop_id, order_id, total) VALUES (1 + $1 % 4, $1, 9.99)",
                                &[&id],
                            )
                            .await;
                    }
                    c.execute(
                        "INSERT INTO orders (order_id, shop_id, placed) VALUES ($1, 1 + $1 % 4, current_date)",
                        &[&id],
                    )
                    .await?;
                    c.execute(
                        "INSERT INTO order_lines (order_id, line_no, qty) VALUES ($1, 1, 3), ($1, 2, 4)",
                        &[&id],
                    )
                    .await?;
                    c.execute("INSERT INTO receipts (order_id, total) VALUES ($1, 9.99)", &[&id])
                        .await?;
                    c.execute(
                        "UPDATE order_lines SET qty = qty WHERE order_id = 1 + $1 % 2000",
                        &[&id],
                    )
                    .await
                }
                .await;
                if let Err(e) = r {
                    errors.push(shardready::conn::error_text(&e));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (id - 100_000, errors)
        })
    };
    let out = run_on(
        &url,
        &[
            "apply",
            "--tenant-column",
            "shop_id",
            "--max-rate",
            "20000",
            "--trigger-window",
            "300ms",
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("backfill order_lines.shop_id from orders in batches of pages"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let (written, errors) = app.await.unwrap();
    assert!(written > 20, "the application kept writing ({written})");
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    // Every row has its order's shop; nothing original changed.
    let wrong = scalar_i64(
        &c,
        "SELECT (SELECT count(*) FROM order_lines l JOIN orders o USING (order_id) \
                  WHERE l.shop_id IS DISTINCT FROM o.shop_id) \
              + (SELECT count(*) FROM receipts r JOIN orders o USING (order_id) \
                  WHERE r.shop_id IS DISTINCT FROM o.shop_id)",
    )
    .await;
    assert_eq!(wrong, 0);
    assert_eq!(originals(&c).await, before);
    let verify = run_on(&url, &["verify", "--tenant-column", "shop_id"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    common::assert_no_helpers_left(&c).await;
    if !shardready::catalog::extension_installed(&c, "citus")
        .await
        .unwrap()
    {
        return;
    }
    let out = run_on(&url, &["distribute", "--tenant-column", "shop_id"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_dist_partition WHERE partmethod = 'h'"
        )
        .await,
        4
    );
    assert_eq!(originals(&c).await, before, "distributed, the same rows");
}

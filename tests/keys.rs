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

/// Views that group by a key the plan replaces (and select the table's
/// other columns) rely on it: PostgreSQL refuses to drop the key while they
/// stand. A materialized view is refused before any change, with the
/// statements to run; run as printed, apply then carries the plain views
/// through the swap (re-created with the tenant column in their GROUP BY,
/// in its transaction) while the application reads them, and every view
/// returns what it returned before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_grouped_by_a_replaced_key_are_carried_through_the_swap() {
    let (cl, t) = cluster();
    let url = cl.url();
    let c = connect(&t).await;
    shardready::db::exec_script(&c, SCHEMA).await.unwrap();
    shardready::db::exec_script(
        &c,
        "CREATE VIEW order_sizes WITH (security_barrier) AS
           SELECT o.order_id, o.placed, count(l.line_no) AS lines, sum(l.qty) AS qty
             FROM orders o LEFT JOIN order_lines l ON l.order_id = o.order_id
            GROUP BY o.order_id;
         CREATE VIEW big_orders AS SELECT * FROM order_sizes WHERE qty > 40;
         CREATE VIEW busy_orders WITH (check_option = local) AS
           SELECT o.* FROM orders o WHERE o.order_id IN
             (SELECT o2.order_id FROM orders o2 JOIN order_lines l ON l.order_id = o2.order_id
               GROUP BY o2.order_id HAVING count(*) > 11 OR o2.placed > date '2026-06-01');
         CREATE MATERIALIZED VIEW order_days AS
           SELECT o.order_id, o.placed, count(*) AS n
             FROM orders o JOIN order_lines l ON l.order_id = o.order_id
            GROUP BY o.order_id;",
    )
    .await
    .unwrap();
    let digest = |sql: &'static str| {
        let c = &c;
        async move {
            c.query_one(
                &format!("SELECT md5(string_agg(v::text, ',' ORDER BY v::text)) FROM ({sql}) v"),
                &[],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
        }
    };
    const VIEWS: [&str; 4] = [
        "SELECT * FROM order_sizes",
        "SELECT * FROM big_orders",
        "SELECT * FROM busy_orders",
        "SELECT * FROM order_days",
    ];
    let mut before = Vec::new();
    for v in VIEWS {
        before.push(digest(v).await);
    }
    let args = ["--tenant-column", "shop_id"];
    let has_column = || async {
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_attribute WHERE attname = 'shop_id' \
              AND attrelid = 'order_lines'::regclass",
        )
        .await
    };
    // Refused before any change, naming the materialized view.
    let out = run_on(&url, &[&["apply"][..], &args].concat());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("order_days"), "{text}");
    assert_eq!(has_column().await, 0, "nothing changed");
    // The change it asks for, run as printed.
    let analyze = run_on(
        &url,
        &[&["analyze", "--format", "json"][..], &args].concat(),
    );
    let report: serde_json::Value = serde_json::from_slice(&analyze.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let on = |rule: &str, object: &str| {
        findings
            .iter()
            .find(|f| {
                f["rule"] == rule && f["object"].as_str().is_some_and(|o| o.ends_with(object))
            })
            .unwrap_or_else(|| panic!("{rule} on {object}: {report}"))
    };
    let carried = on("view-relies-on-key", "order_sizes");
    assert_eq!(carried["automatic"], true, "{carried}");
    let fix = on("view-relies-on-key", "order_days")["fix"]
        .as_str()
        .unwrap()
        .to_string();
    let sql = &fix[fix.find("DROP MATERIALIZED VIEW").expect(&fix)..];
    shardready::db::exec_script(&c, sql).await.unwrap();
    // The application reads the views throughout apply.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, c) = (stop.clone(), connect(&t).await);
        tokio::spawn(async move {
            let (mut reads, mut errors) = (0, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match c.query("SELECT * FROM big_orders", &[]).await {
                    Ok(_) => reads += 1,
                    Err(e) => errors.push(shardready::conn::error_text(&e)),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (reads, errors)
        })
    };
    let out = run_on(&url, &[&["apply"][..], &args].concat());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("re-creating view order_sizes grouped by the new key"),
        "{text}"
    );
    stop.store(true, Ordering::SeqCst);
    let (reads, errors) = reader.await.unwrap();
    assert!(reads > 10, "the application kept reading ({reads})");
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    // The same rows; the view kept its options and now relies on the new
    // key.
    for (v, was) in VIEWS.iter().zip(&before) {
        assert_eq!(&digest(v).await, was, "{v}");
    }
    let (def, options): (String, Vec<String>) = {
        let r = c
            .query_one(
                "SELECT pg_get_viewdef('order_sizes'::regclass), reloptions::text[] \
                 FROM pg_class WHERE oid = 'order_sizes'::regclass",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(def.contains("GROUP BY o.order_id, o.shop_id"), "{def}");
    assert_eq!(options, ["security_barrier=true"]);
    // An updatable view with a check option, relying on the key in a
    // subquery: carried too, its option kept.
    let options: Vec<String> = c
        .query_one(
            "SELECT reloptions::text[] FROM pg_class WHERE oid = 'busy_orders'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(options, ["check_option=local"]);
    assert!(text.contains("re-creating view busy_orders"), "{text}");
    c.batch_execute("REFRESH MATERIALIZED VIEW order_days")
        .await
        .unwrap();
    // (The views join orders and their lines by order only: Citus would
    // refuse them once distributed, which verify names unless accepted.)
    let verify = run_on(
        &url,
        &[&["verify", "--accept-failing-queries"][..], &args].concat(),
    );
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// A table that has the tenant column with NULLs in it: the rows a foreign
/// key gives a tenant are filled online by apply (batched, governed, a
/// trigger filling the application's own NULL writes meanwhile), then NOT
/// NULL; a row no key gives a tenant is refused first, before any change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulls_in_an_existing_tenant_column_are_filled_online() {
    let (cl, t) = cluster();
    let url = cl.url();
    let c = connect(&t).await;
    shardready::db::exec_script(
        &c,
        "CREATE TABLE shops (shop_id integer PRIMARY KEY, name text NOT NULL);
         CREATE TABLE customers (customer_id integer PRIMARY KEY,
             shop_id integer NOT NULL REFERENCES shops (shop_id), name text);
         CREATE TABLE invoices (invoice_id integer PRIMARY KEY,
             customer_id integer REFERENCES customers (customer_id),
             shop_id integer REFERENCES shops (shop_id), total numeric NOT NULL);
         INSERT INTO shops SELECT g, 's' || g FROM generate_series(1, 4) g;
         INSERT INTO customers SELECT g, 1 + g % 4, 'c' || g FROM generate_series(1, 200) g;
         INSERT INTO invoices SELECT g, 1 + g % 200, CASE WHEN g % 3 = 0 THEN NULL ELSE 1 + (1 + g % 200) % 4 END, g % 50
           FROM generate_series(1, 3000) g;
         INSERT INTO invoices VALUES (3001, NULL, NULL, 1);
         ANALYZE;",
    )
    .await
    .unwrap();
    let args = ["--tenant-column", "shop_id"];
    let nulls =
        || async { scalar_i64(&c, "SELECT count(*) FROM invoices WHERE shop_id IS NULL").await };
    let digest = || async {
        c.query_one(
            "SELECT md5(string_agg(format('%s|%s|%s', invoice_id, customer_id, total), ',' ORDER BY invoice_id)) \
             FROM invoices WHERE invoice_id <= 3001",
            &[],
        )
        .await
        .unwrap()
        .get::<_, String>(0)
    };
    // The row no key gives a tenant: refused, nothing changed.
    let out = run_on(&url, &[&["apply"][..], &args].concat());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("does not give a tenant"), "{text}");
    assert_eq!(nulls().await, 1001, "nothing filled");
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'invoices'::regclass AND NOT tgisinternal").await,
        0
    );
    // Fixed by hand, as told; the others are apply's.
    c.batch_execute("UPDATE invoices SET shop_id = 1 WHERE customer_id IS NULL")
        .await
        .unwrap();
    let analyze = run_on(
        &url,
        &[&["analyze", "--format", "json"][..], &args].concat(),
    );
    let report: serde_json::Value = serde_json::from_slice(&analyze.stdout).unwrap();
    let fill = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "null-tenant")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(fill["automatic"], true, "{fill}");
    assert!(
        fill["message"].as_str().unwrap().starts_with("1000 rows"),
        "{fill}"
    );
    let before = digest().await;
    // The application writes invoices without the tenant for a while (the
    // way that left the NULLs), then with it.
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let (stop, c) = (stop.clone(), connect(&t).await);
        tokio::spawn(async move {
            let (mut id, mut errors) = (10_000, Vec::new());
            let start = std::time::Instant::now();
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                let shop = (start.elapsed() > Duration::from_millis(1500))
                    .then_some(1 + (1 + id % 200) % 4);
                if let Err(e) = c
                    .execute(
                        "INSERT INTO invoices VALUES ($1, 1 + $1 % 200, $2, 5)",
                        &[&id, &shop],
                    )
                    .await
                {
                    errors.push(shardready::conn::error_text(&e));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (id - 10_000, errors)
        })
    };
    let out = run_on(
        &url,
        &[&["apply", "--trigger-window", "300ms"][..], &args].concat(),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("backfill invoices.shop_id from customers"),
        "{text}"
    );
    assert!(
        !text.contains("add shop_id"),
        "the column is the user's: {text}"
    );
    stop.store(true, Ordering::SeqCst);
    let (written, errors) = app.await.unwrap();
    assert!(written > 20, "the application kept writing ({written})");
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    // Every invoice has its customer's shop, NOT NULL; nothing else changed.
    assert_eq!(nulls().await, 0);
    let wrong = scalar_i64(
        &c,
        "SELECT count(*) FROM invoices i JOIN customers k USING (customer_id) \
          WHERE i.shop_id <> k.shop_id",
    )
    .await;
    assert_eq!(wrong, 0);
    assert_eq!(digest().await, before);
    let verify = run_on(&url, &[&["verify"][..], &args].concat());
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    common::assert_no_helpers_left(&c).await;
}

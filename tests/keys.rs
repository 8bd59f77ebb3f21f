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

/// A payment belongs to an invoice or to a payment request (two nullable
/// keys; a refund hangs from its payment): no single key gives every row
/// its tenant, together they do. Rows whose keys disagree, and rows with
/// neither, are refused before any change; then apply fills every row
/// through whichever key is set, online, the application's own writes
/// through either key included, and the refunds through their payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_reached_through_one_of_several_nullable_keys_is_prepared_online() {
    let (cl, t) = common::citus_cluster(
        "a_table_reached_through_one_of_several_nullable_keys_is_prepared_online",
        1,
    )
    .unwrap_or_else(cluster);
    let url = cl.url();
    let c = connect(&t).await;
    shardready::db::exec_script(
        &c,
        "CREATE TABLE shops (shop_id integer PRIMARY KEY, name text NOT NULL);
         CREATE TABLE invoices (invoice_id integer PRIMARY KEY,
             shop_id integer NOT NULL REFERENCES shops (shop_id));
         CREATE TABLE payment_requests (request_id integer PRIMARY KEY,
             shop_id integer NOT NULL REFERENCES shops (shop_id));
         CREATE TABLE payments (payment_id integer PRIMARY KEY,
             invoice_id integer REFERENCES invoices (invoice_id),
             request_id integer REFERENCES payment_requests (request_id),
             amount numeric NOT NULL);
         CREATE TABLE refunds (refund_id integer PRIMARY KEY,
             payment_id integer NOT NULL REFERENCES payments (payment_id), amount numeric NOT NULL);
         INSERT INTO shops SELECT g, 's' || g FROM generate_series(1, 4) g;
         INSERT INTO invoices SELECT g, 1 + g % 4 FROM generate_series(1, 300) g;
         INSERT INTO payment_requests SELECT g, 1 + (g + 1) % 4 FROM generate_series(1, 300) g;
         INSERT INTO payments SELECT g, CASE WHEN g % 2 = 1 THEN 1 + g % 300 END,
             CASE WHEN g % 2 = 0 THEN 1 + g % 300 END, g % 70 FROM generate_series(1, 3000) g;
         INSERT INTO refunds SELECT g, g * 3, 1 FROM generate_series(1, 1000) g;
         -- both keys set, of different shops
         INSERT INTO payments VALUES (3001, 1, 1, 9);
         ANALYZE;",
    )
    .await
    .unwrap();
    let args = ["--tenant-column", "shop_id"];
    let apply_text = |extra: &[&str]| {
        let out = run_on(&url, &[&["apply"][..], extra, &args].concat());
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let columns = || async {
        scalar_i64(
            &c,
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'shop_id' \
             AND table_name IN ('payments', 'refunds')",
        )
        .await
    };
    // Keys that disagree: refused, nothing changed.
    let (ok, text) = apply_text(&[]);
    assert!(!ok, "{text}");
    assert!(text.contains("cross-tenant-rows"), "{text}");
    assert!(text.contains("3001"), "the row is named: {text}");
    assert_eq!(columns().await, 0, "nothing changed");
    // Made to agree; a payment with neither key: refused too.
    c.batch_execute(
        "UPDATE payments SET request_id = 4 WHERE payment_id = 3001;
         INSERT INTO payments VALUES (3002, NULL, NULL, 1);",
    )
    .await
    .unwrap();
    let (ok, text) = apply_text(&[]);
    assert!(!ok, "{text}");
    assert!(text.contains("orphan-rows"), "{text}");
    assert!(text.contains(", nor along request_id"), "{text}");
    assert_eq!(columns().await, 0, "nothing changed");
    c.batch_execute("DELETE FROM payments WHERE payment_id = 3002")
        .await
        .unwrap();
    // The plan shows both keys.
    let plan = run_on(&url, &[&["plan"][..], &args].concat());
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_ne!(plan.status.code(), Some(1), "{text}");
    assert!(
        text.contains("backfill payments.shop_id from invoices or payment_requests")
            && text.contains("backfill refunds.shop_id from invoices or payment_requests"),
        "{text}"
    );
    // The application records payments through either key, without the
    // tenant (the sync trigger fills it) until the column is NOT NULL,
    // then with it, as an updated application would.
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let (stop, c) = (stop.clone(), connect(&t).await);
        tokio::spawn(async move {
            let (mut id, mut errors) = (10_000, Vec::new());
            let mut updated = false;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                let (invoice, request) = if id % 2 == 0 {
                    (Some(1 + id % 300), None)
                } else {
                    (None, Some(1 + id % 300))
                };
                updated = updated || not_null(&c, "payments", "shop_id").await;
                let written = if updated {
                    let shop: i32 = match (invoice, request) {
                        (Some(i), _) => 1 + i % 4,
                        (_, Some(r)) => 1 + (r + 1) % 4,
                        _ => unreachable!(),
                    };
                    c.execute(
                        "INSERT INTO payments (payment_id, invoice_id, request_id, amount, shop_id) \
                         VALUES ($1, $2, $3, 5, $4)",
                        &[&id, &invoice, &request, &shop],
                    )
                    .await
                } else {
                    c.execute(
                        "INSERT INTO payments (payment_id, invoice_id, request_id, amount) \
                         VALUES ($1, $2, $3, 5)",
                        &[&id, &invoice, &request],
                    )
                    .await
                };
                if let Err(e) = written {
                    errors.push(shardready::conn::error_text(&e));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (id - 10_000, errors)
        })
    };
    let (ok, text) = apply_text(&["--trigger-window", "300ms"]);
    stop.store(true, Ordering::SeqCst);
    let (written, errors) = app.await.unwrap();
    assert!(ok, "{text}");
    assert!(written > 20, "the application kept writing ({written})");
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    // Every payment and refund has the tenant of the key that is set.
    let wrong = scalar_i64(
        &c,
        "SELECT count(*) FROM payments p \
           LEFT JOIN invoices i USING (invoice_id) \
           LEFT JOIN payment_requests r USING (request_id) \
          WHERE p.shop_id IS DISTINCT FROM coalesce(i.shop_id, r.shop_id)",
    )
    .await;
    assert_eq!(wrong, 0);
    let wrong = scalar_i64(
        &c,
        "SELECT count(*) FROM refunds f JOIN payments p USING (payment_id) \
          WHERE f.shop_id IS DISTINCT FROM p.shop_id",
    )
    .await;
    assert_eq!(wrong, 0);
    assert!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM payments WHERE invoice_id IS NULL AND payment_id > 10000"
        )
        .await
            > 0,
        "rows written through the second key are there"
    );
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_attribute WHERE attname = 'shop_id' AND attnotnull \
             AND attrelid IN ('payments'::regclass, 'refunds'::regclass)"
        )
        .await,
        2
    );
    let verify = run_on(&url, &[&["verify"][..], &args].concat());
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    common::assert_no_helpers_left(&c).await;
    distributed_unchanged(&c, &url, &["payments", "refunds"], 5).await;
}

/// Where Citus is installed: `distribute` (as verify's next line says)
/// makes `tables` and the rest distributed (`count` tables in all), every
/// row and its tenant the same as before.
async fn distributed_unchanged(c: &tokio_postgres::Client, url: &str, tables: &[&str], count: i64) {
    if !shardready::catalog::extension_installed(c, "citus")
        .await
        .unwrap()
    {
        return;
    }
    let digest = || async {
        let mut out = Vec::new();
        for t in tables {
            out.push(
                c.query_one(
                    &format!("SELECT count(*), md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x"),
                    &[],
                )
                .await
                .unwrap()
                .get::<_, String>(1),
            );
        }
        out
    };
    let before = digest().await;
    let out = run_on(url, &["distribute"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        scalar_i64(
            c,
            "SELECT count(*) FROM pg_dist_partition WHERE partmethod = 'h'"
        )
        .await,
        count
    );
    assert_eq!(digest().await, before, "distributed, the same rows");
}

/// A polymorphic pair without a foreign key (Rails' commentable_type /
/// commentable_id): analyze reads the types the rows name, matches them
/// to tenant tables and offers the `--path`; that command, run as
/// printed under the application's writes, gives every comment the
/// tenant of the post or photo it belongs to. A type no table is named
/// after is said, and a row of a type the path does not name is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polymorphic_pair_is_offered_and_taken_as_a_path() {
    let (cl, t) = common::citus_cluster("a_polymorphic_pair_is_offered_and_taken_as_a_path", 1)
        .unwrap_or_else(cluster);
    let url = cl.url();
    let c = connect(&t).await;
    shardready::db::exec_script(
        &c,
        "CREATE TABLE accounts (account_id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE posts (id bigint PRIMARY KEY,
             account_id bigint NOT NULL REFERENCES accounts (account_id), title text);
         CREATE TABLE photos (id bigint PRIMARY KEY,
             account_id bigint NOT NULL REFERENCES accounts (account_id), url text);
         CREATE TABLE comments (id bigint PRIMARY KEY, commentable_type varchar NOT NULL,
             commentable_id bigint NOT NULL, body text NOT NULL);
         INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 5) g;
         INSERT INTO posts SELECT g, 1 + g % 5, 't' FROM generate_series(1, 200) g;
         INSERT INTO photos SELECT g, 1 + (g + 2) % 5, 'u' FROM generate_series(1, 200) g;
         INSERT INTO comments SELECT g, CASE WHEN g % 3 = 0 THEN 'Photo' ELSE 'Post' END,
             1 + g % 200, 'c' FROM generate_series(1, 3000) g;
         INSERT INTO comments VALUES (3001, 'Video', 1, 'v');
         CREATE TABLE likes (id bigint PRIMARY KEY,
             comment_id bigint NOT NULL REFERENCES comments (id));
         INSERT INTO likes SELECT g, 1 + g % 3000 FROM generate_series(1, 2000) g;
         ANALYZE;",
    )
    .await
    .unwrap();
    let findings = || {
        let out = run_on(&url, &["analyze", "--format", "json"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == "polymorphic-path")
            .cloned()
            .collect::<Vec<_>>()
    };
    // A type no table is named after: said, with the command to complete.
    let f = findings();
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("no tenant table is named after Video"),
        "{f:?}"
    );
    // Named anyway, with a path that leaves it out: its row is refused.
    let out = run_on(
        &url,
        &[
            "apply",
            "--path",
            "comments=commentable_id:Post=posts,Photo=photos",
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("orphan-rows"), "{text}");
    assert!(text.contains("3001"), "{text}");
    c.batch_execute("DELETE FROM comments WHERE id = 3001")
        .await
        .unwrap();
    // Offered whole now: the command as printed.
    let f = findings();
    assert_eq!(f.len(), 1, "{f:?}");
    let fix = f[0]["fix"].as_str().unwrap();
    let command = fix
        .split('`')
        .find(|s| s.starts_with("shardready apply"))
        .unwrap_or_else(|| panic!("{fix}"));
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    assert!(
        args.iter()
            .any(|a| a.starts_with("comments=commentable_id:")
                && a.contains("Post=posts")
                && a.contains("Photo=photos")),
        "{command}"
    );
    // The application comments on posts and photos meanwhile, without the
    // tenant until the column is NOT NULL.
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let (stop, c) = (stop.clone(), connect(&t).await);
        tokio::spawn(async move {
            let (mut id, mut errors) = (10_000i64, Vec::new());
            let mut updated = false;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                let (kind, parent) = (if id % 2 == 0 { "Post" } else { "Photo" }, 1 + id % 200);
                updated = updated || not_null(&c, "comments", "account_id").await;
                let written = if updated {
                    c.execute(
                        "INSERT INTO comments (id, commentable_type, commentable_id, body, account_id) \
                         SELECT $1::bigint, $2::varchar, $3::bigint, 'n', account_id FROM posts \
                          WHERE $2::varchar = 'Post' AND id = $3::bigint \
                         UNION ALL SELECT $1::bigint, $2::varchar, $3::bigint, 'n', account_id FROM photos \
                          WHERE $2::varchar = 'Photo' AND id = $3::bigint",
                        &[&id, &kind, &parent],
                    )
                    .await
                } else {
                    c.execute(
                        "INSERT INTO comments (id, commentable_type, commentable_id, body) \
                         VALUES ($1, $2, $3, 'n')",
                        &[&id, &kind, &parent],
                    )
                    .await
                };
                if let Err(e) = written {
                    errors.push(shardready::conn::error_text(&e));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (id - 10_000, errors)
        })
    };
    let out = run_on(&url, &[&args[..], &["--trigger-window", "300ms"]].concat());
    stop.store(true, Ordering::SeqCst);
    let (written, errors) = app.await.unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(written > 20, "the application kept writing ({written})");
    assert!(
        errors.is_empty(),
        "the application saw errors: {:?}",
        &errors[..errors.len().min(3)]
    );
    let wrong = scalar_i64(
        &c,
        "SELECT count(*) FROM comments k \
           LEFT JOIN posts p ON k.commentable_type = 'Post' AND p.id = k.commentable_id \
           LEFT JOIN photos f ON k.commentable_type = 'Photo' AND f.id = k.commentable_id \
          WHERE k.account_id IS DISTINCT FROM coalesce(p.account_id, f.account_id)",
    )
    .await;
    assert_eq!(wrong, 0);
    // A like (under a comment) has its comment's tenant, whichever type.
    let wrong = scalar_i64(
        &c,
        "SELECT count(*) FROM likes l JOIN comments k ON k.id = l.comment_id \
          WHERE l.account_id IS DISTINCT FROM k.account_id",
    )
    .await;
    assert_eq!(wrong, 0);
    // As apply's "next:" line says: verify takes what apply recorded.
    let verify = run_on(&url, &["verify"]);
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    common::assert_no_helpers_left(&c).await;
    distributed_unchanged(&c, &url, &["comments", "likes"], 5).await;
}

/// Whether `table.column` is NOT NULL yet (an application updated to
/// write the column starts writing it then).
async fn not_null(c: &tokio_postgres::Client, table: &str, column: &str) -> bool {
    c.query_opt(
        "SELECT 1 FROM pg_attribute WHERE attrelid = $1::text::regclass \
         AND attname = $2 AND attnotnull",
        &[&table, &column],
    )
    .await
    .unwrap()
    .is_some()
}

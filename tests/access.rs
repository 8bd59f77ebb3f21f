//! The application's reads through a preparation: the plan knows the
//! application's statements (pg_stat_statements, the functions' bodies,
//! `--queries FILE`) and keeps the index each one looks rows up by. An
//! application that looks orders and line items up by their own ids keeps
//! its index scans after `apply` (the keys become (id, store_id)), while
//! a table only read within a store gets (store_id, id).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{connect, run_on, scalar_i64};
use tokio_postgres::Client;

/// The key columns of `table`'s primary key, in order.
async fn pk_columns(client: &Client, table: &str) -> Vec<String> {
    client
        .query_one(
            "SELECT array_agg(a.attname::text ORDER BY k.o) \
             FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o), pg_attribute a \
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary \
               AND a.attrelid = i.indrelid AND a.attnum = k.n",
            &[&table],
        )
        .await
        .unwrap()
        .get(0)
}

/// The plan's node types for `sql` (EXPLAIN, JSON).
async fn plan_nodes(client: &Client, sql: &str) -> String {
    let row = client
        .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[])
        .await
        .unwrap();
    let v: serde_json::Value = row.get(0);
    let mut nodes = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(t) = m.get("Node Type").and_then(|t| t.as_str()) {
                    out.push(t.to_string());
                }
                m.values().for_each(|x| walk(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&v, &mut nodes);
    nodes.join(" > ")
}

/// After apply stopped on a lost access path: `index` was built back and
/// is valid, and `apply` resumes and finishes the plan.
async fn built_back_and_resumed(client: &Client, url: &str, index: &str) {
    assert_eq!(
        scalar_i64(
            client,
            &format!(
                "SELECT count(*) FROM pg_index WHERE indexrelid = '{index}'::regclass \
                 AND indisvalid"
            )
        )
        .await,
        1
    );
    let out = run_on(url, &["apply", "--trigger-window", "300ms"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_looks_rows_up_by_id_keeps_its_index_through_apply() {
    let (c, t, client) = common::tailspin_with_statements(0.02).await;
    let url = c.url();
    let max_order = scalar_i64(&client, "SELECT max(order_id) FROM orders").await;
    let max_item = scalar_i64(&client, "SELECT max(line_item_id) FROM line_items").await;
    // A store's products, read within the store (what create_orders does).
    client
        .query(
            "SELECT count(*) FROM products WHERE store_id = $1",
            &[&5_i64],
        )
        .await
        .unwrap();

    // The application: its own connection, looking orders and line items
    // up by their ids (prepared statements, as drivers send them), a few
    // hundred a second; each call's latency is kept with the phase it ran
    // in (0 before apply, 1 during, 2 after).
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::<(u64, f64)>::new()));
    let app = {
        let (stop, phase, errors, samples) =
            (stop.clone(), phase.clone(), errors.clone(), samples.clone());
        let target = t.with_application_name("the-application");
        tokio::spawn(async move {
            let c = target.connect().await.unwrap();
            let read = c
                .prepare("SELECT status FROM orders WHERE order_id = $1")
                .await
                .unwrap();
            let write = c
                .prepare("UPDATE line_items SET quantity = quantity WHERE line_item_id = $1")
                .await
                .unwrap();
            // A join through the old key: a line item's order.
            let join = c
                .prepare(
                    "SELECT o.status FROM line_items li JOIN orders o ON o.order_id = li.order_id \
                     WHERE li.line_item_id = $1",
                )
                .await
                .unwrap();
            let mut i: i64 = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let started = Instant::now();
                let item = 1 + (i * 104729) % max_item;
                let ok = c
                    .query_opt(&read, &[&(1 + (i * 7919) % max_order)])
                    .await
                    .is_ok()
                    && c.execute(&write, &[&item]).await.is_ok()
                    && c.query_opt(&join, &[&item]).await.is_ok();
                if !ok {
                    errors.fetch_add(1, Ordering::SeqCst);
                }
                samples.lock().unwrap().push((
                    phase.load(Ordering::SeqCst),
                    started.elapsed().as_secs_f64() * 1e3,
                ));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // pg_stat_statements has seen the application's lookups.
    common::wait_for_calls(&client, "%FROM orders WHERE order_id = $1%", 100).await;

    // The plan says what it keeps, and why.
    let out = run_on(&url, &["plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("  orders.orders_pkey → (order_id, store_id), key-first"),
        "{text}"
    );
    assert!(text.contains("WHERE order_id = $1"), "{text}");
    assert!(
        text.contains("  products.products_pkey → (store_id, product_id), tenant-first"),
        "{text}"
    );

    // The third choice: refuse before any change, naming each statement
    // and the filter to add; --key-order for the table is a choice made.
    let out = run_on(&url, &["apply", "--refuse-lost-lookups"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("[lookup-loses-index] orders"), "{said}");
    assert!(
        said.contains("WHERE order_id = $1")
            && said.contains("add orders.store_id = $2 (a new parameter: the tenant's id)"),
        "{said}"
    );
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'shardready'"
        )
        .await,
        0,
        "nothing changed before the refusal"
    );
    let out = run_on(
        &url,
        &[
            "plan",
            "--refuse-lost-lookups",
            "--key-order",
            "orders=key-first",
            "--key-order",
            "line_items=key-first",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    phase.store(1, Ordering::SeqCst);
    shardready::apply::apply(
        &t,
        &shardready::apply::ApplyOptions {
            progress: false,
            trigger_window: Duration::from_millis(300),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("apply finishes");
    phase.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    app.await.unwrap();

    // The keys the plan chose, in place and enforced.
    assert_eq!(
        pk_columns(&client, "orders").await,
        ["order_id", "store_id"]
    );
    assert_eq!(
        pk_columns(&client, "line_items").await,
        ["line_item_id", "store_id"]
    );
    assert_eq!(
        pk_columns(&client, "products").await,
        ["store_id", "product_id"]
    );
    // The join through the old key is one Citus will refuse once the
    // tables are distributed (not on store_id): verify names it, and
    // passes when the user accepts it.
    let out = run_on(&url, &["verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("[non-colocated-join] line_items"),
        "{text}"
    );
    let out = run_on(&url, &["verify", "--accept-failing-queries"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The application's lookups still use an index, the join too.
    for sql in [
        "SELECT status FROM orders WHERE order_id = 7",
        "SELECT quantity FROM line_items WHERE line_item_id = 7",
        "SELECT o.status FROM line_items li JOIN orders o ON o.order_id = li.order_id \
         WHERE li.line_item_id = 7",
    ] {
        let nodes = plan_nodes(&client, sql).await;
        assert!(
            nodes.contains("Index") && !nodes.contains("Seq Scan"),
            "{sql}: {nodes}"
        );
    }
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "no application call failed"
    );
    let samples = samples.lock().unwrap().clone();
    let mut report = Vec::new();
    for (p, name) in [(0, "before"), (1, "during"), (2, "after")] {
        let mut v: Vec<f64> = samples
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, ms)| *ms)
            .collect();
        assert!(!v.is_empty(), "the application ran {name} apply");
        let n = v.len();
        report.push(format!(
            "{name}: {n} calls, p50 {:.2} ms, p99 {:.2} ms",
            percentile(&mut v, 0.5),
            percentile(&mut v, 0.99)
        ));
    }
    eprintln!("the id-lookup application: {}", report.join("; "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_in_functions_and_files_decide_the_key_order() {
    let (c, t) = common::cluster();
    let url = c.url();
    let mut client = connect(&t).await;
    shardready::ingest::create_tailspin_schema(&client, false)
        .await
        .unwrap();
    shardready::ingest::load_tailspin(&mut client, None, 0.005, 42, false)
        .await
        .unwrap();
    // No pg_stat_statements here: the plan says so.
    let out = run_on(&url, &["plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pg_stat_statements: not installed in this database"),
        "{text}"
    );
    assert!(
        text.contains("no statement of the application is known"),
        "{text}"
    );
    // A function that looks an order up by its id alone.
    client
        .batch_execute(
            "CREATE FUNCTION order_status(p bigint) RETURNS text LANGUAGE plpgsql AS $$\n\
             DECLARE s text;\n\
             BEGIN\n  SELECT status INTO s FROM orders WHERE order_id = p;\n  RETURN s;\nEND $$",
        )
        .await
        .unwrap();
    // A file of the application's statements, and a server log.
    let dir = common::temp_dir();
    let file = dir.path().join("queries.sql");
    std::fs::write(
        &file,
        "-- the application's statements\nSELECT * FROM stores WHERE store_id = $1;\n\
         DELETE FROM line_items\n  WHERE line_item_id = $1;\n",
    )
    .unwrap();
    let log = dir.path().join("postgresql.log");
    std::fs::write(
        &log,
        "2026-12-07 10:00:00 UTC [77] LOG:  execute S_1: SELECT * FROM products p WHERE p.product_id = $1\n\
         2026-12-07 10:00:01 UTC [77] LOG:  checkpoint starting: time\n",
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();
    let log_arg = log.to_str().unwrap();
    let out = run_on(
        &url,
        &[
            "plan",
            "--format",
            "json",
            "--queries",
            file_arg,
            "--queries",
            log_arg,
        ],
    );
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let choice = |table: &str| {
        plan["access"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["table"]["name"] == table)
            .unwrap_or_else(|| panic!("a choice for {table}: {plan}"))
            .clone()
    };
    assert_eq!(choice("orders")["order"], "key-first");
    assert_eq!(
        choice("orders")["columns"],
        serde_json::json!(["order_id", "store_id"])
    );
    assert!(choice("orders")["statements"][0]
        .as_str()
        .unwrap()
        .starts_with("function public.order_status"));
    assert_eq!(choice("line_items")["order"], "key-first");
    assert!(choice("line_items")["statements"][0]
        .as_str()
        .unwrap()
        .starts_with(&format!("{file_arg}:3")));
    assert_eq!(choice("products")["order"], "key-first");
    assert!(choice("products")["statements"][0]
        .as_str()
        .unwrap()
        .starts_with(&format!("{log_arg}:1")));
    // The user's choice wins, and the SQL script says the same.
    let out = run_on(
        &url,
        &[
            "plan",
            "--format",
            "sql",
            "--queries",
            file_arg,
            "--key-order",
            "orders=tenant-first",
        ],
    );
    let sql = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{sql}");
    assert!(
        sql.contains(
            "--   orders.orders_pkey → (store_id, order_id), tenant-first: --key-order orders=tenant-first"
        ),
        "{sql}"
    );
    // ...and what apply does for the statements that look orders up by id.
    assert!(
        sql.contains(
            "apply builds the index orders_order_id_lookup (order_id) concurrently before the swap"
        ),
        "{sql}"
    );
    assert!(
        sql.contains("CREATE UNIQUE INDEX CONCURRENTLY \"line_items_pkey_shardready\" ON \"public\".\"line_items\" (\"line_item_id\", \"store_id\");"),
        "{sql}"
    );
    // The estimate counts that index: the orders key's build costs more
    // time and disk than with the old key first (no index to add).
    let orders_index = |order: &str, more: &[&str]| {
        let key_order = format!("orders={order}");
        let mut args = vec![
            "plan",
            "--format",
            "json",
            "--queries",
            file_arg,
            "--key-order",
            &key_order,
        ];
        args.extend_from_slice(more);
        let out = run_on(&url, &args);
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let step = v["estimate"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "unique-index:orders.orders_pkey_shardready")
            .cloned()
            .unwrap_or_else(|| panic!("the orders key's step: {v:#}"));
        (
            step["seconds"].as_f64().unwrap(),
            step["disk_bytes"].as_i64().unwrap(),
        )
    };
    let (with_lookup, key_first) = (
        orders_index("tenant-first", &[]),
        orders_index("key-first", &[]),
    );
    assert!(
        with_lookup.0 > key_first.0 && with_lookup.1 > key_first.1,
        "{with_lookup:?} vs {key_first:?}"
    );
    // With --no-lookup-index, apply builds none, and the estimate counts
    // none.
    let without = orders_index("tenant-first", &["--no-lookup-index"]);
    assert!(
        with_lookup.0 > without.0 && with_lookup.1 > without.1,
        "{with_lookup:?} vs {without:?}"
    );
    // apply follows the plan: the keys are where it said, and Citus's
    // rules hold (verify). The application meanwhile is the function
    // alone, called over and over: its statement is known only from the
    // function's body.
    let max_order = scalar_i64(&client, "SELECT max(order_id) FROM orders").await;
    let app = common::send_repeatedly(
        &t,
        "SELECT order_status($1)",
        max_order,
        Duration::from_millis(5),
    );
    let before = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = Instant::now();
    let out = run_on(
        &url,
        &[
            "apply",
            "--queries",
            file_arg,
            "--key-order",
            "orders=tenant-first",
            "--trigger-window",
            "300ms",
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (failed, calls) = common::stop_sending_timed(app).await;
    assert_eq!(failed, 0, "no call of the function failed");
    eprintln!(
        "the function-only application: {}",
        common::latency_by_phase(
            &calls,
            &[("before", before), ("during", during), ("after", after)]
        )
    );
    assert_eq!(
        pk_columns(&client, "orders").await,
        ["store_id", "order_id"]
    );
    assert_eq!(
        pk_columns(&client, "line_items").await,
        ["line_item_id", "store_id"]
    );
    // The function's lookup kept an index: the one apply built for it.
    let nodes = plan_nodes(&client, "SELECT status FROM orders WHERE order_id = 7").await;
    assert!(
        nodes.contains("Index") && !nodes.contains("Seq Scan"),
        "{nodes}"
    );
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_order_id_lookup'"
        )
        .await,
        1
    );
    let out = run_on(&url, &["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_lost_its_access_path_in_a_swap_gets_it_back() {
    let (c, _t, client) = common::tailspin_with_statements(0.02).await;
    let url = c.url();
    // The application's lookup by id, seen by pg_stat_statements.
    let lookup = client
        .prepare("SELECT status FROM orders WHERE order_id = $1")
        .await
        .unwrap();
    for id in 1..50_i64 {
        client.query_opt(&lookup, &[&id]).await.unwrap();
    }
    // A budget relative to the application's p99 needs a measured p99.
    let out = run_on(&url, &["apply", "--app-p99-limit", "1.5x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("only --workload RATE measures here"),
        "{err}"
    );
    // The user puts the tenant first anyway: the probe measures the
    // lookup's plan before and after the swap and builds its index back.
    // The application's traffic runs beside it, governed within 1.5x its
    // own p99.
    let out = run_on(
        &url,
        &[
            "apply",
            "--key-order",
            "orders=tenant-first",
            "--trigger-window",
            "300ms",
            "--workload",
            "600/min",
            "--app-p99-limit",
            "1.5x",
            "--format",
            "json",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the application's latency budget: "), "{err}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept = &report["kept_paths"];
    assert_eq!(kept.as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(kept[0]["table"]["name"], "orders");
    assert_eq!(kept[0]["index"], "orders_order_id_lookup");
    assert_eq!(kept[0]["columns"], serde_json::json!(["order_id"]));
    // The loss is foreseen: the index is there before the swap.
    assert_eq!(kept[0]["built"], "before the swap", "{report}");
    common::assert_no_helpers_left(&client).await;
    let line = kept[0]["statements"][0].as_str().unwrap();
    assert!(
        line.contains("SELECT status FROM orders WHERE order_id = $1"),
        "{line}"
    );
    assert_eq!(
        kept[0]["drop_sql"],
        "DROP INDEX CONCURRENTLY \"public\".\"orders_order_id_lookup\";"
    );
    assert_eq!(
        pk_columns(&client, "orders").await,
        ["store_id", "order_id"]
    );
    let nodes = plan_nodes(&client, "SELECT status FROM orders WHERE order_id = 7").await;
    assert!(nodes.contains("Index"), "{nodes}");
    let out = run_on(&url, &["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `shardready queries`: the statements that will run on every shard once
/// distributed, with the filter to add to each; the listing is recorded,
/// and after the application's change the next one calls the old
/// statement rewritten, naming the statement that replaced it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_lists_what_fans_out_and_sees_it_rewritten() {
    let (c, t, client) = common::tailspin_with_statements(0.01).await;
    let url = c.url();
    let max_order = scalar_i64(&client, "SELECT max(order_id) FROM orders").await;
    client
        .batch_execute(
            "CREATE FUNCTION new_orders() RETURNS bigint LANGUAGE sql \
             AS 'SELECT count(*) FROM orders WHERE status = ''new'''",
        )
        .await
        .unwrap();
    const OLD: &str = "UPDATE orders SET status = status WHERE order_id = $1";
    const NEW: &str =
        "UPDATE orders SET status = status WHERE store_id = 1 + $1::bigint % 10 AND order_id = $1";
    let listing = |args: &[&str]| {
        let out = run_on(&url, &[&["queries", "--window", "2s"][..], args].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let find = |v: &serde_json::Value, needle: &str| -> serde_json::Value {
        v["statements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["statement"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("{needle} is listed: {v:#}"))
            .clone()
    };

    let old = common::send_repeatedly(&t, OLD, max_order, Duration::from_millis(20));
    common::wait_for_calls(&client, OLD, 20).await;
    let out = listing(&["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "shardready.queries/v1");
    assert_eq!(v["recorded"], true);
    let update = find(&v, OLD);
    assert_eq!(update["status"], "still-seen", "{update}");
    assert!(update["calls_per_s"].as_f64().unwrap() >= 1.0, "{update}");
    assert_eq!(
        update["add"],
        serde_json::json!(["orders.store_id = $2 (a new parameter: the tenant's id)"])
    );
    let id = update["id"].as_str().unwrap().to_string();
    let queryid = scalar_i64(
        &client,
        &format!("SELECT queryid FROM pg_stat_statements WHERE query = '{OLD}' LIMIT 1"),
    )
    .await;
    assert_eq!(id, queryid.to_string());
    let function = find(&v, "SELECT count(*) FROM orders WHERE status = 'new'");
    assert_eq!(function["origin"], "function public.new_orders");
    assert!(function["id"].as_str().unwrap().starts_with("fp:"));
    assert_eq!(
        function["add"],
        serde_json::json!(["orders.store_id = <the tenant's id>"])
    );
    let recorded = scalar_i64(
        &client,
        "SELECT count(*) FROM shardready.fan_out_statements",
    )
    .await;
    assert!(recorded >= 2, "{recorded}");

    // The application's change: the update filters by the tenant now.
    assert_eq!(common::stop_sending(old).await, 0);
    let new = common::send_repeatedly(&t, NEW, max_order, Duration::from_millis(20));
    common::wait_for_calls(
        &client,
        "UPDATE orders SET status = status WHERE store_id = %",
        20,
    )
    .await;
    let out = listing(&["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let update = find(&v, OLD);
    assert_eq!(update["status"], "rewritten", "{update}");
    let by: i64 = update["by"].as_str().unwrap().parse().unwrap();
    let new_id = scalar_i64(
        &client,
        "SELECT queryid FROM pg_stat_statements \
         WHERE query LIKE 'UPDATE orders SET status = status WHERE store_id = %' LIMIT 1",
    )
    .await;
    assert_eq!(by, new_id);
    assert!(update["first_listed"].is_string(), "{update}");
    // The rewritten statement is not listed: it is routed to one shard.
    assert!(!v["statements"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"].as_str() == Some(new_id.to_string().as_str())));
    // For people, without recording.
    let out = listing(&["--no-record"]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        text.contains(&format!("{id}  [rewritten ({new_id})")),
        "{text}"
    );
    assert!(
        text.contains("add: orders.store_id = <the tenant's id>"),
        "{text}"
    );
    assert!(!text.contains("Recorded in"), "{text}");
    assert_eq!(common::stop_sending(new).await, 0);
}

/// A loss the prediction cannot see (a range scan the old key served,
/// behind a lookup by another column) is measured right after the swap:
/// its index is built back and apply stops there, naming the statement;
/// rerun, it finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unforeseen_loss_after_a_swap_stops_apply_with_the_path_back() {
    let (c, _t, client) = common::tailspin_with_statements(0.02).await;
    let url = c.url();
    const RANGE: &str =
        "SELECT order_id FROM orders WHERE status = $1 AND order_id > $2 ORDER BY order_id LIMIT 10";
    let range = client.prepare(RANGE).await.unwrap();
    for id in 1..30_i64 {
        client.query(&range, &[&"new", &(id * 100)]).await.unwrap();
    }
    // pg_stat_statements keeps it with the LIMIT as a parameter.
    common::wait_for_calls(
        &client,
        "SELECT order_id FROM orders WHERE status = $1 AND order_id > $2%",
        29,
    )
    .await;
    let out = run_on(
        &url,
        &[
            "apply",
            "--key-order",
            "orders=tenant-first",
            "--trigger-window",
            "300ms",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("stopped after swapping the key of orders")
            && err.contains("WHERE status = $1 AND order_id > $2 ORDER BY order_id"),
        "{err}"
    );
    // Named with its cost before, after, and with the index back; and how
    // to drop the index later.
    assert!(
        err.contains("with the index") && err.contains("DROP INDEX CONCURRENTLY"),
        "{err}"
    );
    assert_eq!(
        pk_columns(&client, "orders").await,
        ["store_id", "order_id"]
    );
    // Built back, valid (its cost with it is in the message); the rest of
    // the plan is still to do: apply resumes and finishes.
    built_back_and_resumed(&client, &url, "orders_order_id_lookup").await;
    let out = run_on(&url, &["verify"]);
    assert!(out.status.success(), "{out:?}");
}

/// A statement no plan can show losing its index (a function's dynamic
/// SQL, invisible to the probe's costs and to the function's parsed
/// body), which the application starts sending only once apply runs, is
/// caught by its mean time in pg_stat_statements across the swap: apply
/// builds the old key's index back and stops, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timed_slower_after_a_swap_gets_its_path_back() {
    let (c, t, client) = common::tailspin_with_statements(0.02).await;
    let url = c.url();
    client
        .batch_execute(
            "CREATE TABLE order_notes (note_id bigint PRIMARY KEY, \
               store_id bigint NOT NULL REFERENCES stores (store_id), body text); \
             INSERT INTO order_notes \
               SELECT g, (SELECT min(store_id) FROM stores) + g % 3, 'note ' || g \
               FROM generate_series(1, 300000) g; \
             ANALYZE order_notes; \
             CREATE FUNCTION note_body(id bigint) RETURNS text LANGUAGE plpgsql AS $$ \
             DECLARE b text; \
             BEGIN \
               EXECUTE format('SELECT body FROM order_notes WHERE note_id = %s', id) INTO b; \
               RETURN b; \
             END $$;",
        )
        .await
        .unwrap();
    // The statement appears only once apply runs: its plan, made first,
    // cannot know it.
    let apply = common::spawn_on(
        &url,
        &[
            "apply",
            "--key-order",
            "order_notes=tenant-first",
            "--trigger-window",
            "300ms",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while scalar_i64(
        &client,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'shardready' AND tablename = 'step'",
    )
    .await
        == 0
    {
        assert!(
            Instant::now() < deadline && apply.running(),
            "apply stored no plan"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = Instant::now();
    let app = common::send_repeatedly(
        &t,
        "SELECT note_body($1)",
        300_000,
        Duration::from_millis(5),
    );
    let out = apply.finished(Duration::from_secs(300));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("stopped after swapping the key of order_notes")
            && err.contains("SELECT note_body($1)"),
        "{err}"
    );
    // Named with its mean time before the swap, after it and with the
    // index back, and how to drop the index later.
    eprintln!("{err}");
    assert!(
        err.contains("ms before the swap")
            && err.contains("with the index (pg_stat_statements)")
            && err.contains("DROP INDEX CONCURRENTLY"),
        "{err}"
    );
    assert_eq!(
        pk_columns(&client, "order_notes").await,
        ["store_id", "note_id"]
    );
    // The application runs all along without a failed call.
    built_back_and_resumed(&client, &url, "order_notes_note_id_lookup").await;
    let after = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (failed, calls) = common::stop_sending_timed(app).await;
    assert_eq!(failed, 0, "no call failed");
    eprintln!(
        "the dynamic-SQL application: {}",
        common::latency_by_phase(&calls, &[("during", during), ("after", after)])
    );
    let out = run_on(&url, &["verify"]);
    assert!(out.status.success(), "{out:?}");
}

//! The create_orders traffic against real clusters loaded with Tailspin data.

mod common;

use std::time::Duration;

use common::{connect, scalar_i64, tailspin};
use shardready::workload::{self, Mode, StoreIdMode, Workload, WorkloadConfig};

fn cfg(rate_per_s: f64, secs: u64) -> WorkloadConfig {
    WorkloadConfig {
        rate: rate_per_s,
        duration: Some(Duration::from_secs(secs)),
        connections: 3,
        mode: Mode::Client,
        store_id: StoreIdMode::Auto,
        batch: 3,
        seed: 7,
        live: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mode_holds_the_rate_and_follows_the_seed() {
    let (_c, t) = tailspin(0.002).await;
    let client = connect(&t).await;
    let max_order = scalar_i64(&client, "SELECT max(order_id) FROM orders").await;
    let max_line = scalar_i64(&client, "SELECT max(line_item_id) FROM line_items").await;

    let report = Workload::start(&t, cfg(30.0, 8))
        .await
        .unwrap()
        .wait()
        .await;
    let s = &report.summary;
    assert_eq!(s.errors, 0, "{:?}", s.errors_by_sqlstate);
    // Rate held within 5%.
    let want = 30.0 * 60.0;
    assert!(
        (s.achieved_rate_per_min - want).abs() / want < 0.05,
        "achieved {:.0}/min, wanted {want}/min",
        s.achieved_rate_per_min
    );
    assert!((239..=241).contains(&s.orders), "orders {}", s.orders);

    // What reached the database is what the summary says.
    let new_orders = scalar_i64(
        &client,
        &format!("SELECT count(*) FROM orders WHERE order_id > {max_order}"),
    )
    .await;
    assert_eq!(new_orders as u64, s.orders);
    let new_lines = scalar_i64(
        &client,
        &format!("SELECT count(*) FROM line_items WHERE line_item_id > {max_line}"),
    )
    .await;
    assert_eq!(new_lines as u64, s.line_items);
    // 1-3 line items per order.
    let bad_counts = scalar_i64(
        &client,
        &format!(
            "SELECT count(*) FROM (SELECT o.order_id, count(l.*) n FROM orders o \
             LEFT JOIN line_items l USING (order_id) WHERE o.order_id > {max_order} \
             GROUP BY 1) x WHERE n NOT BETWEEN 1 AND 3"
        ),
    )
    .await;
    assert_eq!(bad_counts, 0);
    // Every line item's product belongs to its order's store; amounts right.
    let foreign = scalar_i64(
        &client,
        &format!(
            "SELECT count(*) FROM line_items l JOIN orders o USING (order_id) \
             JOIN products p USING (product_id) WHERE l.line_item_id > {max_line} \
             AND (p.store_id <> o.store_id OR l.line_amount <> p.price * l.quantity \
             OR l.quantity NOT BETWEEN 1 AND 4)"
        ),
    )
    .await;
    assert_eq!(foreign, 0, "line items with another store's product");
    // Every third order goes to store 5 (plus the random share of it).
    let to5 = scalar_i64(
        &client,
        &format!("SELECT count(*) FROM orders WHERE order_id > {max_order} AND store_id = 5"),
    )
    .await;
    let stores = scalar_i64(&client, "SELECT count(*) FROM stores").await as f64;
    let share = to5 as f64 / new_orders as f64;
    let expected = 1.0 / 3.0 + (2.0 / 3.0) / stores;
    assert!(
        (share - expected).abs() < 0.06,
        "store 5 share {share}, expected about {expected}"
    );
    assert_eq!(s.orders_to_store_5, to5 as u64);
    // No store_id column: nothing written with it.
    assert_eq!(s.line_items_with_store_id, 0);
    // One timeline row per second, adding up.
    let tl_total: u64 = report.timeline.iter().map(|r| r.transactions).sum();
    assert_eq!(tl_total, s.transactions);
    assert!(report.timeline.len() >= 8);
    assert!(s.latency.p50_ms > 0.0 && s.latency.max_ms >= s.latency.p99_ms);
    // A rate too low for one order per duration still runs the whole
    // duration and reports what it did over it (100/h for 2 s: 1 order).
    let slow = Workload::start(&t, cfg(100.0 / 3600.0, 2))
        .await
        .unwrap()
        .wait()
        .await;
    assert_eq!(slow.summary.orders, 1);
    assert!(
        slow.summary.duration_s >= 2.0,
        "{}",
        slow.summary.duration_s
    );
    assert!(slow.summary.achieved_rate_per_min <= 31.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_id_is_written_exactly_when_the_column_exists() {
    let (_c, t) = tailspin(0.002).await;
    let client = connect(&t).await;
    let r = Workload::start(&t, cfg(20.0, 2))
        .await
        .unwrap()
        .wait()
        .await;
    assert_eq!(r.summary.line_items_with_store_id, 0);

    client
        .batch_execute("ALTER TABLE line_items ADD COLUMN store_id bigint")
        .await
        .unwrap();
    let max_line = scalar_i64(&client, "SELECT max(line_item_id) FROM line_items").await;
    let r = Workload::start(&t, cfg(20.0, 2))
        .await
        .unwrap()
        .wait()
        .await;
    assert_eq!(r.summary.errors, 0);
    assert_eq!(r.summary.line_items_with_store_id, r.summary.line_items);
    let wrong = scalar_i64(
        &client,
        &format!(
            "SELECT count(*) FROM line_items l JOIN orders o USING (order_id) \
             WHERE l.line_item_id > {max_line} AND l.store_id IS DISTINCT FROM o.store_id"
        ),
    )
    .await;
    assert_eq!(wrong, 0, "new line items carry their order's store_id");
    let old_null = scalar_i64(
        &client,
        &format!("SELECT count(*) FROM line_items WHERE line_item_id <= {max_line} AND store_id IS NOT NULL"),
    )
    .await;
    assert_eq!(old_null, 0, "old rows untouched");

    // The old application code keeps not writing it.
    let mut old = cfg(20.0, 2);
    old.store_id = StoreIdMode::Never;
    let r = Workload::start(&t, old).await.unwrap().wait().await;
    assert_eq!(r.summary.errors, 0);
    assert_eq!(r.summary.line_items_with_store_id, 0);
    assert!(r.summary.line_items > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_and_a_lock_shows_as_latency() {
    let (_c, t) = tailspin(0.002).await;
    let admin = connect(&t).await;
    let w = Workload::start(&t, cfg(40.0, 8)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Kill the application's sessions: the driver counts and reconnects.
    let killed = scalar_i64(
        &admin,
        &format!(
            "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{}'",
            workload::APPLICATION_NAME
        ),
    )
    .await;
    assert!(killed >= 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Block orders for ~1.5 s: open-loop latency must show the stall.
    let mut locker = connect(&t).await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tx.commit().await.unwrap();
    let r = w.wait().await;
    let s = &r.summary;
    assert!(s.errors >= 1, "terminated sessions are counted as errors");
    assert!(
        s.errors_by_sqlstate
            .keys()
            .any(|k| k == "57P01" || k == "08006"),
        "{:?}",
        s.errors_by_sqlstate
    );
    assert!(
        s.orders > 200,
        "the run went on after the errors: {}",
        s.orders
    );
    assert!(
        s.latency.max_ms >= 1400.0,
        "a 1.5 s lock must appear as latency, max was {} ms",
        s.latency.max_ms
    );
    let errs_in_timeline: u64 = r.timeline.iter().map(|x| x.errors).sum();
    assert_eq!(errs_in_timeline, s.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_calls_the_seed_function_and_pg_cron_runs_it() {
    let (_c, t) = tailspin(0.002).await;
    let client = connect(&t).await;
    let before = scalar_i64(&client, "SELECT count(*) FROM orders").await;
    let mut c = cfg(30.0, 3);
    c.mode = Mode::Server;
    let r = Workload::start(&t, c).await.unwrap().wait().await;
    assert_eq!(r.summary.errors, 0, "{:?}", r.summary.errors_by_sqlstate);
    let after = scalar_i64(&client, "SELECT count(*) FROM orders").await;
    assert_eq!((after - before) as u64, r.summary.orders);
    assert!(r.summary.orders >= 80);

    // --once: the seed's timed call.
    let took = workload::time_create_orders(&t, 300, StoreIdMode::Auto)
        .await
        .unwrap();
    assert!(took > Duration::ZERO);
    let after_once = scalar_i64(&client, "SELECT count(*) FROM orders").await;
    assert_eq!(after_once - after, 300);
    // The function installed is the seed's, byte for byte.
    let src: String = client
        .query_one(
            "SELECT prosrc FROM pg_proc WHERE proname = 'create_orders'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(workload::CREATE_ORDERS_SQL.contains(src.trim()));

    // pg_cron, the seed's way: `workload --mode server --schedule` makes
    // the every-minute job; it runs create_orders(300) within a minute.
    let out = common::shardready()
        .args([
            "workload",
            "--mode",
            "server",
            "--schedule",
            "--rate",
            "300/min",
            "--db",
        ])
        .arg(_c.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs = shardready::cron::list(&client).await.unwrap();
    let job = jobs
        .iter()
        .find(|j| j.jobname.as_deref() == Some("create_orders"))
        .expect("job scheduled");
    assert_eq!(job.schedule, "*/1 * * * *");
    assert_eq!(job.command, "SELECT create_orders(300);");
    let before_cron = scalar_i64(&client, "SELECT count(*) FROM orders").await;
    let mut ran = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let runs = shardready::cron::runs(&client, "create_orders")
            .await
            .unwrap();
        if runs.iter().any(|(status, _)| status == "succeeded") {
            ran = true;
            break;
        }
    }
    assert!(ran, "pg_cron ran the job within a minute");
    let after_cron = scalar_i64(&client, "SELECT count(*) FROM orders").await;
    assert_eq!(after_cron - before_cron, 300);
    shardready::cron::unschedule(&client, "create_orders")
        .await
        .unwrap();
    assert!(shardready::cron::list(&client).await.unwrap().is_empty());
    assert!(matches!(
        shardready::cron::unschedule(&client, "create_orders").await,
        Err(shardready::cron::CronError::NoSuchJob(_))
    ));
}

#[test]
fn rates_parse() {
    assert!((workload::parse_rate("20000/min").unwrap() - 333.333).abs() < 0.01);
    assert_eq!(workload::parse_rate("50/s").unwrap(), 50.0);
    assert!((workload::parse_rate("600").unwrap() - 10.0).abs() < 1e-9);
    assert!(workload::parse_rate("fast").is_err());
    assert!(workload::parse_rate("0/s").is_err());
    assert!(workload::parse_rate("10/fortnight").is_err());
}

//! The application's traffic: the seed's `create_orders`, as an open-loop
//! client driver or through the seed's own plpgsql function, with every
//! order's latency measured from its intended start (no coordinated
//! omission) into an HDR histogram and a per-second timeline.
//!
//! [`Workload::start`] runs in the background and is what `apply` and `demo`
//! use; `shardready workload` runs it in the foreground.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use crate::conn::{error_text, Target};

/// The seed's `create_orders(batch_size)`, as first written (line items
/// without `store_id`).
pub const CREATE_ORDERS_SQL: &str = r#"CREATE OR REPLACE FUNCTION create_orders(batch_size int)
RETURNS void 
LANGUAGE plpgsql
AS
$$
DECLARE
    ord_id bigint;
    st_id bigint;
    prod_id bigint;
    prod_price numeric;
    quantity int;
    line_amt numeric;
    store_count bigint := (SELECT COUNT(*) FROM stores);
    product_count bigint;
BEGIN
    FOR j IN 1..batch_size LOOP
        -- Retrieve a random store, skewing to store_id 5.
        IF j % 3 = 0 THEN
            st_id := 5;
        ELSE
            st_id := floor(random() * store_count + 1);
        END IF;
        
        ord_id := (SELECT nextval('orders_order_id_seq'));

        -- Insert a new order
        INSERT INTO orders (order_id, store_id, status, billing_address, shipping_address, ordered_at)
        VALUES(ord_id, st_id, 'Pending', '123 Main St.', null, NOW()::date);
                
        -- Insert 1-3 line items for the order
        FOR i IN 1..floor(random() * (3) + 1) LOOP
            -- Retrieve a random product associated with the selected store.
            product_count := (SELECT count(*) FROM products WHERE store_id = st_id);
            prod_id = (SELECT product_id FROM products WHERE store_id = st_id OFFSET floor(random() * product_count) LIMIT 1);
            prod_price = (SELECT price FROM products WHERE store_id = st_id AND product_id = prod_id);
            quantity = floor(random() * (4) + 1);
            line_amt = prod_price * quantity;

            -- Insert a new line_item row
            INSERT INTO line_items (line_item_id, product_id, order_id, quantity, line_amount)
            VALUES(DEFAULT, prod_id, ord_id, quantity, line_amt);
        END LOOP;
    END LOOP;
END;
$$;"#;

/// The seed's updated `create_orders`, which writes `line_items.store_id`.
pub fn create_orders_with_store_id_sql() -> String {
    CREATE_ORDERS_SQL
        .replace(
            "INSERT INTO line_items (line_item_id, product_id, order_id, quantity, line_amount)\n            VALUES(DEFAULT, prod_id, ord_id, quantity, line_amt);",
            "INSERT INTO line_items (line_item_id, product_id, order_id, quantity, line_amount, store_id)\n            VALUES(DEFAULT, prod_id, ord_id, quantity, line_amt, st_id);",
        )
}

#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error(transparent)]
    Conn(#[from] crate::conn::ConnError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Cron(#[from] crate::cron::CronError),
    #[error(
        "the Tailspin tables are missing ({0}); create and load them first: \
         `shardready tailspin schema && shardready tailspin load`"
    )]
    MissingTables(String),
    #[error("invalid rate `{0}`: use ORDERS/min or ORDERS/s, e.g. 20000/min")]
    BadRate(String),
    #[error("the stores table is empty: load data first (`shardready tailspin load`)")]
    NoStores,
}

fn db(context: &str) -> impl FnOnce(tokio_postgres::Error) -> WorkloadError + '_ {
    move |e| WorkloadError::Db(crate::db::DbError::new(context, e))
}

/// Parses `20000/min`, `333/s`, `50/sec` or a bare number (per minute) into
/// orders per second.
pub fn parse_rate(s: &str) -> Result<f64, WorkloadError> {
    let bad = || WorkloadError::BadRate(s.to_string());
    let (num, unit) = match s.split_once('/') {
        Some((n, u)) => (n.trim(), u.trim()),
        None => (s.trim(), "min"),
    };
    let n: f64 = num.replace('_', "").parse().map_err(|_| bad())?;
    let per_sec = match unit {
        "s" | "sec" | "second" => n,
        "m" | "min" | "minute" => n / 60.0,
        "h" | "hour" => n / 3600.0,
        _ => return Err(bad()),
    };
    if !(per_sec.is_finite() && per_sec > 0.0) {
        return Err(bad());
    }
    Ok(per_sec)
}

/// Whether line items carry `store_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreIdMode {
    /// Write it whenever the column exists (checked every few seconds): the
    /// application updated as in the seed.
    Auto,
    /// Never write it: the old application code.
    Never,
    /// Always write it (fails while the column is missing).
    Always,
}

/// How the traffic is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Orders issued by shardready over N connections, one transaction each,
    /// with the seed function's queries.
    Client,
    /// Calls of the seed's plpgsql `create_orders(batch)` itself.
    Server,
}

#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Orders per second.
    pub rate: f64,
    /// None: until stopped.
    pub duration: Option<Duration>,
    pub connections: usize,
    pub mode: Mode,
    pub store_id: StoreIdMode,
    /// Server mode: orders per `create_orders` call (3 keeps the seed's
    /// every-third-order-to-store-5 skew).
    pub batch: u32,
    pub seed: u64,
    /// Print a one-line live status on stderr (only when it is a TTY).
    pub live: bool,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            rate: 20000.0 / 60.0,
            duration: Some(Duration::from_secs(60)),
            connections: 4,
            mode: Mode::Client,
            store_id: StoreIdMode::Auto,
            batch: 3,
            seed: 1,
            live: false,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The summary `--json-out` writes (schema `shardready.workload/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema: &'static str,
    pub mode: Mode,
    pub target_rate_per_min: f64,
    pub achieved_rate_per_min: f64,
    pub duration_s: f64,
    pub connections: usize,
    /// Committed transactions (orders in client mode, calls in server mode).
    pub transactions: u64,
    pub orders: u64,
    pub line_items: u64,
    /// Line items written with store_id by the driver.
    pub line_items_with_store_id: u64,
    pub orders_to_store_5: u64,
    pub errors: u64,
    pub errors_by_sqlstate: BTreeMap<String, u64>,
    /// The first message seen for each SQLSTATE, as the application got it.
    pub error_examples: BTreeMap<String, String>,
    pub latency: Latency,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimelineRow {
    /// Seconds since the start (the second in which transactions completed).
    pub t_s: u64,
    pub transactions: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkloadReport {
    pub summary: Summary,
    pub timeline: Vec<TimelineRow>,
}

impl WorkloadReport {
    /// The timeline as CSV (`t_s,transactions,errors,p50_ms,p99_ms,max_ms`).
    pub fn timeline_csv(&self) -> String {
        let mut s = String::from("t_s,transactions,errors,p50_ms,p99_ms,max_ms\n");
        for r in &self.timeline {
            s.push_str(&format!(
                "{},{},{},{:.3},{:.3},{:.3}\n",
                r.t_s, r.transactions, r.errors, r.p50_ms, r.p99_ms, r.max_ms
            ));
        }
        s
    }
}

/// What completed in one second of the run.
#[derive(Default)]
struct Second {
    latencies_us: Vec<u32>,
    /// Completion time of each of `latencies_us`, ms since the start.
    done_ms: Vec<u32>,
    errors: u64,
    /// When each error happened, ms since the start.
    error_ms: Vec<u32>,
}

/// What the drivers record into; shared with whoever watches the run.
struct Recorder {
    start: Instant,
    hist: Mutex<Histogram<u64>>,
    seconds: Mutex<Vec<Second>>,
    errors: Mutex<BTreeMap<String, u64>>,
    /// The first message of each SQLSTATE.
    examples: Mutex<BTreeMap<String, String>>,
    transactions: AtomicU64,
    orders: AtomicU64,
    line_items: AtomicU64,
    line_items_with_store_id: AtomicU64,
    orders_to_store_5: AtomicU64,
    error_count: AtomicU64,
    /// The application's version, switchable while it runs
    /// ([`Workload::set_store_id`]): a [`StoreIdMode`] as u8.
    store_id_mode: std::sync::atomic::AtomicU8,
    /// No orders are issued while set ([`Workload::pause`]).
    paused: AtomicBool,
    /// Orders handed to the connections so far.
    issued: AtomicU64,
}

impl StoreIdMode {
    fn to_u8(self) -> u8 {
        self as u8
    }
    fn from_u8(v: u8) -> Self {
        match v {
            1 => StoreIdMode::Never,
            2 => StoreIdMode::Always,
            _ => StoreIdMode::Auto,
        }
    }
}

impl Recorder {
    fn new(start: Instant) -> Self {
        Recorder {
            start,
            hist: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds")),
            seconds: Mutex::new(Vec::new()),
            errors: Mutex::new(BTreeMap::new()),
            examples: Mutex::new(BTreeMap::new()),
            transactions: AtomicU64::new(0),
            orders: AtomicU64::new(0),
            line_items: AtomicU64::new(0),
            line_items_with_store_id: AtomicU64::new(0),
            orders_to_store_5: AtomicU64::new(0),
            error_count: AtomicU64::new(0),
            store_id_mode: std::sync::atomic::AtomicU8::new(0),
            paused: AtomicBool::new(false),
            issued: AtomicU64::new(0),
        }
    }

    fn second_of(&self, at: Instant) -> usize {
        at.saturating_duration_since(self.start).as_secs() as usize
    }

    fn ms_of(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.start)
            .as_millis()
            .min(u32::MAX as u128) as u32
    }

    fn ok(&self, intended: Instant, done: Instant, work: &Done) {
        let us = done.saturating_duration_since(intended).as_micros().max(1) as u64;
        self.hist.lock().unwrap().saturating_record(us);
        {
            let mut secs = self.seconds.lock().unwrap();
            let i = self.second_of(done);
            if secs.len() <= i {
                secs.resize_with(i + 1, Second::default);
            }
            secs[i].latencies_us.push(us.min(u32::MAX as u64) as u32);
            secs[i].done_ms.push(self.ms_of(done));
        }
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.orders.fetch_add(work.orders, Ordering::Relaxed);
        self.line_items
            .fetch_add(work.line_items, Ordering::Relaxed);
        self.line_items_with_store_id
            .fetch_add(work.line_items_with_store_id, Ordering::Relaxed);
        self.orders_to_store_5
            .fetch_add(work.orders_to_store_5, Ordering::Relaxed);
    }

    /// A failed order, from the driver's error: its SQLSTATE counted, its
    /// message kept when it is the first of its kind.
    fn failed(&self, e: &tokio_postgres::Error, done: Instant) {
        let code = sqlstate(e);
        self.examples
            .lock()
            .unwrap()
            .entry(code.clone())
            .or_insert_with(|| crate::conn::error_text(e));
        self.error(&code, done);
    }

    fn error(&self, sqlstate: &str, done: Instant) {
        *self
            .errors
            .lock()
            .unwrap()
            .entry(sqlstate.to_string())
            .or_default() += 1;
        self.error_count.fetch_add(1, Ordering::Relaxed);
        let mut secs = self.seconds.lock().unwrap();
        let i = self.second_of(done);
        if secs.len() <= i {
            secs.resize_with(i + 1, Second::default);
        }
        secs[i].errors += 1;
        secs[i].error_ms.push(self.ms_of(done));
    }

    fn timeline(&self) -> Vec<TimelineRow> {
        let secs = self.seconds.lock().unwrap();
        secs.iter()
            .enumerate()
            .map(|(i, s)| {
                let mut l = s.latencies_us.clone();
                l.sort_unstable();
                let q = |p: f64| -> f64 {
                    if l.is_empty() {
                        0.0
                    } else {
                        let idx = ((p * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1;
                        l[idx] as f64 / 1000.0
                    }
                };
                TimelineRow {
                    t_s: i as u64,
                    transactions: l.len() as u64,
                    errors: s.errors,
                    p50_ms: q(0.50),
                    p99_ms: q(0.99),
                    max_ms: l.last().map(|&v| v as f64 / 1000.0).unwrap_or(0.0),
                }
            })
            .collect()
    }

    /// p99 and max over the last `window` full seconds (for throttling).
    fn recent(&self, window: u64) -> (f64, f64, u64) {
        let secs = self.seconds.lock().unwrap();
        let now = self.second_of(Instant::now());
        let from = now.saturating_sub(window as usize);
        let mut l: Vec<u32> = Vec::new();
        let mut errors = 0;
        for s in secs.iter().take(now.min(secs.len())).skip(from) {
            l.extend_from_slice(&s.latencies_us);
            errors += s.errors;
        }
        if l.is_empty() {
            return (0.0, 0.0, errors);
        }
        l.sort_unstable();
        let idx = ((0.99 * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1;
        (
            l[idx] as f64 / 1000.0,
            *l.last().unwrap() as f64 / 1000.0,
            errors,
        )
    }

    /// Latencies (µs) and errors of transactions that completed in
    /// [from, to), to the millisecond.
    fn collect(&self, from: Instant, to: Instant) -> (Vec<u32>, u64) {
        let secs = self.seconds.lock().unwrap();
        let a = self.second_of(from);
        let b = self.second_of(to) + 1;
        let (lo, hi) = (self.ms_of(from), self.ms_of(to));
        let mut l: Vec<u32> = Vec::new();
        let mut errors = 0;
        for s in secs.iter().take(b.min(secs.len())).skip(a) {
            l.extend(
                s.latencies_us
                    .iter()
                    .zip(&s.done_ms)
                    .filter(|(_, &ms)| ms >= lo && ms < hi)
                    .map(|(&us, _)| us),
            );
            errors += s.error_ms.iter().filter(|&&ms| ms >= lo && ms < hi).count() as u64;
        }
        (l, errors)
    }

    /// Latency, transactions and errors of what completed in [from, to),
    /// to the millisecond, and how many were slower than `slow_ms` (errors
    /// count as slow).
    fn between(&self, from: Instant, to: Instant, slow_ms: f64) -> (Latency, u64, u64, u64) {
        let (mut l, errors) = self.collect(from, to);
        let limit = (slow_ms * 1000.0).min(u32::MAX as f64) as u32;
        let slow = l.iter().filter(|&&us| us > limit).count() as u64 + errors;
        if l.is_empty() {
            return (Latency::default(), 0, errors, slow);
        }
        l.sort_unstable();
        let q = |p: f64| {
            let idx = ((p * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1;
            l[idx] as f64 / 1000.0
        };
        let mean = l.iter().map(|&v| v as f64).sum::<f64>() / l.len() as f64 / 1000.0;
        (
            Latency {
                p50_ms: q(0.5),
                p95_ms: q(0.95),
                p99_ms: q(0.99),
                p999_ms: q(0.999),
                max_ms: *l.last().unwrap() as f64 / 1000.0,
                mean_ms: mean,
            },
            l.len() as u64,
            errors,
            slow,
        )
    }

    fn latency(&self) -> Latency {
        let h = self.hist.lock().unwrap();
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// What one transaction did.
#[derive(Default)]
struct Done {
    orders: u64,
    line_items: u64,
    line_items_with_store_id: u64,
    orders_to_store_5: u64,
}

/// NUMERIC passed through in its binary form (no decimal arithmetic here:
/// the server multiplies price by quantity, as the seed's function does).
#[derive(Debug, Clone)]
struct RawNumeric(Vec<u8>);

impl<'a> FromSql<'a> for RawNumeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawNumeric(raw.to_vec()))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl ToSql for RawNumeric {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
    to_sql_checked!();
}

/// The seed function's statements, prepared on one connection.
struct Statements {
    nextval: Statement,
    insert_order: Statement,
    count_products: Statement,
    pick_product: Statement,
    price: Statement,
    insert_line: Statement,
    insert_line_store: Option<Statement>,
}

impl Statements {
    async fn prepare(client: &Client, with_store_id: bool) -> Result<Self, tokio_postgres::Error> {
        Ok(Statements {
            nextval: client.prepare("SELECT nextval('orders_order_id_seq')").await?,
            insert_order: client
                .prepare_typed(
                    "INSERT INTO orders (order_id, store_id, status, billing_address, shipping_address, ordered_at) \
                     VALUES($1, $2, 'Pending', '123 Main St.', null, NOW()::date)",
                    &[Type::INT8, Type::INT8],
                )
                .await?,
            count_products: client
                .prepare_typed(
                    "SELECT count(*) FROM products WHERE store_id = $1",
                    &[Type::INT8],
                )
                .await?,
            pick_product: client
                .prepare_typed(
                    "SELECT product_id FROM products WHERE store_id = $1 OFFSET $2 LIMIT 1",
                    &[Type::INT8, Type::INT8],
                )
                .await?,
            price: client
                .prepare_typed(
                    "SELECT price FROM products WHERE store_id = $1 AND product_id = $2",
                    &[Type::INT8, Type::INT8],
                )
                .await?,
            insert_line: client
                .prepare_typed(
                    "INSERT INTO line_items (line_item_id, product_id, order_id, quantity, line_amount) \
                     VALUES(DEFAULT, $1, $2, $3, $4 * $3)",
                    &[Type::INT8, Type::INT8, Type::INT8, Type::NUMERIC],
                )
                .await?,
            insert_line_store: if with_store_id {
                Some(
                    client
                        .prepare_typed(
                            "INSERT INTO line_items (line_item_id, product_id, order_id, quantity, line_amount, store_id) \
                             VALUES(DEFAULT, $1, $2, $3, $4 * $3, $5)",
                            &[Type::INT8, Type::INT8, Type::INT8, Type::NUMERIC, Type::INT8],
                        )
                        .await?,
                )
            } else {
                None
            },
        })
    }
}

/// One order, exactly as the seed's loop body does it, in one transaction.
async fn client_order(
    client: &mut Client,
    st: &Statements,
    store_id: i64,
    rng: &mut Pcg64,
) -> Result<Done, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let ord_id: i64 = tx.query_one(&st.nextval, &[]).await?.get(0);
    tx.execute(&st.insert_order, &[&ord_id, &store_id]).await?;
    let lines = rng.gen_range(1..=3);
    let mut done = Done {
        orders: 1,
        orders_to_store_5: (store_id == 5) as u64,
        ..Done::default()
    };
    for _ in 0..lines {
        let product_count: i64 = tx.query_one(&st.count_products, &[&store_id]).await?.get(0);
        let offset = (rng.gen::<f64>() * product_count as f64).floor() as i64;
        let prod_id: Option<i64> = tx
            .query_opt(&st.pick_product, &[&store_id, &offset])
            .await?
            .map(|r| r.get(0));
        let price: Option<RawNumeric> = tx
            .query_opt(&st.price, &[&store_id, &prod_id])
            .await?
            .and_then(|r| r.get(0));
        let quantity: i64 = rng.gen_range(1..=4);
        match &st.insert_line_store {
            Some(s) => {
                tx.execute(s, &[&prod_id, &ord_id, &quantity, &price, &store_id])
                    .await?;
                done.line_items_with_store_id += 1;
            }
            None => {
                tx.execute(&st.insert_line, &[&prod_id, &ord_id, &quantity, &price])
                    .await?;
            }
        }
        done.line_items += 1;
    }
    tx.commit().await?;
    Ok(done)
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(c) => c.code().to_string(),
        None => {
            // Not a server error: the connection broke (restart, network).
            let mut src = e.source();
            while let Some(s) = src {
                if let Some(db) = s.downcast_ref::<tokio_postgres::error::DbError>() {
                    return db.code().code().to_string();
                }
                src = s.source();
            }
            "08006".to_string()
        }
    }
}

/// The `application_name` of the workload's connections.
pub const APPLICATION_NAME: &str = "shardready-workload";

/// Live view of a running workload.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Snapshot {
    pub elapsed_s: f64,
    pub transactions: u64,
    pub errors: u64,
    /// p99 and max over the last few seconds.
    pub recent_p99_ms: f64,
    pub recent_max_ms: f64,
    pub recent_errors: u64,
}

/// A workload running in the background.
pub struct Workload {
    recorder: Arc<Recorder>,
    stop: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
    cfg: WorkloadConfig,
    started: Instant,
}

/// What the drivers need to know about the database, read once.
struct Setup {
    store_count: i64,
}

async fn setup(target: &Target) -> Result<Setup, WorkloadError> {
    let client = target.connect_with_retry(5).await?;
    let missing: Vec<&str> = {
        let have = crate::catalog::existing_tables(
            &client,
            &["stores", "products", "orders", "line_items"],
        )
        .await
        .map_err(db("cannot read the catalog"))?;
        ["stores", "products", "orders", "line_items"]
            .into_iter()
            .filter(|t| !have.iter().any(|h| h == t))
            .collect()
    };
    if !missing.is_empty() {
        return Err(WorkloadError::MissingTables(missing.join(", ")));
    }
    let store_count: i64 = client
        .query_one("SELECT COUNT(*) FROM stores", &[])
        .await
        .map_err(db("cannot count stores"))?
        .get(0);
    if store_count == 0 {
        return Err(WorkloadError::NoStores);
    }
    Ok(Setup { store_count })
}

/// Whether line items should carry store_id right now.
async fn wants_store_id(client: &Client, mode: StoreIdMode) -> bool {
    match mode {
        StoreIdMode::Never => false,
        StoreIdMode::Always => true,
        StoreIdMode::Auto => crate::catalog::has_column(client, "line_items", "store_id")
            .await
            .unwrap_or(false),
    }
}

/// The seed's server mode: installs `create_orders` (writing `store_id`
/// per `store_id`) and schedules `SELECT create_orders(per_min)` every
/// minute with pg_cron, like the seed; returns the job id.
pub async fn schedule_server(
    client: &Client,
    per_min: i64,
    store_id: StoreIdMode,
) -> Result<i64, WorkloadError> {
    let with = wants_store_id(client, store_id).await;
    install_create_orders(client, with).await?;
    Ok(crate::cron::schedule(
        client,
        "create_orders",
        "*/1 * * * *",
        &format!("SELECT create_orders({per_min});"),
    )
    .await?)
}

/// Installs the seed's `create_orders` (the updated one when `with_store_id`).
pub async fn install_create_orders(
    client: &Client,
    with_store_id: bool,
) -> Result<(), WorkloadError> {
    let sql = if with_store_id {
        create_orders_with_store_id_sql()
    } else {
        CREATE_ORDERS_SQL.to_string()
    };
    crate::db::exec_script(client, &sql)
        .await
        .map_err(db("cannot create the create_orders function"))
}

/// Runs `SELECT create_orders(n)` once and returns how long it took (the
/// seed's `\timing` step). Installs the function first.
pub async fn time_create_orders(
    target: &Target,
    n: i32,
    store_id: StoreIdMode,
) -> Result<Duration, WorkloadError> {
    setup(target).await?;
    let client = target.connect().await?;
    let with = wants_store_id(&client, store_id).await;
    install_create_orders(&client, with).await?;
    let t = Instant::now();
    client
        .execute("SELECT create_orders($1)", &[&n])
        .await
        .map_err(db("create_orders failed"))?;
    Ok(t.elapsed())
}

impl Workload {
    /// Checks the database and starts the traffic in the background.
    /// The application's traffic beside a long operation (`apply` or
    /// `distribute --workload RATE`): the default order mix at `rate`
    /// (`3000/min`), until stopped.
    pub async fn beside(target: &Target, rate: &str) -> Result<Workload, WorkloadError> {
        Workload::start(
            target,
            WorkloadConfig {
                rate: parse_rate(rate)?,
                duration: None,
                ..WorkloadConfig::default()
            },
        )
        .await
    }

    pub async fn start(target: &Target, cfg: WorkloadConfig) -> Result<Workload, WorkloadError> {
        let setup = setup(target).await?;
        if cfg.mode == Mode::Server {
            let client = target.connect().await?;
            let with = wants_store_id(&client, cfg.store_id).await;
            install_create_orders(&client, with).await?;
        }
        let started = Instant::now();
        let recorder = Arc::new(Recorder::new(started));
        recorder
            .store_id_mode
            .store(cfg.store_id.to_u8(), Ordering::Relaxed);
        let (stop_tx, stop_rx) = watch::channel(false);
        let join = tokio::spawn(drive(
            target.with_application_name(APPLICATION_NAME),
            cfg.clone(),
            setup,
            recorder.clone(),
            stop_rx,
        ));
        Ok(Workload {
            recorder,
            stop: stop_tx,
            join,
            cfg,
            started,
        })
    }

    /// Where the run stands.
    pub fn snapshot(&self) -> Snapshot {
        let (p99, max, errs) = self.recorder.recent(3);
        Snapshot {
            elapsed_s: self.started.elapsed().as_secs_f64(),
            transactions: self.recorder.transactions.load(Ordering::Relaxed),
            errors: self.recorder.error_count.load(Ordering::Relaxed),
            recent_p99_ms: p99,
            recent_max_ms: max,
            recent_errors: errs,
        }
    }

    /// Latency, transactions and errors of what completed between two
    /// instants (per-second resolution), e.g. during one apply step.
    pub fn stats_between(&self, from: Instant, to: Instant) -> (Latency, u64, u64) {
        let (l, tx, errors, _) = self.recorder.between(from, to, f64::INFINITY);
        (l, tx, errors)
    }

    /// [`Workload::stats_between`] and, from the same read, how many took
    /// longer than `slow_ms` (errors count as slow): what a report shows
    /// per step.
    pub fn window(&self, from: Instant, to: Instant, slow_ms: f64) -> (Latency, u64, u64, u64) {
        self.recorder.between(from, to, slow_ms)
    }

    /// Of the transactions that completed between two instants: how many,
    /// and how many took longer than `slow_ms` (errors count as slow).
    pub fn slow_between(&self, from: Instant, to: Instant, slow_ms: f64) -> (u64, u64) {
        let (l, errors) = self.recorder.collect(from, to);
        let limit = (slow_ms * 1000.0) as u32;
        let slow = l.iter().filter(|&&us| us > limit).count() as u64;
        (l.len() as u64 + errors, slow + errors)
    }

    /// Switches the application's version while it runs (the seed's
    /// "update application queries" step): every connection follows before
    /// its next order.
    pub fn set_store_id(&self, mode: StoreIdMode) {
        self.recorder
            .store_id_mode
            .store(mode.to_u8(), Ordering::SeqCst);
    }

    /// When the run started.
    /// Stops issuing orders until [`Workload::resume`] and waits (up to a
    /// few seconds) for those in flight: the database is left quiet, e.g. to
    /// time something the way the seed does, on its own.
    pub async fn pause(&self) {
        self.recorder.paused.store(true, Ordering::SeqCst);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let done = self.recorder.transactions.load(Ordering::SeqCst)
                + self.recorder.error_count.load(Ordering::SeqCst);
            if done >= self.recorder.issued.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Issues orders again at the configured rate.
    pub fn resume(&self) {
        self.recorder.paused.store(false, Ordering::SeqCst);
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether the configured duration is over (never for an endless run).
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits for the configured duration to end.
    pub async fn wait(self) -> WorkloadReport {
        let Workload {
            recorder,
            stop: _stop,
            join,
            cfg,
            started,
        } = self;
        let _ = join.await;
        report(&recorder, &cfg, started.elapsed())
    }

    /// Stops now (in-flight orders finish) and returns the report.
    pub async fn stop(self) -> WorkloadReport {
        let _ = self.stop.send(true);
        self.wait().await
    }
}

fn report(rec: &Recorder, cfg: &WorkloadConfig, elapsed: Duration) -> WorkloadReport {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let orders = rec.orders.load(Ordering::Relaxed);
    WorkloadReport {
        summary: Summary {
            schema: "shardready.workload/v1",
            mode: cfg.mode,
            target_rate_per_min: cfg.rate * 60.0,
            achieved_rate_per_min: orders as f64 / secs * 60.0,
            duration_s: secs,
            connections: cfg.connections,
            transactions: rec.transactions.load(Ordering::Relaxed),
            orders,
            line_items: rec.line_items.load(Ordering::Relaxed),
            line_items_with_store_id: rec.line_items_with_store_id.load(Ordering::Relaxed),
            orders_to_store_5: rec.orders_to_store_5.load(Ordering::Relaxed),
            errors: rec.error_count.load(Ordering::Relaxed),
            errors_by_sqlstate: rec.errors.lock().unwrap().clone(),
            error_examples: rec.examples.lock().unwrap().clone(),
            latency: rec.latency(),
        },
        timeline: rec.timeline(),
    }
}

/// The scheduler: intended start times at the target rate, handed to the
/// connections through a queue; a late connection makes the queue wait,
/// and that wait is part of the latency.
async fn drive(
    target: Target,
    cfg: WorkloadConfig,
    setup: Setup,
    rec: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) {
    let per_tx = match cfg.mode {
        Mode::Client => 1.0,
        Mode::Server => cfg.batch.max(1) as f64,
    };
    let interval = Duration::from_secs_f64(per_tx / cfg.rate);
    let (tx, rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let stopping = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..cfg.connections.max(1) {
        workers.push(tokio::spawn(worker(
            w as u64,
            target.clone(),
            cfg.clone(),
            setup.store_count,
            rec.clone(),
            rx.clone(),
            stopping.clone(),
        )));
    }
    let live = cfg.live && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut next_live = rec.start + Duration::from_secs(1);
    let end = cfg.duration.map(|d| rec.start + d);
    let mut i: u64 = 0;
    loop {
        let intended = rec.start + interval.mul_f64(i as f64);
        if *stop.borrow() {
            break;
        }
        if let Some(e) = end.filter(|e| intended >= *e) {
            // No order is due before the end: the run still lasts its whole
            // duration (a low rate must not end it early and report a rate
            // measured over a fraction of a second).
            tokio::select! {
                _ = tokio::time::sleep_until(e.into()) => {}
                _ = stop.changed() => {}
            }
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(intended.into()) => {}
            _ = stop.changed() => break,
        }
        i += 1;
        // Paused: the order due now is not issued (nor made up later).
        if rec.paused.load(Ordering::SeqCst) {
            continue;
        }
        rec.issued.fetch_add(1, Ordering::SeqCst);
        if tx.send((i, intended)).is_err() {
            break;
        }
        if live && Instant::now() >= next_live {
            next_live += Duration::from_secs(1);
            let (p99, max, _) = rec.recent(1);
            eprint!(
                "\r\x1b[2K{:>5.0}s  {} tx  {:.0}/min  errors {}  last 1s: p99 {:.1} ms  max {:.1} ms",
                rec.start.elapsed().as_secs_f64(),
                rec.transactions.load(Ordering::Relaxed),
                rec.orders.load(Ordering::Relaxed) as f64 / rec.start.elapsed().as_secs_f64()
                    * 60.0,
                rec.error_count.load(Ordering::Relaxed),
                p99,
                max
            );
        }
    }
    // Orders already due are still issued; nothing new is scheduled.
    drop(tx);
    stopping.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    if live {
        eprint!("\r\x1b[2K");
    }
}

async fn worker(
    id: u64,
    target: Target,
    cfg: WorkloadConfig,
    store_count: i64,
    rec: Arc<Recorder>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(u64, Instant)>>>,
    stopping: Arc<AtomicBool>,
) {
    let mut rng = Pcg64::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(id));
    let mut conn: Option<(Client, Option<Statements>, bool, Instant)> = None;
    let mut backoff = Duration::from_millis(50);
    let mut last_mode = StoreIdMode::from_u8(rec.store_id_mode.load(Ordering::SeqCst));
    loop {
        let item = { rx.lock().await.recv().await };
        let Some((j, intended)) = item else { break };
        // A connection closed under us (server restart, terminated
        // session) fails this order, as the application would see it; the
        // next order gets a new connection.
        if conn.as_ref().is_some_and(|c| c.0.is_closed()) {
            conn = None;
            rec.error("08006", Instant::now());
            continue;
        }
        // (Re)connect when needed; a failed attempt counts as an error of
        // this order too.
        if conn.is_none() {
            match target.connect().await {
                Ok(c) => {
                    backoff = Duration::from_millis(50);
                    conn = Some((c, None, false, Instant::now() - Duration::from_secs(60)));
                }
                Err(_) => {
                    rec.error("08006", Instant::now());
                    if !stopping.load(Ordering::Relaxed) {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                    continue;
                }
            }
        }
        let (client, stmts, with_store, checked) = conn.as_mut().expect("connected");
        // Re-detect the column every few seconds (Auto follows the schema),
        // and at once when the application's version was switched.
        let mode = StoreIdMode::from_u8(rec.store_id_mode.load(Ordering::SeqCst));
        if checked.elapsed() > Duration::from_secs(3) || stmts.is_none() || mode != last_mode {
            last_mode = mode;
            let want = wants_store_id(client, mode).await;
            if stmts.is_none() || want != *with_store {
                *with_store = want;
                *stmts = None;
                if cfg.mode == Mode::Server {
                    // The seed's "updated application": replace the function.
                    let _ = install_create_orders(client, want).await;
                }
            }
            *checked = Instant::now();
        }
        let result = match cfg.mode {
            Mode::Client => {
                if stmts.is_none() {
                    match Statements::prepare(client, *with_store).await {
                        Ok(s) => *stmts = Some(s),
                        Err(e) => {
                            rec.failed(&e, Instant::now());
                            continue;
                        }
                    }
                }
                let store_id = if j % 3 == 0 {
                    5
                } else {
                    rng.gen_range(1..=store_count)
                };
                client_order(
                    client,
                    stmts.as_ref().expect("prepared"),
                    store_id,
                    &mut rng,
                )
                .await
            }
            Mode::Server => {
                let n = cfg.batch.max(1) as i32;
                client
                    .execute("SELECT create_orders($1)", &[&n])
                    .await
                    .map(|_| Done {
                        orders: n as u64,
                        orders_to_store_5: (n / 3) as u64,
                        ..Done::default()
                    })
            }
        };
        let done = Instant::now();
        match result {
            Ok(work) => rec.ok(intended, done, &work),
            Err(e) => {
                rec.failed(&e, done);
                tracing::debug!("order failed: {}", error_text(&e));
            }
        }
    }
}

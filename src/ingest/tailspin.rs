//! The Tailspin Toys dataset: the seed exercise's four tables
//! ([`SCHEMA_SQL`]) and a deterministic [`Generator`] of their rows at any
//! scale, written either as the seed's CSV files ([`Generator::write_csv`])
//! or as PostgreSQL binary COPY streams ([`Generator::binary_copy`]).
//!
//! At scale 1 the counts are exactly the seed's (442 stores, 10002
//! products, 1999680 orders, 4002959 line items). The same `(scale, seed)`
//! always gives byte-identical output, however many threads write it: every
//! run of rows draws from its own PCG stream keyed by (seed, table, chunk).
//!
//! The data keeps the seed's shape: every store sells at least one product,
//! each order has 1–3 line items whose products belong to the order's store,
//! `line_amount = price * quantity` exactly, and store 5 is the hot tenant
//! (about 10% of all orders on top of its uniform share).

use std::cmp::Reverse;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::RngCore;
use rand_pcg::Pcg64;
use serde::Serialize;
use thiserror::Error;

/// The seed's four tables, exactly as the seed writes them.
pub const SCHEMA_SQL: &str = "\
CREATE TABLE stores
(
    store_id bigserial PRIMARY KEY,
    name text,
    category text
);

CREATE TABLE products
(
    product_id bigserial PRIMARY KEY,
    store_id bigint REFERENCES stores (store_id),
    name text,
    description text,
    price numeric
);

CREATE TABLE orders
(
    order_id bigserial PRIMARY KEY,
    store_id bigint REFERENCES stores (store_id),
    status text,
    billing_address text,
    shipping_address text,
    ordered_at timestamp
);

CREATE TABLE line_items
(
    line_item_id bigserial PRIMARY KEY,
    product_id bigint REFERENCES products (product_id),
    order_id bigint REFERENCES orders (order_id),
    quantity bigint,
    line_amount numeric
);
";

/// The tables in foreign-key (load) order.
pub const TABLES: [&str; 4] = ["stores", "products", "orders", "line_items"];

/// The seed's row counts (scale 1).
pub const SEED_COUNTS: Counts = Counts {
    stores: 442,
    products: 10002,
    orders: 1_999_680,
    line_items: 4_002_959,
};

/// `orders_N.csv` and `line_items_N.csv` hold at most this many rows each.
pub const ROWS_PER_FILE: u64 = 500_000;

/// The hot tenant.
pub const HOT_STORE: u64 = 5;

/// Smallest and largest accepted `--scale`.
pub const MIN_SCALE: f64 = 1e-6;
pub const MAX_SCALE: f64 = 100.0;

/// Rows (orders, for line items) drawn from one PCG stream. Divides
/// [`ROWS_PER_FILE`], so CSV files of the three smaller tables start on a
/// stream boundary.
const RNG_CHUNK: u64 = 5_000;

/// 2022-01-01 00:00:00 in seconds since 2000-01-01 (PostgreSQL's epoch).
const TS_START: i64 = 8036 * 86_400;
/// Orders span two years (2022 and 2023).
const TS_SPAN: i64 = 730 * 86_400;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum GenError {
    #[error(
        "--scale must be a number greater than 0 (1 = the seed's 6M rows, 0.01 = about 60k rows); got {0}"
    )]
    InvalidScale(f64),
    #[error(
        "--scale {0} is too small: use at least {MIN_SCALE} (which already gives the minimum of 5 stores and 1 order)"
    )]
    TooSmall(f64),
    #[error(
        "--scale {0} is too large: at most {MAX_SCALE} (about 600M rows) is supported; load several datasets if you need more"
    )]
    TooLarge(f64),
}

/// Row counts of the four tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub stores: u64,
    pub products: u64,
    pub orders: u64,
    pub line_items: u64,
}

impl Counts {
    /// The counts at `scale` (see [`Generator::new`] for the rules).
    fn at_scale(scale: f64) -> Counts {
        let r = |n: u64| (n as f64 * scale).round() as u64;
        let stores = r(SEED_COUNTS.stores).max(HOT_STORE);
        let products = r(SEED_COUNTS.products).max(stores);
        let orders = r(SEED_COUNTS.orders).max(1);
        let line_items = r(SEED_COUNTS.line_items).clamp(orders, 3 * orders);
        Counts {
            stores,
            products,
            orders,
            line_items,
        }
    }

    pub fn get(&self, table: Table) -> u64 {
        match table {
            Table::Stores => self.stores,
            Table::Products => self.products,
            Table::Orders => self.orders,
            Table::LineItems => self.line_items,
        }
    }

    pub fn total(&self) -> u64 {
        self.stores + self.products + self.orders + self.line_items
    }
}

/// One of the four tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Stores,
    Products,
    Orders,
    LineItems,
}

impl Table {
    /// In foreign-key (load) order.
    pub const ALL: [Table; 4] = [
        Table::Stores,
        Table::Products,
        Table::Orders,
        Table::LineItems,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Table::Stores => "stores",
            Table::Products => "products",
            Table::Orders => "orders",
            Table::LineItems => "line_items",
        }
    }

    /// Column names in [`SCHEMA_SQL`] order (the order of CSV fields and of
    /// binary COPY fields).
    pub fn columns(&self) -> &'static [&'static str] {
        match self {
            Table::Stores => &["store_id", "name", "category"],
            Table::Products => &["product_id", "store_id", "name", "description", "price"],
            Table::Orders => &[
                "order_id",
                "store_id",
                "status",
                "billing_address",
                "shipping_address",
                "ordered_at",
            ],
            Table::LineItems => &[
                "line_item_id",
                "product_id",
                "order_id",
                "quantity",
                "line_amount",
            ],
        }
    }

    fn stream(&self) -> u64 {
        match self {
            Table::Stores => 1,
            Table::Products => 2,
            Table::Orders => 3,
            Table::LineItems => 4,
        }
    }
}

/// PCG streams of the per-row facts fixed up front.
const STREAM_PRODUCT_FACTS: u64 = 5;
const STREAM_ORDER_FACTS: u64 = 6;

/// Everything decided up front; the rows' remaining details are drawn while
/// they are written.
struct Data {
    scale: f64,
    seed: u64,
    counts: Counts,
    /// Store of product `p` at `p - 1`.
    product_store: Vec<u32>,
    /// Price in cents of product `p` at `p - 1`.
    product_price: Vec<u32>,
    /// Products of store `s` are `store_products[store_off[s-1]..store_off[s]]`.
    store_off: Vec<u32>,
    store_products: Vec<u32>,
    /// Store of order `o` at `o - 1`.
    order_store: Vec<u32>,
    /// Number of line items (1–3) of order `o` at `o - 1`.
    order_lines: Vec<u8>,
    /// Line-item row index of the first line of each chunk of [`RNG_CHUNK`]
    /// orders; one extra entry holds the total.
    chunk_line_start: Vec<u64>,
}

/// Deterministic generator of the Tailspin Toys dataset. Cheap to clone.
#[derive(Clone)]
pub struct Generator {
    data: Arc<Data>,
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("scale", &self.data.scale)
            .field("seed", &self.data.seed)
            .field("counts", &self.data.counts)
            .finish()
    }
}

impl Generator {
    /// A generator at `scale` (1 = the seed's counts). Each count is the
    /// seed's count times `scale`, rounded, with at least 5 stores (so the
    /// hot store 5 exists), at least one product per store, at least one
    /// order and 1–3 line items per order.
    pub fn new(scale: f64, seed: u64) -> Result<Generator, GenError> {
        if !scale.is_finite() || scale <= 0.0 {
            return Err(GenError::InvalidScale(scale));
        }
        if scale < MIN_SCALE {
            return Err(GenError::TooSmall(scale));
        }
        if scale > MAX_SCALE {
            return Err(GenError::TooLarge(scale));
        }
        let counts = Counts::at_scale(scale);
        let stores = counts.stores as u32;

        // Products: the first `stores` products go one to each store, so
        // every store sells something; the rest to uniformly random stores.
        let mut rng = rng_for(seed, STREAM_PRODUCT_FACTS, 0);
        let mut product_store = Vec::with_capacity(counts.products as usize);
        let mut product_price = Vec::with_capacity(counts.products as usize);
        for p in 1..=counts.products {
            let store = if p <= counts.stores {
                p as u32
            } else {
                1 + draw(&mut rng, counts.stores) as u32
            };
            let dollars = 2 + draw(&mut rng, 148) as u32;
            let cents = [99, 99, 49, 0, 50, 95][draw(&mut rng, 6) as usize];
            product_store.push(store);
            product_price.push(dollars * 100 + cents);
        }
        let mut store_off = vec![0u32; stores as usize + 1];
        for &s in &product_store {
            store_off[s as usize] += 1;
        }
        for s in 1..store_off.len() {
            store_off[s] += store_off[s - 1];
        }
        let mut fill = store_off.clone();
        let mut store_products = vec![0u32; product_store.len()];
        for (i, &s) in product_store.iter().enumerate() {
            let slot = &mut fill[s as usize - 1];
            store_products[*slot as usize] = i as u32 + 1;
            *slot += 1;
        }

        // Orders: 10% to the hot store, the rest uniform; 1–3 lines each,
        // then nudged one line at a time until the total is exact.
        let n = counts.orders as usize;
        let mut rng = rng_for(seed, STREAM_ORDER_FACTS, 0);
        let mut order_store = Vec::with_capacity(n);
        let mut order_lines = Vec::with_capacity(n);
        let mut total = 0u64;
        for _ in 0..n {
            let x = rng.next_u64();
            // One draw: low half = hot or not (1 in 10) and line count
            // (1 in 3 each), high half = the store otherwise.
            let v = below32(x as u32, 30);
            let store = if v.is_multiple_of(10) {
                HOT_STORE as u32
            } else {
                1 + below32((x >> 32) as u32, stores)
            };
            let lines = 1 + (v / 10) as u8;
            order_store.push(store);
            order_lines.push(lines);
            total += lines as u64;
        }
        let target = counts.line_items;
        let mut attempts = 0u64;
        while total != target && attempts < 16 * counts.orders + 1024 {
            attempts += 1;
            let l = &mut order_lines[draw(&mut rng, counts.orders) as usize];
            if total < target && *l < 3 {
                *l += 1;
                total += 1;
            } else if total > target && *l > 1 {
                *l -= 1;
                total -= 1;
            }
        }
        // Only reachable when the target is (nearly) 1 or 3 lines per order.
        for l in order_lines.iter_mut() {
            while total < target && *l < 3 {
                *l += 1;
                total += 1;
            }
            while total > target && *l > 1 {
                *l -= 1;
                total -= 1;
            }
        }
        debug_assert_eq!(total, target);
        let mut chunk_line_start = Vec::with_capacity(n / RNG_CHUNK as usize + 2);
        let mut running = 0u64;
        for (i, &l) in order_lines.iter().enumerate() {
            if (i as u64).is_multiple_of(RNG_CHUNK) {
                chunk_line_start.push(running);
            }
            running += l as u64;
        }
        chunk_line_start.push(running);

        Ok(Generator {
            data: Arc::new(Data {
                scale,
                seed,
                counts,
                product_store,
                product_price,
                store_off,
                store_products,
                order_store,
                order_lines,
                chunk_line_start,
            }),
        })
    }

    pub fn counts(&self) -> Counts {
        self.data.counts
    }

    pub fn rows(&self, table: Table) -> u64 {
        self.data.counts.get(table)
    }

    pub fn scale(&self) -> f64 {
        self.data.scale
    }

    pub fn seed(&self) -> u64 {
        self.data.seed
    }

    /// Writes the seed's CSV layout into `dir` (created if missing):
    /// `stores.csv` with a header line, `products.csv`, `orders_1.csv`… and
    /// `line_items_1.csv`… without one, split every [`ROWS_PER_FILE`] rows.
    /// Files are written in parallel (one per thread at a time); `progress`
    /// gets the total bytes written so far, increasing, from any thread.
    /// Returns the paths in load order.
    pub fn write_csv(
        &self,
        dir: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> io::Result<Vec<PathBuf>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.write_csv_with(dir, progress, threads, ROWS_PER_FILE)
    }

    fn csv_files(&self, dir: &Path, rows_per_file: u64) -> Vec<CsvFile> {
        let mut files = Vec::new();
        for table in Table::ALL {
            let rows = self.rows(table);
            match table {
                Table::Stores | Table::Products => files.push(CsvFile {
                    table,
                    rows: 0..rows,
                    path: dir.join(format!("{}.csv", table.name())),
                    header: table == Table::Stores,
                }),
                Table::Orders | Table::LineItems => {
                    let parts = rows.div_ceil(rows_per_file).max(1);
                    for k in 0..parts {
                        files.push(CsvFile {
                            table,
                            rows: k * rows_per_file..((k + 1) * rows_per_file).min(rows),
                            path: dir.join(format!("{}_{}.csv", table.name(), k + 1)),
                            header: false,
                        });
                    }
                }
            }
        }
        files
    }

    fn write_csv_with(
        &self,
        dir: &Path,
        progress: &(dyn Fn(u64) + Sync),
        threads: usize,
        rows_per_file: u64,
    ) -> io::Result<Vec<PathBuf>> {
        fs::create_dir_all(dir).map_err(|e| with_path(e, "cannot create", dir))?;
        let files = self.csv_files(dir, rows_per_file);
        // Biggest first, so no thread is left with a big file at the end.
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_by_key(|&i| Reverse(files[i].estimated_bytes()));
        let next = AtomicUsize::new(0);
        let written = Mutex::new(0u64);
        let failure: Mutex<Option<io::Error>> = Mutex::new(None);
        let report = |n: u64| {
            let mut w = written.lock().unwrap_or_else(|e| e.into_inner());
            *w += n;
            progress(*w);
        };
        std::thread::scope(|s| {
            for _ in 0..threads.clamp(1, files.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= order.len() || failure.lock().map_or(true, |f| f.is_some()) {
                        break;
                    }
                    if let Err(e) = self.write_one(&files[order[i]], &report) {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        break;
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(files.into_iter().map(|f| f.path).collect())
    }

    fn write_one(&self, file: &CsvFile, report: &dyn Fn(u64)) -> io::Result<()> {
        const FLUSH_AT: usize = 1 << 20;
        let mut out =
            File::create(&file.path).map_err(|e| with_path(e, "cannot create", &file.path))?;
        let mut enc = CsvEnc {
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            first: true,
        };
        if file.header {
            enc.buf
                .extend_from_slice(file.table.columns().join(",").as_bytes());
            enc.buf.push(b'\n');
        }
        let mut cursor = Cursor::new(self.data.clone(), file.table, file.rows.clone());
        loop {
            let more = !cursor.done();
            if more {
                cursor.emit(&mut enc);
            }
            if enc.buf.len() >= FLUSH_AT || (!more && !enc.buf.is_empty()) {
                out.write_all(&enc.buf)
                    .map_err(|e| with_path(e, "cannot write", &file.path))?;
                report(enc.buf.len() as u64);
                enc.buf.clear();
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// A complete binary COPY stream (header, every row, trailer) for
    /// `table`, in chunks of about `chunk_bytes`. Columns are in
    /// [`Table::columns`] order.
    pub fn binary_copy(
        &self,
        table: Table,
        chunk_bytes: usize,
    ) -> Box<dyn Iterator<Item = Bytes> + Send + 'static> {
        self.binary_copy_range(table, 0..self.rows(table), chunk_bytes)
    }

    /// Like [`Generator::binary_copy`], for the rows with 0-based indexes in
    /// `rows` only (a complete stream of its own, for loading one table over
    /// several connections). The rows equal those of the whole stream.
    pub fn binary_copy_range(
        &self,
        table: Table,
        rows: Range<u64>,
        chunk_bytes: usize,
    ) -> Box<dyn Iterator<Item = Bytes> + Send + 'static> {
        Box::new(BinaryCopy {
            cursor: Cursor::new(self.data.clone(), table, rows),
            chunk_bytes: chunk_bytes.max(1),
            started: false,
            finished: false,
        })
    }
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

struct CsvFile {
    table: Table,
    rows: Range<u64>,
    path: PathBuf,
    header: bool,
}

impl CsvFile {
    fn estimated_bytes(&self) -> u64 {
        let per_row = match self.table {
            Table::Stores => 40,
            Table::Products => 120,
            Table::Orders => 110,
            Table::LineItems => 35,
        };
        (self.rows.end - self.rows.start) * per_row
    }
}

struct BinaryCopy {
    cursor: Cursor,
    chunk_bytes: usize,
    started: bool,
    finished: bool,
}

impl Iterator for BinaryCopy {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        let mut enc = BinEnc {
            buf: Vec::with_capacity(self.chunk_bytes.min(1 << 24) + 512),
        };
        if !self.started {
            self.started = true;
            enc.buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            enc.buf.extend_from_slice(&0i32.to_be_bytes());
            enc.buf.extend_from_slice(&0i32.to_be_bytes());
        }
        while enc.buf.len() < self.chunk_bytes && !self.cursor.done() {
            self.cursor.emit(&mut enc);
        }
        if self.cursor.done() {
            enc.buf.extend_from_slice(&(-1i16).to_be_bytes());
            self.finished = true;
        }
        Some(Bytes::from(enc.buf))
    }
}

// ---------------------------------------------------------------------------
// Randomness

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The PCG stream of one chunk of one table.
fn rng_for(seed: u64, stream: u64, chunk: u64) -> Pcg64 {
    let a = splitmix64(seed);
    let b = splitmix64(a ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let c = splitmix64(b ^ chunk);
    let d = splitmix64(c ^ 0x5851_F42D_4C95_7F2D);
    Pcg64::new(((c as u128) << 64) | d as u128, stream as u128)
}

/// Maps a uniform 64-bit `x` onto `0..n` (multiply-shift).
fn below(x: u64, n: u64) -> u64 {
    ((x as u128 * n as u128) >> 64) as u64
}

/// Maps a uniform 32-bit `x` onto `0..n` (multiply-shift).
fn below32(x: u32, n: u32) -> u32 {
    ((x as u64 * n as u64) >> 32) as u32
}

fn draw(rng: &mut Pcg64, n: u64) -> u64 {
    below(rng.next_u64(), n)
}

// ---------------------------------------------------------------------------
// Encoders: the same row code writes CSV, binary COPY, or nothing (skipping).

trait Enc {
    fn row(&mut self, fields: i16);
    fn int(&mut self, v: u64);
    fn text(&mut self, s: &[u8]);
    fn null(&mut self);
    /// A numeric with two decimals, given in cents.
    fn cents(&mut self, c: u64);
    /// A timestamp without time zone, in seconds since 2000-01-01.
    fn ts(&mut self, secs: i64);
    fn end(&mut self);
}

/// Discards everything: moves a cursor to a row inside a chunk.
struct Skip;

impl Enc for Skip {
    fn row(&mut self, _: i16) {}
    fn int(&mut self, _: u64) {}
    fn text(&mut self, _: &[u8]) {}
    fn null(&mut self) {}
    fn cents(&mut self, _: u64) {}
    fn ts(&mut self, _: i64) {}
    fn end(&mut self) {}
}

/// PostgreSQL CSV: comma-separated, `"`-quoted when needed, NULL = an empty
/// unquoted field.
struct CsvEnc {
    buf: Vec<u8>,
    first: bool,
}

impl CsvEnc {
    #[inline]
    fn sep(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.buf.push(b',');
        }
    }
}

impl Enc for CsvEnc {
    #[inline]
    fn row(&mut self, _: i16) {
        self.first = true;
    }
    #[inline]
    fn int(&mut self, v: u64) {
        self.sep();
        push_u64(&mut self.buf, v);
    }
    #[inline]
    fn text(&mut self, s: &[u8]) {
        self.sep();
        let quote = s.is_empty() || s.iter().any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
        if !quote {
            self.buf.extend_from_slice(s);
            return;
        }
        self.buf.push(b'"');
        for part in s.split_inclusive(|&b| b == b'"') {
            self.buf.extend_from_slice(part);
            if part.last() == Some(&b'"') {
                self.buf.push(b'"');
            }
        }
        self.buf.push(b'"');
    }
    #[inline]
    fn null(&mut self) {
        self.sep();
    }
    #[inline]
    fn cents(&mut self, c: u64) {
        self.sep();
        push_u64(&mut self.buf, c / 100);
        self.buf.push(b'.');
        push_2(&mut self.buf, (c % 100) as u32);
    }
    #[inline]
    fn ts(&mut self, secs: i64) {
        self.sep();
        push_timestamp(&mut self.buf, secs);
    }
    #[inline]
    fn end(&mut self) {
        self.buf.push(b'\n');
    }
}

/// PostgreSQL binary COPY rows.
struct BinEnc {
    buf: Vec<u8>,
}

impl Enc for BinEnc {
    #[inline]
    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }
    #[inline]
    fn int(&mut self, v: u64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&(v as i64).to_be_bytes());
    }
    #[inline]
    fn text(&mut self, s: &[u8]) {
        self.buf.extend_from_slice(&(s.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(s);
    }
    #[inline]
    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }
    #[inline]
    fn cents(&mut self, c: u64) {
        push_numeric_cents(&mut self.buf, c);
    }
    #[inline]
    fn ts(&mut self, secs: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf
            .extend_from_slice(&(secs * 1_000_000).to_be_bytes());
    }
    #[inline]
    fn end(&mut self) {}
}

#[inline]
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Two digits, zero-padded (`v < 100`).
#[inline]
fn push_2(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
}

/// (year, month, day) of a day counted from 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD HH:MM:SS` of seconds since 2000-01-01 (years 1000–9999).
fn push_timestamp(out: &mut Vec<u8>, secs: i64) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days + PG_EPOCH_DAYS);
    let y = y as u32;
    push_2(out, y / 100);
    push_2(out, y % 100);
    out.push(b'-');
    push_2(out, m);
    out.push(b'-');
    push_2(out, d);
    out.push(b' ');
    push_2(out, sod / 3600);
    out.push(b':');
    push_2(out, sod / 60 % 60);
    out.push(b':');
    push_2(out, sod % 60);
}

/// A field (length word included) holding `cents / 100` as PostgreSQL's
/// binary NUMERIC (`numeric_send`): ndigits, weight, sign, dscale = 2, then
/// base-10000 digits, most significant first, with leading and trailing zero
/// digits stripped (zero has no digits and weight 0).
fn push_numeric_cents(out: &mut Vec<u8>, cents: u64) {
    let int_part = cents / 100;
    // Integer digits, least significant first (u64 / 100 < 10000^5).
    let mut int_digits = [0u16; 5];
    let mut n_int = 0;
    let mut v = int_part;
    while v > 0 {
        int_digits[n_int] = (v % 10_000) as u16;
        v /= 10_000;
        n_int += 1;
    }
    let mut digits = [0u16; 6];
    let mut n = 0;
    for i in (0..n_int).rev() {
        digits[n] = int_digits[i];
        n += 1;
    }
    // Two decimals are the top two decimal places of the first fractional
    // base-10000 digit.
    digits[n] = (cents % 100) as u16 * 100;
    n += 1;
    let mut weight = n_int as i16 - 1;
    let mut start = 0;
    while start < n && digits[start] == 0 {
        start += 1;
        weight -= 1;
    }
    while n > start && digits[n - 1] == 0 {
        n -= 1;
    }
    let ndigits = n - start;
    if ndigits == 0 {
        weight = 0;
    }
    out.extend_from_slice(&(8 + 2 * ndigits as i32).to_be_bytes());
    out.extend_from_slice(&(ndigits as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // NUMERIC_POS
    out.extend_from_slice(&2u16.to_be_bytes()); // dscale
    for d in &digits[start..n] {
        out.extend_from_slice(&d.to_be_bytes());
    }
}

// ---------------------------------------------------------------------------
// Rows

const STORE_ADJ: &[&str] = &[
    "Happy",
    "Little",
    "Sunny",
    "Jolly",
    "Bright",
    "Tiny",
    "Magic",
    "Rainbow",
    "Cosmic",
    "Wonder",
    "Lucky",
    "Golden",
    "Merry",
    "Clever",
    "Brave",
    "Whimsical",
];
const STORE_NOUN: &[&str] = &[
    "Bear", "Rocket", "Dragon", "Kite", "Castle", "Robot", "Puzzle", "Marble", "Teddy", "Pirate",
    "Unicorn", "Train", "Balloon", "Yo-Yo", "Dino", "Owl",
];
const STORE_SUFFIX: &[&str] = &[
    " Toys",
    " Toy Shop",
    " Games",
    " Toys, Inc.",
    " & Co.",
    " Toy Emporium",
    " Playhouse",
    " Toys and Games, LLC",
];
const CATEGORIES: &[&str] = &[
    "Toys",
    "Games",
    "Puzzles",
    "Outdoor Play",
    "Arts, Crafts & Hobbies",
    "Baby & Toddler",
    "Books",
    "Electronics",
    "Dolls, Plush & Figures",
    "Building Sets",
];
const PRODUCT_ADJ: &[&str] = &[
    "Classic",
    "Deluxe",
    "Wooden",
    "Mini",
    "Giant",
    "Glow-in-the-Dark",
    "Remote-Control",
    "Musical",
    "Magnetic",
    "Rainbow",
    "Interactive",
    "Pocket",
    "Vintage",
    "Junior",
    "Super",
    "Eco",
];
const PRODUCT_THING: &[&str] = &[
    "Train Set",
    "Building Blocks",
    "Puzzle, 500 Pieces",
    "Teddy Bear",
    "Race Car",
    "Dollhouse",
    "Kite",
    "Robot Kit",
    "Board Game",
    "Jigsaw Puzzle",
    "Café Play Kitchen",
    "Science Kit",
    "Yo-Yo",
    "Art Set",
    "Drum Kit",
    "Marble Run",
];
const DESC_OPEN: &[&str] = &[
    "A sturdy, colourful",
    "The classic",
    "An award-winning",
    "A beginner-friendly",
    "A collectible",
    "A bestselling",
    "A hand-painted",
    "An eco-friendly",
];
const DESC_CLOSE: &[&str] = &[
    "Batteries not included.",
    "Ships in a gift box.",
    "Parents call it \"the quiet-time hero\".",
    "Safety tested to EN 71.",
    "Great for rainy days, road trips and sleepovers.",
    "Includes a 2-year warranty.",
    "Assembly required; tools included.",
    "Limited edition.",
];
const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "River",
    "Lincoln",
    "Jefferson",
    "Highland",
    "Willow",
];
const STREET_KINDS: &[&str] = &["St.", "Ave.", "Blvd.", "Rd.", "Ln.", "Dr.", "Ct.", "Way"];
const CITIES: &[&str] = &[
    "Springfield, IL",
    "Seattle, WA",
    "Portland, OR",
    "Austin, TX",
    "Denver, CO",
    "Boston, MA",
    "Madison, WI",
    "Raleigh, NC",
    "Phoenix, AZ",
    "Columbus, OH",
    "Nashville, TN",
    "Salt Lake City, UT",
    "Sacramento, CA",
    "Richmond, VA",
    "Albany, NY",
    "Tampa, FL",
];

fn pick(rng: &mut Pcg64, list: &[&'static str]) -> &'static str {
    list[draw(rng, list.len() as u64) as usize]
}

/// `1234 Maple Ave.[, Apt 5], Springfield, IL 62704`
fn push_address(rng: &mut Pcg64, out: &mut Vec<u8>) {
    push_u64(out, 1 + draw(rng, 9999));
    out.push(b' ');
    out.extend_from_slice(pick(rng, STREETS).as_bytes());
    out.push(b' ');
    out.extend_from_slice(pick(rng, STREET_KINDS).as_bytes());
    if draw(rng, 5) == 0 {
        out.extend_from_slice(b", Apt ");
        push_u64(out, 1 + draw(rng, 40));
    }
    out.extend_from_slice(b", ");
    out.extend_from_slice(pick(rng, CITIES).as_bytes());
    out.push(b' ');
    push_u64(out, 10_000 + draw(rng, 90_000));
}

/// Position in one table's rows; emits one row at a time.
struct Cursor {
    data: Arc<Data>,
    table: Table,
    /// 0-based index of the next row.
    row: u64,
    end: u64,
    rng: Pcg64,
    /// Line items: the current order (0-based) and line within it.
    order: usize,
    line: u8,
    a: Vec<u8>,
    b: Vec<u8>,
}

impl Cursor {
    /// A cursor over the rows with 0-based indexes in `rows` (clamped to the
    /// table). Rows are the same as when generated from the first row.
    fn new(data: Arc<Data>, table: Table, rows: Range<u64>) -> Cursor {
        let total = data.counts.get(table);
        let end = rows.end.min(total);
        let start = rows.start.min(end);
        // Go back to the start of the chunk holding `start`, then skip.
        let (row, order) = match table {
            Table::LineItems => {
                let c = data.chunk_line_start.partition_point(|&s| s <= start) - 1;
                (data.chunk_line_start[c], c * RNG_CHUNK as usize)
            }
            _ => (start - start % RNG_CHUNK, 0),
        };
        let mut cursor = Cursor {
            rng: rng_for(data.seed, table.stream(), 0),
            data,
            table,
            row,
            end,
            order,
            line: 0,
            a: Vec::with_capacity(128),
            b: Vec::with_capacity(128),
        };
        while cursor.row < start {
            cursor.emit(&mut Skip);
        }
        cursor
    }

    fn done(&self) -> bool {
        self.row >= self.end
    }

    /// Emits the next row (the caller checks [`Cursor::done`] first).
    #[inline]
    fn emit<E: Enc>(&mut self, e: &mut E) {
        match self.table {
            Table::Stores => self.store(e),
            Table::Products => self.product(e),
            Table::Orders => self.order(e),
            Table::LineItems => self.line_item(e),
        }
    }

    fn reseed_per_row(&mut self) {
        if self.row.is_multiple_of(RNG_CHUNK) {
            self.rng = rng_for(self.data.seed, self.table.stream(), self.row / RNG_CHUNK);
        }
    }

    fn store<E: Enc>(&mut self, e: &mut E) {
        self.reseed_per_row();
        let rng = &mut self.rng;
        let name = &mut self.a;
        name.clear();
        name.extend_from_slice(pick(rng, STORE_ADJ).as_bytes());
        name.push(b' ');
        name.extend_from_slice(pick(rng, STORE_NOUN).as_bytes());
        name.extend_from_slice(pick(rng, STORE_SUFFIX).as_bytes());
        let category = pick(rng, CATEGORIES);
        e.row(3);
        e.int(self.row + 1);
        e.text(&self.a);
        e.text(category.as_bytes());
        e.end();
        self.row += 1;
    }

    fn product<E: Enc>(&mut self, e: &mut E) {
        self.reseed_per_row();
        let i = self.row as usize;
        let rng = &mut self.rng;
        let thing = pick(rng, PRODUCT_THING);
        let name = &mut self.a;
        name.clear();
        name.extend_from_slice(pick(rng, PRODUCT_ADJ).as_bytes());
        name.push(b' ');
        name.extend_from_slice(thing.as_bytes());
        let desc = &mut self.b;
        desc.clear();
        desc.extend_from_slice(pick(rng, DESC_OPEN).as_bytes());
        desc.push(b' ');
        desc.extend_from_slice(thing.as_bytes());
        desc.extend_from_slice(b", ages ");
        push_u64(desc, 1 + draw(rng, 12));
        desc.extend_from_slice(b"+. ");
        desc.extend_from_slice(pick(rng, DESC_CLOSE).as_bytes());
        e.row(5);
        e.int(self.row + 1);
        e.int(self.data.product_store[i] as u64);
        e.text(&self.a);
        e.text(&self.b);
        e.cents(self.data.product_price[i] as u64);
        e.end();
        self.row += 1;
    }

    fn order<E: Enc>(&mut self, e: &mut E) {
        self.reseed_per_row();
        let n = self.data.counts.orders;
        let o = self.row;
        let rng = &mut self.rng;
        // Spread over two years in order_id order, with jitter.
        let step = (TS_SPAN as u64 / n).max(1);
        let base = (o as u128 * TS_SPAN as u128 / n as u128) as i64;
        let ordered_at = TS_START + base + draw(rng, step) as i64;
        // The newest orders are still open; older ones mostly delivered.
        let r = draw(rng, 100);
        let status = if o * 50 >= n * 49 {
            if r < 55 {
                "Pending"
            } else {
                "Shipped"
            }
        } else {
            match r {
                0..=84 => "Delivered",
                85..=92 => "Cancelled",
                93..=96 => "Returned",
                _ => "Shipped",
            }
        };
        self.a.clear();
        push_address(rng, &mut self.a);
        // Shipping: NULL (= billing) 30%, the billing address 45%, another 25%.
        let ship = draw(rng, 100);
        if ship >= 75 {
            self.b.clear();
            push_address(rng, &mut self.b);
        }
        e.row(6);
        e.int(o + 1);
        e.int(self.data.order_store[o as usize] as u64);
        e.text(status.as_bytes());
        e.text(&self.a);
        match ship {
            0..=29 => e.null(),
            30..=74 => e.text(&self.a),
            _ => e.text(&self.b),
        }
        e.ts(ordered_at);
        e.end();
        self.row += 1;
    }

    fn line_item<E: Enc>(&mut self, e: &mut E) {
        let o = self.order;
        if self.line == 0 && (o as u64).is_multiple_of(RNG_CHUNK) {
            self.rng = rng_for(
                self.data.seed,
                Table::LineItems.stream(),
                o as u64 / RNG_CHUNK,
            );
        }
        let d = &*self.data;
        let store = d.order_store[o] as usize;
        let products =
            &d.store_products[d.store_off[store - 1] as usize..d.store_off[store] as usize];
        let x = self.rng.next_u64();
        // One draw: low half = the product, top two bits = quantity 1-4.
        let product = products[below32(x as u32, products.len() as u32) as usize];
        let quantity = 1 + (x >> 62);
        let price = d.product_price[product as usize - 1] as u64;
        e.row(5);
        e.int(self.row + 1);
        e.int(product as u64);
        e.int(o as u64 + 1);
        e.int(quantity);
        e.cents(price * quantity);
        e.end();
        self.row += 1;
        self.line += 1;
        if self.line == d.order_lines[o] {
            self.line = 0;
            self.order += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[derive(Debug, Clone, PartialEq)]
    enum Val {
        Int(u64),
        Text(String),
        Null,
        Cents(u64),
        Ts(i64),
    }

    /// Records rows as values, to check content independent of format.
    #[derive(Default)]
    struct Capture {
        rows: Vec<Vec<Val>>,
    }

    impl Enc for Capture {
        fn row(&mut self, _: i16) {
            self.rows.push(Vec::new());
        }
        fn int(&mut self, v: u64) {
            self.rows.last_mut().unwrap().push(Val::Int(v));
        }
        fn text(&mut self, s: &[u8]) {
            let s = String::from_utf8(s.to_vec()).expect("UTF-8");
            self.rows.last_mut().unwrap().push(Val::Text(s));
        }
        fn null(&mut self) {
            self.rows.last_mut().unwrap().push(Val::Null);
        }
        fn cents(&mut self, c: u64) {
            self.rows.last_mut().unwrap().push(Val::Cents(c));
        }
        fn ts(&mut self, secs: i64) {
            self.rows.last_mut().unwrap().push(Val::Ts(secs));
        }
        fn end(&mut self) {}
    }

    fn capture(g: &Generator, table: Table) -> Vec<Vec<Val>> {
        let mut c = Capture::default();
        let mut cursor = Cursor::new(g.data.clone(), table, 0..u64::MAX);
        while !cursor.done() {
            cursor.emit(&mut c);
        }
        c.rows
    }

    fn int(v: &Val) -> u64 {
        match v {
            Val::Int(i) => *i,
            other => panic!("not an int: {other:?}"),
        }
    }

    fn cents(v: &Val) -> u64 {
        match v {
            Val::Cents(c) => *c,
            other => panic!("not a numeric: {other:?}"),
        }
    }

    fn small() -> Generator {
        Generator::new(0.01, 42).unwrap()
    }

    fn concat(it: impl Iterator<Item = Bytes>) -> Vec<u8> {
        it.flat_map(|b| b.to_vec()).collect()
    }

    #[test]
    fn scale_one_has_the_seeds_exact_counts() {
        let g = Generator::new(1.0, 42).unwrap();
        assert_eq!(g.counts(), SEED_COUNTS);
        assert_eq!(
            g.counts(),
            Counts {
                stores: 442,
                products: 10002,
                orders: 1_999_680,
                line_items: 4_002_959
            }
        );
        let d = &g.data;
        assert_eq!(d.order_store.len(), 1_999_680);
        assert_eq!(d.order_lines.len(), 1_999_680);
        let lines: u64 = d.order_lines.iter().map(|&l| l as u64).sum();
        assert_eq!(lines, 4_002_959);
        assert!(d.order_lines.iter().all(|&l| (1..=3).contains(&l)));
        assert_eq!(*d.chunk_line_start.last().unwrap(), 4_002_959);
        assert_eq!(d.product_store.len(), 10002);
        assert_eq!(d.store_off[442] as usize, 10002);
        // The hot tenant: about 10% of the orders on top of its share.
        let mut per_store = vec![0u64; 443];
        for &s in &d.order_store {
            per_store[s as usize] += 1;
        }
        let hot = per_store[5];
        let max_other = per_store
            .iter()
            .enumerate()
            .filter(|(s, _)| *s != 5)
            .map(|(_, &n)| n)
            .max()
            .unwrap();
        assert!(hot > 190_000 && hot < 215_000, "store 5 has {hot} orders");
        assert!(hot > 10 * max_other, "{hot} vs {max_other}");
        // Files at scale 1: orders_1..4, line_items_1..9.
        let names: Vec<String> = g
            .csv_files(Path::new("d"), ROWS_PER_FILE)
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let mut expected = vec!["stores.csv".to_string(), "products.csv".to_string()];
        expected.extend((1..=4).map(|k| format!("orders_{k}.csv")));
        expected.extend((1..=9).map(|k| format!("line_items_{k}.csv")));
        assert_eq!(names, expected);
    }

    #[test]
    fn counts_follow_the_scale_rules() {
        for scale in [0.000_001, 0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 3.7] {
            let g = Generator::new(scale, 7).unwrap();
            let c = g.counts();
            let r = |n: u64| (n as f64 * scale).round() as u64;
            assert_eq!(c.stores, r(442).max(5), "scale {scale}");
            assert_eq!(c.products, r(10002).max(c.stores), "scale {scale}");
            assert_eq!(c.orders, r(1_999_680).max(1), "scale {scale}");
            assert_eq!(
                c.line_items,
                r(4_002_959).clamp(c.orders, 3 * c.orders),
                "scale {scale}"
            );
            let lines: u64 = g.data.order_lines.iter().map(|&l| l as u64).sum();
            assert_eq!(lines, c.line_items, "scale {scale}");
            for t in Table::ALL {
                assert_eq!(g.rows(t), c.get(t));
            }
        }
        let c = Generator::new(2.0, 1).unwrap().counts();
        assert_eq!(
            (c.stores, c.products, c.orders, c.line_items),
            (884, 20004, 3_999_360, 8_005_918)
        );
        let c = Generator::new(0.001, 1).unwrap().counts();
        assert_eq!(
            (c.stores, c.products, c.orders, c.line_items),
            (5, 10, 2000, 4003)
        );
    }

    #[test]
    fn bad_scales_are_refused_with_a_hint() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = Generator::new(bad, 42).unwrap_err();
            assert!(matches!(e, GenError::InvalidScale(_)), "{bad}: {e}");
            assert!(e.to_string().contains("greater than 0"), "{e}");
        }
        let e = Generator::new(1e-9, 42).unwrap_err();
        assert!(matches!(e, GenError::TooSmall(_)), "{e}");
        assert!(e.to_string().contains("at least"), "{e}");
        let e = Generator::new(1000.0, 42).unwrap_err();
        assert!(matches!(e, GenError::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("at most"), "{e}");
    }

    #[test]
    fn table_names_and_columns_match_the_schema() {
        assert_eq!(Table::ALL.map(|t| t.name()), TABLES);
        for t in Table::ALL {
            let start = SCHEMA_SQL
                .find(&format!("CREATE TABLE {}\n", t.name()))
                .unwrap();
            let body = &SCHEMA_SQL[start..];
            let body = &body[..body.find(");").unwrap()];
            let cols: Vec<&str> = body
                .lines()
                .skip(2)
                .map(|l| l.split_whitespace().next().unwrap())
                .collect();
            assert_eq!(cols, t.columns(), "{}", t.name());
        }
        assert!(SCHEMA_SQL.contains("    store_id bigint REFERENCES stores (store_id),\n"));
        assert!(SCHEMA_SQL.contains("    order_id bigint REFERENCES orders (order_id),\n"));
    }

    #[test]
    fn the_data_keeps_the_seeds_relationships() {
        let g = small();
        let c = g.counts();
        let stores = capture(&g, Table::Stores);
        let products = capture(&g, Table::Products);
        let orders = capture(&g, Table::Orders);
        let lines = capture(&g, Table::LineItems);
        assert_eq!(stores.len() as u64, c.stores);
        assert_eq!(products.len() as u64, c.products);
        assert_eq!(orders.len() as u64, c.orders);
        assert_eq!(lines.len() as u64, c.line_items);

        for (i, s) in stores.iter().enumerate() {
            assert_eq!(s.len(), 3);
            assert_eq!(int(&s[0]), i as u64 + 1);
            assert!(matches!(&s[2], Val::Text(t) if CATEGORIES.contains(&t.as_str())));
        }
        // Every store sells something.
        let mut product_store = HashMap::new();
        let mut price = HashMap::new();
        for (i, p) in products.iter().enumerate() {
            assert_eq!(p.len(), 5);
            assert_eq!(int(&p[0]), i as u64 + 1);
            let s = int(&p[1]);
            assert!((1..=c.stores).contains(&s));
            product_store.insert(int(&p[0]), s);
            price.insert(int(&p[0]), cents(&p[4]));
            assert!(cents(&p[4]) >= 200);
        }
        let selling: HashSet<u64> = product_store.values().copied().collect();
        assert_eq!(selling.len() as u64, c.stores);

        let mut order_store = HashMap::new();
        let mut per_store = HashMap::new();
        let mut null_shipping = 0;
        let mut prev_ts = 0;
        for (i, o) in orders.iter().enumerate() {
            assert_eq!(o.len(), 6);
            assert_eq!(int(&o[0]), i as u64 + 1);
            order_store.insert(int(&o[0]), int(&o[1]));
            *per_store.entry(int(&o[1])).or_insert(0u64) += 1;
            assert!(matches!(&o[2], Val::Text(s) if
                ["Pending", "Shipped", "Delivered", "Cancelled", "Returned"].contains(&s.as_str())));
            assert!(matches!(&o[3], Val::Text(s) if s.contains(", ")));
            if o[4] == Val::Null {
                null_shipping += 1;
            }
            let Val::Ts(ts) = o[5] else { panic!() };
            assert!((TS_START..TS_START + TS_SPAN).contains(&ts));
            assert!(ts >= prev_ts, "timestamps follow order ids");
            prev_ts = ts;
        }
        assert!(null_shipping > orders.len() / 5 && null_shipping < orders.len() / 2);
        // Store 5 is the hot tenant.
        let hot = per_store[&5];
        assert!(per_store.iter().all(|(&s, &n)| s == 5 || n < hot));

        // Line items: sequential ids, consecutive per order, 1-3 per order,
        // product of the order's store, amount = price * quantity.
        let mut per_order: Vec<u64> = vec![0; c.orders as usize + 1];
        let mut last_order = 0;
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l.len(), 5);
            assert_eq!(int(&l[0]), i as u64 + 1);
            let (product, order, quantity) = (int(&l[1]), int(&l[2]), int(&l[3]));
            assert!(
                order == last_order || order == last_order + 1,
                "consecutive"
            );
            last_order = order;
            per_order[order as usize] += 1;
            assert_eq!(product_store[&product], order_store[&order]);
            assert!((1..=4).contains(&quantity));
            assert_eq!(cents(&l[4]), price[&product] * quantity);
        }
        assert_eq!(last_order, c.orders);
        assert!(per_order[1..].iter().all(|n| (1..=3).contains(n)));
        let quantities: HashSet<u64> = lines.iter().map(|l| int(&l[3])).collect();
        assert_eq!(quantities.len(), 4);
    }

    /// Splits one CSV line into (field, was quoted).
    fn split_csv(line: &str) -> Vec<(String, bool)> {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let (mut quoted, mut in_quotes) = (false, false);
        let mut chars = line.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '"' if in_quotes && chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                '"' if in_quotes => in_quotes = false,
                '"' if cur.is_empty() => (quoted, in_quotes) = (true, true),
                ',' if !in_quotes => {
                    fields.push((std::mem::take(&mut cur), quoted));
                    quoted = false;
                }
                ch => cur.push(ch),
            }
        }
        fields.push((cur, quoted));
        fields
    }

    fn csv_text(v: &Val) -> (String, bool) {
        match v {
            Val::Int(i) => (i.to_string(), false),
            Val::Text(s) => (s.clone(), s.contains([',', '"'])),
            Val::Null => (String::new(), false),
            Val::Cents(c) => (format!("{}.{:02}", c / 100, c % 100), false),
            Val::Ts(s) => {
                let mut b = Vec::new();
                push_timestamp(&mut b, *s);
                (String::from_utf8(b).unwrap(), false)
            }
        }
    }

    #[test]
    fn csv_files_have_the_seeds_layout_and_quote_properly() {
        let g = small();
        let dir = tempfile::tempdir().unwrap();
        let last = Mutex::new(0u64);
        let paths = g
            .write_csv(dir.path(), &|n| {
                let mut l = last.lock().unwrap();
                assert!(n >= *l, "progress increases");
                *l = n;
            })
            .unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "stores.csv",
                "products.csv",
                "orders_1.csv",
                "line_items_1.csv"
            ]
        );
        let total: u64 = paths.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
        assert_eq!(*last.lock().unwrap(), total);

        for (table, path) in Table::ALL.into_iter().zip(&paths) {
            let text = fs::read_to_string(path).unwrap();
            let mut lines = text.lines();
            if table == Table::Stores {
                assert_eq!(lines.next(), Some("store_id,name,category"));
            } else {
                assert!(text.starts_with("1,"), "{}: no header", table.name());
            }
            let rows = capture(&g, table);
            let lines: Vec<&str> = lines.collect();
            assert_eq!(lines.len(), rows.len());
            for (line, row) in lines.iter().zip(&rows) {
                let fields = split_csv(line);
                let expected: Vec<(String, bool)> = row.iter().map(csv_text).collect();
                assert_eq!(fields, expected, "{line}");
            }
            // The csv crate reads the same values back.
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(table == Table::Stores)
                .from_path(path)
                .unwrap();
            let n = rdr.records().inspect(|r| assert!(r.is_ok())).count();
            assert_eq!(n, rows.len());
        }

        // A NULL shipping address is an empty, unquoted field; commas and
        // double quotes inside text are quoted and escaped.
        let orders = fs::read_to_string(&paths[2]).unwrap();
        let line = orders
            .lines()
            .find(|l| split_csv(l)[4] == (String::new(), false))
            .expect("some order without a shipping address");
        assert!(line.contains("\",,20"), "{line}");
        let products = fs::read_to_string(&paths[1]).unwrap();
        assert!(products.contains("\"\"the quiet-time hero\"\"."));
        assert!(products.contains("Café"));
    }

    #[test]
    fn files_split_every_n_rows_and_join_to_the_whole_table() {
        let g = small();
        let dir = tempfile::tempdir().unwrap();
        let paths = g.write_csv_with(dir.path(), &|_| {}, 3, 3000).unwrap();
        let c = g.counts();
        let orders: Vec<&PathBuf> = paths
            .iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("orders_")
            })
            .collect();
        let lines: Vec<&PathBuf> = paths
            .iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("line_items_")
            })
            .collect();
        assert_eq!(orders.len() as u64, c.orders.div_ceil(3000));
        assert_eq!(lines.len() as u64, c.line_items.div_ceil(3000));
        for (k, p) in lines.iter().enumerate() {
            assert_eq!(
                p.file_name().unwrap().to_str().unwrap(),
                format!("line_items_{}.csv", k + 1)
            );
            let n = fs::read_to_string(p).unwrap().lines().count() as u64;
            let expected = if k + 1 < lines.len() {
                3000
            } else {
                c.line_items - 3000 * k as u64
            };
            assert_eq!(n, expected);
        }
        // The parts are the one-file output cut in pieces.
        let whole = tempfile::tempdir().unwrap();
        let one = g
            .write_csv_with(whole.path(), &|_| {}, 1, u64::MAX)
            .unwrap();
        let join =
            |ps: &[&PathBuf]| -> Vec<u8> { ps.iter().flat_map(|p| fs::read(p).unwrap()).collect() };
        assert_eq!(join(&orders), fs::read(&one[2]).unwrap());
        assert_eq!(join(&lines), fs::read(&one[3]).unwrap());
    }

    #[test]
    fn output_is_deterministic_whatever_the_threads() {
        let read_all = |paths: &[PathBuf]| -> Vec<(String, Vec<u8>)> {
            paths
                .iter()
                .map(|p| {
                    (
                        p.file_name().unwrap().to_string_lossy().into_owned(),
                        fs::read(p).unwrap(),
                    )
                })
                .collect()
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let c = tempfile::tempdir().unwrap();
        let first = read_all(&small().write_csv_with(a.path(), &|_| {}, 1, 4000).unwrap());
        let second = read_all(&small().write_csv_with(b.path(), &|_| {}, 4, 4000).unwrap());
        assert_eq!(first, second);
        let other = read_all(
            &Generator::new(0.01, 43)
                .unwrap()
                .write_csv_with(c.path(), &|_| {}, 2, 4000)
                .unwrap(),
        );
        assert_ne!(first, other, "another seed gives other data");

        for t in Table::ALL {
            let x = concat(small().binary_copy(t, 1 << 16));
            let y = concat(small().binary_copy(t, 1000));
            assert_eq!(x, y, "{}", t.name());
        }
    }

    /// Decodes a binary COPY stream into rows of raw fields.
    fn decode(stream: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
        assert_eq!(&stream[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&stream[11..19], &[0u8; 8]);
        let mut pos = 19;
        let mut rows = Vec::new();
        loop {
            let n = i16::from_be_bytes([stream[pos], stream[pos + 1]]);
            pos += 2;
            if n == -1 {
                break;
            }
            let mut row = Vec::new();
            for _ in 0..n {
                let len = i32::from_be_bytes(stream[pos..pos + 4].try_into().unwrap());
                pos += 4;
                if len == -1 {
                    row.push(None);
                } else {
                    row.push(Some(stream[pos..pos + len as usize].to_vec()));
                    pos += len as usize;
                }
            }
            rows.push(row);
        }
        assert_eq!(pos, stream.len(), "trailer is last");
        rows
    }

    fn binary_of(v: &Val) -> Option<Vec<u8>> {
        match v {
            Val::Int(i) => Some((*i as i64).to_be_bytes().to_vec()),
            Val::Text(s) => Some(s.as_bytes().to_vec()),
            Val::Null => None,
            Val::Cents(c) => {
                let mut b = Vec::new();
                push_numeric_cents(&mut b, *c);
                Some(b[4..].to_vec())
            }
            Val::Ts(s) => Some((s * 1_000_000).to_be_bytes().to_vec()),
        }
    }

    #[test]
    fn binary_streams_hold_the_same_rows() {
        let g = small();
        for t in Table::ALL {
            let chunks: Vec<Bytes> = g.binary_copy(t, 8192).collect();
            for c in &chunks[..chunks.len() - 1] {
                assert!(c.len() >= 8192 && c.len() < 8192 + 512, "{}", c.len());
            }
            let stream: Vec<u8> = chunks.iter().flat_map(|b| b.to_vec()).collect();
            let rows = decode(&stream);
            let expected: Vec<Vec<Option<Vec<u8>>>> = capture(&g, t)
                .iter()
                .map(|r| r.iter().map(binary_of).collect())
                .collect();
            assert_eq!(rows.len() as u64, g.rows(t));
            assert_eq!(rows, expected, "{}", t.name());
            assert_eq!(rows[0].len(), t.columns().len());

            // Ranges are complete streams of the same rows.
            let n = g.rows(t);
            let cuts = [0, 1, n / 3, n / 3 + 1, n - 1, n];
            let mut joined = Vec::new();
            for w in cuts.windows(2) {
                let part = concat(g.binary_copy_range(t, w[0]..w[1], 4096));
                joined.extend(decode(&part));
            }
            assert_eq!(joined, rows, "{}", t.name());
        }
        // Empty table range: header and trailer only.
        let empty = concat(g.binary_copy_range(Table::Orders, 5..5, 100));
        assert_eq!(empty.len(), 19 + 2);
    }

    fn numeric(c: u64) -> Vec<u8> {
        let mut b = Vec::new();
        push_numeric_cents(&mut b, c);
        b
    }

    #[test]
    fn numeric_binary_encoding_matches_numeric_send() {
        // length | ndigits | weight | sign | dscale | base-10000 digits
        assert_eq!(numeric(0), [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(
            numeric(5),
            [0, 0, 0, 10, 0, 1, 0xff, 0xff, 0, 0, 0, 2, 0x01, 0xf4]
        );
        assert_eq!(
            numeric(1250),
            [0, 0, 0, 12, 0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x13, 0x88]
        );
        assert_eq!(
            numeric(1_000_000),
            [0, 0, 0, 10, 0, 1, 0, 1, 0, 0, 0, 2, 0, 1]
        );
        assert_eq!(
            numeric(12_345_678_999),
            [0, 0, 0, 16, 0, 4, 0, 2, 0, 0, 0, 2, 0, 1, 0x09, 0x29, 0x1a, 0x85, 0x26, 0xac]
        );
        // 12.00 -> [12]; 0.50 -> [5000] weight -1; 1.01 -> [1, 100]
        assert_eq!(numeric(1200), [0, 0, 0, 10, 0, 1, 0, 0, 0, 0, 0, 2, 0, 12]);
        assert_eq!(
            numeric(50),
            [0, 0, 0, 10, 0, 1, 0xff, 0xff, 0, 0, 0, 2, 0x13, 0x88]
        );
        assert_eq!(
            numeric(101),
            [0, 0, 0, 12, 0, 2, 0, 0, 0, 0, 0, 2, 0, 1, 0, 100]
        );
        // Largest input still fits.
        assert_eq!(numeric(u64::MAX).len(), 4 + 8 + 2 * 6);
    }

    #[test]
    fn timestamps_format_like_postgresql() {
        let fmt = |s: i64| {
            let mut b = Vec::new();
            push_timestamp(&mut b, s);
            String::from_utf8(b).unwrap()
        };
        assert_eq!(fmt(0), "2000-01-01 00:00:00");
        assert_eq!(fmt(TS_START), "2022-01-01 00:00:00");
        assert_eq!(fmt(TS_START + TS_SPAN - 1), "2023-12-31 23:59:59");
        // 2023-04-01 13:45:10: 8036 + 365 + 31 + 28 + 31 days after 2000-01-01.
        let secs = (8036 + 365 + 90) * 86_400 + 13 * 3600 + 45 * 60 + 10;
        assert_eq!(fmt(secs), "2023-04-01 13:45:10");
        assert_eq!(fmt(59 * 86_400), "2000-02-29 00:00:00");
        assert_eq!(fmt(-1), "1999-12-31 23:59:59");
    }

    #[test]
    fn generator_is_cheap_to_clone_and_streams_outlive_it() {
        let it = {
            let g = small();
            let clone = g.clone();
            assert!(Arc::ptr_eq(&g.data, &clone.data));
            g.binary_copy(Table::Stores, 1024)
        };
        let handle = std::thread::spawn(move || it.map(|b| b.len()).sum::<usize>());
        assert!(handle.join().unwrap() > 19);
    }
}

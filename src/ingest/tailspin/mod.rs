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

mod encode;
mod generator;
mod random;
mod rows;
mod words;

use self::{encode::*, generator::*, random::*, rows::*, words::*};
pub use generator::Generator;

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

    pub fn get(&self, table: TailspinTable) -> u64 {
        match table {
            TailspinTable::Stores => self.stores,
            TailspinTable::Products => self.products,
            TailspinTable::Orders => self.orders,
            TailspinTable::LineItems => self.line_items,
        }
    }

    pub fn total(&self) -> u64 {
        self.stores + self.products + self.orders + self.line_items
    }
}

/// One of the four tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TailspinTable {
    Stores,
    Products,
    Orders,
    LineItems,
}

impl TailspinTable {
    /// In foreign-key (load) order.
    pub const ALL: [TailspinTable; 4] = [
        TailspinTable::Stores,
        TailspinTable::Products,
        TailspinTable::Orders,
        TailspinTable::LineItems,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            TailspinTable::Stores => "stores",
            TailspinTable::Products => "products",
            TailspinTable::Orders => "orders",
            TailspinTable::LineItems => "line_items",
        }
    }

    /// Column names in [`SCHEMA_SQL`] order (the order of CSV fields and of
    /// binary COPY fields).
    pub fn columns(&self) -> &'static [&'static str] {
        match self {
            TailspinTable::Stores => &["store_id", "name", "category"],
            TailspinTable::Products => &["product_id", "store_id", "name", "description", "price"],
            TailspinTable::Orders => &[
                "order_id",
                "store_id",
                "status",
                "billing_address",
                "shipping_address",
                "ordered_at",
            ],
            TailspinTable::LineItems => &[
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
            TailspinTable::Stores => 1,
            TailspinTable::Products => 2,
            TailspinTable::Orders => 3,
            TailspinTable::LineItems => 4,
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

    fn capture(g: &Generator, table: TailspinTable) -> Vec<Vec<Val>> {
        let mut c = Capture::default();
        let mut cursor = RowCursor::new(g.data.clone(), table, 0..u64::MAX);
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
            for t in TailspinTable::ALL {
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
        assert_eq!(TailspinTable::ALL.map(|t| t.name()), TABLES);
        for t in TailspinTable::ALL {
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
        let stores = capture(&g, TailspinTable::Stores);
        let products = capture(&g, TailspinTable::Products);
        let orders = capture(&g, TailspinTable::Orders);
        let lines = capture(&g, TailspinTable::LineItems);
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

        for (table, path) in TailspinTable::ALL.into_iter().zip(&paths) {
            let text = fs::read_to_string(path).unwrap();
            let mut lines = text.lines();
            if table == TailspinTable::Stores {
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
                .has_headers(table == TailspinTable::Stores)
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

        for t in TailspinTable::ALL {
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
        for t in TailspinTable::ALL {
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
        let empty = concat(g.binary_copy_range(TailspinTable::Orders, 5..5, 100));
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
            g.binary_copy(TailspinTable::Stores, 1024)
        };
        let handle = std::thread::spawn(move || it.map(|b| b.len()).sum::<usize>());
        assert!(handle.join().unwrap() > 19);
    }
}

//! The COPY loader against real PostgreSQL: every test gets its own
//! throwaway cluster with the seed's four tables (pre-seeded with two rows
//! each) and writes its CSV files into a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use shardready::conn::Target;
use shardready::ingest::copy::{
    load, resolve_inputs, CopyError, CsvOptions, InputFile, LoadOptions, LoadReport, Source,
    TableLoad,
};
use shardready::sandbox::TestCluster;
use tokio_postgres::Client;

const SCHEMA: &str = "
CREATE TABLE stores (
    store_id bigserial PRIMARY KEY,
    name text,
    category text
);
CREATE TABLE products (
    product_id bigserial PRIMARY KEY,
    store_id bigint REFERENCES stores (store_id),
    name text,
    description text,
    price numeric
);
CREATE TABLE orders (
    order_id bigserial PRIMARY KEY,
    store_id bigint REFERENCES stores (store_id),
    status text,
    billing_address text,
    shipping_address text,
    ordered_at timestamp
);
CREATE TABLE line_items (
    line_item_id bigserial PRIMARY KEY,
    product_id bigint REFERENCES products (product_id),
    order_id bigint REFERENCES orders (order_id),
    quantity bigint,
    line_amount numeric
);
INSERT INTO stores (name, category) VALUES ('Seed A', 'toys'), ('Seed B', 'games');
INSERT INTO products (store_id, name, description, price)
     VALUES (1, 'P1', 'first', 1.00), (2, 'P2', 'second', 2.00);
INSERT INTO orders (store_id, status, billing_address, shipping_address, ordered_at)
     VALUES (1, 'Done', 'a', 'b', '2022-01-01'), (2, 'Done', 'a', 'b', '2022-01-02');
INSERT INTO line_items (product_id, order_id, quantity, line_amount)
     VALUES (1, 1, 1, 1.00), (2, 2, 1, 2.00);
";

const TABLES: [&str; 4] = ["stores", "products", "orders", "line_items"];

struct Db {
    client: Client,
    dir: tempfile::TempDir,
    cluster: TestCluster,
}

async fn db_with(settings: Vec<(String, String)>) -> Db {
    let cluster = TestCluster::start_with(settings).expect("test cluster starts");
    let client = Target::parse(&cluster.url())
        .expect("sandbox url parses")
        .connect()
        .await
        .expect("connects");
    client.batch_execute(SCHEMA).await.expect("schema");
    Db {
        client,
        dir: tempfile::tempdir().expect("tempdir"),
        cluster,
    }
}

async fn db() -> Db {
    db_with(Vec::new()).await
}

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write test file");
    path
}

/// The good dataset: ids above the seeded ones; a quoted empty string, an
/// unquoted empty field, a field with a newline and a comma, a file without
/// a final newline, a CRLF file, and orders_10 to test natural order.
fn good_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "stores.csv",
            b"101,Toy Town,toys\n102,\"\",\n103,\"Line one\nline two, with comma\",games".to_vec(),
        ),
        (
            "products_1.csv",
            b"201,101,Robot,\"A \"\"robot\"\"\",19.99\n202,102,Kite,,5.50\n".to_vec(),
        ),
        (
            "products_2.csv",
            b"203,103,Puzzle,500 pieces,12.00\n".to_vec(),
        ),
        (
            "orders_1.csv",
            b"301,101,Pending,1 Main St,,2023-01-02 10:00:00\n".to_vec(),
        ),
        (
            "orders_2.csv",
            b"302,102,Pending,\"2 Main St\r\nApt 4\",,2023-01-03 10:00:00\r\n\
              303,103,Shipped,3 Main St,3 Main St,2023-01-04 10:00:00\r\n"
                .to_vec(),
        ),
        (
            "orders_10.csv",
            b"304,103,Pending,\"4 Main St\nFloor 2\",,2023-01-05 10:00:00\n\
              305,101,Pending,\"5 Main St\nBox\n9\",,2023-01-06 10:00:00\n\
              306,102,Pending,6 Main St,,2023-01-07 10:00:00\n"
                .to_vec(),
        ),
        (
            "line_items_1.csv",
            b"401,201,301,2,39.98\n402,202,302,1,5.50\n".to_vec(),
        ),
        ("line_items_2.csv", b"403,203,304,3,36.00\n".to_vec()),
    ]
}

fn write_good(dir: &Path) {
    for (name, content) in good_files() {
        write(dir, name, &content);
    }
}

fn arg(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

fn csv_load(table: &str, args: &[String], options: CsvOptions) -> TableLoad {
    TableLoad {
        table: table.into(),
        source: Source::Csv {
            files: resolve_inputs(args).expect("inputs resolve"),
            options,
        },
    }
}

/// All four tables, children listed first (the loader orders them), with
/// explicit files, globs, and a natural-order glob over orders_1/2/10.
fn all_four(dir: &Path) -> Vec<TableLoad> {
    vec![
        csv_load(
            "line_items",
            &[arg(dir, "line_items_*.csv")],
            CsvOptions::default(),
        ),
        csv_load("orders", &[arg(dir, "orders_*.csv")], CsvOptions::default()),
        csv_load(
            "products",
            &[arg(dir, "products_1.csv"), arg(dir, "products_2.csv")],
            CsvOptions::default(),
        ),
        csv_load("stores", &[arg(dir, "stores.csv")], CsvOptions::default()),
    ]
}

async fn count(c: &Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

/// Everything a failed load must leave as it was: each table's rows
/// (count and checksum), each FK (name, validated, oid: a dropped and
/// re-created key would have a new oid) and each sequence's position.
async fn snapshot(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for t in TABLES {
        let row = c
            .query_one(
                &format!(
                    "SELECT count(*)::text || ' ' || \
                            coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') \
                       FROM {t} t"
                ),
                &[],
            )
            .await
            .expect("checksum");
        out.push(format!("{t}: {}", row.get::<_, String>(0)));
        let seq = c
            .query_one(
                &format!(
                    "SELECT last_value::text || ' ' || is_called::text FROM {t}_{}_seq",
                    id_col(t)
                ),
                &[],
            )
            .await
            .expect("sequence state");
        out.push(format!("{t} seq: {}", seq.get::<_, String>(0)));
    }
    for r in c
        .query(
            "SELECT conrelid::regclass::text || '.' || conname || ' valid=' || convalidated \
                    || ' oid=' || oid::text \
               FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
            &[],
        )
        .await
        .expect("constraints")
    {
        out.push(r.get(0));
    }
    out
}

fn id_col(table: &str) -> &'static str {
    match table {
        "stores" => "store_id",
        "products" => "product_id",
        "orders" => "order_id",
        _ => "line_item_id",
    }
}

async fn foreign_keys(c: &Client) -> Vec<(String, bool)> {
    c.query(
        "SELECT conrelid::regclass::text || '.' || conname, convalidated \
           FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
        &[],
    )
    .await
    .expect("constraints")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

const EXPECTED_FKS: [&str; 4] = [
    "line_items.line_items_order_id_fkey",
    "line_items.line_items_product_id_fkey",
    "orders.orders_store_id_fkey",
    "products.products_store_id_fkey",
];

/// Checks a successful load of the good dataset.
async fn assert_good_load(c: &Client, report: &LoadReport) {
    for (table, expected) in [
        ("stores", 5),
        ("products", 5),
        ("orders", 8),
        ("line_items", 5),
    ] {
        assert_eq!(count(c, table).await, expected, "{table} rows");
    }
    let mut loaded: Vec<(String, u64)> = report
        .tables
        .iter()
        .map(|t| (t.table.clone(), t.rows))
        .collect();
    // Referenced tables were loaded first, whatever order they were given in.
    let at = |t: &str| loaded.iter().position(|(n, _)| n == t).expect("loaded");
    assert!(
        at("stores") < at("products") && at("stores") < at("orders"),
        "{loaded:?}"
    );
    assert!(
        at("products") < at("line_items") && at("orders") < at("line_items"),
        "{loaded:?}"
    );
    loaded.sort();
    assert_eq!(
        loaded,
        vec![
            ("line_items".to_string(), 3),
            ("orders".to_string(), 6),
            ("products".to_string(), 3),
            ("stores".to_string(), 3),
        ]
    );
    assert!(report.tables.iter().all(|t| t.bytes > 0));

    let fks = foreign_keys(c).await;
    let names: Vec<&str> = fks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, EXPECTED_FKS, "every foreign key is back");
    assert!(
        fks.iter().all(|(_, valid)| *valid),
        "and validated: {fks:?}"
    );
    let mut revalidated = report.fk_revalidated.clone();
    revalidated.sort();
    assert_eq!(revalidated, EXPECTED_FKS);

    // Sequences continue after the loaded ids: nextval = max + 1.
    for (table, max) in [
        ("stores", 103),
        ("products", 203),
        ("orders", 306),
        ("line_items", 403),
    ] {
        let next: i64 = c
            .query_one(
                &format!("SELECT nextval('{table}_{}_seq')", id_col(table)),
                &[],
            )
            .await
            .expect("nextval")
            .get(0);
        assert_eq!(next, max + 1, "{table} sequence");
        assert!(
            report
                .sequences_set
                .contains(&seq_set(&format!("{table}_{}_seq", id_col(table)), max)),
            "{:?}",
            report.sequences_set
        );
    }

    // A quoted empty string stays '', an unquoted empty field is NULL.
    let row = c
        .query_one(
            "SELECT name, category FROM stores WHERE store_id = 102",
            &[],
        )
        .await
        .expect("store 102");
    assert_eq!(row.get::<_, Option<String>>(0), Some(String::new()));
    assert_eq!(row.get::<_, Option<String>>(1), None);
    // Embedded newline and comma, in the last line of a file without a final newline.
    let name: String = c
        .query_one("SELECT name FROM stores WHERE store_id = 103", &[])
        .await
        .expect("store 103")
        .get(0);
    assert_eq!(name, "Line one\nline two, with comma");
    // Doubled quotes; CRLF inside a quoted field of a CRLF file.
    let desc: String = c
        .query_one(
            "SELECT description FROM products WHERE product_id = 201",
            &[],
        )
        .await
        .expect("product 201")
        .get(0);
    assert_eq!(desc, "A \"robot\"");
    let addr: String = c
        .query_one(
            "SELECT billing_address FROM orders WHERE order_id = 302",
            &[],
        )
        .await
        .expect("order 302")
        .get(0);
    assert_eq!(addr, "2 Main St\r\nApt 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_files_and_globs_of_four_tables_in_one_transaction() {
    let mut db = db().await;
    let dir = db.dir.path().to_path_buf();
    write_good(&dir);

    let orders = resolve_inputs(&[arg(&dir, "orders_*.csv")]).expect("glob");
    let names: Vec<String> = orders.iter().map(|f| f.display_name()).collect();
    assert_eq!(
        names,
        vec![
            arg(&dir, "orders_1.csv"),
            arg(&dir, "orders_2.csv"),
            arg(&dir, "orders_10.csv")
        ],
        "natural order"
    );

    let report = load(&mut db.client, all_four(&dir), &LoadOptions::default())
        .await
        .expect("load succeeds");
    assert_good_load(&db.client, &report).await;
    // The report serializes for --format json.
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["tables"][0]["table"], "stores");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_zip_members_without_unpacking() {
    let mut db = db().await;
    let dir = db.dir.path().to_path_buf();
    let zip_path = dir.join("data.zip");
    {
        let mut zw = zip::ZipWriter::new(std::fs::File::create(&zip_path).expect("create zip"));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zw.add_directory("products/", opts).expect("dir entry");
        for (name, content) in good_files() {
            let member = if name.starts_with("products") {
                format!("products/{name}")
            } else {
                name.to_string()
            };
            zw.start_file(member, opts).expect("member");
            zw.write_all(&content).expect("member data");
        }
        zw.start_file("__MACOSX/._stores.csv", opts).expect("junk");
        zw.write_all(b"\0\x05\x16\x07").expect("junk data");
        zw.finish().expect("zip written");
    }
    let z = zip_path.to_string_lossy().into_owned();

    let all = resolve_inputs(std::slice::from_ref(&z)).expect("whole archive");
    let members: Vec<String> = all
        .iter()
        .map(|f| match f {
            InputFile::ZipMember { member, .. } => member.clone(),
            other => panic!("not a member: {other:?}"),
        })
        .collect();
    assert_eq!(
        members,
        [
            "line_items_1.csv",
            "line_items_2.csv",
            "orders_1.csv",
            "orders_2.csv",
            "orders_10.csv",
            "products/products_1.csv",
            "products/products_2.csv",
            "stores.csv"
        ],
        "natural order, no directories, no macOS junk"
    );
    assert_eq!(all[4].display_name(), format!("{z}:orders_10.csv"));

    let loads = vec![
        csv_load(
            "orders",
            &[format!("{z}:orders_*.csv")],
            CsvOptions::default(),
        ),
        csv_load(
            "line_items",
            &[format!("{z}:line_items_*.csv")],
            CsvOptions::default(),
        ),
        // No '/' in the pattern: it matches file names in any folder.
        csv_load(
            "products",
            &[format!("{z}:products_*.csv")],
            CsvOptions::default(),
        ),
        csv_load(
            "stores",
            &[format!("{z}:stores.csv")],
            CsvOptions::default(),
        ),
    ];
    let report = load(&mut db.client, loads, &LoadOptions::default())
        .await
        .expect("zip load succeeds");
    assert_good_load(&db.client, &report).await;
    let total: u64 = good_files().iter().map(|(_, c)| c.len() as u64).sum();
    assert_eq!(
        report.tables.iter().map(|t| t.bytes).sum::<u64>(),
        total,
        "uncompressed bytes are reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_per_file_delimiter_null_string_and_latin1() {
    let mut db = db().await;
    let dir = db.dir.path().to_path_buf();
    write(
        &dir,
        "stores_a.csv",
        b"store_id;name;category\n501;\"Semi;colon\";NULL\n502;\"NULL\";toys\n",
    );
    // LATIN1: 0xE9 is 'é'; the header repeats in every file.
    write(
        &dir,
        "stores_b.csv",
        b"store_id;name;category\r\n503;Caf\xe9;jeux\r\n504;;\r\n",
    );
    let utf8 = CsvOptions {
        header: true,
        delimiter: b';',
        null: Some("NULL".into()),
        ..CsvOptions::default()
    };
    let latin1 = CsvOptions {
        encoding: Some("latin1".into()),
        ..utf8.clone()
    };
    let loads = vec![
        csv_load("stores", &[arg(&dir, "stores_a.csv")], utf8),
        csv_load("public.STORES", &[arg(&dir, "stores_b.csv")], latin1),
    ];
    let report = load(&mut db.client, loads, &LoadOptions::default())
        .await
        .expect("load succeeds");
    assert_eq!(report.tables.len(), 2);
    assert_eq!(report.tables[0].rows, 2, "header skipped");
    assert_eq!(report.tables[1].rows, 2, "header skipped in each file");

    let rows: Vec<(i64, Option<String>, Option<String>)> = db
        .client
        .query(
            "SELECT store_id, name, category FROM stores WHERE store_id > 500 ORDER BY 1",
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (501, Some("Semi;colon".into()), None),
            (502, Some("NULL".into()), Some("toys".into())),
            (503, Some("Café".into()), Some("jeux".into())),
            // With a NULL string set, an empty unquoted field is an empty string.
            (504, Some(String::new()), Some(String::new())),
        ]
    );
    assert_eq!(
        report.sequences_set,
        vec![seq_set("stores_store_id_seq", 504)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_source_with_csv_children() {
    let mut db = db().await;
    let dir = db.dir.path().to_path_buf();

    // PGCOPY: signature, flags, header extension length, tuples, trailer.
    let mut stream = Vec::new();
    stream.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    stream.extend_from_slice(&0i32.to_be_bytes());
    stream.extend_from_slice(&0i32.to_be_bytes());
    let rows: [(i64, Option<&str>, Option<&str>); 2] = [
        (601, Some("Binary Bazaar"), Some("toys")),
        (602, None, Some("games")),
    ];
    for (id, name, category) in rows {
        stream.extend_from_slice(&3i16.to_be_bytes());
        stream.extend_from_slice(&8i32.to_be_bytes());
        stream.extend_from_slice(&id.to_be_bytes());
        for text in [name, category] {
            match text {
                Some(t) => {
                    stream.extend_from_slice(&(t.len() as i32).to_be_bytes());
                    stream.extend_from_slice(t.as_bytes());
                }
                None => stream.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
    }
    stream.extend_from_slice(&(-1i16).to_be_bytes());
    // Odd-sized chunks: boundaries fall inside the signature and fields.
    let chunks: Vec<Bytes> = stream.chunks(5).map(Bytes::copy_from_slice).collect();

    write(
        &dir,
        "products.csv",
        b"701,601,Abacus,wooden,3.00\n702,602,Ball,,1.00\n",
    );
    // A key that was NOT VALID before stays NOT VALID; its comment survives.
    db.client
        .batch_execute(
            "ALTER TABLE products DROP CONSTRAINT products_store_id_fkey;
             ALTER TABLE products ADD CONSTRAINT products_store_id_fkey
                 FOREIGN KEY (store_id) REFERENCES stores (store_id) NOT VALID;
             COMMENT ON CONSTRAINT products_store_id_fkey ON products IS 'tenant''s store';",
        )
        .await
        .expect("make the key NOT VALID");
    let loads = vec![
        csv_load(
            "products",
            &[arg(&dir, "products.csv")],
            CsvOptions::default(),
        ),
        TableLoad {
            table: "stores".into(),
            source: Source::Binary {
                chunks: Box::new(chunks.into_iter()),
                rows: 2,
            },
        },
    ];
    let report = load(&mut db.client, loads, &LoadOptions::default())
        .await
        .expect("binary load succeeds");
    assert_eq!(report.tables[0].table, "stores", "referenced table first");
    assert_eq!(report.tables[0].rows, 2);
    assert_eq!(report.tables[1].rows, 2);
    let row = db
        .client
        .query_one(
            "SELECT name, category FROM stores WHERE store_id = 602",
            &[],
        )
        .await
        .expect("store 602");
    assert_eq!(row.get::<_, Option<String>>(0), None);
    assert_eq!(row.get::<_, Option<String>>(1), Some("games".into()));
    let fks = foreign_keys(&db.client).await;
    assert_eq!(fks.len(), 4);
    for (name, valid) in &fks {
        assert_eq!(*valid, name != "products.products_store_id_fkey", "{name}");
    }
    assert!(
        report.fk_revalidated.is_empty(),
        "products' key was NOT VALID"
    );
    let comment: Option<String> = db
        .client
        .query_one(
            "SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint \
              WHERE conname = 'products_store_id_fkey'",
            &[],
        )
        .await
        .expect("comment")
        .get(0);
    assert_eq!(comment.as_deref(), Some("tenant's store"));
    let next: i64 = db
        .client
        .query_one("SELECT nextval('stores_store_id_seq')", &[])
        .await
        .expect("nextval")
        .get(0);
    assert_eq!(next, 603);

    // A stream that is not binary COPY data is refused; nothing changes.
    let before = snapshot(&db.client).await;
    let bad = vec![TableLoad {
        table: "stores".into(),
        source: Source::Binary {
            chunks: Box::new(std::iter::once(Bytes::from_static(b"603,csv,not binary\n"))),
            rows: 1,
        },
    }];
    let err = load(&mut db.client, bad, &LoadOptions::default())
        .await
        .expect_err("not PGCOPY");
    assert!(matches!(err, CopyError::Source { .. }), "{err}");
    assert_eq!(snapshot(&db.client).await, before);
}

/// Loads the good dataset with one file replaced, expects an error, and
/// checks that every table, key and sequence is exactly as before.
async fn failing_load(file: &str, content: &[u8], opts: LoadOptions) -> (CopyError, PathBuf) {
    let mut db = db().await;
    let dir = db.dir.path().to_path_buf();
    write_good(&dir);
    write(&dir, file, content);
    let before = snapshot(&db.client).await;
    assert_eq!(foreign_keys(&db.client).await.len(), 4);
    let err = load(&mut db.client, all_four(&dir), &opts)
        .await
        .expect_err("the load fails");
    eprintln!("{file}: {err}");
    assert!(!err.before_write(), "found during the load: {err}");
    assert!(
        err.to_string()
            .ends_with("— nothing was loaded (the load is one transaction)"),
        "{err}"
    );
    assert_eq!(
        snapshot(&db.client).await,
        before,
        "nothing changed after: {err}"
    );
    assert!(foreign_keys(&db.client).await.iter().all(|(_, v)| *v));
    // The session is usable again (the transaction was rolled back).
    assert_eq!(count(&db.client, "stores").await, 2);
    (err, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_column_count_names_file_and_physical_line() {
    // CRLF file; the first record spans two lines, the bad one starts on line 3.
    let (err, dir) = failing_load(
        "orders_2.csv",
        b"302,102,Pending,\"2 Main St\r\nApt 4\",,2023-01-03 10:00:00\r\n\
          303,103,Shipped,3 Main St,2023-01-04 10:00:00\r\n",
        LoadOptions::default(),
    )
    .await;
    match &err {
        CopyError::FieldCount {
            file,
            line,
            expected,
            found,
        } => {
            assert_eq!(file, &arg(&dir, "orders_2.csv"));
            assert_eq!((*line, *expected, *found), (3, 6, 5));
        }
        other => panic!("expected FieldCount, got {other}"),
    }
    assert!(err.to_string().starts_with(&format!(
        "{}:3: expected 6 columns, found 5",
        arg(&dir, "orders_2.csv")
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_number_found_by_the_server_is_mapped_to_file_and_line() {
    // Tiny segments: every record is its own COPY statement, so the line
    // mapping has to go through the segment offsets too.
    let opts = LoadOptions {
        segment_bytes: 16,
        ..LoadOptions::default()
    };
    let (err, dir) = failing_load(
        "products_2.csv",
        b"203,103,Puzzle,500 pieces,12.00\n\
          204,103,Cube,\"three\nlines\nhigh\",4.00\n\
          205,101,Top,spins,12.0x\n",
        opts,
    )
    .await;
    let CopyError::Rejected(r) = &err else {
        panic!("expected Rejected, got {err}");
    };
    assert_eq!(r.file, arg(&dir, "products_2.csv"));
    assert_eq!(r.line, Some(5));
    assert_eq!(r.column.as_deref(), Some("price"));
    assert_eq!(r.sqlstate, "22P02");
    assert!(
        err.to_string().starts_with(&format!(
            "{}:5, column price: invalid input syntax for type numeric: \"12.0x\"",
            arg(&dir, "products_2.csv")
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_date_in_third_file_is_mapped_across_embedded_newlines() {
    // orders_10.csv is the third orders file; records 1 and 2 span 2 and 3
    // lines, so the 3rd record starts on physical line 6.
    let (err, dir) = failing_load(
        "orders_10.csv",
        b"304,103,Pending,\"4 Main St\nFloor 2\",,2023-01-05 10:00:00\n\
          305,101,Pending,\"5 Main St\nBox\n9\",,2023-01-06 10:00:00\n\
          306,102,Pending,6 Main St,,2023-13-45\n",
        LoadOptions::default(),
    )
    .await;
    let CopyError::Rejected(r) = &err else {
        panic!("expected Rejected, got {err}");
    };
    assert_eq!(r.line, Some(6), "{err}");
    assert_eq!(r.column.as_deref(), Some("ordered_at"));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{}:6, column ordered_at: ",
            arg(&dir, "orders_10.csv")
        )),
        "{text}"
    );
    assert!(text.contains("\"2023-13-45\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_in_second_of_three_files_keeps_none_of_the_first() {
    // orders_1.csv was copied completely before orders_2.csv failed.
    let (err, dir) = failing_load(
        "orders_2.csv",
        b"302,102,Pending,2 Main St,,2023-01-03 10:00:00\n\
          303,103,Shipped,3 Main St,3 Main St,not a date\n",
        LoadOptions::default(),
    )
    .await;
    let CopyError::Rejected(r) = &err else {
        panic!("expected Rejected, got {err}");
    };
    assert_eq!(r.file, arg(&dir, "orders_2.csv"));
    assert_eq!(r.line, Some(2));
    assert!(err
        .to_string()
        .contains("invalid input syntax for type timestamp: \"not a date\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_names_file_line_and_column() {
    let (err, dir) = failing_load(
        "stores.csv",
        b"101,Toy Town,toys\n102,\"multi\nline\",x\n103,Caf\xe9,games\n",
        LoadOptions::default(),
    )
    .await;
    match &err {
        CopyError::InvalidUtf8 {
            file,
            line,
            column,
            column_name,
            ..
        } => {
            assert_eq!(file, &arg(&dir, "stores.csv"));
            assert_eq!((*line, *column, column_name.as_str()), (4, 2, "name"));
        }
        other => panic!("expected InvalidUtf8, got {other}"),
    }
    assert!(
        err.to_string()
            .contains(":4, column 2 (name): invalid UTF-8"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_file_reports_where_the_open_quote_record_starts() {
    let (err, dir) = failing_load(
        "line_items_2.csv",
        b"403,203,304,3,36.00\n404,201,301,1,\"19.9",
        LoadOptions::default(),
    )
    .await;
    match &err {
        CopyError::Unterminated { file, line, .. } => {
            assert_eq!(file, &arg(&dir, "line_items_2.csv"));
            assert_eq!(*line, 2);
        }
        other => panic!("expected Unterminated, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_key_violation_is_found_when_the_key_is_re_added() {
    let (err, _dir) = failing_load(
        "line_items_2.csv",
        b"403,203,304,3,36.00\n404,201,9999,1,19.99\n",
        LoadOptions::default(),
    )
    .await;
    match &err {
        CopyError::ForeignKey {
            constraint,
            table,
            detail,
        } => {
            assert_eq!(constraint, "line_items_order_id_fkey");
            assert_eq!(table, "line_items");
            assert!(detail.contains("(order_id)=(9999)"), "{detail}");
        }
        other => panic!("expected ForeignKey, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_key_is_mapped_to_its_line() {
    // Store 1 exists already (seeded).
    let (err, dir) = failing_load(
        "stores.csv",
        b"101,Toy Town,toys\n1,Again,toys\n",
        LoadOptions::default(),
    )
    .await;
    let CopyError::Rejected(r) = &err else {
        panic!("expected Rejected, got {err}");
    };
    assert_eq!(
        (r.file.as_str(), r.line),
        (arg(&dir, "stores.csv").as_str(), Some(2))
    );
    assert_eq!(r.sqlstate, "23505");
    assert!(
        err.to_string().contains("(store_id)=(1) already exists"),
        "{err}"
    );
}

#[test]
fn input_resolution_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.csv", b"1\n");
    std::fs::write(d.join("broken.zip"), b"this is not a zip").expect("write");

    let missing = resolve_inputs(&[arg(d, "nope.csv")]).expect_err("missing");
    assert!(
        matches!(missing, CopyError::MissingFile { .. }),
        "{missing}"
    );
    assert!(missing.before_write());

    let empty = resolve_inputs(&[arg(d, "orders_*.csv")]).expect_err("empty glob");
    assert!(matches!(empty, CopyError::NoMatch { .. }), "{empty}");

    let unreadable = resolve_inputs(&[arg(d, "broken.zip")]).expect_err("bad zip");
    assert!(matches!(unreadable, CopyError::Zip { .. }), "{unreadable}");

    let zip_path = d.join("x.zip");
    {
        let mut zw = zip::ZipWriter::new(std::fs::File::create(&zip_path).expect("create"));
        zw.start_file("stores.csv", zip::write::SimpleFileOptions::default())
            .expect("member");
        zw.write_all(b"1,a,b\n").expect("data");
        zw.finish().expect("finish");
    }
    let nothing = resolve_inputs(&[format!("{}:orders_*.csv", zip_path.display())])
        .expect_err("pattern matches nothing");
    match &nothing {
        CopyError::NoMemberMatch { members, .. } => assert_eq!(members, "stores.csv"),
        other => panic!("expected NoMemberMatch, got {other}"),
    }
    let no_member = resolve_inputs(&[format!("{}:orders.csv", zip_path.display())])
        .expect_err("no such member");
    assert!(matches!(no_member, CopyError::NoMemberMatch { .. }));

    // Each file once, in argument order.
    let files = resolve_inputs(&[arg(d, "a.csv"), arg(d, "*.csv")]).expect("resolves");
    assert_eq!(files, vec![InputFile::Path(d.join("a.csv"))]);
}

/// Errors found before the transaction: the variant says so, the tables
/// are untouched, and no transaction id was even assigned (autovacuum is
/// off, so the xid counter moves only for our own probe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_anything_is_written() {
    let mut db = db_with(vec![("autovacuum".into(), "off".into())]).await;
    let dir = db.dir.path().to_path_buf();
    write_good(&dir);
    write(&dir, "wide.csv", b"1,a,b,extra\n");
    write(&dir, "hdr.csv", b"store_id,name\n9,x,y\n");
    let before = snapshot(&db.client).await;

    async fn xid(c: &Client) -> i64 {
        c.query_one("SELECT pg_current_xact_id()::text::bigint", &[])
            .await
            .expect("xid")
            .get(0)
    }

    let cases: Vec<(&str, Vec<TableLoad>)> = vec![
        (
            "missing file",
            vec![
                csv_load("stores", &[arg(&dir, "stores.csv")], CsvOptions::default()),
                TableLoad {
                    table: "orders".into(),
                    source: Source::Csv {
                        files: vec![InputFile::Path(dir.join("gone.csv"))],
                        options: CsvOptions::default(),
                    },
                },
            ],
        ),
        (
            "unknown table",
            vec![
                csv_load("stores", &[arg(&dir, "stores.csv")], CsvOptions::default()),
                csv_load(
                    "\"Stores\"",
                    &[arg(&dir, "stores.csv")],
                    CsvOptions::default(),
                ),
            ],
        ),
        (
            "column count",
            vec![
                csv_load("stores", &[arg(&dir, "stores.csv")], CsvOptions::default()),
                csv_load("stores", &[arg(&dir, "wide.csv")], CsvOptions::default()),
            ],
        ),
        (
            "header column count",
            vec![csv_load(
                "stores",
                &[arg(&dir, "hdr.csv")],
                CsvOptions {
                    header: true,
                    ..CsvOptions::default()
                },
            )],
        ),
        (
            "bad options",
            vec![csv_load(
                "stores",
                &[arg(&dir, "stores.csv")],
                CsvOptions {
                    delimiter: b'"',
                    ..CsvOptions::default()
                },
            )],
        ),
        (
            "unknown encoding",
            vec![csv_load(
                "stores",
                &[arg(&dir, "stores.csv")],
                CsvOptions {
                    encoding: Some("klingon".into()),
                    ..CsvOptions::default()
                },
            )],
        ),
    ];
    for (what, loads) in cases {
        let x0 = xid(&db.client).await;
        let err = load(&mut db.client, loads, &LoadOptions::default())
            .await
            .expect_err(what);
        let x1 = xid(&db.client).await;
        eprintln!("{what}: {err}");
        assert!(err.before_write(), "{what}: {err}");
        match what {
            "missing file" => assert!(matches!(err, CopyError::MissingFile { .. }), "{err}"),
            "unknown table" => {
                assert!(matches!(err, CopyError::UnknownTable { .. }), "{err}");
                let text = err.to_string();
                assert!(text.contains("\"Stores\""), "{text}");
                assert!(text.contains("search_path: \"$user\", public"), "{text}");
            }
            "column count" | "header column count" => match &err {
                CopyError::ColumnCountMismatch {
                    table,
                    expected,
                    found,
                    ..
                } => {
                    assert_eq!(table, "stores");
                    assert_eq!(*expected, 3);
                    assert_eq!(*found, if what == "column count" { 4 } else { 2 });
                }
                other => panic!("{what}: expected ColumnCountMismatch, got {other}"),
            },
            _ => assert!(matches!(err, CopyError::Options { .. }), "{err}"),
        }
        assert_eq!(
            x1,
            x0 + 1,
            "{what}: no transaction id was assigned by the load"
        );
        assert_eq!(snapshot(&db.client).await, before, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_names_identity_generated_and_dropped_columns() {
    let mut db = db().await;
    let dir = db.dir.path().to_path_buf();
    db.client
        .batch_execute(
            "CREATE SCHEMA \"Sales\";
             CREATE TABLE \"Sales\".\"Order Items\" (
                 id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 qty int,
                 old text,
                 price numeric,
                 total numeric GENERATED ALWAYS AS (qty * price) STORED
             );
             ALTER TABLE \"Sales\".\"Order Items\" DROP COLUMN old;
             ALTER TABLE \"Sales\".\"Order Items\" ADD COLUMN \"Note\" text;",
        )
        .await
        .expect("schema");
    // Columns COPY fills: id, qty, price, Note (dropped and generated ones skipped).
    write(&dir, "items.csv", b"7,2,3.50,first\n9,1,1.00,\n");

    let unquoted = load(
        &mut db.client,
        vec![csv_load(
            "Sales.Order Items",
            &[arg(&dir, "items.csv")],
            CsvOptions::default(),
        )],
        &LoadOptions::default(),
    )
    .await
    .expect_err("unquoted names fold to lower case");
    assert!(
        matches!(
            unquoted,
            CopyError::UnknownTable { .. } | CopyError::BadTableName { .. }
        ),
        "{unquoted}"
    );

    let report = load(
        &mut db.client,
        vec![csv_load(
            "\"Sales\".\"Order Items\"",
            &[arg(&dir, "items.csv")],
            CsvOptions::default(),
        )],
        &LoadOptions::default(),
    )
    .await
    .expect("load succeeds");
    assert_eq!(report.tables[0].rows, 2);
    assert_eq!(
        report.sequences_set,
        vec![seq_set("Sales.Order Items_id_seq", 9)]
    );
    let totals: Vec<(i32, String, Option<String>)> = db
        .client
        .query(
            "SELECT id, total::text, \"Note\" FROM \"Sales\".\"Order Items\" ORDER BY id",
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        totals,
        vec![
            (7, "7.00".to_string(), Some("first".to_string())),
            (9, "1.00".to_string(), None)
        ]
    );
    let next: i32 = db
        .client
        .query_one(
            "INSERT INTO \"Sales\".\"Order Items\" (qty, price) VALUES (1, 1) RETURNING id",
            &[],
        )
        .await
        .expect("insert")
        .get(0);
    assert_eq!(next, 10);
}

/// A binary `stores` stream that yields one row every 100 ms, forever
/// (until its consumer goes away).
fn slow_stores_stream() -> Box<dyn Iterator<Item = Bytes> + Send> {
    let mut n: i64 = 800;
    let mut first = true;
    Box::new(std::iter::from_fn(move || {
        let mut chunk = Vec::new();
        if first {
            first = false;
            chunk.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            chunk.extend_from_slice(&[0; 8]);
        } else {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        n += 1;
        chunk.extend_from_slice(&3i16.to_be_bytes());
        chunk.extend_from_slice(&8i32.to_be_bytes());
        chunk.extend_from_slice(&n.to_be_bytes());
        for _ in 0..2 {
            chunk.extend_from_slice(&1i32.to_be_bytes());
            chunk.push(b'x');
        }
        Some(Bytes::from(chunk))
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_or_disconnected_loads_roll_back() {
    let mut db = db().await;
    let dir = db.dir.path().to_path_buf();
    write_good(&dir);
    let before = snapshot(&db.client).await;
    let observer = Target::parse(&db.cluster.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let pid: i32 = db
        .client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // Resolves once the loading session streams the slow binary COPY, i.e.
    // after the CSV tables were copied inside the open transaction.
    let in_binary_copy = || async {
        loop {
            let row = observer
                .query_one(
                    "SELECT coalesce(bool_or(query LIKE 'COPY %FORMAT binary%'), false) \
                       FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                    &[&pid],
                )
                .await
                .expect("pg_stat_activity");
            if row.get::<_, bool>(0) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let with_slow_stores = || {
        let mut loads = all_four(&dir);
        loads.push(TableLoad {
            table: "stores".into(),
            source: Source::Binary {
                chunks: slow_stores_stream(),
                rows: 0,
            },
        });
        loads
    };
    let opts = LoadOptions::default();

    // Cancelled (what Ctrl-C does to the future): the open COPY is aborted,
    // the transaction rolled back, and the connection stays usable.
    tokio::select! {
        r = load(&mut db.client, with_slow_stores(), &opts) => panic!("the load ended: {r:?}"),
        _ = in_binary_copy() => {}
    }
    assert_eq!(snapshot(&db.client).await, before, "after cancelling");

    // Connection lost mid-load (server side): everything rolls back.
    let killer = async {
        in_binary_copy().await;
        observer
            .query_one("SELECT pg_catalog.pg_terminate_backend($1)", &[&pid])
            .await
            .expect("terminate")
    };
    let (result, _) = tokio::join!(load(&mut db.client, with_slow_stores(), &opts), killer);
    let err = result.expect_err("the connection was terminated");
    eprintln!("terminated: {err}");
    assert!(
        matches!(err, CopyError::Database { .. } | CopyError::Rejected(_)),
        "{err}"
    );
    assert!(!err.before_write());
    assert_eq!(
        snapshot(&observer).await,
        before,
        "after losing the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_tables_time_out_with_retries_and_nothing_changes() {
    let mut db = db().await;
    let dir = db.dir.path().to_path_buf();
    write_good(&dir);
    let before = snapshot(&db.client).await;
    let mut holder = Target::parse(&db.cluster.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let hold = holder.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE orders IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let opts = LoadOptions {
        lock_timeout: std::time::Duration::from_millis(50),
        lock_attempts: 3,
        ..LoadOptions::default()
    };
    let err = load(&mut db.client, all_four(&dir), &opts)
        .await
        .expect_err("orders is busy");
    match &err {
        CopyError::LockTimeout {
            tables, attempts, ..
        } => {
            assert!(tables.contains("\"orders\""), "{tables}");
            assert_eq!(*attempts, 3);
        }
        other => panic!("expected LockTimeout, got {other}"),
    }
    hold.rollback().await.unwrap();
    assert_eq!(snapshot(&db.client).await, before);
    // Once the other session is done, the same load goes through.
    let report = load(&mut db.client, all_four(&dir), &opts)
        .await
        .expect("load succeeds");
    assert_good_load(&db.client, &report).await;
}

fn seq_set(sequence: &str, value: i64) -> shardready::ingest::copy::SequenceSet {
    shardready::ingest::copy::SequenceSet {
        sequence: sequence.into(),
        value,
    }
}

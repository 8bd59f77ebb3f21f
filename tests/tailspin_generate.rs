//! The generated Tailspin Toys dataset against a real PostgreSQL: the binary
//! COPY streams are accepted by the server (NUMERIC, timestamps, NULLs), the
//! data satisfies the seed's foreign keys and invariants, and the CSV files
//! load to exactly the same table contents.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use futures_util::{pin_mut, SinkExt};
use shardready::conn::Target;
use shardready::ingest::tailspin::{Generator, TailspinTable as Table, SCHEMA_SQL};
use shardready::sandbox::TestCluster;
use tokio_postgres::Client;

fn create_schema(cluster: &TestCluster, url: &str) {
    let out = Command::new(cluster.sandbox().psql_path())
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            SCHEMA_SQL,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "schema: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `chunks` through one `COPY … FROM STDIN`; returns the rows copied.
async fn copy_in(
    client: &Client,
    sql: &str,
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
) -> anyhow::Result<u64> {
    let mut chunks = chunks;
    let sink = client.copy_in(sql).await?;
    pin_mut!(sink);
    while let Some(chunk) = chunks.recv().await {
        sink.send(chunk).await?;
    }
    Ok(sink.finish().await?)
}

/// The binary stream of `table`, produced on its own thread while the
/// connection sends (as the loader does).
fn produce(gen: &Generator, table: Table) -> tokio::sync::mpsc::Receiver<Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream = gen.binary_copy(table, 256 << 10);
    std::thread::spawn(move || {
        for chunk in stream {
            if tx.blocking_send(chunk).is_err() {
                break;
            }
        }
    });
    rx
}

fn files_of(paths: &[PathBuf], table: Table) -> Vec<PathBuf> {
    paths
        .iter()
        .filter(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap();
            stem == table.name()
                || stem
                    .strip_prefix(table.name())
                    .and_then(|rest| rest.strip_prefix('_'))
                    .is_some_and(|k| k.parse::<u32>().is_ok())
        })
        .cloned()
        .collect()
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn digest(client: &Client, table: Table) -> String {
    let key = table.columns()[0];
    let sql = format!(
        "SELECT md5(string_agg(t::text, '|' ORDER BY t.{key})) FROM {} t",
        table.name()
    );
    client.query_one(&sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn generated_data_loads_identically_from_binary_copy_and_csv() -> anyhow::Result<()> {
    let cluster = TestCluster::start()?;
    let gen = Generator::new(0.01, 42)?;
    let counts = gen.counts();
    let bin_url = cluster.create_database("tailspin_binary")?;
    let csv_url = cluster.create_database("tailspin_csv")?;
    create_schema(&cluster, &bin_url);
    create_schema(&cluster, &csv_url);

    // Binary COPY into the seed's tables (foreign keys checked on the way).
    let bin = Target::parse(&bin_url)?.connect().await?;
    for table in Table::ALL {
        let sql = format!("COPY {} FROM STDIN (FORMAT binary)", table.name());
        let n = copy_in(&bin, &sql, produce(&gen, table)).await?;
        assert_eq!(n, gen.rows(table), "{}", table.name());
    }

    // The CSV files, the way the seed loads them (header only in stores.csv).
    let dir = tempfile::tempdir()?;
    let paths = gen.write_csv(dir.path(), &|_| {})?;
    let csv = Target::parse(&csv_url)?.connect().await?;
    for table in Table::ALL {
        let header = if table == Table::Stores {
            ", HEADER true"
        } else {
            ""
        };
        let sql = format!("COPY {} FROM STDIN (FORMAT csv{header})", table.name());
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        for path in files_of(&paths, table) {
            tx.send(Bytes::from(std::fs::read(path)?)).await?;
        }
        drop(tx);
        let n = copy_in(&csv, &sql, rx).await?;
        assert_eq!(n, gen.rows(table), "{}", table.name());
    }

    for client in [&bin, &csv] {
        assert_eq!(
            count(client, "SELECT count(*) FROM stores").await as u64,
            counts.stores
        );
        assert_eq!(
            count(client, "SELECT count(*) FROM products").await as u64,
            counts.products
        );
        assert_eq!(
            count(client, "SELECT count(*) FROM orders").await as u64,
            counts.orders
        );
        assert_eq!(
            count(client, "SELECT count(*) FROM line_items").await as u64,
            counts.line_items
        );
        let wrong_store = count(
            client,
            "SELECT count(*) FROM line_items li \
             JOIN orders o ON o.order_id = li.order_id \
             JOIN products p ON p.product_id = li.product_id \
             WHERE p.store_id <> o.store_id",
        )
        .await;
        assert_eq!(
            wrong_store, 0,
            "line items sell their order's store's products"
        );
        let wrong_amount = count(
            client,
            "SELECT count(*) FROM line_items li \
             JOIN products p ON p.product_id = li.product_id \
             WHERE li.line_amount <> p.price * li.quantity \
                OR scale(li.line_amount) <> 2 OR scale(p.price) <> 2 \
                OR li.quantity NOT BETWEEN 1 AND 4",
        )
        .await;
        assert_eq!(wrong_amount, 0, "line_amount = price * quantity");
        let bad_orders = count(
            client,
            "SELECT count(*) FROM (SELECT o.order_id, count(li.*) AS n FROM orders o \
             LEFT JOIN line_items li ON li.order_id = o.order_id GROUP BY o.order_id) x \
             WHERE n NOT BETWEEN 1 AND 3",
        )
        .await;
        assert_eq!(bad_orders, 0, "1-3 line items per order");
        let no_products = count(
            client,
            "SELECT count(*) FROM stores s \
             WHERE NOT EXISTS (SELECT FROM products p WHERE p.store_id = s.store_id)",
        )
        .await;
        assert_eq!(no_products, 0, "every store sells something");
        let hot = count(
            client,
            "SELECT store_id FROM orders GROUP BY store_id ORDER BY count(*) DESC LIMIT 1",
        )
        .await;
        assert_eq!(hot, 5, "store 5 is the hot tenant");
        let null_shipping = count(
            client,
            "SELECT count(*) FROM orders WHERE shipping_address IS NULL",
        )
        .await;
        assert!(null_shipping > 0, "some shipping addresses are NULL");
        let empty_shipping = count(
            client,
            "SELECT count(*) FROM orders WHERE shipping_address = ''",
        )
        .await;
        assert_eq!(empty_shipping, 0, "NULL stays NULL");
        let out_of_range = count(
            client,
            "SELECT count(*) FROM orders \
             WHERE ordered_at < '2022-01-01' OR ordered_at >= '2024-01-01'",
        )
        .await;
        assert_eq!(out_of_range, 0);
    }

    for table in Table::ALL {
        assert_eq!(
            digest(&bin, table).await,
            digest(&csv, table).await,
            "{}: binary and CSV loads differ",
            table.name()
        );
    }
    Ok(())
}

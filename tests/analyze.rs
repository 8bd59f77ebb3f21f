//! `analyze` against real servers: the Tailspin schema as the seed writes
//! it, and schemas built here for every shape the analyzer must read
//! (another tenant column name and type, a two-hop derivation, keys
//! already composite, unique indexes, partitions, tables without keys,
//! self-references, lookups, inconsistent data, orphans, NULL tenants, a
//! type mismatch, pg_stat_statements). Each test has its own cluster.

mod common;

use shardready::analyze::{
    self, analyze_catalog, data, rules::Ctx, skew, Analysis, AnalyzeOptions, Class, Overrides,
    Severity,
};
use shardready::catalog::{Catalog, QName};
use tokio_postgres::Client;

fn q(name: &str) -> QName {
    QName::new("public", name)
}

/// (rule, table, object) of each finding.
fn has(a: &Analysis, rule: &str, table: &str, object: Option<&str>) -> bool {
    a.findings.iter().any(|f| {
        f.rule == rule
            && f.table.as_ref().map(|t| t.to_string()).as_deref() == Some(table)
            && (object.is_none() || f.object.as_deref() == object)
    })
}

fn count(a: &Analysis, rule: &str) -> usize {
    a.findings.iter().filter(|f| f.rule == rule).count()
}

fn blockers(a: &Analysis) -> Vec<(String, String)> {
    a.findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker)
        .map(|f| {
            (
                f.rule.to_string(),
                f.table.as_ref().map(|t| t.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

async fn run(client: &Client) -> Analysis {
    analyze::analyze(client, &AnalyzeOptions::default())
        .await
        .expect("analyze")
}

/// The binary: (exit code, stdout).
fn cli(url: &str, args: &[&str]) -> (i32, String) {
    let out = common::shardready()
        .arg("--db")
        .arg(url)
        .arg("analyze")
        .args(args)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c != 1),
        "analyze failed: {stderr}"
    );
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// A few hundred consistent Tailspin rows: 10 stores, 5 products each,
/// 200 orders (every third one for store 5, the hot tenant), 2 line items
/// per order whose products belong to the order's store.
const TAILSPIN_DATA: &str = "
INSERT INTO stores (name, category) SELECT 'store ' || i, 'toys' FROM generate_series(1, 10) i;
INSERT INTO products (store_id, name, price) SELECT 1 + i % 10, 'p' || i, 10 FROM generate_series(0, 49) i;
INSERT INTO orders (store_id, status, ordered_at)
  SELECT CASE WHEN i % 3 = 0 THEN 5 ELSE 1 + i % 10 END, 'Pending', now() FROM generate_series(1, 200) i;
INSERT INTO line_items (product_id, order_id, quantity, line_amount)
  SELECT (SELECT p.product_id FROM products p WHERE p.store_id = o.store_id
          ORDER BY p.product_id OFFSET (o.order_id + k) % 5 LIMIT 1), o.order_id, 1, 10
  FROM orders o, generate_series(1, 2) k;
ANALYZE;
";

async fn tailspin(client: &Client) {
    client
        .batch_execute(shardready::ingest::tailspin::SCHEMA_SQL)
        .await
        .unwrap();
    client.batch_execute(TAILSPIN_DATA).await.unwrap();
}

#[tokio::test]
async fn tailspin_schema() {
    let (c, t) = common::cluster();
    let client = common::connect(&t).await;
    tailspin(&client).await;
    shardready::workload::install_create_orders(&client, false)
        .await
        .unwrap();
    let a = run(&client).await;

    assert_eq!(a.schema, "shardready.analysis/v1");
    assert_eq!(a.tenant.column, "store_id");
    assert_eq!(a.tenant.root, Some(q("stores")));
    assert_eq!(a.class_of(&q("stores")), Some(&Class::Root));
    assert_eq!(a.class_of(&q("orders")), Some(&Class::Distributed));
    assert_eq!(a.class_of(&q("products")), Some(&Class::Distributed));
    match a.class_of(&q("line_items")) {
        Some(Class::NeedsColumn { path, .. }) => {
            assert_eq!(path.len(), 1);
            assert_eq!(path[0].to, q("orders"), "store_id via orders");
            assert_eq!(path[0].columns, ["order_id"]);
        }
        other => panic!("line_items: {other:?}"),
    }

    // Three primary keys to rewrite.
    for t in ["products", "orders", "line_items"] {
        assert!(has(&a, "primary-key-without-tenant", t, None), "{t}");
    }
    assert_eq!(count(&a, "primary-key-without-tenant"), 3);
    // Three FKs to rewrite, all on line_items.
    assert!(has(
        &a,
        "fk-without-tenant",
        "line_items",
        Some("line_items_order_id_fkey")
    ));
    assert!(has(
        &a,
        "fk-without-tenant",
        "line_items",
        Some("line_items_product_id_fkey")
    ));
    assert!(has(&a, "tenant-fk-to-root", "line_items", Some("store_id")));
    assert_eq!(count(&a, "fk-without-tenant"), 2);
    assert_eq!(count(&a, "tenant-fk-to-root"), 1);
    // The seed's first create_orders.
    let ins = a
        .findings
        .iter()
        .find(|f| f.rule == "insert-without-tenant")
        .expect("create_orders is flagged");
    assert_eq!(ins.table, Some(q("line_items")));
    assert_eq!(
        ins.object.as_deref(),
        Some("create_orders(batch_size integer)")
    );
    assert_eq!(ins.severity, Severity::Warning);
    assert!(has(
        &a,
        "query-without-tenant-filter",
        "stores",
        Some("create_orders(batch_size integer)")
    ));
    // Consistent data: the checks ran and found nothing.
    let d = a.data.as_ref().unwrap();
    assert!(d
        .checks
        .iter()
        .any(|c| c.table == q("line_items") && c.rule == "cross-tenant-rows" && c.rows == 0));
    assert!(d.checks.iter().all(|c| c.error.is_none() && c.rows == 0));
    assert!(d
        .checks
        .iter()
        .all(|c| c.scan == data::Scan::Exact && c.rows_scanned > 0));
    // Store 5 is hot.
    let s = a.skew.as_ref().unwrap();
    assert_eq!(s.tenants, 10);
    assert_eq!(s.top[0].tenant, "5");
    assert!(s.top[0].share > 0.3, "{:?}", s.top);
    assert!(has(&a, "hot-tenant", "stores", Some("5")));
    assert!(a
        .findings
        .iter()
        .any(|f| f.rule == "shard-count" && f.object.as_deref() == Some("32")));
    assert!(a.has_blockers());

    // The binary: exit 2, JSON with the documented schema, text by table.
    let (code, out) = cli(&c.url(), &["--format", "json"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["schema"], "shardready.analysis/v1");
    assert_eq!(v["tenant"]["column"], "store_id");
    assert_eq!(v["tenant"]["root"]["name"], "stores");
    let li = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"]["name"] == "line_items")
        .unwrap();
    assert_eq!(li["class"], "needs_column");
    assert_eq!(li["path"][0]["to"]["name"], "orders");
    assert!(v["counts"]["blockers"].as_u64().unwrap() >= 5);
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["rule"] == "insert-without-tenant" && f["severity"] == "warning"));
    assert_eq!(v["data"]["exact"], false);
    assert_eq!(v["skew"]["top"][0]["tenant"], "5");
    let (code, text) = cli(&c.url(), &[]);
    assert_eq!(code, 2);
    assert!(text.contains("tenant column: store_id"), "{text}");
    assert!(text.contains("line_items  needs store_id"), "{text}");
    assert!(text.contains("[insert-without-tenant]"), "{text}");
    assert!(text.contains("tenant skew"), "{text}");
    assert!(!text.contains("\x1b["), "no colour off a TTY");

    // The updated create_orders writes store_id: no longer flagged.
    client
        .batch_execute(&shardready::workload::create_orders_with_store_id_sql())
        .await
        .unwrap();
    let a = run(&client).await;
    assert_eq!(count(&a, "insert-without-tenant"), 0);
    assert_eq!(
        count(&a, "query-without-tenant-filter"),
        1,
        "SELECT COUNT(*) FROM stores"
    );
}

#[tokio::test]
async fn uuid_account_id_with_composite_keys_already_correct() {
    let (c, t) = common::cluster();
    let client = common::connect(&t).await;
    client
        .batch_execute(
            "
CREATE TABLE accounts (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text);
CREATE TABLE projects (
    account_id uuid NOT NULL REFERENCES accounts (id),
    id bigserial,
    name text,
    PRIMARY KEY (account_id, id),
    UNIQUE (account_id, name)
);
CREATE TABLE tasks (
    account_id uuid NOT NULL REFERENCES accounts (id),
    id bigserial,
    project_id bigint NOT NULL,
    title text,
    PRIMARY KEY (account_id, id),
    FOREIGN KEY (account_id, project_id) REFERENCES projects (account_id, id) ON DELETE CASCADE
);
INSERT INTO accounts (name) SELECT 'a' || i FROM generate_series(1, 8) i;
INSERT INTO projects (account_id, name) SELECT id, 'p' || k FROM accounts, generate_series(1, 3) k;
INSERT INTO tasks (account_id, project_id, title) SELECT account_id, id, 't' FROM projects, generate_series(1, 4);
CREATE FUNCTION open_tasks(acc uuid) RETURNS bigint LANGUAGE sql
  AS $$ SELECT count(*) FROM tasks WHERE account_id = acc $$;
ANALYZE;
",
        )
        .await
        .unwrap();
    let a = run(&client).await;
    assert_eq!(a.tenant.column, "account_id");
    assert_eq!(a.tenant.type_name, "uuid");
    assert_eq!(a.tenant.root_key.as_deref(), Some("id"));
    assert_eq!(a.class_of(&q("tasks")), Some(&Class::Distributed));
    assert_eq!(blockers(&a), Vec::<(String, String)>::new());
    assert_eq!(a.counts.warnings, 0, "{:#?}", a.findings);
    let s = a.skew.as_ref().unwrap();
    assert_eq!(s.tenants, 8);
    assert!(s.hot.is_empty());
    let (code, out) = cli(&c.url(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 blockers"), "{out}");
    assert!(out.contains("ready for Citus"), "{out}");
}

#[tokio::test]
async fn int_tenant_id_with_a_bigint_mismatch() {
    let (_c, t) = common::cluster();
    let client = common::connect(&t).await;
    client
        .batch_execute(
            "
CREATE TABLE tenants (tenant_id serial PRIMARY KEY, name text);
CREATE TABLE users (
    id bigserial PRIMARY KEY,
    tenant_id int NOT NULL REFERENCES tenants,
    email text
);
CREATE TABLE invoices (
    id bigserial PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES tenants,
    amount numeric
);
INSERT INTO tenants (name) SELECT 't' || i FROM generate_series(1, 4) i;
INSERT INTO users (tenant_id, email) SELECT 1 + i % 4, i || '@x' FROM generate_series(1, 40) i;
INSERT INTO invoices (tenant_id, amount) SELECT 1 + i % 4, i FROM generate_series(1, 40) i;
ANALYZE;
",
        )
        .await
        .unwrap();
    let a = run(&client).await;
    assert_eq!(a.tenant.column, "tenant_id");
    assert_eq!(a.tenant.type_name, "integer");
    assert!(has(
        &a,
        "tenant-type-mismatch",
        "invoices",
        Some("tenant_id")
    ));
    assert!(!has(&a, "tenant-type-mismatch", "users", None));
    let f = a
        .findings
        .iter()
        .find(|f| f.rule == "tenant-type-mismatch")
        .unwrap();
    assert_eq!(f.severity, Severity::Blocker);
    assert!(!f.automatic);
    assert!(f.message.contains("bigint here but integer in tenants"));
    assert!(has(&a, "int-serial", "tenants", Some("tenant_id")));
}

#[tokio::test]
async fn two_hop_derivation_with_orphans_and_null_tenants() {
    let (_c, t) = common::cluster();
    let client = common::connect(&t).await;
    client
        .batch_execute(
            "
CREATE TABLE accounts (id bigserial PRIMARY KEY, name text);
CREATE TABLE threads (id bigserial PRIMARY KEY, account_id bigint REFERENCES accounts, title text);
CREATE TABLE posts (id bigserial PRIMARY KEY, thread_id bigint REFERENCES threads, body text);
CREATE TABLE comments (id bigserial PRIMARY KEY, post_id bigint REFERENCES posts, body text);
INSERT INTO accounts (name) SELECT 'a' || i FROM generate_series(1, 5) i;
INSERT INTO threads (account_id, title) SELECT 1 + i % 5, 't' FROM generate_series(1, 20) i;
INSERT INTO posts (thread_id, body) SELECT 1 + i % 20, 'p' FROM generate_series(1, 60) i;
INSERT INTO comments (post_id, body) SELECT 1 + i % 60, 'c' FROM generate_series(1, 120) i;
-- A thread without an account: its posts and comments derive nothing.
INSERT INTO threads (id, account_id, title) VALUES (1000, NULL, 'lost');
INSERT INTO posts (id, thread_id, body) VALUES (2000, 1000, 'lost post');
INSERT INTO comments (id, post_id, body) VALUES (3000, 2000, 'lost comment'), (3001, NULL, 'no post');
ANALYZE;
",
        )
        .await
        .unwrap();
    let a = run(&client).await;
    assert_eq!(a.tenant.column, "account_id");
    assert_eq!(a.tenant.root, Some(q("accounts")));
    match a.class_of(&q("comments")) {
        Some(Class::NeedsColumn { path, .. }) => {
            let hops: Vec<_> = path.iter().map(|h| h.to.name.as_str()).collect();
            assert_eq!(hops, ["posts", "threads"]);
        }
        other => panic!("comments: {other:?}"),
    }
    let d = a.data.as_ref().unwrap();
    let check = |table: &str, rule: &str| {
        d.checks
            .iter()
            .find(|c| c.table == q(table) && c.rule == rule)
            .unwrap_or_else(|| panic!("{table} {rule}"))
    };
    let c = check("comments", "orphan-rows");
    assert_eq!(c.rows, 2);
    assert_eq!(c.rows_scanned, 122);
    let mut ex = c.examples.clone();
    ex.sort();
    assert_eq!(ex, ["3000", "3001"]);
    assert_eq!(check("posts", "orphan-rows").examples, ["2000"]);
    let n = check("threads", "null-tenant");
    assert_eq!((n.rows, n.examples.clone()), (1, vec!["1000".to_string()]));
    assert!(n.fix.contains("by hand"), "no FK to derive it from");
    let f = a
        .findings
        .iter()
        .find(|f| f.rule == "orphan-rows" && f.table == Some(q("comments")))
        .unwrap();
    assert_eq!(f.severity, Severity::Blocker);
    assert!(
        f.message.starts_with(
            "2 rows in comments with no account_id along post_id → posts → thread_id → threads"
        ),
        "{}",
        f.message
    );
    assert!(f.message.contains("in all 122 rows"), "{}", f.message);
    assert!(f.message.ends_with("e.g. 3000; 3001"), "{}", f.message);
    assert!(has(&a, "null-tenant", "threads", None));

    // Bounded mode on real tables: a sample, said so.
    let cat = Catalog::read(&client).await.unwrap();
    let (tenant, classes, _) = analyze_catalog(&cat, &Overrides::default()).unwrap();
    let ctx = Ctx {
        cat: &cat,
        tenant: &tenant,
        classes: &classes,
        overrides: &Overrides::default(),
        reading_functions: Default::default(),
    };
    let before: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    let small = data::Bounds {
        sample_rows: 10,
        ..data::Bounds::new(false)
    };
    let sampled = data::check_with(&ctx, &client, &small).await.unwrap();
    let c = sampled
        .checks
        .iter()
        .find(|c| c.table == q("comments") && c.rule == "orphan-rows")
        .unwrap();
    assert!(matches!(c.scan, data::Scan::Sample { .. }), "{:?}", c.scan);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert!(c.message.contains("in a sample of"), "{}", c.message);
    let after: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after, "statement_timeout is restored");
    // --full: exact.
    let full = data::check(&ctx, &client, true).await.unwrap();
    assert!(full.exact);
    assert!(full.checks.iter().all(|c| c.scan == data::Scan::Exact));
    let s = skew::measure_with(&ctx, &client, true).await.unwrap();
    assert!(!s.sampled);
    assert_eq!(s.tenants, 5);
}

#[tokio::test]
async fn cross_tenant_inconsistency() {
    let (c, t) = common::cluster();
    let client = common::connect(&t).await;
    tailspin(&client).await;
    // Line item 1 belongs to an order of one store and a product of another.
    client
        .batch_execute(
            "UPDATE line_items SET product_id = (
                 SELECT p.product_id FROM products p, orders o
                 WHERE o.order_id = line_items.order_id AND p.store_id <> o.store_id
                 ORDER BY p.product_id LIMIT 1)
             WHERE line_item_id IN (1, 2);",
        )
        .await
        .unwrap();
    let a = run(&client).await;
    let f = a
        .findings
        .iter()
        .find(|f| f.rule == "cross-tenant-rows")
        .expect("cross-tenant rows are found");
    assert_eq!(f.table, Some(q("line_items")));
    assert_eq!(f.severity, Severity::Blocker);
    assert!(
        f.message
            .contains("along order_id → orders and another along product_id → products"),
        "{}",
        f.message
    );
    assert!(f.message.contains("composite foreign key (store_id, product_id) → products (store_id, product_id) would fail"), "{}", f.message);
    let d = a.data.as_ref().unwrap();
    let x = d
        .checks
        .iter()
        .find(|c| c.rule == "cross-tenant-rows")
        .unwrap();
    assert_eq!(x.rows, 2);
    let mut ex = x.examples.clone();
    ex.sort();
    assert_eq!(ex, ["1", "2"]);
    assert_eq!(
        x.via,
        ["line_items_order_id_fkey", "line_items_product_id_fkey"]
    );

    // The same inconsistency once line_items has store_id itself: the row
    // names another store than its order.
    let url = c.create_database("denormalized").unwrap();
    let t2 = shardready::conn::Target::parse(&url).unwrap();
    let client2 = common::connect(&t2).await;
    tailspin(&client2).await;
    client2
        .batch_execute(
            "ALTER TABLE line_items ADD COLUMN store_id bigint REFERENCES stores;
             UPDATE line_items li SET store_id = o.store_id FROM orders o WHERE o.order_id = li.order_id;
             UPDATE line_items SET store_id = store_id % 10 + 1 WHERE line_item_id = 7;
             UPDATE line_items SET store_id = NULL WHERE line_item_id = 8;
             ANALYZE line_items;",
        )
        .await
        .unwrap();
    let a = run(&client2).await;
    assert_eq!(a.class_of(&q("line_items")), Some(&Class::Distributed));
    let d = a.data.as_ref().unwrap();
    let x: Vec<_> = d
        .checks
        .iter()
        .filter(|c| c.table == q("line_items") && c.rule == "cross-tenant-rows")
        .map(|c| (c.via[0].as_str(), c.rows, c.examples.clone()))
        .collect();
    assert!(
        x.contains(&("line_items_order_id_fkey", 1, vec!["7".to_string()])),
        "{x:?}"
    );
    assert!(
        x.contains(&("line_items_product_id_fkey", 1, vec!["7".to_string()])),
        "{x:?}"
    );
    let n = d
        .checks
        .iter()
        .find(|c| c.table == q("line_items") && c.rule == "null-tenant")
        .unwrap();
    assert_eq!(n.examples, ["8"]);
    // Its order gives it a store: apply fills it (issue 34 item 2).
    assert!(n.fill.is_some(), "{n:?}");
    assert!(n.fix.contains("apply fills them from orders"), "{}", n.fix);
}

#[tokio::test]
async fn partitions_unique_indexes_and_tables_without_keys() {
    let (_c, t) = common::cluster();
    let client = common::connect(&t).await;
    client
        .batch_execute(
            "
CREATE TABLE stores (store_id bigserial PRIMARY KEY, name text);
CREATE TABLE events (
    id bigint NOT NULL,
    store_id bigint NOT NULL REFERENCES stores,
    at timestamptz NOT NULL,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE coupons (id bigserial PRIMARY KEY, store_id bigint NOT NULL REFERENCES stores, code text);
CREATE UNIQUE INDEX coupons_code ON coupons (code);
CREATE UNIQUE INDEX coupons_store_code ON coupons (store_id, lower(code));
CREATE TABLE visits (store_id bigint REFERENCES stores, at timestamptz);
CREATE TABLE notes (coupon_id bigint REFERENCES coupons, body text);
INSERT INTO stores (name) SELECT 's' || i FROM generate_series(1, 3) i;
INSERT INTO events SELECT i, 1 + i % 3, '2024-06-01'::timestamptz + i * interval '1 day' FROM generate_series(1, 300) i;
INSERT INTO coupons (store_id, code) SELECT 1 + i % 3, 'c' || i FROM generate_series(1, 30) i;
INSERT INTO visits SELECT 1 + i % 3, now() FROM generate_series(1, 30) i;
INSERT INTO notes SELECT 1 + i % 30, 'n' FROM generate_series(1, 30) i;
ANALYZE;
",
        )
        .await
        .unwrap();
    let a = run(&client).await;
    assert_eq!(a.tenant.column, "store_id");
    assert_eq!(a.class_of(&q("events")), Some(&Class::Distributed));
    assert!(a.class_of(&q("events_2024")).is_none(), "partitions follow");
    assert!(has(&a, "partitioned-table", "events", None));
    assert!(has(
        &a,
        "primary-key-without-tenant",
        "events",
        Some("events_pkey")
    ));
    assert!(
        !a.findings.iter().any(|f| f
            .table
            .as_ref()
            .is_some_and(|t| t.name.starts_with("events_"))),
        "nothing reported per partition: {:#?}",
        a.findings
    );
    assert!(has(
        &a,
        "unique-index-without-tenant",
        "coupons",
        Some("coupons_code")
    ));
    assert!(!has(
        &a,
        "unique-index-without-tenant",
        "coupons",
        Some("coupons_store_code")
    ));
    // Has the column, no key: a warning; needs the column, no key: a blocker.
    let v = a
        .findings
        .iter()
        .find(|f| f.rule == "no-primary-key" && f.table == Some(q("visits")))
        .unwrap();
    assert_eq!(v.severity, Severity::Warning);
    let n = a
        .findings
        .iter()
        .find(|f| f.rule == "no-primary-key" && f.table == Some(q("notes")))
        .unwrap();
    assert_eq!(n.severity, Severity::Blocker);
    // Data checks and skew read the partitioned table through its parent.
    let d = a.data.as_ref().unwrap();
    assert!(
        d.checks.iter().all(|c| c.error.is_none()),
        "{:#?}",
        d.checks
    );
    let s = a.skew.as_ref().unwrap();
    let ev = s.tables.iter().find(|t| t.table == q("events")).unwrap();
    assert_eq!(ev.rows_counted, 300);
    // Keyless notes: examples are ctids.
    client
        .batch_execute("INSERT INTO notes VALUES (NULL, 'orphan')")
        .await
        .unwrap();
    let a = run(&client).await;
    let o = a
        .data
        .as_ref()
        .unwrap()
        .checks
        .iter()
        .find(|c| c.table == q("notes") && c.rule == "orphan-rows")
        .unwrap()
        .clone();
    assert_eq!(o.rows, 1);
    assert!(o.examples[0].starts_with("ctid ("), "{:?}", o.examples);

    // Sampling a partitioned table goes through its parent.
    let cat = Catalog::read(&client).await.unwrap();
    let (tenant, classes, _) = analyze_catalog(&cat, &Overrides::default()).unwrap();
    let ctx = Ctx {
        cat: &cat,
        tenant: &tenant,
        classes: &classes,
        overrides: &Overrides::default(),
        reading_functions: Default::default(),
    };
    let tiny = data::Bounds {
        sample_rows: 10,
        ..data::Bounds::new(false)
    };
    let s = skew::measure_bounded(&ctx, &client, &tiny).await.unwrap();
    let ev = s.tables.iter().find(|t| t.table == q("events")).unwrap();
    assert!(matches!(ev.scan, data::Scan::Sample { .. }), "{ev:?}");
    assert!(ev.error.is_none(), "{ev:?}");
    assert!(s.sampled);

    // A check that cannot finish in time is reported, not fatal: another
    // session holds notes locked.
    let locker = common::connect(&t).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE notes IN ACCESS EXCLUSIVE MODE;")
        .await
        .unwrap();
    let quick = data::Bounds {
        statement_timeout: "1s".into(),
        ..data::Bounds::new(false)
    };
    let d = data::check_with(&ctx, &client, &quick).await.unwrap();
    let n = d.checks.iter().find(|c| c.table == q("notes")).unwrap();
    assert_eq!(
        n.error.as_deref(),
        Some("timed out after 1s (statement_timeout)")
    );
    let f = d.findings();
    let inc = f
        .iter()
        .find(|f| f.rule == "data-check-incomplete")
        .expect("a warning");
    assert_eq!(inc.severity, Severity::Warning);
    assert_eq!(inc.table, Some(q("notes")));
    assert!(
        d.checks
            .iter()
            .filter(|c| c.table != q("notes"))
            .all(|c| c.error.is_none()),
        "the other tables are checked: {:#?}",
        d.checks
    );
    let s = skew::measure_bounded(&ctx, &client, &quick).await.unwrap();
    assert!(s
        .findings()
        .iter()
        .any(|f| f.rule == "skew-incomplete" && f.table == Some(q("notes"))));
    locker.batch_execute("ROLLBACK").await.unwrap();
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "0", "restored after the checks");
}

#[tokio::test]
async fn self_reference_and_a_reference_table() {
    let (_c, t) = common::cluster();
    let client = common::connect(&t).await;
    client
        .batch_execute(
            "
CREATE TABLE countries (code text PRIMARY KEY, name text);
CREATE TABLE stores (store_id bigserial PRIMARY KEY, country text REFERENCES countries);
CREATE TABLE categories (
    id bigserial PRIMARY KEY,
    store_id bigint NOT NULL REFERENCES stores,
    parent_id bigint REFERENCES categories ON DELETE SET NULL,
    name text
);
CREATE TABLE products (
    id bigserial PRIMARY KEY,
    store_id bigint NOT NULL REFERENCES stores,
    category_id bigint REFERENCES categories,
    made_in text REFERENCES countries
);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE categories SET name = name WHERE id = NEW.category_id;
  RETURN NEW;
END $$;
CREATE TRIGGER products_touch BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION touch();
INSERT INTO countries VALUES ('NL', 'Netherlands'), ('FR', 'France');
INSERT INTO stores (country) VALUES ('NL'), ('FR'), ('NL');
INSERT INTO categories (store_id, parent_id, name) VALUES (1, NULL, 'root1'), (2, NULL, 'root2');
INSERT INTO categories (store_id, parent_id, name) VALUES (1, 1, 'child of 1'), (1, 2, 'child of store 2''s root');
INSERT INTO products (store_id, category_id, made_in) VALUES (1, 1, 'NL'), (2, 2, 'FR'), (3, 1, 'FR');
ANALYZE;
",
        )
        .await
        .unwrap();
    let a = run(&client).await;
    assert_eq!(a.tenant.column, "store_id");
    assert_eq!(a.class_of(&q("countries")), Some(&Class::Reference));
    assert_eq!(a.class_of(&q("categories")), Some(&Class::Distributed));
    assert!(!a.findings.iter().any(|f| f.rule == "fk-to-local"));
    assert!(has(
        &a,
        "fk-without-tenant",
        "categories",
        Some("categories_parent_id_fkey")
    ));
    assert!(has(
        &a,
        "fk-action-on-delete",
        "categories",
        Some("categories_parent_id_fkey")
    ));
    assert!(has(&a, "user-trigger", "products", Some("products_touch")));
    // The trigger function's UPDATE has no store_id filter.
    assert!(has(
        &a,
        "query-without-tenant-filter",
        "categories",
        Some("touch()")
    ));
    // Category 4 (store 1) hangs under category 2 (store 2); product 3
    // (store 3) is in category 1 (store 1).
    let d = a.data.as_ref().unwrap();
    let x: Vec<_> = d
        .checks
        .iter()
        .filter(|c| c.rule == "cross-tenant-rows" && c.rows > 0)
        .map(|c| (c.table.name.clone(), c.examples.clone()))
        .collect();
    assert_eq!(
        x,
        [
            ("categories".to_string(), vec!["4".to_string()]),
            ("products".to_string(), vec!["3".to_string()])
        ]
    );
}

#[tokio::test]
async fn pg_stat_statements_entries_are_audited() {
    let c = shardready::sandbox::TestCluster::start_with(vec![(
        "shared_preload_libraries".into(),
        "pg_cron,pg_stat_statements".into(),
    )])
    .expect("cluster");
    let t = shardready::conn::Target::parse(&c.url()).unwrap();
    let client = common::connect(&t).await;
    tailspin(&client).await;
    client
        .batch_execute("CREATE EXTENSION pg_stat_statements; SELECT pg_stat_statements_reset();")
        .await
        .unwrap();
    // The application's traffic.
    for i in 1..=3i64 {
        client
            .query("SELECT * FROM orders WHERE order_id = $1", &[&i])
            .await
            .unwrap();
        client
            .query(
                "SELECT * FROM orders WHERE store_id = $1 AND order_id = $2",
                &[&1i64, &i],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "INSERT INTO line_items (product_id, order_id, quantity, line_amount) VALUES (1, 1, 1, 1)",
            &[],
        )
        .await
        .unwrap();
    let a = run(&client).await;
    let pgss: Vec<_> = a
        .findings
        .iter()
        .filter(|f| {
            f.object
                .as_deref()
                .is_some_and(|o| o.starts_with("pg_stat_statements:"))
        })
        .map(|f| {
            (
                f.rule,
                f.table.as_ref().unwrap().name.clone(),
                f.message.clone(),
            )
        })
        .collect();
    assert!(
        pgss.iter()
            .any(|(r, t, m)| *r == "query-without-tenant-filter"
                && t == "orders"
                && m.contains("WHERE order_id = $1")),
        "{pgss:#?}"
    );
    assert!(
        pgss.iter()
            .any(|(r, t, _)| *r == "insert-without-tenant" && t == "line_items"),
        "{pgss:#?}"
    );
    assert!(
        !pgss.iter().any(|(_, _, m)| m.contains("store_id = $1")),
        "filtered statements are fine: {pgss:#?}"
    );
    // A second run does not audit the first run's own data checks.
    let a = run(&client).await;
    assert!(
        !a.findings.iter().any(|f| f.message.contains("TABLESAMPLE")
            || f.message.contains("count(*) FILTER")
            || f.message.contains("shardready")),
        "{:#?}",
        a.findings
    );
}

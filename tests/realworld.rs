//! Schemas nobody here designed for: Pagila (`../shared/realworld/pagila`,
//! the public sample database: a partitioned `payment` with its keys on the
//! partitions, triggers on every table, integer keys, rentals across
//! stores) and a schema of ours for each class of problem it showed
//! (partitioned tenant table with keys on its partitions and a unique
//! index of the parent). Each goes through shardready's commands only —
//! `analyze`, `apply`, `verify` and, where Citus is installed, `distribute`
//! on a real 2-worker Citus — and every original column of every table
//! and partition must come out unchanged.

mod common;

use common::{connect, run_on, scalar_i64};
use tokio_postgres::Client;

/// Each user table's original columns as one checksum per table
/// (partitions each on their own), in a stable order.
async fn checksums(c: &Client, skip_column: &str) -> Vec<(String, String)> {
    let tables: Vec<(String, Vec<String>)> = c
        .query(
            "SELECT c.oid::regclass::text, array_agg(quote_ident(a.attname) ORDER BY a.attnum) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attname <> $1 \
             GROUP BY c.oid ORDER BY 1",
            &[&skip_column],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut out = Vec::new();
    for (t, cols) in tables {
        let row = format!("row({})::text", cols.join(", "));
        let sum: Option<String> = c
            .query_one(
                &format!("SELECT md5(string_agg({row}, E'\\n' ORDER BY {row})) FROM {t}"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        out.push((t, sum.unwrap_or_default()));
    }
    out
}

/// A cluster for the test: a 2-worker Citus where installed, else plain
/// PostgreSQL (the preparation is the same; `distribute` is skipped).
fn cluster_for(
    test: &str,
) -> (
    shardready::sandbox::TestCluster,
    shardready::conn::Target,
    bool,
) {
    match common::citus_cluster(test, 2) {
        Some((c, t)) => (c, t, true),
        None => {
            let (c, t) = common::cluster();
            (c, t, false)
        }
    }
}

/// `analyze`'s report (it exits 2 when it finds blockers, as before apply).
fn report(out: std::process::Output) -> String {
    let code = out.status.code();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        matches!(code, Some(0) | Some(2)),
        "analyze exited {code:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn ok(out: std::process::Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed: {text}");
    text
}

/// Pagila end to end. The resolutions, each a documented flag: `store_id`
/// is the tenant (analyze alone says the choice is ambiguous); customers
/// rent and staff take payments at either store, so `customer` and
/// `staff` are reference tables and their own keys to `store` are dropped
/// (printed for restoring); the ON UPDATE CASCADE actions Citus refuses
/// become NO ACTION; the `last_updated` and full-text triggers, which only
/// change the row being written, are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagila_is_prepared_and_distributed_with_shardready_commands_only() {
    let Some((schema, data)) = pagila_dump() else {
        return;
    };
    let (c, t, citus) =
        cluster_for("pagila_is_prepared_and_distributed_with_shardready_commands_only");
    let url = c.url();
    let client = connect(&t).await;
    // Pagila's own dump, loaded as psql would (COPY … FROM stdin blocks).
    load_dump(&url, &schema);
    load_dump(&url, &data);
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM payment").await,
        16049
    );
    let before = checksums(&client, "store_id").await;
    let mut results = std::collections::BTreeMap::new();
    for (object, sql) in PAGILA_QUERIES {
        results.insert(object.to_string(), result_of(&client, sql).await);
    }

    // Without a tenant column: ambiguity stated, store_id among the
    // candidates, nothing chosen silently.
    let out = run_on(&url, &["analyze", "--catalog-only"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("ambiguous") && text.contains("store_id → store"),
        "{text}"
    );

    // With the tenant column only, a refusal with many findings ends with
    // one command that accepts every resolution offered, and what each
    // flag accepts; with its flags, fewer findings need the user.
    let refused = run_on(&url, &["analyze", "--tenant-column", "store_id"]);
    let text = String::from_utf8_lossy(&refused.stdout).to_string();
    assert!(!refused.status.success(), "{text}");
    let all = text
        .lines()
        .find_map(|l| l.strip_prefix("To accept every resolution offered at once: `"))
        .unwrap_or_else(|| panic!("{text}"));
    eprintln!("pagila's accept-all line: {all}");
    let all: Vec<&str> = all
        .trim_end_matches('`')
        .split_whitespace()
        .skip(2)
        .collect();
    assert!(
        all.contains(&"--keep-triggers") && all.contains(&"--tenant-column"),
        "{all:?}"
    );
    let needing_you = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("fix: by you") || l.contains("`shardready apply"))
            .count()
    };
    let mut accepting = vec!["analyze"];
    accepting.extend(&all);
    let accepted = run_on(&url, &accepting);
    assert!(
        needing_you(&accepted) < needing_you(&refused),
        "{}",
        String::from_utf8_lossy(&accepted.stdout)
    );
    // Nothing is left for the user: no blocker but those apply resolves.
    accepting.extend(["--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&run_on(&url, &accepting).stdout).unwrap();
    let left: Vec<&serde_json::Value> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "blocker" && f["automatic"] == false)
        .collect();
    assert!(left.is_empty(), "the accept-all line leaves {left:#?}");

    let flags = PAGILA_FLAGS;
    let with = |cmd: &'static str| -> Vec<&str> { std::iter::once(cmd).chain(flags).collect() };
    // The partitioned payment is a tenant table now, through the keys its
    // partitions declare, and its size is its partitions'.
    let analysis = report(run_on(&url, &with("analyze")));
    assert!(analysis.contains("payment  needs store_id"), "{analysis}");
    let predicted = failing_queries(&url, &with("analyze"));
    assert!(analysis.contains("film_actor  reference"), "{analysis}");
    let costs_before = plan_costs(&client).await;
    ok(run_on(&url, &with("apply")), "apply");
    let verified = ok(run_on(&url, &with("verify")), "verify");
    assert!(verified.contains("ready for Citus"), "{verified}");
    common::assert_no_helpers_left(&client).await;
    // Pagila's views and functions keep their plans: none of them costs
    // the planner much more after the keys changed (the new store_id
    // column widens rows a little).
    let costs_after = plan_costs(&client).await;
    for (object, before) in &costs_before {
        let after = *costs_after
            .get(object)
            .unwrap_or_else(|| panic!("{object} no longer plans after apply"));
        assert!(
            after <= before * 1.5 + 10.0,
            "{object}: planner cost {before:.0} before apply, {after:.0} after"
        );
    }
    // Every key of every payment partition is the parent's, with store_id.
    let own_keys = scalar_i64(
        &client,
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 \
         AND conrelid::regclass::text LIKE 'payment\\_p%'",
    )
    .await;
    assert_eq!(own_keys, 0, "partition keys not declared on payment");
    // The backfill fired no trigger: last_update is as it was.
    assert_eq!(checksums(&client, "store_id").await, before);
    // The tenant of a payment is its rental's store.
    let wrong = scalar_i64(
        &client,
        "SELECT count(*) FROM payment p JOIN rental r USING (rental_id) WHERE p.store_id <> r.store_id",
    )
    .await;
    assert_eq!(wrong, 0);
    if !citus {
        eprintln!("distribute skipped: Citus is not installed");
        return;
    }
    let out = ok(run_on(&url, &with("distribute")), "distribute");
    assert!(
        out.contains("4 distributed tables") && out.contains("11 reference"),
        "{out}"
    );
    assert!(
        out.contains("a tenant-scoped query routes to one shard"),
        "{out}"
    );
    let placed = scalar_i64(
        &client,
        "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'payment'::regclass AND partmethod = 'h'",
    )
    .await;
    assert_eq!(placed, 1);
    assert_eq!(checksums(&client, "store_id").await, before);
    // Every view and function that reads Pagila's tables, run on Citus:
    // those analyze named fail, the others give the same result as before
    // distribution.
    let mut failed = std::collections::BTreeSet::new();
    for (object, sql) in PAGILA_QUERIES {
        if let Err(e) = client.query(*sql, &[]).await {
            eprintln!("{object}: {}", shardready::conn::error_text(&e));
            failed.insert(object.to_string());
        }
    }
    // (Pagila's own get_customer_balance calls a missing IF(): it fails
    // before distribution already.)
    let broken: std::collections::BTreeSet<String> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(o, _)| o.clone())
        .collect();
    assert_eq!(
        failed,
        predicted.union(&broken).cloned().collect(),
        "predicted vs actual Citus rejections"
    );
    for (object, sql) in PAGILA_QUERIES {
        if !failed.contains(*object) {
            let now = result_of(&client, sql).await;
            assert_eq!(
                Some(&now),
                results.get(*object),
                "{object} gives another result on Citus"
            );
        }
    }
    // The triggers kept run on the shards as before.
    client
        .batch_execute("UPDATE rental SET return_date = return_date WHERE rental_id = 1 AND store_id = (SELECT store_id FROM rental WHERE rental_id = 1)")
        .await
        .unwrap();
    let stamped = scalar_i64(&client, "SELECT count(*) FROM rental WHERE rental_id = 1 AND last_update > now() - interval '1 minute'").await;
    assert_eq!(stamped, 1, "last_updated fired on the shard");
}

/// The planner's total cost of each of Pagila's views and functions
/// (statistics fresh first); those that do not plan are left out.
async fn plan_costs(c: &Client) -> std::collections::BTreeMap<String, f64> {
    c.batch_execute("ANALYZE").await.unwrap();
    let mut out = std::collections::BTreeMap::new();
    for (object, sql) in PAGILA_QUERIES {
        if let Ok(row) = c
            .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[])
            .await
        {
            let v: serde_json::Value = row.get(0);
            if let Some(cost) = v[0]["Plan"]["Total Cost"].as_f64() {
                out.insert(object.to_string(), cost);
            }
        }
    }
    out
}

/// Pagila's schema and data dumps (None, after saying the test is skipped,
/// where they are not there).
fn pagila_dump() -> Option<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realworld/pagila");
    match (
        std::fs::read_to_string(dir.join("pagila-schema.sql")),
        std::fs::read_to_string(dir.join("pagila-data.sql")),
    ) {
        (Ok(schema), Ok(data)) => Some((schema, data)),
        _ => {
            common::skip_or_fail("pagila", &format!("{} is not there", dir.display()));
            None
        }
    }
}

/// Pagila's resolutions, each a documented flag (see the test above).
const PAGILA_FLAGS: [&str; 13] = [
    "--tenant-column",
    "store_id",
    "--reference",
    "customer",
    "--reference",
    "staff",
    "--drop-fk",
    "customer.customer_store_id_fkey",
    "--drop-fk",
    "staff.staff_store_id_fkey",
    "--fix-fk-actions",
    "--keep-triggers",
    // The views and functions analyze names as failing on Citus are
    // compared with what Citus does.
    "--accept-failing-queries",
];

/// Pagila prepared, then distributed with `--concurrently` while a store's
/// rentals and their payments keep coming, committed asynchronously (the
/// case the commit guard exists for). First refused, nothing changed, for
/// the materialized view Citus would re-create; once it is dropped, the
/// partitioned `payment` switches under the guard with all its partitions'
/// shards, its keys come back through its partitions (PostgreSQL 15 has no
/// NOT VALID key on a partitioned table), every rental and payment the
/// application saw committed is there afterwards, and none of its writes
/// failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagila_is_distributed_concurrently_while_rentals_are_written() {
    let test = "pagila_is_distributed_concurrently_while_rentals_are_written";
    let Some((schema, data)) = pagila_dump() else {
        return;
    };
    let Some((c, t)) = common::citus_cluster(test, 2) else {
        return;
    };
    let url = c.url();
    let client = connect(&t).await;
    load_dump(&url, &schema);
    load_dump(&url, &data);
    let with =
        |cmd: &'static str| -> Vec<&str> { std::iter::once(cmd).chain(PAGILA_FLAGS).collect() };
    ok(run_on(&url, &with("apply")), "apply");
    // The application: store 1's rentals, each with its payment, every
    // 20 ms, committed asynchronously; the rentals it saw committed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let t = t.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let app = common::asynchronous_session(&t).await;
            let (inventory, customer, staff): (i32, i32, i32) = {
                let r = app
                    .query_one(
                        "SELECT (SELECT min(inventory_id) FROM inventory WHERE store_id = 1), \
                                (SELECT min(customer_id) FROM customer WHERE store_id = 1), \
                                (SELECT min(staff_id) FROM staff WHERE store_id = 1)",
                        &[],
                    )
                    .await
                    .unwrap();
                (r.get(0), r.get(1), r.get(2))
            };
            let mut committed = Vec::new();
            let mut n = 0i32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let rental: i32 = app
                    .query_one(
                        "INSERT INTO rental (rental_date, inventory_id, customer_id, staff_id, store_id) \
                         VALUES (timestamptz '2030-01-01' + $1::int4 * interval '1 second', $2, $3, $4, 1) \
                         RETURNING rental_id",
                        &[&n, &inventory, &customer, &staff],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("the application's rental failed: {e}"))
                    .get(0);
                app.execute(
                    "INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date, store_id) \
                     VALUES ($1, $2, $3, 4.99, timestamptz '2022-07-20' + $4::int4 * interval '1 second', 1)",
                    &[&customer, &staff, &rental, &n],
                )
                .await
                .unwrap_or_else(|e| panic!("the application's payment failed: {e}"));
                committed.push(rental);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            committed
        })
    };
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut args = with("distribute");
    args.extend(["--concurrently", "--format", "json"]);
    // Pagila's materialized view rental_by_category reads payment: Citus
    // would re-create it when payment joins its metadata, and its query
    // fails on Citus. Refused before anything changes, with the way out.
    let refused = run_on(&url, &args);
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(
        err.contains("\"public\".\"rental_by_category\"")
            && err.contains("DROP MATERIALIZED VIEW")
            && err.contains("without --concurrently"),
        "{err}"
    );
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM pg_dist_partition").await,
        0,
        "nothing placed"
    );
    // The way out it names: drop the view (it would fail on Citus anyway).
    client
        .batch_execute("DROP MATERIALIZED VIEW rental_by_category")
        .await
        .unwrap();
    let out = run_on(&url, &args);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let committed = writer.await.unwrap();
    let text = ok(
        std::process::Output {
            status: out.status,
            stdout: Vec::new(),
            stderr: out.stderr.clone(),
        },
        "distribute --concurrently",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(committed.len() > 20, "{}", committed.len());
    for (table, sql) in [
        (
            "rental",
            "SELECT count(*) FROM rental WHERE rental_id = ANY($1)",
        ),
        (
            "payment",
            "SELECT count(DISTINCT rental_id) FROM payment WHERE rental_id = ANY($1)",
        ),
    ] {
        let present: i64 = client.query_one(sql, &[&committed]).await.unwrap().get(0);
        assert_eq!(
            present,
            committed.len() as i64,
            "every {table} committed is there"
        );
    }
    // Each tenant table switched under the guard; payment's with its seven
    // partitions' shards.
    let guards = v["switch_guards"].as_array().unwrap();
    assert!(
        guards.iter().all(|g| g["switched"] == true),
        "{}\n{text}",
        v["switch_guards"]
    );
    let payment = guards
        .iter()
        .find(|g| g["table"] == "payment")
        .unwrap_or_else(|| panic!("{}\n{text}", v["switch_guards"]));
    assert_eq!(payment["shards"], 8, "{payment}");
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'payment'::regclass AND partmethod = 'h'",
        )
        .await,
        1
    );
}

/// Pagila's views and the functions that read its tables, each as one
/// statement (named as analyze names them, without argument lists).
const PAGILA_QUERIES: &[(&str, &str)] = &[
    ("view actor_info", "SELECT * FROM actor_info"),
    ("view customer_list", "SELECT * FROM customer_list"),
    ("view film_list", "SELECT * FROM film_list"),
    (
        "view nicer_but_slower_film_list",
        "SELECT * FROM nicer_but_slower_film_list",
    ),
    (
        "view sales_by_film_category",
        "SELECT * FROM sales_by_film_category",
    ),
    ("view sales_by_store", "SELECT * FROM sales_by_store"),
    ("view staff_list", "SELECT * FROM staff_list"),
    (
        "materialized view rental_by_category",
        "REFRESH MATERIALIZED VIEW rental_by_category",
    ),
    (
        "get_customer_balance",
        "SELECT get_customer_balance(1, '2022-08-01')",
    ),
    ("inventory_in_stock", "SELECT inventory_in_stock(10)"),
    (
        "inventory_held_by_customer",
        "SELECT inventory_held_by_customer(10)",
    ),
    ("film_in_stock", "SELECT * FROM film_in_stock(1, 1)"),
    ("film_not_in_stock", "SELECT * FROM film_not_in_stock(1, 1)"),
];

/// A query's rows as sorted text (REFRESH: its view's rows), or its
/// error.
async fn result_of(c: &Client, sql: &str) -> Result<String, String> {
    let text = |e: tokio_postgres::Error| shardready::conn::error_text(&e);
    let sql = match sql.strip_prefix("REFRESH MATERIALIZED VIEW ") {
        Some(v) => {
            c.batch_execute(sql).await.map_err(text)?;
            format!("SELECT * FROM {v}")
        }
        None => sql.to_string(),
    };
    let mut rows: Vec<String> = c
        .query(&format!("SELECT t::text FROM ({sql}) t"), &[])
        .await
        .map_err(text)?
        .iter()
        .map(|r| unordered_lists(r.get(0)))
        .collect();
    rows.sort();
    Ok(rows.join("\n"))
}

/// A row's text with the items of each list in it sorted: Pagila's views
/// aggregate (`group_concat`, `string_agg`) without ORDER BY, so the order
/// of a list depends on the plan — on Citus, the join over the shards — and
/// only its contents are the result.
fn unordered_lists(row: String) -> String {
    let mut items: Vec<&str> = row
        .split([',', '"', '(', ')'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    items.sort_unstable();
    items.join("|")
}

/// The objects analyze says Citus will refuse (non-colocated-join,
/// function-on-shard), without argument lists.
fn failing_queries(url: &str, args: &[&str]) -> std::collections::BTreeSet<String> {
    let mut args: Vec<&str> = args.to_vec();
    args.extend(["--format", "json"]);
    let out = run_on(url, &args);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("analyze JSON");
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            matches!(
                f["rule"].as_str(),
                Some("non-colocated-join" | "function-on-shard")
            )
        })
        .filter_map(|f| f["object"].as_str())
        .map(|o| o.split('(').next().unwrap().to_string())
        .collect()
}

/// Runs a pg_dump text file through psql (its `COPY … FROM stdin` blocks
/// need psql).
fn load_dump(url: &str, sql: &str) {
    use std::io::Write;
    let mut psql = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql runs");
    psql.stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    assert!(psql.wait().unwrap().success(), "the dump loads");
}

/// A partitioned tenant table of ours: keys declared on some partitions
/// only (one partition has none), a unique index and a primary key on the
/// parent, integer keys, and a trigger stamping each updated row.
const EVENTS: &str = "
CREATE TABLE accounts (account_id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE devices (device_id integer PRIMARY KEY,
    account_id integer NOT NULL REFERENCES accounts (account_id), label text);
CREATE TABLE events (event_id bigint NOT NULL, at date NOT NULL,
    device_id integer NOT NULL, code text NOT NULL, seen timestamptz,
    PRIMARY KEY (at, event_id)) PARTITION BY RANGE (at);
CREATE UNIQUE INDEX events_code ON events (at, code);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
ALTER TABLE events_2024 ADD FOREIGN KEY (device_id) REFERENCES devices (device_id);
ALTER TABLE events_2025 ADD FOREIGN KEY (device_id) REFERENCES devices (device_id);
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.seen := now(); RETURN NEW; END $$;
CREATE TRIGGER stamp BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION stamp();
-- Joins two tenant tables on another column than the tenant's.
CREATE VIEW device_codes AS
  SELECT d.label, e.code FROM events e JOIN devices d ON d.device_id = e.device_id;
";

const EVENTS_DATA: &str = "
INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 5) g;
INSERT INTO devices SELECT g, 1 + g % 5, 'd' || g FROM generate_series(1, 50) g;
INSERT INTO events SELECT g, date '2024-01-01' + (g % 900), 1 + g % 50, 'c' || g, NULL
  FROM generate_series(1, 3000) g;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_tenant_table_with_keys_on_its_partitions() {
    let (c, t, citus) = cluster_for("a_partitioned_tenant_table_with_keys_on_its_partitions");
    let url = c.url();
    let client = connect(&t).await;
    shardready::db::exec_script(&client, EVENTS).await.unwrap();
    shardready::db::exec_script(&client, EVENTS_DATA)
        .await
        .unwrap();
    let before = checksums(&client, "account_id").await;
    let flags = ["--tenant-column", "account_id", "--keep-triggers"];
    let with = |cmd: &'static str| -> Vec<&str> { std::iter::once(cmd).chain(flags).collect() };
    let analysis = report(run_on(&url, &with("analyze")));
    assert!(analysis.contains("events  needs account_id"), "{analysis}");
    assert!(
        analysis.contains("[non-colocated-join] view device_codes joins events and devices"),
        "{analysis}"
    );
    ok(run_on(&url, &with("apply")), "apply");
    // Not ready while the view would fail: verify says which. It takes
    // the resolutions apply recorded (the tenant column, the kept
    // triggers) without being told again.
    let not_ready = run_on(&url, &["verify"]);
    assert!(!not_ready.status.success());
    assert!(String::from_utf8_lossy(&not_ready.stdout).contains("device_codes"));
    assert!(
        String::from_utf8_lossy(&not_ready.stderr).contains(
            "with the resolutions apply recorded: --tenant-column account_id, --keep-triggers"
        ),
        "{}",
        String::from_utf8_lossy(&not_ready.stderr)
    );
    let verified = ok(
        run_on(&url, &["verify", "--accept-failing-queries"]),
        "verify",
    );
    assert!(verified.contains("ready for Citus"), "{verified}");
    common::assert_no_helpers_left(&client).await;
    assert_eq!(checksums(&client, "account_id").await, before);
    // Keys on the parent with the tenant column; the partition that had
    // no key has it now (checked before it was added), attached.
    let keys: Vec<String> = client
        .query(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'events'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        keys.contains(&"PRIMARY KEY (account_id, at, event_id)".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with(
            "FOREIGN KEY (account_id, device_id) REFERENCES devices(account_id, device_id)"
        )),
        "{keys:?}"
    );
    let unique: String = client
        .query_one("SELECT pg_get_indexdef('events_code'::regclass)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(unique.contains("(account_id, at, code)"), "{unique}");
    let inherited = scalar_i64(
        &client,
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'events_2026'::regclass AND conparentid <> 0",
    )
    .await;
    assert!(inherited >= 1);
    if !citus {
        eprintln!("distribute skipped: Citus is not installed");
        return;
    }
    // The view would fail once distributed: distribute refuses, before
    // changing anything, until it is fixed or accepted.
    let refused = run_on(&url, &with("distribute"));
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("device_codes"), "{said}");
    let placed = scalar_i64(&client, "SELECT count(*) FROM pg_dist_partition").await;
    assert_eq!(placed, 0, "nothing distributed");
    // Accepted, with the other resolutions as apply recorded them.
    let out = ok(
        run_on(&url, &["distribute", "--accept-failing-queries"]),
        "distribute",
    );
    let err = client
        .query("SELECT * FROM device_codes", &[])
        .await
        .expect_err("the view analyze named fails on Citus");
    assert!(
        shardready::conn::error_text(&err).contains("repartitioning"),
        "{err}"
    );
    assert!(
        out.contains("a tenant-scoped query routes to one shard"),
        "{out}"
    );
    assert_eq!(checksums(&client, "account_id").await, before);
    // The kept trigger stamps rows on the shards.
    client
        .batch_execute("UPDATE events SET code = code WHERE event_id = 11")
        .await
        .unwrap();
    let stamped = scalar_i64(
        &client,
        "SELECT count(*) FROM events WHERE event_id = 11 AND seen IS NOT NULL",
    )
    .await;
    assert_eq!(stamped, 1);
}

/// A role that is not a superuser cannot keep the tables' triggers from
/// firing for the backfill's UPDATEs: apply names them and changes
/// nothing; with `--fire-triggers` it goes ahead, and the trigger stamps
/// the rows it fills, as the user accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_cannot_quiet_triggers_is_asked_first() {
    let (_c, t) = common::cluster();
    let admin = connect(&t).await;
    admin
        .batch_execute(
            "CREATE ROLE owner LOGIN; GRANT CREATE ON DATABASE postgres TO owner; \
             GRANT CREATE, USAGE ON SCHEMA public TO owner;",
        )
        .await
        .unwrap();
    let mut cfg = t.config.clone();
    cfg.user("owner");
    let owner = shardready::conn::Target {
        config: cfg,
        ..t.clone()
    };
    let client = connect(&owner).await;
    shardready::db::exec_script(&client, EVENTS).await.unwrap();
    shardready::db::exec_script(&client, EVENTS_DATA)
        .await
        .unwrap();
    let opts = |fire: bool| shardready::apply::ApplyOptions {
        fire_triggers: fire,
        analyze: shardready::analyze::AnalyzeOptions {
            overrides: shardready::analyze::Overrides {
                tenant_column: Some("account_id".into()),
                keep_triggers: true,
                ..Default::default()
            },
            catalog_only: true,
            ..Default::default()
        },
        ..common::quiet()
    };
    let err = shardready::apply::apply(&owner, &opts(false), None)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(err.is_blocker(), "{msg}");
    assert!(
        msg.contains("trigger stamp on events_2024 runs stamp()")
            && msg.contains("--fire-triggers"),
        "{msg}"
    );
    let changed = scalar_i64(
        &admin,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'account_id'",
    )
    .await;
    assert_eq!(changed, 0, "nothing was changed");
    shardready::apply::apply(&owner, &opts(true), None)
        .await
        .unwrap();
    let stamped = scalar_i64(&admin, "SELECT count(*) FROM events WHERE seen IS NOT NULL").await;
    assert_eq!(stamped, 3000, "the trigger fired for every row filled");
}

/// Keys declared on a partitioned table itself (`events` → `devices`) and
/// keys pointing at one (`notes` → `events`), the two PostgreSQL 15 adds no
/// NOT VALID key for.
const CROSS: &str = "
CREATE TABLE accounts (account_id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE devices (device_id integer PRIMARY KEY,
    account_id integer NOT NULL REFERENCES accounts (account_id), label text);
CREATE TABLE events (event_id bigint NOT NULL, at date NOT NULL,
    device_id integer NOT NULL REFERENCES devices (device_id), code text NOT NULL,
    PRIMARY KEY (at, event_id)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE notes (note_id integer PRIMARY KEY, at date NOT NULL, event_id bigint NOT NULL,
    body text, FOREIGN KEY (at, event_id) REFERENCES events (at, event_id));
INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 5) g;
INSERT INTO devices SELECT g, 1 + g % 5, 'd' || g FROM generate_series(1, 50) g;
INSERT INTO events SELECT g, date '2024-01-01' + (g % 900), 1 + g % 50, 'c' || g
  FROM generate_series(1, 3000) g;
INSERT INTO notes SELECT g, date '2024-01-01' + (g % 900), g, 'n' || g
  FROM generate_series(1, 3000, 3) g;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_on_and_to_a_partitioned_table_are_rewritten_without_a_window() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    let (c, t, citus) =
        cluster_for("keys_on_and_to_a_partitioned_table_are_rewritten_without_a_window");
    let url = c.url();
    let client = connect(&t).await;
    shardready::db::exec_script(&client, CROSS).await.unwrap();
    let before = checksums(&client, "account_id").await;
    let flags = ["--tenant-column", "account_id"];
    let with = |cmd: &'static str| -> Vec<&str> { std::iter::once(cmd).chain(flags).collect() };
    let analysis = report(run_on(&url, &with("analyze")));
    assert!(
        !analysis.contains("not automatic"),
        "both keys are rewritten by the plan: {analysis}"
    );
    // The application goes on writing events and notes (account_id
    // itself once the column exists), and, every time, a note of an event
    // that does not exist and an event of a device that does not exist:
    // one of the keys must reject each of those at every moment.
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let (stop, c) = (stop.clone(), connect(&t).await);
        tokio::spawn(async move {
            let (mut written, mut errors, mut let_through) = (0, Vec::new(), Vec::new());
            let mut id: i32 = 100_000;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                let has_column = c
                    .query_one(
                        "SELECT count(*) = 2 FROM pg_attribute WHERE attname = 'account_id' \
                         AND attrelid IN ('events'::regclass, 'notes'::regclass)",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get::<_, bool>(0);
                let r = async {
                    if has_column {
                        c.execute(
                            "INSERT INTO events (event_id, at, device_id, code, account_id) \
                             SELECT $1::bigint, date '2026-03-01', device_id, 'new', account_id \
                             FROM devices WHERE device_id = 1 + $1::bigint % 50",
                            &[&i64::from(id)],
                        )
                        .await?;
                        c.execute(
                            "INSERT INTO notes (note_id, at, event_id, body, account_id) \
                             SELECT $1::integer, at, event_id, 'new', account_id FROM events \
                             WHERE at = date '2026-03-01' AND event_id = $1::integer",
                            &[&id],
                        )
                        .await
                    } else {
                        c.execute(
                            "INSERT INTO events (event_id, at, device_id, code) \
                             VALUES ($1::bigint, date '2026-03-01', 1 + $1::bigint % 50, 'new')",
                            &[&i64::from(id)],
                        )
                        .await?;
                        c.execute(
                            "INSERT INTO notes (note_id, at, event_id, body) \
                             VALUES ($1::integer, date '2026-03-01', $1::integer, 'new')",
                            &[&id],
                        )
                        .await
                    }
                }
                .await;
                match r {
                    Ok(_) => written += 1,
                    Err(e) => errors.push(shardready::conn::error_text(&e)),
                }
                let (orphan_note, orphan_event) = if has_column {
                    (
                        "INSERT INTO notes (note_id, at, event_id, account_id) \
                         VALUES (-1, date '2026-03-01', -1, 1)",
                        "INSERT INTO events (event_id, at, device_id, code, account_id) \
                         VALUES (-1, date '2026-03-01', -1, 'x', 1)",
                    )
                } else {
                    (
                        "INSERT INTO notes (note_id, at, event_id) VALUES (-1, date '2026-03-01', -1)",
                        "INSERT INTO events (event_id, at, device_id, code) VALUES (-1, date '2026-03-01', -1, 'x')",
                    )
                };
                for bad in [orphan_note, orphan_event] {
                    if c.execute(bad, &[]).await.is_ok() {
                        let_through.push(bad);
                        let _ = c
                            .batch_execute(
                                "DELETE FROM notes WHERE note_id = -1; DELETE FROM events WHERE event_id = -1",
                            )
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (written, errors, let_through)
        })
    };
    let mut applying = with("apply");
    applying.extend(["--trigger-window", "300ms"]);
    let applied = ok(run_on(&url, &applying), "apply");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let (written, errors, let_through) = app.await.unwrap();
    assert!(
        written > 20,
        "the application kept writing ({written}): {:?}",
        errors.first()
    );
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    assert!(
        let_through.is_empty(),
        "a key was missing while apply ran: {let_through:?}"
    );
    assert!(applied.contains("(replaces the parent's own)"), "{applied}");
    let verified = ok(run_on(&url, &with("verify")), "verify");
    assert!(verified.contains("ready for Citus"), "{verified}");
    common::assert_no_helpers_left(&client).await;
    let after: Vec<(String, String)> = checksums(&client, "account_id").await;
    for (table, sum) in &before {
        if !table.starts_with("events_2026") && table != "notes" {
            assert!(
                after.contains(&(table.clone(), sum.clone())),
                "{table} changed"
            );
        }
    }
    let keys: Vec<(String, String, bool)> = client
        .query(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid), convalidated \
             FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 \
             AND conrelid IN ('events'::regclass, 'notes'::regclass) ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        keys.contains(&(
            "events".into(),
            "FOREIGN KEY (account_id, device_id) REFERENCES devices(account_id, device_id)".into(),
            true
        )),
        "{keys:?}"
    );
    assert!(
        keys.contains(&(
            "notes".into(),
            "FOREIGN KEY (account_id, at, event_id) REFERENCES events(account_id, at, event_id)"
                .into(),
            true
        )),
        "{keys:?}"
    );
    assert_eq!(
        keys.len(),
        4,
        "the new keys and the tenant column's to accounts: {keys:?}"
    );
    // The parent's key attached each partition's (none is a partition's own).
    let own = scalar_i64(
        &client,
        "SELECT count(*) FROM pg_constraint c JOIN pg_inherits i ON i.inhrelid = c.conrelid \
         WHERE c.contype = 'f' AND c.conparentid = 0 AND i.inhparent = 'events'::regclass",
    )
    .await;
    assert_eq!(own, 0);
    if !citus {
        eprintln!("distribute skipped: Citus is not installed");
        return;
    }
    ok(run_on(&url, &with("distribute")), "distribute");
    let distributed = scalar_i64(
        &client,
        "SELECT count(*) FROM pg_dist_partition WHERE partmethod = 'h' \
         AND logicalrelid IN ('events'::regclass, 'notes'::regclass, 'devices'::regclass)",
    )
    .await;
    assert_eq!(distributed, 3);
    let orphan = client
        .execute(
            "INSERT INTO notes (note_id, at, event_id, account_id) VALUES (-2, date '2026-03-01', -2, 1)",
            &[],
        )
        .await;
    assert!(orphan.is_err(), "the key holds on Citus");
}

/// A cycle among tenant tables: each store's manager is one of its staff.
const CYCLE: &str = "
CREATE TABLE stores (store_id integer PRIMARY KEY, name text, manager_id integer);
CREATE TABLE staff (staff_id integer PRIMARY KEY,
    store_id integer NOT NULL REFERENCES stores (store_id), name text);
ALTER TABLE stores ADD FOREIGN KEY (manager_id) REFERENCES staff (staff_id);
CREATE TABLE orders (order_id integer PRIMARY KEY,
    store_id integer NOT NULL REFERENCES stores (store_id),
    staff_id integer REFERENCES staff (staff_id));
INSERT INTO stores SELECT g, 's' || g, NULL FROM generate_series(1, 4) g;
INSERT INTO staff SELECT g, 1 + g % 4, 'p' || g FROM generate_series(1, 20) g;
UPDATE stores SET manager_id = 4 + store_id - 1;
INSERT INTO orders SELECT g, 1 + g % 4, 4 + g % 4 FROM generate_series(1, 400) g;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_managed_by_another_stores_staff_is_found_before_any_change() {
    let (c, t, citus) =
        cluster_for("a_store_managed_by_another_stores_staff_is_found_before_any_change");
    let url = c.url();
    let client = connect(&t).await;
    shardready::db::exec_script(&client, CYCLE).await.unwrap();
    // Each store is managed by one of its own staff (staff g works at
    // store 1 + g % 4); store 2 is then given store 1's staff 8.
    client
        .batch_execute("UPDATE stores SET manager_id = 8 WHERE store_id = 2")
        .await
        .unwrap();
    let analysis = report(run_on(&url, &["analyze"]));
    assert!(
        analysis.contains("BLOCKER [cross-tenant-rows] 1 row in stores with another store_id than the staff row they reference through manager_id"),
        "{analysis}"
    );
    assert!(
        analysis.contains("`shardready apply --drop-fk stores.stores_manager_id_fkey`"),
        "{analysis}"
    );
    // apply refuses before changing anything.
    let refused = run_on(&url, &["apply"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let changed = scalar_i64(
        &client,
        "SELECT count(*) FROM pg_class WHERE relname LIKE '%shardready%'",
    )
    .await;
    assert_eq!(changed, 0, "nothing was built");
    // The user corrects the row; then everything goes through.
    client
        .batch_execute("UPDATE stores SET manager_id = 5 WHERE store_id = 2")
        .await
        .unwrap();
    ok(run_on(&url, &["apply"]), "apply");
    ok(run_on(&url, &["verify"]), "verify");
    let key: String = client
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'stores_manager_id_fkey'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        key,
        "FOREIGN KEY (store_id, manager_id) REFERENCES staff(store_id, staff_id)"
    );
    if !citus {
        eprintln!("distribute skipped: Citus is not installed");
        return;
    }
    // The cycle: keys dropped and re-added around the distribution.
    ok(run_on(&url, &["distribute"]), "distribute");
    let cross = client
        .execute("UPDATE stores SET manager_id = 8 WHERE store_id = 2", &[])
        .await;
    assert!(cross.is_err(), "the rewritten key holds on Citus");
}

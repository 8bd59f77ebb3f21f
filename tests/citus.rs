//! distribute: without Citus (always) the dry run prints the SQL and the
//! real run explains what to do; where Citus is installed, each test starts
//! its own local Citus cluster (coordinator and workers, through the
//! sandbox code) and the whole path — load, apply, distribute, counts and
//! routing — runs; where it is not, those tests say they are skipped and why.

mod common;

use std::time::Duration;

fn shardready(url: &str, args: &[&str]) -> std::process::Output {
    common::run_on(url, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_citus_dry_run_prints_sql_and_distribute_explains() {
    let (c, t) = common::tailspin(0.002).await;
    shardready::apply::apply(
        &t,
        &shardready::apply::ApplyOptions {
            progress: false,
            trigger_window: std::time::Duration::from_millis(300),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let out = shardready(&c.url(), &["distribute", "--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sql = String::from_utf8_lossy(&out.stdout);
    let root = sql
        .find("SELECT create_distributed_table('\"public\".\"stores\"', 'store_id', shard_count =>")
        .expect("root distributed");
    let child = sql
        .find("SELECT create_distributed_table('\"public\".\"line_items\"', 'store_id', colocate_with => '\"public\".\"stores\"');")
        .expect("children colocated");
    assert!(root < child);
    assert!(sql.contains("truncate_local_data_after_distributing_table"));

    let out = shardready(&c.url(), &["distribute"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a Citus coordinator") && err.contains("--dry-run"),
        "{err}"
    );
}

/// The mode the plan chose and the words of its reason.
fn assert_mode(v: &serde_json::Value, concurrently: bool, reason: &str) {
    assert_eq!(
        v["plan"]["concurrently"], concurrently,
        "{}",
        v["plan"]["mode_reason"]
    );
    assert!(
        v["plan"]["mode_reason"].as_str().unwrap().contains(reason),
        "{}",
        v["plan"]["mode_reason"]
    );
}

/// Where and how hard a traffic test runs.
struct Traffic {
    /// Citus workers; 0: a single node holding the shards, like the seed's.
    workers: u16,
    rate: &'static str,
}

/// The rate the issues' show asks of distribution: the seed's 20,000
/// orders a minute, on a single Citus node like the seed's.
const SEED: Traffic = Traffic {
    workers: 0,
    rate: "20000/min",
};

/// Tailspin loaded and prepared on a fresh Citus cluster, then distributed
/// with `args` under the application's traffic; the JSON report, after the
/// checks every mode must pass: not one application transaction failed, no
/// row lost, a tenant query routed to one shard, Citus's own shard count.
async fn distribute_tailspin_under_traffic(
    test: &str,
    traffic: Traffic,
    args: &[&str],
) -> Option<serde_json::Value> {
    let (c, t) = if traffic.workers == 0 {
        common::citus_single(test, 0, Vec::new())?
    } else {
        common::citus_cluster(test, traffic.workers)?
    };
    let url = c.url();
    common::prepared_tailspin(&t, 0.005).await;
    // Under the application's traffic: it keeps inserting orders and line
    // items (writing store_id) while the tables move.
    let base = ["distribute", "--format", "json", "--workload", traffic.rate];
    let out = shardready(&url, &[&base[..], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let felt = &v["workload"];
    // The latency is reported, not asserted (timing belongs to the
    // benchmark: `cargo bench --bench distribute`).
    eprintln!(
        "{test}: application during distribute at {}: {} orders, p99 {} ms, max {} ms, {} failed",
        traffic.rate,
        felt["orders"],
        felt["latency"]["p99_ms"],
        felt["latency"]["max_ms"],
        felt["errors"]
    );
    assert!(felt["orders"].as_u64().unwrap() > 0, "{felt}");
    assert!(felt["latency"]["max_ms"].as_f64().unwrap() > 0.0, "{felt}");
    // Every batch takes its locks before its statements, never waiting for
    // one while it holds another: no lock cycle with the application for a
    // deadlock detector (PostgreSQL's or Citus's distributed one) to break
    // by cancelling the application's side, in any mode.
    assert_eq!(felt["errors"].as_u64().unwrap(), 0, "{felt}");
    assert!(!v["counts"].as_array().unwrap().is_empty(), "{v}");
    for c in v["counts"].as_array().unwrap() {
        assert!(
            c["after"].as_i64() >= c["before"].as_i64(),
            "no row lost (the application inserts meanwhile): {c}"
        );
    }
    assert!(v["routing"].as_str().unwrap().contains("Task Count: 1"));
    // Every concurrent switch ran under the commit guard, which saw Citus
    // block the table's writes.
    let guards = v["switch_guards"].as_array().unwrap();
    assert_eq!(
        !guards.is_empty(),
        v["plan"]["concurrently"] == true,
        "{}",
        v["switch_guards"]
    );
    for g in guards {
        assert_eq!(g["switched"], true, "{g}");
    }
    // The database's own signals were sampled beside it, after a baseline.
    let sig = &v["signals"];
    assert!(
        sig["baseline"]["canary_p99_ms"].as_f64().unwrap() > 0.0,
        "{sig}"
    );
    assert!(!sig["seconds"].as_array().unwrap().is_empty(), "{sig}");
    // The application after distribution, beside its baseline: reported
    // (its figures belong to the benchmark, not to a test).
    let after = &v["application_after"][0];
    assert_eq!(after["phase"], "after distribution", "{v:#}");
    assert!(
        after["baseline_tx_per_s"].as_f64().unwrap() > 0.0,
        "{after}"
    );
    assert!(after["tx_per_s"].as_f64().unwrap() > 0.0, "{after}");
    eprintln!("{test}: application after distribution: {after}");
    // The shard count is Citus's own, not the plan's.
    let client = t.connect().await.unwrap();
    let shards: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'stores'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v["root_shards"], shards, "{v}");
    Some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_apply_distribute_on_citus() {
    let Some(v) = distribute_tailspin_under_traffic(
        "prepare_apply_distribute_on_citus",
        Traffic {
            workers: 2,
            rate: "1200/min",
        },
        &[],
    )
    .await
    else {
        return;
    };
    // Nobody asked for a mode: the application's writes chose concurrently.
    assert_mode(&v, true, "because the application writes");
}

/// The seed's environment and rate: one Citus node, 20,000 orders a
/// minute. Nobody asks for a mode: orders and line items are written, so
/// they move concurrently; stores and products nobody writes (small), so
/// they are copied, and no product lookup can fail at a concurrent switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribute_on_a_single_node_at_the_seeds_rate() {
    let Some(v) = distribute_tailspin_under_traffic(
        "distribute_on_a_single_node_at_the_seeds_rate",
        SEED,
        &[],
    )
    .await
    else {
        return;
    };
    assert_mode(&v, true, "because the application writes");
    assert_mode(
        &v,
        true,
        "products, stores copied with create_distributed_table",
    );
    let batches = v["plan"]["batches"].as_array().unwrap();
    let described = |needle: &str| {
        batches
            .iter()
            .any(|b| b["description"].as_str().unwrap().contains(needle))
    };
    assert!(
        described("distribute products (nothing writes it"),
        "{batches:#?}"
    );
    assert!(
        described("distribute line_items concurrently"),
        "{batches:#?}"
    );
}

/// The same with `--concurrently` asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribute_concurrently_on_a_single_node_at_the_seeds_rate() {
    let Some(v) = distribute_tailspin_under_traffic(
        "distribute_concurrently_on_a_single_node_at_the_seeds_rate",
        SEED,
        &["--concurrently"],
    )
    .await
    else {
        return;
    };
    assert_mode(&v, true, "as asked (--concurrently)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_distribute_under_traffic_reports_what_the_application_felt() {
    let Some(v) = distribute_tailspin_under_traffic(
        "blocking_distribute_under_traffic_reports_what_the_application_felt",
        Traffic {
            workers: 2,
            rate: "1200/min",
        },
        &["--blocking"],
    )
    .await
    else {
        return;
    };
    assert_mode(&v, false, "as asked (--blocking)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ordering_trap_distributes_in_one_transaction_on_citus() {
    // A tenant table referencing both a lookup table (to become a
    // reference table) and the root, with a mixed-case root in its own
    // schema: the FKs are dropped and re-added in one sequential-mode
    // transaction, every statement sent as its own query.
    let Some((c, t)) = common::citus_cluster(
        "the_ordering_trap_distributes_in_one_transaction_on_citus",
        1,
    ) else {
        return;
    };
    let url = c.url();
    let tenant = prepared_saas(&t).await;
    // A Citus call that outlives --statement-timeout is cancelled, says
    // what to do, and leaves nothing half-done (one transaction here).
    let out = shardready(
        &url,
        &[
            &["distribute", "--statement-timeout", "5ms"][..],
            &tenant[..],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("still running after 5ms (--statement-timeout)") && err.contains("rerun"),
        "{err}"
    );
    let client = t.connect().await.unwrap();
    let placed: i64 = client
        .query_one("SELECT count(*) FROM pg_dist_partition", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(placed, 0, "the cancelled transaction placed nothing");
    let out = shardready(
        &url,
        &[&["distribute", "--format", "json"][..], &tenant[..]].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Nothing writes: the fastest, blocking mode, and the plan says why.
    assert_mode(&v, false, "nothing wrote to the tables");
    assert_eq!(v["plan"]["sequential_transaction"], true, "{v}");
    assert_eq!(v["plan"]["reference"][0]["name"], "plans", "{v}");
    assert!(!v["counts"].as_array().unwrap().is_empty(), "{v}");
    for c in v["counts"].as_array().unwrap() {
        assert_eq!(c["before"], c["after"], "row counts unchanged: {c}");
    }
    let types: Vec<(String, String)> = v["citus_tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for table in ["app.Accounts", "app.audit_log"] {
        assert!(
            types.contains(&(table.into(), "distributed".into())),
            "{types:?}"
        );
    }
    assert!(v["routing"].as_str().unwrap().contains("Task Count: 1"));
}

/// The SaaS fixture (a lookup table referenced by tenant tables, a
/// mixed-case root in its own schema) and a tenant table without a primary
/// key, with rows, prepared by `apply`; the tenant flags to pass.
async fn prepared_saas(t: &shardready::conn::Target) -> [&'static str; 2] {
    let client = t.connect().await.unwrap();
    shardready::db::exec_script(&client, include_str!("fixtures/saas.sql"))
        .await
        .unwrap();
    shardready::db::exec_script(
        &client,
        "INSERT INTO app.\"Accounts\"(name) SELECT 'a'||g FROM generate_series(1,5) g;
         INSERT INTO app.plans VALUES ('free',0),('pro',10);
         INSERT INTO app.members(account_id,email) SELECT 1+g%5, 'm'||g FROM generate_series(1,20) g;
         INSERT INTO app.projects(account_id,plan_code,slug) SELECT 1+g%5, 'pro', 's'||g FROM generate_series(1,20) g;
         INSERT INTO app.tasks(project_id,assignee_id,title) SELECT 1+g%20, 1+g%20, 't'||g FROM generate_series(1,100) g;
         INSERT INTO app.comments(task_id,body) SELECT 1+g%100,'c' FROM generate_series(1,200) g;
         CREATE TABLE app.audit_log (
             account_id bigint NOT NULL REFERENCES app.\"Accounts\" (id),
             at timestamptz NOT NULL DEFAULT now(),
             what text);
         INSERT INTO app.audit_log(account_id,what) SELECT 1+g%5,'login' FROM generate_series(1,50) g;",
    )
    .await
    .unwrap();
    let tenant = ["--tenant-column", "account_id"];
    let out = shardready(
        &t.url_without_password(),
        &[&["apply", "--replan"][..], &tenant[..]].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tenant
}

/// The foreign keys of `schema`: (table, name, validated).
async fn foreign_keys_in(c: &tokio_postgres::Client, schema: &str) -> Vec<(String, String, bool)> {
    c.query(
        "SELECT conrelid::regclass::text, conname::text, convalidated FROM pg_constraint \
         WHERE contype = 'f' AND connamespace = $1::text::regnamespace ORDER BY 1, 2",
        &[&schema],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// kill -9 of `distribute --concurrently` at each of its steps in turn
/// (each rerun is killed as soon as it starts one more step than the run
/// before), then a rerun that finishes: every FK back and validated, counts
/// right, the saved definitions cleared; a rerun of the finished
/// distribution exits 0 saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribute_killed_at_every_step_resumes_to_the_end() {
    use std::io::{BufRead, BufReader};
    let Some((c, t)) =
        common::citus_cluster("distribute_killed_at_every_step_resumes_to_the_end", 1)
    else {
        return;
    };
    let url = c.url();
    let tenant = prepared_saas(&t).await;
    let client = t.connect().await.unwrap();
    let fks_before = foreign_keys_in(&client, "app").await;
    assert!(fks_before.len() >= 5, "{fks_before:?}");
    let rows = "SELECT (SELECT count(*) FROM app.tasks) + (SELECT count(*) FROM app.comments)";
    let rows_before: i64 = client.query_one(rows, &[]).await.unwrap().get(0);
    let args: Vec<&str> = [&["distribute", "--concurrently"][..], &tenant[..]].concat();
    // Pre-flight: a coordinator whose output_plugin_libraries does not allow
    // Citus's decoder is refused before anything changes, naming the fix.
    client
        .batch_execute("ALTER SYSTEM SET output_plugin_libraries = 'pgoutput'")
        .await
        .ok();
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let has_setting: Option<String> = client
        .query_one(
            "SELECT current_setting('output_plugin_libraries', true)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if has_setting.is_some() {
        let out = shardready(&url, &args);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("nothing was changed")
                && err.contains("output_plugin_libraries = 'pgoutput, citus'"),
            "{err}"
        );
        let placed: i64 = client
            .query_one("SELECT count(*) FROM citus_tables", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(placed, 0);
        assert_eq!(foreign_keys_in(&client, "app").await, fks_before);
        client
            .batch_execute("ALTER SYSTEM RESET output_plugin_libraries")
            .await
            .unwrap();
        client
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    // Pre-flight: a table without a replica identity (app.audit_log has no
    // primary key) would fail the application's UPDATEs and DELETEs while
    // it moves concurrently: refused before anything changes, naming the fix.
    let out = shardready(&url, &args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing was changed")
            && err.contains("app.audit_log: no replica identity")
            && err.contains("ALTER TABLE \"app\".\"audit_log\" REPLICA IDENTITY FULL;"),
        "{err}"
    );
    assert_eq!(foreign_keys_in(&client, "app").await, fks_before);
    let placed: i64 = client
        .query_one("SELECT count(*) FROM pg_dist_partition", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(placed, 0);
    client
        .batch_execute("ALTER TABLE app.audit_log REPLICA IDENTITY FULL")
        .await
        .unwrap();
    let mut kills = 0;
    let mut saw_dropped = 0;
    for step in 1.. {
        let mut child = common::shardready()
            .args(&args)
            .arg("--db")
            .arg(&url)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut started = 0;
        let mut killed = false;
        let mut said = Vec::new();
        for line in stderr.lines() {
            let line = line.unwrap();
            eprintln!("run {step}: {line}");
            said.push(line.clone());
            // A step line is indented and names neither a skip nor a retry.
            if line.starts_with("  ")
                && !line.contains("already done")
                && !line.contains("not needed")
                && !line.contains("re-adding")
            {
                started += 1;
            }
            if started == step {
                child.kill().unwrap(); // SIGKILL
                killed = true;
                break;
            }
        }
        let status = child.wait().unwrap();
        if !killed {
            assert!(
                status.success(),
                "the run that was not killed finishes:\n{}",
                said.join("\n")
            );
            break;
        }
        kills += 1;
        assert!(kills < 30, "distribute never finished");
        // The lost connection's transaction is rolled back by the server;
        // give it a moment.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // `status` names every key the killed run left dropped.
        let now = foreign_keys_in(&client, "app").await;
        let missing: Vec<&(String, String, bool)> = fks_before
            .iter()
            .filter(|(t, n, _)| !now.iter().any(|(t2, n2, _)| t2 == t && n2 == n))
            .collect();
        if !missing.is_empty() {
            let out = shardready(&url, &["status", "--format", "json"]);
            assert!(out.status.success());
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let dropped = v["distribution"]["dropped_fks"].as_array().unwrap().clone();
            for (_, name, _) in &missing {
                assert!(
                    dropped
                        .iter()
                        .any(|d| d["name"] == name.as_str() && d["present"] == false),
                    "{name} missing from status: {dropped:?}"
                );
            }
            saw_dropped += 1;
        }
    }
    assert!(kills >= 5, "killed at each of its steps ({kills} kills)");
    assert!(saw_dropped > 0, "some kill left keys dropped");
    let fks_after = foreign_keys_in(&client, "app").await;
    let names = |v: &[(String, String, bool)]| {
        v.iter()
            .map(|(t, n, _)| (t.clone(), n.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&fks_after), names(&fks_before), "every FK is back");
    assert!(
        fks_after.iter().all(|(_, _, v)| *v),
        "and validated: {fks_after:?}"
    );
    let rows_after: i64 = client.query_one(rows, &[]).await.unwrap().get(0);
    assert_eq!(rows_after, rows_before);
    let saved: i64 = client
        .query_one("SELECT count(*) FROM shardready.distribute_fk", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        saved, 0,
        "the saved definitions are cleared once all are back"
    );
    let distributed: i64 = client
        .query_one(
            "SELECT count(*) FROM citus_tables WHERE citus_table_type = 'distributed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distributed, 6, "the table without a primary key too");
    // Finished: a rerun exits 0 and says so.
    let out = shardready(&url, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already distributed"), "{err}");
    // status and analyze say what Citus has, sized by its shards.
    let out = shardready(&url, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("already distributed: 6 distributed table(s)"),
        "{text}"
    );
    assert!(!text.contains("interrupted distribute dropped"), "{text}");
    let out = shardready(&url, &[&["analyze"][..], &tenant[..]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("on Citus:") && text.contains("distributed by account_id, 32 shards"),
        "{text}"
    );
}

/// A root that references one of its children — a store names its manager
/// among its own staff, as in Pagila — and a child that references the
/// root: a cycle. Citus refuses to distribute the root while its key
/// points at a table it does not have yet, so distribute drops that key
/// (saved), places both, and re-adds it; in either mode, and with a lookup
/// table (the one-transaction mode) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_referencing_its_child_distributes_in_every_mode() {
    const SCHEMA: &str = "
    CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL);
    CREATE TABLE stores (store_id bigint PRIMARY KEY, manager_id bigint, country text);
    CREATE TABLE staff (
        staff_id bigint PRIMARY KEY,
        store_id bigint NOT NULL REFERENCES stores (store_id),
        name text NOT NULL);
    ALTER TABLE stores ADD FOREIGN KEY (manager_id) REFERENCES staff (staff_id);
    INSERT INTO countries VALUES ('fr', 'France'), ('de', 'Germany');
    INSERT INTO stores SELECT g, NULL, CASE WHEN g % 2 = 0 THEN 'fr' ELSE 'de' END FROM generate_series(1, 6) g;
    INSERT INTO staff SELECT g, 1 + g % 6, 's' || g FROM generate_series(1, 60) g;
    UPDATE stores SET manager_id = store_id + 5;
    ";
    // (mode, stores references the lookup table: the one-transaction mode)
    for (mode, lookup) in [
        ("--blocking", false),
        ("--concurrently", false),
        ("--blocking", true),
    ] {
        let test = "a_root_referencing_its_child_distributes_in_every_mode";
        let Some((c, t)) = common::citus_cluster(test, 1) else {
            return;
        };
        let url = c.url();
        let client = t.connect().await.unwrap();
        shardready::db::exec_script(&client, SCHEMA).await.unwrap();
        if lookup {
            client
                .batch_execute(
                    "ALTER TABLE stores ADD FOREIGN KEY (country) REFERENCES countries (code)",
                )
                .await
                .unwrap();
        }
        let mode = format!("{mode}{}", if lookup { " (with a lookup)" } else { "" });
        let tenant = ["--tenant-column", "store_id"];
        let out = shardready(&url, &[&["apply"][..], &tenant[..]].concat());
        assert!(
            out.status.success(),
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let before = foreign_keys_in(&client, "public").await;
        let mut args = vec!["distribute"];
        args.extend(tenant);
        args.push(mode.split(' ').next().unwrap());
        let out = shardready(&url, &args);
        assert!(
            out.status.success(),
            "{mode:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every key back, validated; the cycle holds on the shards.
        let after = foreign_keys_in(&client, "public").await;
        assert_eq!(after.len(), before.len(), "{mode:?}: {after:?}");
        assert!(
            after.iter().all(|(_, _, valid)| *valid),
            "{mode:?}: {after:?}"
        );
        let err = client
            .execute("UPDATE stores SET manager_id = 6 WHERE store_id = 2", &[])
            .await
            .expect_err("a manager from another store is refused on the shards");
        assert!(
            shardready::conn::error_text(&err).contains("violates foreign key constraint"),
            "{mode:?}: {err}"
        );
        let placed = common::scalar_i64(&client, "SELECT count(*) FROM pg_dist_partition").await;
        assert!(placed >= 2, "{mode:?}");
        drop(c);
    }
}

/// A key that cannot be validated after the tables moved (rows without a
/// parent — here a key the schema had NOT VALID, over an orphan): distribute
/// stops with exit 2, every table placed and the key NOT VALID, naming the
/// rows and the query that lists them; once they are repaired, a plain rerun
/// validates the key and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_without_a_parent_are_named_and_a_rerun_validates_after_the_repair() {
    let test = "rows_without_a_parent_are_named_and_a_rerun_validates_after_the_repair";
    let Some((c, t)) = common::citus_single(test, 0, Vec::new()) else {
        return;
    };
    let url = c.url();
    let client = t.connect().await.unwrap();
    shardready::db::exec_script(
        &client,
        "CREATE TABLE accounts (account_id bigint PRIMARY KEY);
         CREATE TABLE projects (account_id bigint NOT NULL REFERENCES accounts,
                                id bigint, PRIMARY KEY (account_id, id));
         CREATE TABLE tasks (account_id bigint NOT NULL REFERENCES accounts,
                             id bigint, project_id bigint, PRIMARY KEY (account_id, id));
         INSERT INTO accounts SELECT g FROM generate_series(1, 5) g;
         INSERT INTO projects SELECT 1 + g % 5, g FROM generate_series(1, 20) g;
         INSERT INTO tasks SELECT 1 + g % 5, g, g FROM generate_series(1, 20) g;
         INSERT INTO tasks VALUES (1, 99, 77);
         ALTER TABLE tasks ADD CONSTRAINT tasks_project_fkey
               FOREIGN KEY (account_id, project_id) REFERENCES projects NOT VALID;",
    )
    .await
    .unwrap();
    let out = shardready(&url, &["distribute", "--concurrently"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tasks: 1 row(s) reference no row of projects, so tasks_project_fkey"),
        "{err}"
    );
    // The query it prints lists exactly the orphan.
    let list = err
        .lines()
        .find(|l| l.trim_start().starts_with("SELECT c."))
        .unwrap_or_else(|| panic!("{err}"))
        .trim();
    let rows = client.query(list, &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(1), 77);
    let fk_validated = || async {
        t.connect()
            .await
            .unwrap()
            .query_one(
                "SELECT convalidated FROM pg_constraint WHERE conname = 'tasks_project_fkey'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    };
    assert!(!fk_validated().await, "left NOT VALID");
    let placed: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_dist_partition WHERE partmethod = 'h'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(placed, 3, "every table is distributed");
    client
        .batch_execute("DELETE FROM tasks WHERE id = 99")
        .await
        .unwrap();
    let out = shardready(&url, &["distribute"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("validate tasks_project_fkey on tasks"),
        "{err}"
    );
    assert!(fk_validated().await);
    // Finished: the saved keys are forgotten, and a rerun has nothing to do.
    let out = shardready(&url, &["distribute"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("already distributed"), "{err}");
}

/// A write the application commits asynchronously (`synchronous_commit =
/// off`) just before Citus blocks a table's writes at the end of
/// `create_distributed_table_concurrently` lies beyond the WAL position
/// Citus waits for; without the switch guard it stays in the old shard and
/// is lost. The WAL writer here sleeps 10 s, so the commit is still in the
/// WAL buffers when Citus reads its position: the loss is certain without
/// the guard, not a matter of timing. With it, every committed row is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_committed_asynchronously_just_before_the_switch_is_kept() {
    let test = "a_write_committed_asynchronously_just_before_the_switch_is_kept";
    let settings = vec![
        ("wal_writer_delay".to_string(), "10s".to_string()),
        ("wal_writer_flush_after".to_string(), "0".to_string()),
    ];
    let Some((c, t)) = common::citus_single(test, 0, settings) else {
        return;
    };
    let url = c.url();
    let admin = t.connect().await.unwrap();
    shardready::db::exec_script(
        &admin,
        "CREATE TABLE accounts (account_id bigint PRIMARY KEY, name text);
         CREATE TABLE projects (account_id bigint NOT NULL REFERENCES accounts,
                                id bigint, PRIMARY KEY (account_id, id));
         INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 50) g;
         INSERT INTO projects SELECT 1 + g % 50, g FROM generate_series(1, 500) g;",
    )
    .await
    .unwrap();
    // The application: a new account every 20 ms, committed asynchronously;
    // the ids it saw committed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let t = t.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let app = common::asynchronous_session(&t).await;
            let mut committed = Vec::new();
            let mut id = 1_000i64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                id += 1;
                let r = app
                    .execute("INSERT INTO accounts VALUES ($1, 'new')", &[&id])
                    .await;
                assert!(r.is_ok(), "the application's write failed: {r:?}");
                committed.push(id);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            committed
        })
    };
    let child = common::spawn_on(&url, &["distribute", "--concurrently", "--format", "json"]);
    // Once accounts is being copied and replicated (its subscription made:
    // the slot's snapshot no longer waits for open transactions), a write
    // stays open across Citus's block and commits asynchronously inside it.
    let limit = std::time::Duration::from_secs(120);
    common::wait_until(
        &admin,
        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'shardready-distribute' \
         AND query LIKE '%create_distributed_table_concurrently(''\"public\".\"accounts\"''%') \
         AND EXISTS (SELECT FROM pg_subscription WHERE subname LIKE 'citus_shard_split_subscription_%')",
        limit,
        "accounts distributed concurrently",
        &String::new,
    )
    .await;
    let late = common::asynchronous_session(&t).await;
    late.batch_execute("BEGIN").await.unwrap();
    late.execute("INSERT INTO accounts VALUES (-1, 'late')", &[])
        .await
        .unwrap();
    common::wait_until(
        &admin,
        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'shardready-distribute' \
         AND wait_event_type = 'Lock' AND wait_event = 'advisory')",
        limit,
        "Citus blocks the writes of accounts",
        &String::new,
    )
    .await;
    // Long enough for the guard (which looks every 5 ms) to see Citus wait
    // while this write is still inside.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    late.batch_execute("COMMIT").await.unwrap();
    let out = child.finished(std::time::Duration::from_secs(600));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let committed = writer.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kind: String = admin
        .query_one(
            "SELECT citus_table_type FROM citus_tables WHERE table_name = 'accounts'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "distributed");
    let late_kept: i64 = admin
        .query_one("SELECT count(*) FROM accounts WHERE account_id = -1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(late_kept, 1, "the write committed inside the block is kept");
    let present: i64 = admin
        .query_one(
            "SELECT count(*) FROM accounts WHERE account_id = ANY($1)",
            &[&committed],
        )
        .await
        .unwrap()
        .get(0);
    assert!(committed.len() > 10, "{}", committed.len());
    assert_eq!(
        present,
        committed.len() as i64,
        "every committed write is there"
    );
    // The guard says what it did: it saw Citus wait and waited for the
    // write still inside.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = v["switch_guards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["table"] == "accounts")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(g["switched"], true, "{g}");
    assert!(g["writers_waited_for"].as_i64().unwrap() >= 1, "{g}");
    // Once it let Citus go, it woke Citus's catch-up check rather than
    // leave it to a second's sleep; the late write is kept all the same.
    assert!(g["wakes"].as_u64().unwrap() >= 1, "{g}");
}

/// A hot tenant (store 5 with most of the orders) isolated on its own shard
/// under the seed's traffic: the split is by logical replication, with the
/// same switch as a concurrent distribution, so it runs under the commit
/// guard too; no application transaction fails, no order is lost, and the
/// report counts the shards Citus made (two more than planned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_tenant_is_isolated_under_traffic_under_the_guard() {
    let test = "a_hot_tenant_is_isolated_under_traffic_under_the_guard";
    let Some((c, t)) = common::citus_single(test, 0, Vec::new()) else {
        return;
    };
    common::prepared_tailspin(&t, 0.005).await;
    let admin = t.connect().await.unwrap();
    admin
        .batch_execute(
            "INSERT INTO orders (store_id, status, billing_address, ordered_at) \
             SELECT 5, 'Pending', '1 Hot St.', now()::date FROM generate_series(1, 60000)",
        )
        .await
        .unwrap();
    let out = shardready(
        &c.url(),
        &[
            "distribute",
            "--concurrently",
            "--isolate-hot-tenants",
            "--workload",
            SEED.rate,
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["workload"]["errors"].as_u64(),
        Some(0),
        "{}",
        v["workload"]
    );
    assert!(v["workload"]["orders"].as_u64().unwrap() > 0);
    let planned = v["plan"]["shard_count"].as_i64().unwrap();
    assert_eq!(v["root_shards"].as_i64(), Some(planned + 2), "{v}");
    let g = v["switch_guards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["tenant"] == "5")
        .unwrap_or_else(|| panic!("{}", v["switch_guards"]));
    assert_eq!(g["table"], "stores", "{g}");
    assert_eq!(g["switched"], true, "{g}");
    // Tenant 5 has a shard of its own, and nothing the application wrote
    // was left behind.
    let own: i64 = admin
        .query_one(
            "SELECT shard_max - shard_min FROM (SELECT shardminvalue::int8 AS shard_min, \
             shardmaxvalue::int8 AS shard_max FROM pg_dist_shard \
             WHERE shardid = get_shard_id_for_distribution_column('stores', 5)) s",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(own, 0, "the shard holds one hash value");
    let orphans: i64 = admin
        .query_one(
            "SELECT count(*) FROM line_items l WHERE NOT EXISTS \
             (SELECT 1 FROM orders o WHERE o.store_id = l.store_id AND o.order_id = l.order_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);
    for c in v["counts"].as_array().unwrap() {
        assert!(c["after"].as_i64() >= c["before"].as_i64(), "{c}");
    }
}

/// The seed's step "update the application's queries": a statement the
/// application still sends many times a second that will run on every
/// shard stops `distribute` (exit 2, nothing changed) naming it and the
/// filter to add; accepted by its id, the tables distribute, and the
/// report compares the application's statements after with before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_fans_out_stops_distribute_until_accepted() {
    let Some((c, t)) = common::citus_single(
        "a_statement_that_fans_out_stops_distribute_until_accepted",
        0,
        Vec::new(),
    ) else {
        return;
    };
    let url = c.url();
    common::prepared_tailspin(&t, 0.005).await;
    let client = common::connect(&t).await;
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    let max_order = common::scalar_i64(&client, "SELECT max(order_id) FROM orders").await;
    const LOOKUP: &str = "SELECT status FROM orders WHERE order_id = $1";
    let app = common::send_repeatedly(&t, LOOKUP, max_order, Duration::from_millis(20));
    common::wait_for_calls(&client, LOOKUP, 20).await;
    let queryid = common::scalar_i64(
        &client,
        "SELECT queryid FROM pg_stat_statements \
         WHERE query = 'SELECT status FROM orders WHERE order_id = $1' LIMIT 1",
    )
    .await;

    let out = shardready(&url, &["distribute"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("will run on every shard"), "{err}");
    assert!(err.contains(&format!("  {queryid} (")), "{err}");
    assert!(
        err.contains("add: orders.store_id = $2 (a new parameter: the tenant's id)"),
        "{err}"
    );
    assert!(
        err.contains(&format!("--allow-multi-shard={queryid}")),
        "{err}"
    );
    let placed = common::scalar_i64(&client, "SELECT count(*) FROM pg_dist_partition").await;
    assert_eq!(placed, 0, "nothing distributed");

    let out = shardready(
        &url,
        &[
            "distribute",
            "--format",
            "json",
            "--allow-multi-shard",
            &queryid.to_string(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("accepted (--allow-multi-shard): {queryid}")),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let statements = v["statements_after"]["statements"].as_array().unwrap();
    let lookup = statements
        .iter()
        .find(|s| s["queryid"] == queryid)
        .unwrap_or_else(|| panic!("the lookup is measured after: {v:#}"));
    assert!(
        lookup["calls_per_s_before"].as_f64().unwrap() > 1.0,
        "{lookup}"
    );
    assert!(
        lookup["calls_per_s_after"].as_f64().unwrap() > 1.0,
        "{lookup}"
    );
    eprintln!(
        "the lookup: {:.2} ms before, {:.2} ms after distribution",
        lookup["mean_ms_before"], lookup["mean_ms_after"]
    );
    // The application kept working through it.
    assert_eq!(common::stop_sending(app).await, 0);
}

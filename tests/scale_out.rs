//! scale-out on a real local Citus: a single-node cluster like the seed's
//! (the coordinator holds the shards), Tailspin prepared and distributed
//! on it, then spread onto spare Citus nodes started by the sandbox code.
//! Under the application's traffic with nothing lost; killed with -9
//! during the rebalance and finished by a rerun; refused, with every
//! missing prerequisite named, before anything changes. Without Citus the
//! tests say they are skipped and why.

mod common;

use shardready::conn::Target;
use shardready::sandbox::TestCluster;

/// A single-node Citus cluster with two spare nodes, Tailspin loaded,
/// prepared and distributed on the coordinator in 8 shards (few moves, a
/// short test); the addresses of the spare nodes.
async fn distributed_single_node(test: &str) -> Option<(TestCluster, Target, Vec<String>)> {
    let (c, t) = common::citus_single(test, 2, Vec::new())?;
    common::prepared_tailspin(&t, 0.005).await;
    let out = common::run_on(
        &c.url(),
        &["distribute", "--blocking", "--shard-count", "8"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes = c.sandbox().node_addresses();
    assert_eq!(nodes.len(), 2);
    Some((c, t, nodes))
}

/// Active nodes of the cluster.
async fn nodes_in_cluster(c: &tokio_postgres::Client) -> i64 {
    common::scalar_i64(
        c,
        "SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND isactive",
    )
    .await
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What every finished scale-out must show: each new node holds shards,
/// no row was lost, a tenant query goes to one shard, the rebalancer has
/// nothing left to move.
async fn assert_spread(c: &tokio_postgres::Client, v: &serde_json::Value, nodes: &[String]) {
    for n in nodes {
        let held = v["after"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == n.as_str())
            .unwrap_or_else(|| panic!("{n} in {}", v["after"]));
        assert!(held["shards"].as_i64().unwrap() > 0, "{}", v["after"]);
    }
    for row in v["counts"].as_array().unwrap() {
        assert!(
            row["after"].as_i64().unwrap() >= row["before"].as_i64().unwrap(),
            "{row}"
        );
    }
    assert!(
        v["counts"].as_array().unwrap().len() >= 4,
        "{}",
        v["counts"]
    );
    assert!(
        v["routing"].as_str().unwrap().contains("Task Count: 1"),
        "{}",
        v["routing"]
    );
    assert_eq!(
        common::scalar_i64(c, "SELECT count(*) FROM get_rebalance_table_shards_plan()").await,
        0
    );
    assert_eq!(nodes_in_cluster(c).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_under_traffic_drains_the_coordinator_and_loses_nothing() {
    let test = "scale_out_under_traffic_drains_the_coordinator_and_loses_nothing";
    let Some((c, t, nodes)) = distributed_single_node(test).await else {
        return;
    };
    let client = t.connect().await.unwrap();
    let dir = common::temp_dir();
    let report = dir.path().join("report");
    let report_s = report.to_str().unwrap();
    let mut args = vec!["scale-out", "--add"];
    args.extend(nodes.iter().map(String::as_str));
    args.extend([
        "--drain-coordinator",
        "--tune",
        "--workload",
        "1200/min",
        "--report",
        report_s,
        "--format",
        "json",
    ]);
    let out = common::run_on(&c.url(), &args);
    let v = json(&out);
    let felt = &v["workload"];
    eprintln!(
        "{test}: {} moves in {:.1} s; application {} orders, p99 {} ms, max {} ms, {} failed; \
         pauses {}",
        v["moves"],
        v["rebalance_seconds"].as_f64().unwrap(),
        felt["orders"],
        felt["latency"]["p99_ms"],
        felt["latency"]["max_ms"],
        felt["errors"],
        v["pauses"]
    );
    assert!(felt["orders"].as_u64().unwrap() > 0, "{felt}");
    assert_eq!(felt["errors"].as_u64().unwrap(), 0, "{felt}");
    assert!(v["moves"].as_i64().unwrap() >= 8, "{}", v["moves"]);
    // Each logical move switched under the commit guard.
    let guards = v["switch_guards"].as_array().unwrap();
    assert!(
        guards.len() as i64 >= v["moves"].as_i64().unwrap()
            && guards.iter().all(|g| g["switched"] == true),
        "{}",
        v["switch_guards"]
    );
    assert_spread(&client, &v, &nodes).await;
    // Drained: the coordinator holds no shard of a distributed table.
    let coordinator = &v["after"][0];
    assert_eq!(coordinator["should_have_shards"], false, "{}", v["after"]);
    assert_eq!(coordinator["shards"], 0, "{}", v["after"]);
    // The application's three phases, and the report's files.
    let phases: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["before", "scale-out", "after"]);
    for f in ["report.json", "report.md", "latency.svg", "signals.svg"] {
        assert!(report.join(f).exists(), "{f}");
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("# shardready scale-out") && md.contains("| scale-out |"),
        "{md}"
    );
    // --tune changed wal_retrieve_retry_interval for the duration only.
    assert_eq!(v["tuned"].as_array().unwrap().len(), 3, "{}", v["tuned"]);
    for sb in c.sandbox().nodes() {
        let n = Target::parse(&sb.url()).unwrap().connect().await.unwrap();
        let r = n
            .query_one("SHOW wal_retrieve_retry_interval", &[])
            .await
            .unwrap();
        assert_eq!(r.get::<_, String>(0), "5s");
    }
    // status says it is done; a rerun has nothing to do and exits 0.
    let st = json(&common::run_on(&c.url(), &["status", "--format", "json"]));
    assert_eq!(st["scale_out"]["phase"], "done", "{}", st["scale_out"]);
    let mut rerun = vec!["scale-out", "--add"];
    rerun.extend(nodes.iter().map(String::as_str));
    rerun.extend(["--drain-coordinator", "--format", "json"]);
    let again = json(&common::run_on(&c.url(), &rerun));
    assert_eq!(again["already_done"], true, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_killed_during_the_rebalance_finishes_on_rerun() {
    let test = "scale_out_killed_during_the_rebalance_finishes_on_rerun";
    let Some((c, t, nodes)) = distributed_single_node(test).await else {
        return;
    };
    let client = t.connect().await.unwrap();
    // Without --tune each logical move waits for the replication workers'
    // 5 s retry interval: time to kill it in the middle. The move in flight
    // goes with it (the server notices the client gone within a second).
    let mut cmd = common::shardready();
    cmd.env("DATABASE_URL", c.url())
        .args(["scale-out", "--add"])
        .args(&nodes)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    loop {
        // A shard group on a new node: a move finished.
        let moved = common::scalar_i64(
            &client,
            "SELECT count(*) FROM citus_shards WHERE citus_table_type = 'distributed' \
              AND nodeport <> current_setting('port')::int",
        )
        .await;
        if moved >= 1 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no move finished in 2 minutes"
        );
        assert!(child.try_wait().unwrap().is_none(), "scale-out ended early");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    child.kill().unwrap(); // SIGKILL, most likely in the middle of the next move
    child.wait().unwrap();
    let st = json(&common::run_on(&c.url(), &["status", "--format", "json"]));
    assert_eq!(
        st["scale_out"]["phase"], "rebalancing",
        "{}",
        st["scale_out"]
    );
    let left = common::scalar_i64(
        &client,
        "SELECT count(*) FROM get_rebalance_table_shards_plan()",
    )
    .await;
    assert!(left > 0, "the kill came too late: nothing left to move");
    // The rerun, without --add, finishes what was begun.
    let v = json(&common::run_on(
        &c.url(),
        &["scale-out", "--format", "json"],
    ));
    assert_eq!(v["resumed"], true, "{v}");
    assert_spread(&client, &v, &nodes).await;
    let st = json(&common::run_on(&c.url(), &["status", "--format", "json"]));
    assert_eq!(st["scale_out"]["phase"], "done", "{}", st["scale_out"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_refuses_missing_prerequisites_before_anything_changes() {
    let test = "scale_out_refuses_missing_prerequisites_before_anything_changes";
    let Some((c, t, nodes)) = distributed_single_node(test).await else {
        return;
    };
    let client = t.connect().await.unwrap();
    // Node 1 cannot decode logically; node 2 has no Citus in the database;
    // a third address answers nothing.
    let spare = c.sandbox().nodes();
    let n1 = Target::parse(&spare[0].url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    n1.batch_execute("ALTER SYSTEM SET wal_level = replica")
        .await
        .unwrap();
    drop(n1);
    spare[0].restart("fast").unwrap();
    let n2 = Target::parse(&spare[1].url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    n2.batch_execute("DROP EXTENSION citus").await.unwrap();
    let closed = format!("127.0.0.1:{}", shardready::sandbox::free_port().unwrap());
    let mut args = vec![
        "scale-out",
        "--add",
        nodes[0].as_str(),
        nodes[1].as_str(),
        closed.as_str(),
    ];
    for check in [true, false] {
        if check {
            args.push("--check");
        }
        let out = common::run_on(&c.url(), &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("nothing was changed"), "{text}");
        assert!(
            text.contains(&format!("node {}: wal_level is 'replica'", nodes[0]))
                && text.contains("ALTER SYSTEM SET wal_level = logical"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "node {}: Citus is loaded but not created",
                nodes[1]
            )) && text.contains("CREATE EXTENSION citus"),
            "{text}"
        );
        assert!(
            text.contains(&format!("{closed}: cannot connect from here")),
            "{text}"
        );
        args.retain(|a| *a != "--check");
    }
    // Nothing changed: one node, no state, the shards where they were.
    assert_eq!(nodes_in_cluster(&client).await, 1);
    assert_eq!(
        common::scalar_i64(
            &client,
            "SELECT count(*) FROM pg_class WHERE oid = to_regclass('shardready.scale_out')"
        )
        .await,
        0
    );
    let st = json(&common::run_on(&c.url(), &["status", "--format", "json"]));
    assert!(st["scale_out"].is_null(), "{}", st["scale_out"]);
}

/// A logical shard move (like the copy of a reference table to a new
/// node) ends like a concurrent distribution: Citus blocks
/// the shard group's writes, reads the source's `pg_current_wal_lsn()` and
/// waits for its subscription to reach it. A write committed
/// asynchronously inside that block can lie beyond the position and be
/// left behind on the old node; the WAL writer here sleeps 10 s, so it
/// would be. Under the commit guard every committed row is there after the
/// scale-out, the one committed inside the block included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_committed_asynchronously_during_a_move_is_kept() {
    let test = "a_write_committed_asynchronously_during_a_move_is_kept";
    let settings = vec![
        ("wal_writer_delay".to_string(), "10s".to_string()),
        ("wal_writer_flush_after".to_string(), "0".to_string()),
    ];
    let Some((c, t)) = common::citus_single(test, 1, settings) else {
        return;
    };
    let admin = t.connect().await.unwrap();
    shardready::db::exec_script(
        &admin,
        "CREATE TABLE plans (plan_id int PRIMARY KEY, name text);
         INSERT INTO plans VALUES (1, 'free'), (2, 'paid');
         SELECT create_reference_table('plans');
         CREATE TABLE accounts (account_id bigint PRIMARY KEY, name text,
                                plan_id int NOT NULL DEFAULT 1);
         CREATE TABLE projects (account_id bigint NOT NULL REFERENCES accounts,
                                id bigint, PRIMARY KEY (account_id, id));
         SELECT create_distributed_table('accounts', 'account_id', shard_count := 4);
         SELECT create_distributed_table('projects', 'account_id', colocate_with := 'accounts');
         ALTER TABLE accounts ADD FOREIGN KEY (plan_id) REFERENCES plans;
         INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 200) g;
         INSERT INTO projects SELECT 1 + g % 200, g FROM generate_series(1, 2000) g;",
    )
    .await
    .unwrap();
    // The application: an account and a project every 20 ms, committed
    // asynchronously; the ids it saw committed.
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
                for sql in [
                    "INSERT INTO accounts VALUES ($1, 'new')",
                    "INSERT INTO projects VALUES ($1, $1)",
                ] {
                    let r = app.execute(sql, &[&id]).await;
                    assert!(r.is_ok(), "the application's write failed: {r:?}");
                }
                committed.push(id);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            committed
        })
    };
    let node = c.sandbox().node_addresses().remove(0);
    let dir = common::temp_dir();
    let log = dir.path().join("stderr");
    let child = common::shardready()
        .args(["scale-out", "--add", &node, "--tune", "--format", "json"])
        .env("DATABASE_URL", c.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let said = || {
        format!(
            "; scale-out said:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    // Once the first group of accounts is replicated (its slot made; the
    // reference table's copy comes before), a write to it stays open across
    // Citus's block and commits asynchronously inside it.
    common::wait_until(
        &admin,
        "SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name LIKE 'citus_shard_move_slot_%') \
            AND EXISTS (SELECT FROM get_rebalance_progress() p \
                          JOIN pg_dist_partition d ON d.logicalrelid = p.table_name \
                         WHERE p.progress = 1 AND d.partmethod = 'h')",
        TWO_MINUTES,
        "a shard group moving",
        &said,
    )
    .await;
    let late_id: i64 = admin
        .query_one(
            "SELECT g FROM generate_series(-100000::int8, -1) g, get_rebalance_progress() p \
              JOIN pg_dist_shard s ON s.shardid = p.shardid \
              JOIN pg_dist_shard a ON a.logicalrelid = 'accounts'::regclass \
                   AND a.shardminvalue = s.shardminvalue \
              WHERE p.progress = 1 AND get_shard_id_for_distribution_column('accounts', g) = a.shardid \
              LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let late = common::asynchronous_session(&t).await;
    late.batch_execute("BEGIN").await.unwrap();
    late.execute("INSERT INTO accounts VALUES ($1, 'late')", &[&late_id])
        .await
        .unwrap();
    common::wait_until(
        &admin,
        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE '%citus_move_shard_placement%' \
            AND wait_event_type = 'Lock' AND wait_event = 'advisory' \
            AND application_name <> 'shardready-switch-guard')",
        TWO_MINUTES,
        "Citus blocks the group's writes",
        &said,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    late.batch_execute("COMMIT").await.unwrap();
    let out = child.wait_with_output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let committed = writer.await.unwrap();
    eprintln!("{}", std::fs::read_to_string(&log).unwrap());
    let v = json(&out);
    assert_eq!(
        common::scalar_i64(
            &admin,
            &format!("SELECT count(*) FROM accounts WHERE account_id = {late_id}")
        )
        .await,
        1,
        "the write committed inside the block is kept"
    );
    assert!(committed.len() > 10, "{}", committed.len());
    for table in ["accounts", "projects"] {
        let present: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE account_id = ANY($1)"),
                &[&committed],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            present,
            committed.len() as i64,
            "every committed write to {table} is there"
        );
    }
    // The reference table was copied to the new node first, and each
    // move's two shards, under the guard.
    let guards = v["switch_guards"].as_array().unwrap();
    let (copies, moves): (Vec<_>, Vec<_>) = guards.iter().partition(|g| g["table"] == "plans");
    assert!(
        copies.len() == 1
            && moves.len() as i64 >= v["moves"].as_i64().unwrap()
            && guards.iter().all(|g| g["switched"] == true)
            && moves.iter().all(|g| g["shards"] == 2),
        "{}",
        v["switch_guards"]
    );
    assert_eq!(
        common::scalar_i64(
            &admin,
            "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid) \
              WHERE s.logicalrelid = 'plans'::regclass",
        )
        .await,
        2
    );
    assert!(
        guards
            .iter()
            .any(|g| g["writers_waited_for"].as_i64().unwrap() >= 1
                || g["held_ms"].as_f64().unwrap() >= 100.0),
        "{}",
        v["switch_guards"]
    );
    // After each switch the guard woke Citus's catch-up check (rather than
    // leave it to a second's sleep), and nothing committed was lost.
    assert!(
        guards
            .iter()
            .map(|g| g["wakes"].as_u64().unwrap())
            .sum::<u64>()
            >= 1,
        "{}",
        v["switch_guards"]
    );
}

const TWO_MINUTES: std::time::Duration = std::time::Duration::from_secs(120);

/// An application that suffers for a while, then recovers: each
/// transaction slow until `calm_at`.
struct Suffers {
    calm_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl shardready::apply::Pressure for Suffers {
    fn slow_since(&self, _from: std::time::Instant, _slow_ms: f64) -> Option<(u64, u64)> {
        let mut calm_at = self.calm_at.lock().unwrap();
        // Suffering starts with the first look and lasts 4 s.
        let at = *calm_at
            .get_or_insert_with(|| std::time::Instant::now() + std::time::Duration::from_secs(4));
        Some(if std::time::Instant::now() < at {
            (100, 50)
        } else {
            (100, 0)
        })
    }
    fn holding(
        &self,
        _from: std::time::Instant,
        slow_ms: f64,
    ) -> Option<shardready::apply::Holding> {
        Some(shardready::apply::Holding {
            signal: "application latency",
            why: format!("the application's transactions over {slow_ms:.0} ms"),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_governor_stops_the_rebalance_while_the_application_suffers() {
    let test = "the_governor_stops_the_rebalance_while_the_application_suffers";
    let Some((_c, t, nodes)) = distributed_single_node(test).await else {
        return;
    };
    let opts = shardready::citus::scale::ScaleOptions {
        add: nodes.iter().map(|n| n.parse().unwrap()).collect(),
        tune: true,
        ..Default::default()
    };
    let session = shardready::citus::lock(t.connect().await.unwrap())
        .await
        .unwrap();
    // The first move waits 12 s for this lock (a move takes the tables' ROW
    // EXCLUSIVE): in flight when the governor first looks, after 5 s.
    let holder = t.connect().await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE orders IN SHARE MODE")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(12)).await;
        holder.batch_execute("COMMIT").await.unwrap();
    });
    let suffers = Suffers {
        calm_at: std::sync::Mutex::new(None),
    };
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let r = shardready::citus::scale::scale_out(
        &session,
        &t,
        &opts,
        &[&suffers],
        std::time::Instant::now(),
        &|s| lines.lock().unwrap().push(s.to_string()),
    )
    .await
    .unwrap();
    release.await.unwrap();
    let lines = lines.into_inner().unwrap().join("\n");
    // Stopped once while it suffered, started again once calm, finished.
    assert_eq!(r.pauses.len(), 1, "{lines}");
    assert!(r.pauses[0].why.contains("over 200 ms"), "{:?}", r.pauses);
    assert!(
        lines.contains("rebalance stopped: the application suffers")
            && lines.contains("calm again: starting the rebalance again"),
        "{lines}"
    );
    // The move in flight when it stopped was cancelled and made again.
    assert!(
        lines.contains("the move in flight was cancelled"),
        "{lines}"
    );
    assert!(r.moves >= 4, "{lines}");
    assert!(
        r.switch_guards.len() as i64 >= r.moves && r.switch_guards.iter().all(|g| g.switched),
        "every move switched under the commit guard: {:?}",
        r.switch_guards
    );
    assert_eq!(
        common::scalar_i64(
            &session,
            "SELECT count(*) FROM get_rebalance_table_shards_plan()"
        )
        .await,
        0
    );
}

/// Without Citus (always run): scale-out says what it needs instead of
/// failing somewhere inside, and a bad node address is refused by its
/// reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_citus_scale_out_says_it_needs_a_coordinator() {
    let (c, _t) = common::cluster();
    for args in [
        vec!["scale-out", "--add", "127.0.0.1:6432", "--check"],
        vec!["scale-out", "--add", "127.0.0.1:6432"],
    ] {
        let out = common::run_on(&c.url(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is not a Citus coordinator") && err.contains("--db"),
            "{err}"
        );
    }
    let out = common::run_on(&c.url(), &["scale-out", "--add", "worker-1:port"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`port` is not a port"), "{err}");
}

/// Tenant keys of every type — uuid, text, numeric, int4 — are prepared
/// (a child without the column gets it, backfilled), distributed, verified
/// and scaled out with shardready's commands only: every check that names
/// a tenant writes it as the column's own type reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_keys_of_every_type_are_prepared_distributed_and_scaled_out() {
    let test = "tenant_keys_of_every_type_are_prepared_distributed_and_scaled_out";
    for (ty, key) in [
        ("uuid", "md5(g::text)::uuid"),
        ("text", "'org-' || g"),
        ("numeric", "g * 1.5"),
        ("int4", "g"),
    ] {
        let Some((c, t)) = common::citus_single(test, 1, Vec::new()) else {
            return;
        };
        let url = c.url();
        let client = t.connect().await.unwrap();
        shardready::db::exec_script(
            &client,
            &format!(
                "CREATE TABLE orgs (org_id {ty} PRIMARY KEY, name text);
                 CREATE TABLE projects (project_id bigint PRIMARY KEY,
                     org_id {ty} NOT NULL REFERENCES orgs, name text);
                 CREATE TABLE tasks (task_id bigint PRIMARY KEY,
                     project_id bigint NOT NULL REFERENCES projects, title text);
                 INSERT INTO orgs SELECT {key}, 'org ' || g FROM generate_series(1, 8) g;
                 INSERT INTO projects SELECT p, o.org_id, 'p' || p
                   FROM generate_series(1, 80) p,
                   LATERAL (SELECT org_id FROM orgs ORDER BY org_id OFFSET p % 8 LIMIT 1) o;
                 INSERT INTO tasks SELECT g, 1 + g % 80, 't' || g FROM generate_series(1, 800) g;"
            ),
        )
        .await
        .unwrap();
        let run = |args: &[&str]| {
            let out = common::run_on(&url, args);
            assert!(
                out.status.success(),
                "{ty}: {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            out
        };
        run(&["apply", "--tenant-column", "org_id"]);
        assert_eq!(
            common::scalar_i64(
                &client,
                "SELECT count(*) FROM tasks t JOIN projects p USING (project_id) \
                 WHERE t.org_id IS DISTINCT FROM p.org_id"
            )
            .await,
            0,
            "{ty}: every task has its project's tenant"
        );
        run(&["distribute", "--blocking", "--shard-count", "4"]);
        run(&["verify"]);
        let nodes = c.sandbox().node_addresses();
        let out = run(&["scale-out", "--add", &nodes[0], "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            v["routing"].as_str().unwrap().contains("Task Count: 1"),
            "{ty}: {}",
            v["routing"]
        );
        assert_eq!(
            common::scalar_i64(&client, "SELECT count(*) FROM tasks").await,
            800,
            "{ty}"
        );
        drop(c);
    }
}

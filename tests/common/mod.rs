//! Shared fixtures for the integration tests: a throwaway cluster per test,
//! optionally with the Tailspin tables loaded at a small scale.
#![allow(dead_code)]

use shardready::conn::Target;
use shardready::sandbox::TestCluster;
use tokio_postgres::Client;

/// A fresh cluster and a target for its `postgres` database.
pub fn cluster() -> (TestCluster, Target) {
    let c = TestCluster::start().expect("a throwaway cluster starts");
    let t = Target::parse(&c.url()).expect("sandbox URL parses");
    (c, t)
}

/// A local Citus cluster (a coordinator and `workers` workers, started by
/// the sandbox code) and a target for the coordinator; None, after printing
/// that the test is skipped and why, when Citus is not installed for the
/// server binaries the tests use.
pub fn citus_cluster(test: &str, workers: u16) -> Option<(TestCluster, Target)> {
    if !citus_here(test) {
        return None;
    }
    let c = TestCluster::start_citus(workers).expect("a throwaway Citus cluster starts");
    let t = Target::parse(&c.url()).expect("sandbox URL parses");
    Some((c, t))
}

/// Whether a test must fail, not skip, when what it needs (Citus, the
/// Pagila dumps in shared/) is missing: under CI (`CI` set and not
/// `false`/`0`) or with `SHARDREADY_REQUIRE_CITUS=1`.
pub fn required() -> bool {
    let set = |v: &str| {
        std::env::var(v)
            .map(|x| !x.is_empty() && x != "0" && !x.eq_ignore_ascii_case("false"))
            .unwrap_or(false)
    };
    set("CI") || set("SHARDREADY_REQUIRE_CITUS")
}

/// `test` cannot run because `what` is missing: says it is skipped and why,
/// or, where it is required ([`required`]), fails with what to do.
pub fn skip_or_fail(test: &str, what: &str) {
    assert!(
        !required(),
        "{test}: {what}, and under CI (or SHARDREADY_REQUIRE_CITUS=1) this test must run: \
         for Citus, `make deps CITUS_SOURCE=../shared/citus/citus-13.2.2.tar.gz`; for the \
         Pagila dumps, shared/ beside the checkout"
    );
    eprintln!("{test}: skipped: {what}");
}

/// Whether Citus is installed for the server binaries the tests use; when
/// it is not, says that `test` is skipped and why (fails under CI).
pub fn citus_here(test: &str) -> bool {
    let pg_bin = std::env::var_os("SHARDREADY_PG_BIN").map(std::path::PathBuf::from);
    let here = shardready::sandbox::citus_installed(pg_bin.as_deref());
    if !here {
        skip_or_fail(
            test,
            "Citus is not installed for these PostgreSQL binaries (no citus.so in their library directory)",
        );
    }
    here
}

/// The seed's tables loaded at `scale` into `t` and prepared by `apply`
/// (quietly, with a short trigger window): ready to distribute.
pub async fn prepared_tailspin(t: &Target, scale: f64) {
    let mut client = connect(t).await;
    shardready::ingest::create_tailspin_schema(&client, true)
        .await
        .unwrap();
    shardready::ingest::load_tailspin(&mut client, None, scale, 42, false)
        .await
        .unwrap();
    shardready::apply::apply(
        t,
        &shardready::apply::ApplyOptions {
            progress: false,
            replan: true,
            trigger_window: std::time::Duration::from_millis(300),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
}

/// A single-node Citus cluster (the coordinator holds the shards, like the
/// seed's) with `nodes` spare Citus nodes beside it, every server with
/// `settings`; None, after saying the test is skipped and why, without
/// Citus.
pub fn citus_single(
    test: &str,
    nodes: u16,
    settings: Vec<(String, String)>,
) -> Option<(TestCluster, Target)> {
    if !citus_here(test) {
        return None;
    }
    let c = TestCluster::start_citus_single(nodes, settings)
        .expect("a throwaway single-node Citus cluster starts");
    let t = Target::parse(&c.url()).expect("sandbox URL parses");
    Some((c, t))
}

/// A fresh cluster whose database `src` holds Tailspin at `scale`, to copy
/// for each trial with [`copy_of`].
pub async fn tailspin_template(scale: f64) -> TestCluster {
    let (cl, _t) = cluster();
    let src = Target::parse(&cl.create_database("src").unwrap()).unwrap();
    let mut c = connect(&src).await;
    shardready::ingest::create_tailspin_schema(&c, false)
        .await
        .unwrap();
    shardready::ingest::load_tailspin(&mut c, None, scale, 42, false)
        .await
        .unwrap();
    cl
}

/// A new database `db` copied from `src` (CREATE DATABASE … TEMPLATE: a
/// file copy, no reload); its URL.
pub fn copy_of(cl: &TestCluster, db: &str) -> String {
    cl.sandbox()
        .psql_command(&format!("CREATE DATABASE {db} TEMPLATE src"))
        .unwrap();
    cl.sandbox().url_for(db)
}

/// A fresh cluster where the application's statements are counted
/// (pg_stat_statements, which the sandbox preloads, created), with the
/// seed's tables loaded at `scale`; a connection to it.
pub async fn tailspin_with_statements(scale: f64) -> (TestCluster, Target, Client) {
    let (c, t) = cluster();
    let mut client = connect(&t).await;
    client
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    shardready::ingest::create_tailspin_schema(&client, false)
        .await
        .unwrap();
    shardready::ingest::load_tailspin(&mut client, None, scale, 42, false)
        .await
        .unwrap();
    (c, t, client)
}

/// A fresh cluster with the seed's schema and a generated load at `scale`.
pub async fn tailspin(scale: f64) -> (TestCluster, Target) {
    let (c, t) = cluster();
    let mut client = t.connect().await.expect("connect");
    shardready::ingest::create_tailspin_schema(&client, false)
        .await
        .expect("schema");
    shardready::ingest::load_tailspin(&mut client, None, scale, 42, false)
        .await
        .expect("load");
    (c, t)
}

pub async fn connect(t: &Target) -> Client {
    t.connect().await.expect("connect")
}

pub async fn scalar_i64(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Content of every row, without the new column.
const CHECKSUM: &str = "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
  SELECT 's' || s.store_id || s.name || coalesce(s.category, '') AS x FROM stores s
  UNION ALL SELECT 'p' || p.product_id || p.store_id || p.name || p.price FROM products p
  UNION ALL SELECT 'o' || o.order_id || o.store_id || o.status || o.ordered_at FROM orders o
  UNION ALL SELECT 'l' || l.line_item_id || l.product_id || l.order_id || l.quantity || l.line_amount FROM line_items l
) t";

pub async fn checksum(c: &Client) -> String {
    c.query_one(CHECKSUM, &[]).await.unwrap().get(0)
}

/// The checksum of the rows that existed at a point (new orders from the
/// workload left out): ids up to the maxima taken then.
pub async fn checksum_upto(c: &Client, max: (i64, i64)) -> String {
    let sql = CHECKSUM
        .replace(
            "FROM orders o",
            &format!("FROM orders o WHERE o.order_id <= {}", max.0),
        )
        .replace(
            "FROM line_items l",
            &format!("FROM line_items l WHERE l.line_item_id <= {}", max.1),
        );
    c.query_one(&sql, &[]).await.unwrap().get(0)
}

pub async fn maxima(c: &Client) -> (i64, i64) {
    (
        scalar_i64(c, "SELECT max(order_id) FROM orders").await,
        scalar_i64(c, "SELECT max(line_item_id) FROM line_items").await,
    )
}

/// Waits until no `shardready apply` session is left on the server (a
/// killed apply's backend goes within client_connection_check_interval).
pub async fn wait_apply_gone(c: &Client) {
    let start = std::time::Instant::now();
    while scalar_i64(
        c,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shardready-apply'",
    )
    .await
        > 0
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(15),
            "apply backend lingers"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The shardready binary, ready for arguments: the one runner every test
/// uses.
pub fn shardready() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_shardready"))
}

/// Runs `shardready ARGS --db URL` (DATABASE_URL unset, so only `url`
/// counts) and returns what it did.
pub fn run_on<S: AsRef<std::ffi::OsStr>>(url: &str, args: &[S]) -> std::process::Output {
    shardready()
        .args(args)
        .args(["--db", url])
        .env_remove("DATABASE_URL")
        .output()
        .expect("shardready runs")
}

/// `shardready ARGS --db URL` started in the background, its output read
/// as it comes (a full pipe would stop it).
pub struct Running {
    ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
    done: std::sync::mpsc::Receiver<std::io::Result<std::process::Output>>,
}

/// Starts `shardready ARGS --db URL` (DATABASE_URL unset) in the
/// background.
pub fn spawn_on<S: AsRef<std::ffi::OsStr>>(url: &str, args: &[S]) -> Running {
    let child = shardready()
        .args(args)
        .args(["--db", url])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shardready starts");
    let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, done) = std::sync::mpsc::channel();
    let flag = ended.clone();
    std::thread::spawn(move || {
        let out = child.wait_with_output();
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = tx.send(out);
    });
    Running { ended, done }
}

impl Running {
    /// Whether it still runs.
    pub fn running(&self) -> bool {
        !self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits for it to end (at most `limit`): what it did.
    pub fn finished(self, limit: std::time::Duration) -> std::process::Output {
        self.done
            .recv_timeout(limit)
            .expect("shardready ends in time")
            .expect("shardready's output")
    }
}

/// A temporary directory under /tmp, which a server running as another OS
/// user can read; removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("shardready-test-")
        .tempdir_in("/tmp")
        .expect("a temporary directory");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("the server user may enter it");
    dir
}

/// The scenario cleanup check, for the end of every finished preparation:
/// no helper shardready made is left behind — no sync trigger, no function
/// or sequence in the `shardready` schema (its state tables stay), no
/// `*_shardready` index or constraint, no `*_not_null` CHECK of the NOT
/// NULL step, no table with autovacuum held off.
pub async fn assert_no_helpers_left(c: &Client) {
    let left: Vec<String> = c
        .query(
            "SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass FROM pg_trigger \
               WHERE NOT tgisinternal AND tgname LIKE 'shardready%' \
             UNION ALL SELECT 'function ' || p.oid::regprocedure FROM pg_proc p \
               JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'shardready' \
             UNION ALL SELECT 'sequence ' || c.oid::regclass FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = 'shardready' AND c.relkind = 'S' \
             UNION ALL SELECT 'index ' || c.oid::regclass FROM pg_class c \
               WHERE c.relkind IN ('i', 'I') AND c.relname LIKE '%\\_shardready' \
             UNION ALL SELECT 'constraint ' || conname || ' on ' || conrelid::regclass \
               FROM pg_constraint WHERE conname LIKE '%\\_shardready' \
                  OR (contype = 'c' AND conname LIKE '%\\_not\\_null') \
             UNION ALL SELECT 'autovacuum held off ' || c.oid::regclass FROM pg_class c \
               WHERE c.reloptions @> ARRAY['autovacuum_enabled=false']",
            &[],
        )
        .await
        .expect("the cleanup query runs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(left.is_empty(), "helpers left behind: {left:?}");
}

/// Apply's options for tests: quiet, short waits for the application.
pub fn quiet() -> shardready::apply::ApplyOptions {
    shardready::apply::ApplyOptions {
        progress: false,
        trigger_window: std::time::Duration::from_millis(500),
        await_app: std::time::Duration::from_secs(2),
        ..Default::default()
    }
}

/// True once `sql` (one boolean) is; panics after `limit` saying `what`
/// (and whatever else `context` adds).
pub async fn wait_until(
    c: &Client,
    sql: &str,
    limit: std::time::Duration,
    what: &str,
    context: &dyn Fn() -> String,
) {
    let start = std::time::Instant::now();
    loop {
        if c.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}{}",
            context()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits (30 s at most) until pg_stat_statements has counted `calls` calls
/// of the statements whose text is LIKE `like`.
pub async fn wait_for_calls(c: &Client, like: &str, calls: i64) {
    wait_until(
        c,
        &format!(
            "SELECT coalesce(sum(calls), 0) >= {calls} FROM pg_stat_statements \
             WHERE query LIKE '{}'",
            like.replace('\'', "''")
        ),
        std::time::Duration::from_secs(30),
        &format!("pg_stat_statements counts {calls} calls of {like}"),
        &String::new,
    )
    .await;
}

/// A session of the application that commits asynchronously
/// (`synchronous_commit = off`): what the commit guard exists for.
pub async fn asynchronous_session(t: &Target) -> Client {
    let app = t.connect().await.unwrap();
    app.batch_execute("SET synchronous_commit = off")
        .await
        .unwrap();
    app
}

/// What [`send_repeatedly`] started: its stop flag, and its task, which
/// returns how many calls failed and each call's start and latency (ms).
pub type Sending = (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<(u64, Vec<(std::time::Instant, f64)>)>,
);

/// The application sending one statement over and over: `sql` (prepared,
/// one `$1`: an id from 1 to `max`) every `every`, until stopped.
pub fn send_repeatedly(
    t: &Target,
    sql: &'static str,
    max: i64,
    every: std::time::Duration,
) -> Sending {
    use std::sync::atomic::Ordering;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let target = t.with_application_name("the-application");
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let c = target.connect().await.unwrap();
        let st = c.prepare(sql).await.unwrap();
        let (mut i, mut errors, mut calls) = (0_i64, 0_u64, Vec::new());
        while !flag.load(Ordering::SeqCst) {
            i += 1;
            let started = std::time::Instant::now();
            if c.execute(&st, &[&(1 + (i * 7919) % max)]).await.is_err() {
                errors += 1;
            }
            calls.push((started, started.elapsed().as_secs_f64() * 1e3));
            tokio::time::sleep(every).await;
        }
        (errors, calls)
    });
    (stop, task)
}

/// Stops what [`send_repeatedly`] started; the calls that failed.
pub async fn stop_sending(app: Sending) -> u64 {
    stop_sending_timed(app).await.0
}

/// Stops what [`send_repeatedly`] started; the calls that failed, and
/// each call's start and latency (ms).
pub async fn stop_sending_timed((stop, task): Sending) -> (u64, Vec<(std::time::Instant, f64)>) {
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    task.await.unwrap()
}

/// The calls' p50 and p99 in each phase: `phases` are (name, start), each
/// lasting until the next one starts (the last until the end), e.g.
/// `before: 210 calls, p50 0.21 ms, p99 0.80 ms; during: …`.
pub fn latency_by_phase(
    calls: &[(std::time::Instant, f64)],
    phases: &[(&str, std::time::Instant)],
) -> String {
    let mut out = Vec::new();
    for (i, (name, from)) in phases.iter().enumerate() {
        let to = phases.get(i + 1).map(|(_, t)| *t);
        let mut v: Vec<f64> = calls
            .iter()
            .filter(|(at, _)| at >= from && to.is_none_or(|to| *at < to))
            .map(|(_, ms)| *ms)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |p: f64| {
            v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
        };
        out.push(match (at(0.5), at(0.99)) {
            (Some(p50), Some(p99)) => {
                format!(
                    "{name}: {} calls, p50 {p50:.2} ms, p99 {p99:.2} ms",
                    v.len()
                )
            }
            _ => format!("{name}: no call"),
        });
    }
    out.join("; ")
}

//! The database layer against a real cluster: the lock-timeout retry gives
//! up by the policy and succeeds once the lock is gone, a terminated
//! session is recognised as a disconnect from its SQLSTATE, the apply
//! session holds the advisory lock, and scripts run one statement per query.

mod common;

use std::time::Duration;

use common::{cluster, connect, scalar_i64};
use shardready::db::{self, LockMode, LockPolicy, RetryError, Session};

fn policy(attempts: u32) -> LockPolicy {
    LockPolicy {
        lock_timeout: Duration::from_millis(20),
        max_wait: None,
        max_attempts: Some(attempts),
        statement_timeout: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_retried_until_the_policy_gives_up_then_the_statement_runs() {
    let (_c, t) = cluster();
    let setup = connect(&t).await;
    setup
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let holder = connect(&t).await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .batch_execute("LOCK TABLE t IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let c = connect(&t).await;
    let alter = vec!["ALTER TABLE t ADD COLUMN x int".to_string()];
    match db::run_txn(&c, &alter, LockMode::Brief, &policy(3)).await {
        Err(RetryError::GaveUp { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("expected to give up after 3 lock timeouts, got {other:?}"),
    }
    // Nothing half-done: the session is usable and the column absent.
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'x'"
        )
        .await,
        0
    );
    // The lock goes away while the statement is being retried: it runs.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        holder.batch_execute("COMMIT").await.unwrap();
    });
    let stats = db::run_txn(&c, &alter, LockMode::Brief, &policy(1000))
        .await
        .unwrap();
    release.await.unwrap();
    assert!(stats.lock_timeouts >= 1, "{stats:?}");
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'x'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_session_is_a_disconnect_and_a_bad_statement_is_not() {
    let (_c, t) = cluster();
    let victim = connect(&t).await;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let e = victim
        .batch_execute("SELECT nosuchcolumn")
        .await
        .unwrap_err();
    assert!(!db::is_disconnect(&e), "{e}");
    let killer = connect(&t).await;
    killer
        .execute("SELECT pg_catalog.pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = victim.batch_execute("SELECT 1").await.unwrap_err();
    assert!(db::is_disconnect(&e), "{e}");
    let wrapped = db::DbError::new("probing", e);
    assert!(wrapped.is_disconnect());
    assert!(wrapped.to_string().starts_with("probing: "), "{wrapped}");
    // The driver's error stays reachable as the source.
    assert!(std::error::Error::source(&wrapped).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_session_holds_the_advisory_lock() {
    let (_c, t) = cluster();
    let first = Session::lock(connect(&t).await).await.unwrap();
    match Session::lock(connect(&t).await).await {
        Err(db::LockError::Held { holder }) => assert!(holder.contains("pid"), "{holder}"),
        Err(e) => panic!("expected the lock to be held, got {e}"),
        Ok(_) => panic!("a second session got the lock"),
    }
    first.unlock().await;
    assert!(Session::lock(connect(&t).await).await.is_ok());
}

/// A run killed in a long statement (kill -9: its socket closes, its
/// backend runs on) does not keep a rerun out: the session it held noticed
/// the lost client within client_connection_check_interval, and the rerun
/// waited for that instead of reporting a live apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runs_lock_goes_with_its_long_statement() {
    let (_c, t) = cluster();
    let (client, connection) = t.config.connect(tokio_postgres::NoTls).await.unwrap();
    let socket = tokio::spawn(connection);
    let killed = Session::lock(client).await.unwrap();
    let long = tokio::spawn(async move {
        let _ = killed.batch_execute("SELECT pg_sleep(600)").await;
        killed
    });
    let watch = connect(&t).await;
    let running = "SELECT count(*) FROM pg_stat_activity \
                   WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(600)%'";
    while scalar_i64(&watch, running).await == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The process dies: its socket closes, the server is not told.
    socket.abort();
    let started = std::time::Instant::now();
    let rerun = Session::lock(connect(&t).await).await;
    assert!(
        rerun.is_ok(),
        "the rerun takes the lock: {:?}",
        rerun.err().map(|e| e.to_string())
    );
    assert!(
        started.elapsed() < db::HOLDER_GRACE,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        scalar_i64(&watch, running).await,
        0,
        "the long statement was cancelled"
    );
    long.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_runs_one_statement_per_query() {
    let (_c, t) = cluster();
    let c = connect(&t).await;
    db::exec_script(
        &c,
        "CREATE TABLE a (id int);\n-- a comment; with a semicolon\n\
         CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n\
         INSERT INTO a VALUES (1), (2);",
    )
    .await
    .unwrap();
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM a").await, 2);
    assert_eq!(scalar_i64(&c, "SELECT f()::int8").await, 1);
    // A script that fails stops at the failing statement: the earlier ones
    // ran (no implicit transaction around them).
    let e = db::exec_script(
        &c,
        "INSERT INTO a VALUES (3);\nINSERT INTO nosuch VALUES (1);",
    )
    .await
    .unwrap_err();
    let text = shardready::conn::error_text(&e);
    assert!(text.contains("nosuch"), "{text}");
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM a").await, 3);
}

/// A transaction that needs two locks an application transaction takes in
/// the other order: it never waits for one while holding the other, so the
/// application neither deadlocks with it nor waits long, and it still
/// gets both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_taken_first_never_wait_while_holding_one() {
    let (_c, t) = cluster();
    let setup = connect(&t).await;
    setup
        .batch_execute("CREATE TABLE a (id int)")
        .await
        .unwrap();
    setup
        .batch_execute("CREATE TABLE b (id int)")
        .await
        .unwrap();
    // The application: b first, then a, one transaction.
    let app = connect(&t).await;
    app.batch_execute("SET deadlock_timeout = '100ms'")
        .await
        .unwrap();
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute("INSERT INTO b VALUES (1)").await.unwrap();
    let ours = connect(&t).await;
    let locks = vec![
        "LOCK TABLE a IN ACCESS EXCLUSIVE MODE".to_string(),
        "LOCK TABLE b IN ACCESS EXCLUSIVE MODE".to_string(),
    ];
    let work = vec!["INSERT INTO a VALUES (2)".to_string()];
    // A lock timeout far above the deadlock timeout: were it to wait for b
    // while holding a, the application's INSERT INTO a would close a cycle.
    let policy = LockPolicy {
        lock_timeout: Duration::from_secs(3),
        max_wait: Some(Duration::from_secs(30)),
        max_attempts: None,
        statement_timeout: None,
    };
    let run = tokio::spawn(async move {
        let r = db::run_txn_locked(&ours, &locks, &work, &policy).await;
        (ours, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    app.batch_execute("INSERT INTO a VALUES (1)").await.unwrap();
    let app_waited = started.elapsed();
    app.batch_execute("COMMIT").await.unwrap();
    let (ours, r) = run.await.unwrap();
    let stats = r.unwrap();
    assert!(
        stats.lock_timeouts >= 1,
        "a was had, b was busy: rolled back and tried again ({stats:?})"
    );
    assert!(
        app_waited < Duration::from_secs(1),
        "the application waited {app_waited:?}"
    );
    assert_eq!(scalar_i64(&ours, "SELECT count(*) FROM a").await, 2);
    assert_eq!(scalar_i64(&ours, "SELECT count(*) FROM b").await, 1);
}

//! The database layer every command shares: one error type that keeps the
//! driver's error as its source ([`DbError`]), the decision whether an
//! error is a lost connection (from SQLSTATE and the driver, never from
//! message text), the lock policy and the single lock-timeout retry loop
//! ([`retry_on_lock_timeout`]), transactions run one statement per query
//! ([`run_txn`], [`run_bare`]), and the apply session ([`Session`]), a
//! connection that can only be had while it holds apply's advisory lock.
//!
//! One statement per query, everywhere: Citus forwards DDL on distributed
//! tables to its workers as the original query string in a prepared
//! statement, and rejects a string that holds several statements.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use thiserror::Error;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// A database call that failed: what was being done, and the driver's error.
#[derive(Debug, Error)]
#[error("{context}: {}", crate::conn::error_text(.source))]
pub struct DbError {
    pub context: String,
    #[source]
    pub source: tokio_postgres::Error,
}

impl DbError {
    pub fn new(context: impl Into<String>, source: tokio_postgres::Error) -> DbError {
        DbError {
            context: context.into(),
            source,
        }
    }

    /// `map_err(DbError::ctx("cannot read the catalog"))`.
    pub fn ctx(context: &str) -> impl Fn(tokio_postgres::Error) -> DbError + '_ {
        move |e| DbError::new(context, e)
    }

    /// Whether the connection went away (see [`is_disconnect`]).
    pub fn is_disconnect(&self) -> bool {
        is_disconnect(&self.source)
    }
}

/// Whether `e` means the connection is gone — a server restart, a
/// terminated session, a network failure — rather than a statement that
/// failed: the driver says the connection is closed, the error is an I/O
/// error, or its SQLSTATE is of class 08 (connection exception) or
/// 57P01-57P03 (admin/crash shutdown, cannot connect now).
pub fn is_disconnect(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code);
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        if inner.is::<std::io::Error>() {
            return true;
        }
        src = inner.source();
    }
    false
}

/// Whether `e` is a lock timeout (SQLSTATE 55P03).
pub fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// How long a statement may hold up the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Conflicts with application traffic: lock_timeout + retry.
    Brief,
    /// Does not block application reads/writes while it waits or runs
    /// (SHARE UPDATE EXCLUSIVE, CONCURRENTLY): no lock timeout.
    NonBlocking,
}

/// What waiting for locks cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LockStats {
    /// Attempts that hit lock_timeout.
    pub lock_timeouts: u32,
    /// Time spent backing off between attempts.
    pub waited: Duration,
}

impl LockStats {
    pub fn add(&mut self, o: LockStats) {
        self.lock_timeouts += o.lock_timeouts;
        self.waited += o.waited;
    }
}

/// How long a lock may be waited for, and when to give up retrying.
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    pub lock_timeout: Duration,
    /// Give up after this much total waiting for one statement.
    pub max_wait: Option<Duration>,
    /// Give up after this many lock timeouts.
    pub max_attempts: Option<u32>,
    /// Cancel a statement that runs longer (None: no limit).
    pub statement_timeout: Option<Duration>,
}

impl LockPolicy {
    /// `statement_timeout` in milliseconds (0: none).
    pub fn statement_ms(&self) -> u128 {
        self.statement_timeout.map_or(0, |d| d.as_millis().max(1))
    }

    /// `lock_timeout` for a statement of this mode, in milliseconds (0:
    /// none).
    pub fn timeout_ms(&self, mode: LockMode) -> u128 {
        match mode {
            LockMode::Brief => self.lock_timeout.as_millis().max(1),
            LockMode::NonBlocking => 0,
        }
    }
}

/// Why a statement retried under a [`LockPolicy`] did not run.
#[derive(Debug, Error)]
pub enum RetryError {
    #[error("{0}")]
    Failed(#[from] tokio_postgres::Error),
    #[error("gave up after {attempts} lock timeouts ({:.1} s)", waited.as_secs_f64())]
    GaveUp { waited: Duration, attempts: u32 },
}

/// Runs `attempt` until it succeeds, retrying on lock timeouts with
/// exponential backoff (50 ms doubling to 5 s) and full jitter, until the
/// policy's `max_wait` or `max_attempts` is reached. `attempt` must leave
/// the session ready for another try when it fails (roll back what it
/// began). The one retry loop of the code base.
pub async fn retry_on_lock_timeout<T, F, Fut>(
    policy: &LockPolicy,
    mut attempt: F,
) -> Result<(T, LockStats), RetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tokio_postgres::Error>>,
{
    let mut stats = LockStats::default();
    let start = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(v) => return Ok((v, stats)),
            Err(e) if !is_lock_timeout(&e) => return Err(RetryError::Failed(e)),
            Err(_) => {
                stats.lock_timeouts += 1;
                let waited_out = policy.max_wait.is_some_and(|max| start.elapsed() >= max);
                let tried_out = policy
                    .max_attempts
                    .is_some_and(|max| stats.lock_timeouts >= max);
                if waited_out || tried_out {
                    return Err(RetryError::GaveUp {
                        waited: start.elapsed(),
                        attempts: stats.lock_timeouts,
                    });
                }
                let mut pause = Duration::from_micros(
                    rand::thread_rng().gen_range(0..=backoff.as_micros() as u64),
                );
                // Never sleep past max_wait: the last try starts by then,
                // so giving up comes within one lock_timeout of it.
                if let Some(max) = policy.max_wait {
                    pause = pause.min(max.saturating_sub(start.elapsed()));
                }
                tokio::time::sleep(pause).await;
                stats.waited += pause;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The server process behind `client` (`pg_backend_pid()`).
pub async fn backend_pid(client: &Client) -> Result<i32, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await?
        .get(0))
}

/// Sends one statement (never several in one string).
pub async fn exec(client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(sql).await
}

/// Runs `statements` in one transaction, each as its own query between
/// `BEGIN` and `COMMIT`; rolls back when one fails, leaving the session
/// ready for the next query.
pub async fn in_txn<S: AsRef<str>>(
    client: &Client,
    statements: &[S],
) -> Result<(), tokio_postgres::Error> {
    in_txn_at(client, statements).await.map_err(|(_, e)| e)
}

/// [`in_txn`], saying which statement failed (its index; None: BEGIN or
/// COMMIT).
async fn in_txn_at<S: AsRef<str>>(
    client: &Client,
    statements: &[S],
) -> Result<(), (Option<usize>, tokio_postgres::Error)> {
    let r = async {
        exec(client, "BEGIN").await.map_err(|e| (None, e))?;
        for (i, s) in statements.iter().enumerate() {
            exec(client, s.as_ref()).await.map_err(|e| (Some(i), e))?;
        }
        exec(client, "COMMIT").await.map_err(|e| (None, e))
    }
    .await;
    if r.is_err() {
        let _ = exec(client, "ROLLBACK").await;
    }
    r
}

/// The `SET LOCAL`s that open a transaction run under `policy`: the lock
/// timeout of `mode` and the statement timeout.
fn txn_settings(mode: LockMode, policy: &LockPolicy) -> [String; 2] {
    [
        format!("SET LOCAL lock_timeout = '{}ms'", policy.timeout_ms(mode)),
        format!(
            "SET LOCAL statement_timeout = '{}ms'",
            policy.statement_ms()
        ),
    ]
}

/// Runs `statements` in one transaction ([`in_txn`]) after `SET LOCAL
/// lock_timeout` per `mode` and the policy's statement timeout, retried as a whole on
/// lock timeouts.
pub async fn run_txn(
    client: &Client,
    statements: &[String],
    mode: LockMode,
    policy: &LockPolicy,
) -> Result<LockStats, RetryError> {
    let mut all = txn_settings(mode, policy).to_vec();
    all.extend(statements.iter().cloned());
    retry_on_lock_timeout(policy, || in_txn(client, &all))
        .await
        .map(|((), stats)| stats)
}

/// How long a lock taken while others are held may be waited for: long
/// enough for an uncontended lock, far too short for a deadlock detector
/// (PostgreSQL's after `deadlock_timeout`, Citus's distributed one after
/// twice that) to find the wait in a cycle.
pub const GRAB: Duration = Duration::from_millis(1);

/// Runs `statements` in one transaction after taking `locks` (statements
/// that each take one lock and change nothing), so that the transaction
/// never waits for one lock while it holds another: it waits (up to the
/// policy's lock timeout) for one of them, holding nothing, then takes the
/// others within [`GRAB`] each, or rolls back and tries again — then
/// waiting first for the one that was busy. Whatever order an application
/// transaction takes the same objects in, a wait cycle with it lasts at
/// most a millisecond, and no deadlock detector cancels the application's
/// side. The statements then run under the policy's lock timeout; the
/// whole is retried on lock timeouts ([`retry_on_lock_timeout`]).
pub async fn run_txn_locked(
    client: &Client,
    locks: &[String],
    statements: &[String],
    policy: &LockPolicy,
) -> Result<LockStats, RetryError> {
    let [wait, statement_timeout] = txn_settings(LockMode::Brief, policy);
    let grab = format!("SET LOCAL lock_timeout = '{}ms'", GRAB.as_millis());
    let first = std::sync::atomic::AtomicUsize::new(0);
    retry_on_lock_timeout(policy, || {
        let f = first.load(std::sync::atomic::Ordering::Relaxed);
        let mut all = vec![wait.clone(), statement_timeout.clone()];
        // Which of `all` takes which lock.
        let mut lock_at: Vec<(usize, usize)> = Vec::new();
        if !locks.is_empty() {
            lock_at.push((all.len(), f));
            all.push(locks[f].clone());
            if locks.len() > 1 {
                all.push(grab.clone());
                for (i, l) in locks.iter().enumerate().filter(|(i, _)| *i != f) {
                    lock_at.push((all.len(), i));
                    all.push(l.clone());
                }
                all.push(wait.clone());
            }
        }
        all.extend(statements.iter().cloned());
        let first = &first;
        async move {
            in_txn_at(client, &all).await.map_err(|(at, e)| {
                if is_lock_timeout(&e) {
                    if let Some((_, l)) = lock_at.iter().find(|(i, _)| Some(*i) == at) {
                        first.store(*l, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                e
            })
        }
    })
    .await
    .map(|((), stats)| stats)
}

/// Runs a statement that cannot be in a transaction block (CONCURRENTLY,
/// VACUUM) with no lock timeout and the policy's statement timeout,
/// retried on lock timeouts.
pub async fn run_bare(
    client: &Client,
    sql: &str,
    policy: &LockPolicy,
) -> Result<LockStats, RetryError> {
    exec(client, "SET lock_timeout = 0").await?;
    exec(
        client,
        &format!("SET statement_timeout = '{}ms'", policy.statement_ms()),
    )
    .await?;
    retry_on_lock_timeout(policy, || exec(client, sql))
        .await
        .map(|((), stats)| stats)
}

/// Key of the advisory lock held by a running apply.
pub const LOCK_KEY: i64 = 0x5348_4152_4452_4459; // "SHARDRDY"

/// A connection that holds apply's session-level advisory lock: only one
/// apply runs at a time, and a [`Session`] exists only while its lock is
/// held. The lock goes with the connection (or [`Session::unlock`]).
pub struct Session {
    client: Client,
}

/// Why a [`Session`] could not be had.
#[derive(Debug, Error)]
pub enum LockError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("held by {holder}")]
    Held { holder: String },
}

/// The backend that holds the advisory lock.
struct Holder {
    pid: i32,
    application: String,
    from: String,
    /// Running a statement (rather than idle between two).
    active: bool,
}

impl Holder {
    fn describe(&self) -> String {
        format!(
            "pid {} ({}, from {})",
            self.pid, self.application, self.from
        )
    }
}

/// How long [`Session::lock`] waits for a holder that is running a
/// statement: a killed run's backend goes on until the server notices the
/// lost client (within `client_connection_check_interval`, which every
/// session sets) and its statement has rolled back.
pub const HOLDER_GRACE: Duration = Duration::from_secs(15);

/// How long [`Session::lock`] waits for a holder that sits idle: a killed
/// run's backend that was between statements exits as soon as it reads the
/// closed socket, which can be a moment after a rerun that starts at once.
pub const IDLE_GRACE: Duration = Duration::from_secs(1);

impl Session {
    /// Takes the advisory lock on `client`, or says who holds it. A holder
    /// that is running a statement may be the backend of a killed run
    /// (kill -9, a closed terminal) that the server has not yet noticed:
    /// it is waited for up to [`HOLDER_GRACE`], and so is one that cannot be
    /// seen any more (exiting). A holder that sits idle has a live client,
    /// unless it is a killed run's backend about to exit: it is reported
    /// after [`IDLE_GRACE`].
    pub async fn lock(client: Client) -> Result<Session, LockError> {
        // If this process dies, the server notices within a second even
        // while the session waits in a long statement (CREATE INDEX
        // CONCURRENTLY, create_distributed_table_concurrently), cancels it
        // and lets go of the lock, so a rerun can take over (PostgreSQL 14+;
        // older servers keep their default).
        let _ = exec(&client, "SET client_connection_check_interval = '1s'").await;
        let start = Instant::now();
        loop {
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
                .await
                .map_err(DbError::ctx("cannot take the advisory lock"))?
                .get(0);
            if got {
                return Ok(Session { client });
            }
            let holder = Self::holder(&client).await;
            let grace = match &holder {
                Some(h) if !h.active => IDLE_GRACE,
                _ => HOLDER_GRACE,
            };
            if start.elapsed() >= grace {
                let holder = holder
                    .map(|h| h.describe())
                    .unwrap_or_else(|| "another session".into());
                return Err(LockError::Held { holder });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The backend holding the lock, if it can be seen.
    async fn holder(client: &Client) -> Option<Holder> {
        client
            .query_opt(
                "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local'), \
                        a.state = 'active' \
                 FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE l.locktype = 'advisory' AND l.granted \
                   AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
                &[&LOCK_KEY],
            )
            .await
            .ok()
            .flatten()
            .map(|r| Holder {
                pid: r.get(0),
                application: r.get(1),
                from: r.get(2),
                active: r.get::<_, Option<bool>>(3).unwrap_or(false),
            })
    }

    /// Statements in one transaction under the lock policy.
    pub async fn run_txn(
        &self,
        statements: &[String],
        mode: LockMode,
        policy: &LockPolicy,
    ) -> Result<LockStats, RetryError> {
        run_txn(&self.client, statements, mode, policy).await
    }

    /// A transaction that takes its locks first ([`run_txn_locked`]).
    pub async fn run_txn_locked(
        &self,
        locks: &[String],
        statements: &[String],
        policy: &LockPolicy,
    ) -> Result<LockStats, RetryError> {
        run_txn_locked(&self.client, locks, statements, policy).await
    }

    /// A statement outside a transaction block under the lock policy.
    pub async fn run_bare(&self, sql: &str, policy: &LockPolicy) -> Result<LockStats, RetryError> {
        run_bare(&self.client, sql, policy).await
    }

    /// Lets go of the advisory lock (best effort: it also goes with the
    /// connection).
    pub async fn unlock(self) {
        let _ = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
            .await;
    }
}

impl std::ops::Deref for Session {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// The statements of a script, split by PostgreSQL's own parser (quotes,
/// dollar quoting and comments respected), each without its `;`.
pub fn split_statements(script: &str) -> Result<Vec<String>, String> {
    pg_query::split_with_parser(script)
        .map(|v| {
            v.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .map_err(|e| e.to_string())
}

/// Runs a script (the seed's SQL as written, a schema) one statement per
/// query, in order; a script that does not parse is sent as it is, so the
/// server reports the error.
pub async fn exec_script(client: &Client, script: &str) -> Result<(), tokio_postgres::Error> {
    match split_statements(script) {
        Ok(statements) => {
            for s in statements {
                exec(client, &s).await?;
            }
            Ok(())
        }
        Err(_) => exec(client, script).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_into_statements_like_the_server_would() {
        let s = split_statements(
            "BEGIN;\nALTER TABLE a ADD b int; -- a comment; with a semicolon\n\
             CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n\
             SELECT 'x;y';\nCOMMIT;",
        )
        .unwrap();
        assert_eq!(s.len(), 5, "{s:?}");
        assert_eq!(s[0], "BEGIN");
        assert!(s[2].contains("$$ SELECT 1; $$"));
        assert_eq!(s[3], "SELECT 'x;y'");
        assert_eq!(s[4], "COMMIT");
    }
}

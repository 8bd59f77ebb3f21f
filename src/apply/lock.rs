//! Lock-safe statement execution: every statement whose lock conflicts with
//! the application's reads or writes runs in its own transaction with
//! `SET LOCAL lock_timeout`, and is retried on SQLSTATE 55P03 with
//! exponential backoff and full jitter — so the application is never queued
//! behind shardready for longer than the timeout.

use std::time::{Duration, Instant};

use rand::Rng;
use tokio_postgres::Client;

use super::ApplyError;

/// How long a statement may hold up the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    pub lock_timeout: Duration,
    /// Give up after this much total waiting for one statement.
    pub max_wait: Option<Duration>,
}

pub fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
}

/// Runs `sql` (one or more statements) in one transaction under the policy.
pub async fn run_txn(
    client: &Client,
    sql: &str,
    mode: LockMode,
    policy: &LockPolicy,
) -> Result<LockStats, ApplyError> {
    let timeout_ms = match mode {
        LockMode::Brief => policy.lock_timeout.as_millis().max(1),
        LockMode::NonBlocking => 0,
    };
    let body = format!(
        "BEGIN;\nSET LOCAL lock_timeout = '{timeout_ms}ms';\nSET LOCAL statement_timeout = 0;\n{sql}\nCOMMIT;"
    );
    retry(client, &body, policy, true).await
}

/// Runs a statement that cannot be in a transaction block (CONCURRENTLY).
pub async fn run_bare(
    client: &Client,
    sql: &str,
    policy: &LockPolicy,
) -> Result<LockStats, ApplyError> {
    client
        .batch_execute("SET lock_timeout = 0; SET statement_timeout = 0;")
        .await
        .map_err(|e| ApplyError::db("cannot set session timeouts", e))?;
    retry(client, sql, policy, false).await
}

async fn retry(
    client: &Client,
    sql: &str,
    policy: &LockPolicy,
    in_txn: bool,
) -> Result<LockStats, ApplyError> {
    let mut stats = LockStats::default();
    let start = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        match client.batch_execute(sql).await {
            Ok(()) => return Ok(stats),
            Err(e) => {
                if in_txn {
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                if !is_lock_timeout(&e) {
                    return Err(ApplyError::sql(&first_line(sql), &e));
                }
                stats.lock_timeouts += 1;
                if let Some(max) = policy.max_wait {
                    if start.elapsed() >= max {
                        return Err(ApplyError::GaveUp {
                            sql: first_line(sql),
                            waited: start.elapsed(),
                            attempts: stats.lock_timeouts,
                        });
                    }
                }
                // Full jitter: a random pause up to the current backoff.
                let pause = Duration::from_micros(
                    rand::thread_rng().gen_range(0..=backoff.as_micros() as u64),
                );
                tokio::time::sleep(pause).await;
                stats.waited += pause;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The statement for messages (the first meaningful line).
fn first_line(sql: &str) -> String {
    sql.lines()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("BEGIN")
                && !l.starts_with("SET LOCAL")
                && !l.starts_with("SET lock_timeout")
                && !l.starts_with("--")
        })
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

//! The application's statements over a window: snapshots of
//! `pg_stat_statements`' counters (calls and execution time per
//! statement) and what changed between two of them — each statement's
//! calls per second and mean time — and whether a statement got slower
//! from one window to the next.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use crate::db::DbError;

/// A statement is called slower after a step when its mean time is above
/// this factor of its mean before (plus 1 ms: the noise of sub-millisecond
/// statements)...
pub const SLOWER_FACTOR: f64 = 2.0;
/// ...and it ran at least this often in both windows (calls per second).
pub const SLOWER_MIN_RATE: f64 = 0.5;

/// Statements are quoted up to this many characters.
const QUOTE_CHARS: usize = 120;

/// A statement as messages quote it: whitespace collapsed, trimmed to
/// about [`QUOTE_CHARS`] characters.
pub fn shorten(sql: &str) -> String {
    let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.trim_end_matches(';').trim().to_string();
    if flat.chars().count() <= QUOTE_CHARS {
        flat
    } else {
        let cut: String = flat.chars().take(QUOTE_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

/// The counters of one statement.
#[derive(Debug, Clone)]
pub struct Counter {
    /// Normalized text (constants are `$n`).
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
}

/// pg_stat_statements' counters of the application's statements (see
/// [`APPLICATION_STATEMENTS`]) at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub rows: HashMap<i64, Counter>,
}

/// Why pg_stat_statements cannot be read here.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(
        "pg_stat_statements is not installed in this database: add it to \
         shared_preload_libraries (restart) and run CREATE EXTENSION pg_stat_statements"
    )]
    NotInstalled,
    #[error(
        "pg_stat_statements is installed but not loaded: add it to \
         shared_preload_libraries (restart)"
    )]
    NotLoaded,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The rows of `pg_stat_statements s` that are the application's: in the
/// current database, not on the system catalogs, `pg_stat_*`, extension
/// schemas (`cron`) or ours (`shardready`), and not sent by shardready
/// (its statements carry a `/* shardready */` marker).
pub(crate) const APPLICATION_STATEMENTS: &str =
    "s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
     AND s.queryid IS NOT NULL \
     AND s.query !~* '(pg_catalog|information_schema|pg_stat|pg_class|pg_namespace|\\mcron\\.|\\mshardready\\.)' \
     AND position('/* shardready */' in s.query) = 0";

/// Whether pg_stat_statements is installed in this database.
async fn installed(client: &Client) -> Result<(), Unavailable> {
    let installed: bool = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements')",
            &[],
        )
        .await
        .map_err(|e| DbError::new("cannot look for pg_stat_statements", e))?
        .get(0);
    if installed {
        Ok(())
    } else {
        Err(Unavailable::NotInstalled)
    }
}

/// A read of pg_stat_statements' error: 55000 when it is installed in the
/// database but not loaded by the server.
fn read_error(e: tokio_postgres::Error) -> Unavailable {
    if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) {
        Unavailable::NotLoaded
    } else {
        Unavailable::Db(DbError::new("cannot read pg_stat_statements", e))
    }
}

/// Whether pg_stat_statements can be read here (installed in this
/// database and loaded by the server), and why not.
pub(crate) async fn readable(client: &Client) -> Result<(), Unavailable> {
    installed(client).await?;
    client
        .query_one(
            "SELECT count(*) FROM (SELECT FROM pg_stat_statements LIMIT 1) s",
            &[],
        )
        .await
        .map_err(read_error)?;
    Ok(())
}

/// Reads the counters, or says why they cannot be read.
pub async fn snapshot(client: &Client) -> Result<Snapshot, Unavailable> {
    installed(client).await?;
    let rows = client
        .query(
            &format!(
                "SELECT s.queryid, min(s.query), sum(s.calls)::int8, \
                        sum(s.total_exec_time)::float8 \
                 FROM pg_stat_statements s WHERE {APPLICATION_STATEMENTS} GROUP BY s.queryid"
            ),
            &[],
        )
        .await
        .map_err(read_error)?;
    Ok(Snapshot {
        at: Instant::now(),
        rows: rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    Counter {
                        query: r.get(1),
                        calls: r.get(2),
                        total_ms: r.get(3),
                    },
                )
            })
            .collect(),
    })
}

/// Two snapshots `length` apart: `since` (taken earlier) and one taken
/// when `length` has passed since it (None: one is taken now first).
pub async fn window(
    client: &Client,
    since: Option<Snapshot>,
    length: std::time::Duration,
) -> Result<(Snapshot, Snapshot), Unavailable> {
    let first = match since {
        Some(s) => s,
        None => snapshot(client).await?,
    };
    tokio::time::sleep(length.saturating_sub(first.at.elapsed())).await;
    let now = snapshot(client).await?;
    Ok((first, now))
}

/// The application's statements called while `work` ran (snapshots
/// before and after it), beside what `work` returns.
pub async fn during<T>(
    client: &Client,
    work: impl std::future::Future<Output = T>,
) -> (T, Result<Vec<Rate>, Unavailable>) {
    let first = snapshot(client).await;
    let out = work.await;
    let rates = match first {
        Ok(a) => snapshot(client).await.map(|b| a.until(&b)),
        Err(e) => Err(e),
    };
    (out, rates)
}

/// One statement in a window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rate {
    pub queryid: i64,
    /// Whitespace collapsed, trimmed.
    pub statement: String,
    /// The whole normalized text (to match a statement whose queryid
    /// changed).
    #[serde(skip)]
    pub query: String,
    pub calls: i64,
    pub calls_per_s: f64,
    pub mean_ms: f64,
}

impl Snapshot {
    /// The statements called between `self` and `later`, the most time
    /// spent first (a statement whose counters were reset in between
    /// counts from zero).
    pub fn until(&self, later: &Snapshot) -> Vec<Rate> {
        let seconds = later.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let mut out: Vec<(f64, Rate)> = later
            .rows
            .iter()
            .filter_map(|(id, b)| {
                let (calls, ms) = match self.rows.get(id) {
                    Some(a) if a.calls <= b.calls => (b.calls - a.calls, b.total_ms - a.total_ms),
                    _ => (b.calls, b.total_ms),
                };
                (calls > 0).then(|| {
                    (
                        ms,
                        Rate {
                            queryid: *id,
                            statement: shorten(&b.query),
                            query: b.query.clone(),
                            calls,
                            calls_per_s: calls as f64 / seconds,
                            mean_ms: ms / calls as f64,
                        },
                    )
                })
            })
            .collect();
        out.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.queryid.cmp(&b.1.queryid)));
        out.into_iter().map(|(_, r)| r).collect()
    }

    /// Calls of `queryid` counted by `later` since `self`.
    pub fn calls_until(&self, later: &Snapshot, queryid: i64) -> i64 {
        let b = later.rows.get(&queryid).map_or(0, |c| c.calls);
        match self.rows.get(&queryid) {
            Some(a) if a.calls <= b => b - a.calls,
            _ => b,
        }
    }
}

/// One statement before and after a step.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatementChange {
    pub queryid: i64,
    pub statement: String,
    pub calls_per_s_before: f64,
    pub calls_per_s_after: f64,
    pub mean_ms_before: f64,
    pub mean_ms_after: f64,
    /// Beyond [`SLOWER_FACTOR`].
    pub slower: bool,
}

/// The application's statements in a window after a step beside a window
/// before it: the `top` that cost most after (time spent per second), and
/// every statement that got slower.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Comparison {
    pub statements: Vec<StatementChange>,
}

impl Comparison {
    pub fn of(before: &[Rate], after: &[Rate], top: usize) -> Comparison {
        let mut rows: Vec<(f64, StatementChange)> = after
            .iter()
            .map(|a| {
                // The same text where the queryid changed (Citus plans
                // some statements differently once the tables are its).
                let b = before
                    .iter()
                    .find(|b| b.queryid == a.queryid)
                    .or_else(|| before.iter().find(|b| b.query == a.query));
                let slower = b.is_some_and(|b| {
                    b.calls_per_s >= SLOWER_MIN_RATE
                        && a.calls_per_s >= SLOWER_MIN_RATE
                        && a.mean_ms > b.mean_ms * SLOWER_FACTOR + 1.0
                });
                (
                    a.calls_per_s * a.mean_ms,
                    StatementChange {
                        queryid: a.queryid,
                        statement: a.statement.clone(),
                        calls_per_s_before: b.map_or(0.0, |b| b.calls_per_s),
                        calls_per_s_after: a.calls_per_s,
                        mean_ms_before: b.map_or(f64::NAN, |b| b.mean_ms),
                        mean_ms_after: a.mean_ms,
                        slower,
                    },
                )
            })
            .collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        let statements = rows
            .into_iter()
            .enumerate()
            .filter(|(i, (_, c))| *i < top || c.slower)
            .map(|(_, (_, c))| c)
            .collect();
        Comparison { statements }
    }

    /// Whether any statement got slower.
    pub fn slower(&self) -> bool {
        self.statements.iter().any(|s| s.slower)
    }

    /// Lines for people: each statement's mean time and rate, before and
    /// after.
    pub fn lines(&self) -> Vec<String> {
        self.statements
            .iter()
            .map(|s| {
                let before = if s.mean_ms_before.is_nan() {
                    "not run before".to_string()
                } else {
                    format!(
                        "{:.2} ms at {:.1}/s before",
                        s.mean_ms_before, s.calls_per_s_before
                    )
                };
                format!(
                    "{}{:.2} ms at {:.1}/s after, {before} (queryid {}): {}",
                    if s.slower { "SLOWER " } else { "" },
                    s.mean_ms_after,
                    s.calls_per_s_after,
                    s.queryid,
                    s.statement
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snap(at: Instant, rows: &[(i64, i64, f64)]) -> Snapshot {
        Snapshot {
            at,
            rows: rows
                .iter()
                .map(|(id, calls, ms)| {
                    (
                        *id,
                        Counter {
                            query: format!("SELECT {id}"),
                            calls: *calls,
                            total_ms: *ms,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn rates_are_the_differences_over_the_window() {
        let t0 = Instant::now();
        let a = snap(t0, &[(1, 100, 50.0), (2, 10, 10.0), (3, 5, 5.0)]);
        // 1: 100 more calls; 2: none; 3: reset (counts from zero); 4: new.
        let b = snap(
            t0 + Duration::from_secs(10),
            &[(1, 200, 150.0), (2, 10, 10.0), (3, 2, 40.0), (4, 1, 1.0)],
        );
        let r = a.until(&b);
        let ids: Vec<i64> = r.iter().map(|r| r.queryid).collect();
        assert_eq!(ids, vec![1, 3, 4], "most time first, idle left out");
        assert_eq!(r[0].calls, 100);
        assert!((r[0].calls_per_s - 10.0).abs() < 1e-9);
        assert!((r[0].mean_ms - 1.0).abs() < 1e-9);
        assert_eq!(r[1].calls, 2);
        assert!((r[1].mean_ms - 20.0).abs() < 1e-9);
        assert_eq!(a.calls_until(&b, 2), 0);
        assert_eq!(a.calls_until(&b, 4), 1);
    }

    fn rate(queryid: i64, calls_per_s: f64, mean_ms: f64) -> Rate {
        Rate {
            queryid,
            statement: format!("SELECT {queryid}"),
            query: format!("SELECT {queryid}"),
            calls: (calls_per_s * 10.0) as i64,
            calls_per_s,
            mean_ms,
        }
    }

    #[test]
    fn a_statement_several_times_slower_is_named() {
        let before = [rate(1, 50.0, 1.0), rate(2, 50.0, 2.0), rate(3, 0.1, 1.0)];
        let after = [
            rate(1, 50.0, 1.5),  // within the margin
            rate(2, 50.0, 9.0),  // 4.5x
            rate(3, 0.1, 100.0), // too rare to judge
            rate(4, 20.0, 3.0),  // new
        ];
        let c = Comparison::of(&before, &after, 1);
        let slow: Vec<i64> = c
            .statements
            .iter()
            .filter(|s| s.slower)
            .map(|s| s.queryid)
            .collect();
        assert_eq!(slow, vec![2]);
        assert!(c.slower());
        // The top one by time spent (2: 450 ms/s) plus every slower one.
        assert_eq!(c.statements.len(), 1);
        let lines = c.lines();
        assert!(lines[0].starts_with("SLOWER 9.00 ms at 50.0/s after, 2.00 ms"));
        let c = Comparison::of(&before, &after, 4);
        assert_eq!(c.statements.len(), 4);
        assert!(c.lines().iter().any(|l| l.contains("not run before")));
    }
}

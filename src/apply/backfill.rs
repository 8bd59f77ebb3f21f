//! The backfill controller: fills the new column in keyset batches over the
//! primary key (`key > lo AND key <= hi AND col IS NULL`), one short
//! transaction each with its cursor saved in the same transaction; the
//! batch size adapts to a time target, and it slows down when the
//! application's latency rises or a rate cap is reached. A final sweep
//! catches rows the ranges missed.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio_postgres::Client;

use super::lock::is_lock_timeout;
use super::{ApplyError, Pressure};
use crate::plan::{backfill_batch_sql, Step};
use crate::sql::ident;

/// How the backfill paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Aim for batches that take about this long.
    pub batch_target: Duration,
    /// Never more than this many rows per second.
    pub max_rate: Option<f64>,
    /// Slow down when the application's recent p99 exceeds this.
    pub app_p99_limit_ms: f64,
    pub lock_timeout: Duration,
    pub min_batch: i64,
    pub max_batch: i64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            batch_target: Duration::from_millis(100),
            max_rate: None,
            app_p99_limit_ms: 15.0,
            lock_timeout: Duration::from_millis(100),
            min_batch: 200,
            max_batch: 200_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct BackfillStats {
    pub table: String,
    pub rows: i64,
    pub batches: i64,
    pub seconds: f64,
    pub throttled_seconds: f64,
    pub lock_timeouts: u32,
    pub swept: i64,
    pub final_batch_keys: i64,
}

/// Runs (or resumes) the backfill of one Backfill step.
pub async fn run(
    client: &Client,
    step: &Step,
    pace: &Pace,
    pressure: &dyn Pressure,
    progress: bool,
) -> Result<BackfillStats, ApplyError> {
    let Step::Backfill {
        table, column, key, ..
    } = step
    else {
        return Ok(BackfillStats::default());
    };
    let id = step.id();
    let start = Instant::now();
    let db = |ctx: &'static str| move |e| ApplyError::db(ctx, e);
    // Cursor: resume from the saved one, or start from the key range.
    let saved = client
        .query_opt(
            "SELECT cursor, max_key, min_key, rows_updated, batches FROM shardready.backfill WHERE step_id = $1",
            &[&id],
        )
        .await
        .map_err(db("cannot read the backfill cursor"))?;
    let (mut cursor, max_key, min_key, mut rows, mut batches) = match saved {
        Some(r) => (
            r.get::<_, i64>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
            r.get::<_, i64>(3),
            r.get::<_, i64>(4),
        ),
        None => {
            let r = client
                .query_one(
                    &format!(
                        "SELECT coalesce(min({k})::bigint - 1, 0), coalesce(max({k})::bigint, 0) FROM {t}",
                        k = ident(key),
                        t = table.sql()
                    ),
                    &[],
                )
                .await
                .map_err(db("cannot read the key range"))?;
            let (lo, hi): (i64, i64) = (r.get(0), r.get(1));
            client
                .execute(
                    "INSERT INTO shardready.backfill (step_id, cursor, max_key, min_key) VALUES ($1, $2, $3, $2)",
                    &[&id, &lo, &hi],
                )
                .await
                .map_err(db("cannot save the backfill cursor"))?;
            (lo, hi, lo, 0, 0)
        }
    };
    let bar = if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::new((max_key - min_key).max(0) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_draw_target(
        if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("  backfill {msg} [{bar:30}] {percent}% {per_sec} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(table.to_string());
    bar.set_position((cursor - min_key).max(0) as u64);

    let mut size: i64 = 1000;
    let mut stats = BackfillStats {
        table: table.to_string(),
        ..Default::default()
    };
    let mut throttled = Duration::ZERO;
    let sql = backfill_batch_sql(step, "$1", "$2").expect("a backfill step");
    let batch_sql = format!(
        "WITH done AS ({} RETURNING 1) SELECT count(*) FROM done",
        sql.trim_end_matches(';')
    );
    let stmt = client
        .prepare(&batch_sql)
        .await
        .map_err(|e| ApplyError::Sql {
            sql: batch_sql.clone(),
            detail: crate::conn::error_text(&e),
        })?;
    let save = client
        .prepare(
            "UPDATE shardready.backfill SET cursor = $2, rows_updated = rows_updated + $3, \
             batches = batches + 1, updated_at = now() WHERE step_id = $1",
        )
        .await
        .map_err(db("cannot prepare the cursor update"))?;
    let timeout = format!(
        "SET LOCAL lock_timeout = '{}ms'",
        pace.lock_timeout.as_millis().max(1)
    );
    let mut window_start = Instant::now();
    let mut window_rows: i64 = 0;
    while cursor < max_key {
        // Back off while the application suffers.
        if let Some(p99) = pressure.recent_p99_ms() {
            if p99 > pace.app_p99_limit_ms {
                size = (size / 2).max(pace.min_batch);
                let pause = Duration::from_millis(250);
                tokio::time::sleep(pause).await;
                throttled += pause;
                continue;
            }
        }
        let hi = (cursor + size).min(max_key);
        let t0 = Instant::now();
        client
            .batch_execute(&format!("BEGIN; {timeout}"))
            .await
            .map_err(db("cannot begin a backfill batch"))?;
        let result = async {
            let n: i64 = client.query_one(&stmt, &[&cursor, &hi]).await?.get(0);
            client.execute(&save, &[&id, &hi, &n]).await?;
            client.batch_execute("COMMIT").await?;
            Ok::<i64, tokio_postgres::Error>(n)
        }
        .await;
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                if is_lock_timeout(&e) {
                    // A row the application holds: smaller batch, retry.
                    stats.lock_timeouts += 1;
                    size = (size / 2).max(pace.min_batch);
                    let pause = Duration::from_millis(20);
                    tokio::time::sleep(pause).await;
                    throttled += pause;
                    continue;
                }
                return Err(ApplyError::Sql {
                    sql: batch_sql.clone(),
                    detail: crate::conn::error_text(&e),
                });
            }
        };
        let took = t0.elapsed();
        cursor = hi;
        rows += n;
        batches += 1;
        window_rows += n;
        bar.set_position((cursor - min_key).max(0) as u64);
        // Adapt the size to the time target (at most halve or double).
        let ratio = pace.batch_target.as_secs_f64() / took.as_secs_f64().max(1e-4);
        size = ((size as f64) * ratio.clamp(0.5, 2.0)) as i64;
        size = size.clamp(pace.min_batch, pace.max_batch);
        // Rate cap.
        if let Some(max_rate) = pace.max_rate {
            let elapsed = window_start.elapsed().as_secs_f64();
            let allowed = elapsed * max_rate;
            if (window_rows as f64) > allowed {
                let pause = Duration::from_secs_f64((window_rows as f64 - allowed) / max_rate);
                tokio::time::sleep(pause).await;
                throttled += pause;
            }
            if elapsed > 5.0 {
                window_start = Instant::now();
                window_rows = 0;
            }
        }
    }
    bar.finish_and_clear();
    // Final sweep: rows the ranges did not reach (written without the column
    // before the trigger existed, or beyond the saved maximum).
    let (from, conds, value) = crate::plan::backfill_joins(step).expect("a backfill step");
    let sweep = format!(
        "WITH todo AS (SELECT {k} FROM {t} WHERE {c} IS NULL LIMIT 10000), \
              done AS (UPDATE {t} t SET {c} = {value} FROM {from}, todo \
                       WHERE t.{k} = todo.{k} AND {conds} RETURNING 1) \
         SELECT count(*) FROM done",
        k = ident(key),
        t = table.sql(),
        c = ident(column),
    );
    loop {
        let n: i64 = client
            .query_one(&sweep, &[])
            .await
            .map_err(|e| ApplyError::Sql {
                sql: sweep.clone(),
                detail: crate::conn::error_text(&e),
            })?
            .get(0);
        stats.swept += n;
        if n == 0 {
            break;
        }
    }
    let left = client
        .query(
            &format!(
                "SELECT {k}::text FROM {t} WHERE {c} IS NULL LIMIT 5",
                k = ident(key),
                t = table.sql(),
                c = ident(column)
            ),
            &[],
        )
        .await
        .map_err(db("cannot check for rows left without the column"))?;
    if !left.is_empty() {
        let examples: Vec<String> = left.iter().map(|r| r.get(0)).collect();
        return Err(ApplyError::Orphans {
            table: table.to_string(),
            column: column.clone(),
            examples,
        });
    }
    stats.rows = rows + stats.swept;
    stats.batches = batches;
    stats.seconds = start.elapsed().as_secs_f64();
    stats.throttled_seconds = throttled.as_secs_f64();
    stats.final_batch_keys = size;
    Ok(stats)
}

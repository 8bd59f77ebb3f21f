//! The backfill controller: fills the new column in keyset batches over the
//! primary key (`key > lo AND key <= hi AND col IS NULL`), one short
//! transaction each with its cursor saved in the same transaction; the
//! batch size adapts to a time target, and it pauses when the application
//! has had more slow transactions than its budget allows (see [`Governor`])
//! or a rate cap is reached. A final sweep catches rows the ranges missed.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio_postgres::Client;

use super::governor::{Governor, LONG_HOLD};
use super::{ApplyError, Pressure};
use crate::db::{self, is_lock_timeout};
use crate::plan::steps::BackfillCursorSql;
use crate::plan::{Backfill, StepKind};

/// How the backfill paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Aim for batches that take about this long.
    pub batch_target: Duration,
    /// Never more than this many rows per second.
    pub max_rate: Option<f64>,
    /// Keep the application's p99 below this: at most [`super::governor::SLOW_BUDGET`] of
    /// its transactions may take longer while the backfill runs.
    pub app_p99_limit_ms: f64,
    pub lock_timeout: Duration,
    pub min_batch: i64,
    pub max_batch: i64,
    /// How far behind the standbys may fall (None: not watched).
    pub max_replica_lag: Option<super::control::ReplicaBudget>,
    /// Never more than this many bytes of WAL per second (the whole
    /// server's, the application's included), for standbys, archives and
    /// checkpoints that cannot take more.
    pub max_wal_rate: Option<f64>,
}

impl Pace {
    /// `max_replica_lag` for the pg_cron job's procedure.
    pub fn standby_budget(&self) -> crate::plan::StandbyBudget {
        use super::control::ReplicaBudget;
        use crate::plan::StandbyBudget;
        match self.max_replica_lag {
            None => StandbyBudget::Off,
            Some(ReplicaBudget::Time(d)) => StandbyBudget::Seconds(d.as_secs_f64()),
            Some(ReplicaBudget::Bytes(b)) => StandbyBudget::Bytes(b),
        }
    }
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
            max_replica_lag: Some(super::control::ReplicaBudget::Time(Duration::from_secs(10))),
            max_wal_rate: None,
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
    /// Light VACUUMs along the way ([`reclaim`]).
    pub reclaims: u32,
    /// Of `rows`, those an earlier, interrupted run filled (not in
    /// `seconds`).
    pub earlier_rows: i64,
    /// Seconds spent paused by `shardready pause`.
    pub paused_seconds: f64,
    /// Seconds spent waiting for standbys beyond `--max-replica-lag`.
    pub replica_wait_seconds: f64,
    /// Of `throttled_seconds`, how long each signal held the backfill
    /// back (its description's first words: "canary commit", "the
    /// application waited", ...).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub held_back: std::collections::BTreeMap<String, f64>,
    /// The longest the backfill was held over the application's budget
    /// without a look within it (slowed, down to nearly paused).
    pub longest_hold_seconds: f64,
    /// Of `throttled_seconds`, the waits taken while the application was
    /// as slow when the backfill waited as when it worked (the backfill
    /// was not what slowed it, so it kept half its speed).
    pub not_ours_seconds: f64,
}

impl BackfillStats {
    /// Rows this run filled per second (an earlier run's rows are not in
    /// its time).
    pub fn rows_per_second(&self) -> f64 {
        (self.rows - self.earlier_rows) as f64 / self.seconds.max(1e-9)
    }
}

/// Runs (or resumes) the backfill of one Backfill step.
/// Whether this session may keep the tables' triggers from firing for the
/// backfill's own UPDATEs (`session_replication_role` is a superuser's
/// setting): then the backfill changes the tenant column and nothing else.
pub async fn quiet_triggers(client: &Client) -> bool {
    client
        .query_one("SELECT current_setting('is_superuser') = 'on'", &[])
        .await
        .is_ok_and(|r| r.get(0))
}

pub async fn run(
    client: &Client,
    step: &Backfill,
    pace: &Pace,
    pressures: &[&dyn Pressure],
    standbys: &[super::control::Standby],
    progress: bool,
) -> Result<BackfillStats, ApplyError> {
    let table = &step.table;
    let id = step.id();
    let start = Instant::now();
    let db = |ctx: &'static str| move |e| ApplyError::db(ctx, e);
    let BackfillCursor {
        mut cursor,
        max_key,
        min_key,
        mut rows,
        mut batches,
    } = load_cursor(client, step).await?;
    let ranges_done = cursor >= max_key;
    let bar = progress_bar(progress, table, min_key, max_key, cursor);
    let mut size: i64 = 1000;
    let mut stats = BackfillStats {
        table: table.to_string(),
        earlier_rows: rows,
        ..Default::default()
    };
    let mut throttled = Duration::ZERO;
    let batch_sql = step.batch_query();
    let stmt = client
        .prepare(&batch_sql)
        .await
        .map_err(|e| ApplyError::sql(&batch_sql, e))?;
    let save = client
        .prepare(BackfillCursorSql::SAVE)
        .await
        .map_err(db("cannot prepare the cursor update"))?;
    let timeout = format!(
        "SET LOCAL lock_timeout = '{}ms'",
        pace.lock_timeout.as_millis().max(1)
    );
    let reclaim_sql = step.reclaim_sql();
    // No trigger fires for these UPDATEs where the role allows it (user
    // triggers would change other columns; the sync trigger has nothing
    // to add; no key involves the column yet).
    let quiet = quiet_triggers(client).await;
    let mut window_start = Instant::now();
    let mut window_rows: i64 = 0;
    let mut governor = Governor::new(pressures, pace.app_p99_limit_ms);
    let mut holds = Holds::default();
    let step_keys = ((max_key - min_key) / RECLAIM_EVERY).max(1);
    let mut next_reclaim = cursor + step_keys;
    // `shardready pause` / `resume --max-rate`, read at most once a second.
    let mut max_rate = pace.max_rate;
    let mut next_control = Instant::now();
    let mut paused = Duration::ZERO;
    let mut replica_wait = Duration::ZERO;
    let mut wal_window = match pace.max_wal_rate {
        Some(_) => Some((Instant::now(), wal_position(client).await?)),
        None => None,
    };
    while cursor < max_key {
        if Instant::now() >= next_control {
            next_control = Instant::now() + Duration::from_secs(1);
            let mut c = super::control::read(client).await?;
            if c.paused {
                paused += super::control::wait_while_paused(client, progress).await?;
                window_start = Instant::now();
                window_rows = 0;
                c = super::control::read(client).await?;
            }
            max_rate = c.max_rate.or(pace.max_rate);
            take_budget(&mut governor, &c, &bar, progress, table);
        }
        if cursor >= next_reclaim {
            reclaim(client, &reclaim_sql).await?;
            stats.reclaims += 1;
            next_reclaim = cursor + step_keys;
        }
        let hi = step.advance(cursor, size).min(max_key);
        let t0 = Instant::now();
        let result = async {
            db::exec(client, "BEGIN").await?;
            db::exec(client, &timeout).await?;
            if quiet {
                db::exec(client, "SET LOCAL session_replication_role = replica").await?;
            }
            let n: i64 = client.query_one(&stmt, &[&cursor, &hi]).await?.get(0);
            client.execute(&save, &[&id, &hi, &n]).await?;
            db::exec(client, "COMMIT").await?;
            Ok::<i64, tokio_postgres::Error>(n)
        }
        .await;
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                let _ = db::exec(client, "ROLLBACK").await;
                if is_lock_timeout(&e) {
                    // A row the application holds: smaller batch, retry.
                    stats.lock_timeouts += 1;
                    size = (size / 2).max(pace.min_batch);
                    let pause = Duration::from_millis(20);
                    tokio::time::sleep(pause).await;
                    throttled += pause;
                    continue;
                }
                return Err(ApplyError::sql(&batch_sql, e));
            }
        };
        let took = t0.elapsed();
        // The standbys replay what the batch wrote before the next one
        // adds more, beyond the budget (checked after every batch: the
        // lag stays within the budget plus one batch's WAL).
        if let Some(budget) = &pace.max_replica_lag {
            replica_wait +=
                super::control::wait_for_replicas(client, standbys, budget, progress).await?;
        }
        cursor = hi;
        rows += n;
        batches += 1;
        window_rows += n;
        bar.set_position((cursor - min_key).max(0) as u64);
        // Back off while the application suffers beyond its budget: pause
        // and halve the batch (shorter bursts interleave better with a
        // busy application); otherwise adapt the size to the time target
        // (at most halve or double).
        let verdict = holds.look(&mut governor, took, &mut stats, &bar, progress, table);
        let pause = verdict.pause;
        if pause.is_zero() {
            let ratio = pace.batch_target.as_secs_f64() / took.as_secs_f64().max(1e-4);
            size = ((size as f64) * ratio.clamp(0.5, 2.0)) as i64;
        } else {
            size /= 2;
            tokio::time::sleep(pause).await;
            throttled += pause;
        }
        size = size.clamp(pace.min_batch, pace.max_batch);
        // WAL cap: the server's WAL since the window began, against the
        // budget for that time.
        if let (Some(cap), Some((since, from))) = (pace.max_wal_rate, wal_window) {
            let written = wal_position(client).await? - from;
            let elapsed = since.elapsed().as_secs_f64();
            if written > elapsed * cap {
                let pause = Duration::from_secs_f64((written - elapsed * cap) / cap);
                bar.held_back(Some("the WAL rate cap (--max-wal-rate)"));
                tokio::time::sleep(pause).await;
                throttled += pause;
                *stats.held_back.entry("WAL rate".to_string()).or_default() += pause.as_secs_f64();
            }
            if elapsed > 5.0 {
                wal_window = Some((Instant::now(), wal_position(client).await?));
            }
        }
        // Rate cap.
        if let Some(max_rate) = max_rate {
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
    stats.swept = sweep(client, step, (!ranges_done).then_some(max_key), quiet).await?;
    stats.rows = rows + stats.swept;
    stats.batches = batches;
    stats.seconds = start.elapsed().as_secs_f64();
    stats.throttled_seconds = throttled.as_secs_f64();
    stats.paused_seconds = paused.as_secs_f64();
    stats.replica_wait_seconds = replica_wait.as_secs_f64();
    stats.final_batch_keys = size;
    Ok(stats)
}

/// A line for the person watching, above the progress bar.
fn note(bar: &Progress, progress: bool, line: &str) {
    if progress {
        bar.bar.suspend(|| eprintln!("  {line}"));
    }
}

/// A budget `shardready resume --app-p99-limit` set while the backfill
/// runs, handed to its governor and said.
fn take_budget(
    governor: &mut Governor,
    c: &super::control::Control,
    bar: &Progress,
    progress: bool,
    table: &crate::catalog::QName,
) {
    if let Some(ms) = c.app_p99_limit_ms {
        if governor.limit_ms().is_some_and(|now| now != ms) {
            governor.set_limit(ms);
            note(
                bar,
                progress,
                &format!(
                    "backfill {table}: the application's budget is now {ms:.1} ms \
                     (`shardready resume --app-p99-limit`)"
                ),
            );
        }
    }
}

/// What the governor's verdicts held the backfill back for, in its stats
/// and, every [`LONG_HOLD`] of a long hold, in a note for the user.
struct Holds {
    next_note: Duration,
}

impl Default for Holds {
    fn default() -> Self {
        Holds {
            next_note: LONG_HOLD,
        }
    }
}

impl Holds {
    /// The governor's verdict after a batch that took `took`, recorded.
    fn look(
        &mut self,
        governor: &mut Governor,
        took: Duration,
        stats: &mut BackfillStats,
        bar: &Progress,
        progress: bool,
        table: &crate::catalog::QName,
    ) -> super::governor::Verdict {
        let verdict = governor.after_batch(took);
        self.record(&verdict, stats, governor.limit_ms(), bar, progress, table);
        verdict
    }

    fn record(
        &mut self,
        verdict: &super::governor::Verdict,
        stats: &mut BackfillStats,
        limit_ms: Option<f64>,
        bar: &Progress,
        progress: bool,
        table: &crate::catalog::QName,
    ) {
        let why = &verdict.holding;
        bar.held_back(why.as_ref().map(|h| h.why.as_str()));
        if let Some(held) = verdict.held_for {
            stats.longest_hold_seconds = stats.longest_hold_seconds.max(held.as_secs_f64());
            if held >= self.next_note {
                self.next_note = held + LONG_HOLD;
                note(bar, progress, &hold_note(table, verdict, held, limit_ms));
            }
        } else {
            self.next_note = LONG_HOLD;
        }
        let pause = verdict.pause.as_secs_f64();
        if verdict.not_ours {
            stats.not_ours_seconds += pause;
        }
        if pause > 0.0 {
            let signal = why.as_ref().map_or("application latency", |h| h.signal);
            *stats.held_back.entry(signal.to_string()).or_default() += pause;
        }
    }
}

/// Says that the governor has held the backfill for `held`, why, and what
/// the user can do about it.
fn hold_note(
    table: &crate::catalog::QName,
    verdict: &super::governor::Verdict,
    held: Duration,
    limit_ms: Option<f64>,
) -> String {
    let why = verdict
        .holding
        .as_ref()
        .map_or("the application's latency".to_string(), |h| h.why.clone());
    let budget = limit_ms.map_or(String::new(), |ms| format!(" ({ms:.0} ms)"));
    let state = if verdict.not_ours {
        "the application is as slow while the backfill waits as while it works, so the \
         backfill is not what slows it: it goes on at half speed"
    } else if !verdict.deep {
        "the database's signals (a proxy of it) hold the backfill at half speed; --workload \
         lets apply measure the application itself"
    } else {
        "the backfill has slowed down to nearly a pause to keep the application within it"
    };
    format!(
        "backfill {table}: held back for {:.0} s by {why}, over the application's budget{budget}; \
         {state}. To go faster: `shardready resume --app-p99-limit MS` (a looser budget, taken \
         within a second); to stop here: `shardready pause`",
        held.as_secs_f64()
    )
}

/// Bytes of WAL the server has written (its current position).
async fn wal_position(client: &Client) -> Result<f64, ApplyError> {
    Ok(client
        .query_one(
            "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::float8",
            &[],
        )
        .await
        .map_err(|e| ApplyError::db("cannot read the WAL position", e))?
        .get(0))
}

/// How many times over the key range the backfill reclaims the space of
/// the row versions it left behind.
const RECLAIM_EVERY: i64 = 10;

/// Makes the space of the row versions the batches so far left dead
/// reusable by the next ones: `VACUUM (INDEX_CLEANUP off)` visits only the
/// pages changed since the last one (the rest are all-visible) and records
/// their free space. Without it every new row version extends the table: it
/// doubles, and PostgreSQL 15 writes each new page as zeros first, which the
/// kernel flushes in one burst some 30 s later — the 150-180 ms stall of
/// every commit measured during full-scale backfills. With it (every tenth
/// of the key range) line_items grew 27% instead of 112%, the backfill ran
/// faster and the application's max stayed near 60 ms. Index entries of the
/// dead versions wait for the VACUUM step at the end. SKIP_LOCKED: when
/// something else holds the table (a manual VACUUM), this round is skipped.
async fn reclaim(client: &Client, sql: &str) -> Result<(), ApplyError> {
    db::exec(client, sql)
        .await
        .map_err(|e| ApplyError::sql(sql, e))
}

/// Where a backfill stands (`shardready.backfill`).
struct BackfillCursor {
    cursor: i64,
    max_key: i64,
    min_key: i64,
    rows: i64,
    batches: i64,
}

/// Resumes from the saved cursor, or starts one over the key range.
async fn load_cursor(client: &Client, step: &Backfill) -> Result<BackfillCursor, ApplyError> {
    let id = step.id();
    let db = |ctx: &'static str| move |e| ApplyError::db(ctx, e);
    let saved = client
        .query_opt(BackfillCursorSql::LOAD, &[&id])
        .await
        .map_err(db("cannot read the backfill cursor"))?;
    if let Some(r) = saved {
        return Ok(BackfillCursor {
            cursor: r.get(0),
            max_key: r.get(1),
            min_key: r.get(2),
            rows: r.get(3),
            batches: r.get(4),
        });
    }
    let r = client
        .query_one(&step.key_range_sql(), &[])
        .await
        .map_err(db("cannot read the key range"))?;
    let (lo, hi): (i64, i64) = (r.get(0), r.get(1));
    client
        .execute(BackfillCursorSql::START, &[&id, &lo, &hi])
        .await
        .map_err(db("cannot save the backfill cursor"))?;
    Ok(BackfillCursor {
        cursor: lo,
        max_key: hi,
        min_key: lo,
        rows: 0,
        batches: 0,
    })
}

/// Where the backfill is, for the person watching: a bar on a terminal;
/// elsewhere (a log file, CI) one line every [`PLAIN_EVERY`], so a long
/// backfill is never silent.
struct Progress {
    bar: ProgressBar,
    /// The table, the bar's message when nothing holds it back.
    table: String,
    plain: Option<Plain>,
}

struct Plain {
    table: String,
    /// What holds the backfill back, for the next line.
    holding: std::sync::Mutex<Option<String>>,
    total: u64,
    started: Instant,
    from: u64,
    last: std::sync::Mutex<Instant>,
}

/// How often a line is printed when the output is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
        let Some(p) = &self.plain else { return };
        let mut last = p.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < PLAIN_EVERY {
            return;
        }
        *last = Instant::now();
        let rate = pos.saturating_sub(p.from) as f64 / p.started.elapsed().as_secs_f64().max(1e-9);
        let left = p.total.saturating_sub(pos) as f64 / rate.max(1e-9);
        let holding = p.holding.lock().unwrap_or_else(|e| e.into_inner()).take();
        eprintln!(
            "  backfill {}: {:.0}% of the key range, {:.0} keys/s, about {:.0} s left{}",
            p.table,
            100.0 * pos as f64 / p.total.max(1) as f64,
            rate,
            left,
            holding
                .map(|h| format!("; held back by {h}"))
                .unwrap_or_default()
        );
    }

    /// Says what holds the backfill back (None: nothing now).
    fn held_back(&self, why: Option<&str>) {
        match why {
            Some(why) => {
                self.bar
                    .set_message(format!("{} (held back by {why})", self.table));
                if let Some(p) = &self.plain {
                    *p.holding.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
                }
            }
            None => self.bar.set_message(self.table.clone()),
        }
    }
    fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

fn progress_bar(
    progress: bool,
    table: &crate::catalog::QName,
    min_key: i64,
    max_key: i64,
    cursor: i64,
) -> Progress {
    let tty = progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let total = (max_key - min_key).max(0) as u64;
    let at = (cursor - min_key).max(0) as u64;
    let bar = ProgressBar::new(total);
    bar.set_draw_target(if tty {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    bar.set_style(
        ProgressStyle::with_template("  backfill {msg} [{bar:30}] {percent}% {per_sec} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(table.to_string());
    bar.set_position(at);
    Progress {
        bar,
        table: table.to_string(),
        plain: (progress && !tty).then(|| Plain {
            table: table.to_string(),
            holding: std::sync::Mutex::new(None),
            total,
            started: Instant::now(),
            from: at,
            last: std::sync::Mutex::new(Instant::now()),
        }),
    }
}

/// Final sweep. The key ranges covered every row up to their maximum, and
/// the sync trigger fills the rows written since; what can still lack the
/// column is a row past the maximum written before the trigger filled it,
/// or a row whose parent is missing. So the sweep fills NULLs `past` the
/// maximum through the key's index (no table scan), 10000 rows at a time;
/// the NOT NULL step's validation is the proof, and names the rows left if
/// any. When the ranges were already done before this run (a rerun after
/// that proof failed), `past` is None and the sweep fills NULLs anywhere
/// (a table scan per round).
/// Fills what the ranges missed, firing no trigger when `quiet` (as the
/// batches; see [`quiet_triggers`]).
async fn sweep(
    client: &Client,
    step: &Backfill,
    past: Option<i64>,
    quiet: bool,
) -> Result<i64, ApplyError> {
    let sql = step.sweep_sql(past);
    let role = |set: &'static str| async move {
        if quiet {
            db::exec(client, set)
                .await
                .map_err(|e| ApplyError::db("cannot set session_replication_role", e))?;
        }
        Ok::<(), ApplyError>(())
    };
    role("SET session_replication_role = replica").await?;
    let filled = async {
        let mut filled = 0;
        loop {
            let n: i64 = client
                .query_one(&sql, &[])
                .await
                .map_err(|e| ApplyError::sql(&sql, e))?
                .get(0);
            filled += n;
            if n == 0 {
                return Ok::<i64, ApplyError>(filled);
            }
        }
    }
    .await;
    role("RESET session_replication_role").await?;
    filled
}

/// The seed's way, with keyset batches: a procedure that walks the key
/// range in batches (committing each, saving the cursor, adapting the batch
/// to the time target) is scheduled with pg_cron every minute, for 50 s of
/// work per run; apply watches the cursor and unschedules the job when the
/// range is done, then sweeps like the client mode.
pub async fn run_pg_cron(
    client: &Client,
    step: &Backfill,
    pace: &Pace,
    pressures: &[&dyn Pressure],
    progress: bool,
) -> Result<BackfillStats, ApplyError> {
    let table = &step.table;
    crate::cron::ensure(client)
        .await
        .map_err(|e| ApplyError::Other {
            context: "--backfill-via pg-cron".into(),
            detail: format!("{e} (or use --backfill-via client)"),
        })?;
    let start = Instant::now();
    let id = step.id();
    let c = load_cursor(client, step).await?;
    let proc = step.pg_cron_procedure(
        pace.lock_timeout.as_millis().max(1),
        pace.batch_target.as_millis().max(1),
        pace.min_batch,
        pace.max_batch,
        pace.standby_budget(),
        pace.max_rate,
    );
    let job = &proc.job;
    db::exec(client, &proc.create)
        .await
        .map_err(|e| ApplyError::sql(&format!("CREATE PROCEDURE {}", proc.procedure.sql()), e))?;
    crate::cron::schedule(client, job, "* * * * *", &proc.call)
        .await
        .map_err(|e| ApplyError::Other {
            context: "cannot schedule the backfill job".into(),
            detail: e.to_string(),
        })?;
    let bar = progress_bar(progress, table, c.min_key, c.max_key, c.cursor);
    let mut paused = Duration::ZERO;
    // The job's batches are governed from here: once per --batch-target
    // the governor looks at the application as after a batch, and a pause
    // it decides holds the job (`shardready.control.hold_until`).
    let mut governor = Governor::new(pressures, pace.app_p99_limit_ms);
    let mut holds = Holds::default();
    let mut stats = BackfillStats {
        table: table.to_string(),
        earlier_rows: c.rows,
        ..Default::default()
    };
    let mut throttled = Duration::ZERO;
    let mut next_poll = Instant::now();
    // An error on the way still unschedules the job (below).
    let result: Result<(i64, i64), ApplyError> = async {
        loop {
            // Once a second: where the job stands, its failures, the control
            // row.
            if Instant::now() >= next_poll {
                next_poll = Instant::now() + Duration::from_secs(1);
                let r = client
                    .query_one(BackfillCursorSql::PROGRESS, &[&id])
                    .await
                    .map_err(|e| ApplyError::db("cannot read the backfill cursor", e))?;
                let (cursor, rows, batches): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
                bar.set_position((cursor - c.min_key).max(0) as u64);
                if cursor >= c.max_key {
                    return Ok((rows, batches));
                }
                // A run that failed (e.g. on a lock timeout) is retried by the
                // next one; three failures in a row stop the backfill.
                let runs = crate::cron::runs(client, job).await.unwrap_or_default();
                let failures: Vec<&(String, String)> = runs
                    .iter()
                    .rev()
                    .take_while(|(s, _)| s == "failed")
                    .collect();
                if failures.len() >= 3 {
                    return Err(ApplyError::Other {
                        context: format!("the pg_cron backfill job `{job}` failed three times"),
                        detail: failures[0].1.clone(),
                    });
                }
                // Paused: the job's runs stop at once; wait here, then the
                // next run goes on from the cursor.
                let mut control = super::control::read(client).await?;
                if control.paused {
                    paused += super::control::wait_while_paused(client, progress).await?;
                    control = super::control::read(client).await?;
                }
                take_budget(&mut governor, &control, &bar, progress, table);
            }
            // The governor looks as after each of the job's batches (one every
            // --batch-target); a pause holds the job, then it gets a batch's
            // time before the next look, as the client's backfill does.
            let verdict = holds.look(
                &mut governor,
                pace.batch_target,
                &mut stats,
                &bar,
                progress,
                table,
            );
            if !verdict.pause.is_zero() {
                super::control::hold(client, verdict.pause).await?;
                throttled += verdict.pause;
            }
            tokio::time::sleep(verdict.pause + pace.batch_target.max(Duration::from_millis(50)))
                .await;
        }
    }
    .await;
    bar.finish_and_clear();
    let _ = crate::cron::unschedule(client, job).await;
    db::exec(client, &proc.drop)
        .await
        .map_err(|e| ApplyError::db("cannot drop the backfill procedure", e))?;
    let (rows, batches) = result?;
    let ranges_done = c.cursor >= c.max_key;
    let quiet = quiet_triggers(client).await;
    let swept = sweep(client, step, (!ranges_done).then_some(c.max_key), quiet).await?;
    Ok(BackfillStats {
        rows: rows + swept,
        batches,
        seconds: start.elapsed().as_secs_f64(),
        swept,
        paused_seconds: paused.as_secs_f64(),
        throttled_seconds: throttled.as_secs_f64(),
        ..stats
    })
}

//! The database's own signals while apply runs, for an application
//! shardready cannot see from inside: a canary (a one-row write to
//! `shardready.canary`, committed, timed: what any application commit
//! waits for), the application's backends waiting on a lock shardready's
//! sessions hold (`pg_stat_activity`, `pg_blocking_pids`), the mean time of
//! the application's statements (`pg_stat_statements`, where installed),
//! the WAL rate, requested checkpoints and the standbys' lag; and what shows
//! an application with no headroom left, which the canary alone does not
//! (its one tiny commit does not queue behind a saturated CPU): the
//! application's statements per second falling below their baseline, more
//! of its backends active at once, and, where the server runs on this
//! machine, the host's CPU pressure (Linux PSI, `/proc/pressure/cpu`: the
//! share of time a runnable task waited for a CPU). Sampled from
//! a separate connection ten times a second against a baseline taken
//! before the first change; this is the governor's [`Pressure`] when no
//! `--workload` measures the application, and each second of it goes to
//! the report and, through the canary row, to `shardready status`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_postgres::Client;

use super::saturation::Tick;
pub use super::saturation::{Baseline, CALLS_SHARE};
use super::{ApplyError, Holding, Pressure};
use crate::conn::Target;

/// The canary's row, created with the state schema.
pub const CANARY_SQL: &str = "CREATE TABLE IF NOT EXISTS shardready.canary (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    n bigint NOT NULL DEFAULT 0,
    at timestamptz NOT NULL DEFAULT now(),
    signals jsonb
)";

/// The canary transaction: one row, one commit (waits for the WAL flush
/// like the application's commits). It carries the last second's signals,
/// for `shardready status`.
const CANARY_WRITE: &str = "INSERT INTO shardready.canary AS c (id, n, at, signals) \
     VALUES (1, 1, now(), $1::text::jsonb) \
     ON CONFLICT (id) DO UPDATE SET n = c.n + 1, at = now(), \
     signals = coalesce(EXCLUDED.signals, c.signals)";

/// Application backends waiting on a lock, the longest wait on a lock a
/// shardready session holds (ms), active backends, those of them waiting
/// on I/O or the server's internal locks, and the wait event most of the
/// active ones wait on (`LWLock:WALWrite`; NULL: none waits). Sessions named
/// `shardready` or `shardready-*` are ours, except the workload, which
/// stands for the application; Citus's own connections (`citus_internal
/// …`, its shard moves' and its executor's) are not the application's.
const ACTIVITY: &str = "WITH ours AS (
      SELECT coalesce(array_agg(pid), '{}') AS pids FROM pg_catalog.pg_stat_activity
      WHERE (application_name LIKE 'shardready-%' OR application_name = 'shardready'
             OR application_name LIKE 'citus\\_internal%')
        AND application_name <> 'shardready-workload')
    SELECT count(*) FILTER (WHERE a.wait_event_type = 'Lock')::int,
           coalesce(max(CASE WHEN a.wait_event_type = 'Lock'
                              AND pg_catalog.pg_blocking_pids(a.pid) && (SELECT pids FROM ours)
                        THEN extract(epoch FROM clock_timestamp() - a.query_start) * 1000 END), 0)::float8,
           count(*) FILTER (WHERE a.state = 'active')::int,
           count(*) FILTER (WHERE a.state = 'active'
                              AND a.wait_event_type IN ('LWLock', 'IO', 'BufferPin'))::int,
           mode() WITHIN GROUP (ORDER BY a.wait_event_type || ':' || a.wait_event)
             FILTER (WHERE a.state = 'active'
                       AND a.wait_event_type IN ('LWLock', 'IO', 'BufferPin', 'Lock'))
    FROM pg_catalog.pg_stat_activity a
    WHERE a.backend_type = 'client backend' AND a.pid <> pg_catalog.pg_backend_pid()
      AND a.datname = current_database()
      AND a.pid <> ALL (coalesce((SELECT pids FROM ours), '{}'))";

/// The application's statements so far (calls, total ms): its reads and
/// writes among [`crate::stat_statements::APPLICATION_STATEMENTS`], less
/// the texts in `$1`.
fn statements_sql() -> String {
    format!(
        "SELECT coalesce(sum(calls), 0)::float8, coalesce(sum(total_exec_time), 0)::float8 \
         FROM pg_stat_statements s \
         WHERE {} \
           AND s.query ~* '^\\s*(select|insert|update|delete|with)\\M' \
           AND s.query <> ALL ($1::text[])",
        crate::stat_statements::APPLICATION_STATEMENTS
    )
}

/// How often the canary and the backends are sampled.
pub const TICK: Duration = Duration::from_millis(100);

/// How long the baseline is measured before the first change.
pub const BASELINE: Duration = Duration::from_secs(2);

/// ...and without pg_stat_statements, when the application's rate is its
/// commits: backends report them up to a second late, so a rate needs
/// several seconds of readings.
pub const BASELINE_BY_COMMITS: Duration = Duration::from_secs(5);

/// How much of the canary's latency over its baseline is allowed: 1.5x
/// its baseline p99, and never less than this much above it (on an idle
/// server the canary takes a fraction of a millisecond and a 1.5x rule
/// would read noise as pressure).
pub const CANARY_HEADROOM_MS: f64 = 2.0;

/// A second of signals (the report's series, `status`'s view).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SignalSecond {
    /// Seconds since apply started.
    pub at_s: f64,
    /// The canary's slowest commit in the second, and its median.
    pub canary_max_ms: f64,
    pub canary_p50_ms: f64,
    /// Application backends waiting on a lock (most at once).
    pub lock_waiters: u32,
    /// The longest wait of an application backend on a lock a shardready
    /// session holds.
    pub waits_on_us_ms: f64,
    /// Active application backends (most at once).
    pub active: u32,
    /// WAL written per second (MB).
    pub wal_mb_s: Option<f64>,
    /// Checkpoints requested (WAL beyond max_wal_size) since apply started.
    pub checkpoints_req: Option<i64>,
    /// The standby furthest behind (replay).
    pub replica_lag_s: Option<f64>,
    pub replica_lag_mb: Option<f64>,
    /// Each standby the server shows: how far its write, flush and replay
    /// are behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<StandbyLag>,
    /// The application's statements in the second (pg_stat_statements).
    pub stmt_calls: Option<f64>,
    pub stmt_mean_ms: Option<f64>,
    /// The share of the second a runnable task waited for a CPU on this
    /// machine (where the server runs here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_stall: Option<f64>,
    /// What holds the backfill back, when something does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holding: Option<String>,
    /// Active application backends waiting on I/O or internal locks (most
    /// at once), and the wait event most seen in the second.
    #[serde(default)]
    pub waiting: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_top: Option<String>,
    /// The database's commits per second less the sampler's own (without
    /// pg_stat_statements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commits_per_s: Option<f64>,
}

/// One standby as `pg_stat_replication` shows it: MB of WAL not yet
/// written, flushed, replayed there, and the replay delay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StandbyLag {
    pub name: String,
    pub write_mb: f64,
    pub flush_mb: f64,
    pub replay_mb: f64,
    pub replay_s: f64,
}

/// Every standby's write, flush and replay positions against ours.
const STANDBYS: &str = "SELECT application_name::text || '@' || coalesce(client_addr::text, 'local'), \
       coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), write_lsn), 0)::float8 / 1e6, \
       coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), flush_lsn), 0)::float8 / 1e6, \
       coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn), 0)::float8 / 1e6, \
       coalesce(extract(epoch FROM replay_lag), 0)::float8 \
     FROM pg_catalog.pg_stat_replication WHERE replay_lsn IS NOT NULL ORDER BY 1";

/// Every standby the server shows in `pg_stat_replication` (none when the
/// role may not see their positions: `pg_monitor` or superuser can).
pub async fn standbys(client: &Client) -> Result<Vec<StandbyLag>, tokio_postgres::Error> {
    Ok(client
        .query(STANDBYS, &[])
        .await?
        .iter()
        .map(|r| StandbyLag {
            name: r.get(0),
            write_mb: r.get(1),
            flush_mb: r.get(2),
            replay_mb: r.get(3),
            replay_s: r.get(4),
        })
        .collect())
}

/// The host's cumulative CPU stall (PSI `some total`, microseconds).
fn cpu_stall_us() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// Whether the server runs on this machine (a Unix socket or a loopback
/// address): its CPU is this machine's.
fn server_is_here(target: &Target) -> bool {
    target.config.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => true,
    })
}

#[derive(Default)]
struct Shared {
    ticks: VecDeque<Tick>,
    seconds: Vec<SignalSecond>,
    baseline: Option<Baseline>,
    holding: Option<String>,
    error: Option<String>,
}

/// The running sampler.
pub struct Signals {
    shared: Arc<Mutex<Shared>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// What the signals looked like over a run (for the report).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignalReport {
    pub baseline: Option<Baseline>,
    pub seconds: Vec<SignalSecond>,
    /// Why sampling stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run's signals in a few numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignalSummary {
    pub seconds: usize,
    /// The median of the seconds' median canary, and the slowest canary.
    pub canary_p50_ms: f64,
    pub canary_max_ms: f64,
    /// The longest an application backend waited on shardready's locks.
    pub waits_on_us_ms: f64,
    pub wal_peak_mb_s: Option<f64>,
    pub checkpoints_req: i64,
    pub replica_lag_max_s: Option<f64>,
    pub stmt_mean_max_ms: Option<f64>,
    /// The most a second's CPU was contended (server here).
    pub cpu_stall_max: Option<f64>,
    /// The wait event the application's active backends waited on most
    /// (the seconds it topped), and the most of them waiting on I/O or
    /// internal locks at once.
    pub wait_top: Option<(String, usize)>,
    pub waiting_max: u32,
}

impl SignalReport {
    pub fn summary(&self) -> SignalSummary {
        let s = &self.seconds;
        let max = |f: fn(&SignalSecond) -> Option<f64>| s.iter().filter_map(f).reduce(f64::max);
        let mut p50: Vec<f64> = s.iter().map(|x| x.canary_p50_ms).collect();
        p50.sort_by(f64::total_cmp);
        SignalSummary {
            seconds: s.len(),
            canary_p50_ms: p50.get(p50.len() / 2).copied().unwrap_or(0.0),
            canary_max_ms: max(|x| Some(x.canary_max_ms)).unwrap_or(0.0),
            waits_on_us_ms: max(|x| Some(x.waits_on_us_ms)).unwrap_or(0.0),
            wal_peak_mb_s: max(|x| x.wal_mb_s),
            checkpoints_req: s
                .iter()
                .filter_map(|x| x.checkpoints_req)
                .max()
                .unwrap_or(0),
            replica_lag_max_s: max(|x| x.replica_lag_s),
            stmt_mean_max_ms: max(|x| x.stmt_mean_ms),
            cpu_stall_max: max(|x| x.cpu_stall),
            wait_top: {
                let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
                for w in s.iter().filter_map(|x| x.wait_top.as_deref()) {
                    *by.entry(w).or_default() += 1;
                }
                by.into_iter()
                    .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
                    .map(|(w, n)| (w.to_string(), n))
            },
            waiting_max: s.iter().map(|x| x.waiting).max().unwrap_or(0),
        }
    }
}

impl Signals {
    /// Starts sampling on its own connection; `t0` is apply's start (the
    /// series' time axis) and `exclude` the texts of shardready's own
    /// statements that pg_stat_statements would count as the application's
    /// (the backfill batches). Measures the baseline for [`BASELINE`]
    /// before returning. An error (why, for a message) when the
    /// connection fails or nothing could be sampled: apply goes on without.
    pub async fn start(
        target: &Target,
        t0: Instant,
        exclude: Vec<String>,
    ) -> Result<Signals, String> {
        let client = target
            .with_application_name("shardready-signals")
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let text = |e: tokio_postgres::Error| crate::conn::error_text(&e);
        // Our own commits wait for the flush like the application's do.
        crate::db::exec(&client, "SET synchronous_commit = on")
            .await
            .map_err(text)?;
        let canary = client.prepare(CANARY_WRITE).await.map_err(text)?;
        let statements = match crate::stat_statements::readable(&client).await {
            Ok(()) => client.prepare(&statements_sql()).await.ok(),
            Err(_) => None,
        };
        let has_statements = statements.is_some();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = watch::channel(false);
        let sampler = Sampler {
            client,
            canary,
            statements,
            exclude,
            shared: shared.clone(),
            t0,
            first_checkpoints: None,
            last_wal: None,
            last_stmt: None,
            stmt_window: None,
            here: server_is_here(target),
            last_cpu: None,
            cpu_window: None,
            carried: (None, None, None),
            last_active_mean: None,
            commits: VecDeque::new(),
            commits_per_s: None,
            own: 0,
            wait_events: std::collections::HashMap::new(),
        };
        let task = tokio::spawn(sampler.run(stopped));
        let started = Instant::now();
        let by_commits = !has_statements;
        tokio::time::sleep(if by_commits {
            BASELINE_BY_COMMITS
        } else {
            BASELINE
        })
        .await;
        {
            let mut s = lock(&shared);
            let ticks: Vec<&Tick> = s.ticks.iter().filter(|t| t.at >= started).collect();
            if ticks.is_empty() {
                let why = s.error.clone().unwrap_or_else(|| "no sample".into());
                drop(s);
                let _ = stop.send(true);
                return Err(why);
            }
            let mut canary: Vec<f64> = ticks.iter().map(|t| t.canary_ms).collect();
            canary.sort_by(f64::total_cmp);
            let p = |q: f64| canary[((canary.len() - 1) as f64 * q).round() as usize];
            let p99 = p(0.99);
            let stmt: Vec<f64> = ticks.iter().filter_map(|t| t.stmt_mean_ms).collect();
            let wal: Vec<f64> = s.seconds.iter().filter_map(|x| x.wal_mb_s).collect();
            let mean =
                |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            let calls = mean(ticks.iter().filter_map(|t| t.calls_per_s).collect());
            let cpu = mean(ticks.iter().filter_map(|t| t.cpu_stall).collect());
            let active = mean(ticks.iter().map(|t| t.active as f64).collect()).unwrap_or(0.0);
            // The rate over the baseline's readings, as the last tick saw it.
            let commits = ticks.iter().rev().find_map(|t| t.commits_per_s);
            let waiting = mean(ticks.iter().map(|t| t.waiting as f64).collect()).unwrap_or(0.0);
            s.baseline = Some(Baseline {
                seconds: started.elapsed().as_secs_f64(),
                samples: canary.len(),
                canary_p50_ms: p(0.5),
                canary_p99_ms: p99,
                canary_limit_ms: (p99 * 1.5).max(p99 + CANARY_HEADROOM_MS),
                stmt_mean_ms: (!stmt.is_empty())
                    .then(|| stmt.iter().sum::<f64>() / stmt.len() as f64),
                wal_mb_s: (!wal.is_empty()).then(|| wal.iter().sum::<f64>() / wal.len() as f64),
                stmt_calls_per_s: calls,
                active_mean: active,
                cpu_stall: cpu,
                commits_per_s: commits,
                waiting_mean: waiting,
            });
        }
        Ok(Signals { shared, stop, task })
    }

    pub fn baseline(&self) -> Option<Baseline> {
        lock(&self.shared).baseline.clone()
    }

    /// Whether the last second was calm: no canary commit and no lock
    /// wait on shardready over its limit.
    pub fn calm(&self, slow_ms: f64) -> bool {
        let from = Instant::now() - Duration::from_secs(1);
        self.slow_since(from, slow_ms)
            .is_none_or(|(_, slow)| slow == 0)
    }

    /// Waits (at most `max`) until a second has been calm; how long it
    /// waited. Before a step, so a step does not start while the last
    /// one's aftermath (an index build's I/O) still weighs on the
    /// application.
    pub async fn wait_calm(&self, slow_ms: f64, max: Duration) -> Duration {
        let start = Instant::now();
        while !self.calm(slow_ms) && start.elapsed() < max {
            tokio::time::sleep(TICK).await;
        }
        start.elapsed()
    }

    /// Whether the sampler stopped (its connection was lost).
    pub fn is_dead(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops sampling; the series so far.
    pub async fn stop(self) -> SignalReport {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let s = lock(&self.shared);
        SignalReport {
            baseline: s.baseline.clone(),
            seconds: s.seconds.clone(),
            error: s.error.clone(),
        }
    }

    /// The signal behind the slow ticks since `from` (for messages).
    fn reason(&self, from: Instant, slow_ms: f64) -> Option<Holding> {
        let s = lock(&self.shared);
        let b = s.baseline.as_ref()?;
        let ticks = s.ticks.iter().filter(|t| t.at >= from);
        let (mut canary, mut waits, mut stmt) = (0.0_f64, 0.0_f64, 0.0_f64);
        let mut saturated = None;
        for t in ticks {
            canary = canary.max(t.canary_ms);
            waits = waits.max(t.waits_on_us_ms);
            stmt = stmt.max(t.stmt_mean_ms.unwrap_or(0.0));
            saturated = saturated.or_else(|| b.saturated(t));
        }
        if waits > slow_ms {
            Some(Holding {
                signal: "lock waits",
                why: format!(
                    "the application waited {waits:.0} ms on a lock shardready holds (limit {slow_ms:.0} ms)"
                ),
            })
        } else if canary > b.canary_limit_ms {
            Some(Holding {
                signal: "canary",
                why: format!(
                    "canary commit {canary:.1} ms (baseline p99 {:.1} ms, limit {:.1} ms)",
                    b.canary_p99_ms, b.canary_limit_ms
                ),
            })
        } else {
            b.stmt_limit_ms()
                .filter(|&l| stmt > l)
                .map(|l| Holding {
                    signal: "statements",
                    why: format!(
                        "the application's statements average {stmt:.1} ms (limit {l:.1} ms)"
                    ),
                })
                .or(saturated)
        }
    }
}

impl Pressure for Signals {
    /// Each tick is one observation: slow when the canary's commit was
    /// over its limit, an application backend had waited longer than
    /// `slow_ms` on a lock shardready holds, the application's statements
    /// averaged over their limit in that second, or the application showed
    /// no headroom ([`Baseline::saturated`]).
    fn slow_since(&self, from: Instant, slow_ms: f64) -> Option<(u64, u64)> {
        let s = lock(&self.shared);
        let b = s.baseline.as_ref()?;
        let stmt_limit = b.stmt_limit_ms();
        let (mut n, mut slow) = (0, 0);
        for t in s.ticks.iter().filter(|t| t.at >= from) {
            n += 1;
            if t.canary_ms > b.canary_limit_ms
                || t.waits_on_us_ms > slow_ms
                || stmt_limit.zip(t.stmt_mean_ms).is_some_and(|(l, m)| m > l)
                || b.saturated(t).is_some()
            {
                slow += 1;
            }
        }
        Some((n, slow))
    }

    fn holding(&self, from: Instant, slow_ms: f64) -> Option<Holding> {
        self.reason(from, slow_ms)
    }

    fn note_holding(&self, what: Option<String>) {
        lock(&self.shared).holding = what;
    }

    /// Ten ticks a second, each strict (1.5x the baseline's p99): half of
    /// them slow is sustained.
    fn suffering_share(&self) -> f64 {
        0.5
    }

    /// The signals' thresholds are their own (1.5x their baseline), not
    /// the user's budget: they slow the backfill to half its speed at most.
    fn states_the_budget(&self) -> bool {
        false
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many ticks the governor can look back on (ten minutes).
const KEEP_TICKS: usize = 6000;

struct Sampler {
    client: Client,
    canary: tokio_postgres::Statement,
    statements: Option<tokio_postgres::Statement>,
    exclude: Vec<String>,
    shared: Arc<Mutex<Shared>>,
    t0: Instant,
    first_checkpoints: Option<i64>,
    last_wal: Option<(Instant, f64)>,
    last_stmt: Option<(Instant, f64, f64)>,
    /// The last second's statements: calls, mean ms (with enough calls).
    stmt_window: Option<(f64, Option<f64>)>,
    /// Whether the server runs here (its CPU pressure is ours to read).
    here: bool,
    last_cpu: Option<(Instant, f64)>,
    /// The last second's CPU stall share.
    cpu_window: Option<f64>,
    /// What the last second showed, carried on each tick of the next:
    /// statements per second, CPU stall, mean active backends.
    carried: (Option<f64>, Option<f64>, Option<f64>),
    /// The mean of the last second's active application backends.
    last_active_mean: Option<f64>,
    /// Without pg_stat_statements: the database's transactions (commits
    /// and rollbacks) less the sampler's own, read once a second, over the
    /// last few seconds (backends report them up to a second late)...
    commits: VecDeque<(Instant, f64)>,
    /// ...and the rate they give, carried on each tick of the next second.
    commits_per_s: Option<f64>,
    /// The sampler's own transactions so far (each statement it sends).
    own: u64,
    /// The second's wait events of active application backends, by how
    /// many ticks saw each most.
    wait_events: std::collections::HashMap<String, u32>,
}

/// The database's transactions so far (commits and rollbacks).
const XACTS: &str =
    "SELECT (xact_commit + xact_rollback)::float8 FROM pg_catalog.pg_stat_database \
     WHERE datname = current_database()";

/// Commit rates are measured over this many once-a-second readings.
const COMMIT_READINGS: usize = 6;

impl Sampler {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut second: Vec<Tick> = Vec::new();
        let mut last_second: Option<String> = None;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stopped.changed() => return,
            }
            match self.tick(last_second.take(), second.is_empty()).await {
                Ok(t) => {
                    let mut s = lock(&self.shared);
                    s.ticks.push_back(t);
                    if s.ticks.len() > KEEP_TICKS {
                        s.ticks.pop_front();
                    }
                    second.push(t);
                }
                Err(e) => {
                    lock(&self.shared).error = Some(crate::conn::error_text(&e));
                    if self.client.is_closed() {
                        return;
                    }
                }
            }
            if second.len() >= (Duration::from_secs(1).as_millis() / TICK.as_millis()) as usize {
                let sec = self.second(&second).await;
                last_second = serde_json::to_string(&sec).ok();
                lock(&self.shared).seconds.push(sec);
                second.clear();
            }
        }
    }

    /// The canary (carrying the last second's signals, once a second) and
    /// the backends; the statements' mean at the start of each second.
    async fn tick(
        &mut self,
        signals: Option<String>,
        new_second: bool,
    ) -> Result<Tick, tokio_postgres::Error> {
        let t = Instant::now();
        self.client.execute(&self.canary, &[&signals]).await?;
        let canary_ms = t.elapsed().as_secs_f64() * 1000.0;
        let r = self.client.query_one(ACTIVITY, &[]).await?;
        self.own += 2;
        if let Some(top) = r.get::<_, Option<String>>(4) {
            *self.wait_events.entry(top).or_default() += 1;
        }
        if new_second && self.statements.is_none() {
            self.commits_per_s = self.read_commits().await;
        }
        let (stmt_mean_ms, calls_per_s) = match (&self.statements, new_second) {
            (Some(stmt), true) => {
                let r = self.client.query_one(stmt, &[&self.exclude]).await?;
                let now: (Instant, f64, f64) = (Instant::now(), r.get(0), r.get(1));
                // A window under half a second says little (the first
                // tick after the start); a reset or an evicted entry makes
                // the counters go back: no window then.
                let short = self.last_stmt.is_some_and(|(at, _, _)| {
                    now.0.duration_since(at) < Duration::from_millis(500)
                });
                let window = self
                    .last_stmt
                    .filter(|_| !short)
                    .and_then(|(at, calls, ms)| {
                        let dc = now.1 - calls;
                        let secs = now.0.duration_since(at).as_secs_f64().max(1e-3);
                        (dc >= 0.0).then(|| (dc, (dc >= 5.0).then(|| (now.2 - ms) / dc), dc / secs))
                    });
                if !short {
                    self.last_stmt = Some(now);
                }
                self.stmt_window = window.map(|(dc, mean, _)| (dc, mean));
                (
                    window.and_then(|(_, mean, _)| mean),
                    window.map(|(_, _, rate)| rate),
                )
            }
            _ => (None, None),
        };
        let cpu_stall = match (self.here, new_second) {
            (true, true) => {
                let now = cpu_stall_us().map(|us| (Instant::now(), us));
                let share = self.last_cpu.zip(now).map(|((a, x), (b, y))| {
                    ((y - x) / 1e6 / b.duration_since(a).as_secs_f64().max(1e-3)).clamp(0.0, 1.0)
                });
                self.last_cpu = now;
                self.cpu_window = share;
                share
            }
            _ => None,
        };
        // The last second's figures stand for each tick of this one.
        if new_second {
            self.carried = (calls_per_s, cpu_stall, self.last_active_mean.take());
        }
        Ok(Tick {
            at: t,
            canary_ms,
            lock_waiters: r.get::<_, i32>(0).max(0) as u32,
            waits_on_us_ms: r.get(1),
            active: r.get::<_, i32>(2).max(0) as u32,
            stmt_mean_ms,
            calls_per_s: self.carried.0,
            cpu_stall: self.carried.1,
            active_mean: self.carried.2,
            commits_per_s: self.commits_per_s,
            waiting: r.get::<_, i32>(3).max(0) as u32,
        })
    }

    /// The database's transactions per second less the sampler's own, over
    /// the last [`COMMIT_READINGS`] readings (None until there are two, or
    /// when they cannot be read).
    async fn read_commits(&mut self) -> Option<f64> {
        let total: f64 = self.client.query_one(XACTS, &[]).await.ok()?.get(0);
        self.own += 1;
        let now = (Instant::now(), total - self.own as f64);
        // A reset of the statistics makes the counter go back: start again.
        if self.commits.back().is_some_and(|(_, c)| *c > now.1) {
            self.commits.clear();
        }
        self.commits.push_back(now);
        if self.commits.len() > COMMIT_READINGS {
            self.commits.pop_front();
        }
        let (first, last) = (self.commits.front()?, self.commits.back()?);
        let secs = last.0.duration_since(first.0).as_secs_f64();
        (secs >= 0.5).then(|| ((last.1 - first.1) / secs).max(0.0))
    }

    /// Sums a second of ticks, with the once-a-second signals.
    async fn second(&mut self, ticks: &[Tick]) -> SignalSecond {
        self.last_active_mean = (!ticks.is_empty())
            .then(|| ticks.iter().map(|t| t.active as f64).sum::<f64>() / ticks.len() as f64);
        let mut canary: Vec<f64> = ticks.iter().map(|t| t.canary_ms).collect();
        canary.sort_by(f64::total_cmp);
        // The WAL, checkpoint and standby reads below are transactions too.
        self.own += 3;
        let wait_top = self
            .wait_events
            .drain()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(event, _)| event);
        let wal = self
            .client
            .query_one(
                "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::float8",
                &[],
            )
            .await
            .ok()
            .map(|r| r.get::<_, f64>(0));
        let wal_mb_s = wal.and_then(|bytes| {
            let now = Instant::now();
            let rate = self.last_wal.map(|(at, before)| {
                (bytes - before) / 1e6 / now.duration_since(at).as_secs_f64().max(1e-3)
            });
            self.last_wal = Some((now, bytes));
            rate
        });
        let checkpoints = self
            .client
            .query_one(
                "SELECT checkpoints_req FROM pg_catalog.pg_stat_bgwriter",
                &[],
            )
            .await
            .ok()
            .map(|r| r.get::<_, i64>(0));
        let first = *self
            .first_checkpoints
            .get_or_insert(checkpoints.unwrap_or(0));
        let standbys = standbys(&self.client).await.unwrap_or_default();
        let worst = standbys
            .iter()
            .max_by(|a, b| a.replay_mb.total_cmp(&b.replay_mb));
        let (calls, mean) = match self.stmt_window.take() {
            Some((calls, mean)) => (Some(calls), mean),
            None => (None, None),
        };
        let holding = lock(&self.shared).holding.clone();
        SignalSecond {
            at_s: self.t0.elapsed().as_secs_f64(),
            canary_max_ms: canary.last().copied().unwrap_or(0.0),
            canary_p50_ms: canary.get(canary.len() / 2).copied().unwrap_or(0.0),
            lock_waiters: ticks.iter().map(|t| t.lock_waiters).max().unwrap_or(0),
            waits_on_us_ms: ticks.iter().map(|t| t.waits_on_us_ms).fold(0.0, f64::max),
            active: ticks.iter().map(|t| t.active).max().unwrap_or(0),
            wal_mb_s,
            checkpoints_req: checkpoints.map(|c| c - first),
            replica_lag_s: worst.map(|l| l.replay_s),
            replica_lag_mb: worst.map(|l| l.replay_mb),
            standbys: standbys.clone(),
            stmt_calls: calls,
            stmt_mean_ms: mean,
            cpu_stall: self.cpu_window.take(),
            holding,
            waiting: ticks.iter().map(|t| t.waiting).max().unwrap_or(0),
            wait_top,
            commits_per_s: self.commits_per_s,
        }
    }
}

/// The last second's signals as the canary row holds them (for `status`):
/// how long ago it was written, and what it said. None when no apply has
/// sampled here.
pub async fn last(client: &Client) -> Result<Option<(f64, SignalSecond)>, ApplyError> {
    if !super::state::has_table(client, "canary").await? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT extract(epoch FROM now() - at)::float8, signals::text FROM shardready.canary WHERE id = 1",
            &[],
        )
        .await
        .map_err(|e| ApplyError::db("cannot read shardready.canary", e))?;
    Ok(row.and_then(|r| {
        let text: Option<String> = r.get(1);
        let s = serde_json::from_str(&text?).ok()?;
        Some((r.get(0), s))
    }))
}

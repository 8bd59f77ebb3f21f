//! `apply`: runs a plan online. The executor takes the advisory lock, loads
//! (or builds and stores) the plan, and for each step asks the catalog
//! whether it is already done, then runs the step's actions — lock-safe
//! statements ([`crate::db`]), concurrent index builds with invalid-index repair,
//! the backfill controller ([`backfill`]) and the wait for the application
//! to write the new column — recording everything in the `shardready`
//! schema ([`state`]) so a rerun after a crash finishes the job.

pub mod abort;
pub mod backfill;
pub mod budget;
pub mod control;
pub(crate) mod governor;
pub(crate) mod priority;
pub mod probe;
pub(crate) mod saturation;
pub mod signals;
pub mod state;

use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;
use tokio_postgres::Client;

use crate::analyze::{self, AnalyzeOptions};
use crate::catalog::{self, Catalog, QName};
use crate::conn::Target;
use crate::db::{self, DbError, LockMode, LockPolicy, LockStats, RetryError, Session};
use crate::plan::{self, Action, Impact, Plan};
use crate::workload::Workload;
use state::StepState;

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Conn(#[from] crate::conn::ConnError),
    #[error(transparent)]
    Analyze(#[from] analyze::AnalyzeError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("statement failed: {sql}\n{}", crate::conn::error_text(.source))]
    Sql {
        sql: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A failure that is not the driver's (pg_cron's job table, say).
    #[error("{context}: {detail}")]
    Other { context: String, detail: String },
    #[error(
        "gave up after waiting {:.1} s ({attempts} lock timeouts) for a lock: {sql}\n\
         Something holds a conflicting lock for long (see pg_stat_activity / pg_locks). \
         Nothing is half-done: rerun `shardready apply` later, or raise --max-wait.",
        waited.as_secs_f64()
    )]
    GaveUp {
        sql: String,
        waited: Duration,
        attempts: u32,
    },
    #[error("another apply is running ({holder}); only one runs at a time. `shardready status` shows its progress")]
    AlreadyRunning { holder: String },
    #[error(
        "the pre-flight found what would make the preparation fail or reject the application's \
         writes; nothing was changed:\n{}\nResolve each as its fix says, then rerun `shardready apply`.",
        .0.join("\n")
    )]
    Blocked(Vec<String>),
    #[error(
        "the backfill's UPDATEs would fire these triggers, which may change other columns of \
         every row it fills (e.g. a last-update timestamp); nothing was changed:\n{}\n\
         Run apply as a superuser (its backfill then fires no trigger: \
         session_replication_role = replica), or accept it: `shardready apply --fire-triggers`.",
        .0.join("\n")
    )]
    TriggersWouldFire(Vec<String>),
    #[error(
        "the role `{role}` lacks what apply needs; nothing was changed:\n{}\n         Connect as the tables' owner (or a member of its role), or grant what is missing.",
        .missing.join("\n")
    )]
    Privileges { role: String, missing: Vec<String> },
    #[error(
        "stopped before {constraint} on {table} could reject the application's writes: {problem}, \
         e.g. {}. {} {kept}\n\
         Resolve it, then rerun `shardready apply` (it resumes here):\n  - {}",
        keys.join(", "),
        match when {
            Reject::Before => "Nothing of the new constraint was added;",
            Reject::Validating => "The application wrote them while the new constraint was being validated: it was taken away at once;",
        },
        resolve.join("\n  - ")
    )]
    WouldReject {
        table: String,
        constraint: String,
        when: Reject,
        problem: String,
        keys: Vec<String>,
        kept: String,
        resolve: Vec<String>,
    },
    #[error(
        "stopped after swapping the key of {table}: statements of the application the plan did not \
         know (they appeared during apply, or in no source it read) lost their access path with \
         it, measured by their plans' cost or their mean time (pg_stat_statements):\n{}\n\
         {restored}\n\
         Check that nothing else the application runs lost its index (pass its statements with \
         --queries, or enable pg_stat_statements), then rerun `shardready apply` (it resumes here).",
        .statements.join("\n")
    )]
    LostAccessPath {
        table: String,
        statements: Vec<String>,
        /// What was done about it: the index built back, or why not.
        restored: String,
    },
    #[error("the stored state is unreadable ({0}); rerun with --replan")]
    BadState(String),
    #[error(
        "rows still arrive in {table} without {column}: the sync trigger filled {fills} in the last \
         {window_s:.0} s. Update the application to write {column} (like the seed's new \
         create_orders), then rerun `shardready apply` (it resumes here). --force removes the \
         trigger anyway: inserts without {column} will then fail."
    )]
    AppStillWritesWithout {
        table: String,
        column: String,
        fills: i64,
        window_s: f64,
    },
}

/// When a new constraint was found to reject rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Before it was added.
    Before,
    /// While it was validated (rows written since the check).
    Validating,
}

impl ApplyError {
    /// Findings in the data, not failures: the CLI exits 2 for them, as
    /// `analyze` does for blockers.
    pub fn is_blocker(&self) -> bool {
        matches!(
            self,
            ApplyError::Blocked(_)
                | ApplyError::WouldReject { .. }
                | ApplyError::TriggersWouldFire(_)
                | ApplyError::LostAccessPath { .. }
        )
    }

    /// Whether the error is the connection going away (server restart,
    /// terminated session, network): apply reconnects and resumes. Decided
    /// from the driver's error (SQLSTATE, closed connection), never from
    /// message text.
    pub fn is_disconnect(&self) -> bool {
        match self {
            ApplyError::Db(e) => e.is_disconnect(),
            ApplyError::Sql { source, .. } => db::is_disconnect(source),
            ApplyError::Conn(e) => e.is_transient(),
            _ => false,
        }
    }

    /// A statement that failed, named by `sql`.
    pub(crate) fn sql(sql: &str, source: tokio_postgres::Error) -> ApplyError {
        ApplyError::Sql {
            sql: sql.to_string(),
            source,
        }
    }

    pub(crate) fn db(context: &str, e: tokio_postgres::Error) -> ApplyError {
        ApplyError::Db(DbError::new(context, e))
    }

    /// A statement run under the lock policy that did not complete.
    pub(crate) fn retried(sql: &str, e: RetryError) -> ApplyError {
        match e {
            RetryError::Failed(e) => ApplyError::sql(&first_line(sql), e),
            RetryError::GaveUp { waited, attempts } => ApplyError::GaveUp {
                sql: first_line(sql),
                waited,
                attempts,
            },
        }
    }
}

/// A statement for messages (its first meaningful line).
fn first_line(sql: &str) -> String {
    sql.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--"))
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

/// A signal of how much the application suffers right now.
pub trait Pressure: Send + Sync {
    /// Of the application's transactions that completed since `from`: how
    /// many, and how many took longer than `slow_ms`; None when nothing
    /// measures the application.
    fn slow_since(&self, from: Instant, slow_ms: f64) -> Option<(u64, u64)>;
    /// What made the transactions since `from` slow: which signal, and
    /// why in words for the person watching.
    fn holding(&self, _from: Instant, slow_ms: f64) -> Option<Holding> {
        Some(Holding {
            signal: "application latency",
            why: format!("the application's transactions over {slow_ms:.0} ms"),
        })
    }
    /// Notes what holds the backfill back now (None: nothing).
    fn note_holding(&self, _what: Option<String>) {}
    /// The share of its samples that must be slow over a few seconds for
    /// the application to be suffering (not a passing spike): each of the
    /// application's transactions is a sample, so 5%.
    fn suffering_share(&self) -> f64 {
        0.05
    }
    /// Whether this source measures the budget the user stated
    /// (`--app-p99-limit`, the application's own latency): then the
    /// governor holds it down to nearly a pause. A proxy of it (the
    /// database's signals, with thresholds of their own) slows the
    /// backfill to half its speed at most.
    fn states_the_budget(&self) -> bool {
        true
    }
}

/// What holds a governed operation back.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    /// The signal, a short key (`canary`, `lock waits`, `statements`,
    /// `application latency`): what the held-back seconds are summed by.
    pub signal: &'static str,
    /// What it saw, for the progress line and the report.
    pub why: String,
}

/// No application signal.
pub struct NoPressure;
impl Pressure for NoPressure {
    fn slow_since(&self, _: Instant, _: f64) -> Option<(u64, u64)> {
        None
    }
}

impl Pressure for Workload {
    fn slow_since(&self, from: Instant, slow_ms: f64) -> Option<(u64, u64)> {
        Some(self.slow_between(from, Instant::now(), slow_ms))
    }
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub analyze: AnalyzeOptions,
    pub policy: LockPolicy,
    pub pace: backfill::Pace,
    /// Remove the sync trigger even while rows arrive without the column.
    pub force: bool,
    /// Observation window for "the application writes the column itself".
    pub trigger_window: Duration,
    /// How long to keep waiting for the application before stopping.
    pub await_app: Duration,
    /// Build a fresh plan even when a stored one is unfinished.
    pub replan: bool,
    pub progress: bool,
    /// Stop after this many steps (for tests and step-by-step runs).
    pub max_steps: Option<usize>,
    /// Parallel workers for index builds and validations (0: leave the
    /// cores to the application).
    pub parallel_workers: i32,
    /// Who runs the backfill batches.
    pub backfill_via: BackfillVia,
    /// Let the backfill fire the tables' own UPDATE triggers when the role
    /// cannot keep them quiet (not a superuser).
    pub fire_triggers: bool,
    /// Sample the database's own signals ([`signals`]) and pace on them.
    pub signals: bool,
    /// Standbys to watch by their own replay position (`--replica`).
    pub standbys: Vec<Target>,
    /// Give the application's statements their access path back when a
    /// key swap would take it ([`probe`]); off with `--no-lookup-index`
    /// (the statements filter by the tenant already).
    pub lookup_index: bool,
}

/// Who runs the backfill batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackfillVia {
    /// shardready itself, adaptive and throttled on the application's latency.
    Client,
    /// A procedure scheduled with pg_cron (the seed's way, keyset batches).
    PgCron,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            analyze: AnalyzeOptions {
                catalog_only: true,
                ..Default::default()
            },
            policy: LockPolicy {
                lock_timeout: Duration::from_millis(100),
                max_wait: None,
                max_attempts: None,
                statement_timeout: None,
            },
            pace: backfill::Pace::default(),
            force: false,
            trigger_window: Duration::from_secs(5),
            await_app: Duration::from_secs(60),
            replan: false,
            progress: true,
            max_steps: None,
            signals: true,
            lookup_index: true,
            standbys: Vec::new(),
            parallel_workers: 0,
            backfill_via: BackfillVia::Client,
            fire_triggers: false,
        }
    }
}

/// The application during one step (when a workload ran).
#[derive(Debug, Clone, Serialize)]
pub struct AppWindow {
    pub transactions: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Transactions slower than 20 ms (errors included): a p99 of 20 ms
    /// over the whole apply allows 1% of them.
    pub over_20ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub position: usize,
    pub id: String,
    pub description: String,
    pub impact: Impact,
    /// `done`, or `already_done` when the catalog showed it finished.
    pub status: StepOutcome,
    pub seconds: f64,
    pub lock_timeouts: u32,
    pub lock_waited_ms: f64,
    /// Seconds since the start of apply.
    pub started_at_s: f64,
    pub app: Option<AppWindow>,
    /// Each source's samples during the step, and those over budget.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budget: Vec<budget::BudgetUse>,
    /// Waited for the database to calm down before the step started.
    pub waited_for_calm_s: f64,
    /// Its backfill held back (throttled) by the governor.
    pub held_s: f64,
}

/// How a step of this run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// It ran.
    Done,
    /// The catalog showed it finished already.
    AlreadyDone,
}

/// What `apply --report` writes to report.json (schema `shardready.apply/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub schema: &'static str,
    pub tenant_column: String,
    /// The resolutions the plan was made with (its flags).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolutions: Vec<String>,
    /// The column order of each rebuilt key and why (the statements the
    /// plan kept fast).
    #[serde(skip_serializing_if = "crate::plan::keys::Access::is_empty")]
    pub access: crate::plan::keys::Access,
    /// With `--workload`: the application after apply beside its baseline
    /// (a window of traffic alone before the first change and after the
    /// last).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<crate::after::AfterCheck>,
    /// Indexes on an old key's columns built around its swap, because a
    /// statement of the application would lose, or had lost, its access
    /// path ([`probe`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_paths: Vec<probe::KeptPath>,
    pub resumed: bool,
    pub seconds: f64,
    pub steps: Vec<StepReport>,
    pub backfills: Vec<backfill::BackfillStats>,
    pub app: Option<AppWindow>,
    pub finished: bool,
    /// Times the connection was lost and apply reconnected and resumed.
    pub reconnects: u32,
    /// The database's signals over the run, beside the application's
    /// latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signals: Option<signals::SignalReport>,
}

/// Runs the plan for the database at `target`. When `workload` is given
/// its latency paces the backfill and is reported per step.
pub async fn apply(
    target: &Target,
    opts: &ApplyOptions,
    workload: Option<&Workload>,
) -> Result<ApplyReport, ApplyError> {
    let t_start = Instant::now();
    let mut carry = Carry::default();
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = async {
            let session = session(target, opts).await?;
            let r = run(target, &session, opts, workload, t_start, &mut carry).await;
            session.unlock().await;
            r
        }
        .await;
        let result = match result {
            Ok(mut report) => {
                if let Some(s) = carry.signals.take() {
                    report.signals = Some(s.stop().await);
                }
                Ok(report)
            }
            Err(e) if carry.reconnects < MAX_RECONNECTS && e.is_disconnect() => Err(e),
            Err(e) => {
                if let Some(s) = carry.signals.take() {
                    s.stop().await;
                }
                Err(e)
            }
        };
        match result {
            Err(e) if carry.reconnects < MAX_RECONNECTS && e.is_disconnect() => {
                carry.reconnects += 1;
                say(
                    opts,
                    &format!(
                        "        the connection was lost ({}); reconnecting in {:.1} s (attempt {}/{MAX_RECONNECTS}) — steps are safe to resume",
                        e.to_string().lines().last().unwrap_or(""),
                        backoff.as_secs_f64(),
                        carry.reconnects
                    ),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
    }
}

/// The longest a step waits for the signals to calm down before it starts.
const CALM_WAIT: Duration = Duration::from_secs(10);

/// Starts the signals' sampler and says what the baseline was.
async fn start_signals(
    target: &Target,
    plan: &Plan,
    t_start: Instant,
    opts: &ApplyOptions,
) -> Option<signals::Signals> {
    let batches = plan
        .steps
        .iter()
        .flat_map(|s| s.actions())
        .filter_map(|a| match a {
            Action::Backfill { step, .. } => Some(step.batch_query()),
            _ => None,
        })
        .collect();
    say(
        opts,
        &format!(
            "measuring the database's baseline ({:.0} s; {:.0} s without pg_stat_statements, \
             whose commit counters arrive late; nothing changes meanwhile)",
            signals::BASELINE.as_secs_f64(),
            signals::BASELINE_BY_COMMITS.as_secs_f64()
        ),
    );
    let s = signals::Signals::start(target, t_start, batches).await;
    match s.as_ref().map(|s| s.baseline()) {
        Ok(Some(b)) => say(
            opts,
            &format!(
                "        canary commit p50 {:.1} ms, p99 {:.1} ms (slow above {:.1} ms){}{}",
                b.canary_p50_ms,
                b.canary_p99_ms,
                b.canary_limit_ms,
                b.stmt_mean_ms
                    .map(|m| format!("; application statements {m:.2} ms on average"))
                    .unwrap_or_default(),
                b.wal_mb_s
                    .map(|w| format!("; WAL {w:.1} MB/s"))
                    .unwrap_or_default()
            ),
        ),
        Ok(None) => {}
        Err(e) => say(
            opts,
            &format!(
                "        the signals cannot be sampled ({e}); the backfill paces on --workload only"
            ),
        ),
    }
    s.ok()
}

/// How often apply reconnects after losing its connection (a server
/// restart, a network cut) before it gives up.
const MAX_RECONNECTS: u32 = 8;

/// What survives a reconnect: the report so far.
#[derive(Default)]
struct Carry {
    steps: Vec<StepReport>,
    backfills: Vec<backfill::BackfillStats>,
    reconnects: u32,
    resumed: bool,
    /// Access paths the probe put back around a swap.
    kept: Vec<probe::KeptPath>,
    /// The database's signals, sampled across reconnects.
    signals: Option<signals::Signals>,
}

/// A configured apply session holding the advisory lock.
async fn session(target: &Target, opts: &ApplyOptions) -> Result<Session, ApplyError> {
    let client = target
        .with_application_name("shardready-apply")
        .connect_with_retry(10)
        .await?;
    // Leave the other cores to the application: index builds and
    // validations run without parallel workers.
    // synchronous_commit off: backfill batches do not each wait for a WAL
    // flush (less fsync pressure on the application's commits); a batch
    // lost in a crash is lost with its cursor, so a rerun redoes it.
    // force_custom_plan: a generic plan of the prepared batch UPDATE cannot
    // see how small the key range is and may hash-join the whole parent
    // table on every batch.
    let w = opts.parallel_workers;
    for set in [
        format!("SET max_parallel_maintenance_workers = {w}"),
        format!("SET max_parallel_workers_per_gather = {w}"),
        "SET synchronous_commit = off".into(),
        "SET plan_cache_mode = force_custom_plan".into(),
    ] {
        db::exec(&client, &set)
            .await
            .map_err(DbError::ctx("cannot configure the session"))?;
    }
    // Compressed page images: index builds log every page they write
    // (133 MB of WAL for the Tailspin line_items key, 54 MB with lz4), and
    // replicas and the WAL archive receive all of it. Superusers only (and
    // lz4 only where the server has it): otherwise the server's setting
    // stays.
    for value in ["lz4", "on"] {
        let set = format!("SET wal_compression = {value}");
        if db::exec(&client, &set).await.is_ok() {
            break;
        }
    }
    check_privileges(&client, opts).await?;
    Session::lock(client).await.map_err(|e| match e {
        db::LockError::Db(e) => ApplyError::Db(e),
        db::LockError::Held { holder } => ApplyError::AlreadyRunning { holder },
    })
}

/// Before changing anything: the backfill must not change the tables'
/// other columns through their UPDATE triggers (Pagila's `last_updated`
/// would stamp every backfilled row). A superuser's backfill fires none
/// (session_replication_role = replica, see [`backfill::run`]); for other
/// roles, the triggers are named and apply stops unless `--fire-triggers`.
async fn check_user_triggers(
    client: &Client,
    cat: &Catalog,
    plan: &plan::Plan,
    opts: &ApplyOptions,
) -> Result<(), ApplyError> {
    let firing: Vec<String> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            plan::Step::Backfill(b) => cat.table(&b.table),
            _ => None,
        })
        .flat_map(|t| {
            let parent = t.parent.as_ref().and_then(|p| cat.table(p));
            t.triggers
                .iter()
                .chain(parent.into_iter().flat_map(|p| &p.triggers))
                .filter(|tg| {
                    tg.enabled
                        && tg.on_update
                        && !tg.name.starts_with(analyze::rules::triggers::OWN_PREFIX)
                })
                .map(move |tg| {
                    format!("  trigger {} on {} runs {}()", tg.name, t.name, tg.function)
                })
        })
        .collect();
    if firing.is_empty() || opts.fire_triggers || backfill::quiet_triggers(client).await {
        return Ok(());
    }
    Err(ApplyError::TriggersWouldFire(firing))
}

/// Before changing anything: may this role keep state and alter the tables
/// the plan would touch?
async fn check_privileges(client: &Client, opts: &ApplyOptions) -> Result<(), ApplyError> {
    let fail = |e| ApplyError::db("cannot check privileges", e);
    let role = catalog::current_role(client).await.map_err(fail)?;
    let mut missing = Vec::new();
    if !catalog::can_keep_state(client).await.map_err(fail)? {
        missing.push(
            "  CREATE on this database (for the `shardready` schema that records the plan's progress)"
                .to_string(),
        );
    }
    let cat = Catalog::read(client).await.map_err(fail)?;
    // The tables the plan changes: every tenant table (partitions with
    // their parent).
    let tables: Vec<QName> = match analyze::analyze_catalog(&cat, &opts.analyze.overrides) {
        Ok((_, classes, _)) => cat
            .tables
            .iter()
            .filter(|t| {
                classes
                    .iter()
                    .any(|c| &c.table == cat.top_parent(t) && c.class.is_tenant())
            })
            .map(|t| t.name.clone())
            .collect(),
        // No analysis, no plan: the run reports why in a moment.
        Err(_) => Vec::new(),
    };
    for (t, owner) in catalog::not_owned(client, &tables).await.map_err(fail)? {
        missing.push(format!("  ownership of {t} (owned by `{owner}`)"));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::Privileges { role, missing })
    }
}

fn say(opts: &ApplyOptions, msg: &str) {
    if opts.progress {
        eprintln!("{msg}");
    }
}

async fn run(
    target: &Target,
    client: &Session,
    opts: &ApplyOptions,
    workload: Option<&Workload>,
    t_start: Instant,
    carry: &mut Carry,
) -> Result<ApplyReport, ApplyError> {
    // The standbys given are reachable, before anything (state included).
    let mut standbys = Vec::new();
    for t in &opts.standbys {
        standbys.push(control::Standby::connect(t).await?);
    }
    let cat = Catalog::read(client)
        .await
        .map_err(|e| ApplyError::db("cannot read the catalog", e))?;
    let stored = state::load_plan(client).await?;
    // A first run creates its state only after the pre-flight found nothing
    // in the way (below); an earlier run's state is brought up to date.
    if stored.is_some() {
        state::ensure_schema(client).await?;
    }
    // Replanning over an unfinished plan: first give back the autovacuum
    // it holds, so the new plan sees the tables as their owner left them;
    // the columns it added and has not filled yet are analyzed as absent
    // (so the new plan backfills them rather than seeing NULLs), and its
    // trigger removals are carried over.
    let unfinished = match &stored {
        Some((old, false)) if opts.replan => Some(old.clone()),
        _ => None,
    };
    let cat = match &unfinished {
        Some(old) => {
            give_back(client, old, &cat, &opts.policy).await?;
            Catalog::read(client)
                .await
                .map_err(|e| ApplyError::db("cannot read the catalog", e))?
        }
        None => cat,
    };
    let (plan, resumed) = match stored {
        Some((p, false)) if !opts.replan => {
            say(
                opts,
                &format!("resuming the stored plan ({} steps)", p.steps.len()),
            );
            (p, true)
        }
        _ => {
            // Pre-flight: the catalog rules and the data checks, every row
            // (a sample could miss the few rows that would make a step
            // fail, or a new key reject the application's writes), before
            // anything changes.
            say(
                opts,
                "pre-flight: checking the schema and every row the plan depends on",
            );
            let preflight = AnalyzeOptions {
                catalog_only: false,
                full: true,
                ..opts.analyze.clone()
            };
            let seen = match &unfinished {
                Some(old) => before_plan(&cat, old),
                None => cat.clone(),
            };
            let analysis = analyze::analyze_read(client, &seen, &preflight).await?;
            let blocking: Vec<&analyze::Finding> = analysis
                .findings
                .iter()
                .filter(|f| f.blocks_apply())
                .collect();
            let mut manual: Vec<String> =
                blocking.iter().map(|f| format!("  {}", f.line())).collect();
            manual.extend(analyze::accept_all::accept_all(&blocking));
            if !manual.is_empty() {
                return Err(ApplyError::Blocked(manual));
            }
            let mut p = plan::build(&analysis, &seen);
            check_user_triggers(client, &seen, &p, opts).await?;
            if let Some(old) = &unfinished {
                carry_helpers(&mut p, old, &cat);
            }
            state::ensure_schema(client).await?;
            state::save_plan(client, &p).await?;
            (p, false)
        }
    };
    control::new_run(client).await?;
    if opts.signals
        && carry.signals.as_ref().is_none_or(|s| s.is_dead())
        && plan.steps.iter().any(|s| !s.is_done(&cat))
    {
        carry.signals = start_signals(target, &plan, t_start, opts).await;
    }
    if carry.reconnects == 0
        && plan
            .steps
            .iter()
            .any(|s| s.impact() != Impact::Brief && !s.is_done(&cat))
    {
        say(opts, &priority::banner(client).await);
    }
    let mut pressures: Vec<&dyn Pressure> = Vec::new();
    if let Some(w) = workload {
        pressures.push(w);
    }
    if let Some(s) = &carry.signals {
        pressures.push(s);
    }
    if carry.reconnects == 0 {
        carry.resumed = resumed;
    }
    let report = |carry: &Carry, finished: bool| ApplyReport {
        schema: "shardready.apply/v1",
        tenant_column: plan.tenant_column.clone(),
        resolutions: plan.resolutions.clone(),
        access: plan.access.clone(),
        after: Vec::new(),
        kept_paths: carry.kept.clone(),
        resumed: carry.resumed,
        seconds: t_start.elapsed().as_secs_f64(),
        steps: carry.steps.clone(),
        backfills: carry.backfills.clone(),
        app: finished
            .then(|| workload.map(|w| window(w, t_start, Instant::now())))
            .flatten(),
        finished,
        reconnects: carry.reconnects,
        signals: None,
    };
    let n = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        if opts.max_steps.is_some_and(|m| i >= m) {
            return Ok(report(carry, false));
        }
        let id = step.id();
        let cat = Catalog::read(client)
            .await
            .map_err(|e| ApplyError::db("cannot read the catalog", e))?;
        let started_at_s = t_start.elapsed().as_secs_f64();
        if step.is_done(&cat) {
            state::mark(
                client,
                &id,
                StepState::Done,
                Some(0.0),
                0,
                Some("already done"),
            )
            .await?;
            say(
                opts,
                &format!("[{:>2}/{n}] {} — already done", i + 1, step.describe()),
            );
            // Done before a reconnect: keep that attempt's record.
            if carry.steps.iter().any(|s| s.id == id) {
                continue;
            }
            carry.steps.push(StepReport {
                position: i + 1,
                id,
                description: step.describe(),
                impact: step.impact(),
                status: StepOutcome::AlreadyDone,
                seconds: 0.0,
                lock_timeouts: 0,
                lock_waited_ms: 0.0,
                started_at_s,
                app: None,
                budget: Vec::new(),
                waited_for_calm_s: 0.0,
                held_s: 0.0,
            });
            continue;
        }
        // `shardready pause` holds the next step too (nothing runs, no
        // lock is held) until `shardready resume`.
        control::wait_while_paused(client, opts.progress).await?;
        let mut waited_for_calm = Duration::ZERO;
        if let Some(s) = &carry.signals {
            let waited = s.wait_calm(opts.pace.app_p99_limit_ms, CALM_WAIT).await;
            waited_for_calm = waited;
            if waited > signals::TICK * 2 {
                say(
                    opts,
                    &format!(
                        "        waited {:.1} s for the database to calm down before the next step",
                        waited.as_secs_f64()
                    ),
                );
            }
        }
        say(opts, &format!("[{:>2}/{n}] {}", i + 1, step.describe()));
        state::mark(client, &id, StepState::Running, None, 0, None).await?;
        let t0 = Instant::now();
        let mut stats = LockStats::default();
        let mut held = 0.0;
        // The application's lookups of a swapped table, costed before it.
        let watch = match step {
            plan::Step::SwapKey(swap) if opts.lookup_index => {
                probe::Probe::before(target, &cat, &opts.analyze.overrides.queries, swap).await
            }
            _ => None,
        };
        // A statement that would lose its access path gets it back before
        // the swap, not after.
        let mut foreseen = false;
        if let Some(watch) = &watch {
            if let Some(back) = watch.predict(&cat) {
                let kept = keep_path(client, watch, back, "would lose", opts, &mut stats).await?;
                carry.kept.push(kept);
                foreseen = true;
            }
        }
        // The views a swap carries, as they are now.
        let actions = match step {
            plan::Step::SwapKey(swap) if !swap.views.is_empty() => {
                plan::StepKind::actions(&swap.with_current_views(&cat).map_err(|detail| {
                    ApplyError::Other {
                        context: format!("cannot swap the key of {}", swap.table),
                        detail,
                    }
                })?)
            }
            _ => step.actions(),
        };
        for action in actions {
            match action {
                Action::Backfill { step: b, .. } => {
                    let mut pace = opts.pace;
                    pace.lock_timeout = opts.policy.lock_timeout;
                    let b = match opts.backfill_via {
                        BackfillVia::Client => {
                            backfill::run(client, &b, &pace, &pressures, &standbys, opts.progress)
                                .await?
                        }
                        BackfillVia::PgCron => {
                            backfill::run_pg_cron(client, &b, &pace, &pressures, opts.progress)
                                .await?
                        }
                    };
                    stats.lock_timeouts += b.lock_timeouts;
                    held += b.throttled_seconds;
                    let waits: String = [
                        (
                            b.replica_wait_seconds,
                            "waiting for standbys (--max-replica-lag)",
                        ),
                        (b.paused_seconds, "paused (shardready pause)"),
                    ]
                    .iter()
                    .filter(|(s, _)| *s > 0.0)
                    .map(|(s, what)| format!(", {s:.1} s {what}"))
                    .collect();
                    say(
                        opts,
                        &format!(
                            "        {} rows{} in {} batches, {:.1} s ({:.0} rows/s), throttled {:.1} s, {} light vacuums{waits}",
                            b.rows,
                            if b.earlier_rows > 0 {
                                format!(" ({} of them before the interruption)", b.earlier_rows)
                            } else {
                                String::new()
                            },
                            b.batches,
                            b.seconds,
                            b.rows_per_second(),
                            b.throttled_seconds,
                            b.reclaims
                        ),
                    );
                    carry.backfills.push(b);
                }
                Action::AwaitAppWrites {
                    table,
                    column,
                    counter,
                } => {
                    await_app_writes(client, &table, &column, &counter, opts).await?;
                }
                other => stats.add(execute(client, &other, &opts.policy).await?),
            }
        }
        // What the prediction could not see: measured after the swap. The
        // swap is done; the access path is built back (a failed build is
        // said, not an error), and apply stops after this step: the plan's
        // knowledge of the application was short.
        let mut lost = None;
        if let (Some(watch), false) = (&watch, foreseen) {
            if let Some(back) = watch.after().await {
                let table = back.table.to_string();
                let (index, create) = (back.index.clone(), back.create_sql.clone());
                let named = back.named();
                let kept = keep_path(client, watch, back, "lost", opts, &mut stats).await;
                lost = Some(match kept {
                    Ok(kept) => {
                        let restored = format!(
                            "The index {index} was built back for them; once they filter by the \
                             tenant column, drop it: {}",
                            kept.drop_sql
                        );
                        let statements = kept.statements.clone();
                        carry.kept.push(kept);
                        ApplyError::LostAccessPath {
                            table,
                            statements,
                            restored,
                        }
                    }
                    // A lost connection: apply reconnects and resumes.
                    Err(e) if e.is_disconnect() => return Err(e),
                    Err(e) => {
                        say(
                            opts,
                            &format!("        the access path could not be built back: {e}"),
                        );
                        ApplyError::LostAccessPath {
                            table,
                            statements: named,
                            restored: format!(
                                "The index {index} could not be built back ({e}); build it by \
                                 hand: {create}"
                            ),
                        }
                    }
                });
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        state::mark(
            client,
            &id,
            StepState::Done,
            Some(secs),
            stats.lock_timeouts,
            None,
        )
        .await?;
        let app = workload.map(|w| window(w, t0, Instant::now()));
        let used = budget::since(&pressures, t0, opts.pace.app_p99_limit_ms);
        say(
            opts,
            &format!(
                "        done in {secs:.2} s{}{}{}",
                if stats.lock_timeouts > 0 {
                    format!(", {} lock timeouts (retried)", stats.lock_timeouts)
                } else {
                    String::new()
                },
                app.as_ref()
                    .map(|a| if a.transactions == 0 && a.errors == 0 {
                        "; no application transaction ended meanwhile".to_string()
                    } else {
                        format!(
                            "; app p99 {:.1} ms, max {:.1} ms, errors {}",
                            a.p99_ms, a.max_ms, a.errors
                        )
                    })
                    .unwrap_or_default(),
                budget::step_line(&used)
                    .map(|l| format!("; {l}"))
                    .unwrap_or_default()
            ),
        );
        carry.steps.push(StepReport {
            position: i + 1,
            id,
            description: step.describe(),
            impact: step.impact(),
            status: StepOutcome::Done,
            seconds: secs,
            lock_timeouts: stats.lock_timeouts,
            lock_waited_ms: stats.waited.as_secs_f64() * 1000.0,
            started_at_s,
            app,
            budget: used,
            waited_for_calm_s: waited_for_calm.as_secs_f64(),
            held_s: held,
        });
        if let Some(stop) = lost {
            return Err(stop);
        }
    }
    state::finish_plan(client).await?;
    Ok(report(carry, true))
}

/// Builds the index that gives statements their access path back, says
/// so, and returns its record.
async fn keep_path(
    client: &Session,
    watch: &probe::Probe,
    back: probe::Lookback,
    lost: &str,
    opts: &ApplyOptions,
    stats: &mut LockStats,
) -> Result<probe::KeptPath, ApplyError> {
    say(
        opts,
        &format!(
            "        a statement of the application {lost} its access path with this swap: building {} on {} ({}) concurrently",
            back.index,
            back.table,
            back.columns.join(", ")
        ),
    );
    let schema = back.table.schema.clone();
    let (index, sql) = (back.index.clone(), back.create_sql.clone());
    stats.add(build_index(client, &schema, &index, &sql, &opts.policy).await?);
    let kept = watch.kept(back).await;
    for st in &kept.statements {
        say(opts, &format!("          {st}"));
    }
    Ok(kept)
}

/// The catalog as a new plan should see it over the unfinished plan `old`:
/// each column `old` added that is not NOT NULL yet is taken out, with what
/// was built on it (indexes, keys, foreign keys, the sync trigger), so the
/// new plan derives its steps again (those done are skipped as done).
fn before_plan(cat: &Catalog, old: &Plan) -> Catalog {
    let mut out = cat.clone();
    for step in &old.steps {
        let plan::Step::AddColumn(a) = step else {
            continue;
        };
        let Some(t) = out.tables.iter_mut().find(|t| t.name == a.table) else {
            continue;
        };
        if t.column(&a.column).is_none_or(|c| c.not_null) {
            continue;
        }
        let col = a.column.as_str();
        t.columns.retain(|c| c.name != col);
        t.keys.retain(|k| !k.columns.iter().any(|c| c == col));
        t.unique_indexes
            .retain(|ix| !ix.columns.iter().any(|c| c.as_deref() == Some(col)));
        t.foreign_keys
            .retain(|fk| !fk.columns.iter().any(|c| c == col));
        let triggers: Vec<&str> = old
            .steps
            .iter()
            .filter_map(|s| match s {
                plan::Step::SyncTrigger(st) if st.table == a.table => Some(st.trigger.as_str()),
                _ => None,
            })
            .collect();
        t.triggers
            .retain(|tr| !triggers.contains(&tr.name.as_str()));
    }
    out
}

/// Carries the unfinished plan's trigger removals into the new plan when
/// the new one has none for that table (its column is filled and NOT NULL,
/// so the new plan does not know it was ever synced): shardready's own
/// helpers are never left behind.
fn carry_helpers(p: &mut Plan, old: &Plan, cat: &Catalog) {
    for step in &old.steps {
        if !matches!(step, plan::Step::DropTrigger(_)) || step.is_done(cat) {
            continue;
        }
        if p.steps.iter().any(|s| s.id() == step.id()) {
            continue;
        }
        let at = p
            .steps
            .iter()
            .position(|s| matches!(s, plan::Step::Vacuum(_) | plan::Step::Analyze(_)))
            .unwrap_or(p.steps.len());
        p.steps.insert(at, step.clone());
    }
}

/// Runs one statement-level action under the lock policy (the backfill
/// and the wait for the application are run by [`run`] itself).
async fn execute(
    session: &Session,
    action: &Action,
    policy: &LockPolicy,
) -> Result<LockStats, ApplyError> {
    match action {
        Action::Txn { statements, lock } => execute_txn(session, statements, *lock, policy).await,
        Action::Bare { sql } => session
            .run_bare(sql, policy)
            .await
            .map_err(|e| ApplyError::retried(sql, e)),
        Action::BuildIndex { schema, index, sql } => {
            build_index(session, schema, index, sql, policy).await
        }
        Action::Backfill { .. } | Action::AwaitAppWrites { .. } => Ok(LockStats::default()),
        Action::Constrain {
            table,
            constraint,
            violations,
            add,
            validate,
            drop,
            problem,
            kept,
            resolve,
        } => {
            let rejects = |when: Reject, keys: Vec<String>| ApplyError::WouldReject {
                table: table.to_string(),
                constraint: constraint.clone(),
                when,
                problem: problem.clone(),
                keys,
                kept: kept.clone(),
                resolve: resolve.clone(),
            };
            let offending = |sql: &str| {
                let sql = sql.to_string();
                async move {
                    session
                        .query(&sql, &[])
                        .await
                        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
                        .map_err(|e| ApplyError::sql(&sql, e))
                }
            };
            // Rows that violate it now: not added (and taken away, if a
            // killed run had added it), or it would reject writes like them.
            let keys: Vec<String> = offending(violations).await?;
            if !keys.is_empty() {
                execute_txn(session, drop, LockMode::Brief, policy).await?;
                return Err(rejects(Reject::Before, keys));
            }
            let mut stats = execute_txn(session, add, LockMode::Brief, policy).await?;
            let mut validated = Ok(());
            for v in validate {
                let validating = execute_txn(
                    session,
                    std::slice::from_ref(v),
                    LockMode::NonBlocking,
                    policy,
                );
                match priority::yielding(session, validating).await {
                    Ok(s) => stats.add(s),
                    Err(e) => {
                        validated = Err(e);
                        break;
                    }
                }
            }
            match validated {
                Ok(()) => Ok(stats),
                Err(e) => {
                    // The application wrote such rows since the check: take
                    // the constraint away at once, then say which.
                    execute_txn(session, drop, LockMode::Brief, policy).await?;
                    let keys = offending(violations).await?;
                    if keys.is_empty() {
                        return Err(e);
                    }
                    Err(rejects(Reject::Validating, keys))
                }
            }
        }
    }
}

/// Statements in one transaction under the lock policy.
async fn execute_txn(
    session: &Session,
    statements: &[String],
    lock: LockMode,
    policy: &LockPolicy,
) -> Result<LockStats, ApplyError> {
    session
        .run_txn(statements, lock, policy)
        .await
        .map_err(|e| ApplyError::retried(&statements.join("\n"), e))
}

/// Before a new plan replaces an unfinished one: what the old plan's
/// unfinished steps must give back (autovacuum held off a table), so the
/// new plan sees the tables as their owner left them.
async fn give_back(
    session: &Session,
    plan: &Plan,
    cat: &Catalog,
    policy: &LockPolicy,
) -> Result<(), ApplyError> {
    for step in &plan.steps {
        if !step.is_done(cat) {
            for action in step.on_replan() {
                execute(session, &action, policy).await?;
            }
        }
    }
    Ok(())
}

fn window(w: &Workload, from: Instant, to: Instant) -> AppWindow {
    let (l, tx, errors, over_20ms) = w.window(from, to, 20.0);
    AppWindow {
        transactions: tx,
        errors,
        p50_ms: l.p50_ms,
        p99_ms: l.p99_ms,
        max_ms: l.max_ms,
        over_20ms,
    }
}

/// CREATE UNIQUE INDEX CONCURRENTLY, repairing what an interrupted build
/// left: an INVALID index is dropped concurrently and the build retried.
async fn build_index(
    session: &Session,
    schema: &str,
    index: &str,
    sql: &str,
    policy: &LockPolicy,
) -> Result<LockStats, ApplyError> {
    let mut stats = LockStats::default();
    let drop = format!(
        "DROP INDEX CONCURRENTLY IF EXISTS {};",
        crate::sql::qualified(schema, index)
    );
    let bare = |sql: &str| {
        let sql = sql.to_string();
        async move {
            session
                .run_bare(&sql, policy)
                .await
                .map_err(|e| ApplyError::retried(&sql, e))
        }
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        match catalog::index_valid(session, schema, index)
            .await
            .map_err(|e| ApplyError::db("cannot read pg_index", e))?
        {
            Some(true) => return Ok(stats),
            Some(false) => stats.add(bare(&drop).await?),
            None => {}
        }
        // The build yields the CPU to the application where it can.
        match priority::yielding(session, bare(sql)).await {
            Ok(s) => {
                stats.add(s);
                return Ok(stats);
            }
            Err(e) if attempt < 3 => {
                tracing::warn!("index build failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => {
                // Leave nothing invalid behind.
                if catalog::index_valid(session, schema, index)
                    .await
                    .ok()
                    .flatten()
                    == Some(false)
                {
                    let _ = bare(&drop).await;
                }
                return Err(e);
            }
        }
    }
}

/// Waits until a full window passes without the sync trigger having to
/// fill the column (the application writes it itself).
async fn await_app_writes(
    client: &Client,
    table: &QName,
    column: &str,
    counter: &QName,
    opts: &ApplyOptions,
) -> Result<(), ApplyError> {
    let (table, column) = (table.to_string(), column.to_string());
    let deadline = Instant::now() + opts.await_app;
    let mut told = false;
    loop {
        let before = catalog::sequence_value(client, counter)
            .await
            .map_err(|e| ApplyError::db("cannot read the trigger's counter", e))?;
        tokio::time::sleep(opts.trigger_window).await;
        let after = catalog::sequence_value(client, counter)
            .await
            .map_err(|e| ApplyError::db("cannot read the trigger's counter", e))?;
        let fills = after - before;
        if fills == 0 {
            return Ok(());
        }
        if opts.force {
            say(
                opts,
                &format!("        --force: removing the trigger although {fills} rows arrived without {column} in the last {:.0} s", opts.trigger_window.as_secs_f64()),
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ApplyError::AppStillWritesWithout {
                table,
                column,
                fills,
                window_s: opts.trigger_window.as_secs_f64(),
            });
        }
        if !told {
            say(
                opts,
                &format!(
                    "        rows still arrive in {table} without {column} ({fills} in {:.0} s): waiting up to {:.0} s for the application to write it",
                    opts.trigger_window.as_secs_f64(),
                    opts.await_app.as_secs_f64()
                ),
            );
            told = true;
        }
    }
}

/// Reads the plan status (for `shardready status`).
pub async fn status(target: &Target) -> Result<state::ApplyStatus, ApplyError> {
    let client = target.connect().await?;
    state::status(&client).await
}

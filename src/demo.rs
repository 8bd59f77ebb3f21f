//! `demo`: the whole Tailspin Toys exercise on a fresh sandbox — schema,
//! load, pg_cron check, the timed `create_orders(20000)`, analyze, apply
//! under the application's traffic, verify, the timed call again — and a
//! disruption report (Markdown, HTML, JSON, SVG and PNG chart). Where Citus
//! is installed, the sandbox is a single-node Citus cluster like the seed's
//! and the demo ends with the seed's next units: distributing the prepared
//! tables, then scaling out onto new local workers, under the same traffic. With
//! `compare_seed`, the seed's procedure as written runs on an identical
//! second database under the same traffic, side by side.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::apply::{self, ApplyOptions};
use crate::conn::Target;
use crate::report::{DemoReport, PhaseRow, Run, TableConstraint};
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::workload::{self, Mode, StoreIdMode, Workload, WorkloadConfig};

#[derive(Debug, Error)]
pub enum DemoError {
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Conn(#[from] crate::conn::ConnError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    #[error(transparent)]
    Workload(#[from] workload::WorkloadError),
    #[error(transparent)]
    Analyze(#[from] crate::analyze::AnalyzeError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error(transparent)]
    Baseline(#[from] crate::baseline::BaselineError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Citus(#[from] crate::citus::CitusError),
    #[error("{context}: {detail}")]
    Other { context: String, detail: String },
    /// The directory holds a sandbox the demo did not create: the demo
    /// starts each run afresh, so it would remove it.
    #[error(
        "{dir} holds a sandbox the demo did not create, and the demo starts from a fresh one: \
         nothing was changed. Give the demo its own directory (`shardready demo --dir \
         /tmp/demo-sandbox`), or remove that sandbox first if you no longer need it \
         (`shardready sandbox destroy --dir {dir}`)"
    )]
    NotTheDemosSandbox { dir: String },
    #[error("--{option} {value}: {why}")]
    BadOption {
        option: &'static str,
        value: String,
        why: &'static str,
    },
}

fn other(context: &str, detail: impl ToString) -> DemoError {
    DemoError::Other {
        context: context.into(),
        detail: detail.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub scale: f64,
    /// Orders per second of the application's traffic.
    pub rate: f64,
    pub connections: usize,
    pub out: PathBuf,
    pub sandbox_dir: PathBuf,
    pub keep: bool,
    pub compare_seed: bool,
    /// Orders of the timed `create_orders(N)` (the seed: 20000).
    pub create_orders: i32,
    /// Traffic before and after the preparation, for the baseline.
    pub settle: Duration,
    /// Citus workers to scale out to at the end (where Citus is
    /// installed; 0: distribute on the single node and stop there).
    pub workers: u16,
    pub progress: bool,
}

fn say(opts: &DemoOptions, msg: &str) {
    if opts.progress {
        eprintln!("{msg}");
    }
}

fn row(
    w: &Workload,
    t0: Instant,
    phase: &str,
    seed_step: &str,
    from: Instant,
    to: Instant,
) -> PhaseRow {
    PhaseRow::measure(w, t0, phase, seed_step, from, to)
}

impl Run {
    /// A finished run: its phases, create_orders timed (before, after) the
    /// key swap, the traffic it ran under and the keys it left on `t`.
    async fn finish(
        label: &str,
        t: &Target,
        phases: Vec<PhaseRow>,
        (before, after): (Duration, Duration),
        wl: workload::WorkloadReport,
        apply: Option<apply::ApplyReport>,
    ) -> Result<Run, DemoError> {
        Ok(Run {
            label: label.into(),
            after: crate::report::after_checks(&phases),
            phases,
            create_orders_before_s: before.as_secs_f64(),
            create_orders_after_s: after.as_secs_f64(),
            speedup: before.as_secs_f64() / after.as_secs_f64().max(1e-9),
            final_keys: final_keys(t).await?,
            workload: wl.summary,
            timeline: wl.timeline,
            apply,
            signals: Vec::new(),
        })
    }
}

async fn final_keys(t: &Target) -> Result<Vec<TableConstraint>, DemoError> {
    let c = t.connect().await?;
    let cat = crate::catalog::Catalog::read(&c)
        .await
        .map_err(crate::db::DbError::ctx("cannot read the catalog"))?;
    let mut out = Vec::new();
    for t in &cat.tables {
        let keys = t.keys.iter().map(|k| (&k.name, &k.definition));
        let fks = t.foreign_keys.iter().map(|k| (&k.name, &k.definition));
        for (name, definition) in keys.chain(fks) {
            out.push(TableConstraint {
                table: t.name.to_string(),
                constraint: format!("{name} {definition}"),
            });
        }
    }
    Ok(out)
}

async fn load_copy(
    sb: &Sandbox,
    db: &str,
    opts: &DemoOptions,
) -> Result<(Target, crate::ingest::TailspinLoad), DemoError> {
    if db != crate::sandbox::DATABASE {
        sb.psql_command(&format!("CREATE DATABASE {}", crate::sql::ident(db)))?;
    }
    let t = Target::parse(&sb.url_for(db))?;
    let mut c = t.connect().await?;
    crate::ingest::create_tailspin_schema(&c, false).await?;
    let l = crate::ingest::load_tailspin(&mut c, None, opts.scale, 42, opts.progress).await?;
    crate::db::exec(&c, "VACUUM ANALYZE")
        .await
        .map_err(crate::db::DbError::ctx("VACUUM ANALYZE"))?;
    Ok((t, l))
}

fn wl_config(opts: &DemoOptions) -> WorkloadConfig {
    WorkloadConfig {
        rate: opts.rate,
        duration: None,
        connections: opts.connections,
        mode: Mode::Client,
        // The application is updated to write store_id as soon as the
        // column exists (the seed's "update application queries").
        store_id: StoreIdMode::Auto,
        batch: 3,
        seed: 20,
        live: false,
    }
}

/// Starts the application's traffic and lets it run alone for the
/// baseline: the workload, its start, and the baseline phase row.
async fn start_traffic(
    t: &Target,
    opts: &DemoOptions,
    store_id: StoreIdMode,
) -> Result<(Workload, Instant, Vec<PhaseRow>), DemoError> {
    let w = Workload::start(
        t,
        WorkloadConfig {
            store_id,
            ..wl_config(opts)
        },
    )
    .await?;
    let t0 = w.started();
    tokio::time::sleep(opts.settle).await;
    let baseline = row(
        &w,
        t0,
        "baseline (traffic only)",
        "create_orders job running",
        t0,
        Instant::now(),
    );
    Ok((w, t0, vec![baseline]))
}

/// Lets the traffic run alone for the settle time: a phase named `name`.
async fn settle_phase(
    w: &Workload,
    t0: Instant,
    phases: &mut Vec<PhaseRow>,
    opts: &DemoOptions,
    name: &str,
) {
    let from = Instant::now();
    tokio::time::sleep(opts.settle).await;
    phases.push(row(w, t0, name, "", from, Instant::now()));
}

/// [`settle_phase`], with the application's statements counted in
/// pg_stat_statements over it (empty where it is not installed).
async fn settle_counted(
    (w, t0, phases): (&Workload, Instant, &mut Vec<PhaseRow>),
    opts: &DemoOptions,
    name: &str,
    client: &tokio_postgres::Client,
) -> Vec<crate::stat_statements::Rate> {
    let work = settle_phase(w, t0, phases, opts, name);
    let ((), rates) = crate::stat_statements::during(client, work).await;
    rates.unwrap_or_default()
}

/// shardready's run: create_orders timed, analyze, apply under traffic,
/// verify, create_orders timed again (the traffic paused), and with
/// `citus` (the spare nodes to scale out to) the distribution on the
/// single node and the scale-out under the traffic.
async fn our_run(
    t: &Target,
    opts: &DemoOptions,
    citus: Option<Vec<String>>,
    report: &mut DemoReport,
) -> Result<Run, DemoError> {
    say(
        opts,
        &format!(
            "== create_orders({}) before the key swap (the seed's \\timing step)",
            opts.create_orders
        ),
    );
    let before = workload::time_create_orders(t, opts.create_orders, StoreIdMode::Never).await?;
    say(opts, &format!("   {:.1} s", before.as_secs_f64()));
    say(opts, "== analyze");
    let c = t.connect().await?;
    let analysis = crate::analyze::analyze(
        &c,
        &crate::analyze::AnalyzeOptions {
            catalog_only: false,
            ..Default::default()
        },
    )
    .await?;
    report.blockers_before = analysis.counts.blockers;
    if opts.progress {
        eprint!("{}", crate::report::text::analysis_text(&analysis, false));
    }
    say(
        opts,
        &format!(
            "== the application's traffic starts: {:.0} orders/min",
            opts.rate * 60.0
        ),
    );
    let (w, t0, mut phases) = start_traffic(t, opts, StoreIdMode::Auto).await?;
    say(opts, "== apply (with the traffic running)");
    let apply_t0 = Instant::now();
    let aopts = ApplyOptions {
        progress: opts.progress,
        trigger_window: Duration::from_secs(3),
        ..ApplyOptions::default()
    };
    let rep = apply::apply(t, &aopts, Some(&w)).await?;
    // The database's signals on the run's time axis.
    let offset = apply_t0.duration_since(t0).as_secs_f64();
    let mut signals: Vec<crate::apply::signals::SignalSecond> = rep
        .signals
        .iter()
        .flat_map(|s| s.seconds.iter().cloned())
        .map(|mut s| {
            s.at_s += offset;
            s
        })
        .collect();
    // Group the steps into the seed's phases.
    let groups: [(&str, &str, &[&str]); 6] = [
        (
            "add column + sync trigger",
            "ALTER TABLE line_items ADD COLUMN store_id",
            &["add-column", "sync-trigger", "hold-autovacuum"],
        ),
        (
            "backfill",
            "backfill_batch(1000000) via pg_cron",
            &["backfill"],
        ),
        (
            "NOT NULL",
            "(implied by the primary key swap)",
            &["not-null"],
        ),
        (
            "unique indexes",
            "CREATE UNIQUE INDEX CONCURRENTLY ... _tmp_idx",
            &["unique-index"],
        ),
        (
            "foreign keys + key swap",
            "DROP CONSTRAINT ... CASCADE, ADD PRIMARY KEY USING INDEX, ADD FOREIGN KEY",
            &["foreign-key", "swap-key"],
        ),
        (
            "trigger removal, VACUUM + ANALYZE",
            "update application queries",
            &["drop-trigger", "vacuum", "analyze"],
        ),
    ];
    for (name, seed_step, kinds) in groups {
        let steps: Vec<_> = rep
            .steps
            .iter()
            .filter(|s| kinds.iter().any(|k| s.id.split(':').next() == Some(*k)))
            .collect();
        let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
            continue;
        };
        let from = apply_t0 + Duration::from_secs_f64(first.started_at_s);
        let to = apply_t0 + Duration::from_secs_f64(last.started_at_s + last.seconds);
        phases.push(row(&w, t0, name, seed_step, from, to));
    }
    say(opts, "== verify");
    let v = crate::verify::verify(&c, &Default::default()).await?;
    report.verified = v.ok;
    for ch in &v.checks {
        say(
            opts,
            &format!("   {} {}", if ch.ok { "ok  " } else { "FAIL" }, ch.name),
        );
    }
    let statements_before =
        settle_counted((&w, t0, &mut phases), opts, "after (traffic only)", &c).await;
    // The seed times create_orders again on a quiet database: the traffic
    // pauses for it (and resumes for the distribution).
    w.pause().await;
    say(opts, "== unschedule jobs");
    let jobs = crate::cron::list(&c).await.unwrap_or_default();
    for j in jobs.iter().filter_map(|j| j.jobname.as_deref()) {
        let _ = crate::cron::unschedule(&c, j).await;
    }
    say(
        opts,
        &format!(
            "== create_orders({}) after the key swap",
            opts.create_orders
        ),
    );
    let after = workload::time_create_orders(t, opts.create_orders, StoreIdMode::Auto).await?;
    say(
        opts,
        &format!(
            "   {:.1} s ({:.1}x faster)",
            after.as_secs_f64(),
            before.as_secs_f64() / after.as_secs_f64()
        ),
    );
    if let (Some(nodes), true) = (citus, v.ok) {
        w.resume();
        let (mut d, sig) = distribute_phase(t, opts, &w, t0, &mut phases).await?;
        signals.extend(sig);
        report.distribution = distributed_line(&d, phases.last().expect("the phase"));
        let after = settle_counted(
            (&w, t0, &mut phases),
            opts,
            "after distribution (traffic only)",
            &c,
        )
        .await;
        d.statements_after = compared(&statements_before, &after);
        report.distributed = Some(d);
        if !nodes.is_empty() {
            let (mut s, sig) = scale_out_phase(t, opts, &w, t0, &mut phases, &nodes).await?;
            signals.extend(sig);
            report.scale_out = Some(scaled_out_line(&s, phases.last().expect("the phase")));
            let after = settle_counted(
                (&w, t0, &mut phases),
                opts,
                "after scale-out (traffic only)",
                &c,
            )
            .await;
            s.statements_after = compared(&statements_before, &after);
            report.scaled_out = Some(s);
        }
    }
    let wl = w.stop().await;
    let mut run = Run::finish(
        "shardready apply",
        t,
        phases,
        (before, after),
        wl,
        Some(rep),
    )
    .await?;
    run.signals = signals;
    Ok(run)
}

/// The statements after a step beside before it (the five that cost most,
/// and every one slower); None where pg_stat_statements counted nothing.
fn compared(
    before: &[crate::stat_statements::Rate],
    after: &[crate::stat_statements::Rate],
) -> Option<crate::stat_statements::Comparison> {
    (!before.is_empty() && !after.is_empty())
        .then(|| crate::stat_statements::Comparison::of(before, after, 5))
}

/// The seed's next unit under the same traffic: the prepared tables
/// distributed on the sandbox's single Citus node (the mode chosen as
/// `distribute` chooses it: the traffic writes, so concurrently), verified,
/// and a tenant query shown routed to one shard.
async fn distribute_phase(
    t: &Target,
    opts: &DemoOptions,
    w: &Workload,
    t0: Instant,
    phases: &mut Vec<PhaseRow>,
) -> Result<
    (
        crate::citus::DistributeReport,
        Vec<crate::apply::signals::SignalSecond>,
    ),
    DemoError,
> {
    use crate::citus;
    say(
        opts,
        "== distribute on Citus (with the traffic running): the seed's next unit",
    );
    let client = t
        .with_application_name(citus::APPLICATION_NAME)
        .connect()
        .await?;
    let cat = crate::catalog::Catalog::read(&client)
        .await
        .map_err(crate::db::DbError::ctx("cannot read the catalog"))?;
    let analysis = crate::analyze::analyze_read(
        &client,
        &cat,
        &crate::analyze::AnalyzeOptions {
            catalog_only: false,
            ..Default::default()
        },
    )
    .await?;
    citus::check_coordinator(&client, &t.display()).await?;
    let session = citus::lock(client).await?;
    let progress = |s: &str| say(opts, &format!("   {s}"));
    // The database's own signals while Citus moves the data.
    let signals = crate::apply::signals::Signals::start(t, t0, Vec::new())
        .await
        .ok();
    let from = Instant::now();
    let report = citus::distribute_in_chosen_mode(
        &session,
        t,
        &analysis,
        &cat,
        &mut citus::DistributeOptions::default(),
        &[],
        &progress,
    )
    .await;
    let seconds = close_phase(
        (w, t0, phases),
        (
            "distribute on Citus",
            "create_distributed_table (the next unit)",
        ),
        from,
        session,
        signals,
    )
    .await;
    let report = report?;
    if opts.progress {
        eprint!("{}", crate::report::text::distribution(&report));
        for line in routing_lines(&report.routing) {
            eprintln!("     {line}");
        }
    }
    Ok((report, seconds))
}

/// The seed's next unit after distribution: the single node's shards
/// spread onto the spare local nodes under the same traffic (`scale-out
/// --drain-coordinator --tune`), governed by the traffic and the signals.
async fn scale_out_phase(
    t: &Target,
    opts: &DemoOptions,
    w: &Workload,
    t0: Instant,
    phases: &mut Vec<PhaseRow>,
    nodes: &[String],
) -> Result<
    (
        crate::citus::scale::ScaleReport,
        Vec<crate::apply::signals::SignalSecond>,
    ),
    DemoError,
> {
    use crate::citus::{self, scale};
    say(
        opts,
        &format!(
            "== scale out onto {} new Citus workers (with the traffic running): shards move online",
            nodes.len()
        ),
    );
    let sopts = scale::ScaleOptions {
        add: nodes
            .iter()
            .map(|n| n.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| other("the sandbox's nodes", e))?,
        drain_coordinator: true,
        tune: true,
        ..Default::default()
    };
    let session = citus::lock(t.connect().await?).await?;
    let signals = crate::apply::signals::Signals::start(t, t0, Vec::new())
        .await
        .ok();
    let mut pressures: Vec<&dyn crate::apply::Pressure> = vec![w];
    if let Some(s) = &signals {
        pressures.push(s);
    }
    let progress = |s: &str| say(opts, &format!("   {s}"));
    let from = Instant::now();
    let report = scale::scale_out(&session, t, &sopts, &pressures, t0, &progress).await;
    let seconds = close_phase(
        (w, t0, phases),
        (
            "scale out to workers",
            "citus_add_node + shard moves under the commit guard (the next unit)",
        ),
        from,
        session,
        signals,
    )
    .await;
    let report = report?;
    if opts.progress {
        eprint!("{}", crate::report::text::scale_out(&report));
    }
    Ok((report, seconds))
}

/// Ends a Citus phase of the demo: its row (what the traffic felt since
/// `from`, under `name` and the seed step it stands for), the session's
/// lock released, and the signals sampled meanwhile.
async fn close_phase(
    (w, t0, phases): (&Workload, Instant, &mut Vec<PhaseRow>),
    (name, seed_step): (&str, &str),
    from: Instant,
    session: crate::db::Session,
    signals: Option<crate::apply::signals::Signals>,
) -> Vec<crate::apply::signals::SignalSecond> {
    phases.push(row(w, t0, name, seed_step, from, Instant::now()));
    session.unlock().await;
    match signals {
        Some(s) => s.stop().await.seconds,
        None => Vec::new(),
    }
}

/// The demo's one line on the scale-out.
fn scaled_out_line(s: &crate::citus::scale::ScaleReport, phase: &PhaseRow) -> String {
    format!(
        "scaled out to {} workers under the traffic in {:.1} s ({} shard group moves, {}; \
         {} failed transactions, max {:.0} ms{}); shards now: {}",
        s.nodes_added.len(),
        phase.seconds,
        s.moves,
        crate::plan::estimate::human(s.moved_bytes),
        phase.errors,
        phase.max_ms,
        if s.pauses.is_empty() {
            String::new()
        } else {
            format!(", stopped {} time(s) by the governor", s.pauses.len())
        },
        s.after
            .iter()
            .map(|n| format!("{} {}", n.node, n.shards))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The lines of a tenant query's plan that show where it went (the task
/// count and the node).
fn routing_lines(explain: &str) -> Vec<&str> {
    explain
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Task Count:") || l.starts_with("Node:"))
        .collect()
}

/// The demo's one line on distribution once it happened.
fn distributed_line(d: &crate::citus::DistributeReport, phase: &PhaseRow) -> String {
    let routed = routing_lines(&d.routing).join(", ");
    format!(
        "distributed on {} under the traffic in {:.1} s ({} reference, {} \
         distributed tables, {} shards; {} failed transactions, max {:.0} ms); a tenant \
         query: {}",
        if d.workers == 0 {
            "the single Citus node (like the seed's)".to_string()
        } else {
            format!("{} Citus worker(s)", d.workers)
        },
        phase.seconds,
        d.plan.reference.len(),
        d.plan.distributed.len(),
        d.root_shards.unwrap_or(d.plan.shard_count),
        phase.errors,
        phase.max_ms,
        if routed.is_empty() {
            "routed to one shard"
        } else {
            &routed
        }
    )
}

/// The seed's procedure as written, on its own copy, under the same traffic.
async fn seed_run(t: &Target, opts: &DemoOptions) -> Result<Run, DemoError> {
    say(
        opts,
        "== the seed's procedure as written, on an identical database",
    );
    let before = workload::time_create_orders(t, opts.create_orders, StoreIdMode::Never).await?;
    // The old application first; updated right after the column is added.
    let (w, t0, mut phases) = start_traffic(t, opts, StoreIdMode::Never).await?;
    let c = t.connect().await?;
    let steps =
        crate::baseline::run_seed_procedure(&c, 1_000_000, || w.set_store_id(StoreIdMode::Always))
            .await?;
    for p in &steps {
        let seed_step = match p.name.as_str() {
            "add column" => "ALTER TABLE line_items ADD COLUMN store_id",
            "backfill" => "backfill_batch(1000000), back to back",
            _ => "CREATE UNIQUE INDEX CONCURRENTLY; swap transactions",
        };
        phases.push(row(
            &w,
            t0,
            &p.name,
            seed_step,
            p.start.expect("timed"),
            p.end.expect("timed"),
        ));
    }
    settle_phase(&w, t0, &mut phases, opts, "after (traffic only)").await;
    let wl = w.stop().await;
    let after = workload::time_create_orders(t, opts.create_orders, StoreIdMode::Auto).await?;
    Run::finish(
        "the seed's procedure as written",
        t,
        phases,
        (before, after),
        wl,
        None,
    )
    .await
}

/// The file that marks a sandbox as the demo's own: only such a sandbox
/// is removed when the next demo starts.
pub const DEMO_MARK: &str = "shardready-demo";

impl DemoOptions {
    /// Refuses what cannot run, before anything is touched.
    #[allow(clippy::result_large_err)]
    pub fn check(&self) -> Result<(), DemoError> {
        let bad = |option, value: String, why| Err(DemoError::BadOption { option, value, why });
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return bad(
                "scale",
                self.scale.to_string(),
                "must be greater than 0 (e.g. 0.1)",
            );
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return bad(
                "rate",
                self.rate.to_string(),
                "must be greater than 0 (e.g. 3000/min)",
            );
        }
        if self.connections == 0 {
            return bad("connections", "0".into(), "must be at least 1");
        }
        if self.create_orders < 1 {
            return bad(
                "create-orders",
                self.create_orders.to_string(),
                "must be at least 1 (the seed: 20000)",
            );
        }
        if Sandbox::open(&self.sandbox_dir).is_ok() && !self.sandbox_dir.join(DEMO_MARK).exists() {
            return Err(DemoError::NotTheDemosSandbox {
                dir: self.sandbox_dir.display().to_string(),
            });
        }
        Ok(())
    }
}

/// Runs the demo and writes the report into `opts.out`.
pub async fn run(opts: &DemoOptions) -> Result<DemoReport, DemoError> {
    let t_all = Instant::now();
    opts.check()?;
    if Sandbox::open(&opts.sandbox_dir).is_ok() {
        say(
            opts,
            &format!(
                "== removing the previous demo sandbox in {}",
                opts.sandbox_dir.display()
            ),
        );
        Sandbox::open(&opts.sandbox_dir)?.destroy()?;
    }
    say(
        opts,
        &format!("== fresh sandbox in {}", opts.sandbox_dir.display()),
    );
    let mut sopts = SandboxOptions::new(&opts.sandbox_dir);
    if crate::sandbox::citus_installed(sopts.pg_bin.as_deref()) {
        // A single-node Citus cluster like the seed's, and the nodes it
        // scales out to at the end.
        sopts.nodes = opts.workers;
    }
    let sb = Sandbox::start(&sopts)?;
    std::fs::write(
        opts.sandbox_dir.join(DEMO_MARK),
        "made by `shardready demo`, which removes it when the next demo starts\n",
    )
    .map_err(|e| other("marking the demo's sandbox", e))?;
    let result = run_on(&sb, opts, t_all).await;
    if !opts.keep {
        let _ = sb.clone().destroy();
    }
    result
}

async fn run_on(sb: &Sandbox, opts: &DemoOptions, t_all: Instant) -> Result<DemoReport, DemoError> {
    say(
        opts,
        &format!("== tailspin schema + load (scale {})", opts.scale),
    );
    let t_load = Instant::now();
    let (ours, load) = load_copy(sb, crate::sandbox::DATABASE, opts).await?;
    let load_seconds = t_load.elapsed().as_secs_f64();
    for c in &load.counts {
        say(
            opts,
            &format!("   SELECT COUNT(*) FROM {:<11} -- {}", c.table, c.rows),
        );
    }
    let c = ours.connect().await?;
    let extensions = crate::catalog::extensions(&c)
        .await
        .map_err(crate::db::DbError::ctx("cannot list extensions"))?;
    say(
        opts,
        "== pg_cron check (SELECT extname, extversion FROM pg_extension)",
    );
    for e in &extensions {
        say(opts, &format!("   {} {}", e.name, e.version));
    }
    let mut report = DemoReport {
        schema: "shardready.demo/v1",
        scale: opts.scale,
        rate_per_min: opts.rate * 60.0,
        create_orders: opts.create_orders,
        counts: load.counts.clone(),
        load_seconds,
        extensions,
        blockers_before: 0,
        verified: false,
        total_seconds: 0.0,
        runs: Vec::new(),
        sandbox_url: opts.keep.then(|| sb.url()),
        distribution: if !sb.state.citus {
            "stopped before distribution: Citus is not installed for this PostgreSQL (no \
             citus.so); where it is, the demo ends by distributing the prepared tables"
                .into()
        } else {
            "stopped before distribution: the preparation did not verify".into()
        },
        distributed: None,
        scale_out: None,
        scaled_out: None,
    };
    let citus = sb.state.citus.then(|| sb.node_addresses());
    let run = our_run(&ours, opts, citus, &mut report).await?;
    report.runs.push(run);
    if opts.compare_seed {
        let (seed_db, _) = load_copy(sb, "seed", opts).await?;
        report.runs.push(seed_run(&seed_db, opts).await?);
    }
    report.total_seconds = t_all.elapsed().as_secs_f64();
    crate::report::write_demo(&opts.out, &report)
        .map_err(|e| other("cannot write the report", e))?;
    Ok(report)
}

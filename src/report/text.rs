//! Text for people on a terminal: the analysis grouped by table (colour on
//! a TTY), and the summaries each command prints.

use std::fmt::Write;

use crate::analyze::{Analysis, Class, Finding, Severity};

use super::citus_text::placement;
pub use super::citus_text::{
    application_after, distribution, distribution_status, placed_summary, scale_out,
    scale_preflight, scale_status,
};
use super::human_bytes;

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
    fn severity(&self, s: Severity) -> String {
        match s {
            Severity::Blocker => self.wrap("1;31", "BLOCKER"),
            Severity::Warning => self.wrap("33", "warning"),
            Severity::Info => self.wrap("36", "info"),
        }
    }
}

fn finding(out: &mut String, p: &Paint, f: &Finding) {
    let _ = writeln!(
        out,
        "    {} [{}] {}",
        p.severity(f.severity),
        f.rule,
        f.message
    );
    if let Some(e) = &f.citus_error {
        let _ = writeln!(out, "      {} {}", p.dim("citus:"), p.dim(e));
    }
    let _ = writeln!(
        out,
        "      {} {}",
        if f.automatic {
            "fix (automatic):"
        } else {
            "fix (by you):"
        },
        f.fix
    );
}

/// The readiness report as text, grouped by table.
pub fn analysis_text(a: &Analysis, color: bool) -> String {
    let p = Paint { on: color };
    let mut out = String::new();
    let t = &a.tenant;
    let _ = writeln!(
        out,
        "{} {}  ({})",
        p.bold("tenant column:"),
        t.column,
        t.reason
    );
    if let Some(root) = &t.root {
        let _ = writeln!(
            out,
            "{} {} (key {}, {})",
            p.bold("tenant root:  "),
            root,
            t.root_key.as_deref().unwrap_or(&t.column),
            t.type_name
        );
    }
    if !a.placed.is_empty() {
        let _ = writeln!(
            out,
            "{} {}",
            p.bold("on Citus:     "),
            placed_summary(&a.placed)
        );
    }
    let _ = writeln!(out);
    for s in &a.tables {
        let on_citus = a.placed.iter().find(|pl| pl.table == s.table);
        let class = match &s.class.class {
            Class::Root => "root".to_string(),
            Class::Distributed => "distributed".to_string(),
            Class::NeedsColumn { .. } => format!("needs {}", t.column),
            Class::Reference => "reference".to_string(),
            Class::Local => "local".to_string(),
        };
        let _ = writeln!(
            out,
            "{}  {}  {}",
            p.bold(&s.table.to_string()),
            class,
            p.dim(&format!(
                "{}{}",
                match on_citus {
                    Some(pl) => placement(pl),
                    None => format!("~{} rows, {}", s.row_estimate, human_bytes(s.size_bytes)),
                },
                if s.class.overridden {
                    ", overridden"
                } else {
                    ""
                }
            ))
        );
        let _ = writeln!(out, "    {}", p.dim(&s.class.reason));
        for f in a
            .findings
            .iter()
            .filter(|f| f.table.as_ref() == Some(&s.table))
        {
            finding(&mut out, &p, f);
        }
    }
    let general: Vec<&Finding> = a.findings.iter().filter(|f| f.table.is_none()).collect();
    if !general.is_empty() {
        let _ = writeln!(out, "{}", p.bold("database"));
        for f in general {
            finding(&mut out, &p, f);
        }
    }
    if let Some(skew) = &a.skew {
        let text = skew.text();
        if !text.is_empty() {
            let _ = writeln!(out, "\n{}\n{}", p.bold("tenant skew"), text);
        }
    }
    let c = a.counts;
    let _ = writeln!(
        out,
        "\n{} blocker{}, {} warning{}, {} info{}{}",
        c.blockers,
        if c.blockers == 1 { "" } else { "s" },
        c.warnings,
        if c.warnings == 1 { "" } else { "s" },
        c.infos,
        if c.infos == 1 { "" } else { "s" },
        if c.blockers > 0 {
            if a.findings
                .iter()
                .filter(|f| f.severity == Severity::Blocker)
                .all(|f| f.automatic)
            {
                " — `shardready plan` fixes every blocker"
            } else {
                " — some blockers need you (fix: by you)"
            }
        } else {
            " — ready for Citus"
        }
    );
    let needing_you: Vec<&crate::analyze::Finding> = a
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker && !f.automatic)
        .collect();
    if let Some(all) = crate::analyze::accept_all::accept_all(&needing_you) {
        let _ = writeln!(out, "{all}");
    }
    out
}

/// `plan` as text: each step with the lock it takes.
pub fn plan_text(plan: &crate::plan::Plan) -> String {
    let mut s = format!(
        "plan: tenant column {}{}, {} steps\n",
        plan.tenant_column,
        plan.root
            .as_ref()
            .map(|r| format!(" (root {r})"))
            .unwrap_or_default(),
        plan.steps.len()
    );
    if !plan.resolutions.is_empty() {
        let _ = writeln!(s, "resolutions you chose: {}", plan.resolutions.join(", "));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>3}. {}\n     lock: {}",
            i + 1,
            step.describe(),
            step.impact().describe()
        );
    }
    s.push_str(&plan.access.text());
    s
}

/// `plan`'s estimate: the steps that take time, WAL or disk, the totals,
/// free space and the warnings.
pub fn estimate_text(e: &crate::plan::estimate::Estimate) -> String {
    use crate::plan::estimate::human;
    let r = &e.rates;
    let mut s = format!(
        "\nestimate (sizes from the catalog's statistics; times at the rates measured on a 2-core \
         reference machine: backfill {:.0}k rows/s, index builds {:.1}M rows/s, key validation \
         {:.1}M rows/s; apply's progress shows this server's):\n",
        r.backfill_rows_s / 1e3,
        r.index_rows_s / 1e6,
        r.fk_rows_s / 1e6
    );
    let _ = writeln!(
        s,
        "  {:<48} {:>8} {:>9} {:>9}  lock",
        "step", "time", "WAL", "disk"
    );
    let mut brief = 0;
    for st in &e.steps {
        if st.seconds < 0.05 && st.wal_bytes == 0 && st.disk_bytes == 0 {
            brief += 1;
            continue;
        }
        let _ = writeln!(
            s,
            "  {:<48} {:>8} {:>9} {:>9}  {}",
            format!("{:>2}. {}", st.position, st.id)
                .chars()
                .take(48)
                .collect::<String>(),
            seconds_text(st.seconds),
            if st.wal_bytes > 0 {
                human(st.wal_bytes)
            } else {
                "-".into()
            },
            if st.disk_bytes > 0 {
                format!("+{}", human(st.disk_bytes))
            } else {
                "-".into()
            },
            st.lock
        );
    }
    if brief > 0 {
        let _ = writeln!(
            s,
            "  and {brief} quick steps (catalog changes, brief locks: each try waits at most lock_timeout)"
        );
    }
    let _ = writeln!(
        s,
        "  total about {}, {} of WAL (what standbys and the archive receive), +{} of disk at the peak; {}",
        seconds_text(e.seconds),
        human(e.wal_bytes),
        human(e.disk_bytes),
        match e.free_bytes {
            Some(f) => format!("{} free in the data directory", human(f)),
            None => "free space not visible from here (a remote server, or a role that may not read data_directory): check it with df".into(),
        }
    );
    for w in &e.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

/// A duration for people: 0.4 s, 42 s, 3 min 10 s.
fn seconds_text(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.1} s")
    } else if x < 120.0 {
        format!("{x:.0} s")
    } else {
        format!("{} min {:02.0} s", (x / 60.0) as i64, x % 60.0)
    }
}

/// What `apply` prints when it finished.
pub fn apply_summary(report: &crate::apply::ApplyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "apply finished in {:.1} s: {} steps ({} already done)",
        report.seconds,
        report.steps.len(),
        report
            .steps
            .iter()
            .filter(|s| s.status == crate::apply::StepOutcome::AlreadyDone)
            .count()
    );
    if let Some(app) = &report.app {
        let _ = writeln!(
            out,
            "application during apply: {} transactions, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, errors {}",
            app.transactions, app.p50_ms, app.p99_ms, app.max_ms, app.errors
        );
    }
    for k in &report.kept_paths {
        let _ = writeln!(out, "kept an access path: {}:", k.headline());
        for st in &k.statements {
            let _ = writeln!(out, "  {st}");
        }
        let _ = writeln!(
            out,
            "  once they filter by the tenant column too, drop it: {}",
            k.drop_sql
        );
    }
    for a in &report.after {
        let _ = writeln!(out, "application {}", a.line());
        if a.slower {
            let _ = writeln!(out, "THE APPLICATION IS SLOWER AFTER APPLY: {}", a.remedy());
        }
    }
    if let Some(sig) = &report.signals {
        out.push_str(&signals_line(sig));
    }
    let held = held_back(report);
    if !held.is_empty() {
        let _ = writeln!(out, "backfill held back: {}", held.join(", "));
    }
    if let Some(cost) = crate::apply::budget::cost_line(&report.steps, report.seconds) {
        let _ = writeln!(out, "{cost}");
    }
    if !report.resolutions.is_empty() {
        let _ = writeln!(
            out,
            "resolutions you chose: {}",
            report.resolutions.join(", ")
        );
    }
    out.push_str("next: `shardready verify`\n");
    out
}

/// `abort`: what was taken back and what stays.
pub fn abort_summary(r: &crate::apply::abort::AbortReport) -> String {
    if !r.had_plan {
        return "nothing to abort: no preparation was started here\n".into();
    }
    let mut out = format!("undone: {} step(s)\n", r.undone.len());
    for id in &r.undone {
        let _ = writeln!(out, "  {id}");
    }
    if !r.kept.is_empty() {
        out.push_str("kept:\n");
        for k in &r.kept {
            let _ = writeln!(out, "  {k}");
        }
    }
    out.push_str(if r.state_removed {
        "the shardready state is removed; nothing of the preparation is left but what is kept above\n"
    } else {
        "keys already swapped stay in place: `shardready apply` finishes the preparation from here\n"
    });
    out
}

/// How long each signal held each backfill back (`line_items 7.3 s by
/// canary`), the longest hold, and how much of it the application was as
/// slow without the backfill.
pub fn held_back(report: &crate::apply::ApplyReport) -> Vec<String> {
    report
        .backfills
        .iter()
        .flat_map(|b| {
            let by = b
                .held_back
                .iter()
                .map(move |(what, s)| format!("{} {s:.1} s by {what}", b.table));
            let hold = (b.longest_hold_seconds >= 1.0).then(|| {
                let ours = if b.not_ours_seconds > 0.0 {
                    format!(
                        "; during {:.1} s of its waits the application was as slow while it \
                         waited, so it kept half its speed",
                        b.not_ours_seconds
                    )
                } else {
                    String::new()
                };
                format!(
                    "{} held over the application's budget for {:.1} s at the longest{ours}",
                    b.table, b.longest_hold_seconds
                )
            });
            by.chain(hold)
        })
        .collect()
}

/// A run's signals in one line (apply's summary, the Markdown report).
pub fn signals_line(sig: &crate::apply::signals::SignalReport) -> String {
    let s = sig.summary();
    let mut parts = Vec::new();
    if let Some(b) = &sig.baseline {
        parts.push(format!(
            "canary commit p50 {:.1} ms, max {:.1} ms (baseline p99 {:.1} ms)",
            s.canary_p50_ms, s.canary_max_ms, b.canary_p99_ms
        ));
    }
    parts.push(format!(
        "longest application wait on shardready's locks {:.0} ms",
        s.waits_on_us_ms
    ));
    if let Some(m) = s.stmt_mean_max_ms {
        parts.push(format!(
            "application statements' worst second {m:.2} ms on average"
        ));
    }
    if let Some(w) = s.wal_peak_mb_s {
        parts.push(format!("WAL peak {w:.0} MB/s"));
    }
    if s.checkpoints_req > 0 {
        parts.push(format!(
            "{} checkpoints requested by WAL volume (raise max_wal_size, or --max-rate)",
            s.checkpoints_req
        ));
    }
    if let Some(l) = s.replica_lag_max_s {
        parts.push(format!("standby lag max {l:.1} s"));
    }
    if let Some(c) = s.cpu_stall_max {
        parts.push(format!("CPU contended up to {:.0}% of a second", c * 100.0));
    }
    if let Some((event, seconds)) = &s.wait_top {
        parts.push(format!(
            "the application's backends waited most on {event} (the most seen in {seconds} s), \
             up to {} at once on I/O or internal locks",
            s.waiting_max
        ));
    }
    let mut out = format!(
        "database signals over {} s: {}
",
        s.seconds,
        parts.join("; ")
    );
    if let Some(b) = &sig.baseline {
        out.push_str(&headroom_line(b));
    }
    out
}

/// How busy the application and the machine were before the first change:
/// the headroom the work had.
pub(crate) fn headroom_line(b: &crate::apply::signals::Baseline) -> String {
    let mut parts = vec![format!(
        "{:.1} application backends active on average",
        b.active_mean
    )];
    if let Some(c) = b.stmt_calls_per_s {
        parts.insert(0, format!("the application ran {c:.0} statements/s"));
    } else if let Some(c) = b.commits_per_s {
        parts.insert(
            0,
            format!("the database ended {c:.0} transactions/s (no pg_stat_statements)"),
        );
    }
    if b.waiting_mean >= 0.05 {
        parts.push(format!(
            "{:.1} of them waiting on I/O or internal locks",
            b.waiting_mean
        ));
    }
    match b.cpu_stall {
        Some(c) => parts.push(format!(
            "a runnable task waited for a CPU {:.0}% of the time{}",
            c * 100.0,
            if c >= 0.3 {
                " (little headroom: every step is held back sooner)"
            } else {
                ""
            }
        )),
        None => parts.push(
            "the CPU's pressure unknown (the server runs elsewhere, or the kernel has no PSI)"
                .into(),
        ),
    }
    format!("before the first change: {}\n", parts.join("; "))
}

/// The signals a running apply sampled last, for `status`.
fn live_signals(sig: &crate::apply::state::LiveSignals) -> String {
    let l = &sig.last;
    let mut parts = vec![
        format!(
            "canary commit {:.1} ms (max {:.1})",
            l.canary_p50_ms, l.canary_max_ms
        ),
        format!(
            "{} application backends waiting on a lock{}",
            l.lock_waiters,
            if l.waits_on_us_ms > 0.0 {
                format!(" (on shardready for up to {:.0} ms)", l.waits_on_us_ms)
            } else {
                String::new()
            }
        ),
    ];
    if let Some(m) = l.stmt_mean_ms {
        parts.push(format!("application statements {m:.2} ms on average"));
    }
    if let Some(w) = l.wal_mb_s {
        parts.push(format!("WAL {w:.1} MB/s"));
    }
    if let Some(c) = l.checkpoints_req.filter(|&c| c > 0) {
        parts.push(format!("{c} checkpoints requested by WAL volume"));
    }
    for st in &l.standbys {
        parts.push(format!(
            "standby {}: {:.1} MB not written, {:.1} not flushed, {:.1} not replayed ({:.1} s)",
            st.name, st.write_mb, st.flush_mb, st.replay_mb, st.replay_s
        ));
    }
    format!(
        "  signals {:.0} s ago: {}
  governor: {}
",
        sig.age_s,
        parts.join("; "),
        l.holding
            .as_deref()
            .map(|h| format!("holding the backfill back: {h}"))
            .unwrap_or_else(|| "not holding anything back".into())
    )
}

/// `status`: where the stored plan stands.
pub fn apply_status(st: &crate::apply::state::ApplyStatus) -> String {
    use crate::apply::state::StepState;
    if !st.plan_exists {
        return "no plan applied yet (run `shardready plan`, then `shardready apply`)\n".into();
    }
    let mut out = format!(
        "plan {}{}\n",
        if st.finished {
            "finished"
        } else {
            "in progress"
        },
        if st.apply_running {
            " (an apply is running now)"
        } else if !st.finished {
            " — interrupted: no apply is running; `shardready apply` resumes it"
        } else {
            ""
        }
    );
    if st.control.paused && !st.finished {
        let _ = writeln!(
            out,
            "  PAUSED by `shardready pause`{}: nothing runs and no lock is held until `shardready resume`",
            st.control
                .paused_at
                .as_deref()
                .map(|t| format!(" since {t}"))
                .unwrap_or_default()
        );
    }
    if let Some(r) = st.control.max_rate.filter(|_| !st.finished) {
        let _ = writeln!(
            out,
            "  backfill rate cap {r:.0} rows/s (set by `shardready resume --max-rate`)"
        );
    }
    if let Some(sig) = st.signals.as_ref().filter(|_| st.apply_running) {
        out.push_str(&live_signals(sig));
    }
    let interrupted = !st.apply_running && !st.finished;
    for s in &st.steps {
        // A step marked running with no apply alive was cut short.
        let status = if interrupted && s.status == StepState::Running {
            "stopped"
        } else {
            s.status.as_str()
        };
        let _ = writeln!(
            out,
            "  {:>2}. {:<8} {}{}",
            s.position + 1,
            status,
            s.id,
            s.seconds.map(|x| format!("  {x:.1} s")).unwrap_or_default()
        );
    }
    if !st.finished {
        // What an unfinished plan leaves in place meanwhile.
        let done = |id: &str| {
            st.steps
                .iter()
                .any(|s| s.id == id && s.status == StepState::Done)
        };
        for s in &st.steps {
            if s.status != StepState::Done {
                continue;
            }
            if let Some(t) = s.id.strip_prefix("hold-autovacuum:") {
                if !done(&format!("vacuum:{t}")) {
                    let _ = writeln!(
                        out,
                        "  meanwhile: autovacuum is held off {t} (the plan's VACUUM step gives it back)"
                    );
                }
            }
            if let Some(t) = s.id.strip_prefix("sync-trigger:") {
                if !done(&format!("drop-trigger:{t}")) {
                    let _ = writeln!(
                        out,
                        "  meanwhile: a sync trigger on {t} fills the tenant column of rows written without it"
                    );
                }
            }
        }
    }
    for b in &st.backfills {
        let _ = writeln!(
            out,
            "  backfill {}: {:.1}% ({} rows in {} batches, key {} of {})",
            b.step_id.trim_start_matches("backfill:"),
            b.progress * 100.0,
            b.rows_updated,
            b.batches,
            b.cursor,
            b.max_key
        );
    }
    out
}

/// `verify`: each check, its problems, the verdict.
pub fn verification(v: &crate::verify::Verification) -> String {
    let mut out = String::new();
    for c in &v.checks {
        let _ = writeln!(out, "{} {}", if c.ok { "ok  " } else { "FAIL" }, c.name);
        for p in &c.problems {
            let _ = writeln!(out, "       {p}");
        }
    }
    out.push_str(if v.ok {
        "verified: ready for Citus\n"
    } else {
        "not ready\n"
    });
    out
}

/// The workload's summary: rate, latency, errors by SQLSTATE.
pub fn workload_summary(s: &crate::workload::Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} orders ({} line items) in {:.1} s: {:.0}/min (target {:.0}/min), {} connections",
        s.orders,
        s.line_items,
        s.duration_s,
        s.achieved_rate_per_min,
        s.target_rate_per_min,
        s.connections
    );
    let _ = writeln!(
        out,
        "latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        s.latency.p50_ms, s.latency.p95_ms, s.latency.p99_ms, s.latency.p999_ms, s.latency.max_ms
    );
    if s.errors == 0 {
        out.push_str("errors: none\n");
    } else {
        let by: Vec<String> = s
            .errors_by_sqlstate
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(out, "errors: {} ({})", s.errors, by.join(", "));
        for (code, message) in &s.error_examples {
            let _ = writeln!(out, "  {code}: {message}");
        }
    }
    out
}

/// `jobs list`: pg_cron's jobs as a table.
pub fn cron_jobs(jobs: &[crate::cron::CronJob]) -> String {
    if jobs.is_empty() {
        return "no pg_cron jobs\n".into();
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header([
        "jobid", "jobname", "schedule", "command", "database", "active",
    ]);
    for j in jobs {
        t.add_row([
            j.jobid.to_string(),
            j.jobname.clone().unwrap_or_default(),
            j.schedule.clone(),
            j.command.clone(),
            j.database.clone(),
            j.active.to_string(),
        ]);
    }
    format!("{t}\n")
}

/// `sandbox status`.
pub fn sandbox_status(st: &crate::sandbox::SandboxStatus) -> String {
    format!(
        "sandbox   {}\nstate     {}\nurl       {}\nversion   {}\nserver as {}\npg_cron   {}\ncitus     {}\ndata      {:.1} MB\n",
        st.dir.display(),
        match st.pid {
            Some(p) => format!("running (pid {p})"),
            None => "stopped (start it with `shardready sandbox start`)".into(),
        },
        st.url,
        st.version,
        st.os_user.as_deref().unwrap_or("the invoking user"),
        if st.pg_cron { "preloaded" } else { "not installed" },
        if st.citus {
            if st.workers.is_empty() {
                "preloaded (a single Citus node)".to_string()
            } else {
                let ports: Vec<String> = st
                    .workers
                    .iter()
                    .map(|w| format!("{}{}", w.port, if w.running { "" } else { " (stopped)" }))
                    .collect();
                format!("preloaded, coordinator of workers on port {}", ports.join(", "))
            }
        } else {
            "not loaded".to_string()
        },
        st.data_bytes as f64 / 1e6
    ) + &if st.nodes.is_empty() {
        String::new()
    } else {
        format!(
            "nodes     spare Citus nodes on port {} (shardready scale-out --add 127.0.0.1:PORT)\n",
            st.nodes
                .iter()
                .map(|w| format!("{}{}", w.port, if w.running { "" } else { " (stopped)" }))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// `copy`: rows, bytes and time per table.
pub fn copy_report(report: &crate::ingest::copy::LoadReport) -> String {
    let mut out = String::new();
    for t in &report.tables {
        let _ = writeln!(
            out,
            "{}: {} rows, {:.1} MB in {:.2} s",
            t.table,
            t.rows,
            t.bytes as f64 / 1e6,
            t.seconds
        );
    }
    out
}

/// The demo's phase tables, one per run, and the verdict.
/// One line on what a run cost the application: its worst phase p99, its
/// longest single wait (and in which phase), its failed transactions.
pub fn run_verdict(run: &super::Run) -> String {
    // The phases where the preparation ran: not the traffic-only ones
    // before and after it, nor the distribution that only shardready's run
    // goes on to (side by side, like is compared with like), and with
    // transactions to measure.
    let preparing = |p: &&super::PhaseRow| {
        !p.phase.contains("(traffic only)") && !p.phase.contains("distribut")
    };
    let working: Vec<&super::PhaseRow> = run
        .phases
        .iter()
        .filter(preparing)
        .filter(|p| p.transactions > 0)
        .collect();
    let p99 = working.iter().map(|p| p.p99_ms).fold(0.0, f64::max);
    let worst = working.iter().max_by(|a, b| a.max_ms.total_cmp(&b.max_ms));
    let failed: u64 = run.phases.iter().filter(preparing).map(|p| p.errors).sum();
    match worst {
        Some(w) => format!(
            "{}: while it prepared the tables, worst p99 {p99:.1} ms, longest wait {:.0} ms (in \"{}\"), {failed} failed",
            run.label, w.max_ms, w.phase
        ),
        None => format!("{}: no phase measured", run.label),
    }
}

/// The demo's statement comparisons: after distribution, after the
/// scale-out (each beside the window after apply).
pub(crate) fn demo_statements(
    report: &super::DemoReport,
) -> Vec<(&'static str, &crate::stat_statements::Comparison)> {
    let d = report
        .distributed
        .as_ref()
        .and_then(|d| d.statements_after.as_ref());
    let s = report
        .scaled_out
        .as_ref()
        .and_then(|s| s.statements_after.as_ref());
    [("distribution", d), ("the scale-out", s)]
        .into_iter()
        .filter_map(|(step, c)| c.map(|c| (step, c)))
        .collect()
}

pub fn demo_summary(report: &super::DemoReport, out_dir: &std::path::Path) -> String {
    let mut out = format!(
        "\nloaded {} rows in {:.1} s\n",
        report.counts.iter().map(|c| c.rows).sum::<i64>(),
        report.load_seconds
    );
    if report.runs.len() > 1 {
        out.push_str("\nphase tables:\n");
    } else {
        let _ = write!(out, "\nphase table ({}):\n", report.runs[0].label);
    }
    for run in &report.runs {
        if report.runs.len() > 1 {
            let _ = writeln!(out, "\n{}:", run.label);
        }
        let _ = writeln!(
            out,
            "  {:<34} {:>8} {:>9} {:>9} {:>9} {:>7}",
            "phase", "seconds", "p50 ms", "p99 ms", "max ms", "failed"
        );
        for p in &run.phases {
            let ms = |v: f64| p.ms(v);
            let _ = writeln!(
                out,
                "  {:<34} {:>8.1} {:>9} {:>9} {:>9} {:>7}",
                p.phase,
                p.seconds,
                ms(p.p50_ms),
                ms(p.p99_ms),
                ms(p.max_ms),
                p.errors
            );
        }
        let _ = writeln!(
            out,
            "  create_orders({}): {:.1} s before, {:.1} s after: {:.1}x",
            report.create_orders,
            run.create_orders_before_s,
            run.create_orders_after_s,
            run.speedup
        );
        if !run.after.is_empty() {
            let _ = writeln!(
                out,
                "  the application after each step, beside its baseline:"
            );
            for a in &run.after {
                let _ = writeln!(out, "    {}", a.line());
            }
        }
        for (code, message) in &run.workload.error_examples {
            let n = run.workload.errors_by_sqlstate.get(code).unwrap_or(&0);
            let _ = writeln!(out, "  failed transactions, {n} x {code}: {message}");
        }
    }
    if report.runs.len() > 1 {
        let _ = writeln!(out, "\nverdict, side by side:");
        for run in &report.runs {
            let _ = writeln!(out, "  {}", run_verdict(run));
        }
    }
    let _ = writeln!(out, "\n{}", report.distribution);
    if let Some(line) = &report.scale_out {
        let _ = writeln!(out, "{line}");
    }
    for (step, c) in demo_statements(report) {
        let _ = writeln!(
            out,
            "the application's statements after {step}, beside after apply (pg_stat_statements):"
        );
        for l in c.lines() {
            let _ = writeln!(out, "  {l}");
        }
    }
    for a in report
        .runs
        .iter()
        .flat_map(|r| &r.after)
        .filter(|a| a.slower)
    {
        let _ = writeln!(
            out,
            "\nTHE APPLICATION IS SLOWER {}: {}.\n  {}",
            a.phase.replace(" (traffic only)", ""),
            a.why.join("; "),
            a.remedy()
        );
    }
    let _ = writeln!(
        out,
        "\ntotal {:.0} s; verified: {}; report: {}/report.html (also report.md, report.json, latency.svg, latency.png)",
        report.total_seconds,
        if report.verified { "yes" } else { "NO" },
        out_dir.display()
    );
    out
}

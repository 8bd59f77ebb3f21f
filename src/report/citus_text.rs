//! Text for people on a terminal about Citus: where `distribute` put the
//! tables, what Citus has, the scale-out's pre-flight, report and status.

use std::fmt::Write;

use super::human_bytes;

/// `distribute`: where the tables went and the row counts.
pub fn distribution(report: &crate::citus::DistributeReport) -> String {
    let mut out = format!(
        "distributed on {}: {} reference, {} distributed tables ({} shards)\n",
        if report.workers == 0 {
            "the coordinator alone (single-node Citus; `shardready scale-out --add` spreads it)"
                .to_string()
        } else {
            format!("{} worker(s)", report.workers)
        },
        report.plan.reference.len(),
        report.plan.distributed.len(),
        report.root_shards.unwrap_or(report.plan.shard_count)
    );
    for c in &report.counts {
        let _ = writeln!(
            out,
            "  {}: {} rows before, {} after",
            c.table, c.before, c.after
        );
    }
    out.push_str("  a tenant-scoped query routes to one shard\n");
    out.push_str(&guard_summary(&report.switch_guards));
    out
}

/// The application after a Citus step (`distribute`, `scale-out`): its
/// traffic beside its baseline, and its statements' mean times beside
/// theirs before; what to do when it got slower.
pub fn application_after(
    step: &str,
    checks: &[crate::after::AfterCheck],
    statements: Option<&crate::stat_statements::Comparison>,
) -> String {
    let mut out = String::new();
    for a in checks {
        let _ = writeln!(out, "application {}", a.line());
    }
    if let Some(c) = statements {
        let _ = writeln!(
            out,
            "the application's statements after {step} (pg_stat_statements, the costliest \
             first):"
        );
        for l in c.lines() {
            let _ = writeln!(out, "  {l}");
        }
    }
    if checks.iter().any(|a| a.slower) || statements.is_some_and(|c| c.slower()) {
        let _ = writeln!(
            out,
            "THE APPLICATION IS SLOWER AFTER {}: {}",
            step.to_uppercase(),
            crate::after::CITUS_REMEDY
        );
    }
    out
}

/// One line for the switches made under the commit guard (empty: none).
fn guard_summary(guards: &[crate::citus::guard::GuardReport]) -> String {
    let guarded: Vec<_> = guards.iter().filter(|g| g.switched).collect();
    if guarded.is_empty() {
        return String::new();
    }
    let longest = guarded.iter().map(|g| g.held_ms).fold(0.0, f64::max);
    format!(
        "  {} concurrent switch(es) under the commit guard: no asynchronously committed write \
         left behind; the guard added at most {longest:.0} ms to a switch\n",
        guarded.len()
    )
}

/// One line on what Citus already has: "4 distributed (32 shards, colocation
/// 2), 1 reference".
pub fn placed_summary(placed: &[crate::catalog::Placement]) -> String {
    let of = |kind: &str| placed.iter().filter(|p| p.kind == kind).collect::<Vec<_>>();
    let mut parts = Vec::new();
    let dist = of("distributed");
    if !dist.is_empty() {
        let colocations: std::collections::BTreeSet<i64> =
            dist.iter().map(|p| p.colocation_id).collect();
        let shards: std::collections::BTreeSet<i64> = dist.iter().map(|p| p.shards).collect();
        parts.push(format!(
            "{} distributed table(s) ({} shards, colocation group {})",
            dist.len(),
            shards
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join("/"),
            colocations
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for kind in ["reference", "local"] {
        let n = of(kind).len();
        if n > 0 {
            parts.push(format!("{n} {kind} table(s)"));
        }
    }
    format!("this database is already distributed: {}", parts.join(", "))
}

/// What Citus has of one table: "distributed by store_id, 32 shards,
/// colocation 2, 12 MB in its shards".
pub(super) fn placement(p: &crate::catalog::Placement) -> String {
    match p.kind.as_str() {
        "distributed" => format!(
            "on Citus: distributed by {}, {} shards, colocation {}, {} in its shards",
            p.column,
            p.shards,
            p.colocation_id,
            human_bytes(p.size_bytes)
        ),
        kind => format!("on Citus: {kind} table, {}", human_bytes(p.size_bytes)),
    }
}

/// `status`: what Citus has, and any key an interrupted distribute left
/// dropped.
pub fn distribution_status(d: &crate::citus::state::DistributionStatus) -> String {
    let mut out = String::new();
    if d.placed.is_empty() {
        let _ = writeln!(
            out,
            "distribution: not started{}",
            if d.citus_installed {
                " (Citus is installed: `shardready distribute` when verify passes)"
            } else {
                ""
            }
        );
    } else {
        let _ = writeln!(out, "distribution: {}", placed_summary(&d.placed));
        for p in &d.placed {
            let _ = writeln!(out, "  {}  {}", p.table, placement(p));
        }
    }
    let gone: Vec<_> = d.dropped_fks.iter().filter(|f| !f.present).collect();
    if !gone.is_empty() {
        let _ = writeln!(
            out,
            "foreign keys an interrupted distribute dropped ({}; saved in \
             shardready.distribute_fk, `shardready distribute` re-adds them):",
            gone.len()
        );
        for f in gone {
            let _ = writeln!(out, "  {}: {} {}", f.table, f.name, f.definition);
        }
    }
    out
}

/// `scale-out`'s pre-flight: the nodes, the estimate, the mode, and each
/// problem with its fix.
pub fn scale_preflight(p: &crate::citus::scale::Preflight) -> String {
    use crate::plan::estimate::human;
    let mut out = format!("pre-flight (Citus {}):\n", p.citus_version);
    for n in &p.before {
        let _ = writeln!(
            out,
            "  now   {:<22} {:>4} shards {:>9}{}",
            n.node,
            n.shards,
            human(n.bytes),
            if n.should_have_shards {
                ""
            } else {
                "  (holds no shards)"
            }
        );
    }
    for n in &p.nodes {
        let _ = writeln!(
            out,
            "  add   {:<22} {}{}, receives about {}{}",
            n.node.to_string(),
            match &n.citus_version {
                Some(v) => format!("Citus {v}"),
                None => "no Citus".into(),
            },
            if n.in_cluster {
                " (in the cluster already)"
            } else {
                ""
            },
            human(n.receives_bytes),
            match n.free_bytes {
                Some(f) => format!(", {} free", human(f)),
                None => String::new(),
            }
        );
    }
    let _ = writeln!(
        out,
        "  mode  {}\n  moves about {} of {} shard groups, {}, about {:.0} s",
        p.mode_reason,
        p.moves_estimate,
        p.shard_groups,
        human(p.bytes_estimate),
        p.seconds_estimate
    );
    for a in &p.advice {
        let _ = writeln!(out, "  note: {a}");
    }
    if p.problems.is_empty() {
        out.push_str("  ready: nothing missing\n");
    } else {
        let _ = writeln!(
            out,
            "  missing ({}), nothing was changed:",
            p.problems.len()
        );
        for m in &p.problems {
            let _ = writeln!(out, "    {m}");
        }
    }
    out
}

/// What `scale-out` did: the moves, the pauses, where the shards are,
/// rows and routing.
pub fn scale_out(r: &crate::citus::scale::ScaleReport) -> String {
    use crate::plan::estimate::human;
    let mut out = String::new();
    if r.already_done {
        out.push_str("already scaled out: nothing to move; verified\n");
    } else {
        let _ = writeln!(
            out,
            "scaled out{}: {} moves ({}) in {:.1} s ({:.1} s in all){}",
            if r.resumed { " (resumed)" } else { "" },
            r.moves,
            human(r.moved_bytes),
            r.rebalance_seconds,
            r.seconds,
            if r.drained_coordinator {
                ", coordinator drained"
            } else {
                ""
            }
        );
    }
    for p in &r.pauses {
        let _ = writeln!(
            out,
            "  stopped {:.1} s at {:.0} s: {}",
            p.seconds, p.at_s, p.why
        );
    }
    for t in &r.tuned {
        let _ = writeln!(
            out,
            "  {}: {} was lowered for the duration and is restored",
            t.node, t.setting
        );
    }
    for n in &r.after {
        let _ = writeln!(
            out,
            "  {:<22} {:>4} shards {:>9}",
            n.node,
            n.shards,
            human(n.bytes)
        );
    }
    for c in &r.counts {
        let _ = writeln!(
            out,
            "  {}: {} rows before, {} after",
            c.table, c.before, c.after
        );
    }
    if !r.routing.is_empty() {
        out.push_str("  a tenant-scoped query routes to one shard\n");
    }
    out.push_str(&guard_summary(&r.switch_guards));
    for p in &r.phases {
        let _ = writeln!(
            out,
            "  application {:<10} {:>6.1} s {:>6} tx  p50 {}  p99 {}  max {}  {} failed",
            p.phase,
            p.seconds,
            p.transactions,
            p.ms(p.p50_ms),
            p.ms(p.p99_ms),
            p.ms(p.max_ms),
            p.errors
        );
    }
    out
}

/// Where a scale-out stands, for `status`.
pub fn scale_status(s: &crate::citus::scale::ScaleStatus) -> String {
    let mut out = format!(
        "scale-out: {} (adding {}{}, {} mode), started {}{}\n",
        match s.phase.as_str() {
            "done" => "done".to_string(),
            p => format!("unfinished, stopped while {p} (`shardready scale-out` finishes it)"),
        },
        s.nodes.join(", "),
        if s.drain {
            ", draining the coordinator"
        } else {
            ""
        },
        s.mode,
        s.started_at,
        s.finished_at
            .as_deref()
            .map(|f| format!(", finished {f}"))
            .unwrap_or_default()
    );
    if s.moves_total > 0 {
        let _ = writeln!(
            out,
            "  moves {}/{}{}",
            s.moves_done,
            s.moves_total,
            if s.pauses > 0 {
                format!(", stopped {} time(s) by the governor", s.pauses)
            } else {
                String::new()
            }
        );
    }
    for r in &s.running {
        let _ = writeln!(out, "  running: {r}");
    }
    for t in &s.tuned {
        let _ = writeln!(
            out,
            "  {}: {} lowered for the moves, not restored yet (`shardready scale-out` restores \
             it when it finishes)",
            t.node, t.setting
        );
    }
    out
}

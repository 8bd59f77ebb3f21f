//! Markdown reports: apply's step table and the demo's phase tables.

use std::fmt::Write;

use super::DemoReport;
use crate::plan::estimate::human;

/// The apply report as Markdown: one row per step with its duration, lock
/// waits and what the application felt.
pub fn apply_markdown(
    r: &crate::apply::ApplyReport,
    workload: Option<&crate::workload::Summary>,
) -> String {
    let mut out = String::from("# shardready apply\n\n");
    let _ = writeln!(
        out,
        "Tenant column `{}`; {:.1} s in all{}.\n",
        r.tenant_column,
        r.seconds,
        if r.resumed { " (resumed)" } else { "" }
    );
    if !r.resolutions.is_empty() {
        let _ = writeln!(
            out,
            "Resolutions chosen: {}.\n",
            r.resolutions
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !r.access.is_empty() {
        out.push_str("## Keys and the application's lookups\n\n```text\n");
        out.push_str(r.access.text().trim_start());
        out.push_str("```\n\n");
    }
    out.push_str("| # | step | lock | seconds | lock timeouts | app tx | app p50 ms | app p99 ms | app max ms | app errors | over budget | waited / held s |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in &r.steps {
        let (tx, p50, p99, max, err) = match &s.app {
            // No latency without a transaction: a blank, not 0.0 ms.
            Some(a) if a.transactions == 0 => (
                "0".into(),
                "–".into(),
                "–".into(),
                "–".into(),
                a.errors.to_string(),
            ),
            Some(a) => (
                a.transactions.to_string(),
                format!("{:.1}", a.p50_ms),
                format!("{:.1}", a.p99_ms),
                format!("{:.1}", a.max_ms),
                a.errors.to_string(),
            ),
            None => Default::default(),
        };
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {:.2} | {} | {tx} | {p50} | {p99} | {max} | {err} | {} | {:.1} / {:.1} |",
            s.position,
            s.description,
            if s.status == crate::apply::StepOutcome::AlreadyDone {
                " (already done)"
            } else {
                ""
            },
            s.impact.label(),
            s.seconds,
            s.lock_timeouts,
            crate::apply::budget::cell(&s.budget),
            s.waited_for_calm_s,
            s.held_s
        );
    }
    if let Some(cost) = crate::apply::budget::cost_line(&r.steps, r.seconds) {
        let mut cost = cost;
        cost[..1].make_ascii_uppercase();
        let _ = writeln!(out, "\n{cost}.");
    }
    if !r.backfills.is_empty() {
        out.push_str("\n## Backfill\n\n| table | rows | batches | seconds | rows/s | throttled s | light vacuums |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for b in &r.backfills {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | {:.0} | {:.1} | {} |",
                b.table,
                b.rows,
                b.batches,
                b.seconds,
                b.rows_per_second(),
                b.throttled_seconds,
                b.reclaims
            );
        }
    }
    if let (Some(a), Some(w)) = (&r.app, workload) {
        let _ = writeln!(
            out,
            "\n## Application\n\nDuring apply: {} transactions, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors.\nWhole workload run: {:.0} orders/min, p99 {:.1} ms, max {:.1} ms, {} errors.",
            a.transactions, a.p50_ms, a.p99_ms, a.max_ms, a.errors,
            w.achieved_rate_per_min, w.latency.p99_ms, w.latency.max_ms, w.errors
        );
    }
    for k in &r.kept_paths {
        let _ = writeln!(
            out,
            "\n**Access path kept**: {} (drop it once they filter by the tenant column too: `{}`):\n",
            k.headline(),
            k.drop_sql
        );
        for st in &k.statements {
            let _ = writeln!(out, "- {st}");
        }
    }
    for a in &r.after {
        let _ = writeln!(
            out,
            "\nThe application after apply, beside its baseline: {}{}",
            a.line(),
            if a.slower {
                format!(
                    "\n\n**The application is slower after apply.** {}",
                    a.remedy()
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(sig) = &r.signals {
        let held = super::text::held_back(r);
        let _ = writeln!(
            out,
            "\n## The database's signals\n\n{}{}\nThe chart: `signals.svg` / `signals.png`.",
            super::text::signals_line(sig),
            if held.is_empty() {
                String::new()
            } else {
                format!("The backfill held back: {}.\n", held.join(", "))
            }
        );
    }
    out
}

fn phase_table_md(out: &mut String, phases: &[super::PhaseRow]) {
    out.push_str("| phase | seed step | seconds | app tx | app p50 ms | app p99 ms | app max ms | failed tx |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for p in phases {
        let ms = |v: f64| p.ms(v);
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} |",
            p.phase,
            p.seed_step,
            p.seconds,
            p.transactions,
            ms(p.p50_ms),
            ms(p.p99_ms),
            ms(p.max_ms),
            p.errors
        );
    }
}

/// The demo's report as Markdown.
pub fn demo_markdown(r: &DemoReport) -> String {
    let mut out = String::from("# shardready demo: Tailspin Toys, prepared for Citus online\n\n");
    let _ = writeln!(
        out,
        "Scale {} ({}, loaded in {:.1} s), application traffic {:.0} orders/min, {:.0} s in all. Verified: {}.\n",
        r.scale,
        counts_line(&r.counts),
        r.load_seconds,
        r.rate_per_min,
        r.total_seconds,
        if r.verified { "yes" } else { "NO" }
    );
    if r.runs.len() > 1 {
        out.push_str("**Verdict, side by side:**\n\n");
        for run in &r.runs {
            let _ = writeln!(out, "- {}", super::text::run_verdict(run));
        }
        out.push('\n');
    }
    for a in r.runs.iter().flat_map(|r| &r.after).filter(|a| a.slower) {
        let _ = writeln!(
            out,
            "**The application is slower {}**: {}. {}\n",
            a.phase.replace(" (traffic only)", ""),
            a.why.join("; "),
            a.remedy()
        );
    }
    let _ = writeln!(out, "{}.\n", r.distribution);
    if let Some(line) = &r.scale_out {
        let _ = writeln!(out, "{line}.\n");
    }
    for (step, c) in super::text::demo_statements(r) {
        let _ = writeln!(
            out,
            "The application's statements after {step}, beside after apply \
             (pg_stat_statements; the costliest first):\n"
        );
        for l in c.lines() {
            let _ = writeln!(out, "- {l}");
        }
        out.push('\n');
    }
    out.push_str("![application latency per second, by phase](latency.png)\n\n");
    for run in &r.runs {
        let _ = writeln!(out, "## {}\n", run.label);
        phase_table_md(&mut out, &run.phases);
        let _ = writeln!(
            out,
            "\nWhole run: {} orders, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} failed transactions.\n",
            run.workload.orders,
            run.workload.latency.p50_ms,
            run.workload.latency.p99_ms,
            run.workload.latency.max_ms,
            run.workload.errors
        );
        if !run.after.is_empty() {
            out.push_str("The application after each step, beside its baseline:\n\n");
            for a in &run.after {
                let _ = writeln!(out, "- {}", a.line());
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "`SELECT create_orders({})`: {:.1} s before, {:.1} s after the key swap: **{:.1}x** faster.\n",
            r.create_orders, run.create_orders_before_s, run.create_orders_after_s, run.speedup
        );
    }
    if let Some(run) = r.runs.first() {
        out.push_str("## Final keys\n\n| table | constraint |\n|---|---|\n");
        for k in &run.final_keys {
            let _ = writeln!(out, "| {} | `{}` |", k.table, k.constraint);
        }
    }
    out
}

/// `stores 10, products 400, …` (the demo's load counts, in one line).
pub(super) fn counts_line(counts: &[crate::ingest::TableRows]) -> String {
    counts
        .iter()
        .map(|c| format!("{} {}", c.table, c.rows))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scale-out report as Markdown: the pre-flight, the moves, where the
/// shards are, and what the application felt before, during and after.
pub fn scale_out_markdown(r: &crate::citus::scale::ScaleReport) -> String {
    let mut out = String::from("# shardready scale-out\n\n");
    let _ = writeln!(
        out,
        "Added {}{}: {} moves ({}) in {:.1} s, {:.1} s in all{}. Mode: {}.\n",
        r.nodes_added.join(", "),
        if r.drained_coordinator {
            ", coordinator drained"
        } else {
            ""
        },
        r.moves,
        human(r.moved_bytes),
        r.rebalance_seconds,
        r.seconds,
        if r.resumed { " (resumed)" } else { "" },
        r.preflight.mode_reason
    );
    out.push_str("| node | shards before | shards after | bytes after |\n|---|---:|---:|---:|\n");
    for n in &r.after {
        let before = r
            .preflight
            .before
            .iter()
            .find(|b| b.node == n.node)
            .map_or(0, |b| b.shards);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            n.node,
            before,
            n.shards,
            human(n.bytes)
        );
    }
    if !r.pauses.is_empty() {
        out.push_str("\nThe governor stopped the rebalance:\n\n");
        for p in &r.pauses {
            let _ = writeln!(
                out,
                "- at {:.0} s for {:.1} s: {}",
                p.at_s, p.seconds, p.why
            );
        }
    }
    if !r.phases.is_empty() {
        out.push_str("\n## What the application felt\n\n");
        phase_table_md(&mut out, &r.phases);
    }
    let after = super::text::application_after(
        "scale-out",
        &r.application_after,
        r.statements_after.as_ref(),
    );
    if !after.is_empty() {
        let _ = write!(
            out,
            "\n## The application after the scale-out\n\n```\n{after}```\n"
        );
    }
    if let Some(sig) = &r.signals {
        let _ = write!(
            out,
            "\n## The database's signals\n\n{}",
            super::text::signals_line(sig)
        );
    }
    out.push_str("\n## Rows\n\n| table | before | after |\n|---|---:|---:|\n");
    for c in &r.counts {
        let _ = writeln!(out, "| {} | {} | {} |", c.table, c.before, c.after);
    }
    out
}

//! Rendering for people: the analysis as text grouped by table (colour on
//! a TTY). JSON output is the serde form of the library's structs.

pub mod chart;

use std::fmt::Write;

use crate::analyze::{Analysis, Class, Finding, Severity};

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

fn human_bytes(b: i64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
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
    let _ = writeln!(out);
    for s in &a.tables {
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
                "~{} rows, {}{}",
                s.row_estimate,
                human_bytes(s.size_bytes),
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
    out
}

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
    out.push_str("| # | step | lock | seconds | lock timeouts | app tx | app p50 ms | app p99 ms | app max ms | app errors |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in &r.steps {
        let (tx, p50, p99, max, err) = match &s.app {
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
            "| {} | {}{} | {:?} | {:.2} | {} | {tx} | {p50} | {p99} | {max} | {err} |",
            s.position,
            s.description,
            if s.status == crate::apply::StepOutcome::AlreadyDone {
                " (already done)"
            } else {
                ""
            },
            s.impact,
            s.seconds,
            s.lock_timeouts
        );
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
                b.rows as f64 / b.seconds.max(1e-9),
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
    out
}

fn phase_table_md(out: &mut String, run: &crate::demo::Run) {
    out.push_str("| phase | seed step | seconds | app tx | app p50 ms | app p99 ms | app max ms | failed tx |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for p in &run.phases {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {} |",
            p.phase, p.seed_step, p.seconds, p.transactions, p.p50_ms, p.p99_ms, p.max_ms, p.errors
        );
    }
}

/// The demo's report as Markdown.
pub fn demo_markdown(r: &crate::demo::DemoReport) -> String {
    let mut out = String::from("# shardready demo: Tailspin Toys, prepared for Citus online\n\n");
    let _ = writeln!(
        out,
        "Scale {} ({}), application traffic {:.0} orders/min, {:.0} s in all. Verified: {}.\n",
        r.scale,
        r.counts
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        r.rate_per_min,
        r.total_seconds,
        if r.verified { "yes" } else { "NO" }
    );
    out.push_str("![application latency per second, by phase](latency.png)\n\n");
    for run in &r.runs {
        let _ = writeln!(out, "## {}\n", run.label);
        phase_table_md(&mut out, run);
        let _ = writeln!(
            out,
            "\nWhole run: {} orders, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} failed transactions.\n",
            run.workload.orders,
            run.workload.latency.p50_ms,
            run.workload.latency.p99_ms,
            run.workload.latency.max_ms,
            run.workload.errors
        );
        let _ = writeln!(
            out,
            "`SELECT create_orders({})`: {:.1} s before, {:.1} s after the key swap: **{:.1}x** faster.\n",
            r.create_orders, run.create_orders_before_s, run.create_orders_after_s, run.speedup
        );
    }
    if let Some(run) = r.runs.first() {
        out.push_str("## Final keys\n\n| table | constraint |\n|---|---|\n");
        for (t, k) in &run.final_keys {
            let _ = writeln!(out, "| {t} | `{k}` |");
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The demo's report as one self-contained HTML page (the chart inline).
pub fn demo_html(r: &crate::demo::DemoReport, svg: &str) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p>Scale {} ({}), application traffic {:.0} orders/min, {:.0} s in all. Verified: <b>{}</b>.</p>",
        r.scale,
        esc(&r.counts.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")),
        r.rate_per_min,
        r.total_seconds,
        if r.verified { "yes" } else { "NO" }
    );
    let svg_body = svg.find("<svg").map(|i| &svg[i..]).unwrap_or(svg);
    let _ = writeln!(body, "<div class=\"chart\">{svg_body}</div>");
    for run in &r.runs {
        let _ = writeln!(body, "<h2>{}</h2>", esc(&run.label));
        body.push_str("<table><tr><th>phase</th><th>seed step</th><th>seconds</th><th>app tx</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>failed</th></tr>\n");
        for p in &run.phases {
            let bad = if p.errors > 0 { " class=\"bad\"" } else { "" };
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td><code>{}</code></td><td>{:.1}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td{bad}>{}</td></tr>",
                esc(&p.phase), esc(&p.seed_step), p.seconds, p.transactions, p.p50_ms, p.p99_ms, p.max_ms, p.errors
            );
        }
        body.push_str("</table>\n");
        let _ = writeln!(
            body,
            "<p>Whole run: {} orders, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} failed.<br><code>SELECT create_orders({})</code>: {:.1} s before, {:.1} s after the key swap: <b>{:.1}x</b> faster.</p>",
            run.workload.orders, run.workload.latency.p50_ms, run.workload.latency.p99_ms,
            run.workload.latency.max_ms, run.workload.errors, r.create_orders,
            run.create_orders_before_s, run.create_orders_after_s, run.speedup
        );
    }
    if let Some(run) = r.runs.first() {
        body.push_str("<h2>Final keys</h2><table><tr><th>table</th><th>constraint</th></tr>\n");
        for (t, k) in &run.final_keys {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td><code>{}</code></td></tr>",
                esc(t),
                esc(k)
            );
        }
        body.push_str("</table>\n");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>shardready demo report</title>\n\
         <style>body{{font-family:sans-serif;max-width:1320px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:first-child,td:nth-child(2),th{{text-align:left}}.bad{{color:#b00;font-weight:bold}}\
         .chart svg{{max-width:100%;height:auto}}code{{font-size:90%}}</style></head>\n\
         <body><h1>shardready demo: Tailspin Toys, prepared for Citus online</h1>\n{body}</body></html>\n"
    )
}

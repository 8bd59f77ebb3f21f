//! The demo's report as one self-contained HTML page.

use std::fmt::Write;

use super::DemoReport;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The demo's report as one self-contained HTML page (the chart inline).
pub fn demo_html(r: &DemoReport, svg: &str, signals: Option<&str>) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p>Scale {} ({}), application traffic {:.0} orders/min, {:.0} s in all. Verified: <b>{}</b>.</p>",
        r.scale,
        esc(&super::markdown::counts_line(&r.counts)),
        r.rate_per_min,
        r.total_seconds,
        if r.verified { "yes" } else { "NO" }
    );
    let svg_body = svg.find("<svg").map(|i| &svg[i..]).unwrap_or(svg);
    let _ = writeln!(body, "<div class=\"chart\">{svg_body}</div>");
    if let Some(sig) = signals {
        let sig_body = sig.find("<svg").map(|i| &sig[i..]).unwrap_or(sig);
        let _ = writeln!(
            body,
            "<p>What the database itself showed meanwhile (sampled ten times a second from a separate connection): \
             the canary commit, the application's waits on shardready's locks, WAL and standby lag.</p>\n\
             <div class=\"chart\">{sig_body}</div>"
        );
    }
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
        for k in &run.final_keys {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td><code>{}</code></td></tr>",
                esc(&k.table),
                esc(&k.constraint)
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

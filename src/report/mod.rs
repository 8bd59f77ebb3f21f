//! All rendering for people and files: text on a terminal ([`text`]),
//! Markdown ([`markdown`]) and HTML ([`html`]) reports, charts ([`chart`]),
//! and the one writer of a report directory ([`write_demo`],
//! [`write_apply`]). JSON output is the serde form of the library's
//! structs; the report types of the demo live here.

pub(crate) mod chart;
mod citus_text;
pub(crate) mod html;
pub(crate) mod markdown;
pub mod text;

use std::path::Path;

use serde::Serialize;

pub use crate::after::AfterCheck;

use crate::workload::{self, TimelineRow};
use chart::{Band, Panel, SignalPanel};

pub use markdown::{apply_markdown, demo_markdown};
pub use text::analysis_text;

/// A size for people: kB, MB or GB.
pub(crate) fn human_bytes(b: i64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

/// One row of the phase table.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRow {
    pub phase: String,
    /// The seed exercise's step it corresponds to.
    pub seed_step: String,
    pub seconds: f64,
    pub start_s: f64,
    pub transactions: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl PhaseRow {
    /// A latency of this phase for people: a dash when the phase had no
    /// transaction, not 0.0 ms.
    pub fn ms(&self, v: f64) -> String {
        if self.transactions == 0 {
            "–".to_string()
        } else {
            format!("{v:.1}")
        }
    }

    /// What the application's traffic `w` felt from `from` to `to`, on the
    /// time axis that starts at `t0`.
    pub fn measure(
        w: &workload::Workload,
        t0: std::time::Instant,
        phase: &str,
        seed_step: &str,
        from: std::time::Instant,
        to: std::time::Instant,
    ) -> PhaseRow {
        let (l, tx, errors) = w.stats_between(from, to);
        PhaseRow {
            phase: phase.into(),
            seed_step: seed_step.into(),
            seconds: to.duration_since(from).as_secs_f64(),
            start_s: from.duration_since(t0).as_secs_f64(),
            transactions: tx,
            errors,
            p50_ms: l.p50_ms,
            p99_ms: l.p99_ms,
            max_ms: l.max_ms,
        }
    }

    /// This phase as a window of the traffic.
    pub fn window(&self) -> crate::after::Window {
        crate::after::Window {
            seconds: self.seconds,
            transactions: self.transactions,
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
        }
    }
}

/// The traffic-only phases after the first (the baseline), each against
/// it; empty when the baseline measured nothing.
pub fn after_checks(phases: &[PhaseRow]) -> Vec<AfterCheck> {
    let Some(base) = phases.first() else {
        return Vec::new();
    };
    phases[1..]
        .iter()
        .filter(|p| p.phase.contains("(traffic only)"))
        .filter_map(|p| AfterCheck::compare(&p.phase, &base.window(), &p.window()))
        .collect()
}

/// One run (shardready, or the seed's procedure).
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub label: String,
    pub phases: Vec<PhaseRow>,
    pub create_orders_before_s: f64,
    pub create_orders_after_s: f64,
    pub speedup: f64,
    pub final_keys: Vec<TableConstraint>,
    pub workload: workload::Summary,
    pub timeline: Vec<TimelineRow>,
    pub apply: Option<crate::apply::ApplyReport>,
    /// The application after each step of the work, beside its baseline.
    pub after: Vec<AfterCheck>,
    /// The database's signals during apply and distribute, on the run's
    /// time axis (empty for the seed's procedure).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<crate::apply::signals::SignalSecond>,
}

/// A key or foreign key of a table, as `name definition`.
#[derive(Debug, Clone, Serialize)]
pub struct TableConstraint {
    pub table: String,
    pub constraint: String,
}

/// Everything the demo measured (`report.json`, schema `shardready.demo/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub schema: &'static str,
    pub scale: f64,
    pub rate_per_min: f64,
    /// N of the timed `create_orders(N)`.
    pub create_orders: i32,
    pub counts: Vec<crate::ingest::TableRows>,
    pub load_seconds: f64,
    pub extensions: Vec<crate::catalog::Extension>,
    pub blockers_before: usize,
    pub verified: bool,
    pub total_seconds: f64,
    pub runs: Vec<Run>,
    pub sandbox_url: Option<String>,
    /// One line: how distributing on Citus went, or where the demo stopped
    /// short of it and why.
    pub distribution: String,
    /// What `distribute` did, when the demo distributed.
    pub distributed: Option<crate::citus::DistributeReport>,
    /// One line: how scaling out went (None: the demo did not scale out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_out: Option<String>,
    /// What `scale-out` did, when the demo scaled out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaled_out: Option<crate::citus::scale::ScaleReport>,
}

/// A report directory's files: report.json and report.md always; the
/// chart (latency.svg, latency.png) and report.html when there are panels.
struct Files<'a> {
    json: serde_json::Value,
    markdown: String,
    panels: Vec<Panel>,
    /// The database's signals (signals.svg, signals.png).
    signals: Vec<SignalPanel>,
    /// report.html from the latency chart's and the signals chart's SVG.
    html: Option<&'a HtmlPage<'a>>,
}

/// Renders report.html from the latency chart's SVG and, when there is
/// one, the signals chart's.
type HtmlPage<'a> = dyn Fn(&str, Option<&str>) -> String + 'a;

/// Writes a report directory; the error names the file.
fn write_files(out: &Path, files: Files) -> Result<Vec<&'static str>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
    };
    write(
        "report.json",
        &serde_json::to_string_pretty(&files.json).expect("report serializes"),
    )?;
    write("report.md", &files.markdown)?;
    let mut written = vec!["report.json", "report.md"];
    let mut signals_svg = None;
    if !files.signals.is_empty() {
        chart::write_signals(
            &out.join("signals.svg"),
            &out.join("signals.png"),
            &files.signals,
        )
        .map_err(|e| format!("cannot draw signals.svg: {e}"))?;
        written.extend(["signals.svg", "signals.png"]);
        signals_svg = std::fs::read_to_string(out.join("signals.svg")).ok();
    }
    if !files.panels.is_empty() {
        chart::write_svg(&out.join("latency.svg"), &files.panels)
            .map_err(|e| format!("cannot draw latency.svg: {e}"))?;
        chart::write_png(&out.join("latency.png"), &files.panels)
            .map_err(|e| format!("cannot draw latency.png: {e}"))?;
        written.extend(["latency.svg", "latency.png"]);
        if let Some(html) = files.html {
            let svg = std::fs::read_to_string(out.join("latency.svg"))
                .map_err(|e| format!("cannot read latency.svg: {e}"))?;
            write("report.html", &html(&svg, signals_svg.as_deref()))?;
            written.push("report.html");
        }
    }
    Ok(written)
}

/// The demo's report: report.json, report.md, report.html, latency.svg,
/// latency.png.
pub fn write_demo(out: &Path, report: &DemoReport) -> Result<(), String> {
    let html = |svg: &str, signals: Option<&str>| html::demo_html(report, svg, signals);
    write_files(
        out,
        Files {
            json: serde_json::to_value(report).expect("report serializes"),
            markdown: demo_markdown(report),
            panels: panels(report),
            signals: report
                .runs
                .iter()
                .filter(|r| !r.signals.is_empty())
                .map(|r| SignalPanel {
                    title: format!("{} — the database's signals", r.label),
                    seconds: r.signals.clone(),
                    bands: bands(&r.phases),
                    canary_limit_ms: r
                        .apply
                        .as_ref()
                        .and_then(|a| a.signals.as_ref()?.baseline.as_ref())
                        .map(|b| b.canary_limit_ms),
                })
                .collect(),
            html: Some(&html),
        },
    )
    .map(|_| ())
}

/// `apply --report DIR`: report.json (with the workload's summary and
/// timeline when one ran), report.md, and the signals chart (signals.svg,
/// signals.png) with a band per step; returns the files written.
pub fn write_apply(
    out: &Path,
    report: &crate::apply::ApplyReport,
    workload: Option<&workload::WorkloadReport>,
) -> Result<Vec<&'static str>, String> {
    let mut json = serde_json::to_value(report).expect("report serializes");
    if let Some(w) = workload {
        json["workload"] = serde_json::to_value(&w.summary).expect("summary serializes");
        json["timeline"] = serde_json::to_value(&w.timeline).expect("timeline serializes");
    }
    write_files(
        out,
        Files {
            json,
            markdown: apply_markdown(report, workload.map(|w| &w.summary)),
            panels: Vec::new(),
            signals: report
                .signals
                .iter()
                .filter(|s| !s.seconds.is_empty())
                .map(|s| SignalPanel {
                    title: format!(
                        "shardready apply — the database's signals ({:.0} s)",
                        report.seconds
                    ),
                    seconds: s.seconds.clone(),
                    bands: report
                        .steps
                        .iter()
                        .filter(|st| st.seconds >= 0.5)
                        .map(|st| Band {
                            label: st.id.clone(),
                            start_s: st.started_at_s,
                            end_s: st.started_at_s + st.seconds,
                        })
                        .collect(),
                    canary_limit_ms: s.baseline.as_ref().map(|b| b.canary_limit_ms),
                })
                .collect(),
            html: None,
        },
    )
}

/// `scale-out --report DIR`: report.json (with the workload's timeline
/// when one ran), report.md, latency.svg/png with the before / scale-out /
/// after bands (with `--workload`), and the signals chart.
pub fn write_scale_out(
    out: &Path,
    report: &crate::citus::scale::ScaleReport,
    workload: Option<&workload::WorkloadReport>,
) -> Result<Vec<&'static str>, String> {
    let mut json = serde_json::to_value(report).expect("report serializes");
    let mut panels = Vec::new();
    if let Some(w) = workload {
        json["timeline"] = serde_json::to_value(&w.timeline).expect("timeline serializes");
        panels.push(Panel {
            title: format!(
                "shardready scale-out — {:.0} orders/min; p99 {:.1} ms, max {:.0} ms, {} failed",
                w.summary.target_rate_per_min,
                w.summary.latency.p99_ms,
                w.summary.latency.max_ms,
                w.summary.errors
            ),
            timeline: w.timeline.clone(),
            bands: bands(&report.phases),
        });
    }
    let mut signal_bands = vec![Band {
        label: "scale-out".into(),
        start_s: report.rebalance_start_s,
        end_s: report.rebalance_start_s + report.rebalance_seconds,
    }];
    signal_bands.extend(report.pauses.iter().map(|p| Band {
        label: "stopped".into(),
        start_s: p.at_s,
        end_s: p.at_s + p.seconds,
    }));
    write_files(
        out,
        Files {
            json,
            markdown: markdown::scale_out_markdown(report),
            panels,
            signals: report
                .signals
                .iter()
                .filter(|s| !s.seconds.is_empty())
                .map(|s| SignalPanel {
                    title: "shardready scale-out — the database's signals".into(),
                    seconds: s.seconds.clone(),
                    bands: signal_bands.clone(),
                    canary_limit_ms: s.baseline.as_ref().map(|b| b.canary_limit_ms),
                })
                .collect(),
            html: None,
        },
    )
}

/// The chart panels of a report.
pub fn panels(report: &DemoReport) -> Vec<Panel> {
    report
        .runs
        .iter()
        .map(|r| Panel {
            title: format!(
                "{} — {:.0} orders/min; p99 {:.1} ms, max {:.0} ms, {} failed",
                r.label,
                report.rate_per_min,
                r.workload.latency.p99_ms,
                r.workload.latency.max_ms,
                r.workload.errors
            ),
            timeline: r.timeline.clone(),
            bands: bands(&r.phases),
        })
        .collect()
}

/// A run's phases as chart bands.
fn bands(phases: &[PhaseRow]) -> Vec<Band> {
    phases
        .iter()
        .map(|p| Band {
            label: p.phase.clone(),
            start_s: p.start_s,
            end_s: p.start_s + p.seconds,
        })
        .collect()
}

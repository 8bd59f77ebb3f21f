//! The latency chart: the application's p50/p99/max per second over the
//! run, on a log scale, with each phase as a labelled band — one panel per
//! run (shardready, and the seed's procedure with `--compare-seed`). Drawn
//! to SVG and PNG (the PNG with an embedded font, so it renders anywhere).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle, FontTransform};

use crate::workload::TimelineRow;

/// One phase band: [start, end) in seconds since the run's start.
#[derive(Debug, Clone)]
pub struct Band {
    pub label: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// One panel of the chart.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub timeline: Vec<TimelineRow>,
    pub bands: Vec<Band>,
}

/// A line of the chart: name, colour, width, value of a second.
type Series = (&'static str, RGBColor, u32, fn(&TimelineRow) -> f64);

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

fn fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
        let _ = register_font("sans-serif", FontStyle::Bold, FONT);
    });
}

const BAND_COLORS: [RGBColor; 4] = [
    RGBColor(66, 133, 244),
    RGBColor(251, 188, 5),
    RGBColor(52, 168, 83),
    RGBColor(171, 71, 188),
];

/// Characters of the phase key that fit on one line of the chart.
const KEY_LINE_CHARS: usize = 150;

/// `phases: 1 a  ·  2 b …`, wrapped between names at `width` characters.
fn key_lines(names: &[String], width: usize) -> Vec<String> {
    let mut lines = vec![String::from("phases:")];
    for (i, name) in names.iter().enumerate() {
        let last = lines.last_mut().expect("a line");
        let sep = if i == 0 { " " } else { "  ·  " };
        if i > 0 && last.chars().count() + sep.len() + name.chars().count() > width {
            lines.push(format!("        {name}"));
        } else {
            last.push_str(sep);
            last.push_str(name);
        }
    }
    lines
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    panels: &[Panel],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x_max = panels
        .iter()
        .flat_map(|p| {
            p.timeline
                .iter()
                .map(|r| r.t_s as f64 + 1.0)
                .chain(p.bands.iter().map(|b| b.end_s))
        })
        .fold(10.0f64, f64::max);
    let y_max = panels
        .iter()
        .flat_map(|p| p.timeline.iter().map(|r| r.max_ms))
        .fold(10.0f64, f64::max)
        * 2.0;
    let y_min = 0.1f64;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (panel, whole) in panels.iter().zip(areas) {
        // The bottom strip names the numbered phase bands, on as many lines
        // as they need.
        let names: Vec<String> = panel
            .bands
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{} {}", i + 1, b.label))
            .collect();
        let lines = key_lines(&names, KEY_LINE_CHARS);
        let (_, h) = whole.dim_in_pixel();
        let strip = 12 + 18 * lines.len().max(1) as u32;
        let (area, key) = whole.split_vertically(h.saturating_sub(strip));
        for (i, line) in lines.iter().enumerate() {
            key.draw_text(
                line,
                &("sans-serif", 13).into_font().color(&BLACK.mix(0.8)),
                (80, 6 + 18 * i as i32),
            )
            .map_err(|e| e.to_string())?;
        }
        let mut chart = ChartBuilder::on(&area)
            .caption(
                &panel.title,
                ("sans-serif", 22).into_font().style(FontStyle::Bold),
            )
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since the start of the run")
            .y_desc("application latency per order (ms, log scale)")
            .axis_desc_style(("sans-serif", 15))
            .label_style(("sans-serif", 13))
            .y_label_formatter(&ms_label)
            .draw()
            .map_err(|e| e.to_string())?;
        // Each band named in place, written downwards from the top along
        // its left edge (a short phase keeps its name); the number matches
        // the key below. Neighbours alternate between two heights, so two
        // short phases in a row stay readable.
        draw_bands(
            &mut chart,
            &panel.bands,
            (y_min, y_max),
            Some((y_max / 1.3, y_max / 6.0, x_max)),
        )?;
        // The baseline: the application's p99 before anything ran, across
        // the whole run, so every phase is read against it.
        if let Some(base) = baseline_p99(panel) {
            let grey = RGBColor(90, 90, 90);
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, base), (x_max, base)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?
                .label(format!("baseline p99 ({base:.1} ms)"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], grey.stroke_width(1))
                });
        }
        let series: [Series; 2] = [
            ("p99", RGBColor(230, 124, 0), 3, |r| r.p99_ms),
            ("p50", RGBColor(15, 98, 170), 2, |r| r.p50_ms),
        ];
        for (name, color, width, get) in series {
            let pts: Vec<(f64, f64)> = panel
                .timeline
                .iter()
                .filter(|r| r.transactions > 0)
                .map(|r| (r.t_s as f64 + 0.5, get(r).max(y_min)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(width)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
        }
        // max as dots over the lines: never hidden under p99 where they
        // are equal (seconds with few transactions).
        let red = RGBColor(200, 30, 30);
        chart
            .draw_series(
                panel
                    .timeline
                    .iter()
                    .filter(|r| r.transactions > 0)
                    .map(|r| {
                        Circle::new((r.t_s as f64 + 0.5, r.max_ms.max(y_min)), 2, red.filled())
                    }),
            )
            .map_err(|e| e.to_string())?
            .label("max")
            .legend(move |(x, y)| Circle::new((x + 11, y), 3, red.filled()));
        let errors: Vec<(f64, f64)> = panel
            .timeline
            .iter()
            .filter(|r| r.errors > 0)
            .map(|r| (r.t_s as f64 + 0.5, y_max / 1.2))
            .collect();
        if !errors.is_empty() {
            chart
                .draw_series(
                    errors
                        .into_iter()
                        .map(|p| Cross::new(p, 6, RGBColor(200, 0, 0).stroke_width(2))),
                )
                .map_err(|e| e.to_string())?
                .label("failed transactions")
                .legend(|(x, y)| Cross::new((x + 10, y), 5, RGBColor(200, 0, 0).stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// A log-scale axis label in ms: `0.5`, `20`.
fn ms_label(v: &f64) -> String {
    if *v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A band colour dark enough for text.
fn darker(c: RGBColor) -> RGBColor {
    RGBColor(c.0 / 2, c.1 / 2, c.2 / 2)
}

/// The median per-second p99 of the baseline phase (the band whose label
/// starts with "baseline"), if the run has one.
fn baseline_p99(panel: &Panel) -> Option<f64> {
    let band = panel
        .bands
        .iter()
        .find(|b| b.label.starts_with("baseline"))?;
    let mut p99s: Vec<f64> = panel
        .timeline
        .iter()
        .filter(|r| r.transactions > 0)
        // Whole seconds inside the band (row t covers [t, t + 1)).
        .filter(|r| (r.t_s as f64) >= band.start_s && (r.t_s as f64 + 1.0) <= band.end_s + 0.01)
        .map(|r| r.p99_ms)
        .collect();
    if p99s.is_empty() {
        return None;
    }
    p99s.sort_by(f64::total_cmp);
    Some(p99s[p99s.len() / 2])
}

/// One panel of the signals chart: the database's own signals over a run
/// (`at_s` on the panel's time axis), with the run's phase bands.
#[derive(Debug, Clone)]
pub struct SignalPanel {
    pub title: String,
    pub seconds: Vec<crate::apply::signals::SignalSecond>,
    pub bands: Vec<Band>,
    /// Above this a canary commit counts as slow (dashed).
    pub canary_limit_ms: Option<f64>,
}

/// Draws the phase bands of a panel onto a chart, each named (numbered
/// as in the key) rotated along its left edge when `labels` gives the two
/// heights neighbours alternate between (and the x range).
fn draw_bands<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    bands: &[Band],
    (y_min, y_max): (f64, f64),
    labels: Option<(f64, f64, f64)>,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    for (i, b) in bands.iter().enumerate() {
        let color = BAND_COLORS[i % BAND_COLORS.len()];
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(b.start_s, y_min), (b.end_s.max(b.start_s + 0.2), y_max)],
                color.mix(0.13).filled(),
            )))
            .map_err(|e| e.to_string())?;
        let Some((even, odd, x_max)) = labels else {
            continue;
        };
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{} {}", i + 1, b.label),
                (
                    b.start_s + x_max * 0.002,
                    if i % 2 == 0 { even } else { odd },
                ),
                ("sans-serif", 12)
                    .into_font()
                    .style(FontStyle::Bold)
                    .transform(FontTransform::Rotate90)
                    .color(&darker(color)),
            )))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The signals chart: per panel, on top the canary commit (median and
/// slowest per second), the application's longest wait on shardready's
/// locks and its statements' mean (ms, log scale), with the canary's
/// limit dashed; below, WAL written (MB/s), the standby furthest behind
/// (MB) and requested checkpoints (triangles).
fn draw_signals<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    panels: &[SignalPanel],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x_max = panels
        .iter()
        .flat_map(|p| {
            p.seconds
                .iter()
                .map(|s| s.at_s + 1.0)
                .chain(p.bands.iter().map(|b| b.end_s))
        })
        .fold(10.0f64, f64::max);
    for (panel, whole) in panels
        .iter()
        .zip(root.split_evenly((panels.len().max(1), 1)))
    {
        let (_, h) = whole.dim_in_pixel();
        let (top, bottom) = whole.split_vertically(h * 58 / 100);
        let ms_max = panel
            .seconds
            .iter()
            .flat_map(|s| {
                [
                    s.canary_max_ms,
                    s.waits_on_us_ms,
                    s.stmt_mean_ms.unwrap_or(0.0),
                ]
            })
            .chain(panel.canary_limit_ms)
            .fold(10.0f64, f64::max)
            * 2.0;
        let y_min = 0.1f64;
        let mut chart = ChartBuilder::on(&top)
            .caption(
                &panel.title,
                ("sans-serif", 20).into_font().style(FontStyle::Bold),
            )
            .margin(10)
            .x_label_area_size(20)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (y_min..ms_max).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .y_desc("ms (log scale)")
            .axis_desc_style(("sans-serif", 14))
            .label_style(("sans-serif", 12))
            .y_label_formatter(&ms_label)
            .draw()
            .map_err(|e| e.to_string())?;
        draw_bands(
            &mut chart,
            &panel.bands,
            (y_min, ms_max),
            Some((ms_max / 1.3, ms_max / 6.0, x_max)),
        )?;
        if let Some(limit) = panel.canary_limit_ms {
            let grey = RGBColor(90, 90, 90);
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, limit), (x_max, limit)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?
                .label(format!("canary limit ({limit:.1} ms)"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], grey.stroke_width(1))
                });
        }
        type Get = fn(&crate::apply::signals::SignalSecond) -> Option<f64>;
        let lines: [(&str, RGBColor, Get); 3] = [
            ("canary commit, median", RGBColor(15, 98, 170), |s| {
                Some(s.canary_p50_ms)
            }),
            (
                "application's wait on shardready's locks",
                RGBColor(230, 124, 0),
                |s| Some(s.waits_on_us_ms).filter(|&w| w > 0.0),
            ),
            (
                "application statements, mean",
                RGBColor(140, 60, 170),
                |s| s.stmt_mean_ms,
            ),
        ];
        for (name, color, get) in lines {
            let pts: Vec<(f64, f64)> = panel
                .seconds
                .iter()
                .filter_map(|s| get(s).map(|v| (s.at_s, v.max(y_min))))
                .collect();
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
        }
        let red = RGBColor(200, 30, 30);
        chart
            .draw_series(
                panel
                    .seconds
                    .iter()
                    .map(|s| Circle::new((s.at_s, s.canary_max_ms.max(y_min)), 2, red.filled())),
            )
            .map_err(|e| e.to_string())?
            .label("canary commit, slowest")
            .legend(move |(x, y)| Circle::new((x + 11, y), 3, red.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;

        // Below: WAL and standby lag.
        let mb_max = panel
            .seconds
            .iter()
            .flat_map(|s| [s.wal_mb_s.unwrap_or(0.0), s.replica_lag_mb.unwrap_or(0.0)])
            .fold(1.0f64, f64::max)
            * 1.15;
        let mut low = ChartBuilder::on(&bottom)
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..mb_max)
            .map_err(|e| e.to_string())?;
        low.configure_mesh()
            .x_desc("seconds since the start of the run")
            .y_desc("MB/s, MB")
            .axis_desc_style(("sans-serif", 14))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        draw_bands(&mut low, &panel.bands, (0.0, mb_max), None)?;
        type GetMb = fn(&crate::apply::signals::SignalSecond) -> Option<f64>;
        let mb_lines: [(&str, RGBColor, GetMb); 2] = [
            ("WAL written (MB/s)", RGBColor(52, 168, 83), |s| s.wal_mb_s),
            ("standby behind (MB)", RGBColor(90, 90, 90), |s| {
                s.replica_lag_mb
            }),
        ];
        for (name, color, get) in mb_lines {
            let pts: Vec<(f64, f64)> = panel
                .seconds
                .iter()
                .filter_map(|s| get(s).map(|v| (s.at_s, v)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            low.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
        }
        // A triangle where WAL volume requested a checkpoint.
        let mut last = 0;
        let checkpoints: Vec<f64> = panel
            .seconds
            .iter()
            .filter_map(|s| {
                let c = s.checkpoints_req?;
                let new = c > last;
                last = last.max(c);
                new.then_some(s.at_s)
            })
            .collect();
        if !checkpoints.is_empty() {
            let black = RGBColor(0, 0, 0);
            low.draw_series(
                checkpoints
                    .into_iter()
                    .map(|x| TriangleMarker::new((x, mb_max * 0.92), 6, black.filled())),
            )
            .map_err(|e| e.to_string())?
            .label("checkpoint requested by WAL volume")
            .legend(move |(x, y)| TriangleMarker::new((x + 11, y), 5, black.filled()));
        }
        low.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Writes the signals chart as SVG and PNG (`signals.svg`, `signals.png`).
pub fn write_signals(svg: &Path, png: &Path, panels: &[SignalPanel]) -> Result<(), String> {
    fonts();
    let h = 520 * panels.len().max(1) as u32;
    draw_signals(SVGBackend::new(svg, (1280, h)).into_drawing_area(), panels)?;
    draw_signals(
        BitMapBackend::new(png, (1280, h)).into_drawing_area(),
        panels,
    )
}

/// Writes the chart as SVG.
pub fn write_svg(path: &Path, panels: &[Panel]) -> Result<(), String> {
    fonts();
    let h = 450 * panels.len().max(1) as u32;
    draw(SVGBackend::new(path, (1280, h)).into_drawing_area(), panels)
}

/// Writes the chart as PNG.
pub fn write_png(path: &Path, panels: &[Panel]) -> Result<(), String> {
    fonts();
    let h = 450 * panels.len().max(1) as u32;
    draw(
        BitMapBackend::new(path, (1280, h)).into_drawing_area(),
        panels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_key_wraps_between_names() {
        let names: Vec<String> = (1..=10).map(|i| format!("{i} phase number {i}")).collect();
        let lines = key_lines(&names, 60);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 60), "{lines:?}");
        let all = lines.join(" ");
        for n in &names {
            assert!(all.contains(n.as_str()), "{n} lost: {lines:?}");
        }
        assert_eq!(key_lines(&names[..2], 60).len(), 1);
    }
}

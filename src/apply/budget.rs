//! How much of the application's budget each step used, and what the lack
//! of headroom cost the run: for each step, the share of each source's
//! samples over the budget (the application's transactions over
//! `--app-p99-limit` with `--workload`; the database's signals' ticks over
//! their limits), the seconds it waited for the database to calm down
//! before it started, and the seconds its backfill was held back.

use std::time::Instant;

use serde::Serialize;

use super::{Pressure, StepReport};

/// What measured the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The application's own latency (`--workload`): each transaction a
    /// sample, over `--app-p99-limit`.
    ApplicationLatency,
    /// The database's signals: ten ticks a second, each over its limits.
    DatabaseSignals,
}

impl Source {
    /// What its samples are, in a sentence.
    fn samples(self) -> &'static str {
        match self {
            Source::ApplicationLatency => "the application's transactions",
            Source::DatabaseSignals => "the database signals' samples",
        }
    }

    /// A short name, for a table's cell.
    fn short(self) -> &'static str {
        match self {
            Source::ApplicationLatency => "app",
            Source::DatabaseSignals => "signals",
        }
    }
}

/// One source's samples during a step, and how many were over budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetUse {
    pub source: Source,
    pub samples: u64,
    pub over: u64,
}

/// A step is named the most over budget only with at least this many
/// samples (a one-tick step at 1 of 1 says little).
const MIN_SAMPLES: u64 = 10;

impl BudgetUse {
    /// The share of the samples over budget (0 without samples).
    pub fn share(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.over as f64 / self.samples as f64
        }
    }
}

/// Each source's samples since `from`, and those over `limit_ms`.
pub(crate) fn since(pressures: &[&dyn Pressure], from: Instant, limit_ms: f64) -> Vec<BudgetUse> {
    pressures
        .iter()
        .filter_map(|p| {
            let (samples, over) = p.slow_since(from, limit_ms)?;
            Some(BudgetUse {
                source: if p.states_the_budget() {
                    Source::ApplicationLatency
                } else {
                    Source::DatabaseSignals
                },
                samples,
                over,
            })
        })
        .collect()
}

/// `over budget: 12% of the application's transactions, 30% of the
/// signals' samples`; None when nothing was over.
pub fn step_line(uses: &[BudgetUse]) -> Option<String> {
    let parts: Vec<String> = uses
        .iter()
        .filter(|u| u.over > 0)
        .map(|u| {
            format!(
                "{:.0}% of {} ({} of {})",
                u.share() * 100.0,
                u.source.samples(),
                u.over,
                u.samples
            )
        })
        .collect();
    (!parts.is_empty()).then(|| format!("over budget: {}", parts.join(", ")))
}

/// The Markdown table's cell: `app 4% · signals 12%`, `–` without samples.
pub fn cell(uses: &[BudgetUse]) -> String {
    if uses.iter().all(|u| u.samples == 0) {
        return "–".into();
    }
    uses.iter()
        .filter(|u| u.samples > 0)
        .map(|u| format!("{} {:.0}%", u.source.short(), u.share() * 100.0))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// What the application's lack of headroom cost the run: the seconds
/// spent waiting for calm before steps and held back in backfills, their
/// share of the run, and the step that used the most budget. None when
/// nothing was held back and nothing was over budget.
pub fn cost_line(steps: &[StepReport], run_seconds: f64) -> Option<String> {
    let calm: f64 = steps.iter().map(|s| s.waited_for_calm_s).sum();
    let held: f64 = steps.iter().map(|s| s.held_s).sum();
    let worst = steps
        .iter()
        .filter_map(|s| {
            let top = s
                .budget
                .iter()
                .filter(|u| u.over > 0 && u.samples >= MIN_SAMPLES)
                .max_by(|a, b| a.share().total_cmp(&b.share()))?;
            Some((s, top))
        })
        .max_by(|a, b| a.1.share().total_cmp(&b.1.share()));
    if calm + held < 0.05 && worst.is_none() {
        return None;
    }
    let mut parts = Vec::new();
    if calm + held >= 0.05 {
        parts.push(format!(
            "the application's headroom cost {:.1} s ({:.0}% of the run): {calm:.1} s waiting \
             for the database to calm down before steps, {held:.1} s of backfill held back",
            calm + held,
            (calm + held) / run_seconds.max(1e-3) * 100.0
        ));
    }
    if let Some((s, u)) = worst {
        parts.push(format!(
            "the step most over budget: [{}] {} ({:.0}% of {})",
            s.position,
            s.description,
            u.share() * 100.0,
            u.source.samples()
        ));
    }
    Some(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(position: usize, calm: f64, held: f64, budget: Vec<BudgetUse>) -> StepReport {
        StepReport {
            position,
            id: format!("s{position}"),
            description: format!("step {position}"),
            impact: crate::plan::Impact::Brief,
            status: super::super::StepOutcome::Done,
            seconds: 1.0,
            lock_timeouts: 0,
            lock_waited_ms: 0.0,
            started_at_s: 0.0,
            app: None,
            budget,
            waited_for_calm_s: calm,
            held_s: held,
        }
    }

    fn used(source: Source, samples: u64, over: u64) -> BudgetUse {
        BudgetUse {
            source,
            samples,
            over,
        }
    }

    #[test]
    fn the_cost_names_the_waits_and_the_step_most_over_budget() {
        let steps = vec![
            step(1, 2.0, 0.0, vec![used(Source::DatabaseSignals, 20, 2)]),
            step(2, 0.0, 6.0, vec![used(Source::ApplicationLatency, 100, 40)]),
        ];
        let line = cost_line(&steps, 40.0).unwrap();
        assert!(
            line.starts_with("the application's headroom cost 8.0 s (20% of the run): 2.0 s"),
            "{line}"
        );
        assert!(line.contains("6.0 s of backfill held back"), "{line}");
        assert!(
            line.contains("[2] step 2 (40% of the application's transactions)"),
            "{line}"
        );
        assert_eq!(
            step_line(&steps[1].budget).unwrap(),
            "over budget: 40% of the application's transactions (40 of 100)"
        );
        assert_eq!(cell(&steps[0].budget), "signals 10%");
    }

    #[test]
    fn a_calm_run_says_nothing() {
        let steps = vec![step(
            1,
            0.0,
            0.0,
            vec![used(Source::DatabaseSignals, 20, 0)],
        )];
        assert_eq!(cost_line(&steps, 10.0), None);
        assert_eq!(step_line(&steps[0].budget), None);
        assert_eq!(cell(&[]), "–");
        // Over budget in a short step, nothing held back: named, no cost.
        let steps = vec![step(
            1,
            0.0,
            0.0,
            vec![used(Source::DatabaseSignals, 30, 3)],
        )];
        assert_eq!(
            cost_line(&steps, 10.0).unwrap(),
            "the step most over budget: [1] step 1 (10% of the database signals' samples)"
        );
    }
}

//! The application after our work, beside its baseline: a window in which
//! only the application's traffic ran, before anything changed, against
//! each such window after a step (apply, distribute, scale-out), and
//! whether the application got slower or fell behind its schedule.

use serde::Serialize;

/// How much slower the application may be after our work before the
/// report calls it slower: its median by this factor (plus 1 ms, the
/// noise of a millisecond median)...
pub const P50_FACTOR: f64 = 1.2;
/// ...its p99 by this factor (plus 5 ms)...
pub const P99_FACTOR: f64 = 2.0;
/// ...and its throughput down to this share of the baseline's.
pub const RATE_SHARE: f64 = 0.95;

/// What to do when the application is slower on Citus.
pub const CITUS_REMEDY: &str =
    "every statement now goes through Citus's planner and, without a tenant filter, to every \
     shard: give the hot statements the tenant filter the router needs (`shardready queries` \
     lists them, with what to add), and make each business transaction fewer round trips (a \
     per-tenant function made colocated with create_distributed_function runs on the tenant's \
     node in one)";

/// What the traffic did in one window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub seconds: f64,
    pub transactions: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Window {
    fn rate(&self) -> f64 {
        self.transactions as f64 / self.seconds.max(1e-9)
    }
}

/// The application in a window after a step, beside its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct AfterCheck {
    pub phase: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub tx_per_s: f64,
    pub baseline_p50_ms: f64,
    pub baseline_p99_ms: f64,
    pub baseline_tx_per_s: f64,
    /// Beyond the margins ([`P50_FACTOR`], [`P99_FACTOR`], [`RATE_SHARE`]).
    pub slower: bool,
    /// What is beyond them, for people.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<String>,
}

impl AfterCheck {
    /// `after` (the window named `phase`) against `base`; None when the
    /// baseline measured nothing.
    pub fn compare(phase: &str, base: &Window, after: &Window) -> Option<AfterCheck> {
        if base.transactions == 0 || base.seconds <= 0.0 || after.seconds <= 0.0 {
            return None;
        }
        let mut why = Vec::new();
        if after.transactions == 0 {
            why.push("no transaction completed".to_string());
        } else {
            if after.p50_ms > base.p50_ms * P50_FACTOR + 1.0 {
                why.push(format!(
                    "p50 {:.1}x the baseline's",
                    after.p50_ms / base.p50_ms.max(1e-9)
                ));
            }
            if after.p99_ms > base.p99_ms * P99_FACTOR + 5.0 {
                why.push(format!(
                    "p99 {:.1}x the baseline's",
                    after.p99_ms / base.p99_ms.max(1e-9)
                ));
            }
        }
        if after.rate() < base.rate() * RATE_SHARE {
            why.push(format!(
                "{:.0}% of the baseline's throughput: the application falls behind its schedule",
                100.0 * after.rate() / base.rate()
            ));
        }
        Some(AfterCheck {
            phase: phase.to_string(),
            p50_ms: after.p50_ms,
            p99_ms: after.p99_ms,
            tx_per_s: after.rate(),
            baseline_p50_ms: base.p50_ms,
            baseline_p99_ms: base.p99_ms,
            baseline_tx_per_s: base.rate(),
            slower: !why.is_empty(),
            why,
        })
    }

    /// One line: the numbers beside the baseline's, and the verdict.
    pub fn line(&self) -> String {
        format!(
            "{}: p50 {:.1} ms (baseline {:.1}), p99 {:.1} ms (baseline {:.1}), {:.1} tx/s (baseline {:.1}): {}",
            self.phase,
            self.p50_ms,
            self.baseline_p50_ms,
            self.p99_ms,
            self.baseline_p99_ms,
            self.tx_per_s,
            self.baseline_tx_per_s,
            if self.slower {
                format!("SLOWER ({})", self.why.join("; "))
            } else {
                "as fast as before".to_string()
            }
        )
    }

    /// What to look at when this window is slower.
    pub fn remedy(&self) -> &'static str {
        if self.phase.contains("distribut") || self.phase.contains("scale-out") {
            CITUS_REMEDY
        } else {
            "a statement may have lost its index with a key swap: `shardready plan` lists the \
             application's lookups and each key's column order (--key-order, --queries FILE)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(transactions: u64, p50_ms: f64, p99_ms: f64) -> Window {
        Window {
            seconds: 10.0,
            transactions,
            p50_ms,
            p99_ms,
        }
    }

    #[test]
    fn within_the_margins_is_as_fast_as_before() {
        let c = AfterCheck::compare("after", &w(1000, 5.0, 20.0), &w(990, 6.5, 44.0)).unwrap();
        assert!(!c.slower, "{}", c.line());
        assert!(c.line().ends_with("as fast as before"));
    }

    #[test]
    fn a_slower_median_a_longer_tail_or_a_backlog_is_slower() {
        let base = w(1000, 5.0, 20.0);
        let c = AfterCheck::compare("after", &base, &w(1000, 2127.0, 3000.0)).unwrap();
        assert!(c.slower);
        assert_eq!(c.why.len(), 2, "{:?}", c.why);
        let c = AfterCheck::compare("after", &base, &w(500, 5.0, 20.0)).unwrap();
        assert!(c.slower);
        assert!(
            c.why[0].contains("50% of the baseline's throughput"),
            "{:?}",
            c.why
        );
        let c = AfterCheck::compare("after", &base, &w(0, 0.0, 0.0)).unwrap();
        assert!(c.why.iter().any(|x| x == "no transaction completed"));
        assert!(AfterCheck::compare("after", &w(0, 0.0, 0.0), &base).is_none());
    }
}

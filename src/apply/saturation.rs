//! What the database's signals say about the application's headroom: the
//! baseline taken before the first change, one tick's figures, and the
//! limits a tick is judged by — a falling rate of statements (or of
//! commits, without pg_stat_statements), a queue of active backends, a
//! contended CPU, backends waiting on I/O or the server's internal locks,
//! each counted only while the application has more work waiting than it
//! usually has.

use std::time::Instant;

use serde::Serialize;

use super::Holding;

/// What the signals were before apply changed anything.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Baseline {
    pub seconds: f64,
    pub samples: usize,
    pub canary_p50_ms: f64,
    pub canary_p99_ms: f64,
    /// Above this a canary commit counts as slow.
    pub canary_limit_ms: f64,
    pub stmt_mean_ms: Option<f64>,
    pub wal_mb_s: Option<f64>,
    /// The application's statements per second (pg_stat_statements).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stmt_calls_per_s: Option<f64>,
    /// Application backends active at once, on average: how busy it was.
    pub active_mean: f64,
    /// The share of time a runnable task waited for a CPU on this machine
    /// (None: the server is not here, or no PSI): the headroom it had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_stall: Option<f64>,
    /// The database's commits per second, less the sampler's own (read
    /// only without pg_stat_statements: the application's rate then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits_per_s: Option<f64>,
    /// Active application backends waiting on I/O or the server's
    /// internal locks (LWLock, BufferPin) at once, on average.
    #[serde(default)]
    pub waiting_mean: f64,
}

/// The application's statements per second count as fallen (it queues)
/// below this share of their baseline...
pub const CALLS_SHARE: f64 = 0.7;
/// ...when the baseline had at least this many per second.
const CALLS_MIN: f64 = 10.0;

impl Baseline {
    /// A statement mean above this counts as slow (1.5x, at least 1 ms more).
    pub(crate) fn stmt_limit_ms(&self) -> Option<f64> {
        self.stmt_mean_ms.map(|m| (m * 1.5).max(m + 1.0))
    }

    /// Statements per second below this: the application queues.
    pub(crate) fn calls_floor(&self) -> Option<f64> {
        self.stmt_calls_per_s
            .filter(|&c| c >= CALLS_MIN)
            .map(|c| c * CALLS_SHARE)
    }

    /// Commits per second below this (without pg_stat_statements): the
    /// application queues.
    pub(crate) fn commits_floor(&self) -> Option<f64> {
        self.commits_per_s
            .filter(|&c| c >= CALLS_MIN)
            .map(|c| c * CALLS_SHARE)
    }

    /// Backends waiting on I/O or internal locks above this: the
    /// application queues for the disk or the WAL.
    pub(crate) fn waiting_limit(&self) -> f64 {
        self.waiting_mean * 2.0 + 1.0
    }

    /// CPU pressure above this: no headroom left (20 points over the
    /// baseline's, or 1.5x it, at most 90%).
    pub(crate) fn cpu_limit(&self) -> Option<f64> {
        self.cpu_stall
            .map(|b| (b + 0.2).max(b * 1.5).min(0.9).max(b + 0.05))
    }

    /// Active application backends above this: its work queues.
    pub(crate) fn active_limit(&self) -> f64 {
        self.active_mean * 2.0 + 2.0
    }

    /// Which saturation signal `t` is over its limit, with why. A falling
    /// rate, and the CPU's pressure, are the application's only while it
    /// has more work waiting than it usually has (more backends active in
    /// the last second): an application that goes quiet, or our own steps
    /// alone on a busy machine, are no reason to wait.
    pub(crate) fn saturated(&self, t: &Tick) -> Option<Holding> {
        let busier = t.active_mean.unwrap_or(t.active as f64) > self.active_mean + 0.5;
        if let Some((floor, c)) = self.calls_floor().zip(t.calls_per_s) {
            if c < floor && busier {
                return Some(Holding {
                    signal: "application rate",
                    why: format!(
                        "the application's statements fell to {c:.0}/s (baseline {:.0}/s): it is \
                         queueing",
                        self.stmt_calls_per_s.unwrap_or(0.0)
                    ),
                });
            }
        }
        if let Some((floor, c)) = self.commits_floor().zip(t.commits_per_s) {
            if c < floor && busier {
                return Some(Holding {
                    signal: "application rate",
                    why: format!(
                        "the database's commits fell to {c:.0}/s (baseline {:.0}/s): the \
                         application is queueing",
                        self.commits_per_s.unwrap_or(0.0)
                    ),
                });
            }
        }
        if t.waiting as f64 > self.waiting_limit() && busier {
            return Some(Holding {
                signal: "i/o waits",
                why: format!(
                    "{} application backends waited on I/O or the server's internal locks at \
                     once (baseline {:.1} on average): it queues for the disk or the WAL",
                    t.waiting, self.waiting_mean
                ),
            });
        }
        if let Some((limit, s)) = self.cpu_limit().zip(t.cpu_stall) {
            if s > limit && busier {
                return Some(Holding {
                    signal: "cpu pressure",
                    why: format!(
                        "the CPU was contended {:.0}% of the time (baseline {:.0}%): the \
                         application has no headroom",
                        s * 100.0,
                        self.cpu_stall.unwrap_or(0.0) * 100.0
                    ),
                });
            }
        }
        (t.active as f64 > self.active_limit()).then(|| Holding {
            signal: "active backends",
            why: format!(
                "{} application backends active at once (baseline {:.1} on average): it is \
                 queueing",
                t.active, self.active_mean
            ),
        })
    }
}

/// One tick: what the governor judges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tick {
    pub(crate) at: Instant,
    pub(crate) canary_ms: f64,
    pub(crate) waits_on_us_ms: f64,
    pub(crate) lock_waiters: u32,
    pub(crate) active: u32,
    /// The last second's statement mean (ms), once a second.
    pub(crate) stmt_mean_ms: Option<f64>,
    /// The last second's statements per second, once a second.
    pub(crate) calls_per_s: Option<f64>,
    /// The last second's CPU stall share (server here).
    pub(crate) cpu_stall: Option<f64>,
    /// The last second's mean of active application backends.
    pub(crate) active_mean: Option<f64>,
    /// The database's commits per second less the sampler's own, over the
    /// last few seconds (without pg_stat_statements).
    pub(crate) commits_per_s: Option<f64>,
    /// Active application backends waiting on I/O or internal locks.
    pub(crate) waiting: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(calls: Option<f64>, cpu: Option<f64>, active: f64) -> Baseline {
        Baseline {
            seconds: 2.0,
            samples: 20,
            canary_p50_ms: 1.0,
            canary_p99_ms: 2.0,
            canary_limit_ms: 4.0,
            stmt_mean_ms: None,
            wal_mb_s: None,
            stmt_calls_per_s: calls,
            active_mean: active,
            cpu_stall: cpu,
            commits_per_s: None,
            waiting_mean: 0.0,
        }
    }

    fn tick(active: u32, calls: Option<f64>, cpu: Option<f64>) -> Tick {
        Tick {
            at: Instant::now(),
            canary_ms: 1.0,
            waits_on_us_ms: 0.0,
            lock_waiters: 0,
            active,
            stmt_mean_ms: None,
            calls_per_s: calls,
            cpu_stall: cpu,
            active_mean: None,
            commits_per_s: None,
            waiting: 0,
        }
    }

    #[test]
    fn saturation_is_a_falling_rate_a_queue_or_a_contended_cpu_the_application_waits_on() {
        let b = base(Some(300.0), Some(0.1), 1.0);
        assert_eq!(b.saturated(&tick(1, Some(290.0), Some(0.1))), None);
        // An application that goes quiet is not queueing.
        assert_eq!(b.saturated(&tick(0, Some(0.0), None)), None);
        // The last second's mean of active backends decides, not one tick.
        let mut t = tick(3, Some(150.0), None);
        t.active_mean = Some(1.0);
        assert_eq!(b.saturated(&t), None);
        let h = b.saturated(&tick(2, Some(150.0), None)).unwrap();
        assert_eq!(h.signal, "application rate");
        assert!(
            h.why.contains("fell to 150/s (baseline 300/s)"),
            "{}",
            h.why
        );
        // A contended CPU counts while the application has work waiting...
        let h = b.saturated(&tick(2, None, Some(0.6))).unwrap();
        assert_eq!(h.signal, "cpu pressure", "{h:?}");
        // ...not when only our own work contends for it.
        assert_eq!(b.saturated(&tick(1, None, Some(0.6))), None);
        // A queue of backends.
        assert_eq!(
            b.saturated(&tick(5, None, None)).unwrap().signal,
            "active backends"
        );
        // Too few statements to judge a rate by; a busy CPU at the start
        // leaves a limit that can still be crossed.
        let quiet = base(Some(3.0), Some(0.8), 0.0);
        assert_eq!(quiet.saturated(&tick(0, Some(0.0), None)), None);
        assert!((quiet.cpu_limit().unwrap() - 0.9).abs() < 1e-9);
    }

    #[test]
    fn without_statements_the_commit_rate_and_the_io_waits_tell_a_queue() {
        let mut b = base(None, None, 1.0);
        b.commits_per_s = Some(200.0);
        b.waiting_mean = 0.2;
        let mut t = tick(2, None, None);
        t.commits_per_s = Some(190.0);
        assert_eq!(b.saturated(&t), None);
        t.commits_per_s = Some(100.0);
        let h = b.saturated(&t).unwrap();
        assert!(
            h.why.contains("commits fell to 100/s (baseline 200/s)"),
            "{h:?}"
        );
        // Backends queueing on I/O or the WAL, more than usual...
        let mut t = tick(2, None, None);
        t.waiting = 2;
        assert_eq!(b.saturated(&t).unwrap().signal, "i/o waits");
        // ...count only while the application has more work waiting.
        let mut t = tick(1, None, None);
        t.waiting = 2;
        assert_eq!(b.saturated(&t), None);
    }
}

//! The backfill's governor: after each batch it reads every source of
//! pressure on the application and decides how long the backfill waits
//! before its next batch, from nothing up to [`MAX_PAUSE`], so that the
//! application stays within its latency budget (`--app-p99-limit`).

use std::time::{Duration, Instant};

use super::{Holding, Pressure};

/// The share of application transactions allowed above the latency limit,
/// beyond what was already slow before the backfill (half of the 1% a p99
/// permits, leaving the rest to the other steps).
pub const SLOW_BUDGET: f64 = 0.005;

/// Transactions counted as fine before the first batch, so that one slow
/// transaction at the start does not read as a 100% slow share.
const PRIOR_TRANSACTIONS: u64 = 200;

/// The slow share is the application's over the last few seconds: what
/// came before counts half after this long (a burst long past no longer
/// holds the backfill back once the application is fine).
const HALF_LIFE: Duration = Duration::from_secs(10);

/// How long the backfill keeps half speed on the evidence that it is not
/// what slows the application before it looks again.
const RETEST: Duration = Duration::from_secs(15);

/// How far back the application's own slow share is measured before the
/// first batch.
const BASELINE_WINDOW: Duration = Duration::from_secs(10);

/// The longest wait after one batch: the next look decides again, so a
/// backfill held at this pause has nearly stopped (a batch of the smallest
/// size every two seconds) while still seeing when the application is back.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// What the pause doubles from when a batch was quicker than this.
const MIN_UNIT: Duration = Duration::from_millis(20);

/// Samples taken while the backfill waited before they may show that the
/// backfill is not what slows the application.
const EVIDENCE: u64 = 20;

/// The shortest stretch counted as "while the backfill worked": a batch of
/// a few milliseconds holds no sample of a source that samples ten times a
/// second, so the stretch reaches back into the end of the wait before it.
const MIN_WORK_WINDOW: Duration = Duration::from_millis(250);

/// Only waits at least this long tell whether the application comes back
/// while the backfill waits: right after a batch, what it wrote is still
/// being flushed and the application's queue drained, which a short wait
/// would count against the application.
const JUDGED_WAIT: Duration = Duration::from_secs(1);

/// How long a hold lasts before the person watching is told, and how often
/// after that.
pub const LONG_HOLD: Duration = Duration::from_secs(30);

/// Judges one source of pressure. Before the first batch it notes the
/// share of the application's transactions that were already slower than
/// the limit (a busy application is slow at times without any backfill,
/// and pausing cannot fix that). After each batch it counts the
/// application transactions that completed since the last look and how
/// many were slower than the limit. A slow transaction alone does not stop
/// the backfill; when slow ones arrive while the share over the whole
/// backfill is above the baseline plus the budget, the backfill waits: as
/// long as the batch took, and twice as long at every further look over
/// budget, up to [`MAX_PAUSE`] (each look within budget halves it back).
/// So the backfill slows down as far as the budget needs, down to nearly
/// pausing, when the source measures the user's budget (the application's
/// own latency, `--workload`); a proxy of it (the database's signals)
/// holds it at half speed at most. While it is held, the samples taken while it worked and while
/// it waited are compared: when the application is as slow while the
/// backfill waits as while it works, or slow in a quarter of the samples
/// while it waits, the backfill is not what slows it;
/// waiting longer would only make both wait, so the pause stays at the
/// batch's own length (half speed) and the hold is reported as not ours.
#[derive(Debug)]
struct Watch {
    limit_ms: f64,
    /// The source measures the user's budget: the pause may grow beyond
    /// the batch's own length (see [`Pressure::states_the_budget`]).
    deep: bool,
    /// The share of transactions slower than the limit before the backfill.
    baseline: f64,
    /// Transactions and slow ones, each weighing less the older it is
    /// ([`HALF_LIFE`]), and when they were last weighed.
    total: f64,
    slow: f64,
    weighed: Instant,
    /// What the last look with transactions decided.
    last: Look,
    /// Looks over budget, less the looks within it since: the pause is
    /// the batch's time doubled `depth - 1` times.
    depth: u32,
    hold: Option<Hold>,
}

/// A run of looks over budget.
#[derive(Debug)]
struct Hold {
    since: Instant,
    /// Transactions (and slow ones) while the backfill's batches ran.
    working: (u64, u64),
    /// Transactions (and slow ones) while it waited.
    waiting: (u64, u64),
    /// Since when the evidence says the backfill is not the cause.
    not_ours_since: Option<Instant>,
}

/// The share of samples slow while the backfill waits from which waiting
/// is not bringing the application back, whatever it does while the
/// backfill works (a level an earlier step set, or a machine without
/// headroom).
const SLOW_WHILE_WAITING: f64 = 0.25;

impl Hold {
    /// On enough samples taken while the backfill waited: the application
    /// is slow in a quarter of them or more, or at least 80% as often as
    /// while the backfill works.
    fn not_ours(&self) -> bool {
        let share = |(n, slow): (u64, u64)| slow as f64 / n.max(1) as f64;
        let waiting = share(self.waiting);
        self.waiting.0 >= EVIDENCE
            && (waiting >= SLOW_WHILE_WAITING
                || (self.working.1 > 0 && waiting >= 0.8 * share(self.working)))
    }
}

/// What one look decided.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Look {
    pause: Duration,
    /// Held, and the application is as slow while the backfill waits.
    not_ours: bool,
}

impl Watch {
    fn new(limit_ms: f64, baseline: f64, deep: bool) -> Self {
        Watch {
            limit_ms,
            deep,
            baseline,
            total: PRIOR_TRANSACTIONS as f64,
            slow: baseline * PRIOR_TRANSACTIONS as f64,
            weighed: Instant::now(),
            last: Look {
                pause: Duration::ZERO,
                not_ours: false,
            },
            depth: 0,
            hold: None,
        }
    }

    /// Judges the transactions since the last look (`whole`), of which
    /// `work` completed while the batch ran (None: not told apart), after
    /// a wait of `waited` and a batch that took `took`; `at` is now.
    fn look(
        &mut self,
        whole: (u64, u64),
        work: Option<(u64, u64)>,
        took: Duration,
        waited: Duration,
        at: Instant,
    ) -> Look {
        let (n, slow) = whole;
        let age = at.saturating_duration_since(self.weighed).as_secs_f64();
        let decay = 0.5_f64.powf(age / HALF_LIFE.as_secs_f64());
        self.weighed = at;
        self.total = self.total * decay + n as f64;
        self.slow = self.slow * decay + slow as f64;
        if let (Some(h), Some((wn, ws))) = (&mut self.hold, work) {
            let (wn, ws) = (wn.min(n), ws.min(slow));
            h.working = (h.working.0 + wn, h.working.1 + ws);
            if waited >= JUDGED_WAIT {
                h.waiting = (h.waiting.0 + n - wn, h.waiting.1 + slow - ws);
            }
        }
        // No transaction since the last look (a quiet application, or a
        // look soon after the last): no evidence either way, so the wait
        // stays as it was.
        if n == 0 {
            return self.last;
        }
        self.last = self.decide(slow, took, at);
        self.last
    }

    /// The wait after a look with `slow` slow transactions.
    fn decide(&mut self, slow: u64, took: Duration, at: Instant) -> Look {
        let allowed = self.baseline + SLOW_BUDGET;
        let over = slow > 0 && self.slow > allowed * self.total.max(PRIOR_TRANSACTIONS as f64);
        if !over {
            self.depth = self.depth.saturating_sub(1);
            if self.depth == 0 {
                self.hold = None;
            }
            return Look {
                pause: Duration::ZERO,
                not_ours: false,
            };
        }
        let hold = self.hold.get_or_insert(Hold {
            since: at,
            working: (0, 0),
            waiting: (0, 0),
            not_ours_since: None,
        });
        if hold.not_ours() {
            let since = *hold.not_ours_since.get_or_insert(at);
            if at.saturating_duration_since(since) < RETEST {
                return Look {
                    pause: took.min(MAX_PAUSE),
                    not_ours: true,
                };
            }
            // Long enough on that evidence: gather it again, waiting as
            // long as the depth says.
            hold.working = (0, 0);
            hold.waiting = (0, 0);
            hold.not_ours_since = None;
        }
        // Deeper only while the wait still grows.
        let cap = if self.deep { 16 } else { 1 };
        if self.depth < cap && (self.depth == 0 || self.pause(took) < MAX_PAUSE) {
            self.depth += 1;
        }
        Look {
            pause: self.pause(took),
            not_ours: false,
        }
    }

    /// The wait at this depth after a batch that took `took`.
    fn pause(&self, took: Duration) -> Duration {
        let pause = match self.depth {
            0 => Duration::ZERO,
            1 => took,
            d => took.max(MIN_UNIT).saturating_mul(1 << (d - 1).min(10)),
        };
        pause.min(MAX_PAUSE)
    }

    /// How long the backfill has been held over this watch's budget.
    fn held_for(&self) -> Option<Duration> {
        self.hold.as_ref().map(|h| h.since.elapsed())
    }
}

/// What the governor decided after a batch.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub pause: Duration,
    /// What asked for the pause.
    pub holding: Option<Holding>,
    /// How long the backfill has been held without a look within budget.
    pub held_for: Option<Duration>,
    /// The application is as slow while the backfill waits as while it
    /// works: the backfill is not what slows it.
    pub not_ours: bool,
    /// The source that asked measures the user's budget (it may hold the
    /// backfill down to nearly a pause; a proxy, to half speed).
    pub deep: bool,
}

/// One [`Watch`] per source of pressure (the application's latency from
/// `--workload`, the database's own signals): the backfill waits as long
/// as the most worried of them says, and the progress line names it.
pub struct Governor<'a> {
    watches: Vec<(&'a dyn Pressure, Watch)>,
    /// Where the last look was, and when the pause it decided ended.
    looked: Instant,
    resumed: Instant,
}

impl<'a> Governor<'a> {
    pub fn new(pressures: &[&'a dyn Pressure], limit_ms: f64) -> Self {
        let now = Instant::now();
        let watches = pressures
            .iter()
            .map(|&p| {
                let baseline = now
                    .checked_sub(BASELINE_WINDOW)
                    .and_then(|from| p.slow_since(from, limit_ms))
                    .filter(|&(n, _)| n >= 100)
                    .map(|(n, slow)| slow as f64 / n as f64)
                    .unwrap_or(0.0);
                (p, Watch::new(limit_ms, baseline, p.states_the_budget()))
            })
            .collect();
        Governor {
            watches,
            looked: now,
            resumed: now,
        }
    }

    /// The budget the user relaxed or tightened while the backfill runs
    /// (`shardready resume --app-p99-limit`): judged from now on against
    /// the same baseline share.
    pub fn set_limit(&mut self, limit_ms: f64) {
        for (_, w) in &mut self.watches {
            *w = Watch::new(limit_ms, w.baseline, w.deep);
        }
    }

    pub fn limit_ms(&self) -> Option<f64> {
        self.watches.first().map(|(_, w)| w.limit_ms)
    }

    /// The wait after a batch that took `took`, and what asked for it.
    pub fn after_batch(&mut self, took: Duration) -> Verdict {
        let now = Instant::now();
        let from = self.looked;
        let waited = self.resumed.saturating_duration_since(from);
        let resumed = self
            .resumed
            .min(now.checked_sub(MIN_WORK_WINDOW).unwrap_or(now))
            .max(from);
        self.looked = now;
        let mut out = Verdict {
            pause: Duration::ZERO,
            holding: None,
            held_for: None,
            not_ours: false,
            deep: false,
        };
        for (p, w) in &mut self.watches {
            let Some(whole) = p.slow_since(from, w.limit_ms) else {
                continue;
            };
            let work = p.slow_since(resumed, w.limit_ms);
            let look = w.look(whole, work, took, waited, now);
            if look.pause > out.pause {
                out.pause = look.pause;
                out.holding = p.holding(from, w.limit_ms);
                out.not_ours = look.not_ours;
                out.deep = w.deep;
                out.held_for = w.held_for();
            }
        }
        for (p, _) in &self.watches {
            p.note_holding(out.holding.as_ref().map(|h| h.why.clone()));
        }
        self.resumed = self.looked + out.pause;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    /// The pauses after looks at (transactions, slow) windows, each batch
    /// taking 100 ms; `work` is the part of each window seen while the
    /// batch ran.
    /// (transactions, slow) since the last look, and of them while the
    /// batch ran.
    type Window = ((u64, u64), Option<(u64, u64)>);

    fn pauses(baseline: f64, windows: &[Window]) -> Vec<Look> {
        let mut w = Watch::new(15.0, baseline, true);
        let took = Duration::from_millis(100);
        // Each wait as long as the look before asked (as the governor does).
        let mut waited = Duration::ZERO;
        windows
            .iter()
            .map(|&(n, work)| {
                let look = w.look(n, work, took, waited, Instant::now());
                waited = look.pause;
                look
            })
            .collect()
    }

    fn plain(windows: &[(u64, u64)]) -> Vec<u64> {
        let all: Vec<_> = windows.iter().map(|&n| (n, None)).collect();
        pauses(0.0, &all).iter().map(|l| ms(l.pause)).collect()
    }

    #[test]
    fn a_lone_slow_transaction_does_not_pause() {
        assert_eq!(plain(&[(10, 0), (10, 1), (10, 0), (10, 0)]), [0, 0, 0, 0]);
    }

    #[test]
    fn slow_transactions_beyond_the_budget_pause_as_long_as_the_batch_first() {
        // 200 prior + 10 per window: the second slow one is over 0.5%.
        assert_eq!(
            plain(&[(10, 1), (10, 1), (10, 0), (10, 1)]),
            [0, 100, 0, 100]
        );
    }

    #[test]
    fn an_application_slow_before_the_backfill_is_not_blamed_on_it() {
        let at = |share: u64| {
            let windows: Vec<_> = (0..10).map(|_| ((100, share), None)).collect();
            pauses(0.03, &windows)
        };
        // 3% slow before: windows at that share do not pause the backfill...
        assert!(at(3).iter().all(|l| l.pause.is_zero()));
        // ...while 3% more than that does.
        assert!(at(6).iter().any(|l| !l.pause.is_zero()));
    }

    #[test]
    fn a_backfill_that_keeps_the_application_over_budget_slows_down_to_nearly_a_pause() {
        // All slow while the batches run, none while the backfill waits.
        let windows = vec![((20, 10), Some((10, 10))); 12];
        let p: Vec<u64> = pauses(0.0, &windows).iter().map(|l| ms(l.pause)).collect();
        assert_eq!(&p[..6], [100, 200, 400, 800, 1600, 2000], "{p:?}");
        assert!(p[6..].iter().all(|&ms| ms == 2000), "{p:?}");
    }

    #[test]
    fn looks_within_budget_bring_the_speed_back_step_by_step() {
        let mut w = Watch::new(15.0, 0.0, true);
        let took = Duration::from_millis(100);
        for _ in 0..4 {
            w.look((20, 10), Some((10, 10)), took, MAX_PAUSE, Instant::now());
        }
        // Fine looks: no pause, and the next over-budget look starts lower.
        assert!(w
            .look((10, 0), None, took, MAX_PAUSE, Instant::now())
            .pause
            .is_zero());
        assert!(w
            .look((10, 0), None, took, MAX_PAUSE, Instant::now())
            .pause
            .is_zero());
        assert_eq!(
            ms(
                w.look((20, 10), Some((10, 10)), took, MAX_PAUSE, Instant::now())
                    .pause
            ),
            400
        );
        assert!(w.held_for().is_some());
        for _ in 0..5 {
            w.look((10, 0), None, took, MAX_PAUSE, Instant::now());
        }
        assert!(
            w.held_for().is_none(),
            "a hold ends when the depth is back to 0"
        );
    }

    #[test]
    fn an_application_mostly_slow_while_the_backfill_waits_is_not_its_doing() {
        // A third slow while waiting, every sample slow while working: the
        // application does not come back however long the backfill waits.
        let windows = vec![((40, 20), Some((10, 10))); 12];
        let looks = pauses(0.0, &windows);
        // Judged only on waits of a second or more: it slows down first.
        let first: Vec<u64> = looks[..5].iter().map(|l| ms(l.pause)).collect();
        assert_eq!(first, [100, 200, 400, 800, 1600], "{looks:?}");
        assert!(looks.last().unwrap().not_ours, "{looks:?}");
        assert_eq!(ms(looks.last().unwrap().pause), 100);
    }

    #[test]
    fn a_proxy_of_the_budget_slows_the_backfill_to_half_speed_at_most() {
        let mut w = Watch::new(15.0, 0.0, false);
        let took = Duration::from_millis(100);
        for _ in 0..8 {
            let look = w.look((20, 10), Some((10, 10)), took, MAX_PAUSE, Instant::now());
            assert_eq!(ms(look.pause), 100);
        }
    }

    #[test]
    fn a_burst_long_past_no_longer_holds_the_backfill() {
        let mut w = Watch::new(15.0, 0.0, true);
        let took = Duration::from_millis(100);
        let t0 = Instant::now();
        // 60 s at 5% slow...
        for i in 0..60 {
            w.look(
                (500, 25),
                None,
                took,
                Duration::ZERO,
                t0 + Duration::from_secs(i),
            );
        }
        // ...then fine for a minute: one slow transaction in a window is
        // within the budget again.
        for i in 60..120 {
            w.look(
                (500, 0),
                None,
                took,
                Duration::ZERO,
                t0 + Duration::from_secs(i),
            );
        }
        let look = w.look(
            (500, 1),
            None,
            took,
            Duration::ZERO,
            t0 + Duration::from_secs(121),
        );
        assert!(look.pause.is_zero(), "{look:?}");
    }

    #[test]
    fn not_ours_is_looked_at_again() {
        let mut w = Watch::new(15.0, 0.0, true);
        let took = Duration::from_millis(100);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Slow whatever the backfill does: not ours, half speed...
        let mut last = None;
        for i in 0..12 {
            last = Some(w.look((40, 20), Some((10, 5)), took, MAX_PAUSE, at(i)));
        }
        assert!(last.unwrap().not_ours);
        // ...until the evidence is gathered again.
        let later = w.look((40, 20), Some((10, 5)), took, MAX_PAUSE, at(40));
        assert!(!later.not_ours, "{later:?}");
    }

    #[test]
    fn a_look_without_transactions_keeps_the_wait_as_it_was() {
        let mut w = Watch::new(15.0, 0.0, true);
        let took = Duration::from_millis(100);
        assert!(w
            .look((0, 0), None, took, MAX_PAUSE, Instant::now())
            .pause
            .is_zero());
        for _ in 0..3 {
            w.look((20, 10), Some((10, 10)), took, MAX_PAUSE, Instant::now());
        }
        assert_eq!(
            ms(
                w.look((0, 0), Some((0, 0)), took, MAX_PAUSE, Instant::now())
                    .pause
            ),
            400
        );
        assert_eq!(
            ms(
                w.look((20, 10), Some((10, 10)), took, MAX_PAUSE, Instant::now())
                    .pause
            ),
            800
        );
    }

    #[test]
    fn an_application_as_slow_while_the_backfill_waits_keeps_it_at_half_speed() {
        // Half slow whether the batch runs or not: the machine, not us.
        let windows = vec![((40, 20), Some((10, 5))); 12];
        let looks = pauses(0.0, &windows);
        let last = looks.last().unwrap();
        assert!(last.not_ours, "{looks:?}");
        assert_eq!(ms(last.pause), 100);
        assert!(looks.iter().all(|l| l.pause <= MAX_PAUSE));
    }

    /// Always half slow, whenever asked.
    struct Busy;
    impl Pressure for Busy {
        fn slow_since(&self, _: Instant, _: f64) -> Option<(u64, u64)> {
            Some((20, 10))
        }
    }

    #[test]
    fn a_relaxed_budget_starts_over_from_the_first_pause() {
        let busy = Busy;
        let mut g = Governor::new(&[&busy], 15.0);
        let took = Duration::from_millis(50);
        let p: Vec<u64> = (0..4).map(|_| ms(g.after_batch(took).pause)).collect();
        assert_eq!(p, [50, 100, 200, 400]);
        g.set_limit(40.0);
        assert_eq!(g.limit_ms(), Some(40.0));
        assert_eq!(ms(g.after_batch(took).pause), 50);
        let none = crate::apply::NoPressure;
        let mut g = Governor::new(&[&none], 15.0);
        assert!(g.after_batch(Duration::from_secs(1)).pause.is_zero());
    }
}

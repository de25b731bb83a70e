//! Stall accounting in the spirit of the kernel's PSI (pressure stall information).
//!
//! A thread is *stalled* from the moment the handler reads its fault event until the fault is
//! resolved (queueing behind other faults included). `some` is the share of wall time during
//! which at least one thread was stalled; `full` the share during which every *active* thread was
//! stalled at once, where active means it faulted within the last second (the runtime cannot see
//! threads that never fault, so `full` is an upper bound). Averages over 10, 60 and 300 seconds
//! are updated every two seconds with the kernel's exponential decay.

use std::time::{Duration, Instant};

/// One PSI line: stalled share of time, in percent, over three horizons, and the total.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PsiLine {
    /// Percent of the last ~10 s.
    pub avg10: f64,
    /// Percent of the last ~60 s.
    pub avg60: f64,
    /// Percent of the last ~300 s.
    pub avg300: f64,
    /// Total stalled time.
    pub total: Duration,
}

/// Memory pressure of an arena or of the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pressure {
    /// At least one thread stalled.
    pub some: PsiLine,
    /// All active threads stalled.
    pub full: PsiLine,
}

impl std::fmt::Display for Pressure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, l) in [("some", &self.some), ("full", &self.full)] {
            writeln!(
                f,
                "{name} avg10={:.2} avg60={:.2} avg300={:.2} total={}",
                l.avg10,
                l.avg60,
                l.avg300,
                l.total.as_micros()
            )?;
        }
        Ok(())
    }
}

/// How long a thread counts as active after its last fault.
const ACTIVE: Duration = Duration::from_secs(1);
/// Averaging period, as in the kernel.
pub(crate) const PERIOD: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct Psi {
    stalled: Vec<u32>,
    active: Vec<(u32, Instant)>,
    since: Instant,
    some_ns: u64,
    full_ns: u64,
    last_tick: Instant,
    last: (u64, u64),
    avg: [f64; 6],
}

impl Psi {
    pub(crate) fn new(now: Instant) -> Psi {
        Psi {
            stalled: Vec::new(),
            active: Vec::new(),
            since: now,
            some_ns: 0,
            full_ns: 0,
            last_tick: now,
            last: (0, 0),
            avg: [0.0; 6],
        }
    }

    fn account(&mut self, now: Instant) {
        let dt = u64::try_from(now.saturating_duration_since(self.since).as_nanos()).unwrap_or(u64::MAX);
        self.since = now;
        if self.stalled.is_empty() {
            return;
        }
        self.some_ns += dt;
        self.active.retain(|&(_, t)| now.saturating_duration_since(t) < ACTIVE);
        let all = self.active.iter().all(|(tid, _)| self.stalled.contains(tid));
        if all {
            self.full_ns += dt;
        }
    }

    /// Thread `tid` starts waiting on a fault.
    pub(crate) fn enter(&mut self, tid: u32, now: Instant) {
        self.account(now);
        self.stalled.push(tid);
        match self.active.iter_mut().find(|(t, _)| *t == tid) {
            Some(a) => a.1 = now,
            None => self.active.push((tid, now)),
        }
    }

    /// Thread `tid`'s fault is resolved.
    pub(crate) fn leave(&mut self, tid: u32, now: Instant) {
        self.account(now);
        if let Some(i) = self.stalled.iter().position(|&t| t == tid) {
            self.stalled.swap_remove(i);
        }
    }

    /// Total stalled time (`some`) so far, in nanoseconds, accounted up to `now`.
    pub(crate) fn some_ns(&mut self, now: Instant) -> u64 {
        self.account(now);
        self.some_ns
    }

    /// Updates the running averages if a period has passed.
    pub(crate) fn tick(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last_tick);
        if dt < PERIOD {
            return;
        }
        self.account(now);
        let secs = dt.as_secs_f64();
        let share = |cur: u64, prev: u64| ((cur - prev) as f64 / 1e9 / secs * 100.0).min(100.0);
        let (s, f) = (share(self.some_ns, self.last.0), share(self.full_ns, self.last.1));
        for (k, horizon) in [10.0f64, 60.0, 300.0].iter().enumerate() {
            let e = (-secs / horizon).exp();
            self.avg[k] = self.avg[k] * e + s * (1.0 - e);
            self.avg[3 + k] = self.avg[3 + k] * e + f * (1.0 - e);
        }
        self.last = (self.some_ns, self.full_ns);
        self.last_tick = now;
    }

    pub(crate) fn snapshot(&mut self, now: Instant) -> Pressure {
        self.account(now);
        let line = |o: usize, total: u64| PsiLine {
            avg10: self.avg[o],
            avg60: self.avg[o + 1],
            avg300: self.avg[o + 2],
            total: Duration::from_nanos(total),
        };
        Pressure { some: line(0, self.some_ns), full: line(3, self.full_ns) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn some_and_full_accumulate() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut p = Psi::new(t0);
        p.enter(1, ms(0));
        p.enter(2, ms(10));
        p.leave(1, ms(20));
        p.leave(2, ms(40));
        let s = p.snapshot(ms(100));
        assert_eq!(s.some.total, Duration::from_millis(40));
        // Full: 0-10 ms (thread 1, the only active thread, stalled) and 10-20 ms (both stalled);
        // not 20-40 ms, when thread 1 was active but running.
        assert_eq!(s.full.total, Duration::from_millis(20));
        // A fully stalled period drives the averages up.
        let mut p = Psi::new(t0);
        p.enter(1, t0);
        p.tick(t0 + PERIOD);
        let s = p.snapshot(t0 + PERIOD);
        assert!(s.some.avg10 > 15.0 && s.some.avg10 < 100.0, "{s}");
        assert!(s.some.avg10 > s.some.avg60 && s.some.avg60 > s.some.avg300);
    }
}

/// The runtime-wide stall record behind the pressure trigger and warning: PSI, samples of
/// (time, total stalled ns, evictions so far), and when the trigger and the warning last fired.
#[derive(Debug)]
pub(crate) struct StallWatch {
    psi: Psi,
    samples: std::collections::VecDeque<(Instant, u64, u64)>,
    evictions: u64,
    last_kill: Option<Instant>,
    last_warn: Option<Instant>,
}

impl StallWatch {
    pub(crate) fn new(now: Instant) -> StallWatch {
        StallWatch {
            psi: Psi::new(now),
            samples: std::collections::VecDeque::new(),
            evictions: 0,
            last_kill: None,
            last_warn: None,
        }
    }

    /// The runtime-wide PSI (stalls enter and leave here).
    pub(crate) fn psi(&mut self) -> &mut Psi {
        &mut self.psi
    }

    /// One more page evicted (thrashing is stalls *with* eviction).
    pub(crate) fn evicted(&mut self) {
        self.evictions += 1;
    }

    /// Takes this round's sample, keeping one at or before the start of the `longest` window.
    pub(crate) fn sample(&mut self, now: Instant, longest: Duration) {
        self.psi.tick(now);
        let some = self.psi.some_ns(now);
        self.samples.push_back((now, some, self.evictions));
        while self.samples.len() > 2 && now.saturating_duration_since(self.samples[1].0) >= longest {
            self.samples.pop_front();
        }
    }

    /// Share of the last `window` with a thread stalled, and evictions meanwhile; `None` until
    /// enough of the window has been observed.
    fn over(&self, now: Instant, window: Duration) -> Option<(f64, u64)> {
        let &(now_t, some, evictions) = self.samples.back()?;
        debug_assert!(now_t == now, "sample before asking");
        let start = now.checked_sub(window)?;
        let &(t0, s0, e0) = self.samples.iter().rev().find(|x| x.0 <= start).or(self.samples.front())?;
        let dt = now.saturating_duration_since(t0);
        if dt < window / 2 {
            return None;
        }
        // Stall time is booked when a stall ends, so a long stall straddling the window's
        // start can push the ratio past 1: it is a share, so cap it.
        Some((((some - s0) as f64 / dt.as_nanos() as f64).min(1.0), evictions - e0))
    }

    /// The stalled share, when threads were stalled at least `share` of the last `window` while
    /// pages were being evicted (stalls without eviction are not thrashing, e.g. a cold start
    /// filling free frames) and the trigger has not fired within the window.
    pub(crate) fn kill_due(&self, now: Instant, share: f64, window: Duration) -> Option<f64> {
        let cooled = self.last_kill.is_none_or(|t| now.saturating_duration_since(t) >= window);
        let (s, evicted) = self.over(now, window).filter(|_| cooled)?;
        (s >= share && evicted > 0).then_some(s)
    }

    /// The trigger fired: the samples start again.
    pub(crate) fn killed(&mut self, now: Instant) {
        self.last_kill = Some(now);
        self.samples.clear();
    }

    /// The stalled share, when threads were stalled at least `share` of the last `window` and
    /// the warning has not been given within the window (it counts as given now).
    pub(crate) fn warn_due(&mut self, now: Instant, share: f64, window: Duration) -> Option<f64> {
        let quiet = self.last_warn.is_none_or(|t| now.saturating_duration_since(t) >= window);
        let (s, _) = self.over(now, window).filter(|&(s, _)| quiet && s >= share)?;
        self.last_warn = Some(now);
        Some(s)
    }
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    /// Stalls of `stall` in every `step` from `t0` for `n` steps, each step evicting `evict` pages.
    fn run(w: &mut StallWatch, t0: Instant, n: u32, step: Duration, stall: Duration, evict: u64) -> Instant {
        let mut now = t0;
        for _ in 0..n {
            w.psi().enter(1, now);
            w.psi().leave(1, now + stall);
            for _ in 0..evict {
                w.evicted();
            }
            now += step;
            w.sample(now, Duration::from_secs(1));
        }
        now
    }

    #[test]
    fn the_trigger_needs_stalls_with_eviction_and_cools_down() {
        let t0 = Instant::now();
        let (share, window) = (0.5, Duration::from_secs(1));
        let mut w = StallWatch::new(t0);
        w.sample(t0, window);
        assert_eq!(w.kill_due(t0, share, window), None, "nothing observed yet");
        // Stalled 80% of the time but evicting nothing: a cold start, not thrashing.
        let now = run(&mut w, t0, 20, Duration::from_millis(100), Duration::from_millis(80), 0);
        assert_eq!(w.kill_due(now, share, window), None);
        // Now with eviction.
        let now = run(&mut w, now, 20, Duration::from_millis(100), Duration::from_millis(80), 3);
        let s = w.kill_due(now, share, window).expect("thrashing");
        assert!((0.7..=0.9).contains(&s), "{s}");
        w.killed(now);
        assert_eq!(w.kill_due(now, share, window), None, "cooling down");
        // Calm: 10% stalled.
        let now = run(&mut w, now, 20, Duration::from_millis(100), Duration::from_millis(10), 3);
        assert_eq!(w.kill_due(now, share, window), None);
    }

    #[test]
    fn the_warning_is_given_once_per_window() {
        let t0 = Instant::now();
        let window = Duration::from_secs(1);
        let mut w = StallWatch::new(t0);
        let now = run(&mut w, t0, 20, Duration::from_millis(100), Duration::from_millis(60), 0);
        assert!(w.warn_due(now, 0.5, window).is_some());
        let now = run(&mut w, now, 5, Duration::from_millis(100), Duration::from_millis(60), 0);
        assert_eq!(w.warn_due(now, 0.5, window), None, "quiet for a window");
        let now = run(&mut w, now, 6, Duration::from_millis(100), Duration::from_millis(60), 0);
        assert!(w.warn_due(now, 0.5, window).is_some());
    }
}

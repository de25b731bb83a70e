//! The OOM kill: the candidate table, the policy's choice, killing and reaping, and the
//! periodic pressure and low-swap checks (see the `oom` module for the policy side).

use crate::engine::logq::note;
use crate::engine::{ArenaState, Core, Guard, Liveness, RegionState, State};
use crate::event::Event;
use crate::mm::page::PageState;
use crate::oom::policy::{Candidate, Deficit, OomContext};
use crate::oom::report::{CandidateRow, KillTrigger, OomReport, Victim};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::oom::policy_name;

/// What an OOM invocation achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OomOutcome {
    /// At least one arena was killed.
    Killed,
    /// Nobody was killed: nothing killable, or a dry run.
    Unresolved,
}

impl State {
    /// Pages of `r` that hold no frame and refer to a copy-on-write share whose data is in swap:
    /// swap entries of this region as the kernel counts them (`MM_SWAPENTS` counts every swap pte
    /// of a process, shared or not), though killing it frees no slot while a relative refers to
    /// the share. A walk of the table, made only when the region has such references.
    pub(crate) fn shared_in_swap(&self, r: &RegionState) -> u64 {
        if r.counts.shared == r.counts.shared_resident {
            return 0;
        }
        let mut n = 0;
        r.pages.for_each(|_, e| {
            if let Some(id) = e.share() {
                let off_frame = matches!(e.state(), PageState::Shared | PageState::PageIn);
                n += u64::from(off_frame && self.shares.get(id).slot.is_some());
            }
        });
        n
    }
}

impl Core {
    /// The candidate-table entry of an arena.
    pub(crate) fn candidate(&self, st: &State, a: &ArenaState, faulting: Option<u32>, now: Instant) -> Candidate {
        let (mut resident, mut swapped, mut pinned, mut slots, mut meta, mut shared) = (0, 0, 0, 0, 0, 0);
        for rid in &a.regions {
            let r = st.region(*rid);
            resident += r.counts.resident;
            swapped += r.counts.swapped + st.shared_in_swap(r);
            pinned += r.counts.pinned;
            slots += r.counts.slots;
            meta += r.pages.heap_bytes() as u64;
            // Frames holding copy-on-write data: a relative keeps the data when this one dies.
            shared += r.counts.shared_resident;
        }
        let p = &a.profile;
        Candidate {
            id: u64::from(a.shared.id),
            name: a.shared.name.clone(),
            resident,
            swapped,
            pinned,
            shared,
            unique_frames: resident - shared,
            unique_slots: slots,
            metadata_pages: meta.div_ceil(self.page() as u64),
            oom_score_adj: p.adj,
            impact: p.impact,
            hints: p.hints,
            age: now.saturating_duration_since(p.created),
            prefer: p.prefer,
            avoid: p.avoid,
            faulting: faulting == Some(a.shared.id),
        }
    }

    /// At debug level, once a second while reclaim is busy: what each step of the escalation path
    /// did since the last line.
    fn log_reclaim(&self, st: &mut State, now: Instant) {
        if log::max_level() < log::LevelFilter::Debug {
            return;
        }
        let mut c = *st.arenas.retired().0;
        for a in st.arenas.values() {
            c.add(&a.counters);
        }
        let cur = [c.clean_drops, c.file_writebacks, c.writebacks, c.direct_reclaims, st.arenas.kills()];
        match st.reclaim_log {
            Some((t, _)) if now.saturating_duration_since(t) < Duration::from_secs(1) => {}
            None => st.reclaim_log = Some((now, cur)),
            Some((_, prev)) if prev == cur => st.reclaim_log = Some((now, cur)),
            Some((_, p)) => {
                note!(
                    Debug,
                    "pagewarden: reclaim: {} clean pages dropped, {} file pages written back, {} pages swapped out, \
                     {} faults reclaimed directly, {} kills; {} of {} frames free",
                    cur[0] - p[0],
                    cur[1] - p[1],
                    cur[2] - p[2],
                    cur[3] - p[3],
                    cur[4] - p[4],
                    st.frames.free(),
                    st.frames.budget()
                );
                st.reclaim_log = Some((now, cur));
            }
        }
    }

    /// `budget + swap slots`: the kernel's `totalpages`.
    pub(crate) fn total_pages(&self, st: &State) -> u64 {
        st.frames.budget() as u64 + u64::from(st.slots.capacity())
    }

    /// What an exhausted fault needs: frames up to the high watermark, and as many swap slots
    /// when swap is full (each lets a dirty page be evicted).
    pub(crate) fn exhaustion_deficit(&self, st: &State) -> Deficit {
        let frames = (self.cfg.high.saturating_sub(st.frames.free())).max(1) as u64;
        let slots = if st.slots.available() == 0 && st.slots.capacity() > 0 { frames } else { 0 };
        Deficit { frames, slots }
    }

    fn table(&self, st: &State, faulting: Option<u32>) -> Vec<CandidateRow> {
        let now = Instant::now();
        let total = self.total_pages(st);
        let mut ids: Vec<u32> = st.arenas.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| {
                let a = &st.arenas[&id];
                if a.shared.killed.load(Ordering::Acquire) {
                    return None;
                }
                let c = self.candidate(st, a, faulting, now);
                Some(CandidateRow { oom_score: c.oom_score(total), exempt: c.exempt(), chosen: false, candidate: c })
            })
            .collect()
    }

    fn report(&self, st: &State, trigger: KillTrigger, deficit: Deficit, candidates: Vec<CandidateRow>) -> OomReport {
        OomReport {
            trigger,
            policy: policy_name(st.arenas.policy()),
            dry_run: self.cfg.oom_dry_run,
            deficit,
            budget_frames: st.frames.budget() as u64,
            frames_in_use: st.frames.in_use() as u64,
            pinned_frames: st.usage.pinned as u64,
            swap_slots: u64::from(st.slots.capacity()),
            swap_used: u64::from(st.slots.used()),
            candidates,
            victims: Vec::new(),
            selection: Duration::ZERO,
            reaping: Duration::ZERO,
        }
    }

    /// Runs the OOM killer: table, policy, kill (unless dry run), report.
    pub(crate) fn oom(
        &self,
        st: &mut State,
        trigger: KillTrigger,
        deficit: Deficit,
        faulting: Option<u32>,
    ) -> (OomOutcome, OomReport) {
        // The warning comes before the kill, even if the reclaimer has not looked yet.
        self.check_swap_low(st);
        let t0 = Instant::now();
        let mut rows = self.table(st, faulting);
        let offered: Vec<usize> = (0..rows.len()).filter(|&i| !rows[i].exempt).collect();
        let cands: Vec<Candidate> = offered.iter().map(|&i| rows[i].candidate.clone()).collect();
        let ctx = OomContext { total_pages: self.total_pages(st), deficit };
        let mut picks: Vec<usize> = Vec::new();
        // The policy is user code: a panic in it fails the runtime (see `Core::fail`) rather than
        // unwind through the fault path (a signal handler, in-thread) and strand the faulting
        // thread. Nobody is killed, and the caller releases its thread as from a failed runtime.
        let policy = st.arenas.policy_handle();
        let chosen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| policy.select(&cands, &ctx)))
            .unwrap_or_else(|p| {
                let name = policy_name(&*policy);
                self.fail(format!("the victim policy {name} panicked: {}", crate::util::panic_text(&p)));
                Vec::new()
            });
        for p in chosen {
            // A policy may only name offered candidates, each once.
            if let Some(&row) = offered.get(p) {
                if !picks.contains(&row) {
                    picks.push(row);
                }
            }
        }
        for &p in &picks {
            rows[p].chosen = true;
        }
        note!(
            Debug,
            "pagewarden: OOM ({trigger:?}): deficit {} frames, {} slots; policy {} offered {} of {} arenas, chose {:?}",
            deficit.frames,
            deficit.slots,
            policy_name(&*policy),
            offered.len(),
            rows.len(),
            picks.iter().map(|&p| rows[p].candidate.name.as_str()).collect::<Vec<_>>()
        );
        let mut report = self.report(st, trigger, deficit, rows);
        report.selection = t0.elapsed();
        let t1 = Instant::now();
        for &p in &picks {
            let c = &report.candidates[p].candidate;
            let (id, name) = (c.id, c.name.clone());
            let (frames_freed, slots_freed) = if self.cfg.oom_dry_run {
                (c.unique_frames, c.unique_slots)
            } else {
                self.reap(st, u32::try_from(id).unwrap_or(u32::MAX)).unwrap_or((0, 0))
            };
            report.victims.push(Victim { id, name, frames_freed, slots_freed });
        }
        report.reaping = t1.elapsed();
        let outcome =
            if self.cfg.oom_dry_run || report.victims.is_empty() { OomOutcome::Unresolved } else { OomOutcome::Killed };
        if self.cfg.oom_dry_run {
            note!(Warn, "{report}");
            self.publish(Event::WouldKill(report.clone()));
        } else if report.victims.is_empty() {
            note!(Error, "{report}");
            self.publish(Event::OomUnresolved(report.clone()));
        } else {
            st.arenas.count_kills(report.victims.len() as u64);
            note!(Warn, "{report}");
            let rids = victim_regions(st, &report);
            self.publish_after_writebacks(st, Event::Killed(report.clone()), rids);
        }
        self.signals.progress.notify_all();
        (outcome, report)
    }

    /// Kills one arena on request, with a report.
    pub(crate) fn kill_manual(&self, st: &mut State, aid: u32) -> Option<OomReport> {
        let t0 = Instant::now();
        let a = st.arenas.get(&aid)?;
        if a.shared.killed.load(Ordering::Acquire) {
            return None;
        }
        let mut rows = self.table(st, None);
        for r in &mut rows {
            r.chosen = r.candidate.id == u64::from(aid);
        }
        let mut report = self.report(st, KillTrigger::Manual, Deficit::default(), rows);
        report.dry_run = false;
        report.selection = t0.elapsed();
        let t1 = Instant::now();
        let name = st.arenas[&aid].shared.name.clone();
        let (frames_freed, slots_freed) = self.reap(st, aid)?;
        report.reaping = t1.elapsed();
        report.victims.push(Victim { id: u64::from(aid), name, frames_freed, slots_freed });
        st.arenas.count_kills(1);
        note!(Warn, "{report}");
        let rids = victim_regions(st, &report);
        self.publish_after_writebacks(st, Event::Killed(report.clone()), rids);
        self.signals.progress.notify_all();
        Some(report)
    }

    /// Kills `aid` on request ([`Arena::kill`](crate::Arena::kill)) and returns once the kill is
    /// complete: every write to its `Shared` file maps is in the file, and the event published.
    pub(crate) fn kill_and_settle<'a>(&'a self, mut st: Guard<'a>, aid: u32) -> Option<OomReport> {
        let report = self.kill_manual(&mut st, aid)?;
        self.settle(st, &report);
        Some(report)
    }

    /// Waits until the write-backs of the report's victims have landed (their held event is
    /// then published too).
    pub(crate) fn settle(&self, st: Guard<'_>, report: &OomReport) {
        let rids = victim_regions(&st, report);
        drop(self.wait_writebacks(st, &rids));
    }

    /// Marks an arena killed and frees its pins and slots at once; its frames go to the reaper,
    /// which frees them in chunks right away. Threads parked on its faults are released by
    /// [`Core::resolve_dead`] as their events come in. `None` if it was already killed.
    pub(crate) fn reap(&self, st: &mut State, aid: u32) -> Option<(u64, u64)> {
        let a = st.arenas.get(&aid)?;
        if a.shared.killed.swap(true, Ordering::AcqRel) {
            return None;
        }
        let regions: Vec<u32> = a.regions.iter().copied().collect();
        let (mut frames, mut slots) = (0, 0);
        for rid in regions {
            st.region_mut(rid).live = Liveness::Killed;
            let (f, s) = self.drop_pages(st, rid, true);
            frames += f;
            slots += s;
        }
        Some((frames, slots))
    }

    /// Periodic work of the reclaimer thread: pressure averages, the pressure trigger and warning,
    /// the low-swap warning, and lifting OOM poison once memory is free.
    pub(crate) fn housekeeping(&self, st: &mut State) {
        let now = Instant::now();
        self.log_reclaim(st, now);
        for a in st.arenas.values_mut() {
            a.psi.tick(now);
        }
        let longest = [self.cfg.pressure_kill, self.cfg.pressure_warn].iter().flatten().map(|t| t.window).max();
        st.stalls.sample(now, longest.unwrap_or(Duration::ZERO));
        if let Some(th) = self.cfg.pressure_kill {
            if let Some(share) = st.stalls.kill_due(now, th.share, th.window) {
                let frames = (st.frames.budget() / 8).max(self.cfg.high) as u64;
                let trigger = KillTrigger::Pressure { stalled_share: share, window: th.window };
                self.oom(st, trigger, Deficit { frames, slots: 0 }, None);
                st.stalls.killed(now);
            }
        }
        if let Some(th) = self.cfg.pressure_warn {
            if let Some(share) = st.stalls.warn_due(now, th.share, th.window) {
                let pressure = st.stalls.psi().snapshot(now);
                note!(
                    Warn,
                    "pagewarden: memory pressure: threads stalled {:.0}% of the last {:?}",
                    share * 100.0,
                    th.window
                );
                self.publish(Event::Pressure { stalled_share: share, window: th.window, pressure });
            }
        }
        self.check_swap_low(st);
        if !st.emergency.oom_poisoned.is_empty() && st.frames.free() >= self.cfg.high {
            self.clear_oom_poison(st);
        }
    }

    /// Publishes `SwapLow` when free swap falls under a tenth (again after it recovers to a fifth).
    pub(crate) fn check_swap_low(&self, st: &mut State) {
        if let Some((free, cap)) = st.slots.low(false) {
            note!(Warn, "pagewarden: swap low: {free} of {cap} slots free");
            self.publish(Event::SwapLow { free_slots: free, capacity: cap });
        }
    }
}

/// The regions of a report's victims that were really killed (a dry run's victims live on, and
/// their evictions never stop: nothing waits for them).
fn victim_regions(st: &State, report: &OomReport) -> Vec<u32> {
    let ids = report.victims.iter().filter_map(|v| u32::try_from(v.id).ok());
    let killed = ids.filter_map(|id| st.arenas.get(&id)).filter(|a| a.shared.killed.load(Ordering::Acquire));
    killed.flat_map(|a| a.regions.iter().copied()).collect()
}

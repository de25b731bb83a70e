//! The engine's core: what the threads share (the userfaultfd, the pool, the store, the state
//! lock), and the operations on the whole runtime.
//!
//! ```text
//!   app threads ──touch──► kernel ──PAGEFAULT──► uffd ──batch read──► handler thread(s)
//!        ▲                                                              │ lock state
//!        └──────── wake (COPY / MOVE / WRITEPROTECT / WAKE) ◄───────────┤ decide, mark in flight
//!                                                                       │ unlock: swap I/O
//!   reclaimer thread: keeps free frames between the watermarks ─────────┘ lock: install, account
//! ```
//!
//! One mutex guards all paging state. It is held for decisions and for the short ioctls that must
//! be atomic with them, never across swap I/O and never while touching managed memory: a thread
//! that holds it must not fault on a page only the handler can serve.
//!
//! # Locks, in the order they are taken
//!
//! A thread holding one lock takes only locks further down this list, never one above it:
//!
//! 1. the in-thread registry (`IN_THREAD`, entry/sigbus.rs): held only to find a runtime for a SIGBUS
//!    and count a reader, or to add and remove one; nothing else is taken while it is held, and
//!    it is never taken with the state lock held.
//! 2. the state lock ([`Core::lock`], a [`Guard`]): one per runtime. A function that takes the
//!    guard by value may unlock on the way (to wait, or for I/O) and hands it back; one that takes
//!    `&State` or `&mut State` never unlocks. Debug builds abort, with a message, a thread that
//!    takes it while holding it. The victim policy's `select` runs under it (user code: it must
//!    not call back into the runtime).
//! 3. leaves, each held for a few instructions and taking nothing else: an arena's accessors
//!    (`ArenaShared::accessors`), the buffer pools ([`Buffers`]), the failure message
//!    ([`Health`]), the queue of log lines from in-thread faults (engine/logq.rs), the
//!    encryption metadata (store/layers.rs) and the swap file's growth lock (sys/file.rs). The
//!    last two are taken during swap I/O, with no other lock held.
//!
//! Every mutex is taken through [`crate::util::lock`], which ignores poisoning.

use crate::config::{Config, EvictionPath};
use crate::engine::logq::note;
use crate::engine::state::{Guard, State};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::mm::lru::PageKey;
use crate::stats::{ArenaStats, Stats};
use crate::store::SwapStore;
use crate::sys::mem::Mapping;
use crate::sys::poll::Waker;
use crate::sys::uffd::Uffd;
use crate::util::lock;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Everything the threads share.
pub(crate) struct Core {
    pub(crate) cfg: Config,
    pub(crate) uffd: Uffd,
    pub(crate) path: EvictionPath,
    /// What the kernel offers and how faults arrive.
    pub(crate) caps: Caps,
    /// The frame pool and the zero mapping.
    pub(crate) mem: Memory,
    /// Where evicted pages go: the store with its layers (encryption, the fault injector).
    pub(crate) swap: Option<Arc<dyn SwapStore>>,
    pub(crate) state: Mutex<State>,
    /// The condition variables threads wait on.
    pub(crate) signals: Signals,
    pub(crate) events: Events,
    pub(crate) waker: Waker,
    /// Buffers reused by faults and evictions, so that neither allocates.
    pub(crate) bufs: Buffers,
    /// Held (shared) while reclaim moves pages out of arenas without the state lock; taken
    /// (exclusive) by [`Runtime::resident_frames_measured`] so that no page is counted twice.
    pub(crate) moving: std::sync::RwLock<()>,
    /// Shutdown and failure.
    pub(crate) health: Health,
}

/// What the kernel offers and how faults arrive, fixed at start.
pub(crate) struct Caps {
    /// The kernel reports faulting thread ids.
    pub(crate) has_tid: bool,
    /// UFFDIO_POISON is available.
    pub(crate) can_poison: bool,
    /// Faults are resolved in the faulting thread's SIGBUS handler.
    pub(crate) in_thread: bool,
}

/// Memory the runtime installs pages from.
pub(crate) struct Memory {
    /// The frame pool (MOVE path only).
    pub(crate) pool: Option<Mapping>,
    /// A never-written mapping: the source of zero-filled pages for UFFDIO_COPY (it maps only the
    /// shared zero page, so it costs no frames).
    pub(crate) zero: Mapping,
}

/// The condition variables of the state lock.
pub(crate) struct Signals {
    /// Signalled when frames are freed or in-flight work completes. Wait on it with
    /// [`Core::wait_progress`] and signal it with [`Core::notify_progress`].
    pub(crate) progress: Condvar,
    /// Threads waiting on `progress`. Changed and read only with the state lock held, so that a
    /// signal with nobody waiting (most page-ins) costs no futex call.
    pub(crate) waiters: std::sync::atomic::AtomicUsize,
    /// Wakes the background reclaimer.
    pub(crate) reclaim: Condvar,
}

/// The runtime's event queue (bounded; what does not fit is counted).
pub(crate) struct Events {
    pub(crate) tx: Sender<Event>,
    pub(crate) rx: Receiver<Event>,
    pub(crate) dropped: AtomicU64,
}

/// Buffers reused across faults and evictions.
pub(crate) struct Buffers {
    /// Staging buffers for in-thread faults (one per fault in progress).
    pub(crate) scratch: Mutex<Vec<crate::engine::fault::Scratch>>,
    /// Vectors for evictions (see [`EvictBufs`](crate::engine::reclaim::EvictBufs)).
    pub(crate) evict: Mutex<Vec<crate::engine::reclaim::EvictBufs>>,
}

/// Whether the runtime is stopping or has failed.
pub(crate) struct Health {
    pub(crate) shutdown: AtomicBool,
    /// Set when a handler, the reclaimer or the victim policy panicked: the runtime serves no more
    /// faults.
    pub(crate) failed: AtomicBool,
    /// Why it failed (the first reason).
    pub(crate) failure: Mutex<String>,
}

impl Core {
    /// Locks the state. A panic in another thread while it held the lock leaves the state as that
    /// thread left it; we keep serving rather than leave app threads parked forever.
    pub(crate) fn lock(&self) -> Guard<'_> {
        Guard::new(&self.state)
    }

    pub(crate) fn page(&self) -> usize {
        self.cfg.page
    }

    /// Stops serving faults after an internal failure (a panic in a handler, the reclaimer or the
    /// victim policy):
    /// its bookkeeping can no longer be trusted. From now on every fault is answered as for a dead
    /// page (a safe accessor returns [`Error::RuntimeFailed`], raw access gets SIGBUS) and every
    /// call returns `RuntimeFailed`. The userfaultfd stays open, so no thread ever resumes on a
    /// page of zeros in place of its data.
    pub(crate) fn fail(&self, why: String) {
        note!(Error, "pagewarden: runtime failed: {why}");
        let mut f = lock(&self.health.failure);
        if f.is_empty() {
            *f = why;
        }
        self.health.failed.store(true, Ordering::Release);
        self.signals.progress.notify_all();
    }

    /// After [`Core::fail`] from a thread that holds no state lock (a panic caught in a handler
    /// or the reclaimer): wakes every thread parked on any region, so that none stays parked on a
    /// page whose page-in or eviction the panic abandoned. Each retries its access, and its next
    /// fault is answered as on a failed runtime.
    pub(crate) fn release_parked(&self) {
        let st = self.lock();
        for r in st.regions.values() {
            if let Err(e) = self.uffd.wake(&r.map, 0, r.map.len()) {
                note!(Error, "pagewarden: waking the threads of a failed runtime failed: {e}");
            }
        }
    }

    pub(crate) fn is_failed(&self) -> bool {
        self.health.failed.load(Ordering::Acquire)
    }

    /// `Err(RuntimeFailed)` once the runtime has failed.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_failed() {
            return Err(Error::RuntimeFailed { detail: lock(&self.health.failure).clone() });
        }
        Ok(())
    }

    pub(crate) fn publish(&self, ev: Event) {
        if self.events.tx.try_send(ev).is_err() {
            self.events.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Publishes `ev` once no eviction is writing back to the files of `rids` (at once when none
    /// is): an event must not announce what the files do not show yet.
    pub(crate) fn publish_after_writebacks(&self, st: &mut State, ev: Event, rids: Vec<u32>) {
        if rids.iter().any(|&r| st.writing_back(r) > 0) {
            st.held_events.push((ev, rids));
        } else {
            self.publish(ev);
        }
    }

    /// Publishes the held events whose write-backs have all landed, in the order they were held.
    pub(crate) fn publish_landed(&self, st: &mut State) {
        let mut i = 0;
        while i < st.held_events.len() {
            if st.held_events[i].1.iter().all(|&r| st.writing_back(r) == 0) {
                let (ev, _) = st.held_events.remove(i);
                self.publish(ev);
            } else {
                i += 1;
            }
        }
    }

    /// Waits until no eviction is writing back to the files of `rids` (or the runtime failed:
    /// its in-flight work will never end).
    pub(crate) fn wait_writebacks<'a>(&'a self, mut st: Guard<'a>, rids: &[u32]) -> Guard<'a> {
        while !self.is_failed() && rids.iter().any(|&r| st.writing_back(r) > 0) {
            st = self.wait_progress(st, Duration::from_millis(5));
        }
        st
    }

    pub(crate) fn wait<'a>(&'a self, st: Guard<'a>, cv: &Condvar, d: Duration) -> Guard<'a> {
        st.wait_on(cv, d)
    }

    /// Waits (at most `d`) for frames to be freed or in-flight work to complete.
    pub(crate) fn wait_progress<'a>(&'a self, st: Guard<'a>, d: Duration) -> Guard<'a> {
        // Counted while the lock is held, before `wait` releases it: a signaller changes the state
        // under the same lock, so it either runs before this thread looks at the state or sees
        // the count.
        self.signals.waiters.fetch_add(1, Ordering::Relaxed);
        let st = self.wait(st, &self.signals.progress, d);
        self.signals.waiters.fetch_sub(1, Ordering::Relaxed);
        st
    }

    /// Wakes the threads waiting for progress, if any. Call with the state lock held.
    pub(crate) fn notify_progress(&self) {
        if self.signals.waiters.load(Ordering::Relaxed) > 0 {
            self.signals.progress.notify_all();
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut st = self.lock();
        let now = Instant::now();
        let (retired, retired_hist) = st.arenas.retired();
        let mut totals = *retired;
        let mut hist = retired_hist.clone();
        let mut arenas = Vec::new();
        let mut metadata = 0u64;
        let mut tracked = 0u64;
        for r in st.regions.values() {
            metadata += r.pages.heap_bytes() as u64;
            tracked += r.counts.resident + r.counts.swapped;
        }
        metadata += (st.lru.resident() * std::mem::size_of::<PageKey>()) as u64;
        metadata += st.shares.heap_bytes() as u64;
        let mut ids: Vec<u32> = st.arenas.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let a = &st.arenas[&id];
            totals.add(&a.counters);
            hist.merge(&a.hist);
            arenas.push(self.arena_stats(&mut st, id, now));
        }
        let budget = st.frames.budget() as u64;
        let swap = u64::from(st.slots.capacity());
        let usage = self.swap.as_ref().map(|s| s.usage()).unwrap_or_default();
        let ps = self.page() as u64;
        let ratio = match self.cfg.overcommit {
            crate::Overcommit::Strict { ratio } => ratio,
            _ => 0.5,
        };
        Stats {
            page_size: self.page(),
            budget_frames: budget,
            frames_in_use: st.frames.in_use() as u64,
            frames_pooled: st.frames.populated() as u64,
            pinned_frames: st.usage.pinned as u64,
            pin_limit_frames: self.cfg.pin_limit as u64,
            swap_slots: swap,
            swap_usable_slots: u64::from(st.slots.limit()),
            swap_used: u64::from(st.slots.used()),
            swap_file_bytes: usage.occupied_bytes,
            swap_cut_by_disk: self.cfg.swap_cut_by_disk || st.slots.limit() < st.slots.capacity(),
            swap_direct: self.swap.as_ref().is_some_and(|s| s.is_direct()),
            swap_read_ios: usage.read_ios,
            swap_write_ios: usage.write_ios,
            committed_bytes: st.usage.committed,
            commit_limit_bytes: crate::engine::pin::commit_limit(swap * ps, budget * ps, ratio),
            overcommit: self.cfg.overcommit,
            fault_mode: self.cfg.fault_mode,
            eviction: self.path,
            uffd_source: self.uffd.source(),
            policy: crate::oom::policy_name(st.arenas.policy()),
            metadata_bytes: metadata,
            tracked_pages: tracked,
            kills: st.arenas.kills(),
            pressure: st.stalls.psi().snapshot(now),
            totals,
            latency: hist.summary(),
            arenas,
        }
    }

    /// Checks the bookkeeping against the page tables (tests and debug checks): every count a
    /// region, a share, the replacement lists, the frame budget and the slot allocator keep must
    /// match what the pages say.
    pub(crate) fn check_invariants(&self) -> std::result::Result<(), String> {
        let st = self.lock();
        let queued: std::collections::HashSet<PageKey> = st.lru.queued_keys().collect();
        let mut total = Tally::default();
        // Share id → (references, references holding a frame), counted from the pages.
        let mut refs: std::collections::HashMap<u32, (u32, u32)> = std::collections::HashMap::new();
        st.regions.check()?;
        for (&rid, r) in st.regions.iter() {
            let t = check_region(rid, r, &queued, &mut refs)?;
            total.resident += t.resident;
            total.slots += t.slots;
            total.pinned += t.pinned;
            total.in_lru += t.in_lru;
            total.clean += t.clean;
        }
        total.slots += check_shares(&st, &refs)?;
        if total.in_lru != st.lru.resident() {
            return Err(format!(
                "{} unpinned resident pages, the replacement lists count {}",
                total.in_lru,
                st.lru.resident()
            ));
        }
        let in_use = crate::mm::idx(total.resident) + st.inflight.paging_in() + st.reap.frames();
        if in_use != st.frames.in_use() {
            return Err(format!("frames: pages account for {in_use}, the budget counts {}", st.frames.in_use()));
        }
        let in_flight = st.inflight.to_swap() as u64;
        if total.slots + in_flight != u64::from(st.slots.used()) {
            return Err(format!(
                "slots: pages hold {} (+{in_flight} in flight), the allocator counts {}",
                total.slots,
                st.slots.used()
            ));
        }
        if total.clean != st.usage.clean {
            return Err(format!("clean pages: {} counted, {} recorded", total.clean, st.usage.clean));
        }
        if crate::mm::idx(total.pinned) != st.usage.pinned {
            return Err(format!("pins: pages hold {}, the runtime counts {}", total.pinned, st.usage.pinned));
        }
        Ok(())
    }

    pub(crate) fn arena_stats(&self, st: &mut State, id: u32, now: Instant) -> ArenaStats {
        let total = self.total_pages(st);
        let a = &st.arenas[&id];
        let c = self.candidate(st, a, None, now);
        let reserved = a.regions.iter().map(|rid| st.region(*rid).map.len() as u64).sum();
        let (shared, regions, counters, latency, adj, impact) =
            (a.shared.clone(), a.regions.len(), a.counters, a.hist.summary(), a.profile.adj, a.profile.impact);
        let pressure = st.arenas.get_mut(&id).expect("arena exists").psi.snapshot(now);
        ArenaStats {
            id: u64::from(id),
            name: shared.name.clone(),
            killed: shared.killed.load(Ordering::Acquire),
            regions,
            reserved_bytes: reserved,
            resident_pages: c.resident,
            swapped_pages: c.swapped,
            pinned_pages: c.pinned,
            shared_pages: st.arenas[&id].regions.iter().map(|r| st.region(*r).counts.shared).sum(),
            unique_pages: c.unique(),
            oom_score: if shared.killed.load(Ordering::Acquire) { 0 } else { c.oom_score(total) },
            oom_score_adj: adj,
            impact,
            counters,
            latency,
            pressure,
        }
    }
}

/// What [`Core::check_invariants`] counts from the pages.
#[derive(Default)]
struct Tally {
    resident: u64,
    slots: u64,
    pinned: u64,
    /// Unpinned resident pages: those on a replacement list.
    in_lru: usize,
    clean: usize,
}

/// Checks one region's pages against its counts and returns what they hold; counts each share
/// reference into `refs`.
fn check_region(
    rid: u32,
    r: &crate::engine::RegionState,
    queued: &std::collections::HashSet<PageKey>,
    refs: &mut std::collections::HashMap<u32, (u32, u32)>,
) -> std::result::Result<Tally, String> {
    use crate::mm::page::PageState as S;
    let mut t = Tally::default();
    let (mut swapped, mut shared, mut shared_resident) = (0u64, 0u64, 0u64);
    for (p, e) in r.pages.entries() {
        if let Some(id) = e.share() {
            let held = matches!(e.state(), S::Resident | S::Evicting);
            let c = refs.entry(id).or_default();
            c.0 += 1;
            c.1 += u32::from(held);
            shared += 1;
            shared_resident += u64::from(held);
            if !matches!(e.state(), S::Resident | S::Evicting | S::PageIn | S::Shared) {
                return Err(format!("region {rid} page {p}: {:?} refers to share {id}", e.state()));
            }
            if e.dirty() {
                return Err(format!("region {rid} page {p}: dirty, yet refers to share {id}"));
            }
        } else if e.state() == S::Shared {
            return Err(format!("region {rid} page {p}: shared without a share"));
        }
        match e.state() {
            S::Resident if e.pinned() => {
                t.resident += 1;
                t.pinned += 1;
            }
            S::Resident => {
                t.resident += 1;
                t.in_lru += 1;
                t.clean += usize::from(!e.dirty());
                if !e.queued() || !queued.contains(&crate::mm::lru::key(rid, p)) {
                    return Err(format!("region {rid} page {p}: resident but not on a replacement list ({e:?})"));
                }
            }
            S::Evicting => t.resident += 1,
            S::Swapped if e.slot().is_none() && !e.reserve() => {
                return Err(format!("region {rid} page {p}: swapped without a slot"));
            }
            S::Swapped => swapped += 1,
            // On its way in from swap: still counted as swapped until installed.
            S::PageIn if e.slot().is_some() => swapped += 1,
            _ => {}
        }
        t.slots += u64::from(e.slot().is_some());
    }
    let counted = (t.resident, swapped, t.pinned, t.slots);
    if counted != (r.counts.resident, r.counts.swapped, r.counts.pinned, r.counts.slots) {
        let odd: Vec<String> = r
            .pages
            .entries()
            .into_iter()
            .filter(|(_, e)| e.slot().is_some() && e.state() != S::Swapped)
            .take(8)
            .map(|(p, e)| format!("{p}:{e:?}/{:?}", e.state()))
            .collect();
        return Err(format!(
            "region {rid}: counted resident/swapped/pinned/slots {counted:?}, recorded {:?} ({})",
            (r.counts.resident, r.counts.swapped, r.counts.pinned, r.counts.slots),
            odd.join(" ")
        ));
    }
    if (shared, shared_resident) != (r.counts.shared, r.counts.shared_resident) {
        return Err(format!(
            "region {rid}: counted shared/shared-resident {:?}, recorded {:?}",
            (shared, shared_resident),
            (r.counts.shared, r.counts.shared_resident)
        ));
    }
    Ok(t)
}

/// Checks every share against the references counted from the pages; returns the slots shares
/// hold.
fn check_shares(st: &State, refs: &std::collections::HashMap<u32, (u32, u32)>) -> std::result::Result<u64, String> {
    let (mut live, mut slots) = (0, 0u64);
    for (id, s) in st.shares.iter() {
        live += 1;
        let counted = refs.get(&id).copied().unwrap_or_default();
        if counted != (s.refs, s.resident) {
            return Err(format!(
                "share {id}: pages count references/frames {counted:?}, it records {:?}",
                (s.refs, s.resident)
            ));
        }
        if s.slot.is_none() && s.resident == 0 {
            return Err(format!("share {id}: {} references, but its data is nowhere", s.refs));
        }
        slots += u64::from(s.slot.is_some());
    }
    if live != refs.len() || live != st.shares.len() {
        return Err(format!("{} shares referred to by pages, {live} live, {} recorded", refs.len(), st.shares.len()));
    }
    Ok(slots)
}

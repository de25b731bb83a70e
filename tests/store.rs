//! A program's own swap store (`RuntimeBuilder::swap_store`): a store in memory, counting its
//! calls, backs a runtime under a budget far smaller than the data, served by real faults from
//! several threads; every byte comes back. A store whose growth fails as a full disk does makes
//! swap full (`SwapLow`, then the OOM killer), never a lost or wrong page. A store that is not
//! signal-safe is refused in the in-thread fault mode.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, Event, FaultMode, PageBufs, PageBufsMut, Runtime, StoreError, StoreUsage, SwapStore};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Slots in memory; growth stops at `limit` slots (as a disk that fills up); counts its calls.
#[derive(Debug)]
struct RamStore {
    data: Mutex<Vec<u8>>,
    slots: u32,
    limit: u32,
    backed: AtomicU32,
    signal_safe: bool,
    reads: AtomicU64,
    writes: AtomicU64,
    pages_read: AtomicU64,
    pages_written: AtomicU64,
    grows: AtomicU64,
}

impl RamStore {
    fn new(slots: u32, limit: u32) -> Arc<RamStore> {
        Arc::new(RamStore {
            data: Mutex::new(vec![0u8; slots as usize * PAGE]),
            slots,
            limit,
            backed: AtomicU32::new(0),
            signal_safe: false,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            pages_read: AtomicU64::new(0),
            pages_written: AtomicU64::new(0),
            grows: AtomicU64::new(0),
        })
    }

    fn slot(&self, s: u32) -> Vec<u8> {
        self.data.lock().unwrap()[s as usize * PAGE..(s as usize + 1) * PAGE].to_vec()
    }
}

impl SwapStore for RamStore {
    fn capacity(&self) -> u32 {
        self.slots
    }

    fn grow(&self, slots: u32) -> Result<(), StoreError> {
        self.grows.fetch_add(1, Ordering::Relaxed);
        if slots > self.limit {
            self.backed.fetch_max(self.limit, Ordering::AcqRel);
            return Err(StoreError::full(libc::ENOSPC, "grow(ram store)"));
        }
        self.backed.fetch_max(slots, Ordering::AcqRel);
        Ok(())
    }

    fn backed(&self) -> u32 {
        self.backed.load(Ordering::Acquire)
    }

    fn write(&self, first: u32, pages: &PageBufs<'_>) -> Result<(), StoreError> {
        assert_eq!(pages.page_size(), PAGE);
        let end = first + pages.len() as u32;
        assert!(end <= self.backed(), "a write past the grown slots: {first}+{}", pages.len());
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.pages_written.fetch_add(pages.len() as u64, Ordering::Relaxed);
        let mut d = self.data.lock().unwrap();
        for k in 0..pages.len() {
            let at = (first as usize + k) * PAGE;
            pages.copy_page(k, &mut d[at..at + PAGE]);
        }
        Ok(())
    }

    fn read(&self, first: u32, pages: &mut PageBufsMut<'_>) -> Result<(), StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.pages_read.fetch_add(pages.len() as u64, Ordering::Relaxed);
        let d = self.data.lock().unwrap();
        for k in 0..pages.len() {
            let at = (first as usize + k) * PAGE;
            pages.fill_page(k, &d[at..at + PAGE]);
        }
        Ok(())
    }

    fn signal_safe(&self) -> bool {
        self.signal_safe
    }

    fn usage(&self) -> StoreUsage {
        StoreUsage {
            occupied_bytes: u64::from(self.backed()) * PAGE as u64,
            allocated_bytes: u64::from(self.backed()) * PAGE as u64,
            read_ios: self.reads.load(Ordering::Relaxed),
            write_ios: self.writes.load(Ordering::Relaxed),
        }
    }
}

/// Every byte of page `p` of thread `t`'s region in round `round`.
fn page_bytes(t: usize, p: usize, round: u64) -> Vec<u8> {
    let mut rng = Rng(0x5107_E000 ^ (t as u64) << 40 ^ (p as u64) << 8 ^ round);
    let mut v = vec![0u8; PAGE];
    for c in v.chunks_mut(8) {
        c.copy_from_slice(&rng.next().to_le_bytes());
    }
    v
}

fn build(b: pagewarden::RuntimeBuilder) -> Option<Runtime> {
    match b.build() {
        Err(e @ Error::MissingKernelFeature { .. }) => {
            eprintln!("*** SKIPPING a variant: {e}");
            None
        }
        r => skip_unavailable(r),
    }
}

/// Four threads, each with a region of 256 pages, under a budget of 64 frames: pages go to the
/// store and back by real faults; every byte of every page comes back, round after round.
#[test]
fn a_user_store_backs_a_runtime_under_a_small_budget() {
    for path in PATHS {
        let store = RamStore::new(4096, 4096);
        let b = Runtime::builder()
            .frame_budget(64 * PAGE)
            .watermarks(2, 4)
            .eviction(path)
            .handler_threads(2)
            .swap_store(store.clone());
        let Some(rt) = build(b) else { continue };
        assert_eq!(rt.stats().swap_slots, 4096);
        let (threads, pages) = (4, 256);
        std::thread::scope(|s| {
            for t in 0..threads {
                let rt = &rt;
                s.spawn(move || {
                    let arena = rt.arena(&format!("t{t}")).create().unwrap();
                    let r = arena.reserve(pages * PAGE).unwrap();
                    let mut buf = vec![0u8; PAGE];
                    for round in 0..3u64 {
                        for p in 0..pages {
                            // Every other page is rewritten each round; the rest keep round 0.
                            if round == 0 || p % 2 == 1 {
                                r.write(p * PAGE, &page_bytes(t, p, round)).unwrap();
                            }
                        }
                        for p in (0..pages).rev() {
                            let want = if p % 2 == 1 { round } else { 0 };
                            r.read(p * PAGE, &mut buf).unwrap();
                            assert!(buf == page_bytes(t, p, want), "{path:?}: thread {t} page {p} round {round}");
                        }
                    }
                });
            }
        });
        let st = rt.stats();
        assert!(st.totals.swap_ins > 0 && st.totals.writebacks > 0, "{path:?}: {st}");
        assert_eq!(st.swap_read_ios, store.reads.load(Ordering::Relaxed), "{path:?}");
        assert_eq!(st.swap_write_ios, store.writes.load(Ordering::Relaxed), "{path:?}");
        assert!(store.pages_written.load(Ordering::Relaxed) >= st.totals.writebacks, "{path:?}: {st}");
        assert!(store.pages_read.load(Ordering::Relaxed) >= st.totals.swap_ins, "{path:?}: {st}");
        assert!(store.grows.load(Ordering::Relaxed) > 0);
        assert!(!rt.events().try_iter().any(|e| matches!(e, Event::PageLost { .. })), "{path:?}");
    }
}

/// A store whose growth stops at 256 slots, as a full disk: swap is full there (`SwapLow`, the
/// leaking arena killed), and no page that was written ever reads back wrong.
#[test]
fn a_store_that_cannot_grow_is_full_swap_never_a_lost_page() {
    let store = RamStore::new(16_384, 256);
    let b = Runtime::builder().frame_budget(64 * PAGE).watermarks(2, 4).swap_store(store.clone());
    let Some(rt) = build(b) else { return };
    let keeper = rt.arena("keeper").oom_score_adj(-1000).create().unwrap();
    let kept = keeper.reserve(128 * PAGE).unwrap();
    for p in 0..128 {
        kept.write(p * PAGE, &page_bytes(0, p, 7)).unwrap();
    }
    let leak = rt.arena("leak").create().unwrap();
    let pages = 4096;
    let r = leak.reserve(pages * PAGE).unwrap();
    let mut buf = vec![0u8; PAGE];
    let mut end = None;
    for p in 0..pages {
        if let Err(e) = r.write(p * PAGE, &page_bytes(1, p, 0)) {
            end = Some((e, p));
            break;
        }
        if p % 16 == 15 {
            let q = p / 2;
            match r.read(q * PAGE, &mut buf) {
                Ok(()) => assert!(buf == page_bytes(1, q, 0), "page {q} came back wrong"),
                Err(e) => {
                    end = Some((e, p));
                    break;
                }
            }
        }
    }
    let (e, at) = end.expect("16 MiB fit in 64 frames and 256 slots");
    assert!(
        matches!(&e, Error::Killed { arena } if arena == "leak") || matches!(e, Error::OutOfMemory { .. }),
        "after {at} pages: {e}"
    );
    let st = rt.stats();
    assert!(st.swap_cut_by_disk && st.swap_usable_slots <= 256, "{st}");
    let evs: Vec<Event> = rt.events().try_iter().collect();
    assert!(evs.iter().any(|e| matches!(e, Event::SwapLow { .. })), "no SwapLow in {evs:?}");
    assert!(!evs.iter().any(|e| matches!(e, Event::PageLost { .. } | Event::SwapFailed { .. })), "{evs:?}");
    for p in 0..128 {
        kept.read(p * PAGE, &mut buf).unwrap();
        assert!(buf == page_bytes(0, p, 7), "kept page {p} came back wrong");
    }
}

/// In-thread faults call the store inside a SIGBUS handler: a store that does not say it is
/// signal-safe is refused there, with the typed error, and accepted with handler threads.
#[test]
fn a_store_that_is_not_signal_safe_is_refused_in_thread() {
    let b = Runtime::builder().frame_budget(64 * PAGE).fault_mode(FaultMode::InThread);
    let e = b.swap_store(RamStore::new(64, 64)).build().expect_err("refused");
    assert!(matches!(e, Error::StoreNotSignalSafe), "{e}");
    assert!(e.to_string().contains("signal-safe"), "{e}");
    let b = Runtime::builder().frame_budget(64 * PAGE).swap_store(RamStore::new(64, 64));
    if let Some(rt) = build(b) {
        assert_eq!(rt.stats().swap_slots, 64);
    }
    // A store that says it is signal-safe is taken in that mode.
    let mut s = Arc::into_inner(RamStore::new(64, 64)).unwrap();
    s.signal_safe = true;
    let b = Runtime::builder().frame_budget(64 * PAGE).fault_mode(FaultMode::InThread).swap_store(Arc::new(s));
    if let Some(rt) = build(b) {
        assert_eq!(rt.stats().swap_slots, 64);
    }
}

/// Encryption applies on top of a user store: what the store holds is not the page, and the
/// page comes back whole.
#[test]
fn encryption_seals_pages_before_a_user_store_sees_them() {
    let store = RamStore::new(1024, 1024);
    let b = Runtime::builder().frame_budget(16 * PAGE).watermarks(2, 4).encrypt_swap(true).swap_store(store.clone());
    let Some(rt) = build(b) else { return };
    let arena = rt.arena("a").create().unwrap();
    let r = arena.reserve(128 * PAGE).unwrap();
    for p in 0..128 {
        r.write(p * PAGE, &page_bytes(2, p, 0)).unwrap();
    }
    assert!(store.writes.load(Ordering::Relaxed) > 0);
    let written = store.backed().min(1024);
    for s in 0..written {
        let got = store.slot(s);
        assert!((0..128).all(|p| got != page_bytes(2, p, 0)), "slot {s} holds a plaintext page");
    }
    let mut buf = vec![0u8; PAGE];
    for p in 0..128 {
        r.read(p * PAGE, &mut buf).unwrap();
        assert!(buf == page_bytes(2, p, 0), "page {p} came back wrong");
    }
}

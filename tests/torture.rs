//! Concurrency torture: several threads write self-describing records (page, thread, sequence
//! number) into overlapping page sets — through the safe accessors and through raw pointers —
//! while the budget and an evictor thread force eviction every few faults. Afterwards every
//! record holds its writer's last sequence number: zero lost writes.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{EvictionPath, FaultMode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const LANE: usize = 64;

fn record(page: usize, thread: usize, seq: u64) -> [u8; LANE] {
    let mut r = [0u8; LANE];
    for chunk in r.chunks_mut(16) {
        chunk[..4].copy_from_slice(&(page as u32).to_le_bytes());
        chunk[4..8].copy_from_slice(&(thread as u32).to_le_bytes());
        chunk[8..16].copy_from_slice(&seq.to_le_bytes());
    }
    r
}

struct Params {
    path: EvictionPath,
    mode: FaultMode,
    threads: usize,
    handlers: usize,
    pages: usize,
    budget: usize,
    run_for: Duration,
    seed: u64,
}

fn torture(p: Params) {
    let Params { path, mode, threads, handlers, pages, budget, run_for, seed } = p;
    eprintln!(
        "torture: path={path:?} mode={mode:?} threads={threads} handlers={handlers} pages={pages} budget={budget} seed={seed}"
    );
    let Some(rt) =
        runtime_with(budget, pages * 2, path, |b| b.max_readahead(4).handler_threads(handlers).fault_mode(mode))
    else {
        return;
    };
    let arena = rt.arena("torture").create().unwrap();
    let region = Arc::new(arena.reserve(pages * PAGE).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let base = region.as_ptr() as usize;
    let mut handles = Vec::new();
    for t in 0..threads {
        let region = region.clone();
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng(seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9));
            // Overlapping sets: thread t skips the pages p with p % threads == t.
            let set: Vec<usize> = (0..pages).filter(|p| p % threads != t).collect();
            let mut last = vec![0u64; pages];
            let mut ops = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = set[rng.below(set.len() as u64) as usize];
                let off = p * PAGE + t * LANE;
                last[p] += 1;
                let rec = record(p, t, last[p]);
                if rng.below(2) == 0 {
                    region.write(off, &rec).unwrap();
                } else {
                    for (i, w) in rec.chunks(8).enumerate() {
                        let v = u64::from_le_bytes(w.try_into().unwrap());
                        // SAFETY: inside the region, in this thread's own lane; the region
                        // outlives the thread (joined before it is dropped).
                        unsafe { ((base + off + i * 8) as *mut u64).write_volatile(v) };
                    }
                }
                ops += 1;
                if rng.below(4) == 0 {
                    // Read back one of our lanes, raw or safe, and compare.
                    let q = set[rng.below(set.len() as u64) as usize];
                    let qoff = q * PAGE + t * LANE;
                    let mut got = [0u8; LANE];
                    if rng.below(2) == 0 {
                        region.read(qoff, &mut got).unwrap();
                    } else {
                        for (i, w) in got.chunks_mut(8).enumerate() {
                            // SAFETY: as above.
                            let v = unsafe { ((base + qoff + i * 8) as *const u64).read_volatile() };
                            w.copy_from_slice(&v.to_le_bytes());
                        }
                    }
                    let want = if last[q] == 0 { [0u8; LANE] } else { record(q, t, last[q]) };
                    assert_eq!(got, want, "thread {t} page {q}: lane holds a stale or foreign record (seed {seed})");
                }
            }
            (last, ops)
        }));
    }
    // An evictor forcing extra evictions of random ranges.
    let ev = {
        let region = region.clone();
        let stop = stop.clone();
        let rt = rt.clone();
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0xEE);
            while !stop.load(Ordering::Relaxed) {
                let first = rng.below(pages as u64) as usize;
                let n = 1 + rng.below(8) as usize;
                let n = n.min(pages - first);
                region.page_out(first * PAGE, n * PAGE).unwrap();
                rt.reclaim(2);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let t0 = Instant::now();
    while t0.elapsed() < run_for {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    ev.join().unwrap();
    let mut total_ops = 0;
    let mut lasts = Vec::new();
    for h in handles {
        let (last, ops) = h.join().unwrap();
        total_ops += ops;
        lasts.push(last);
    }
    // Evict everything we can once more, then check every lane of every page.
    region.page_out(0, pages * PAGE).unwrap();
    for p in 0..pages {
        let mut page = vec![0u8; PAGE];
        region.read(p * PAGE, &mut page).unwrap();
        for (t, last) in lasts.iter().enumerate() {
            let want = if last[p] == 0 { [0u8; LANE] } else { record(p, t, last[p]) };
            assert_eq!(
                &page[t * LANE..(t + 1) * LANE],
                &want[..],
                "final: page {p} lane {t} lost its last write (seed {seed})"
            );
        }
        assert!(page[threads * LANE..].iter().all(|&b| b == 0), "final: page {p} has bytes nobody wrote");
    }
    rt.debug_check_invariants().unwrap();
    let st = rt.stats();
    eprintln!("{total_ops} writes\n{st}");
    assert_eq!(st.kills, 0, "spurious OOM kill: frames or slots lost track of");
    assert!(st.totals.evictions > 100, "the torture must evict constantly ({} evictions)", st.totals.evictions);
    assert!(st.frames_in_use <= st.budget_frames);
}

#[test]
fn torture_move_path() {
    let run_for = Duration::from_millis(2500);
    torture(Params {
        path: EvictionPath::Move,
        mode: FaultMode::HandlerThreads,
        threads: 4,
        handlers: 1,
        pages: 48,
        budget: 12,
        run_for,
        seed: seed(7),
    });
}

#[test]
fn torture_writeprotect_path() {
    let run_for = Duration::from_millis(2500);
    torture(Params {
        path: EvictionPath::WriteProtect,
        mode: FaultMode::HandlerThreads,
        threads: 4,
        handlers: 1,
        pages: 48,
        budget: 12,
        run_for,
        seed: seed(8),
    });
}

/// Two handler threads racing on the same userfaultfd, six writers.
#[test]
fn torture_two_handler_threads() {
    for path in PATHS {
        let run_for = Duration::from_millis(1200);
        torture(Params {
            path,
            mode: FaultMode::HandlerThreads,
            threads: 6,
            handlers: 2,
            pages: 40,
            budget: 12,
            run_for,
            seed: seed(9),
        });
    }
}

/// The in-thread fault path under the same torture.
#[test]
fn torture_in_thread_faults() {
    for path in PATHS {
        let run_for = Duration::from_millis(1200);
        torture(Params {
            path,
            mode: FaultMode::InThread,
            threads: 4,
            handlers: 1,
            pages: 48,
            budget: 12,
            run_for,
            seed: seed(10),
        });
    }
}

/// Minutes of torture: `cargo test --test torture -- --ignored`.
#[test]
#[ignore]
fn torture_soak() {
    for i in 0..5 {
        for path in PATHS {
            for mode in MODES {
                let run_for = Duration::from_secs(15);
                torture(Params {
                    path,
                    mode,
                    threads: 8,
                    handlers: 2,
                    pages: 96,
                    budget: 16,
                    run_for,
                    seed: seed(100).wrapping_add(i),
                });
            }
        }
    }
}

//! Forks racing with writers and eviction: threads keep writing sequence numbers (raw and safe)
//! while forks are taken, evicted, killed and dropped. Every fork must hold a consistent
//! snapshot (each value at least what was written before the fork began, at most what was begun
//! before it returned), keep it while the parent goes on writing, and the parent must end with
//! every last write: nothing lost, nothing leaked between the sides.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{EvictionPath, FaultMode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const THREADS: usize = 3;

fn values(r: &pagewarden::Region, pages: usize) -> Vec<u64> {
    let mut buf = vec![0u8; pages * PAGE];
    r.read(0, &mut buf).unwrap();
    (0..pages)
        .flat_map(|p| (0..THREADS).map(move |t| (p, t)))
        .map(|(p, t)| u64::from_le_bytes(buf[p * PAGE + t * 8..p * PAGE + t * 8 + 8].try_into().unwrap()))
        .collect()
}

fn snapshot(a: &[AtomicU64]) -> Vec<u64> {
    a.iter().map(|x| x.load(Ordering::Acquire)).collect()
}

fn race(path: EvictionPath, mode: FaultMode, seed: u64, forks: usize) {
    eprintln!("fork race: path={path:?} mode={mode:?} seed={seed}");
    let pages = 64;
    let Some(rt) = runtime_with(40, pages * 12, path, |b| b.max_readahead(4).fault_mode(mode)) else { return };
    let arena = rt.arena("parent").create().unwrap();
    let region = Arc::new(arena.reserve(pages * PAGE).unwrap());
    // Per (page, thread): the last sequence number begun, and the last one completed.
    let begun: Arc<Vec<AtomicU64>> = Arc::new((0..pages * THREADS).map(|_| AtomicU64::new(0)).collect());
    let done: Arc<Vec<AtomicU64>> = Arc::new((0..pages * THREADS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let (region, begun, done, stop) = (region.clone(), begun.clone(), done.clone(), stop.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng(seed ^ (t as u64 + 7).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut seq = 0u64;
            while !stop.load(Ordering::Acquire) {
                let p = rng.below(pages as u64) as usize;
                seq += 1;
                let i = p * THREADS + t;
                begun[i].store(seq, Ordering::Release);
                let off = p * PAGE + t * 8;
                if rng.below(2) == 0 {
                    region.write(off, &seq.to_le_bytes()).unwrap();
                } else {
                    // SAFETY: an aligned u64 inside the region, which outlives the thread; only
                    // this thread writes this lane.
                    unsafe { (region.as_ptr().add(off) as *mut u64).write_volatile(seq.to_le()) };
                }
                done[i].store(seq, Ordering::Release);
            }
        }));
    }
    {
        let (region, stop, rt) = (region.clone(), stop.clone(), rt.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0xE51C7);
            while !stop.load(Ordering::Acquire) {
                let first = rng.below(pages as u64) as usize;
                let n = 1 + rng.below((pages - first) as u64) as usize;
                region.page_out(first * PAGE, n * PAGE).unwrap();
                rt.reclaim(4);
                std::thread::yield_now();
            }
        }));
    }
    let mut rng = Rng(seed);
    // Live forks with the snapshot each must keep.
    let mut kept: Vec<(pagewarden::Fork, Vec<u64>)> = Vec::new();
    let mut slowest = std::time::Duration::ZERO;
    for k in 0..forks {
        let before = snapshot(&done);
        rt.debug_check_invariants().unwrap_or_else(|e| panic!("seed {seed} before fork {k}: {e}"));
        let t0 = std::time::Instant::now();
        let fork = arena.fork(&format!("fork{k}")).unwrap();
        slowest = slowest.max(t0.elapsed());
        rt.debug_check_invariants().unwrap_or_else(|e| panic!("seed {seed} right after fork {k}: {e}"));
        let after = snapshot(&begun);
        let got = values(fork.region(&region).unwrap(), pages);
        rt.debug_check_invariants().unwrap_or_else(|e| panic!("seed {seed} after reading fork {k}: {e}"));
        for (i, &v) in got.iter().enumerate() {
            assert!(
                before[i] <= v && v <= after[i],
                "seed {seed} fork {k}: page {} thread {}: {v} outside [{}, {}]",
                i / THREADS,
                i % THREADS,
                before[i],
                after[i]
            );
        }
        // Older forks still hold their snapshots while the parent keeps writing.
        for (j, (f, snap)) in kept.iter().enumerate() {
            if !f.arena().is_killed() {
                assert_eq!(&values(f.region(&region).unwrap(), pages), snap, "seed {seed}: fork {j} changed");
            }
        }
        rt.debug_check_invariants().unwrap_or_else(|e| panic!("seed {seed} after checking old forks {k}: {e}"));
        match rng.below(4) {
            0 if !kept.is_empty() => {
                let i = rng.below(kept.len() as u64) as usize;
                kept[i].0.arena().kill();
            }
            1 if !kept.is_empty() => {
                let i = rng.below(kept.len() as u64) as usize;
                kept.swap_remove(i);
            }
            _ => {}
        }
        kept.push((fork, got));
        if kept.len() > 4 {
            kept.remove(0);
        }
        rt.debug_check_invariants().unwrap_or_else(|e| panic!("seed {seed} fork {k}: {e}"));
    }
    stop.store(true, Ordering::Release);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(values(&region, pages), snapshot(&done), "seed {seed}: the parent lost a write");
    for (j, (f, snap)) in kept.iter().enumerate() {
        if !f.arena().is_killed() {
            assert_eq!(&values(f.region(&region).unwrap(), pages), snap, "seed {seed}: fork {j} changed at the end");
        }
    }
    rt.debug_check_invariants().unwrap();
    eprintln!("slowest fork under load: {slowest:?}");
    let st = rt.stats();
    assert!(st.totals.cow_copies > 0 && st.totals.writebacks > 0, "the race must copy and swap: {st}");
}

#[test]
fn forks_race_with_writers_and_eviction() {
    let base = seed(0xF0_4C);
    for (i, path) in PATHS.into_iter().enumerate() {
        race(path, FaultMode::HandlerThreads, base + i as u64, 12);
    }
}

#[test]
fn forks_race_in_thread_mode() {
    let base = seed(0xF0_4D);
    for (i, path) in PATHS.into_iter().enumerate() {
        race(path, FaultMode::InThread, base + i as u64, 10);
    }
}

/// Minutes of it: `cargo test --test fork_race -- --ignored`.
#[test]
#[ignore]
fn fork_race_soak() {
    let base = seed(1);
    for i in 0..5 {
        for path in PATHS {
            for mode in MODES {
                race(path, mode, base + i, 100);
            }
        }
    }
}

//! The differential model test: random sequences of operations over several arenas, checked
//! byte for byte against plain `Vec<u8>` models, with a budget of a few dozen frames so that
//! eviction never stops. Run on both eviction paths. The seed is printed; rerun one with
//! `PAGEWARDEN_SEED=<seed> cargo test --test model`.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Arena, Error, EvictionPath, FaultMode, MapMode, Region};
use std::os::unix::fs::FileExt;

struct Slot {
    region: Region,
    model: Vec<u8>,
    /// Pinned page ranges (first page, pages).
    pins: Vec<(usize, usize)>,
    /// The file behind a file-backed region.
    file: Option<(std::fs::File, MapMode)>,
}

/// For a `Shared` file map: the file on disk must hold exactly the model.
fn check_file(file: &Option<(std::fs::File, MapMode)>, model: &[u8], ctx: &str) {
    let Some((f, MapMode::Shared)) = file else { return };
    let mut disk = vec![0u8; model.len()];
    f.read_exact_at(&mut disk, 0).unwrap();
    if disk != model {
        let i = disk.iter().zip(model).position(|(a, b)| a != b).unwrap();
        panic!("{ctx}: file differs from the model at {i} (page {}): {:#04x} vs {:#04x}", i / PAGE, disk[i], model[i]);
    }
}

/// An unlinked temporary file holding `data`.
fn temp_file(data: &[u8]) -> std::fs::File {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let p = std::env::temp_dir().join(format!("pw-model-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    f.write_all_at(data, 0).unwrap();
    f
}

impl Slot {
    fn pinned(&self) -> usize {
        self.pins.iter().map(|p| p.1).sum()
    }
}

/// The runtime's pin limit in this test (half the budget of 24 frames).
const PIN_LIMIT: usize = 12;

struct Guest {
    arena: Arena,
    regions: Vec<Slot>,
    killed: bool,
}

fn check_range(s: &Slot, off: usize, len: usize, ctx: &str) {
    let mut buf = vec![0u8; len];
    s.region.read(off, &mut buf).unwrap_or_else(|e| panic!("{ctx}: read failed: {e}"));
    if buf != s.model[off..off + len] {
        let i = buf.iter().zip(&s.model[off..]).position(|(a, b)| a != b).unwrap();
        panic!(
            "{ctx}: mismatch at offset {} (page {}): got {:#04x}, model {:#04x}",
            off + i,
            (off + i) / PAGE,
            buf[i],
            s.model[off + i]
        );
    }
}

fn run(seed: u64, path: EvictionPath, mode: FaultMode, ops: usize) {
    eprintln!("model test: seed={seed} path={path:?} mode={mode:?} ops={ops}");
    let Some(rt) = runtime_with(24, 2048, path, |b| b.max_readahead(8).fault_mode(mode)) else {
        return;
    };
    let mut rng = Rng(seed);
    let mut guests: Vec<Guest> = (0..3)
        .map(|i| Guest { arena: rt.arena(&format!("g{i}")).create().unwrap(), regions: Vec::new(), killed: false })
        .collect();
    let new_region = |rng: &mut Rng, g: &Guest| -> Slot {
        let pages = 1 + rng.below(40) as usize;
        let len = pages * PAGE - rng.below(PAGE as u64) as usize;
        let mode = match rng.below(6) {
            0 => Some(MapMode::Shared),
            1 => Some(MapMode::Private),
            _ => None,
        };
        let Some(mode) = mode else {
            let region = g.arena.reserve(len).unwrap();
            return Slot { model: vec![0u8; region.len()], region, pins: Vec::new(), file: None };
        };
        // A file-backed region over a file of random bytes covering all its pages.
        let data: Vec<u8> = (0..pages * PAGE).map(|_| rng.next() as u8).collect();
        let f = temp_file(&data);
        let region = g.arena.map_file(&f, 0, len, mode).unwrap();
        Slot { model: data, region, pins: Vec::new(), file: Some((f, mode)) }
    };
    for g in &mut guests {
        for _ in 0..2 {
            let s = new_region(&mut rng, g);
            g.regions.push(s);
        }
    }
    let mut pinned = 0usize;
    let mut pins_done = 0usize;
    let mut forks = 0usize;
    let mut flushes = 0usize;
    for step in 0..ops {
        let gi = rng.below(guests.len() as u64) as usize;
        let ctx = format!("seed {seed} path {path:?} step {step} guest {gi}");
        if guests[gi].killed {
            // A killed guest refuses everything; replace it with a fresh arena now and then.
            let g = &guests[gi];
            if let Some(s) = g.regions.first() {
                let mut b = [0u8; 1];
                assert!(matches!(s.region.read(0, &mut b), Err(Error::Killed { .. })), "{ctx}: killed arena readable");
                assert!(matches!(s.region.write(0, &b), Err(Error::Killed { .. })), "{ctx}: killed arena writable");
            }
            assert!(matches!(g.arena.reserve(PAGE), Err(Error::Killed { .. })));
            if rng.below(4) == 0 {
                guests[gi] = Guest {
                    arena: rt.arena(&format!("g{gi}-{step}")).create().unwrap(),
                    regions: Vec::new(),
                    killed: false,
                };
                let s = new_region(&mut rng, &guests[gi]);
                guests[gi].regions.push(s);
            }
            continue;
        }
        let n_guests = guests.len();
        let g = &mut guests[gi];
        if g.regions.is_empty() {
            let s = new_region(&mut rng, g);
            g.regions.push(s);
        }
        let ri = rng.below(g.regions.len() as u64) as usize;
        let size = g.regions[ri].model.len();
        let op = rng.below(108);
        match op {
            0..=29 => {
                // Write random bytes, up to three pages, anywhere.
                let len = 1 + rng.below((3 * PAGE) as u64) as usize;
                let len = len.min(size);
                let off = rng.below((size - len + 1) as u64) as usize;
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let s = &mut g.regions[ri];
                s.region.write(off, &data).unwrap_or_else(|e| panic!("{ctx}: write: {e}"));
                s.model[off..off + len].copy_from_slice(&data);
            }
            30..=49 => {
                let len = (1 + rng.below((3 * PAGE) as u64) as usize).min(size);
                let off = rng.below((size - len + 1) as u64) as usize;
                check_range(&g.regions[ri], off, len, &ctx);
            }
            50..=57 => {
                let len = (1 + rng.below((5 * PAGE) as u64) as usize).min(size);
                let off = rng.below((size - len + 1) as u64) as usize;
                let byte = rng.next() as u8;
                let s = &mut g.regions[ri];
                s.region.fill(off, len, byte).unwrap_or_else(|e| panic!("{ctx}: fill: {e}"));
                s.model[off..off + len].fill(byte);
            }
            58..=65 => {
                // Raw pointer access: the same faults without the safe accessor.
                let s = &mut g.regions[ri];
                let off = rng.below(size as u64) as usize;
                let v = rng.next() as u8;
                // SAFETY: `off` < region length and the region outlives this access; no other
                // thread touches this memory.
                unsafe { s.region.as_ptr().add(off).write_volatile(v) };
                s.model[off] = v;
                let off2 = rng.below(size as u64) as usize;
                // SAFETY: as above.
                let got = unsafe { s.region.as_ptr().add(off2).read_volatile() };
                assert_eq!(got, s.model[off2], "{ctx}: raw read at {off2}");
            }
            66..=73 => {
                // Forced eviction of a random page range.
                let s = &g.regions[ri];
                let pages = size / PAGE;
                let first = rng.below(pages as u64) as usize;
                let n = 1 + rng.below((pages - first) as u64) as usize;
                s.region.page_out(first * PAGE, n * PAGE).unwrap();
            }
            74..=77 => {
                rt.reclaim(1 + rng.below(16) as usize);
            }
            78..=83 => {
                // Sequential scan of the whole region (exercises readahead).
                let s = &g.regions[ri];
                check_range(s, 0, size, &ctx);
            }
            84..=88 => {
                // Release a region (frames, pins and slots freed at once) and reserve a new one.
                pinned -= g.regions[ri].pinned();
                let Slot { region, model, file, .. } = g.regions.swap_remove(ri);
                drop(region);
                check_file(&file, &model, &format!("{ctx}: released"));
                let s = new_region(&mut rng, g);
                g.regions.push(s);
            }
            89..=92 => {
                let s = new_region(&mut rng, g);
                g.regions.push(s);
            }
            93 => {
                // Kill a guest now and then; the others must be unaffected.
                if rng.below(3) == 0 {
                    g.arena.kill().expect("first kill reports");
                    g.killed = true;
                    for s in &g.regions {
                        check_file(&s.file, &s.model, &format!("{ctx}: killed"));
                    }
                    pinned -= g.regions.iter().map(Slot::pinned).sum::<usize>();
                    assert_eq!(rt.stats().pinned_frames as usize, pinned, "{ctx}: a kill must release pins");
                }
            }
            94..=95 => {
                // Pin a random range (or unpin one): pinned pages must stay exact through eviction.
                let s = &mut g.regions[ri];
                if !s.pins.is_empty() && rng.below(2) == 0 {
                    let (first, n) = s.pins.swap_remove(rng.below(s.pins.len() as u64) as usize);
                    s.region.unpin(first * PAGE, n * PAGE).unwrap_or_else(|e| panic!("{ctx}: unpin: {e}"));
                    pinned -= n;
                } else {
                    let pages = size / PAGE;
                    let first = rng.below(pages as u64) as usize;
                    let n = (1 + rng.below(3) as usize).min(pages - first);
                    let overlaps = s.pins.iter().any(|&(f, m)| first < f + m && f < first + n);
                    match s.region.pin(first * PAGE, n * PAGE) {
                        Ok(()) => {
                            assert!(!overlaps && pinned + n <= PIN_LIMIT, "{ctx}: pin should have failed");
                            s.pins.push((first, n));
                            pinned += n;
                            pins_done += 1;
                        }
                        Err(Error::AlreadyPinned { .. }) => assert!(overlaps, "{ctx}: spurious AlreadyPinned"),
                        Err(Error::PinLimit { .. }) => assert!(pinned + n > PIN_LIMIT, "{ctx}: spurious PinLimit"),
                        Err(e) => panic!("{ctx}: pin: {e}"),
                    }
                }
                assert_eq!(rt.stats().pinned_frames as usize, pinned, "{ctx}: pin accounting");
            }
            100..=103 => {
                // Fork a guest copy-on-write: the child reads the parent's bytes as they are now,
                // and from then on each side's writes are its own.
                if n_guests >= 7 {
                    continue;
                }
                if g.regions.iter().any(|s| matches!(s.file, Some((_, MapMode::Shared)))) {
                    let r = g.arena.fork("refused");
                    assert!(matches!(r, Err(Error::InvalidArgument { what: "fork", .. })), "{ctx}: {r:?}");
                    continue;
                }
                let mut f = g.arena.fork(&format!("f{gi}-{step}")).unwrap_or_else(|e| panic!("{ctx}: fork: {e}"));
                let regions = g
                    .regions
                    .iter()
                    .map(|s| Slot {
                        region: f.take_region(&s.region).expect("a child region per parent region"),
                        model: s.model.clone(),
                        pins: Vec::new(),
                        file: s.file.as_ref().map(|(f, m)| (f.try_clone().unwrap(), *m)),
                    })
                    .collect();
                forks += 1;
                guests.push(Guest { arena: f.arena().clone(), regions, killed: false });
            }
            104..=107 => {
                // Flush a region: a Shared map's file then holds exactly its bytes.
                let s = &g.regions[ri];
                s.region.flush().unwrap_or_else(|e| panic!("{ctx}: flush: {e}"));
                check_file(&s.file, &s.model, &format!("{ctx}: flushed"));
                if s.file.is_some() {
                    flushes += 1;
                }
            }
            _ => {
                // Verify every live region of every guest.
                for (j, h) in guests.iter().enumerate() {
                    if h.killed {
                        continue;
                    }
                    for s in &h.regions {
                        check_range(s, 0, s.model.len(), &format!("{ctx} full check of guest {j}"));
                    }
                }
            }
        }
        rt.debug_check_invariants().unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let st = rt.stats();
        assert!(
            st.frames_in_use <= st.budget_frames,
            "{ctx}: {} frames in use, budget {}",
            st.frames_in_use,
            st.budget_frames
        );
    }
    for g in &guests {
        if !g.killed {
            for s in &g.regions {
                check_range(s, 0, s.model.len(), &format!("seed {seed} final"));
            }
        }
    }
    let st = rt.stats();
    eprintln!("{st}");
    assert!(st.totals.writebacks > 0 && st.totals.swap_ins > 0, "the test must exercise swap");
    assert!(st.totals.clean_drops > 0, "the test must exercise clean drops");
    assert!(pins_done > 0, "the test must exercise pinning");
    assert!(forks > 0 && st.totals.cow_copies > 0, "the test must exercise forks");
    assert!(flushes > 0 && st.totals.file_reads > 0 && st.totals.file_writebacks > 0, "the test must exercise files");
}

#[test]
fn model_move_path() {
    let base = seed(0xC0FFEE);
    for i in 0..3 {
        run(base + i, EvictionPath::Move, FaultMode::HandlerThreads, 1500);
    }
}

#[test]
fn model_writeprotect_path() {
    let base = seed(0xBEEF);
    for i in 0..3 {
        run(base + i, EvictionPath::WriteProtect, FaultMode::HandlerThreads, 1500);
    }
}

#[test]
fn model_in_thread_faults() {
    let base = seed(0xF00D);
    for (i, path) in PATHS.into_iter().enumerate() {
        run(base + i as u64, path, FaultMode::InThread, 1500);
    }
}

/// A long version for soak runs: `cargo test --test model -- --ignored`.
#[test]
#[ignore]
fn model_long() {
    let base = seed(1);
    for i in 0..12 {
        for path in PATHS {
            for mode in MODES {
                run(base + i, path, mode, 10_000);
            }
        }
    }
}

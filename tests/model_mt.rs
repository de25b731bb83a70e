//! The multi-threaded differential model test: several threads share one runtime, each playing
//! its own arenas, regions, forks and file maps (`Shared` and `Private`) against its own byte
//! model, with a budget of a few dozen frames so that eviction never stops. Parent arenas are
//! killed and regions released while children page out and read back (and killed while they
//! write the only copies of the pages they share with a child out to swap, the child reading), `Shared` maps are
//! released, flushed and killed while other threads' faults and a reclaimer thread evict their
//! dirty pages. Everything is checked byte for byte: every read against the model, every `Shared`
//! file on disk (read through its own descriptor) after each flush, release and kill.
//!
//! Each thread's operations come from its own seeded generator (seed = base seed + thread index);
//! the interleaving of threads is up to the scheduler, so a failure names the base seed, the
//! thread and the operation number, and says what was being checked. Rerun with
//! `PAGEWARDEN_SEED=<base seed>`; run longer with `PAGEWARDEN_MODEL_MT_SECS=<seconds per run>`.
//! The soak: `cargo test --release --test model_mt -- --ignored`.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Arena, Error, Event, EvictionPath, FaultMode, KillTrigger, MapMode, Region, Runtime};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Worker threads per runtime.
const THREADS: usize = 4;
/// The frame budget (shared by all threads: eviction runs constantly).
const BUDGET: usize = 48;
/// Swap pages: far more than the threads can ever hold, so the OOM killer never runs.
const SWAP: usize = 64 * 1024;
/// Live arenas per thread at most (forks included).
const MAX_GUESTS: usize = 6;

/// What an arena may do: `Anon` arenas hold anonymous regions and `Private` file maps and may
/// fork; `Files` arenas hold small `Shared` file maps (which forbid forking).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Anon,
    Files,
}

struct Slot {
    region: Region,
    model: Vec<u8>,
    /// The file behind a file-backed region: our own descriptor, for reading it back.
    file: Option<(File, MapMode)>,
    /// For a `Private` map: the file's original bytes, which must never change.
    orig: Option<Vec<u8>>,
}

struct Guest {
    arena: Arena,
    name: String,
    kind: Kind,
    regions: Vec<Slot>,
    killed: bool,
    /// Forked, or forked from: raw access is avoided here, so that a lost page shows as an
    /// `Error::Corrupted` with a message rather than a SIGBUS that ends the process.
    family: bool,
}

/// An unlinked temporary file holding `data`.
fn temp_file(data: &[u8]) -> File {
    static N: AtomicU64 = AtomicU64::new(0);
    let p =
        std::env::temp_dir().join(format!("pw-model-mt-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    f.write_all_at(data, 0).unwrap();
    f
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn disk(f: &File, len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len];
    f.read_exact_at(&mut d, 0).unwrap();
    d
}

/// The file on disk must hold `want` now (a `Shared` map after flush, release or kill; a
/// `Private` map's file always). On a mismatch, look again 300 ms later to tell a write-back
/// still in flight from a lost one.
fn check_file(f: &File, want: &[u8], what: &str, ctx: &str) {
    let now = disk(f, want.len());
    let Some(i) = first_diff(&now, want) else { return };
    std::thread::sleep(Duration::from_millis(300));
    let later = disk(f, want.len());
    let verdict = match first_diff(&later, want) {
        None if late_ok() => {
            let n = LATE.fetch_add(1, Ordering::Relaxed) + 1;
            eprintln!("{ctx}: {what}: the file was stale, correct 300 ms later (late write-back #{n}, tolerated)");
            return;
        }
        None => "correct 300 ms later: a write-back was still in flight when the call returned".to_string(),
        Some(j) => format!("still wrong 300 ms later (at offset {j}, page {}): the write is lost", j / PAGE),
    };
    panic!(
        "{ctx}: {what}: the file differs from the model at offset {i} (page {}): {:#04x} on disk, {:#04x} in \
         the model; {verdict}",
        i / PAGE,
        now[i],
        want[i]
    );
}

/// Late write-backs seen with `PAGEWARDEN_MODEL_MT_LATE_OK=1`.
static LATE: AtomicU64 = AtomicU64::new(0);

/// `PAGEWARDEN_MODEL_MT_LATE_OK=1`: a file that is stale right after a flush, kill or release
/// but correct 300 ms later (a write-back still in flight when the call returned) is counted
/// rather than fatal, so that runs go on to find lost writes and lost pages. A diagnostic knob:
/// by default such a file fails the test.
fn late_ok() -> bool {
    std::env::var_os("PAGEWARDEN_MODEL_MT_LATE_OK").is_some_and(|v| v == "1")
}

/// `PAGEWARDEN_MODEL_MT_TAKE_DELAY_US=n`: every eviction waits n µs before it takes its pages out
/// of their arena (a diagnostic knob: it widens the windows in which a page is on its way out).
fn take_delay() -> Option<Duration> {
    let us: u64 = std::env::var("PAGEWARDEN_MODEL_MT_TAKE_DELAY_US").ok()?.parse().ok()?;
    Some(Duration::from_micros(us))
}

/// `PAGEWARDEN_MODEL_MT_NO_CHURN=1`: no churn of small Shared maps (a diagnostic knob, to look
/// past lost Shared writes at release for the other failures).
fn no_churn() -> bool {
    std::env::var_os("PAGEWARDEN_MODEL_MT_NO_CHURN").is_some_and(|v| v == "1")
}

fn check_slot_file(s: &Slot, what: &str, ctx: &str) {
    let what = &format!("{what} [addr {:p}]", s.region.as_ptr());
    check_files(&s.file, s.orig.as_deref(), &s.model, what, ctx);
}

/// A `Shared` map's file must hold the model; a `Private` map's file its original bytes.
fn check_files(file: &Option<(File, MapMode)>, orig: Option<&[u8]>, model: &[u8], what: &str, ctx: &str) {
    match (file, orig) {
        (Some((f, MapMode::Shared)), _) => check_file(f, model, what, ctx),
        (Some((f, _)), Some(orig)) => check_file(f, orig, &format!("{what} (Private map: file must not change)"), ctx),
        _ => {}
    }
}

fn check_range(s: &Slot, off: usize, len: usize, ctx: &str) {
    let mut buf = vec![0u8; len];
    s.region.read(off, &mut buf).unwrap_or_else(|e| panic!("{ctx}: read of [{off}, +{len}) failed: {e}"));
    if let Some(i) = first_diff(&buf, &s.model[off..off + len]) {
        panic!(
            "{ctx}: mismatch at offset {} (page {}): got {:#04x}, model {:#04x}",
            off + i,
            (off + i) / PAGE,
            buf[i],
            s.model[off + i]
        );
    }
}

/// Sets the shared stop flag if the thread panics, so that the others end quickly.
struct StopOnPanic(Arc<AtomicBool>);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

struct Worker {
    rt: Runtime,
    t: usize,
    base: u64,
    rng: Rng,
    guests: Vec<Guest>,
    made: usize,
    counts: [u64; 16],
    /// Fork children handed to this thread by the previous one (whose parents that thread may
    /// kill or release at any moment, while this one pages the child out and reads it back).
    inbox: mpsc::Receiver<(Guest, Arc<AtomicU8>)>,
    /// To the next thread.
    next: mpsc::Sender<(Guest, Arc<AtomicU8>)>,
}

/// The hand-off of a fork child: sent, then arrived (the receiver is about to read it), then go
/// (the sender has started evicting the parent, which it kills meanwhile).
const SENT: u8 = 0;
const ARRIVED: u8 = 1;
const GO: u8 = 2;

/// Spins until `flag` reaches `want` or 20 ms have passed.
fn await_flag(flag: &AtomicU8, want: u8) {
    let t0 = Instant::now();
    while flag.load(Ordering::Acquire) < want && t0.elapsed() < Duration::from_millis(20) {
        std::thread::yield_now();
    }
}

impl Worker {
    fn new_guest(&mut self, kind: Kind) -> Guest {
        self.made += 1;
        let name = format!("t{}-{:?}-{}", self.t, kind, self.made);
        let arena = self.rt.arena(&name).create().unwrap();
        let mut g = Guest { arena, name, kind, regions: Vec::new(), killed: false, family: false };
        let n = if kind == Kind::Files { 3 } else { 2 };
        for _ in 0..n {
            let s = self.new_region(&g.arena, g.kind);
            g.regions.push(s);
        }
        g
    }

    fn new_region(&mut self, arena: &Arena, kind: Kind) -> Slot {
        let rng = &mut self.rng;
        let (pages, mode) = match kind {
            // Many small Shared maps, released often: dirty pages of maps being released are
            // always somewhere in eviction.
            Kind::Files => (1 + rng.below(4) as usize, Some(MapMode::Shared)),
            Kind::Anon => (1 + rng.below(24) as usize, if rng.below(4) == 0 { Some(MapMode::Private) } else { None }),
        };
        let len = pages * PAGE - rng.below(PAGE as u64) as usize;
        let Some(mode) = mode else {
            let region = arena.reserve(len).unwrap();
            return Slot { model: vec![0u8; region.len()], region, file: None, orig: None };
        };
        let data: Vec<u8> = (0..pages * PAGE).map(|_| rng.next() as u8).collect();
        let f = temp_file(&data);
        let region = arena.map_file(&f, 0, len, mode).unwrap();
        let orig = (mode == MapMode::Private).then(|| data.clone());
        Slot { model: data, region, file: Some((f, mode)), orig }
    }

    fn run(&mut self, stop: &AtomicBool, until: Instant) -> u64 {
        for _ in 0..2 {
            let g = self.new_guest(Kind::Anon);
            self.guests.push(g);
        }
        let g = self.new_guest(Kind::Files);
        self.guests.push(g);
        let mut step = 0u64;
        while !stop.load(Ordering::Acquire) && Instant::now() < until {
            self.step(step);
            step += 1;
        }
        // Final check: every live region still holds its model, every Shared file after a flush.
        let ctx = format!("base seed {} thread {} final check", self.base, self.t);
        for g in &self.guests {
            if g.killed {
                continue;
            }
            for s in &g.regions {
                check_range(s, 0, s.model.len(), &format!("{ctx} of {}", g.name));
                s.region.flush().unwrap_or_else(|e| panic!("{ctx}: flush: {e}"));
                check_slot_file(s, "after the final flush", &ctx);
            }
        }
        // Release everything, checking the files once more.
        for g in std::mem::take(&mut self.guests) {
            for s in g.regions {
                let Slot { region, model, file, orig } = s;
                drop(region);
                check_files(&file, orig.as_deref(), &model, "after the final release", &ctx);
            }
        }
        step
    }

    fn step(&mut self, step: u64) {
        let ctx = format!("base seed {} thread {} (seed {}) op {step}", self.base, self.t, self.base + self.t as u64);
        while let Ok((mut g, flag)) = self.inbox.try_recv() {
            // A child from the previous thread, whose parent that thread kills or releases once
            // it arrived, or evicts while it kills it once we said we are here: read it at
            // once (its pages are shared with a parent that may be writing their only copies
            // out and dying right now), then evict it and read it all back, again and again.
            g.name = format!("{} (handed to t{})", g.name, self.t);
            flag.store(ARRIVED, Ordering::Release);
            await_flag(&flag, GO);
            for s in &g.regions {
                check_range(s, 0, s.model.len(), &format!("{ctx}: {} on arrival, first read", g.name));
            }
            for round in 0..6 {
                for s in &g.regions {
                    s.region
                        .page_out(0, s.region.len())
                        .unwrap_or_else(|e| panic!("{ctx}: page_out of {} on arrival: {e}", g.name));
                    check_range(s, 0, s.model.len(), &format!("{ctx}: {} on arrival, round {round}", g.name));
                }
            }
            self.guests.push(g);
        }
        // A third of the time, also evict part of a live fork family member and read it back:
        // children (some handed here from the thread that may be killing their parent right now)
        // swap in and out all the time.
        if self.rng.below(3) == 0 {
            let fam: Vec<usize> = (0..self.guests.len())
                .filter(|&i| {
                    let g = &self.guests[i];
                    g.family && !g.killed && !g.regions.is_empty()
                })
                .collect();
            if !fam.is_empty() {
                let g = &self.guests[fam[self.rng.below(fam.len() as u64) as usize]];
                let s = &g.regions[self.rng.below(g.regions.len() as u64) as usize];
                let pages = s.model.len() / PAGE;
                let first = self.rng.below(pages as u64) as usize;
                let n = 1 + self.rng.below((pages - first) as u64) as usize;
                s.region
                    .page_out(first * PAGE, n * PAGE)
                    .unwrap_or_else(|e| panic!("{ctx}: page_out of {}: {e}", g.name));
                check_range(s, first * PAGE, n * PAGE, &format!("{ctx}: family read-back of {}", g.name));
                self.counts[12] += 1;
            }
        }
        let gi = self.rng.below(self.guests.len() as u64) as usize;
        if self.guests[gi].killed {
            let g = &self.guests[gi];
            if let Some(s) = g.regions.first() {
                let mut b = [0u8; 1];
                let r = s.region.read(0, &mut b);
                assert!(matches!(r, Err(Error::Killed { .. })), "{ctx}: killed arena {} readable: {r:?}", g.name);
            }
            // Drop it now and then, region by region (a release after the kill: the files must
            // still hold every write).
            if self.rng.below(3) == 0 {
                let g = self.guests.swap_remove(gi);
                for s in g.regions {
                    let Slot { region, model, file, orig } = s;
                    drop(region);
                    check_files(
                        &file,
                        orig.as_deref(),
                        &model,
                        &format!("released after the kill of {}", g.name),
                        &ctx,
                    );
                }
            }
            self.top_up();
            return;
        }
        if self.guests[gi].regions.is_empty() {
            let s = self.new_region(&self.guests[gi].arena.clone(), self.guests[gi].kind);
            self.guests[gi].regions.push(s);
        }
        let ri = self.rng.below(self.guests[gi].regions.len() as u64) as usize;
        let size = self.guests[gi].regions[ri].model.len();
        // Files arenas churn their small Shared maps a third of the time (see the churn below).
        let churn = self.guests[gi].kind == Kind::Files && self.rng.below(3) == 0;
        let op = if churn && !no_churn() { 90 } else { self.rng.below(100) };
        let rng = &mut self.rng;
        match op {
            0..=24 => {
                // Write random bytes, up to three pages, anywhere.
                self.counts[0] += 1;
                let len = (1 + rng.below((3 * PAGE) as u64) as usize).min(size);
                let off = rng.below((size - len + 1) as u64) as usize;
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let g = &mut self.guests[gi];
                let s = &mut g.regions[ri];
                s.region.write(off, &data).unwrap_or_else(|e| panic!("{ctx}: write to {}: {e}", g.name));
                s.model[off..off + len].copy_from_slice(&data);
            }
            25..=41 => {
                self.counts[1] += 1;
                let len = (1 + rng.below((3 * PAGE) as u64) as usize).min(size);
                let off = rng.below((size - len + 1) as u64) as usize;
                let g = &self.guests[gi];
                check_range(&g.regions[ri], off, len, &format!("{ctx} read of {}", g.name));
            }
            42..=47 => {
                // Raw pointer access (never on fork families: see `Guest::family`).
                self.counts[2] += 1;
                let g = &mut self.guests[gi];
                if g.family {
                    return;
                }
                let s = &mut g.regions[ri];
                for _ in 0..4 {
                    let off = rng.below(size as u64) as usize;
                    let v = rng.next() as u8;
                    // SAFETY: `off` < region length; the region lives until this thread drops
                    // it; only this thread touches it, and only this thread could kill its arena
                    // (swap is ample: the OOM killer never runs).
                    unsafe { s.region.as_ptr().add(off).write_volatile(v) };
                    s.model[off] = v;
                    let off2 = rng.below(size as u64) as usize;
                    // SAFETY: as above.
                    let got = unsafe { s.region.as_ptr().add(off2).read_volatile() };
                    assert_eq!(got, s.model[off2], "{ctx}: raw read of {} at {off2}", g.name);
                }
            }
            48..=57 => {
                // Forced eviction of a random page range, then (often) read it all back.
                self.counts[3] += 1;
                let pages = size / PAGE;
                let first = rng.below(pages as u64) as usize;
                let n = 1 + rng.below((pages - first) as u64) as usize;
                let back = rng.below(2) == 0;
                let g = &self.guests[gi];
                let s = &g.regions[ri];
                s.region.page_out(first * PAGE, n * PAGE).unwrap_or_else(|e| panic!("{ctx}: page_out: {e}"));
                if back {
                    check_range(s, first * PAGE, n * PAGE, &format!("{ctx} read-back after page_out of {}", g.name));
                }
            }
            58..=63 => {
                // Fork an Anon arena; the child gets a copy of the parent's model. Then write
                // to one side or the other and evict the child, so that its pages are shared
                // slots when the parent dies.
                self.counts[4] += 1;
                if self.guests[gi].kind != Kind::Anon || self.live() >= MAX_GUESTS {
                    return;
                }
                self.made += 1;
                let name = format!("t{}-fork-{}", self.t, self.made);
                let g = &mut self.guests[gi];
                let mut f = g.arena.fork(&name).unwrap_or_else(|e| panic!("{ctx}: fork of {}: {e}", g.name));
                g.family = true;
                let regions: Vec<Slot> = g
                    .regions
                    .iter()
                    .map(|s| Slot {
                        region: f.take_region(&s.region).expect("a child region per parent region"),
                        model: s.model.clone(),
                        file: s.file.as_ref().map(|(f, m)| (f.try_clone().unwrap(), *m)),
                        orig: s.orig.clone(),
                    })
                    .collect();
                for s in &regions {
                    s.region.page_out(0, s.region.len()).unwrap_or_else(|e| panic!("{ctx}: page_out of {name}: {e}"));
                }
                let child =
                    Guest { arena: f.arena().clone(), name, kind: Kind::Anon, regions, killed: false, family: true };
                // Half the children go to the next thread, which reads them, evicts them and
                // reads them back while this one (three times in four, once the child arrived or
                // after 20 ms) kills the parent or releases its regions -- half of those times
                // while evicting the parent, whose pages are the shares' only copies, so that the
                // child reads pages whose only copy is on its way to swap from a dying parent.
                if self.rng.below(2) == 0 {
                    let flag = Arc::new(AtomicU8::new(SENT));
                    match self.next.send((child, flag.clone())) {
                        Err(mpsc::SendError((child, _))) => self.guests.push(child),
                        Ok(()) if self.rng.below(4) != 0 => {
                            await_flag(&flag, ARRIVED);
                            let g = &mut self.guests[gi];
                            match self.rng.below(4) {
                                0 | 1 => {
                                    // The parent writes the shares' only copies out while it is
                                    // killed and the child reads them.
                                    let spin = self.rng.below(2000);
                                    std::thread::scope(|sc| {
                                        let arena = &g.arena;
                                        sc.spawn(move || {
                                            for _ in 0..spin {
                                                std::hint::spin_loop();
                                            }
                                            arena.kill().expect("the first kill reports");
                                        });
                                        flag.store(GO, Ordering::Release);
                                        for s in &g.regions {
                                            // Fails with Killed once the kill landed.
                                            let _ = s.region.page_out(0, s.region.len());
                                        }
                                    });
                                    g.killed = true;
                                }
                                2 => {
                                    flag.store(GO, Ordering::Release);
                                    for _ in 0..self.rng.below(50) {
                                        std::hint::spin_loop();
                                    }
                                    g.arena.kill().expect("the first kill reports");
                                    g.killed = true;
                                }
                                _ => {
                                    flag.store(GO, Ordering::Release);
                                    for _ in 0..self.rng.below(50) {
                                        std::hint::spin_loop();
                                    }
                                    g.regions.clear();
                                }
                            }
                            return;
                        }
                        Ok(()) => flag.store(GO, Ordering::Release),
                    }
                } else {
                    self.guests.push(child);
                }
                // A third of the time the parent dies at once: both sides write a little and
                // evict part of themselves, then the parent is killed or its regions released,
                // and the family (the child included) is evicted and read back.
                if self.rng.below(3) == 0 {
                    let ci = self.guests.len() - 1;
                    for i in [gi, ci] {
                        let g = &mut self.guests[i];
                        if !g.family || g.killed {
                            continue;
                        }
                        for s in &mut g.regions {
                            let size = s.model.len();
                            let off = self.rng.below(size as u64) as usize;
                            let len = (1 + self.rng.below((2 * PAGE) as u64) as usize).min(size - off);
                            let b = self.rng.next() as u8;
                            s.region.fill(off, len, b).unwrap_or_else(|e| panic!("{ctx}: fill of {}: {e}", g.name));
                            s.model[off..off + len].fill(b);
                            let pages = size / PAGE;
                            let first = self.rng.below(pages as u64) as usize;
                            s.region
                                .page_out(first * PAGE, (pages - first) * PAGE)
                                .unwrap_or_else(|e| panic!("{ctx}: page_out of {}: {e}", g.name));
                        }
                    }
                    let g = &mut self.guests[gi];
                    let what = if self.rng.below(2) == 0 {
                        g.arena.kill().expect("the first kill reports");
                        g.killed = true;
                        format!("{ctx} after the kill of the parent {} just forked", g.name)
                    } else {
                        g.regions.clear();
                        format!("{ctx} after the release of the regions of the parent {} just forked", g.name)
                    };
                    self.check_families(&what);
                }
            }
            64..=71 => {
                // Kill an arena now and then. Killing a fork parent: its children must keep
                // every byte (read back at once, after evicting them). Killing a Files arena:
                // every Shared file must hold every write that returned before the kill.
                self.counts[5] += 1;
                let g = &self.guests[gi];
                if g.kind == Kind::Anon && !g.family && rng.below(3) != 0 {
                    return;
                }
                let g = &mut self.guests[gi];
                g.arena.kill().expect("the first kill reports");
                g.killed = true;
                for s in &g.regions {
                    check_slot_file(s, &format!("after the kill of {}", g.name), &ctx);
                }
                self.check_families(&format!("{ctx} after the kill of {}", self.guests[gi].name));
            }
            72..=81 => {
                // Release a region (its file must then hold every write) and reserve a new one.
                self.counts[6] += 1;
                let g = &mut self.guests[gi];
                let Slot { region, model, file, orig } = g.regions.swap_remove(ri);
                drop(region);
                let name = g.name.clone();
                check_files(&file, orig.as_deref(), &model, &format!("after the release of a region of {name}"), &ctx);
                let s = self.new_region(&self.guests[gi].arena.clone(), self.guests[gi].kind);
                self.guests[gi].regions.push(s);
                if self.guests[gi].family {
                    self.check_families(&format!("{ctx} after the release of a region of {name}"));
                }
            }
            82..=89 => {
                // Flush, then the file must hold exactly the model.
                self.counts[7] += 1;
                let g = &self.guests[gi];
                let s = &g.regions[ri];
                s.region.flush().unwrap_or_else(|e| panic!("{ctx}: flush of {}: {e}", g.name));
                check_slot_file(s, &format!("right after flush() of a region of {} returned", g.name), &ctx);
            }
            90..=93 if self.guests[gi].kind == Kind::Files && !no_churn() => {
                // Churn of small Shared maps: map, dirty, and release the oldest (dirtied a few
                // operations ago, so likely in eviction right now), checking its file at once.
                self.counts[11] += 1;
                for _ in 0..4 {
                    // Dirty the maps already there (no fault when resident and writable: their
                    // place in the eviction order stays), then map and dirty a new one.
                    for s in &mut self.guests[gi].regions {
                        let off = self.rng.below(s.model.len() as u64) as usize;
                        let len = (1 + self.rng.below(64) as usize).min(s.model.len() - off);
                        let b = self.rng.next() as u8;
                        s.region.fill(off, len, b).unwrap_or_else(|e| panic!("{ctx}: fill of a Shared map: {e}"));
                        s.model[off..off + len].fill(b);
                    }
                    let arena = self.guests[gi].arena.clone();
                    let mut s = self.new_region(&arena, Kind::Files);
                    let len = s.model.len();
                    let data: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                    s.region.write(0, &data).unwrap_or_else(|e| panic!("{ctx}: write to a new Shared map: {e}"));
                    s.model.copy_from_slice(&data);
                    let g = &mut self.guests[gi];
                    g.regions.push(s);
                    if g.regions.len() > 6 {
                        let Slot { region, model, file, orig } = g.regions.remove(0);
                        drop(region);
                        let what = format!("after the release of a dirty Shared map of {}", g.name);
                        check_files(&file, orig.as_deref(), &model, &what, &ctx);
                    }
                    // Flush one of the dirty maps and look at its file at once.
                    let s = &g.regions[self.rng.below(g.regions.len() as u64) as usize];
                    s.region.flush().unwrap_or_else(|e| panic!("{ctx}: flush of {}: {e}", g.name));
                    check_slot_file(
                        s,
                        &format!("right after flush() of a dirty Shared map of {} returned", g.name),
                        &ctx,
                    );
                }
                // Now and then the arena dies with its maps dirty: every file must hold every write.
                if self.rng.below(6) == 0 {
                    let g = &mut self.guests[gi];
                    g.arena.kill().expect("the first kill reports");
                    g.killed = true;
                    for s in &g.regions {
                        check_slot_file(s, &format!("right after the kill of {} (dirty Shared maps)", g.name), &ctx);
                    }
                }
            }
            90..=93 => {
                // A new region.
                self.counts[8] += 1;
                if self.guests[gi].regions.len() < 5 {
                    let s = self.new_region(&self.guests[gi].arena.clone(), self.guests[gi].kind);
                    self.guests[gi].regions.push(s);
                }
            }
            94..=96 => {
                // A new arena.
                self.counts[9] += 1;
                if self.live() < MAX_GUESTS {
                    let kind = if self.rng.below(2) == 0 { Kind::Files } else { Kind::Anon };
                    let g = self.new_guest(kind);
                    self.guests.push(g);
                }
            }
            _ => {
                // Verify every live region of this thread.
                self.counts[10] += 1;
                for g in &self.guests {
                    if !g.killed {
                        for s in &g.regions {
                            check_range(s, 0, s.model.len(), &format!("{ctx} full check of {}", g.name));
                        }
                    }
                }
            }
        }
        self.top_up();
    }

    fn live(&self) -> usize {
        self.guests.iter().filter(|g| !g.killed).count()
    }

    /// Keeps at least one live arena of each kind.
    fn top_up(&mut self) {
        for kind in [Kind::Anon, Kind::Files] {
            if !self.guests.iter().any(|g| !g.killed && g.kind == kind) {
                let g = self.new_guest(kind);
                self.guests.push(g);
            }
        }
    }

    /// After a parent's death or release: every live member of a fork family pages out and
    /// reads back all its bytes.
    fn check_families(&self, ctx: &str) {
        for g in &self.guests {
            if g.killed || !g.family {
                continue;
            }
            for s in &g.regions {
                s.region.page_out(0, s.region.len()).unwrap_or_else(|e| panic!("{ctx}: page_out of {}: {e}", g.name));
                check_range(s, 0, s.model.len(), &format!("{ctx}: read-back of {}", g.name));
            }
        }
    }
}

fn run(base: u64, path: EvictionPath, mode: FaultMode, secs: f64) {
    eprintln!("model_mt: base seed={base} path={path:?} mode={mode:?} threads={THREADS} secs={secs}");
    let Some(rt) = runtime_with(BUDGET, SWAP, path, |b| {
        let b = b.max_readahead(4).fault_mode(mode);
        match take_delay() {
            Some(d) => b.swap_faults(pagewarden::SwapFaults { take_delay: Some(d), ..Default::default() }),
            None => b,
        }
    }) else {
        return;
    };
    let events = rt.events();
    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut handles = Vec::new();
    let (senders, mut inboxes): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<(Guest, Arc<AtomicU8>)>()).unzip();
    for t in 0..THREADS {
        let (rt, stop) = (rt.clone(), stop.clone());
        let inbox = inboxes.remove(0);
        let next = senders[(t + 1) % THREADS].clone();
        handles.push(std::thread::spawn(move || {
            let _guard = StopOnPanic(stop.clone());
            let mut w = Worker {
                rt,
                t,
                base,
                rng: Rng(base + t as u64),
                guests: Vec::new(),
                made: 0,
                counts: [0; 16],
                inbox,
                next,
            };
            let ops = w.run(&stop, until);
            // Children still on their way here are released unread.
            while w.inbox.try_recv().is_ok() {}
            (ops, w.counts)
        }));
    }
    // A reclaimer keeping the runtime busy evicting whatever the threads hold.
    let reclaimer = {
        let (rt, stop) = (rt.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                rt.reclaim(8);
                std::thread::yield_now();
            }
        })
    };
    // Watch the events as the threads run: a lost page or an OOM kill is a failure.
    let watch = |ev: Event, failure: &Mutex<Option<String>>| {
        let bad = match &ev {
            Event::PageLost { .. } | Event::SwapFailed { .. } | Event::OomUnresolved(_) => true,
            Event::Killed(r) => !matches!(r.trigger, KillTrigger::Manual),
            _ => false,
        };
        if bad {
            let mut f = failure.lock().unwrap();
            if f.is_none() {
                *f = Some(format!("base seed {base} path {path:?} mode {mode:?}: event {ev:?}"));
            }
        }
    };
    while handles.iter().any(|h| !h.is_finished()) {
        while let Ok(ev) = events.try_recv() {
            watch(ev, &failure);
        }
        if failure.lock().unwrap().is_some() {
            stop.store(true, Ordering::Release);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Release);
    reclaimer.join().unwrap();
    let mut panics = Vec::new();
    let mut total = 0;
    for (t, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok((ops, counts)) => {
                total += ops;
                eprintln!("  thread {t}: {ops} ops {counts:?}");
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_default();
                panics.push(format!("thread {t}: {msg}"));
            }
        }
    }
    while let Ok(ev) = events.try_recv() {
        watch(ev, &failure);
    }
    let st = rt.stats();
    eprintln!("  {total} ops; late write-backs tolerated so far: {}", LATE.load(Ordering::Relaxed));
    if let Some(f) = failure.lock().unwrap().take() {
        panics.insert(0, f);
    }
    assert!(
        panics.is_empty(),
        "model_mt failed (path {path:?}, mode {mode:?}, base seed {base}):\n{}",
        panics.join("\n")
    );
    rt.debug_check_invariants().unwrap_or_else(|e| panic!("base seed {base} path {path:?} mode {mode:?}: {e}"));
    assert!(st.totals.writebacks > 0 && st.totals.swap_ins > 0, "the test must exercise swap: {st}");
    assert!(st.totals.cow_copies > 0, "the test must exercise forks: {st}");
    assert!(st.totals.file_writebacks > 0, "the test must exercise Shared write-back: {st}");
}

/// Seconds per run: `PAGEWARDEN_MODEL_MT_SECS`, else `default`.
fn secs(default: f64) -> f64 {
    std::env::var("PAGEWARDEN_MODEL_MT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[test]
fn model_mt_move_handler_threads() {
    run(seed(0x4D54_0001), EvictionPath::Move, FaultMode::HandlerThreads, secs(3.0));
}

#[test]
fn model_mt_writeprotect_handler_threads() {
    run(seed(0x4D54_0002), EvictionPath::WriteProtect, FaultMode::HandlerThreads, secs(3.0));
}

#[test]
fn model_mt_move_in_thread() {
    run(seed(0x4D54_0003), EvictionPath::Move, FaultMode::InThread, secs(3.0));
}

#[test]
fn model_mt_writeprotect_in_thread() {
    run(seed(0x4D54_0004), EvictionPath::WriteProtect, FaultMode::InThread, secs(3.0));
}

/// Minutes of it, both paths, both modes, new seeds each round:
/// `cargo test --release --test model_mt -- --ignored` (`PAGEWARDEN_MODEL_MT_SECS` per run,
/// `PAGEWARDEN_MODEL_MT_ROUNDS` rounds).
#[test]
#[ignore]
fn model_mt_soak() {
    let base = seed(1);
    let rounds: u64 = std::env::var("PAGEWARDEN_MODEL_MT_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    for i in 0..rounds {
        for path in PATHS {
            for mode in MODES {
                run(base.wrapping_add(i.wrapping_mul(1000)), path, mode, secs(15.0));
            }
        }
    }
}

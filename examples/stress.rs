//! The main stress job: several arenas and threads overcommit a working set well past the frame
//! budget, with live progress, then the stats table and a byte-exact verification of every page.
//!
//! ```text
//! cargo run --release --example stress                    # defaults sized to this machine
//! cargo run --release --example stress -- --help
//! ```

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use pagewarden::{Error, Event, EvictionPath, Impact, Region, Runtime};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const HELP: &str = "\
stress: overcommit a frame budget with several arenas and threads, then verify every page.

USAGE: cargo run --release --example stress -- [OPTIONS]

OPTIONS:
  --budget-mib N     frame budget in MiB (default: 1/16 of available memory, 32..=256)
  --overcommit X     working set as a multiple of the budget (default 3)
  --swap-mib N       swap capacity in MiB (default: working set + 50%)
  --threads N        worker threads (default 4)
  --arenas N         arenas, each with its own region (default 4)
  --duration S       seconds of random access after the first fill (default 12)
  --path P           eviction path: auto | move | wp (default auto)
  --handlers N       fault handler threads (default 1)
  -h, --help         this text

Each page carries a record (arena, page, version). Every thread owns a stripe of pages, writes
new versions, reads back and checks old ones; at the end every page of every arena is read and
compared with what its owner last wrote.";

struct Opts {
    budget_mib: usize,
    overcommit: f64,
    swap_mib: Option<usize>,
    threads: usize,
    arenas: usize,
    duration: u64,
    path: EvictionPath,
    handlers: usize,
}

fn parse() -> Result<Opts, String> {
    let avail = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .unwrap_or(1 << 20);
    let mut o = Opts {
        budget_mib: (avail / 1024 / 16).clamp(32, 256),
        overcommit: 3.0,
        swap_mib: None,
        threads: 4,
        arenas: 4,
        duration: 12,
        path: EvictionPath::Auto,
        handlers: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            "--budget-mib" => o.budget_mib = val(&a)?.parse().map_err(|e| format!("--budget-mib: {e}"))?,
            "--overcommit" => o.overcommit = val(&a)?.parse().map_err(|e| format!("--overcommit: {e}"))?,
            "--swap-mib" => o.swap_mib = Some(val(&a)?.parse().map_err(|e| format!("--swap-mib: {e}"))?),
            "--threads" => o.threads = val(&a)?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--arenas" => o.arenas = val(&a)?.parse().map_err(|e| format!("--arenas: {e}"))?,
            "--duration" => o.duration = val(&a)?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--handlers" => o.handlers = val(&a)?.parse().map_err(|e| format!("--handlers: {e}"))?,
            "--path" => {
                o.path = match val(&a)?.as_str() {
                    "auto" => EvictionPath::Auto,
                    "move" => EvictionPath::Move,
                    "wp" | "writeprotect" => EvictionPath::WriteProtect,
                    p => return Err(format!("--path: unknown path '{p}' (auto, move, wp)")),
                }
            }
            _ => return Err(format!("unknown option '{a}' (try --help)")),
        }
    }
    if o.threads == 0 || o.arenas == 0 || o.overcommit <= 0.0 {
        return Err("--threads, --arenas and --overcommit must be positive".into());
    }
    if o.arenas > o.threads {
        return Err(format!(
            "--arenas {} needs at least as many --threads (each arena is worked by a thread)",
            o.arenas
        ));
    }
    Ok(o)
}

/// A tiny deterministic generator per thread.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Skewed choice in 0..n: most picks land in a hot tenth of the range.
    fn skewed(&mut self, n: usize) -> usize {
        let hot = (n / 10).max(1);
        if self.next() % 10 < 7 { (self.next() as usize) % hot } else { (self.next() as usize) % n }
    }
}

const REC: usize = 16;

fn record(arena: usize, page: usize, version: u32) -> [u8; REC] {
    let mut r = [0u8; REC];
    r[0..4].copy_from_slice(&(arena as u32).to_le_bytes());
    r[4..12].copy_from_slice(&(page as u64).to_le_bytes());
    r[12..16].copy_from_slice(&version.to_le_bytes());
    r
}

struct Worker {
    arena_ix: usize,
    region: Arc<Region>,
    /// Pages this worker owns: `first, first + stride, ...`.
    pages: Vec<usize>,
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("stress: {e}");
            std::process::exit(2);
        }
    };
    let page = 4096usize;
    let budget = o.budget_mib << 20;
    let working_set = (budget as f64 * o.overcommit) as usize;
    let swap = o.swap_mib.map_or(working_set + working_set / 2, |m| m << 20);
    let rt = match Runtime::builder()
        .frame_budget(budget)
        .swap_capacity(swap as u64)
        .eviction(o.path)
        .handler_threads(o.handlers)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stress: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "pagewarden stress: budget {} MiB, working set {} MiB ({:.1}x), swap {} MiB, {} arenas, {} threads, {} s, path {:?}, uffd {:?}",
        o.budget_mib,
        working_set >> 20,
        o.overcommit,
        swap >> 20,
        o.arenas,
        o.threads,
        o.duration,
        rt.eviction_path(),
        rt.uffd_source()
    );
    // Arenas get unequal shares: the first is the biggest.
    let weights: Vec<usize> = (0..o.arenas).map(|i| o.arenas - i + 1).collect();
    let total_w: usize = weights.iter().sum();
    let names = ["database", "cache", "batch", "logs", "index", "queue", "blobs", "scratch"];
    let mut regions = Vec::new();
    let mut arenas = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        let name =
            format!("{}{}", names[i % names.len()], if i >= names.len() { format!("-{i}") } else { String::new() });
        // OOM profiles like a real host's: an important database, a cache, batch work.
        let arena = match i % names.len() {
            0 => rt.arena(&name).oom_score_adj(-500).impact(Impact::Interactive),
            1 => rt.arena(&name),
            _ => rt.arena(&name).impact(Impact::Background).nice(10),
        };
        let arena = arena.create().expect("arena");
        let bytes = (working_set * w / total_w).max(page);
        // Reserve 64x what is used: address space is cheap, frames are not.
        let region = Arc::new(arena.reserve(bytes * 64).expect("reserve"));
        regions.push((region, bytes / page));
        arenas.push(arena);
    }
    // Threads are spread over arenas round-robin; threads of one arena split its pages by stride.
    let mut workers: Vec<Worker> = Vec::new();
    for t in 0..o.threads {
        let a = t % o.arenas;
        let sharing: Vec<usize> = (0..o.threads).filter(|x| x % o.arenas == a).collect();
        let k = sharing.iter().position(|&x| x == t).unwrap();
        let (region, pages) = &regions[a];
        let owned = (0..*pages).filter(|p| p % sharing.len() == k).collect();
        workers.push(Worker { arena_ix: a, region: region.clone(), pages: owned });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for (t, w) in workers.into_iter().enumerate() {
        let stop = stop.clone();
        let ops = ops.clone();
        let errors = errors.clone();
        let duration = Duration::from_secs(o.duration);
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) * 0x1234_5678_9ABC));
            let mut version = vec![0u32; w.pages.len()];
            // Phase 1: first touch of every owned page, in order (sequential faults, readahead).
            for (i, &p) in w.pages.iter().enumerate() {
                version[i] = 1;
                if w.region.write(p * page, &record(w.arena_ix, p, 1)).is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return (w, version);
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
            // Phase 2: skewed random reads and writes until the deadline.
            let start = Instant::now();
            while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
                let i = rng.skewed(w.pages.len());
                let p = w.pages[i];
                if rng.next() % 3 == 0 {
                    version[i] += 1;
                    if w.region.write(p * page, &record(w.arena_ix, p, version[i])).is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                } else {
                    let mut got = [0u8; REC];
                    if w.region.read(p * page, &mut got).is_err() || got != record(w.arena_ix, p, version[i]) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
            (w, version)
        }));
    }
    // Live progress.
    let mut last_faults = 0;
    let mut last_t = Instant::now();
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(500));
        let st = rt.stats();
        let faults = st.totals.faults();
        let dt = last_t.elapsed().as_secs_f64();
        last_t = Instant::now();
        let mib = |p: u64| (p * page as u64) >> 20;
        print!(
            "\r[{:5.1}s] resident {:>5}/{} MiB  swap {:>5} MiB  faults/s {:>7.0}  evicted {:>8}  ops {:>9}  p99 {:>7.1?}   ",
            t0.elapsed().as_secs_f64(),
            mib(st.frames_in_use),
            mib(st.budget_frames),
            mib(st.swap_used),
            (faults - last_faults) as f64 / dt,
            st.totals.evictions,
            ops.load(Ordering::Relaxed),
            st.latency.p99,
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        last_faults = faults;
    }
    println!();
    let results: Vec<(Worker, Vec<u32>)> = handles.into_iter().map(|h| h.join().expect("worker")).collect();
    let elapsed = t0.elapsed();
    let st = rt.stats();
    println!("\n{st}\n");
    // Kills are printed in full; warnings are summarised.
    let (mut pressure, mut peak, mut swap_low) = (0, 0.0f64, 0);
    for ev in rt.events().try_iter() {
        match ev {
            Event::Killed(r) | Event::WouldKill(r) | Event::OomUnresolved(r) => println!("{r}\n"),
            Event::Pressure { stalled_share, .. } => {
                pressure += 1;
                peak = peak.max(stalled_share);
            }
            Event::SwapLow { .. } => swap_low += 1,
            other => println!("event: {other:?}"),
        }
    }
    if pressure > 0 {
        println!(
            "{pressure} pressure warnings (threads stalled on faults up to {:.0}% of a second: expected when the working set is {:.1}x the budget)",
            peak * 100.0,
            o.overcommit
        );
    }
    if swap_low > 0 {
        println!("{swap_low} low-swap warnings");
    }
    // Verification: every owned page holds its owner's last version.
    let mut checked = 0u64;
    let mut bad = 0u64;
    for (w, version) in &results {
        for (i, &p) in w.pages.iter().enumerate() {
            let mut got = [0u8; REC];
            match w.region.read(p * page, &mut got) {
                Ok(()) if got == record(w.arena_ix, p, version[i]) => {}
                Ok(()) => {
                    bad += 1;
                    if bad <= 5 {
                        eprintln!(
                            "MISMATCH arena {} page {p}: expected version {}, found {:?}",
                            w.arena_ix, version[i], got
                        );
                    }
                }
                Err(Error::Killed { arena }) => {
                    bad += 1;
                    if bad <= 5 {
                        eprintln!("arena {arena} was killed: its pages are gone");
                    }
                }
                Err(e) => {
                    bad += 1;
                    eprintln!("read error: {e}");
                }
            }
            checked += 1;
        }
    }
    let total_ops = ops.load(Ordering::Relaxed);
    println!(
        "{} operations in {:.1} s ({:.0}/s); {} faults, {} evictions ({} written, {} dropped clean), {} swap-ins",
        total_ops,
        elapsed.as_secs_f64(),
        total_ops as f64 / elapsed.as_secs_f64(),
        st.totals.faults(),
        st.totals.evictions,
        st.totals.writebacks,
        st.totals.clean_drops,
        st.totals.swap_ins
    );
    let in_loop = errors.load(Ordering::Relaxed);
    if bad == 0 && in_loop == 0 {
        println!(
            "verified {checked} pages across {} arenas: every page holds its last written version. INTEGRITY OK",
            o.arenas
        );
    } else {
        println!("INTEGRITY FAILURE: {bad} of {checked} pages wrong at the end, {in_loop} errors during the run");
        std::process::exit(1);
    }
}

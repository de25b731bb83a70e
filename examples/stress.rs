//! The main stress job: a host's worth of arenas overcommit a frame budget several times over
//! while one of them leaks, with live progress; then the stats table, the OOM reports, and a
//! byte-exact check of every page that survived.
//!
//! ```text
//! cargo run --release --example stress                    # defaults sized to this machine
//! cargo run --release --example stress -- --help
//! RUST_LOG=pagewarden=debug cargo run --release --example stress   # the runtime's own log
//! ```

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

use clap::{Parser, ValueEnum};
use pagewarden::{
    Balanced, Error, Event, EvictionPath, FaultMode, Greedy, Impact, KillFaulting, LinuxBadness, OomReport, Region,
    Runtime,
};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const MIB: u64 = 1 << 20;

/// Overcommit a frame budget with several arenas and threads while one arena leaks; watch the
/// runtime page, swap and finally kill; then check every surviving page.
///
/// Steady arenas (an important `database` with oom_score_adj -500, a `cache`, background
/// `batch` work, ...) share a working set several times the budget. Each page carries a record
/// (arena, page, version); threads first touch all their pages, then read and write at random,
/// skewed towards a hot tenth, checking every read. Meanwhile `plugins` (third-party code,
/// oom_score_adj 500) leaks: it touches new memory until frames and swap run out and the OOM
/// killer has to choose a victim. At the end every page of every surviving arena is read back
/// and compared with what its owner last wrote.
///
/// SIZE values take a K, M, G or T suffix (binary); a bare number is MiB. Settings no flag sets
/// (watermarks, readahead, swap encryption, ...) can be given as PAGEWARDEN_* environment
/// variables, and so can the policy and the eviction path when their flags are absent.
#[derive(Parser, Debug)]
#[command(name = "stress", verbatim_doc_comment)]
struct Opts {
    /// Frame budget [default: 1/16 of available memory, clamped to 32M..=256M]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    budget: Option<u64>,
    /// Swap capacity [default: the working set plus half the budget]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    swap: Option<u64>,
    /// Working set of the steady arenas, as a multiple of the budget
    #[arg(long, default_value_t = 3.0, value_name = "X")]
    overcommit: f64,
    /// Steady arenas (the leaking one comes on top)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    arenas: u16,
    /// Worker threads for the steady arenas, at least one per arena (the leak has its own)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Seconds of random access after the first touch
    #[arg(long, default_value_t = 12.0, value_name = "SECONDS")]
    duration: f64,
    /// Who dies when memory runs out [default: greedy, or PAGEWARDEN_POLICY]
    #[arg(long, value_enum)]
    policy: Option<Policy>,
    /// How pages leave memory [default: auto, or PAGEWARDEN_EVICTION]
    #[arg(long, value_enum)]
    path: Option<Path>,
    /// Who resolves faults
    #[arg(long, value_enum, default_value = "in-thread")]
    mode: Mode,
    /// Fault handler threads (with --mode handler-threads)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    handlers: u16,
    /// OOM dry run: report whom the killer would choose, kill nothing (accesses that find no
    /// memory then fail with OutOfMemory, and the leak stalls instead)
    #[arg(long)]
    dry_run: bool,
    /// Leak rate, MiB per second [default: paced to run out of memory halfway through]
    #[arg(long, value_name = "MIB_PER_S")]
    leak_rate: Option<f64>,
    /// No leaking arena: a steady overcommitted workload only
    #[arg(long)]
    no_leak: bool,
    /// Seed of the access pattern
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Policy {
    /// Best memory freed per unit of impact cost (a knapsack heuristic)
    Greedy,
    /// The kernel's badness formula: the largest (adjusted) arena dies
    LinuxBadness,
    /// Progress on both the frame and the swap deficit, per unit of cost
    Balanced,
    /// The arena whose fault found no memory
    KillFaulting,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Path {
    /// Move where the kernel has UFFDIO_MOVE (6.8+), write-protect otherwise
    Auto,
    /// UFFDIO_MOVE pages out into a frame pool (Linux 6.8+)
    Move,
    /// Write-protect, write out, then drop (Linux 5.7+)
    Wp,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Handler threads read fault events and wake the faulting thread
    HandlerThreads,
    /// The faulting thread resolves its own fault in a SIGBUS handler
    InThread,
}

/// A size: a bare number is MiB; K, M, G, T suffixes are binary.
fn size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().map_err(|_| format!("'{s}' is not a size (e.g. 256M, 1G)"))?;
    let shift = match s[split..].trim().to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => 20,
        "K" | "KB" | "KIB" => 10,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        u => return Err(format!("unknown unit '{u}' (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("'{s}' is too large"))
}

/// MemAvailable in bytes.
fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1 << 30, |kb| kb * 1024)
}

/// A tiny deterministic generator per thread (xorshift).
struct Rng(u64);
impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(stream * 2 + 1) | 1)
    }
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

/// What a page holds: its arena, its page number and a version bumped on every write.
fn record(arena: usize, page: usize, version: u32) -> [u8; REC] {
    let mut r = [0u8; REC];
    r[0..4].copy_from_slice(&(arena as u32).to_le_bytes());
    r[4..12].copy_from_slice(&(page as u64).to_le_bytes());
    r[12..16].copy_from_slice(&version.to_le_bytes());
    r
}

/// One steady arena.
struct Steady {
    name: String,
    region: Arc<Region>,
    pages: usize,
    profile: &'static str,
}

/// What a worker thread owns and found.
struct Worker {
    arena_ix: usize,
    region: Arc<Region>,
    /// Pages this worker owns: `k, k + sharing, ...`.
    pages: Vec<usize>,
    version: Vec<u32>,
    /// Reads that returned something other than the last version written (must stay 0).
    mismatches: u64,
    /// Accesses that failed with `OutOfMemory` (nothing could be killed: dry run).
    unserved: u64,
    /// Other errors, first one kept.
    errors: u64,
    first_error: Option<String>,
}

/// Counters shared with the status line.
#[derive(Default)]
struct Live {
    ops: AtomicU64,
    filled: AtomicUsize,
    leaked_pages: AtomicU64,
    leak_stalls: AtomicU64,
    stop: AtomicBool,
}

fn main() {
    env_logger::init();
    let o = Opts::parse();
    if (o.threads as usize) < o.arenas as usize {
        eprintln!("stress: --threads {} is fewer than --arenas {}: each arena needs a thread", o.threads, o.arenas);
        std::process::exit(2);
    }
    if !((0.0..=64.0).contains(&o.overcommit) && o.overcommit > 0.0 && (0.0..=3600.0).contains(&o.duration)) {
        eprintln!("stress: --overcommit must be in (0, 64] and --duration in [0, 3600]");
        std::process::exit(2);
    }
    let budget = o.budget.unwrap_or_else(|| (mem_available() / 16).clamp(32 * MIB, 256 * MIB));
    let working_set = (budget as f64 * o.overcommit) as u64;
    let swap = o.swap.unwrap_or(working_set + budget / 2);

    let mut b = Runtime::builder()
        .frame_budget(usize::try_from(budget).unwrap_or(usize::MAX))
        .swap_capacity(usize::try_from(swap).unwrap_or(usize::MAX))
        .handler_threads(o.handlers.into());
    if o.dry_run {
        b = b.oom_dry_run(true);
    }
    b = match o.policy {
        Some(Policy::Greedy) => b.victim_policy(Greedy),
        Some(Policy::LinuxBadness) => b.victim_policy(LinuxBadness),
        Some(Policy::Balanced) => b.victim_policy(Balanced),
        Some(Policy::KillFaulting) => b.victim_policy(KillFaulting),
        None => b,
    };
    b = match o.path {
        Some(Path::Auto) => b.eviction(EvictionPath::Auto),
        Some(Path::Move) => b.eviction(EvictionPath::Move),
        Some(Path::Wp) => b.eviction(EvictionPath::WriteProtect),
        None => b,
    };
    b = b.fault_mode(match o.mode {
        Mode::HandlerThreads => FaultMode::HandlerThreads,
        Mode::InThread => FaultMode::InThread,
    });
    let rt = match b.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stress: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let st0 = rt.stats();
    let budget = st0.budget_frames * PAGE as u64;
    let swap = st0.swap_slots * PAGE as u64;
    println!(
        "pagewarden stress: budget {} MiB, swap {} MiB, working set {} MiB ({:.1}x the budget), {} threads, {:.0} s; \
         policy {}{}, path {:?}, mode {:?}, uffd {:?}",
        budget / MIB,
        swap / MIB,
        working_set / MIB,
        o.overcommit,
        o.threads,
        o.duration,
        st0.policy,
        if o.dry_run { " (dry run)" } else { "" },
        rt.eviction_path(),
        o.mode,
        rt.uffd_source()
    );

    // Steady arenas with unequal shares (the first is the biggest) and OOM profiles like a real
    // host's: an important database, a cache, batch work that can be redone.
    let n = o.arenas as usize;
    let weights: Vec<u64> = (0..n as u64).map(|i| n as u64 - i + 1).collect();
    let total_w: u64 = weights.iter().sum();
    let names = ["database", "cache", "batch", "logs", "index", "queue", "blobs", "scratch"];
    let mut steady = Vec::new();
    let mut arenas = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        let name = if i < names.len() { names[i].to_string() } else { format!("{}-{i}", names[i % names.len()]) };
        let (builder, profile) = match i % names.len() {
            0 => (
                rt.arena(&name).oom_score_adj(-500).impact(Impact::Interactive),
                "oom_score_adj -500, interactive: the service users wait on",
            ),
            1 => (rt.arena(&name), "normal"),
            _ => (rt.arena(&name).impact(Impact::Background).nice(5), "background, nice 5: work that can be redone"),
        };
        let arena = builder.create().expect("create arena");
        let bytes = (working_set * w / total_w).max(PAGE as u64) as usize;
        // Reserve 64x what is used: address space is cheap, frames are not.
        let region = Arc::new(arena.reserve(bytes * 64).expect("reserve"));
        steady.push(Steady { name, region, pages: bytes / PAGE, profile });
        arenas.push(arena);
    }
    // The leak: third-party code the host would sacrifice first.
    let leak = (!o.no_leak).then(|| {
        let arena = rt.arena("plugins").oom_score_adj(500).prefer().create().expect("create arena");
        let region = Arc::new(arena.reserve(1 << 40).expect("reserve"));
        (arena, region)
    });
    // Paced so that frames and swap run out about halfway through the random phase.
    let headroom = (budget + swap).saturating_sub(working_set);
    let leak_rate = o.leak_rate.map_or(headroom as f64 / (o.duration / 2.0).max(0.5), |r| r * MIB as f64);
    println!("arenas:");
    for s in &steady {
        println!("  {:<10} {:>6} MiB  {}", s.name, (s.pages * PAGE) as u64 / MIB, s.profile);
    }
    if leak.is_some() {
        println!(
            "  {:<10} {:>6}      oom_score_adj 500, marked prefer: third-party code, leaking {:.0} MiB/s from the end of the first touch",
            "plugins",
            "grows",
            leak_rate / MIB as f64
        );
        println!(
            "  frames + swap hold {} MiB: the leak exhausts them after about {} MiB, and then the OOM killer must choose",
            (budget + swap) / MIB,
            headroom / MIB
        );
    }

    // Threads are spread over arenas round-robin; threads of one arena split its pages by stride.
    let live = Arc::new(Live::default());
    let nthreads = o.threads as usize;
    let mut handles = Vec::new();
    let t0 = Instant::now();
    let duration = Duration::from_secs_f64(o.duration);
    for t in 0..nthreads {
        let a = t % n;
        let sharing: Vec<usize> = (0..nthreads).filter(|x| x % n == a).collect();
        let k = sharing.iter().position(|&x| x == t).unwrap_or(0);
        let pages: Vec<usize> = (0..steady[a].pages).filter(|p| p % sharing.len() == k).collect();
        let mut w = Worker {
            arena_ix: a,
            region: steady[a].region.clone(),
            version: vec![0; pages.len()],
            pages,
            mismatches: 0,
            unserved: 0,
            errors: 0,
            first_error: None,
        };
        let live = live.clone();
        let seed = o.seed;
        handles.push(std::thread::spawn(move || {
            work(&mut w, &live, Rng::new(seed, t as u64), nthreads, duration);
            w
        }));
    }
    let leak_thread = leak.as_ref().map(|(_, region)| {
        let region = region.clone();
        let live = live.clone();
        std::thread::spawn(move || leak_loop(&region, n, &live, nthreads, leak_rate))
    });

    // Live progress: a refreshing status line on a terminal, a line a second otherwise.
    let tty = std::io::stdout().is_terminal() && std::env::var_os("RUST_LOG").is_none();
    let tick = if tty { Duration::from_millis(500) } else { Duration::from_secs(1) };
    let mut reports: Vec<(f64, Event)> = Vec::new();
    let (mut last_faults, mut last_stall, mut last_t) = (0, Duration::ZERO, Instant::now());
    let mut random_start = None;
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(tick);
        let st = rt.stats();
        let now = Instant::now();
        let dt = now.duration_since(last_t).as_secs_f64();
        let faults = st.totals.faults();
        let stalled = (st.pressure.some.total.saturating_sub(last_stall)).as_secs_f64() / dt;
        let faults_per_s = faults.saturating_sub(last_faults) as f64 / dt;
        (last_faults, last_stall, last_t) = (faults, st.pressure.some.total, now);
        let filling = live.filled.load(Ordering::Relaxed) < nthreads;
        if !filling && random_start.is_none() {
            random_start = Some(now);
        }
        let done = random_start.map_or(0.0, |s| now.duration_since(s).as_secs_f64() / o.duration.max(0.01));
        let bar = if filling { "first touch".to_string() } else { bar(done.min(1.0), 11) };
        let leaked = live.leaked_pages.load(Ordering::Relaxed) * PAGE as u64 / MIB;
        let line = format!(
            "[{:5.1}s {bar}] resident {:>4}/{} MiB  swap {:>5}/{} MiB  faults/s {:>6.0}  stalled {:>3.0}%  leaked {:>4} MiB  kills {}",
            t0.elapsed().as_secs_f64(),
            st.frames_in_use * PAGE as u64 / MIB,
            budget / MIB,
            st.swap_used * PAGE as u64 / MIB,
            swap / MIB,
            faults_per_s,
            (stalled * 100.0).min(100.0),
            leaked,
            st.kills,
        );
        if tty {
            print!("\r{line}\x1b[K");
        } else {
            println!("{line}");
        }
        let _ = std::io::stdout().flush();
        // OOM events are told as they happen.
        for ev in rt.events().try_iter() {
            let at = t0.elapsed().as_secs_f64();
            match &ev {
                Event::Killed(r) => say(tty, &format!("[{at:5.1}s] OOM killer: {}", victims(r, "killed"))),
                Event::WouldKill(r) if !reports.iter().any(|(_, e)| matches!(e, Event::WouldKill(_))) => {
                    say(tty, &format!("[{at:5.1}s] OOM killer (dry run): {}", victims(r, "would kill")));
                }
                Event::OomUnresolved(_) => {
                    say(tty, &format!("[{at:5.1}s] OOM killer: nothing killable; the access fails instead"))
                }
                Event::SwapLow { free_slots, capacity } => {
                    say(tty, &format!("[{at:5.1}s] swap low: {free_slots} of {capacity} slots free"))
                }
                _ => {}
            }
            reports.push((at, ev));
        }
    }
    if tty {
        println!();
    }
    live.stop.store(true, Ordering::Relaxed);
    let workers: Vec<Worker> = handles.into_iter().map(|h| h.join().expect("worker thread")).collect();
    let leak_end = leak_thread.map(|h| h.join().expect("leak thread"));
    let elapsed = t0.elapsed();
    reports.extend(rt.events().try_iter().map(|e| (t0.elapsed().as_secs_f64(), e)));

    let st = rt.stats();
    println!("\n{st}\n");
    // OOM reports in full (the first of each kind); warnings summarised.
    let (mut pressure, mut peak, mut would) = (0, 0.0f64, 0);
    for (at, ev) in &reports {
        match ev {
            Event::Killed(r) | Event::OomUnresolved(r) => println!("at {at:.1} s:\n{r}\n"),
            Event::WouldKill(r) => {
                would += 1;
                if would == 1 {
                    println!("at {at:.1} s:\n{r}\n");
                }
            }
            Event::Pressure { stalled_share, .. } => {
                pressure += 1;
                peak = peak.max(*stalled_share);
            }
            Event::SwapLow { .. } => {}
            other => println!("event: {other:?}"),
        }
    }
    if would > 1 {
        println!("({would} dry-run reports in all; the first is shown)");
    }
    if pressure > 0 {
        println!(
            "{pressure} pressure warnings (threads stalled on faults up to {:.0}% of a second: expected when the working set is {:.1}x the budget)",
            peak.min(1.0) * 100.0,
            o.overcommit
        );
    }

    // Verification: every page of every surviving arena holds its owner's last version.
    let ops = live.ops.load(Ordering::Relaxed);
    println!(
        "{ops} operations in {:.1} s ({:.0}/s); {} faults, {} evictions ({} written, {} dropped clean), {} swap-ins",
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64(),
        st.totals.faults(),
        st.totals.evictions,
        st.totals.writebacks,
        st.totals.clean_drops,
        st.totals.swap_ins
    );
    let (mut bad, mut checked, mut unchecked) = (0u64, 0u64, 0u64);
    let mut lines = Vec::new();
    // The leak first: if it survived (a dry run), check its pages, then let it go, so that the
    // steady arenas have memory to be read back into.
    let had_leak = leak.is_some();
    if let (Some((arena, region)), Some(end)) = (leak, leak_end) {
        if arena.is_killed() {
            lines.push(format!(
                "plugins: killed by the OOM killer after leaking {} MiB (not checked: that was the point)",
                end.pages * PAGE as u64 / MIB
            ));
        } else {
            let (mut ok, mut wrong, mut skipped) = (0u64, 0u64, 0u64);
            for p in 0..end.pages as usize {
                let mut got = [0u8; REC];
                match region.read(p * PAGE, &mut got) {
                    Ok(()) if got == record(n, p, 1) => ok += 1,
                    Err(Error::OutOfMemory { .. }) => skipped += 1,
                    _ => wrong += 1,
                }
            }
            (bad, checked, unchecked) = (bad + wrong, checked + ok + wrong, unchecked + skipped);
            lines.push(format!("plugins: survived; {ok} of {} leaked pages hold what was written", ok + wrong));
        }
        drop(region);
    }
    for (a, s) in steady.iter().enumerate() {
        if arenas[a].is_killed() {
            lines.push(format!("{}: killed by the OOM killer, its memory is gone (not checked)", s.name));
            continue;
        }
        let (mut ok, mut wrong) = (0u64, 0u64);
        for w in workers.iter().filter(|w| w.arena_ix == a) {
            for (i, &p) in w.pages.iter().enumerate() {
                let mut got = [0u8; REC];
                match w.region.read(p * PAGE, &mut got) {
                    Ok(()) if got == record(a, p, w.version[i]) => ok += 1,
                    Ok(()) => {
                        wrong += 1;
                        if wrong <= 3 {
                            eprintln!("MISMATCH {} page {p}: expected version {}, found {got:?}", s.name, w.version[i]);
                        }
                    }
                    Err(Error::Killed { .. }) => {}
                    Err(Error::OutOfMemory { .. }) => unchecked += 1,
                    Err(e) => {
                        wrong += 1;
                        if wrong <= 3 {
                            eprintln!("{} page {p}: {e}", s.name);
                        }
                    }
                }
            }
        }
        let (mm, errs): (u64, u64) =
            workers.iter().filter(|w| w.arena_ix == a).fold((0, 0), |(m, e), w| (m + w.mismatches, e + w.errors));
        for w in workers.iter().filter(|w| w.arena_ix == a) {
            if let Some(e) = &w.first_error {
                eprintln!("{}: error during the run: {e}", s.name);
            }
        }
        bad += wrong + mm + errs;
        checked += ok + wrong;
        lines.push(format!(
            "{}: {ok} of {} pages hold their last version{}",
            s.name,
            ok + wrong,
            if mm + errs > 0 { format!("; {mm} wrong reads and {errs} errors during the run") } else { String::new() }
        ));
    }
    if unchecked > 0 {
        lines.push(format!(
            "{unchecked} pages could not be read back for want of memory (OutOfMemory) and were not checked"
        ));
    }
    let unserved: u64 = workers.iter().map(|w| w.unserved).sum();
    for l in &lines {
        println!("  {l}");
    }
    if unserved > 0 {
        println!(
            "  {unserved} accesses failed with OutOfMemory and changed nothing (no arena could be killed{})",
            if o.dry_run { ": dry run" } else { "" }
        );
    }
    explain(&o, &st, &reports, had_leak, live.leak_stalls.load(Ordering::Relaxed));
    if bad == 0 {
        println!(
            "verified {checked} pages: every page of every surviving arena holds its last written version. INTEGRITY OK"
        );
    } else {
        println!("INTEGRITY FAILURE: {bad} wrong pages, reads or errors (of {checked} pages checked)");
        std::process::exit(1);
    }
}

/// Prints a line above a refreshing status line.
fn say(tty: bool, s: &str) {
    if tty {
        println!("\r{s}\x1b[K");
    } else {
        println!("{s}");
    }
}

fn bar(done: f64, width: usize) -> String {
    let full = (done * width as f64).round() as usize;
    format!("{}{}", "#".repeat(full), ".".repeat(width - full.min(width)))
}

fn victims(r: &OomReport, verb: &str) -> String {
    let v: Vec<String> = r
        .victims
        .iter()
        .map(|v| {
            format!(
                "{verb} '{}' (frees {} MiB of frames, {} MiB of swap)",
                v.name,
                v.frames_freed * PAGE as u64 / MIB,
                v.slots_freed * PAGE as u64 / MIB
            )
        })
        .collect();
    format!("policy {} {}", r.policy, v.join(", "))
}

/// One steady worker: first touch of every owned page in order, then skewed random reads and
/// writes until the deadline.
fn work(w: &mut Worker, live: &Live, mut rng: Rng, nthreads: usize, duration: Duration) {
    let fail = |w: &mut Worker, e: Error| -> bool {
        match e {
            Error::Killed { .. } => return true,
            Error::OutOfMemory { .. } => w.unserved += 1,
            e => {
                w.errors += 1;
                w.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        false
    };
    for i in 0..w.pages.len() {
        let p = w.pages[i];
        match w.region.write(p * PAGE, &record(w.arena_ix, p, 1)) {
            Ok(()) => w.version[i] = 1,
            Err(e) => {
                if fail(w, e) {
                    live.filled.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        live.ops.fetch_add(1, Ordering::Relaxed);
    }
    live.filled.fetch_add(1, Ordering::Relaxed);
    // Everyone starts the random phase together.
    while live.filled.load(Ordering::Relaxed) < nthreads {
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    while start.elapsed() < duration && !live.stop.load(Ordering::Relaxed) {
        let i = rng.skewed(w.pages.len());
        let p = w.pages[i];
        if rng.next() % 3 == 0 {
            // A write that fails with OutOfMemory changed nothing: the version stays.
            match w.region.write(p * PAGE, &record(w.arena_ix, p, w.version[i] + 1)) {
                Ok(()) => w.version[i] += 1,
                Err(e) => {
                    if fail(w, e) {
                        return;
                    }
                }
            }
        } else {
            let mut got = [0u8; REC];
            match w.region.read(p * PAGE, &mut got) {
                Ok(()) if got != record(w.arena_ix, p, w.version[i]) => {
                    w.mismatches += 1;
                    if w.mismatches <= 3 {
                        eprintln!("MISMATCH during the run: page {p} expected version {}, found {got:?}", w.version[i]);
                    }
                }
                Ok(()) => {}
                Err(e) => {
                    if fail(w, e) {
                        return;
                    }
                }
            }
        }
        live.ops.fetch_add(1, Ordering::Relaxed);
    }
}

struct LeakEnd {
    pages: u64,
}

/// The leak: once the steady arenas are warm, touch new pages at `rate` bytes per second and
/// never give them back, until the arena is killed or the run ends.
fn leak_loop(region: &Region, arena: usize, live: &Live, nthreads: usize, rate: f64) -> LeakEnd {
    while live.filled.load(Ordering::Relaxed) < nthreads && !live.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    let mut pages = 0u64;
    let max = (region.len() / PAGE) as u64;
    while !live.stop.load(Ordering::Relaxed) && pages < max {
        let due = (start.elapsed().as_secs_f64() * rate / PAGE as f64) as u64;
        if pages >= due {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let p = pages as usize;
        match region.write(p * PAGE, &record(arena, p, 1)) {
            Ok(()) => {
                pages += 1;
                live.leaked_pages.store(pages, Ordering::Relaxed);
            }
            Err(Error::Killed { .. }) => break,
            Err(_) => {
                // Nothing could be freed for it (dry run): the allocation fails; try again later.
                live.leak_stalls.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    LeakEnd { pages }
}

/// A few sentences on what happened and why, for someone seeing this for the first time.
fn explain(o: &Opts, st: &pagewarden::Stats, reports: &[(f64, Event)], had_leak: bool, leak_stalls: u64) {
    println!("\nwhat happened:");
    println!(
        "  The steady arenas touched {:.1}x more memory than the budget allows, so the runtime kept only the \
         pages in use in frames and moved the rest to swap: {} pages evicted, {} read back in.",
        o.overcommit, st.totals.evictions, st.totals.swap_ins
    );
    let kills: Vec<&(f64, Event)> = reports.iter().filter(|(_, e)| matches!(e, Event::Killed(_))).collect();
    let would = reports.iter().find_map(|(at, e)| if let Event::WouldKill(r) = e { Some((at, r)) } else { None });
    match (had_leak, kills.first(), would) {
        (false, None, _) => println!("  With no leak, frames plus swap were enough: nothing had to be killed."),
        (true, None, None) => println!(
            "  The leak did not exhaust frames and swap before the end (raise --duration or --leak-rate, or lower \
             --swap): nothing had to be killed."
        ),
        (_, Some((at, Event::Killed(r))), _) => {
            let names: Vec<&str> = r.victims.iter().map(|v| v.name.as_str()).collect();
            println!(
                "  At {at:.1} s frames and swap were both exhausted and nothing more could be reclaimed, so the OOM \
                 killer ran with policy {}, and chose {}.",
                r.policy,
                names.join(" and ")
            );
            if names == ["plugins"] {
                println!(
                    "  The leaking arena was the cheapest to lose (oom_score_adj 500 and marked prefer) while freeing \
                     everything it had taken; every other arena kept running."
                );
            } else {
                println!(
                    "  {} judged that cheaper than killing the leak (see the candidate table above: 'unique' is what \
                     a kill frees, adj and impact what it costs).",
                    r.policy
                );
            }
            if kills.len() > 1 {
                println!("  It ran {} times in all.", kills.len());
            }
        }
        (_, _, Some((at, r))) => println!(
            "  At {at:.1} s memory ran out; in dry-run mode the OOM killer only reported that it would kill {} \
             (policy {}), so the leak's allocations failed instead ({leak_stalls} times).",
            r.victims.iter().map(|v| format!("'{}'", v.name)).collect::<Vec<_>>().join(" and "),
            r.policy
        ),
        _ => {}
    }
}

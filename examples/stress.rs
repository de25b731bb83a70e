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
    Arena, Balanced, Error, Event, EvictionPath, FaultMode, Greedy, Impact, KillFaulting, KillTrigger, LinuxBadness,
    OomReport, Region, Runtime,
};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `println!` for a paragraph of the summary: wrapped, indented.
macro_rules! para {
    ($($t:tt)*) => { para(&format!($($t)*)) };
}

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
/// SIZE values are written as in PAGEWARDEN_BUDGET: 256M, 1.5G, 268435456 (bytes; K, M, G, T
/// are binary). The budget, swap, fault mode, handler threads and dry run default from their
/// PAGEWARDEN_* variables; settings no flag sets (watermarks, readahead, swap encryption, ...)
/// can be given as PAGEWARDEN_* variables too, and so can the policy and the eviction path when
/// their flags are absent. A flag given on the command line wins over its variable.
#[derive(Parser, Debug)]
#[command(name = "stress", verbatim_doc_comment)]
struct Opts {
    /// Frame budget [default: 1/16 of available memory, clamped to 32M..=256M]
    #[arg(long, value_name = "SIZE", value_parser = size, env = "PAGEWARDEN_BUDGET")]
    budget: Option<u64>,
    /// Swap capacity; 0 means none [default: the working set plus half the budget]
    #[arg(long, value_name = "SIZE", value_parser = size, env = "PAGEWARDEN_SWAP")]
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
    #[arg(long, value_enum, default_value = "in-thread", env = "PAGEWARDEN_FAULT_MODE")]
    mode: Mode,
    /// Fault handler threads (with --mode handler-threads; default: twice the CPUs, 2 to 8)
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64), env = "PAGEWARDEN_HANDLER_THREADS")]
    handlers: Option<u16>,
    /// OOM dry run: report whom the killer would choose, kill nothing (accesses that find no
    /// memory then fail with OutOfMemory, and the leak stalls instead)
    #[arg(long, env = "PAGEWARDEN_OOM_DRY_RUN", value_parser = clap::builder::BoolishValueParser::new())]
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
    /// Test of the verifier: flip one byte of a surviving page through its raw pointer before
    /// the check (the run must then end in INTEGRITY FAILURE)
    #[arg(long, hide = true)]
    inject_corruption: bool,
    /// Test of the verifier: kill the last steady arena halfway through its check
    #[arg(long, hide = true)]
    inject_kill: bool,
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
    #[value(alias = "write-protect")]
    Wp,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Handler threads read fault events and wake the faulting thread
    HandlerThreads,
    /// The faulting thread resolves its own fault in a SIGBUS handler
    InThread,
}

/// A size as the library reads `PAGEWARDEN_BUDGET`: bytes, optionally fractional, with an
/// optional binary suffix (`K`, `M`, `G`, `T`, also written `KiB`, `KB`, ...). A bare number
/// smaller than a page is refused, as a size whose unit was forgotten.
fn size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("unknown unit '{unit}' (use K, M, G or T, e.g. 256M)")),
    };
    let not_a_size = || format!("'{s}' is not a size (e.g. 256M, 1.5G)");
    let bytes = if num.contains('.') {
        let v: f64 = num.parse().map_err(|_| not_a_size())?;
        let b = v * (1u64 << shift) as f64;
        if !(0.0..1.8e19).contains(&b) {
            return Err(format!("'{s}' is too large"));
        }
        b as u64
    } else {
        let v: u64 = num.parse().map_err(|_| not_a_size())?;
        v.checked_mul(1 << shift).ok_or_else(|| format!("'{s}' is too large"))?
    };
    if unit.is_empty() && bytes > 0 && bytes < PAGE as u64 {
        return Err(format!("'{s}' is {s} bytes, less than a page: did you mean {s}M?"));
    }
    Ok(bytes)
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
    // The library's own warnings about its configuration (a misspelt PAGEWARDEN_* name, a swap
    // file system refusing O_DIRECT) show without RUST_LOG; RUST_LOG replaces this filter.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("pagewarden::config=warn,pagewarden::runtime=warn"),
    )
    .init();
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
        .swap_capacity(usize::try_from(swap).unwrap_or(usize::MAX));
    if let Some(h) = o.handlers {
        b = b.handler_threads(h.into());
    }
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
        "pagewarden stress: budget {} MiB, swap {} MiB, working set {} MiB ({:.1}x the budget), {} threads, {:.0} s\n\
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
    if leak.is_some() && leak_rate <= 0.0 {
        println!(
            "  {:<10} {:>6}      oom_score_adj 500, prefer: plugin code (no room is left to leak into)",
            "plugins", ""
        );
    } else if leak.is_some() {
        println!(
            "  {:<10} {:>6}      oom_score_adj 500, prefer: plugin code, leaks {:.0} MiB/s after the first touch",
            "plugins",
            "grows",
            leak_rate / MIB as f64
        );
        para!(
            "frames + swap hold {} MiB: the leak exhausts them after about {} MiB, and then the OOM killer must choose",
            (budget + swap) / MIB,
            headroom / MIB
        );
    }
    if working_set > budget + swap {
        para!(
            "note: the steady working set ({} MiB) exceeds frames + swap ({} MiB): arenas will be killed even \
             without the leak",
            working_set / MIB,
            (budget + swap) / MIB
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
    let mut reports: Vec<(f64, Phase, Event)> = Vec::new();
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
        let bar = if filling { "touching".to_string() } else { bar(done.min(1.0), 8) };
        let leaked = live.leaked_pages.load(Ordering::Relaxed) * PAGE as u64 / MIB;
        let line = format!(
            "[{:5.1}s {bar}] frames {:>3}/{}M  swap {:>3}/{}M  {:>5.0} faults/s  stalled {:>3.0}%  leaked {}M  kills {}",
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
        tell(&rt, tty, t0, Phase::Run, &mut reports);
    }
    if tty {
        println!();
    }
    live.stop.store(true, Ordering::Relaxed);
    let workers: Vec<Worker> = handles.into_iter().map(|h| h.join().expect("worker thread")).collect();
    let leak_end = leak_thread.map(|h| h.join().expect("leak thread"));
    let elapsed = t0.elapsed();
    tell(&rt, tty, t0, Phase::Run, &mut reports);
    let st_run = rt.stats();

    // Verification: every page of every arena is read back and sorted into ok (its owner's last
    // version), lost (its arena was killed, before or during the check: that memory is gone by
    // design) and wrong (other bytes, or an error such as Corrupted: a broken promise).
    let mut outcomes = Vec::new();
    let leak_pages = leak_end.as_ref().map_or(0, |e| e.pages);
    let total = workers.iter().map(|w| w.pages.len() as u64).sum::<u64>() + leak_pages;
    println!("verifying {total} pages: each must hold what its owner last wrote");
    let mut progress = Progress { tty, t0, tick, last: Instant::now(), done: 0, total };
    // The leak first: if it survived, check its pages, then let it go, so that the steady arenas
    // have memory to be read back into.
    let had_leak = leak.is_some();
    if let (Some((arena, region)), Some(end)) = (leak, leak_end) {
        let pages = (0..end.pages as usize).map(|p| (p, record(n, p, 1)));
        let out = verify("plugins", &arena, &region, pages, None, &mut progress, &rt, &mut reports);
        outcomes.push(out);
        drop(region);
        drop(arena);
    }
    if o.inject_corruption {
        inject_corruption(&steady, &arenas, &workers);
    }
    for (a, s) in steady.iter().enumerate() {
        let pages = workers
            .iter()
            .filter(|w| w.arena_ix == a)
            .flat_map(|w| w.pages.iter().zip(&w.version).map(move |(&p, &v)| (p, record(a, p, v))));
        let kill_at = (o.inject_kill && a == n - 1).then_some(s.pages / 2);
        let mut out = verify(&s.name, &arenas[a], &s.region, pages, kill_at, &mut progress, &rt, &mut reports);
        let mine = || workers.iter().filter(|w| w.arena_ix == a);
        out.run_mismatches = mine().map(|w| w.mismatches).sum();
        out.run_errors = mine().map(|w| w.errors).sum();
        for w in mine() {
            if let Some(e) = &w.first_error {
                eprintln!("{}: error during the run: {e}", s.name);
            }
        }
        outcomes.push(out);
    }
    progress.finish();
    tell(&rt, tty, t0, Phase::Verify, &mut reports);

    // Everything below is told from the final state: kills during the check included.
    let st = rt.stats();
    println!("\n{st}\n");
    // OOM reports in full (the first of each kind); warnings summarised.
    let (mut pressure, mut peak, mut would) = (0, 0.0f64, 0);
    for (at, phase, ev) in &reports {
        let when = match phase {
            Phase::Run => format!("at {at:.1} s"),
            Phase::Verify => format!("at {at:.1} s, during verification"),
        };
        match ev {
            Event::Killed(r) | Event::OomUnresolved(r) => println!("{when}:\n{r}\n"),
            Event::WouldKill(r) => {
                would += 1;
                if would == 1 {
                    println!("{when}:\n{r}\n");
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
        wrap(
            "",
            &format!(
                "{pressure} pressure warnings (threads stalled on faults up to {:.0}% of a second: expected when the \
             working set is {:.1}x the budget)",
                peak.min(1.0) * 100.0,
                o.overcommit
            ),
        );
    }
    let ops = live.ops.load(Ordering::Relaxed);
    wrap(
        "",
        &format!(
            "{ops} operations in {:.1} s ({:.0}/s); {} faults, {} evictions ({} written, {} dropped clean), {} swap-ins",
            elapsed.as_secs_f64(),
            ops as f64 / elapsed.as_secs_f64(),
            st_run.totals.faults(),
            st_run.totals.evictions,
            st_run.totals.writebacks,
            st_run.totals.clean_drops,
            st_run.totals.swap_ins
        ),
    );
    for out in &outcomes {
        wrap("  ", &out.line());
    }
    let unserved: u64 = workers.iter().map(|w| w.unserved).sum();
    if unserved > 0 {
        para!(
            "{unserved} accesses failed with OutOfMemory and changed nothing (no arena could be killed{})",
            if o.dry_run { ": dry run" } else { "" }
        );
    }
    let story = Story {
        o: &o,
        run: &st_run,
        reports: &reports,
        outcomes: &outcomes,
        had_leak,
        leak_stalls: live.leak_stalls.load(Ordering::Relaxed),
        working_set,
        budget,
        swap,
    };
    story.tell();
    let sum = |f: fn(&Outcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    let (ok, lost, unchecked) = (sum(|o| o.ok), sum(|o| o.lost), sum(|o| o.unchecked));
    let wrong = sum(|o| o.wrong + o.run_mismatches + o.run_errors);
    let checked = ok + sum(|o| o.wrong);
    let mut aside = Vec::new();
    if lost > 0 {
        aside.push(format!("{lost} lost with killed arenas"));
    }
    if unchecked > 0 {
        aside.push(format!("{unchecked} unreadable for want of memory"));
    }
    let aside = if aside.is_empty() { String::new() } else { format!(" ({})", aside.join(", ")) };
    if wrong > 0 {
        wrap(
            "",
            &format!(
                "INTEGRITY FAILURE: {wrong} wrong {} (pages holding other bytes, or reads and errors during the \
                 run), of {checked} pages checked{aside}",
                if wrong == 1 { "page" } else { "pages" }
            ),
        );
        std::process::exit(1);
    } else if checked == 0 {
        wrap(
            "",
            &format!(
                "NOTHING VERIFIED: no page survived to be checked{aside}; no page was found wrong, but none was \
                 read back"
            ),
        );
    } else {
        wrap(
            "",
            &format!(
                "INTEGRITY OK: verified {checked} pages, every page of every surviving arena holds its last written \
                 version{aside}"
            ),
        );
    }
}

/// When an event came.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Run,
    Verify,
}

/// Tells the runtime's OOM and swap events as they happen and keeps them for the summary.
fn tell(rt: &Runtime, tty: bool, t0: Instant, phase: Phase, reports: &mut Vec<(f64, Phase, Event)>) {
    for ev in rt.events().try_iter() {
        let at = t0.elapsed().as_secs_f64();
        let during = if phase == Phase::Verify { " (verifying)" } else { "" };
        match &ev {
            Event::Killed(r) => say(tty, &format!("[{at:5.1}s] OOM killer{during}: {}", victims(r, "killed"))),
            Event::WouldKill(r) if !reports.iter().any(|(_, _, e)| matches!(e, Event::WouldKill(_))) => {
                say(tty, &format!("[{at:5.1}s] OOM killer (dry run){during}: {}", victims(r, "would kill")));
            }
            Event::OomUnresolved(_) => {
                say(tty, &format!("[{at:5.1}s] OOM killer{during}: nothing killable; the access fails instead"))
            }
            Event::SwapLow { free_slots, capacity } => say(
                tty,
                &format!(
                    "[{at:5.1}s] swap low: {} of {} MiB free",
                    free_slots * PAGE as u64 / MIB,
                    capacity * PAGE as u64 / MIB
                ),
            ),
            _ => {}
        }
        reports.push((at, phase, ev));
    }
}

/// The verifier's progress line: refreshed on a terminal, a line a second otherwise.
struct Progress {
    tty: bool,
    t0: Instant,
    tick: Duration,
    last: Instant,
    done: u64,
    total: u64,
}

impl Progress {
    fn step(&mut self, rt: &Runtime, reports: &mut Vec<(f64, Phase, Event)>) {
        self.done += 1;
        if self.done % 256 == 0 && self.last.elapsed() >= self.tick {
            self.last = Instant::now();
            self.show();
            tell(rt, self.tty, self.t0, Phase::Verify, reports);
        }
    }

    fn show(&self) {
        let share = self.done as f64 / self.total.max(1) as f64;
        let line = format!(
            "[{:5.1}s {}] verified {} of {} pages",
            self.t0.elapsed().as_secs_f64(),
            bar(share, 8),
            self.done,
            self.total
        );
        if self.tty {
            print!("\r{line}\x1b[K");
            let _ = std::io::stdout().flush();
        } else {
            println!("{line}");
        }
    }

    fn finish(&self) {
        self.show();
        if self.tty {
            println!();
        }
    }
}

/// What the check of one arena found.
#[derive(Default)]
struct Outcome {
    name: String,
    /// Pages holding what their owner last wrote.
    ok: u64,
    /// Pages of a killed arena: gone by design, not checked.
    lost: u64,
    /// Pages holding other bytes, or whose read failed with an error other than `Killed` and
    /// `OutOfMemory` (a `Corrupted` page, say): broken promises.
    wrong: u64,
    /// Pages that could not be read back for want of memory (`OutOfMemory`).
    unchecked: u64,
    /// The arena was killed before the check began.
    killed_before: bool,
    /// The arena was killed while it was checked.
    killed_during: bool,
    /// Wrong reads and errors its workers met during the run.
    run_mismatches: u64,
    run_errors: u64,
}

impl Outcome {
    fn line(&self) -> String {
        let pages = self.ok + self.lost + self.wrong + self.unchecked;
        let mut l = if self.killed_before && self.name == "plugins" {
            format!(
                "plugins: killed by the OOM killer after leaking {} MiB (not checked: that was the point)",
                pages * PAGE as u64 / MIB
            )
        } else if self.killed_before {
            format!("{}: killed by the OOM killer during the run; its {pages} pages are gone (not checked)", self.name)
        } else if self.killed_during {
            format!(
                "{}: killed during its check; {} pages were right before, {} went with it",
                self.name, self.ok, self.lost
            )
        } else {
            format!("{}: {} of {pages} pages hold their last version", self.name, self.ok)
        };
        if self.wrong > 0 {
            l.push_str(&format!("; {} WRONG", self.wrong));
        }
        if self.unchecked > 0 {
            l.push_str(&format!("; {} not read back for want of memory", self.unchecked));
        }
        if self.run_mismatches + self.run_errors > 0 {
            l.push_str(&format!("; {} wrong reads and {} errors during the run", self.run_mismatches, self.run_errors));
        }
        l
    }
}

/// Reads every page back and sorts it into ok, lost (the arena was killed), wrong or unchecked.
/// `kill_at`: kill the arena after that many pages (a test of the verifier).
#[allow(clippy::too_many_arguments)]
fn verify(
    name: &str,
    arena: &Arena,
    region: &Region,
    pages: impl Iterator<Item = (usize, [u8; REC])>,
    kill_at: Option<usize>,
    progress: &mut Progress,
    rt: &Runtime,
    reports: &mut Vec<(f64, Phase, Event)>,
) -> Outcome {
    let mut out = Outcome { name: name.to_string(), killed_before: arena.is_killed(), ..Outcome::default() };
    let complain = |out: &mut Outcome, what: String| {
        out.wrong += 1;
        if out.wrong <= 3 {
            eprintln!("WRONG {name} {what}");
        }
    };
    for (i, (p, want)) in pages.enumerate() {
        progress.step(rt, reports);
        if kill_at == Some(i) {
            arena.kill();
        }
        if arena.is_killed() {
            out.lost += 1;
            continue;
        }
        let mut got = [0u8; REC];
        match region.read(p * PAGE, &mut got) {
            Ok(()) if got == want => out.ok += 1,
            Ok(()) => complain(&mut out, format!("page {p}: expected {want:?}, found {got:?}")),
            Err(Error::Killed { .. }) => out.lost += 1,
            Err(Error::OutOfMemory { .. }) => out.unchecked += 1,
            Err(e) => complain(&mut out, format!("page {p}: {e}")),
        }
    }
    out.killed_during = !out.killed_before && arena.is_killed();
    out
}

/// Flips one byte of a page a worker wrote, through the region's raw pointer, behind the
/// verifier's back: the check must find it.
fn inject_corruption(steady: &[Steady], arenas: &[Arena], workers: &[Worker]) {
    let Some((w, &p)) =
        workers.iter().filter(|w| !arenas[w.arena_ix].is_killed()).find_map(|w| w.pages.first().map(|p| (w, p)))
    else {
        eprintln!("stress: --inject-corruption: no surviving page to corrupt");
        return;
    };
    let off = p * PAGE + 12; // the version's low byte
    let mut b = [0u8; 1];
    if let Err(e) = w.region.read(off, &mut b) {
        eprintln!("stress: --inject-corruption: {e}");
        return;
    }
    // SAFETY: `off` lies inside the region, which `w` keeps alive; every worker has been joined,
    // so nothing else accesses the region, and the page is resident or faults in like any other.
    unsafe { w.region.as_ptr().add(off).write(b[0] ^ 0x5a) };
    eprintln!(
        "stress: injected corruption: flipped a byte of {} page {p} through its raw pointer",
        steady[w.arena_ix].name
    );
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
                "{verb} '{}' ({} MiB of frames, {} MiB of swap)",
                v.name,
                v.frames_freed * PAGE as u64 / MIB,
                v.slots_freed * PAGE as u64 / MIB
            )
        })
        .collect();
    format!("{} {}", r.policy, v.join(", "))
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

/// What the summary is told from: the run's figures and the final state.
struct Story<'a> {
    o: &'a Opts,
    /// Stats at the end of the run, before the check.
    run: &'a pagewarden::Stats,
    /// Every event of the run and the check.
    reports: &'a [(f64, Phase, Event)],
    outcomes: &'a [Outcome],
    had_leak: bool,
    leak_stalls: u64,
    working_set: u64,
    budget: u64,
    swap: u64,
}

impl Story<'_> {
    /// A few sentences on what happened and why, for someone seeing this for the first time.
    fn tell(&self) {
        let (o, t) = (self.o, &self.run.totals);
        println!("\nwhat happened:");
        if self.swap == 0 {
            para!(
                "  There was no swap: a page once written cannot leave memory, so the budget held at most {} MiB \
                 of the steady arenas' {} MiB working set ({} pages were dropped clean, none written out).",
                self.budget / MIB,
                self.working_set / MIB,
                t.clean_drops
            );
        } else if t.evictions > 0 {
            para!(
                "  The steady arenas touched {:.1}x more memory than the budget allows, so the runtime kept the \
                 pages in use in frames and moved the rest out: {} pages evicted ({} written to swap, {} dropped \
                 clean), {} read back in.",
                o.overcommit,
                t.evictions,
                t.writebacks,
                t.clean_drops,
                t.swap_ins
            );
        } else {
            para!("  The steady arenas' pages fitted in the budget: nothing was evicted.");
        }
        if self.working_set > self.budget + self.swap {
            para!(
                "  Their working set ({} MiB) is larger than frames plus swap ({} MiB): some of it could not be \
                 kept anywhere, so arenas had to be killed, leak or no leak.",
                self.working_set / MIB,
                (self.budget + self.swap) / MIB
            );
        }
        let kills: Vec<_> = self
            .reports
            .iter()
            .filter_map(|(at, ph, e)| if let Event::Killed(r) = e { Some((*at, *ph, r)) } else { None })
            .collect();
        for (i, (at, phase, r)) in kills.iter().enumerate() {
            if i > 0
                && kills[i - 1].1 == *phase
                && std::mem::discriminant(&kills[i - 1].2.trigger) == std::mem::discriminant(&r.trigger)
            {
                let names = r.victims.iter().map(|v| format!("'{}'", v.name)).collect::<Vec<_>>().join(" and ");
                para!("At {at:.1} s it ran again, for the same reason, and chose {names}.");
                continue;
            }
            let names = r.victims.iter().map(|v| format!("'{}'", v.name)).collect::<Vec<_>>().join(" and ");
            let when = match phase {
                Phase::Run => format!("At {at:.1} s"),
                Phase::Verify => format!("At {at:.1} s, during verification (reading pages back needs memory too),"),
            };
            match &r.trigger {
                KillTrigger::Manual | KillTrigger::Requested => para!("  {when} {names} was killed on request."),
                KillTrigger::Pressure { stalled_share, window } => para!(
                    "  {when} threads had been stalled on faults {:.0}% of the last {window:?}, so the OOM killer \
                     ran with policy {} and chose {names}.",
                    stalled_share * 100.0,
                    r.policy
                ),
                _ => para!(
                    "  {when} frames and swap were both exhausted and nothing more could be reclaimed, so the OOM \
                     killer ran with policy {} and chose {names}.",
                    r.policy
                ),
            }
        }
        let killed: Vec<&Outcome> = self.outcomes.iter().filter(|x| x.killed_before || x.killed_during).collect();
        let steady_killed: Vec<&str> = killed.iter().filter(|x| x.name != "plugins").map(|x| x.name.as_str()).collect();
        let survivors = self.outcomes.len() - killed.len();
        if !killed.is_empty() && steady_killed.is_empty() {
            para!(
                "  The leaking arena was the cheapest to lose (oom_score_adj 500 and marked prefer) while freeing \
                 everything it had taken; every other arena kept running."
            );
        } else if !steady_killed.is_empty() {
            para!(
                "  Steady arenas killed: {} (see the candidate tables above: 'unique' is what a kill frees, adj \
                 and impact what it costs){}.",
                steady_killed.join(", "),
                if survivors == 0 { "; no arena survived, so no page was left to verify" } else { "" }
            );
            if steady_killed.contains(&"database") {
                para!(
                    "  Even the protected database (oom_score_adj -500) was killed: when nothing cheaper is left \
                     to free, an adjusted arena is still killable; only -1000 or Impact::Critical exempt one."
                );
            }
        }
        let would =
            self.reports.iter().find_map(|(at, _, e)| if let Event::WouldKill(r) = e { Some((at, r)) } else { None });
        match (kills.is_empty(), would) {
            (false, _) => {}
            (true, Some((at, r))) => para!(
                "  At {at:.1} s memory ran out; in dry-run mode the OOM killer only reported that it would kill {} \
                 (policy {}), so allocations failed instead (the leak's {} times).",
                r.victims.iter().map(|v| format!("'{}'", v.name)).collect::<Vec<_>>().join(" and "),
                r.policy,
                self.leak_stalls
            ),
            (true, None) if self.had_leak => para!(
                "  The leak did not exhaust frames and swap before the end (raise --duration or --leak-rate, or \
                 lower --swap): nothing had to be killed."
            ),
            (true, None) => para!("  With no leak, frames plus swap were enough: nothing had to be killed."),
        }
        if self.reports.iter().any(|(_, _, e)| matches!(e, Event::OomUnresolved(_))) {
            para!("  At times nothing could be killed: those accesses failed with OutOfMemory instead of hanging.");
        }
    }
}

/// Prints an indented paragraph wrapped at 100 columns.
fn para(text: &str) {
    wrap("  ", text);
}

/// Prints `text` wrapped at 100 columns, each line after `indent`.
fn wrap(indent: &str, text: &str) {
    let mut line = String::new();
    for word in text.trim_start().split(' ') {
        if !line.is_empty() && indent.len() + line.chars().count() + 1 + word.chars().count() > 100 {
            println!("{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        println!("{indent}{line}");
    }
}

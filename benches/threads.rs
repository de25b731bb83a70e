//! Paging with several application threads on one region, pagewarden against the kernel's own
//! swap at equal memory.
//!
//! T threads share one region of N× the frame budget (populated once, every page written) and
//! start together at a barrier; a workload's figure is the wall time of its slowest thread.
//! Workloads, one `u64` per page touched:
//!
//! * `seq`: thread i reads its own contiguous slice `[i·pages/T, (i+1)·pages/T)` once, in order;
//! * `read`: uniform random page reads over the whole region, each thread its own generator;
//! * `zipf`: Zipf(0.99) reads over the whole region (the same hot pages for every thread);
//! * `write`: uniform random page writes.
//!
//! pagewarden runs in each requested fault mode, with a fresh runtime per (N, mode). The `kernel`
//! backend runs the same traces with the same thread counts on plain anonymous memory, in a child
//! process placed in a memory cgroup (v1 `memory.limit_in_bytes`, or v2 `memory.max`) limited to
//! the same budget. It needs root and active swap; without them (or with `--no-kernel`) the bench
//! says why and runs pagewarden alone.
//!
//! Next to them, the disk's own limit at each concurrency: T threads each doing random 4 KiB
//! `O_DIRECT` reads of a scratch file as large as the data set, in the directory pagewarden's swap
//! goes to by default (`PAGEWARDEN_SWAP_DIR` if set, else `$TMPDIR`, or `/var/tmp` when that is
//! tmpfs).
//!
//! `cargo bench --bench threads -- [--budget-mib M] [--ratios 2,4] [--threads 1,2,4,8]
//!  [--accesses N] [--modes handler,in-thread] [--workloads seq,read,zipf,write] [--csv PATH]
//!  [--no-kernel]`
//!
//! `--accesses` is per thread, for the random workloads; `seq` always reads the whole region once.
//! For each T the workloads run in the order given, on one data set, each starting where the one
//! before left the cache; the thread counts run in the order given too.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

mod common;
use common::{Rng, kernel_setup, majflt};
use pagewarden::{FaultMode, Runtime};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

/// Accesses slower than this count as misses in the latency figures (a hit costs well under a
/// microsecond; a fault from swap tens of them).
const SLOW_NS: u64 = 20_000;

/// Random 4 KiB reads per thread for the disk's limit, at most.
const DISK_READS: usize = 2000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Seq,
    Read,
    Zipf,
    Write,
}

const KINDS: [Kind; 4] = [Kind::Seq, Kind::Read, Kind::Zipf, Kind::Write];

/// The workload's name on the command line, in the table and in the CSV.
fn code(k: Kind) -> &'static str {
    match k {
        Kind::Seq => "seq",
        Kind::Read => "read",
        Kind::Zipf => "zipf",
        Kind::Write => "write",
    }
}

fn parse_kind(w: &str) -> Kind {
    KINDS
        .into_iter()
        .find(|&k| code(k) == w)
        .unwrap_or_else(|| panic!("unknown workload {w}: seq, read, zipf or write"))
}

fn mode_code(m: FaultMode) -> &'static str {
    match m {
        FaultMode::HandlerThreads => "handler",
        FaultMode::InThread => "in-thread",
    }
}

fn parse_mode(m: &str) -> FaultMode {
    match m {
        "handler" => FaultMode::HandlerThreads,
        "in-thread" => FaultMode::InThread,
        _ => panic!("unknown mode {m}: handler or in-thread"),
    }
}

/// Thread `i`'s generator for workload `k`: its own stream, the same in both processes.
fn rng(k: Kind, i: usize) -> Rng {
    Rng(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1) ^ ((k as u64 + 1) << 56) | 1)
}

/// Zipf(0.99) over the pages, with ranks scattered over the region so that the hot pages are not
/// neighbours. One permutation for all threads: they share the hot set.
struct Zipf {
    cdf: Vec<f64>,
    perm: Vec<u32>,
}

impl Zipf {
    fn new(pages: usize) -> Zipf {
        let mut cdf = Vec::with_capacity(pages);
        let mut acc = 0.0;
        for i in 1..=pages {
            acc += 1.0 / (i as f64).powf(0.99);
            cdf.push(acc);
        }
        let mut perm: Vec<u32> = (0..pages as u32).collect();
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        for i in (1..pages).rev() {
            perm.swap(i, (r.next() % (i as u64 + 1)) as usize);
        }
        Zipf { cdf, perm }
    }

    fn sample(&self, rng: &mut Rng) -> u32 {
        // One draw per sample (drawn outside the search's predicate, which runs several times).
        let u = rng.unit() * self.cdf[self.cdf.len() - 1];
        self.perm[self.cdf.partition_point(|&c| c < u).min(self.perm.len() - 1)]
    }
}

/// One thread's accesses: (page, write).
type Trace = Vec<(u32, bool)>;

/// The traces of one workload, one per thread.
fn traces(k: Kind, pages: usize, threads: usize, accesses: usize) -> Vec<Trace> {
    let random = |write: bool| -> Vec<Trace> {
        (0..threads)
            .map(|i| {
                let mut r = rng(k, i);
                (0..accesses).map(|_| ((r.next() % pages as u64) as u32, write)).collect()
            })
            .collect()
    };
    match k {
        Kind::Seq => (0..threads)
            .map(|i| (i * pages / threads..(i + 1) * pages / threads).map(|p| (p as u32, false)).collect())
            .collect(),
        Kind::Read => random(false),
        Kind::Write => random(true),
        Kind::Zipf => {
            let z = Zipf::new(pages);
            (0..threads)
                .map(|i| {
                    let mut r = rng(k, i);
                    (0..accesses).map(|_| (z.sample(&mut r), false)).collect()
                })
                .collect()
        }
    }
}

/// The base of the mapping the workload threads share.
#[derive(Clone, Copy)]
struct Base(*mut u8);

// SAFETY: a `Base` is only dereferenced by `touch`, whose every access is atomic, within a mapping
// that outlives the scoped threads it is sent to; sharing the address between threads is sound.
unsafe impl Send for Base {}
// SAFETY: as above; `Base` has no interior state, only the address.
unsafe impl Sync for Base {}

/// One access to the first word of page `p`. Relaxed atomic loads and stores compile to the plain
/// `mov` a volatile access does, and keep concurrent threads on one page free of data races.
#[inline(always)]
fn touch(base: Base, p: u32, write: bool) {
    // SAFETY: the caller's mapping covers every page of the trace and outlives the run.
    let addr = unsafe { base.0.add(p as usize * PAGE) }.cast::<u64>();
    // SAFETY: `addr` is a page start, so 8-byte aligned, inside a live read-write mapping; every
    // access this bench makes to the mapping is atomic, so there is no racing non-atomic access.
    let word = unsafe { AtomicU64::from_ptr(addr) };
    if write {
        word.store(u64::from(p) + 1, Ordering::Relaxed);
    } else {
        std::hint::black_box(word.load(Ordering::Relaxed));
    }
}

/// Runs a trace; with `timed`, also returns each slow access's time (ns), for miss latencies.
fn run_trace(base: Base, trace: &[(u32, bool)], timed: bool) -> (Duration, Vec<u64>) {
    let mut slow = Vec::new();
    let t0 = Instant::now();
    for &(p, w) in trace {
        let t = timed.then(Instant::now);
        touch(base, p, w);
        if let Some(t) = t {
            let ns = t.elapsed().as_nanos() as u64;
            if ns > SLOW_NS {
                slow.push(ns);
            }
        }
    }
    (t0.elapsed(), slow)
}

/// Writes every page once, in order.
fn populate(base: Base, pages: usize) {
    let fill: Trace = (0..pages).map(|p| (p as u32, true)).collect();
    run_trace(base, &fill, false);
}

/// Runs one trace per thread, all started together: the slowest thread's time and the slow
/// accesses of all threads.
fn run_threads(base: Base, traces: &[Trace]) -> (Duration, Vec<u64>) {
    let start = Barrier::new(traces.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = traces
            .iter()
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    run_trace(base, t, true)
                })
            })
            .collect();
        let mut wall = Duration::ZERO;
        let mut slow = Vec::new();
        for h in handles {
            let (d, s) = h.join().expect("a workload thread panicked");
            wall = wall.max(d);
            slow.extend(s);
        }
        (wall, slow)
    })
}

/// p10 / p50 / p90 of `ns` values, in µs; `None` when there are none.
fn quantiles(ns: &mut [u64]) -> Option<[f64; 3]> {
    if ns.is_empty() {
        return None;
    }
    ns.sort_unstable();
    let q = |f: f64| ns[((ns.len() - 1) as f64 * f) as usize] as f64 / 1000.0;
    Some([q(0.1), q(0.5), q(0.9)])
}

/// One measured workload.
struct Meas {
    /// Accesses over all threads.
    accesses: usize,
    /// Wall time of the slowest thread.
    wall: Duration,
    /// Pages read from swap (kernel: major faults).
    swap_ins: u64,
    /// Accesses slower than `SLOW_NS`.
    slow: usize,
    /// Their p10/p50/p90, µs.
    q: Option<[f64; 3]>,
}

impl Meas {
    fn new(accesses: usize, wall: Duration, swap_ins: u64, slow: &mut [u64]) -> Meas {
        Meas { accesses, wall, swap_ins, slow: slow.len(), q: quantiles(slow) }
    }

    fn pages_per_s(&self) -> f64 {
        self.accesses as f64 / self.wall.as_secs_f64()
    }
}

/// Results of one backend, keyed by (threads, workload).
type Results = Vec<((usize, Kind), Meas)>;

fn find(r: &Results, t: usize, k: Kind) -> Option<&Meas> {
    r.iter().find(|(key, _)| *key == (t, k)).map(|(_, m)| m)
}

struct Opts {
    budget_mib: usize,
    ratios: Vec<f64>,
    threads: Vec<usize>,
    accesses: usize,
    modes: Vec<FaultMode>,
    only: Vec<Kind>,
    csv: String,
    kernel: bool,
}

fn list<T>(it: &mut impl Iterator<Item = String>, flag: &str, parse: impl Fn(&str) -> T) -> Vec<T> {
    let v: Vec<T> = it.next().unwrap_or_else(|| panic!("{flag} LIST")).split(',').map(parse).collect();
    assert!(!v.is_empty(), "{flag}: an empty list");
    v
}

fn opts() -> Opts {
    let mut o = Opts {
        budget_mib: 64,
        ratios: vec![2.0, 4.0],
        threads: vec![1, 2, 4, 8],
        accesses: 20_000,
        modes: vec![FaultMode::HandlerThreads, FaultMode::InThread],
        only: KINDS.to_vec(),
        csv: "target/threads.csv".into(),
        kernel: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--budget-mib" => o.budget_mib = it.next().and_then(|v| v.parse().ok()).expect("--budget-mib M"),
            "--ratios" => o.ratios = list(&mut it, "--ratios", |x| x.parse().expect("a number")),
            "--threads" => {
                o.threads = list(&mut it, "--threads", |x| x.parse().ok().filter(|&t| t > 0).expect("a thread count"))
            }
            "--accesses" => o.accesses = it.next().and_then(|v| v.parse().ok()).expect("--accesses N"),
            "--modes" => o.modes = list(&mut it, "--modes", parse_mode),
            "--workloads" => o.only = list(&mut it, "--workloads", parse_kind),
            "--csv" => o.csv = it.next().expect("--csv PATH"),
            "--no-kernel" => o.kernel = false,
            "--bench" => {}
            "--kernel-child" => {
                if let Err(e) = kernel_child(&mut it) {
                    eprintln!("kernel child: {e}");
                    std::process::exit(1);
                }
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// Pages of the data set at ratio `ratio`.
fn data_pages(budget_mib: usize, ratio: f64) -> usize {
    (((budget_mib << 20) / PAGE) as f64 * ratio) as usize
}

/// Every (threads, workload) in one runtime in fault mode `mode`.
fn pagewarden_run(o: &Opts, ratio: f64, mode: FaultMode) -> std::result::Result<Results, String> {
    let budget = (o.budget_mib << 20) / PAGE;
    let pages = data_pages(o.budget_mib, ratio);
    let rt = Runtime::builder()
        .frame_budget(budget * PAGE)
        .swap_capacity((pages + budget) * PAGE)
        .fault_mode(mode)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let a = rt.arena("data").create().map_err(|e| format!("arena: {e}"))?;
    let r = a.reserve(pages * PAGE).map_err(|e| format!("region: {e}"))?;
    let base = Base(r.as_ptr());
    populate(base, pages);
    let mut out = Vec::new();
    for &t in &o.threads {
        for &k in &o.only {
            let tr = traces(k, pages, t, o.accesses);
            let before = rt.stats().totals.swap_ins;
            let (wall, mut slow) = run_threads(base, &tr);
            let swap_ins = rt.stats().totals.swap_ins - before;
            if std::env::var_os("THREADS_VERBOSE").is_some() {
                eprintln!("{} T={t} {k:?} N={ratio}: {}", mode_code(mode), rt.stats());
            }
            out.push(((t, k), Meas::new(tr.iter().map(Vec::len).sum(), wall, swap_ins, &mut slow)));
        }
    }
    Ok(out)
}

/// The directory pagewarden puts its swap file in by default (as `RuntimeBuilder::build` picks it).
fn swap_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PAGEWARDEN_SWAP_DIR").filter(|d| !d.is_empty()) {
        return d.into();
    }
    let dir = std::env::temp_dir();
    if on_ram_fs(&dir) && Path::new("/var/tmp").is_dir() { PathBuf::from("/var/tmp") } else { dir }
}

/// Whether `dir` is on tmpfs or ramfs.
fn on_ram_fs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const RAMFS_MAGIC: libc::__fsword_t = 0x8584_58f6;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    let mut s = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: statfs writes one struct statfs into `s`; the path is NUL-terminated.
    if unsafe { libc::statfs(c.as_ptr(), s.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs succeeded, so the struct is initialised.
    let kind = unsafe { s.assume_init() }.f_type;
    matches!(kind, libc::TMPFS_MAGIC | RAMFS_MAGIC)
}

/// A scratch file of `bytes` in `dir`, opened `O_DIRECT`, already unlinked, every byte written
/// (not fallocated: unwritten extents would read back as zeros without any I/O).
fn scratch_file(dir: &Path, bytes: usize) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let path = dir.join(format!("pagewarden-bench-threads-floor-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_DIRECT)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    const CHUNK: usize = 1 << 20;
    let raw = vec![0x5au8; CHUNK + PAGE];
    let at = raw.as_ptr().align_offset(PAGE);
    let buf = &raw[at..at + CHUNK];
    let mut off = 0;
    while off < bytes {
        f.write_all_at(buf, off as u64)?;
        off += CHUNK;
    }
    Ok(f)
}

/// The disk's limit at `threads` concurrent readers: each thread does `reads` uniformly random
/// 4 KiB `O_DIRECT` reads of the first `bytes` of `f`, all started together. Returns reads per
/// second over all threads (by the slowest thread's time) and the p50 latency (µs).
fn disk_limit(f: &std::fs::File, bytes: usize, threads: usize, reads: usize) -> std::io::Result<(f64, f64)> {
    use std::os::unix::fs::FileExt;
    let start = Barrier::new(threads);
    let per: Vec<std::io::Result<(Duration, Vec<u64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let start = &start;
                s.spawn(move || {
                    let mut raw = vec![0u8; 2 * PAGE];
                    let at = raw.as_ptr().align_offset(PAGE);
                    let buf = &mut raw[at..at + PAGE];
                    let mut r = Rng(0x6a09_e667_f3bc_c909u64.wrapping_mul(i as u64 + 1) | 1);
                    let mut lat = Vec::with_capacity(reads);
                    start.wait();
                    let t0 = Instant::now();
                    for _ in 0..reads {
                        let page = r.next() % (bytes / PAGE) as u64;
                        let t = Instant::now();
                        f.read_exact_at(buf, page * PAGE as u64)?;
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    Ok((t0.elapsed(), lat))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a disk reader panicked")).collect()
    });
    let mut wall = Duration::ZERO;
    let mut lat = Vec::new();
    for r in per {
        let (d, l) = r?;
        wall = wall.max(d);
        lat.extend(l);
    }
    let p50 = quantiles(&mut lat).map_or(f64::NAN, |q| q[1]);
    Ok(((threads * reads) as f64 / wall.as_secs_f64(), p50))
}

/// Runs the kernel backend for one ratio in a child process. Returns what the child measured and,
/// if it failed, why (a child killed midway still returns the workloads it finished).
fn kernel_run(o: &Opts, ratio: f64, cg: &Path) -> (Results, Option<String>) {
    let join = |v: Vec<String>| v.join(",");
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return (Vec::new(), Some(format!("cannot find the bench binary: {e}"))),
    };
    let out = match std::process::Command::new(exe)
        .args([
            "--kernel-child".to_string(),
            cg.display().to_string(),
            o.budget_mib.to_string(),
            ratio.to_string(),
            o.accesses.to_string(),
            join(o.threads.iter().map(usize::to_string).collect()),
            join(o.only.iter().map(|&k| code(k).to_string()).collect()),
        ])
        .output()
    {
        Ok(out) => out,
        Err(e) => return (Vec::new(), Some(format!("cannot start the kernel child: {e}"))),
    };
    let res: Results = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|l| {
            let v: Vec<&str> = l.split(' ').collect();
            let [t, k, accesses, wall, majflt, slow, q10, q50, q90] = v[..] else { return None };
            let k = KINDS.into_iter().find(|&x| code(x) == k)?;
            let q = match (q10.parse(), q50.parse(), q90.parse()) {
                (Ok(a), Ok(b), Ok(c)) => Some([a, b, c]),
                _ => None,
            };
            let m = Meas {
                accesses: accesses.parse().ok()?,
                wall: Duration::from_secs_f64(wall.parse().ok()?),
                swap_ins: majflt.parse().ok()?,
                slow: slow.parse().ok()?,
                q,
            };
            Some(((t.parse().ok()?, k), m))
        })
        .collect();
    let err = (!out.status.success() || res.len() != o.threads.len() * o.only.len()).then(|| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
        use std::os::unix::process::ExitStatusExt;
        let oom = if out.status.signal() == Some(libc::SIGKILL) { ", likely the memory cgroup's OOM kill" } else { "" };
        format!(
            "{}{oom} ({} of {} workloads measured){}{}",
            out.status,
            res.len(),
            o.threads.len() * o.only.len(),
            if tail.is_empty() { "" } else { ": " },
            tail.join(" | ")
        )
    });
    (res, err)
}

/// The kernel backend, in its own process inside the memory cgroup: prints one `RESULT` line per
/// (threads, workload).
fn kernel_child(it: &mut impl Iterator<Item = String>) -> std::result::Result<(), String> {
    let mut arg = |what: &str| it.next().ok_or_else(|| format!("missing argument: {what}"));
    let cg = PathBuf::from(arg("cgroup")?);
    let budget_mib: usize = arg("budget")?.parse().map_err(|e| format!("budget: {e}"))?;
    let ratio: f64 = arg("ratio")?.parse().map_err(|e| format!("ratio: {e}"))?;
    let accesses: usize = arg("accesses")?.parse().map_err(|e| format!("accesses: {e}"))?;
    let threads: Vec<usize> = arg("threads")?
        .split(',')
        .map(|t| t.parse().map_err(|e| format!("threads: {e}")))
        .collect::<std::result::Result<_, _>>()?;
    let only: Vec<Kind> = arg("workloads")?
        .split(',')
        .map(|w| KINDS.into_iter().find(|&k| code(k) == w).ok_or_else(|| format!("unknown workload {w}")))
        .collect::<std::result::Result<_, _>>()?;
    let procs = if cg.join("cgroup.procs").exists() { cg.join("cgroup.procs") } else { cg.join("tasks") };
    std::fs::write(&procs, std::process::id().to_string())
        .map_err(|e| format!("cannot join the memory cgroup {}: {e}", cg.display()))?;
    let pages = data_pages(budget_mib, ratio);
    let len = pages * PAGE;
    // SAFETY: a fresh private anonymous mapping, checked for MAP_FAILED; nothing else uses the range.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap of {len} bytes: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: advice on our own fresh mapping, which changes no contents: 4 KiB pages, as on the
    // pagewarden side.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    let base = Base(p.cast::<u8>());
    populate(base, pages);
    for &t in &threads {
        for &k in &only {
            let tr = traces(k, pages, t, accesses);
            let before = majflt();
            let (wall, mut slow) = run_threads(base, &tr);
            let faults = majflt() - before;
            let q = quantiles(&mut slow).map_or("- - -".to_string(), |q| format!("{} {} {}", q[0], q[1], q[2]));
            println!(
                "RESULT {t} {} {} {} {faults} {} {q}",
                code(k),
                tr.iter().map(Vec::len).sum::<usize>(),
                wall.as_secs_f64(),
                slow.len()
            );
        }
    }
    Ok(())
}

fn fmt_q(q: Option<[f64; 3]>) -> String {
    q.map_or("-".into(), |q| format!("{:.0}/{:.0}/{:.0}", q[0], q[1], q[2]))
}

fn csv_q(q: Option<[f64; 3]>) -> String {
    q.map_or(",,".into(), |q| format!("{:.1},{:.1},{:.1}", q[0], q[1], q[2]))
}

fn main() {
    env_logger::init();
    let o = opts();
    let budget = (o.budget_mib << 20) / PAGE;
    let dir = swap_dir();
    println!(
        "threads: budget {} MiB ({budget} pages), modes {}, {} accesses per thread per random workload\n\
         swap and disk-limit files in {}",
        o.budget_mib,
        o.modes.iter().map(|&m| mode_code(m)).collect::<Vec<_>>().join("/"),
        o.accesses,
        dir.display()
    );
    let cg = if o.kernel { kernel_setup(o.budget_mib << 20, "threads") } else { Err("--no-kernel".into()) };
    if let Err(why) = &cg {
        println!("kernel backend skipped: {why}");
    }
    let mut csv = String::from(
        "ratio,threads,workload,backend,accesses,wall_s,pages_per_s,pw_over_kernel,swap_ins_per_access,\
         slow_accesses,slow_p10_us,slow_p50_us,slow_p90_us,disk_reads_per_s,disk_p50_us\n",
    );
    println!(
        "{:>5} {:>3} {:<8} {:<9} {:>9} {:>11} {:>8} {:>11} {:>18}",
        "N", "T", "workload", "backend", "accesses", "pages/s", "pw/kern", "swap-in/acc", "slow µs p10/50/90"
    );
    for &ratio in &o.ratios {
        let pages = data_pages(o.budget_mib, ratio);
        let data = pages * PAGE;
        let reads = o.accesses.clamp(1, DISK_READS);
        let disk: Vec<std::result::Result<(f64, f64), String>> = match scratch_file(&dir, data) {
            Ok(f) => o.threads.iter().map(|&t| disk_limit(&f, data, t, reads).map_err(|e| e.to_string())).collect(),
            Err(e) => o.threads.iter().map(|_| Err(format!("no scratch file in {}: {e}", dir.display()))).collect(),
        };
        let pw: Vec<(FaultMode, Results)> = o
            .modes
            .iter()
            .map(|&m| {
                let r = pagewarden_run(&o, ratio, m).unwrap_or_else(|e| {
                    println!("{ratio:>5} pagewarden {} failed: {e}", mode_code(m));
                    Vec::new()
                });
                (m, r)
            })
            .collect();
        let kern = match &cg {
            Ok(dir) => {
                let (r, err) = kernel_run(&o, ratio, dir);
                if let Some(e) = err {
                    println!("{ratio:>5} kernel child failed: {e}");
                }
                r
            }
            Err(_) => Vec::new(),
        };
        for (ti, &t) in o.threads.iter().enumerate() {
            let (dreads, dp50) = match &disk[ti] {
                Ok((r, p50)) => {
                    println!(
                        "{ratio:>5} {t:>3} disk     {t} × random 4 KiB O_DIRECT reads of a {} MiB file: \
                         {r:.0} reads/s, p50 {p50:.0} µs",
                        data >> 20
                    );
                    (format!("{r:.0}"), format!("{p50:.1}"))
                }
                Err(e) => {
                    println!("{ratio:>5} {t:>3} disk     not measured: {e}");
                    (String::new(), String::new())
                }
            };
            for &k in &o.only {
                let km = find(&kern, t, k);
                let rows = pw
                    .iter()
                    .filter_map(|(m, r)| find(r, t, k).map(|x| (mode_code(*m), x)))
                    .chain(km.map(|x| ("kernel", x)));
                for (backend, m) in rows {
                    let vs = match km {
                        Some(km) if backend != "kernel" => m.pages_per_s() / km.pages_per_s(),
                        _ => f64::NAN,
                    };
                    let per = m.swap_ins as f64 / m.accesses as f64;
                    println!(
                        "{ratio:>5} {t:>3} {:<8} {backend:<9} {:>9} {:>11.0} {:>8} {per:>11.3} {:>18}",
                        code(k),
                        m.accesses,
                        m.pages_per_s(),
                        if vs.is_nan() { "-".into() } else { format!("{vs:.2}") },
                        fmt_q(m.q)
                    );
                    csv.push_str(&format!(
                        "{ratio},{t},{},{backend},{},{:.6},{:.0},{},{per:.4},{},{},{dreads},{dp50}\n",
                        code(k),
                        m.accesses,
                        m.wall.as_secs_f64(),
                        m.pages_per_s(),
                        if vs.is_nan() { String::new() } else { format!("{vs:.3}") },
                        m.slow,
                        csv_q(m.q)
                    ));
                }
            }
        }
    }
    if let Ok(dir) = &cg {
        let _ = std::fs::remove_dir(dir);
    }
    if let Some(d) = Path::new(&o.csv).parent() {
        let _ = std::fs::create_dir_all(d);
    }
    match std::fs::write(&o.csv, csv) {
        Ok(()) => println!("CSV: {}", o.csv),
        Err(e) => println!("CSV not written to {}: {e}", o.csv),
    }
    println!(
        "(N = data / budget; T = threads; pages/s = accesses of all threads / the slowest thread's wall time;\n \
         pw/kern > 1: pagewarden faster; swap-in/acc = pages read from swap per access (kernel: major faults);\n \
         slow µs = p10/p50/p90 of the accesses over {} µs, all threads; disk = T threads of random 4 KiB\n \
         O_DIRECT reads of a file as large as the data set: the disk's own limit at that concurrency)",
        SLOW_NS / 1000
    );
}

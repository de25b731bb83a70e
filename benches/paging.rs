//! Paging workloads over a data set N× the frame budget, pagewarden against the kernel's own
//! swap at equal memory.
//!
//! Workloads: a sequential scan, uniform random reads, uniform random writes, Zipf(0.99) reads
//! (with the hit ratio next to an exact LRU's on the same trace), and a mixed read/write phase.
//!
//! The `kernel` backend runs the same traces on plain anonymous memory in a child process placed
//! in a memory cgroup (v1 `memory.limit_in_bytes`, or v2 `memory.max`) limited to the same budget,
//! so the comparison is kernel swap vs pagewarden at equal memory. It needs root and active swap;
//! without them it says why and runs pagewarden alone. pagewarden uses its default `O_DIRECT` swap,
//! so neither side reads swap back from the page cache.
//!
//! `cargo bench --bench paging -- [--budget-mib M] [--ratios 1.5,2,4,8] [--accesses N]
//!  [--mode handler|in-thread] [--encrypt] [--workloads scan,read,write,zipf,mixed] [--csv PATH]`
//!
//! Workloads run in that order on one data set, each starting where the one before left the
//! cache; `--workloads` runs a subset (for profiling one), which changes the starting state.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

mod common;
use common::{Rng, kernel_setup, majflt};
use pagewarden::{FaultMode, Runtime};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Scan,
    RandomRead,
    RandomWrite,
    ZipfRead,
    Mixed,
}

const KINDS: [Kind; 5] = [Kind::Scan, Kind::RandomRead, Kind::RandomWrite, Kind::ZipfRead, Kind::Mixed];

fn name(k: Kind) -> &'static str {
    match k {
        Kind::Scan => "sequential scan",
        Kind::RandomRead => "uniform random read",
        Kind::RandomWrite => "uniform random write",
        Kind::ZipfRead => "Zipf(0.99) read",
        Kind::Mixed => "mixed 50/50 read/write",
    }
}

/// The workload's name on the command line.
fn code(k: Kind) -> &'static str {
    match k {
        Kind::Scan => "scan",
        Kind::RandomRead => "read",
        Kind::RandomWrite => "write",
        Kind::ZipfRead => "zipf",
        Kind::Mixed => "mixed",
    }
}

fn parse_kind(w: &str) -> Kind {
    KINDS
        .into_iter()
        .find(|&k| code(k) == w)
        .unwrap_or_else(|| panic!("unknown workload {w}: scan, read, write, zipf or mixed"))
}

/// The trace of one workload: (page, write).
fn trace(kind: Kind, pages: usize, accesses: usize, seed: u64) -> Vec<(u32, bool)> {
    let mut rng = Rng(seed | 1);
    match kind {
        Kind::Scan => (0..pages).map(|p| (p as u32, false)).collect(),
        Kind::RandomRead => (0..accesses).map(|_| ((rng.next() % pages as u64) as u32, false)).collect(),
        Kind::RandomWrite => (0..accesses).map(|_| ((rng.next() % pages as u64) as u32, true)).collect(),
        Kind::Mixed => (0..accesses).map(|_| ((rng.next() % pages as u64) as u32, rng.next() % 2 == 0)).collect(),
        Kind::ZipfRead => {
            let mut cdf = Vec::with_capacity(pages);
            let mut acc = 0.0;
            for i in 1..=pages {
                acc += 1.0 / (i as f64).powf(0.99);
                cdf.push(acc);
            }
            // Ranks are scattered over the data set, so the hot pages are not neighbours.
            let perm: Vec<u32> = {
                let mut v: Vec<u32> = (0..pages as u32).collect();
                for i in (1..pages).rev() {
                    v.swap(i, (rng.next() % (i as u64 + 1)) as usize);
                }
                v
            };
            // One draw per access: the threshold must not change during the search.
            (0..accesses)
                .map(|_| {
                    let u = rng.unit() * acc;
                    (perm[cdf.partition_point(|&c| c < u).min(pages - 1)], false)
                })
                .collect()
        }
    }
}

/// The disk's own floor for a miss: p10/p50/p90 (µs) of uniformly random 4 KiB `O_DIRECT` reads
/// of a scratch file of `bytes`, in the directory swap files go to by default. Both backends pay
/// at least this per page read from swap.
fn disk_floor(bytes: usize, reads: usize) -> std::io::Result<String> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let dir = if std::path::Path::new("/var/tmp").is_dir() {
        std::path::PathBuf::from("/var/tmp")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("pagewarden-bench-floor-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_DIRECT)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    // Written, not fallocated: unwritten extents would read back as zeros without any I/O.
    const CHUNK: usize = 1 << 20;
    let mut raw = vec![0x5au8; CHUNK + PAGE];
    let at = raw.as_ptr().align_offset(PAGE);
    let buf = &mut raw[at..at + CHUNK];
    let mut off = 0;
    while off < bytes {
        f.write_all_at(buf, off as u64)?;
        off += CHUNK;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut lat: Vec<u64> = (0..reads)
        .map(|_| {
            let page = rng.next() % (bytes / PAGE) as u64;
            let t = Instant::now();
            f.read_exact_at(&mut buf[..PAGE], page * PAGE as u64).map(|()| t.elapsed().as_nanos() as u64)
        })
        .collect::<std::io::Result<_>>()?;
    Ok(miss_quantiles(&mut lat))
}

/// Hit ratio of an exact LRU cache of `capacity` pages on the trace.
fn lru_hit_ratio(trace: &[(u32, bool)], capacity: usize) -> f64 {
    let mut last: HashMap<u32, u64> = HashMap::new();
    let mut order: std::collections::BTreeMap<u64, u32> = std::collections::BTreeMap::new();
    let mut hits = 0;
    for (t, &(p, _)) in trace.iter().enumerate() {
        let t = t as u64;
        if let Some(old) = last.insert(p, t) {
            order.remove(&old);
            hits += 1;
        } else if order.len() >= capacity {
            let (_, victim) = order.pop_first().expect("non-empty");
            last.remove(&victim);
        }
        order.insert(t, p);
    }
    hits as f64 / trace.len() as f64
}

/// Accesses slower than this count as misses in the latency figures (a hit costs well under a
/// microsecond; a fault from swap tens of them).
const SLOW_NS: u64 = 20_000;

/// Runs a trace; with `timed`, also returns each slow access's time (ns), for miss latencies.
fn run_trace(base: *mut u8, trace: &[(u32, bool)], timed: bool) -> (Duration, Vec<u64>) {
    let mut slow = Vec::new();
    let t0 = Instant::now();
    for &(p, w) in trace {
        let t = timed.then(Instant::now);
        // SAFETY: the caller's mapping covers every page of the trace and outlives the run.
        let addr = unsafe { base.add(p as usize * PAGE) }.cast::<u64>();
        if w {
            // SAFETY: as above; 8-byte aligned (page start).
            unsafe { addr.write_volatile(u64::from(p) + 1) };
        } else {
            // SAFETY: as above.
            std::hint::black_box(unsafe { addr.read_volatile() });
        }
        if let Some(t) = t {
            let ns = t.elapsed().as_nanos() as u64;
            if ns > SLOW_NS {
                slow.push(ns);
            }
        }
    }
    (t0.elapsed(), slow)
}

/// p10 / p50 / p90 of the slow accesses, in µs (`-` when there are none).
fn miss_quantiles(slow: &mut [u64]) -> String {
    if slow.is_empty() {
        return "-".into();
    }
    slow.sort_unstable();
    let q = |f: f64| slow[((slow.len() - 1) as f64 * f) as usize] as f64 / 1000.0;
    format!("{:.0}/{:.0}/{:.0}", q(0.1), q(0.5), q(0.9))
}

struct Opts {
    budget_mib: usize,
    ratios: Vec<f64>,
    accesses: usize,
    mode: FaultMode,
    encrypt: bool,
    csv: String,
    /// Workloads to run (all by default); the others are skipped and print no row.
    only: Vec<Kind>,
}

fn opts() -> Opts {
    let mut o = Opts {
        budget_mib: 32,
        ratios: vec![1.5, 2.0, 4.0, 8.0],
        accesses: 20_000,
        mode: FaultMode::HandlerThreads,
        encrypt: false,
        csv: "target/paging.csv".into(),
        only: KINDS.to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--budget-mib" => o.budget_mib = it.next().and_then(|v| v.parse().ok()).expect("--budget-mib M"),
            "--ratios" => {
                o.ratios = it.next().expect("--ratios LIST").split(',').map(|x| x.parse().expect("a number")).collect()
            }
            "--accesses" => o.accesses = it.next().and_then(|v| v.parse().ok()).expect("--accesses N"),
            "--mode" => {
                o.mode = match it.next().as_deref() {
                    Some("in-thread") => FaultMode::InThread,
                    _ => FaultMode::HandlerThreads,
                }
            }
            "--csv" => o.csv = it.next().expect("--csv PATH"),
            "--encrypt" => o.encrypt = true,
            "--workloads" => o.only = it.next().expect("--workloads LIST").split(',').map(parse_kind).collect(),
            "--bench" => {}
            "--kernel-child" => {
                kernel_child(&mut it);
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// One measured workload: seconds, the fraction of accesses that faulted from swap (or, for the
/// kernel, major faults), and the p10/p50/p90 of the slow accesses in µs.
type Result = (Duration, f64, String);

fn pagewarden_run(o: &Opts, ratio: f64) -> Vec<Result> {
    let budget = (o.budget_mib << 20) / PAGE;
    let pages = (budget as f64 * ratio) as usize;
    let rt = Runtime::builder()
        .frame_budget(budget * PAGE)
        .swap_capacity((pages + budget) * PAGE)
        .fault_mode(o.mode)
        .encrypt_swap(o.encrypt)
        .build()
        .expect("runtime");
    let a = rt.arena("data").create().unwrap();
    let r = a.reserve(pages * PAGE).unwrap();
    let base = r.as_ptr();
    let fill: Vec<(u32, bool)> = (0..pages).map(|p| (p as u32, true)).collect();
    run_trace(base, &fill, false);
    o.only
        .iter()
        .map(|&k| {
            let t = trace(k, pages, o.accesses, 7);
            let before = rt.stats().totals.swap_ins;
            let (d, mut slow) = run_trace(base, &t, true);
            let st = rt.stats();
            let misses = st.totals.swap_ins - before;
            if std::env::var_os("PAGING_VERBOSE").is_some() {
                eprintln!("{k:?} N={ratio}: {st}");
            }
            (d, misses as f64 / t.len() as f64, miss_quantiles(&mut slow))
        })
        .collect()
}

fn kernel_run(o: &Opts, ratio: f64, cg: &std::path::Path) -> std::result::Result<Vec<Result>, String> {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--kernel-child",
            &cg.display().to_string(),
            &o.budget_mib.to_string(),
            &ratio.to_string(),
            &o.accesses.to_string(),
            &o.only.iter().map(|&k| code(k)).collect::<Vec<_>>().join(","),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let res: Vec<Result> = text
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|l| {
            let v: Vec<&str> = l.split(' ').collect();
            let num = |i: usize| v.get(i).and_then(|x| x.parse().ok()).unwrap_or(0.0);
            (Duration::from_secs_f64(num(0)), num(1), v.get(2).unwrap_or(&"-").to_string())
        })
        .collect();
    if res.len() != o.only.len() {
        return Err(format!("kernel child failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(res)
}

/// The kernel backend, in its own process inside the memory cgroup.
fn kernel_child(it: &mut impl Iterator<Item = String>) {
    let cg = std::path::PathBuf::from(it.next().expect("cgroup"));
    let budget_mib: usize = it.next().and_then(|v| v.parse().ok()).expect("budget");
    let ratio: f64 = it.next().and_then(|v| v.parse().ok()).expect("ratio");
    let accesses: usize = it.next().and_then(|v| v.parse().ok()).expect("accesses");
    let only: Vec<Kind> = it.next().expect("workloads").split(',').map(parse_kind).collect();
    let procs = if cg.join("cgroup.procs").exists() { cg.join("cgroup.procs") } else { cg.join("tasks") };
    std::fs::write(&procs, std::process::id().to_string()).expect("join the memory cgroup");
    let budget = (budget_mib << 20) / PAGE;
    let pages = (budget as f64 * ratio) as usize;
    let len = pages * PAGE;
    // SAFETY: a fresh private anonymous mapping, checked for MAP_FAILED.
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
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: our own mapping; 4 KiB pages as on the pagewarden side.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    let base = p.cast::<u8>();
    let fill: Vec<(u32, bool)> = (0..pages).map(|p| (p as u32, true)).collect();
    run_trace(base, &fill, false);
    for k in only {
        let t = trace(k, pages, accesses, 7);
        let before = majflt();
        let (d, mut slow) = run_trace(base, &t, true);
        let faults = majflt() - before;
        println!("RESULT {} {} {}", d.as_secs_f64(), faults as f64 / t.len() as f64, miss_quantiles(&mut slow));
    }
}

fn main() {
    env_logger::init();
    let o = opts();
    let budget = (o.budget_mib << 20) / PAGE;
    println!(
        "paging: budget {} MiB ({budget} pages), {:?}{}, {} accesses per random workload",
        o.budget_mib,
        o.mode,
        if o.encrypt { ", encrypted swap" } else { "" },
        o.accesses
    );
    let cg = kernel_setup(o.budget_mib << 20, "paging");
    if let Err(why) = &cg {
        println!("kernel backend skipped: {why}");
    }
    let mut csv = String::from(
        "ratio,workload,pw_ns_per_access,kernel_ns_per_access,speedup,pw_miss,kernel_majflt,lru_hit,pw_slow_us_p10_p50_p90,kernel_slow_us_p10_p50_p90\n",
    );
    println!(
        "{:>5} {:<24} {:>12} {:>12} {:>8} {:>9} {:>9} {:>9} {:>9} {:>14} {:>14}",
        "N",
        "workload",
        "pw ns/acc",
        "kern ns/acc",
        "pw/kern",
        "pw hit",
        "kern hit",
        "LRU hit",
        "pw/LRU",
        "pw slow µs",
        "kern slow µs"
    );
    for &ratio in &o.ratios {
        let data = (budget as f64 * ratio) as usize * PAGE;
        match disk_floor(data, 2000) {
            Ok(q) => println!(
                "{ratio:>5} disk floor: random 4 KiB O_DIRECT reads of a {} MiB scratch file, p10/p50/p90 {q} µs",
                data >> 20
            ),
            Err(e) => println!("{ratio:>5} disk floor not measured: {e}"),
        }
        let pw = pagewarden_run(&o, ratio);
        let kern = match &cg {
            Ok(dir) => kernel_run(&o, ratio, dir).map_err(|e| println!("kernel run failed: {e}")).ok(),
            Err(_) => None,
        };
        let pages = (budget as f64 * ratio) as usize;
        for (i, &k) in o.only.iter().enumerate() {
            let t = trace(k, pages, o.accesses, 7);
            let ns = |d: Duration| d.as_nanos() as f64 / t.len() as f64;
            let (pd, pmiss, pslow) = &pw[i];
            let (pd, pmiss) = (*pd, *pmiss);
            let (kns, khit, speed, kslow) = match &kern {
                Some(v) => (ns(v[i].0), 1.0 - v[i].1, ns(v[i].0) / ns(pd), v[i].2.as_str()),
                None => (f64::NAN, f64::NAN, f64::NAN, "-"),
            };
            let lru = if k == Kind::ZipfRead { lru_hit_ratio(&t, budget) } else { f64::NAN };
            println!(
                "{ratio:>5} {:<24} {:>12.0} {:>12.0} {:>8.2} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {pslow:>14} {kslow:>14}",
                name(k),
                ns(pd),
                kns,
                speed,
                1.0 - pmiss,
                khit,
                lru,
                (1.0 - pmiss) / lru
            );
            csv.push_str(&format!(
                "{ratio},{},{:.0},{:.0},{:.3},{:.4},{:.4},{:.4},{pslow},{kslow}\n",
                name(k),
                ns(pd),
                kns,
                speed,
                pmiss,
                1.0 - khit,
                lru
            ));
        }
    }
    if let Ok(dir) = &cg {
        let _ = std::fs::remove_dir(dir);
    }
    if let Some(d) = std::path::Path::new(&o.csv).parent() {
        let _ = std::fs::create_dir_all(d);
    }
    std::fs::write(&o.csv, csv).expect("write csv");
    println!(
        "(pw/kern > 1: pagewarden faster; hit = accesses served without a swap read; slow µs = p10/p50/p90 of the accesses over {} µs, the misses)\nCSV: {}",
        SLOW_NS / 1000,
        o.csv
    );
}

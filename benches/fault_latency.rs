//! Fault latency, side by side in one run, per 4 KiB touch (p50 … max), for:
//!
//! * the kernel's own demand-zero fault on plain anonymous memory (read and write);
//! * a minimal raw userfaultfd loop written here (handler thread in poll → read → UFFDIO_COPY),
//!   the floor of any handler-thread design;
//! * pagewarden in both fault modes: zero-fill on read and on write, swap-in, clean re-fault (a
//!   page read back from swap, dropped clean, read again), and the write-protect fault (first
//!   write to a page installed by a read).
//!
//! Each in random and sequential order, with 1 and 2 touching threads. Plus sequential
//! first-touch throughput against the kernel, and metadata per touched page.
//!
//! `cargo bench --bench fault_latency -- [--pages N] [--seq-mib M] [--rounds R] [--csv PATH] [--svg PATH]`
//! Prints a table and the headline ratios (handler thread against the raw loop, in-thread
//! against the kernel), also as the median of R rounds (default 5) that run those four cases
//! back to back. Writes a CSV (default `target/fault_latency.csv`) and an SVG of the latency
//! CDFs (default `target/fault_latency.svg`). Compare ratios within one run: absolute times on a
//! shared VM move from run to run.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

use linux_raw_sys::general as k;
use pagewarden::{FaultMode, Runtime};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

struct Args {
    pages: usize,
    seq_mib: usize,
    /// Interleaved rounds for the headline ratios.
    rounds: usize,
    csv: String,
    svg: String,
}

fn args() -> Args {
    let mut a = Args {
        pages: 20_000,
        seq_mib: 256,
        rounds: 5,
        csv: "target/fault_latency.csv".into(),
        svg: "target/fault_latency.svg".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--pages" => a.pages = it.next().and_then(|v| v.parse().ok()).expect("--pages N"),
            "--seq-mib" => a.seq_mib = it.next().and_then(|v| v.parse().ok()).expect("--seq-mib M"),
            "--rounds" => {
                a.rounds = it.next().and_then(|v| v.parse().ok()).filter(|&r| r > 0).expect("--rounds R (1 or more)")
            }
            "--csv" => a.csv = it.next().expect("--csv PATH"),
            "--svg" => a.svg = it.next().expect("--svg PATH"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Per-touch latencies in nanoseconds, sorted.
struct Samples(Vec<u64>);

impl Samples {
    fn new(mut v: Vec<u64>) -> Samples {
        v.sort_unstable();
        Samples(v)
    }
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i] as f64 / 1000.0
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Order {
    Random,
    Sequential,
}

fn order_of(pages: usize, order: Order, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..pages).collect();
    if order == Order::Random {
        let mut x = seed | 1;
        for i in (1..pages).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.swap(i, (x % (i as u64 + 1)) as usize);
        }
    }
    v
}

/// Touches every page of `[base, base + pages × 4 KiB)` once, `threads` threads each taking
/// every `threads`-th page of the order; returns every touch's latency.
fn touch(base: usize, pages: usize, order: Order, threads: usize, write: bool) -> Samples {
    let all = order_of(pages, order, 1);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<usize> = all.iter().copied().skip(t).step_by(threads).collect();
            std::thread::spawn(move || {
                let mut s = Vec::with_capacity(mine.len());
                for p in mine {
                    let addr = (base + p * PAGE) as *mut u8;
                    let t0 = Instant::now();
                    if write {
                        // SAFETY: every caller passes a mapping of `pages` pages that outlives
                        // the threads (they are joined below).
                        unsafe { addr.write_volatile(1) };
                    } else {
                        // SAFETY: as above.
                        std::hint::black_box(unsafe { addr.read_volatile() });
                    }
                    s.push(t0.elapsed().as_nanos() as u64);
                }
                s
            })
        })
        .collect();
    Samples::new(handles.into_iter().flat_map(|h| h.join().unwrap()).collect())
}

fn anon(len: usize) -> *mut u8 {
    // SAFETY: a fresh private anonymous mapping; checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    // SAFETY: the range was just mapped by us.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    p.cast()
}

fn unmap(p: *mut u8, len: usize) {
    // SAFETY: `p` came from `anon(len)` and nothing uses it afterwards.
    unsafe { libc::munmap(p.cast(), len) };
}

fn kernel(pages: usize, order: Order, threads: usize, write: bool) -> Samples {
    let base = anon(pages * PAGE);
    let s = touch(base as usize, pages, order, threads, write);
    unmap(base, pages * PAGE);
    s
}

/// The raw loop: one handler thread blocked in poll, read one event, UFFDIO_COPY one page.
fn raw_uffd(pages: usize, order: Order, threads: usize) -> Samples {
    let len = pages * PAGE;
    let base = anon(len);
    // SAFETY: userfaultfd(2) takes only flags.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    let fd = if fd >= 0 {
        // SAFETY: a fresh descriptor.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    } else {
        // SAFETY: open(2) on a literal path.
        let dev = unsafe { libc::open(c"/dev/userfaultfd".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        assert!(dev >= 0, "no userfaultfd for the raw loop");
        // SAFETY: USERFAULTFD_IOC_NEW returns a new descriptor.
        let fd = unsafe { libc::ioctl(dev, 0xAA00, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        // SAFETY: closing the device descriptor we opened.
        unsafe { libc::close(dev) };
        // SAFETY: a fresh descriptor.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let mut api = k::uffdio_api { api: u64::from(k::UFFD_API), features: 0, ioctls: 0 };
    // SAFETY: UFFDIO_API with a properly sized struct.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), linux_raw_sys::ioctl::UFFDIO_API as _, &mut api) };
    assert_eq!(rc, 0, "UFFDIO_API");
    let mut reg = k::uffdio_register {
        range: k::uffdio_range { start: base as u64, len: len as u64 },
        mode: u64::from(k::UFFDIO_REGISTER_MODE_MISSING),
        ioctls: 0,
    };
    // SAFETY: registering our own mapping.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), linux_raw_sys::ioctl::UFFDIO_REGISTER as _, &mut reg) };
    assert_eq!(rc, 0, "UFFDIO_REGISTER");
    let stop = Arc::new(AtomicBool::new(false));
    let raw = fd.as_raw_fd();
    let st = stop.clone();
    let handler = std::thread::spawn(move || {
        let src = anon(PAGE);
        while !st.load(Ordering::Relaxed) {
            let mut p = libc::pollfd { fd: raw, events: libc::POLLIN, revents: 0 };
            // SAFETY: one pollfd.
            if unsafe { libc::poll(&mut p, 1, 50) } <= 0 {
                continue;
            }
            let mut msg = std::mem::MaybeUninit::<k::uffd_msg>::uninit();
            // SAFETY: reads at most one message into `msg`.
            let n = unsafe { libc::read(raw, msg.as_mut_ptr().cast(), std::mem::size_of::<k::uffd_msg>()) };
            if n <= 0 {
                continue;
            }
            // SAFETY: the kernel wrote a whole message; for PAGEFAULT the pagefault member is valid.
            let addr = unsafe { msg.assume_init().arg.pagefault.address } & !(PAGE as u64 - 1);
            let mut c = k::uffdio_copy { dst: addr, src: src as u64, len: PAGE as u64, mode: 0, copy: 0 };
            // SAFETY: copies one page from our source buffer into the registered range.
            unsafe { libc::ioctl(raw, linux_raw_sys::ioctl::UFFDIO_COPY as _, &mut c) };
        }
        unmap(src, PAGE);
    });
    let s = touch(base as usize, pages, order, threads, true);
    stop.store(true, Ordering::Relaxed);
    handler.join().unwrap();
    drop(fd);
    unmap(base, len);
    s
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    ZeroWrite,
    ZeroRead,
    SwapIn,
    CleanRefault,
    WriteProtect,
    /// The parent's first write to a page shared with a copy-on-write fork.
    CowBreak,
}

/// One pagewarden case: builds a runtime, prepares the pages, times the touches.
fn pagewarden(pages: usize, mode: FaultMode, kind: Kind, order: Order, threads: usize) -> (Samples, f64) {
    let evicting = matches!(kind, Kind::SwapIn | Kind::CleanRefault);
    let budget = if evicting { (pages / 8).max(256) } else { 2 * pages + 1024 };
    let rt = Runtime::builder()
        .frame_budget(budget * PAGE)
        .swap_capacity(pages * PAGE * 2)
        .fault_mode(mode)
        .max_readahead(if evicting { 1 } else { 64 })
        .build()
        .expect("runtime");
    let a = rt.arena("bench").create().unwrap();
    let r = a.reserve(pages * PAGE).unwrap();
    let base = r.as_ptr() as usize;
    let mut _fork = None;
    match kind {
        Kind::ZeroWrite | Kind::ZeroRead => {}
        Kind::SwapIn => {
            r.fill(0, pages * PAGE, 7).unwrap();
            r.page_out(0, pages * PAGE).unwrap();
        }
        Kind::CleanRefault => {
            r.fill(0, pages * PAGE, 7).unwrap();
            r.page_out(0, pages * PAGE).unwrap();
            // Read everything back (clean, slot kept), then drop it again without I/O.
            let _ = touch(base, pages, Order::Sequential, 1, false);
            r.page_out(0, pages * PAGE).unwrap();
        }
        Kind::WriteProtect => {
            let _ = touch(base, pages, Order::Sequential, 1, false);
        }
        Kind::CowBreak => {
            r.fill(0, pages * PAGE, 7).unwrap();
            _fork = Some(a.fork("child").unwrap());
        }
    }
    let write = matches!(kind, Kind::ZeroWrite | Kind::WriteProtect | Kind::CowBreak);
    let s = touch(base, pages, order, threads, write);
    let st = rt.stats();
    (s, st.metadata_bytes as f64 / st.tracked_pages.max(1) as f64)
}

fn seq_kernel(bytes: usize) -> Duration {
    let base = anon(bytes);
    let t = Instant::now();
    for p in 0..bytes / PAGE {
        // SAFETY: inside the mapping.
        unsafe { base.add(p * PAGE).write_volatile(1) };
    }
    let d = t.elapsed();
    unmap(base, bytes);
    d
}

fn seq_pagewarden(bytes: usize, mode: FaultMode) -> Duration {
    let rt = Runtime::builder()
        .frame_budget(bytes + (8 << 20))
        .swap_capacity(16 << 20)
        .fault_mode(mode)
        .build()
        .expect("runtime");
    let a = rt.arena("bench").create().unwrap();
    let r = a.reserve(bytes).unwrap();
    let base = r.as_ptr();
    let t = Instant::now();
    for p in 0..bytes / PAGE {
        // SAFETY: inside the region.
        unsafe { base.add(p * PAGE).write_volatile(1) };
    }
    t.elapsed()
}

/// A small hand-written SVG of latency CDFs (log-scaled x axis).
fn svg(series: &[(&str, &Samples)]) -> String {
    let (w, h, l, b) = (760.0, 420.0, 60.0, 40.0);
    let (xmin, xmax) = (0.5f64.ln(), 10_000f64.ln());
    let x = |us: f64| l + (us.max(0.5).ln() - xmin) / (xmax - xmin) * (w - l - 20.0);
    let y = |q: f64| h - b - q * (h - b - 20.0);
    let colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"];
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n"
    );
    out += &format!("<rect width='{w}' height='{h}' fill='white'/>\n");
    for us in [1.0, 10.0, 100.0, 1000.0, 10_000.0] {
        out += &format!(
            "<line x1='{0}' y1='20' x2='{0}' y2='{1}' stroke='#ddd'/><text x='{0}' y='{2}' text-anchor='middle'>{us} µs</text>\n",
            x(us),
            h - b,
            h - b + 16.0
        );
    }
    for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
        out += &format!(
            "<line x1='{l}' y1='{0}' x2='{1}' y2='{0}' stroke='#eee'/><text x='{2}' y='{0}' text-anchor='end'>{q}</text>\n",
            y(q),
            w - 20.0,
            l - 6.0
        );
    }
    for (i, (name, s)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        let n = s.0.len();
        let pts: Vec<String> = (0..=200)
            .map(|k| {
                let q = k as f64 / 200.0;
                let v = s.0[((n as f64 * q) as usize).min(n - 1)] as f64 / 1000.0;
                format!("{:.1},{:.1}", x(v), y(q))
            })
            .collect();
        out += &format!("<polyline fill='none' stroke='{c}' stroke-width='2' points='{}'/>\n", pts.join(" "));
        out += &format!("<text x='{}' y='{}' fill='{c}'>{name}</text>\n", l + 10.0, 34.0 + 16.0 * i as f64);
    }
    out += &format!(
        "<text x='{}' y='{}' text-anchor='middle'>fault latency per touch (random order, 1 thread): CDF</text>\n",
        w / 2.0,
        14.0
    );
    out + "</svg>\n"
}

fn main() {
    let a = args();
    let n = a.pages;
    println!("fault_latency: {n} touches of 4 KiB per case; {} MiB sequential", a.seq_mib);
    let mut rows: Vec<(String, Samples)> = Vec::new();
    let mut meta = 0.0;
    for threads in [1, 2] {
        for order in [Order::Random, Order::Sequential] {
            let tag = format!("{}, {threads}t", if order == Order::Random { "random" } else { "seq" });
            rows.push((format!("kernel zero-fill write ({tag})"), kernel(n, order, threads, true)));
            rows.push((format!("kernel zero-fill read ({tag})"), kernel(n, order, threads, false)));
            rows.push((format!("raw uffd loop write ({tag})"), raw_uffd(n, order, threads)));
            for mode in [FaultMode::HandlerThreads, FaultMode::InThread] {
                let m = if mode == FaultMode::InThread { "in-thread" } else { "handler" };
                for (kind, name) in [
                    (Kind::ZeroWrite, "zero-fill write"),
                    (Kind::ZeroRead, "zero-fill read"),
                    (Kind::SwapIn, "swap-in"),
                    (Kind::CleanRefault, "clean re-fault"),
                    (Kind::WriteProtect, "write-protect"),
                    (Kind::CowBreak, "COW break"),
                ] {
                    let pages = if matches!(kind, Kind::SwapIn | Kind::CleanRefault) { n / 2 } else { n };
                    let (s, md) = pagewarden(pages, mode, kind, order, threads);
                    if kind == Kind::ZeroWrite && order == Order::Random && threads == 1 {
                        meta = md;
                    }
                    rows.push((format!("pagewarden {m} {name} ({tag})"), s));
                }
            }
        }
    }
    let mut csv = String::from("case,p50_us,p90_us,p99_us,p999_us,max_us\n");
    println!("{:<52} {:>9} {:>9} {:>9} {:>9} {:>9}", "case (µs per touch)", "p50", "p90", "p99", "p99.9", "max");
    for (name, s) in &rows {
        let (p50, p90, p99, p999, max) = (s.pct(0.5), s.pct(0.9), s.pct(0.99), s.pct(0.999), s.pct(1.0));
        println!("{name:<52} {p50:>9.1} {p90:>9.1} {p99:>9.1} {p999:>9.1} {max:>9.1}");
        csv.push_str(&format!("{name},{p50:.2},{p90:.2},{p99:.2},{p999:.2},{max:.2}\n"));
    }
    let p50 = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| r.1.pct(0.5)).unwrap_or(f64::NAN);
    let handler = p50("pagewarden handler zero-fill write (random, 1t)");
    let inthread = p50("pagewarden in-thread zero-fill write (random, 1t)");
    let raw = p50("raw uffd loop write (random, 1t)");
    let kern = p50("kernel zero-fill write (random, 1t)");
    println!(
        "random zero-fill write p50, 1 thread (table above): handler-thread / raw loop = {:.2}; in-thread / kernel = {:.2}",
        handler / raw,
        inthread / kern
    );
    csv.push_str(&format!(
        "ratio_handler_over_raw,{:.3}\nratio_inthread_over_kernel,{:.3}\n",
        handler / raw,
        inthread / kern
    ));
    // The same two ratios from rounds that run the four cases back to back: the cases of the
    // table run seconds apart, and this VM's speed drifts over seconds.
    let (mut over_raw, mut over_kernel) = (Vec::new(), Vec::new());
    for _ in 0..a.rounds {
        let kern = kernel(n, Order::Random, 1, true).pct(0.5);
        let raw = raw_uffd(n, Order::Random, 1).pct(0.5);
        let handler = pagewarden(n, FaultMode::HandlerThreads, Kind::ZeroWrite, Order::Random, 1).0.pct(0.5);
        let inthread = pagewarden(n, FaultMode::InThread, Kind::ZeroWrite, Order::Random, 1).0.pct(0.5);
        over_raw.push(handler / raw);
        over_kernel.push(inthread / kern);
    }
    for (name, v) in [("handler-thread / raw loop", &mut over_raw), ("in-thread / kernel", &mut over_kernel)] {
        v.sort_by(f64::total_cmp);
        let (lo, mid, hi) = (v[0], v[v.len() / 2], v[v.len() - 1]);
        println!(
            "random zero-fill write p50, 1 thread, {} interleaved rounds: {name} = {mid:.2} (median; {lo:.2}–{hi:.2})",
            v.len()
        );
        let key = if name.starts_with("handler") { "handler_over_raw" } else { "inthread_over_kernel" };
        csv.push_str(&format!(
            "ratio_{key}_rounds_median,{mid:.3}\nratio_{key}_rounds_min,{lo:.3}\nratio_{key}_rounds_max,{hi:.3}\n"
        ));
    }
    let bytes = a.seq_mib << 20;
    let k = seq_kernel(bytes);
    let rate = |d: Duration| (bytes / PAGE) as f64 / d.as_secs_f64();
    for mode in [FaultMode::HandlerThreads, FaultMode::InThread] {
        let p = seq_pagewarden(bytes, mode);
        println!(
            "sequential first touch of {} MiB, {mode:?}: kernel {:.0} pages/s, pagewarden {:.0} pages/s: ratio {:.2}",
            a.seq_mib,
            rate(k),
            rate(p),
            rate(p) / rate(k)
        );
        csv.push_str(&format!("seq_ratio_{mode:?},{:.3}\n", rate(p) / rate(k)));
    }
    println!(
        "metadata after {n} random touches, all resident: {meta:.1} bytes per touched page (page table ~8.5, replacement lists 8 per resident page)"
    );
    csv.push_str(&format!("metadata_bytes_per_page,{meta:.1}\n"));
    for path in [&a.csv, &a.svg] {
        if let Some(dir) = std::path::Path::new(path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
    }
    std::fs::write(&a.csv, csv).expect("write csv");
    let pick = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| &r.1);
    let series: Vec<(&str, &Samples)> = [
        ("kernel", "kernel zero-fill write (random, 1t)"),
        ("raw uffd loop", "raw uffd loop write (random, 1t)"),
        ("pagewarden handler thread", "pagewarden handler zero-fill write (random, 1t)"),
        ("pagewarden in-thread", "pagewarden in-thread zero-fill write (random, 1t)"),
        ("pagewarden swap-in (handler)", "pagewarden handler swap-in (random, 1t)"),
        ("pagewarden swap-in (in-thread)", "pagewarden in-thread swap-in (random, 1t)"),
    ]
    .iter()
    .filter_map(|(label, name)| pick(name).map(|s| (*label, s)))
    .collect();
    std::fs::write(&a.svg, svg(&series)).expect("write svg");
    println!("CSV: {}  SVG: {}", a.csv, a.svg);
}

//! Fault latency and first-touch throughput, side by side in one run:
//!
//! * the kernel's own demand-zero fault on plain anonymous memory;
//! * a minimal raw userfaultfd loop written here (handler thread in poll → read → UFFDIO_COPY),
//!   the floor of any handler-thread design;
//! * pagewarden (zero-fill, swap-in, and sequential first touch with fault-around).
//!
//! `cargo bench --bench fault_latency -- [--pages N] [--seq-mib M] [--csv PATH]`
//! Prints a table and writes a CSV (default `target/fault_latency.csv`). Compare ratios within one
//! run: absolute times on a shared VM move from run to run.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

use linux_raw_sys::general as k;
use pagewarden::{EvictionPath, Runtime};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

struct Args {
    pages: usize,
    seq_mib: usize,
    csv: String,
}

fn args() -> Args {
    let mut a = Args { pages: 20_000, seq_mib: 256, csv: "target/fault_latency.csv".into() };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--pages" => a.pages = it.next().and_then(|v| v.parse().ok()).expect("--pages N"),
            "--seq-mib" => a.seq_mib = it.next().and_then(|v| v.parse().ok()).expect("--seq-mib M"),
            "--csv" => a.csv = it.next().expect("--csv PATH"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Per-touch latencies in nanoseconds.
struct Samples(Vec<u64>);

impl Samples {
    fn pct(&mut self, p: f64) -> f64 {
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i] as f64 / 1000.0
    }
}

fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = seed;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// Touches (writes one byte of) each page in `order`, timing each touch.
fn touch_all(base: *mut u8, order: &[usize]) -> Samples {
    let mut s = Vec::with_capacity(order.len());
    for &p in order {
        let t = Instant::now();
        // SAFETY: every caller passes a mapping of at least max(order)+1 pages that lives across
        // the call.
        unsafe { base.add(p * PAGE).write_volatile(1) };
        s.push(t.elapsed().as_nanos() as u64);
    }
    Samples(s)
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

fn kernel_random(pages: usize) -> Samples {
    let base = anon(pages * PAGE);
    let s = touch_all(base, &shuffled(pages, 1));
    unmap(base, pages * PAGE);
    s
}

/// The raw loop: one handler thread blocked in poll, read one event, UFFDIO_COPY one page.
fn raw_uffd_random(pages: usize) -> Samples {
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
    let s = touch_all(base, &shuffled(pages, 1));
    stop.store(true, Ordering::Relaxed);
    handler.join().unwrap();
    drop(fd);
    unmap(base, len);
    s
}

fn pagewarden_random(pages: usize) -> (Samples, f64) {
    let rt = Runtime::builder().frame_budget((pages + 64) * PAGE * 2).swap_capacity(16 << 20).build().expect("runtime");
    let a = rt.arena("bench").create().unwrap();
    let r = a.reserve(pages * PAGE).unwrap();
    let s = touch_all(r.as_ptr(), &shuffled(pages, 1));
    let st = rt.stats();
    (s, st.metadata_bytes as f64 / st.tracked_pages.max(1) as f64)
}

/// Swap-in: pages written, evicted by a small budget, then touched again at random.
fn pagewarden_swapin(pages: usize, path: EvictionPath) -> Samples {
    let budget = (pages / 8).max(256);
    let rt = Runtime::builder()
        .frame_budget(budget * PAGE)
        .swap_capacity((pages * PAGE * 2) as u64)
        .eviction(path)
        .max_readahead(1)
        .build()
        .expect("runtime");
    let a = rt.arena("bench").create().unwrap();
    let r = a.reserve(pages * PAGE).unwrap();
    for p in 0..pages {
        r.write(p * PAGE, &[p as u8; 8]).unwrap();
    }
    r.page_out(0, pages * PAGE).unwrap();
    let mut s = Vec::with_capacity(pages);
    for p in shuffled(pages, 2) {
        let t = Instant::now();
        // SAFETY: inside the region.
        let v = unsafe { r.as_ptr().add(p * PAGE).read_volatile() };
        s.push(t.elapsed().as_nanos() as u64);
        assert_eq!(v, p as u8);
    }
    Samples(s)
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

fn seq_pagewarden(bytes: usize) -> Duration {
    let rt = Runtime::builder().frame_budget(bytes + (8 << 20)).swap_capacity(16 << 20).build().expect("runtime");
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

fn main() {
    let a = args();
    let n = a.pages;
    println!("fault_latency: {n} random 4 KiB touches per case, {} MiB sequential; one touching thread", a.seq_mib);
    let mut rows: Vec<(String, Samples)> = Vec::new();
    rows.push(("kernel demand-zero (no uffd)".into(), kernel_random(n)));
    rows.push(("raw uffd loop: poll+read+COPY".into(), raw_uffd_random(n)));
    let (pw, meta) = pagewarden_random(n);
    rows.push(("pagewarden zero-fill (write)".into(), pw));
    rows.push(("pagewarden swap-in, MOVE path".into(), pagewarden_swapin(n / 2, EvictionPath::Move)));
    rows.push(("pagewarden swap-in, WP path".into(), pagewarden_swapin(n / 2, EvictionPath::WriteProtect)));
    let mut csv = String::from("case,p50_us,p90_us,p99_us,p999_us,max_us\n");
    println!("{:<34} {:>9} {:>9} {:>9} {:>9} {:>9}", "case (µs per touch)", "p50", "p90", "p99", "p99.9", "max");
    let mut p50s = Vec::new();
    for (name, s) in &mut rows {
        let (p50, p90, p99, p999, max) = (s.pct(0.5), s.pct(0.9), s.pct(0.99), s.pct(0.999), s.pct(1.0));
        p50s.push(p50);
        println!("{name:<34} {p50:>9.1} {p90:>9.1} {p99:>9.1} {p999:>9.1} {max:>9.1}");
        csv.push_str(&format!("{name},{p50:.2},{p90:.2},{p99:.2},{p999:.2},{max:.2}\n"));
    }
    println!("ratio pagewarden zero-fill p50 / raw uffd loop p50: {:.2}", p50s[2] / p50s[1]);
    let bytes = a.seq_mib << 20;
    let k = seq_kernel(bytes);
    let p = seq_pagewarden(bytes);
    let rate = |d: Duration| (bytes / PAGE) as f64 / d.as_secs_f64();
    println!(
        "sequential first touch of {} MiB: kernel {:.0} pages/s ({:.2} µs/page), pagewarden {:.0} pages/s ({:.2} µs/page): ratio {:.2}",
        a.seq_mib,
        rate(k),
        k.as_secs_f64() * 1e6 / (bytes / PAGE) as f64,
        rate(p),
        p.as_secs_f64() * 1e6 / (bytes / PAGE) as f64,
        rate(p) / rate(k)
    );
    println!(
        "metadata after {n} random touches, all resident: {meta:.1} bytes per touched page \
         (page table ~8.5, replacement lists 8 per resident page)"
    );
    csv.push_str(&format!(
        "seq_kernel_pages_per_s,{:.0}\nseq_pagewarden_pages_per_s,{:.0}\nmetadata_bytes_per_page,{meta:.1}\n",
        rate(k),
        rate(p)
    ));
    if let Some(dir) = std::path::Path::new(&a.csv).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&a.csv, csv).expect("write csv");
    println!("CSV: {}", a.csv);
}

//! Copy-on-write forks: how long a fork of a resident arena takes (against copying the same data),
//! and what the first write to a shared page costs on each side.
//!
//! `cargo bench --bench fork -- [--sizes-mib 64,256,1024] [--breaks 20000] [--csv PATH]`
//!
//! The first-write latencies are measured in both fault modes: handler threads (a write-protect
//! fault, served by the handler thread) and in-thread (served in the writing thread).

#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, clippy::cast_sign_loss)]

use pagewarden::{FaultMode, Runtime};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

fn list(s: &str) -> Vec<usize> {
    s.split(',').map(|x| x.trim().parse().expect("a comma-separated list of numbers")).collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

struct Row {
    mib: usize,
    fork: Duration,
    copy_in_arena: Duration,
    memcpy: Duration,
    frames_before: u64,
    frames_after: u64,
}

fn fork_time(mib: usize) -> Row {
    let bytes = mib << 20;
    let rt = Runtime::builder().frame_budget(2 * bytes + (64 << 20)).swap_capacity(64 << 20).build().expect("runtime");
    let parent = rt.arena("parent").create().unwrap();
    let r = parent.reserve(bytes).unwrap();
    r.fill(0, bytes, 0x5A).unwrap();
    let frames_before = rt.stats().frames_in_use;
    let t0 = Instant::now();
    let fork = parent.fork("child").unwrap();
    let fork_d = t0.elapsed();
    let frames_after = rt.stats().frames_in_use;
    drop(fork);
    // The alternative: copy the data into a fresh region (every page a fault and a copy).
    let copy = rt.arena("copy").create().unwrap();
    let c = copy.reserve(bytes).unwrap();
    let chunk = 1 << 20;
    let mut buf = vec![0u8; chunk];
    let t0 = Instant::now();
    for off in (0..bytes).step_by(chunk) {
        r.read(off, &mut buf).unwrap();
        c.write(off, &buf).unwrap();
    }
    let copy_in_arena = t0.elapsed();
    drop(c);
    // The floor of any copying fork: memcpy between two already-populated buffers.
    let src = vec![0x5Au8; bytes];
    let mut dst = vec![1u8; bytes];
    let t0 = Instant::now();
    dst.copy_from_slice(&src);
    let memcpy = t0.elapsed();
    std::hint::black_box(&dst);
    Row { mib, fork: fork_d, copy_in_arena, memcpy, frames_before, frames_after }
}

/// Per-write latency of the first write to each shared page: in the parent (whose frame is the
/// shared copy: the data is copied into the child first) and in the child (which copies from the
/// parent's frame).
fn cow_breaks(pages: usize, mode: FaultMode) -> (Vec<Duration>, Vec<Duration>) {
    let rt = Runtime::builder()
        .fault_mode(mode)
        .frame_budget(3 * pages * PAGE + (32 << 20))
        .swap_capacity(32 << 20)
        .build()
        .expect("runtime");
    let parent = rt.arena("parent").create().unwrap();
    let r = parent.reserve(pages * PAGE).unwrap();
    r.fill(0, pages * PAGE, 1).unwrap();
    let fork = parent.fork("child").unwrap();
    let c = fork.region(&r).unwrap();
    let mut parent_lat = Vec::with_capacity(pages / 2);
    let mut child_lat = Vec::with_capacity(pages / 2);
    for p in 0..pages {
        let (region, lat) = if p % 2 == 0 { (&r, &mut parent_lat) } else { (c, &mut child_lat) };
        let t0 = Instant::now();
        // SAFETY: inside the region, which outlives the access; no other thread touches it.
        unsafe { region.as_ptr().add(p * PAGE).write_volatile(2) };
        lat.push(t0.elapsed());
    }
    let st = rt.stats();
    assert_eq!(st.totals.cow_copies as usize, pages, "every first write copies once");
    (parent_lat, child_lat)
}

fn main() {
    let mut sizes = vec![64, 256, 1024];
    let mut breaks = 20_000;
    let mut csv = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sizes-mib" => sizes = list(&args.next().expect("--sizes-mib LIST")),
            "--breaks" => breaks = args.next().expect("--breaks N").parse().expect("a number"),
            "--csv" => csv = args.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let mut out = String::from("kind,size_mib,value_ms\n");
    println!("fork of a resident arena (no data copied, no frame charged) vs copying it");
    println!(
        "{:>8} {:>10} {:>14} {:>10} {:>12} {:>14}",
        "size", "fork", "copy (arena)", "memcpy", "fork/memcpy", "frames charged"
    );
    for mib in sizes {
        let row = fork_time(mib);
        println!(
            "{:>6}Mi {:>8.2}ms {:>12.1}ms {:>8.1}ms {:>12.2} {:>14}",
            row.mib,
            ms(row.fork),
            ms(row.copy_in_arena),
            ms(row.memcpy),
            ms(row.fork) / ms(row.memcpy),
            row.frames_after - row.frames_before
        );
        out += &format!(
            "fork,{mib},{}\ncopy_in_arena,{mib},{}\nmemcpy,{mib},{}\n",
            ms(row.fork),
            ms(row.copy_in_arena),
            ms(row.memcpy)
        );
    }
    println!("\nfirst write to a shared page ({breaks} pages, raw writes)");
    println!("{:>16} {:>8} {:>10} {:>10} {:>10}", "mode", "side", "p50", "p99", "max");
    for mode in [FaultMode::HandlerThreads, FaultMode::InThread] {
        let (mut p, mut c) = cow_breaks(breaks, mode);
        for (side, v) in [("parent", &mut p), ("child", &mut c)] {
            let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
            let max = *v.iter().max().unwrap();
            println!(
                "{:>16} {side:>8} {:>8.1}µs {:>8.1}µs {:>8.1}µs",
                format!("{mode:?}"),
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
                max.as_secs_f64() * 1e6
            );
            out +=
                &format!("cow_break_{mode:?}_{side}_p50,0,{}\ncow_break_{mode:?}_{side}_p99,0,{}\n", ms(p50), ms(p99));
        }
    }
    let path = csv.unwrap_or_else(|| "target/bench-fork.csv".into());
    if std::fs::write(&path, out).is_ok() {
        println!("\nCSV: {path}");
    }
}

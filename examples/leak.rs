//! A memory leak pushes a stable system over the edge; the OOM killer finds the leaking arena
//! and kills it, and the rest keep running with their data intact.
//!
//! ```text
//! cargo run --example leak
//! ```
//!
//! Three arenas share a 16 MiB frame budget and 16 MiB of swap: a `web` front end and a
//! `database` (both important, each working on a few MiB and checking every read), and a
//! `reporter` that leaks: it takes 256 KiB more every few milliseconds and never gives it back.
//! The leak fills the free frames, then the swap; when a page is needed and nothing can be
//! reclaimed, the runtime runs its OOM killer, which prints a kernel-style report.

use pagewarden::{Error, Event, Impact, Runtime, impact_cost};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const MIB: usize = 1 << 20;

fn mib(pages: u64) -> f64 {
    pages as f64 * PAGE as f64 / MIB as f64
}

/// What a page of a steady arena holds: the page number and a version.
fn record(page: usize, version: u64) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&(page as u64).to_le_bytes());
    r[8..].copy_from_slice(&version.to_le_bytes());
    r
}

fn main() -> Result<(), Error> {
    // The library's warnings about its configuration (a misspelt PAGEWARDEN_* name) show
    // without RUST_LOG; RUST_LOG replaces this filter.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("pagewarden::config=warn,pagewarden::runtime=warn"),
    )
    .init();
    let rt = Runtime::builder().frame_budget(16 * MIB).swap_capacity(16 * MIB).build()?;
    println!("budget 16 MiB of frames, 16 MiB of swap; policy {}\n", rt.stats().policy);

    let web = rt.arena("web").oom_score_adj(-200).impact(Impact::Interactive).create()?;
    let db = rt.arena("database").oom_score_adj(-500).impact(Impact::Interactive).create()?;
    let reporter = rt.arena("reporter").create()?;

    // The steady arenas: each thread keeps writing and re-reading its own working set.
    let stop = Arc::new(AtomicBool::new(false));
    let mut steady = Vec::new();
    for (arena, mib) in [(&web, 3), (&db, 5)] {
        let region = arena.reserve(1 << 30)?;
        let stop = stop.clone();
        steady.push(std::thread::spawn(move || -> Result<(u64, usize), Error> {
            let pages = mib * MIB / PAGE;
            let mut version = vec![0u64; pages];
            let mut ops = 0u64;
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let p = i % pages;
                let mut got = [0u8; 16];
                region.read(p * PAGE, &mut got)?;
                if version[p] > 0 {
                    assert_eq!(got, record(p, version[p]), "page {p} lost its last write");
                }
                version[p] += 1;
                region.write(p * PAGE, &record(p, version[p]))?;
                ops += 1;
                i = i.wrapping_add(7919); // a stride through the working set
            }
            // Every page still holds its last version.
            for (p, &v) in version.iter().enumerate().filter(|(_, v)| **v > 0) {
                let mut got = [0u8; 16];
                region.read(p * PAGE, &mut got)?;
                assert_eq!(got, record(p, v));
            }
            Ok((ops, pages))
        }));
    }

    // The leak, on this thread: 256 KiB every 5 ms, never freed, until it is killed.
    let leak = reporter.reserve(1 << 40)?;
    let t0 = Instant::now();
    let mut leaked = 0usize;
    let outcome = loop {
        match leak.fill(leaked, MIB / 4, 0xAB) {
            Ok(()) => leaked += MIB / 4,
            Err(e) => break e,
        }
        if leaked % (4 * MIB) == 0 {
            let st = rt.stats();
            println!(
                "[{:4.2}s] reporter has leaked {:2} MiB; frames {:5.1}/16 MiB, swap {:5.1}/16 MiB",
                t0.elapsed().as_secs_f64(),
                leaked / MIB,
                mib(st.frames_in_use),
                mib(st.swap_used),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    println!("[{:4.2}s] the reporter's next allocation failed: {outcome}\n", t0.elapsed().as_secs_f64());

    // The kill, as the runtime reported it.
    // (The arena is marked dead before its report is published: wait a moment for it.)
    let events = rt.events();
    let report = std::iter::from_fn(|| events.recv_timeout(Duration::from_secs(5)).ok())
        .find_map(|e| if let Event::Killed(r) = e { Some(r) } else { None });
    let Some(report) = report else {
        println!("no kill was reported: {outcome}");
        std::process::exit(1);
    };
    println!("{report}\n");

    // Let the others run on for a moment after the kill, then stop them and check their data.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for (name, h) in ["web", "database"].iter().zip(steady) {
        let (ops, pages) = h.join().expect("steady thread")?;
        println!("{name:>8}: still running: {ops} read-check-write operations, all {pages} pages verified");
    }

    println!("\nwhy the reporter:");
    let total = report.swap_slots + report.budget_frames;
    for row in &report.candidates {
        let c = &row.candidate;
        println!(
            "  {:<9} frees {:5.1} MiB if killed, badness {:6}, impact cost {:6.2}{}",
            c.name,
            mib(c.unique()),
            c.badness(total),
            impact_cost(c),
            if row.chosen { "   <- victim" } else { "" }
        );
    }
    println!(
        "  The OOM killer looks at what killing each arena would really free and what it would cost. The\n  \
         reporter had grown to hold most of memory, it is an ordinary (Normal) arena, and web and database\n  \
         are marked important (Interactive, negative oom_score_adj): by {} it is the best victim, by\n  \
         far. The kernel's own formula (LinuxBadness: the largest adjusted footprint) agrees here. Killing it\n  \
         freed {:.1} MiB of frames and {:.1} MiB of swap at once, and no other arena lost a byte.",
        report.policy,
        mib(report.frames_freed()),
        mib(report.slots_freed()),
    );
    assert!(reporter.is_killed() && !web.is_killed() && !db.is_killed());
    Ok(())
}

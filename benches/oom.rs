//! The OOM killer's speed: time from exhaustion to the victim's frames being free, for victims
//! of several sizes, and the time to select a victim among many arenas.
//!
//! `cargo bench --bench oom -- [--sizes-mib 64,256,1024] [--arenas 10,100,1000] [--csv PATH]`

#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

use pagewarden::{Deficit, Event, LinuxBadness, Runtime};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

fn list(s: &str) -> Vec<usize> {
    s.split(',').map(|x| x.trim().parse().expect("a comma-separated list of numbers")).collect()
}

/// What one kill cost.
struct Reaction {
    /// The policy's selection time.
    selection: Duration,
    /// Marking the victim dead and handing its frames to the reaper.
    bookkeeping: Duration,
    /// The write that ran into exhaustion: from its call to its return, through the OOM kill and
    /// the first frames being free.
    faulting_write: Duration,
    /// From the kill until all the victim's frames were free again.
    all_free: Duration,
    frames: u64,
}

/// Fills a victim of `mib` MiB, then lets another arena run into exhaustion.
fn reaction(mib: usize) -> Reaction {
    let victim_bytes = mib << 20;
    let rt = Runtime::builder()
        .frame_budget(victim_bytes + (16 << 20))
        .swap_capacity(8 << 20)
        .victim_policy(LinuxBadness) // the largest arena dies: the victim
        .build()
        .expect("runtime");
    let events = rt.events();
    let victim = rt.arena("victim").create().unwrap();
    let v = victim.reserve(victim_bytes).unwrap();
    v.fill(0, victim_bytes, 0x5A).unwrap();
    let trigger = rt.arena("trigger").create().unwrap();
    let t = trigger.reserve(1 << 30).unwrap();
    // Write fresh pages until the OOM killer has run (the victim is the largest arena).
    let mut p = 0;
    let faulting_write = loop {
        let t0 = Instant::now();
        t.write(p * PAGE, &[1; 8]).expect("the trigger arena keeps running");
        let d = t0.elapsed();
        p += 1;
        if victim.is_killed() {
            break d;
        }
    };
    let killed_at = Instant::now() - faulting_write;
    let report = events
        .try_iter()
        .find_map(|e| match e {
            Event::Killed(r) => Some(r),
            _ => None,
        })
        .expect("a kill report");
    assert_eq!(report.victims[0].name, "victim");
    let frames = report.frames_freed();
    let target = report.frames_in_use - frames + 64;
    while rt.stats().frames_in_use > target {
        std::thread::sleep(Duration::from_micros(100));
    }
    let all_free = killed_at.elapsed();
    drop(v);
    Reaction { selection: report.selection, bookkeeping: report.reaping, faulting_write, all_free, frames }
}

fn selection(arenas: usize) -> Duration {
    let rt =
        Runtime::builder().frame_budget(64 << 20).swap_capacity(16 << 20).oom_dry_run(true).build().expect("runtime");
    let mut keep = Vec::new();
    for i in 0..arenas {
        let a = rt.arena(&format!("a{i}")).create().unwrap();
        let r = a.reserve(64 * PAGE).unwrap();
        r.fill(0, (1 + i % 4) * PAGE, 1).unwrap();
        keep.push((a, r));
    }
    // Median of several dry runs.
    let mut t: Vec<Duration> = (0..9).map(|_| rt.run_oom_killer(Deficit { frames: 8, slots: 0 }).selection).collect();
    t.sort();
    t[t.len() / 2]
}

fn main() {
    let mut sizes = vec![64, 256, 1024];
    let mut arenas = vec![10, 100, 1000];
    let mut csv_path = "target/oom.csv".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sizes-mib" => sizes = list(&it.next().expect("--sizes-mib LIST")),
            "--arenas" => arenas = list(&it.next().expect("--arenas LIST")),
            "--csv" => csv_path = it.next().expect("--csv PATH"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let mut csv = String::from("case,value_us\n");
    println!(
        "{:<16} {:>12} {:>12} {:>16} {:>14} {:>12}",
        "victim resident", "selection", "bookkeeping", "faulting write", "all freed", "frames"
    );
    for mib in sizes {
        let r = reaction(mib);
        println!(
            "{:<16} {:>12.1?} {:>12.1?} {:>16.1?} {:>14.1?} {:>12}",
            format!("{mib} MiB"),
            r.selection,
            r.bookkeeping,
            r.faulting_write,
            r.all_free,
            r.frames
        );
        for (k, v) in [
            ("selection", r.selection),
            ("bookkeeping", r.bookkeeping),
            ("faulting_write", r.faulting_write),
            ("all_free", r.all_free),
        ] {
            csv.push_str(&format!("reaction_{mib}MiB_{k},{:.1}\n", v.as_secs_f64() * 1e6));
        }
    }
    println!();
    println!("{:<16} {:>12}", "arenas", "selection");
    for n in arenas {
        let sel = selection(n);
        println!("{:<16} {:>12.1?}", n, sel);
        csv.push_str(&format!("selection_{n}_arenas,{:.1}\n", sel.as_secs_f64() * 1e6));
    }
    if let Some(dir) = std::path::Path::new(&csv_path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&csv_path, csv).expect("write csv");
    println!("CSV: {csv_path}");
}

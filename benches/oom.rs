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

/// Fills a victim of `mib` MiB, then lets another arena run into exhaustion.
fn reaction(mib: usize) -> (Duration, Duration, u64, Duration) {
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
    let t0 = Instant::now();
    // Write fresh pages until the OOM killer has run (the victim is the largest arena).
    let mut p = 0;
    loop {
        t.write(p * PAGE, &[1; 8]).expect("the trigger arena keeps running");
        p += 1;
        if victim.is_killed() {
            break;
        }
    }
    let total = t0.elapsed();
    let report = events
        .try_iter()
        .find_map(|e| match e {
            Event::Killed(r) => Some(r),
            _ => None,
        })
        .expect("a kill report");
    assert_eq!(report.victims[0].name, "victim");
    drop(v);
    (report.selection, report.reaping, report.frames_freed(), total)
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
        "{:<28} {:>12} {:>12} {:>12} {:>14}",
        "victim resident", "selection", "reaping", "frames freed", "fill→kill"
    );
    for mib in sizes {
        let (sel, reap, frames, total) = reaction(mib);
        println!("{:<28} {:>12.1?} {:>12.1?} {:>12} {:>14.1?}", format!("{mib} MiB"), sel, reap, frames, total);
        csv.push_str(&format!("reaction_{mib}MiB_selection,{:.1}\n", sel.as_secs_f64() * 1e6));
        csv.push_str(&format!("reaction_{mib}MiB_reaping,{:.1}\n", reap.as_secs_f64() * 1e6));
    }
    println!();
    println!("{:<28} {:>12}", "arenas", "selection");
    for n in arenas {
        let sel = selection(n);
        println!("{:<28} {:>12.1?}", n, sel);
        csv.push_str(&format!("selection_{n}_arenas,{:.1}\n", sel.as_secs_f64() * 1e6));
    }
    if let Some(dir) = std::path::Path::new(&csv_path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&csv_path, csv).expect("write csv");
    println!("CSV: {csv_path}");
}

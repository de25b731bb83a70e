//! When memory runs out: victim policies on real arenas, exempt arenas, dry run, overcommit,
//! pinned pages, and the pressure trigger.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{
    Arena, Balanced, Deficit, Error, Event, EvictionPath, Greedy, Impact, KillTrigger, LinuxBadness, Overcommit,
    Region, Runtime, VictimPolicy,
};
use std::time::{Duration, Instant};

/// Reserves `pages` pages and writes a recognisable byte to each.
fn filled(a: &Arena, pages: usize, tag: u8) -> Region {
    let r = a.reserve(pages * PAGE).unwrap();
    for p in 0..pages {
        r.write(p * PAGE, &[tag ^ p as u8; 32]).unwrap();
    }
    r
}

fn verify(r: &Region, pages: usize, tag: u8) {
    for p in 0..pages {
        let mut b = [0u8; 32];
        r.read(p * PAGE, &mut b).unwrap();
        assert_eq!(b, [tag ^ p as u8; 32], "page {p}");
    }
}

/// Writes fresh pages until the arena's accessor fails; returns the error and pages written.
fn grow_until_error(r: &Region) -> (Error, usize) {
    for p in 0..r.len() / PAGE {
        if let Err(e) = r.write(p * PAGE, &[0xAA; 64]) {
            return (e, p);
        }
    }
    panic!("the arena never ran out of memory");
}

fn events(rt: &Runtime) -> Vec<Event> {
    rt.events().try_iter().collect()
}

#[test]
fn the_leak_dies_not_the_big_important_arena() {
    fn run(policy: impl VictimPolicy + 'static) {
        let name = policy.name().to_string();
        let Some(rt) = runtime_with(32, 32, EvictionPath::Auto, |b| b.victim_policy(policy)) else { return };
        let db = rt.arena("database").oom_score_adj(-500).impact(Impact::Interactive).create().unwrap();
        let dbr = filled(&db, 20, 0xD0);
        let leaky = rt.arena("leaky").create().unwrap();
        let lr = leaky.reserve(1 << 30).unwrap();
        let (e, _) = grow_until_error(&lr);
        assert!(matches!(e, Error::Killed { ref arena } if arena == "leaky"), "{name}: {e}");
        assert!(!db.is_killed(), "{name}: the database was killed");
        verify(&dbr, 20, 0xD0);
    }
    run(Greedy);
    run(Balanced);
    run(LinuxBadness);
}

#[test]
fn greedy_kills_two_small_background_arenas_rather_than_one_interactive() {
    let Some(rt) = runtime(160, 256, EvictionPath::Auto) else { return };
    let ui = rt.arena("ui").impact(Impact::Interactive).create().unwrap();
    let bg1 = rt.arena("bg1").impact(Impact::Background).create().unwrap();
    let bg2 = rt.arena("bg2").impact(Impact::Background).create().unwrap();
    let bg3 = rt.arena("bg3").impact(Impact::Background).create().unwrap();
    let _regions = (filled(&ui, 40, 1), filled(&bg1, 15, 2), filled(&bg2, 15, 3), filled(&bg3, 2, 4));
    let r = rt.run_oom_killer(Deficit { frames: 25, slots: 0 });
    let mut victims: Vec<&str> = r.victims.iter().map(|v| v.name.as_str()).collect();
    victims.sort();
    assert_eq!(victims, ["bg1", "bg2"], "{r}");
    assert!(!ui.is_killed() && !bg3.is_killed() && bg1.is_killed() && bg2.is_killed());
    assert!(r.frames_freed() >= 30, "{r}");
    // The kernel's formula would have taken the interactive arena: it is the largest.
    rt.set_victim_policy(LinuxBadness);
    let r = rt.run_oom_killer(Deficit { frames: 25, slots: 0 });
    assert_eq!(r.victims.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["ui"], "{r}");
}

#[test]
fn balanced_picks_the_arena_that_relieves_frames_and_swap() {
    let Some(rt) = runtime_with(160, 256, EvictionPath::Auto, |b| b.victim_policy(Balanced)) else { return };
    let frames_only = rt.arena("frames-only").create().unwrap();
    let slots_only = rt.arena("slots-only").create().unwrap();
    let both = rt.arena("both").create().unwrap();
    let _f = filled(&frames_only, 40, 1);
    let s = filled(&slots_only, 40, 2);
    s.page_out(0, 40 * PAGE).unwrap();
    let b = filled(&both, 40, 3);
    b.page_out(0, 20 * PAGE).unwrap();
    let st = rt.stats();
    let find = |n: &str| st.arenas.iter().find(|a| a.name == n).unwrap().clone();
    assert_eq!((find("slots-only").resident_pages, find("slots-only").swapped_pages), (0, 40));
    assert_eq!((find("both").resident_pages, find("both").swapped_pages), (20, 20));
    let r = rt.run_oom_killer(Deficit { frames: 15, slots: 15 });
    assert_eq!(r.victims.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["both"], "{r}");
    assert!(r.victims[0].frames_freed >= 15 && r.victims[0].slots_freed >= 15, "{r}");
}

#[test]
fn exempt_arenas_are_never_killed_and_the_fault_fails_cleanly() {
    for (label, builder) in [("adj -1000", 0), ("critical", 1)] {
        let Some(rt) = runtime(24, 16, EvictionPath::Auto) else { return };
        let a = match builder {
            0 => rt.arena("precious").oom_score_adj(-1000).create().unwrap(),
            _ => rt.arena("precious").impact(Impact::Critical).create().unwrap(),
        };
        let r = a.reserve(1 << 30).unwrap();
        let (e, written) = grow_until_error(&r);
        assert!(matches!(e, Error::OutOfMemory { .. }), "{label}: {e}");
        assert!(e.to_string().contains("out of memory"), "{e}");
        assert!(!a.is_killed(), "{label}: an exempt arena was killed");
        assert!(written <= 24 + 16, "{label}: {written}");
        let evs = events(&rt);
        let unresolved = evs.iter().find_map(|e| match e {
            Event::OomUnresolved(r) => Some(r.clone()),
            _ => None,
        });
        let report = unresolved.unwrap_or_else(|| panic!("{label}: no OomUnresolved event in {evs:?}"));
        assert!(report.victims.is_empty() && report.candidates.iter().all(|c| c.exempt), "{report}");
        assert!(report.to_string().contains("nothing killable"), "{report}");
        assert!(!evs.iter().any(|e| matches!(e, Event::Killed(_))));
        // It failed cleanly: the arena still works once memory is freed.
        drop(r);
        let again = filled(&a, 10, 9);
        verify(&again, 10, 9);
    }
}

#[test]
fn dry_run_reports_and_kills_nothing() {
    let Some(rt) = runtime_with(24, 16, EvictionPath::Auto, |b| b.oom_dry_run(true)) else { return };
    let other = rt.arena("other").create().unwrap();
    let o = filled(&other, 4, 7);
    let leaky = rt.arena("leaky").create().unwrap();
    let lr = leaky.reserve(1 << 30).unwrap();
    let (e, _) = grow_until_error(&lr);
    assert!(matches!(e, Error::OutOfMemory { .. }), "{e}");
    assert!(!leaky.is_killed() && !other.is_killed());
    let evs = events(&rt);
    let would = evs
        .iter()
        .find_map(|e| match e {
            Event::WouldKill(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a WouldKill report");
    assert!(would.dry_run && would.victims.iter().any(|v| v.name == "leaky"), "{would}");
    assert!(would.to_string().contains("Would kill"), "{would}");
    assert_eq!(rt.stats().kills, 0);
    // Memory is still exhausted: even the other arena's swapped pages cannot come back...
    let mut b = [0u8; 32];
    assert!(matches!(o.read(0, &mut b), Err(Error::OutOfMemory { .. }) | Ok(())));
    // ...until the leak is released by its owner.
    drop(lr);
    verify(&o, 4, 7);
}

#[test]
fn strict_overcommit_refuses_what_exceeds_the_limit() {
    let Some(rt) = runtime_with(64, 128, EvictionPath::Auto, |b| b.overcommit(Overcommit::Strict { ratio: 0.5 }))
    else {
        return;
    };
    // Limit: 128 swap pages + 0.5 x 64 frames = 160 pages.
    let a = rt.arena("a").create().unwrap();
    let big = a.reserve(128 * PAGE).unwrap();
    let e = a.reserve(64 * PAGE).unwrap_err();
    match &e {
        Error::CommitLimit { requested, committed, limit } => {
            assert_eq!((*requested, *committed, *limit), (64 * PAGE as u64, 128 * PAGE as u64, 160 * PAGE as u64));
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains(&format!("{}", 160 * PAGE)), "{e}");
    let fits = a.reserve(32 * PAGE).unwrap();
    let st = rt.stats();
    assert_eq!((st.committed_bytes, st.commit_limit_bytes), (160 * PAGE as u64, 160 * PAGE as u64));
    drop(big);
    let _again = a.reserve(64 * PAGE).unwrap();
    drop(fits);

    let Some(rt) = runtime_with(64, 128, EvictionPath::Auto, |b| b.overcommit(Overcommit::Heuristic)) else { return };
    let a = rt.arena("h").create().unwrap();
    assert!(matches!(a.reserve(193 * PAGE), Err(Error::CommitLimit { .. })), "larger than frames + swap");
    let _x = a.reserve(192 * PAGE).unwrap();
    let _y = a.reserve(192 * PAGE).unwrap();
}

#[test]
fn pinned_pages_survive_heavy_eviction_and_the_limit_holds() {
    for path in PATHS {
        let Some(rt) = runtime_with(32, 512, path, |b| b.pin_limit(16 * PAGE)) else { continue };
        let a = rt.arena("pins").create().unwrap();
        let r = filled(&a, 200, 0x33);
        r.pin(0, 10 * PAGE).unwrap();
        assert_eq!(rt.stats().pinned_frames, 10);
        // Heavy eviction around them.
        for _ in 0..2 {
            verify(&r, 200, 0x33);
            r.page_out(0, 200 * PAGE).unwrap();
            assert_eq!(a.stats().resident_pages, 10, "{path:?}: only the pinned pages stay");
        }
        let st = a.stats();
        assert_eq!(st.pinned_pages, 10, "{path:?}");
        assert!(st.resident_pages >= 10);
        assert_eq!(r.page_out(0, 10 * PAGE).unwrap(), 0, "{path:?}: pinned pages were evicted");
        verify(&r, 200, 0x33);
        // Limits and misuse.
        assert!(matches!(r.pin(5 * PAGE, PAGE), Err(Error::AlreadyPinned { offset }) if offset == 5 * PAGE));
        assert!(matches!(r.pin(20 * PAGE, 10 * PAGE), Err(Error::PinLimit { requested: 10, pinned: 10, limit: 16 })));
        assert_eq!(rt.stats().pinned_frames, 10, "a refused pin must leave nothing pinned");
        assert!(matches!(r.unpin(10 * PAGE, PAGE), Err(Error::NotPinned { .. })));
        r.unpin(0, 10 * PAGE).unwrap();
        assert_eq!(rt.stats().pinned_frames, 0);
        assert!(r.page_out(0, 10 * PAGE).unwrap() <= 10);
        // A kill releases pins.
        r.pin(0, 5 * PAGE).unwrap();
        a.kill().unwrap();
        assert_eq!(rt.stats().pinned_frames, 0, "{path:?}");
        assert!(matches!(r.pin(0, PAGE), Err(Error::Killed { .. })));
    }
}

#[test]
fn a_thrashing_arena_is_relieved_by_a_pressure_kill() {
    for dry in [false, true] {
        let window = Duration::from_millis(300);
        let Some(rt) = runtime_with(64, 4096, EvictionPath::Auto, |b| {
            b.pressure_kill(0.3, window).oom_dry_run(dry).max_readahead(1)
        }) else {
            return;
        };
        let calm = rt.arena("calm").create().unwrap();
        let c = filled(&calm, 8, 5);
        let thrasher = rt.arena("thrasher").create().unwrap();
        let t = thrasher.reserve(512 * PAGE).unwrap();
        let mut rng = Rng(seed(99));
        let t0 = Instant::now();
        let mut ops = 0;
        let mut outcome = None;
        while t0.elapsed() < Duration::from_secs(20) && ops < 40_000 {
            let p = rng.below(512) as usize;
            let r = if rng.below(2) == 0 { t.write(p * PAGE, &[1; 8]) } else { t.read(p * PAGE, &mut [0; 8]) };
            ops += 1;
            if let Err(e) = r {
                outcome = Some(e);
                break;
            }
            if dry
                && rt
                    .events()
                    .try_iter()
                    .any(|e| matches!(e, Event::WouldKill(ref r) if matches!(r.trigger, KillTrigger::Pressure { .. })))
            {
                break;
            }
        }
        let faults = thrasher.stats().counters.faults();
        eprintln!("dry={dry}: {ops} ops, {faults} faults, {:?}; {outcome:?}", t0.elapsed());
        if dry {
            assert!(outcome.is_none(), "dry run must kill nothing: {outcome:?}");
            assert!(!thrasher.is_killed());
            assert!(ops < 40_000, "no pressure report within 40 000 operations");
        } else {
            assert!(matches!(outcome, Some(Error::Killed { ref arena }) if arena == "thrasher"), "{outcome:?}");
            assert!(faults < 20_000, "the kill took {faults} faults");
        }
        assert!(!calm.is_killed());
        verify(&c, 8, 5);
        let st = rt.stats();
        assert!(st.pressure.some.total > Duration::ZERO, "{st}");
    }
}

/// Runs in a child process: a raw write that finds no memory in an exempt arena raises SIGBUS
/// instead of hanging (safe accessors get `Error::OutOfMemory` instead).
#[test]
fn raw_access_without_memory_child() {
    if !is_child("raw_access_without_memory_child") {
        return;
    }
    let rt = runtime(24, 16, EvictionPath::Auto).expect("uffd available in the child");
    let a = rt.arena("precious").oom_score_adj(-1000).create().unwrap();
    let r = a.reserve(1 << 30).unwrap();
    let (e, written) = grow_until_error(&r);
    assert!(matches!(e, Error::OutOfMemory { .. }), "{e}");
    println!("exhausted after {written} pages");
    // SAFETY: inside the region, which outlives this access. It must raise SIGBUS.
    unsafe { r.as_ptr().add((written + 1) * PAGE).write_volatile(1) };
    println!("UNREACHABLE: a raw write without memory completed");
    std::process::exit(3);
}

#[test]
fn raw_access_without_memory_raises_sigbus() {
    if is_child("raw_access_without_memory_child") || runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    let (status, stdout) = run_child("raw_access_without_memory_child");
    assert!(stdout.contains("exhausted after"), "{stdout}");
    assert!(!stdout.contains("UNREACHABLE"), "{stdout}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGBUS), "child status {status:?}; stdout {stdout}");
}

#[test]
fn concurrent_accessors_on_a_page_without_memory_never_hang() {
    let Some(rt) = runtime(24, 16, EvictionPath::Auto) else { return };
    let a = rt.arena("precious").oom_score_adj(-1000).create().unwrap();
    let r = std::sync::Arc::new(a.reserve(1 << 30).unwrap());
    let (_, written) = grow_until_error(&r);
    // Several threads keep writing (and reading) the same pages that cannot get a frame.
    let target = (written + 5) * PAGE;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let r = r.clone();
            std::thread::spawn(move || {
                for _ in 0..40 {
                    if i % 2 == 0 {
                        let res = r.write(target, &[1; 2 * PAGE]);
                        assert!(matches!(res, Err(Error::OutOfMemory { .. })), "{res:?}");
                    } else {
                        // A read may be served from another accessor's read-only emergency copy,
                        // which holds the real (here: zero) contents.
                        let mut b = vec![7u8; 2 * PAGE];
                        match r.read(target, &mut b) {
                            Ok(()) => assert!(b.iter().all(|&x| x == 0), "a read saw made-up data"),
                            Err(Error::OutOfMemory { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    for h in handles {
        while !h.is_finished() {
            assert!(t0.elapsed() < Duration::from_secs(60), "an accessor hung on a page without memory");
            std::thread::sleep(Duration::from_millis(10));
        }
        h.join().unwrap();
    }
    assert!(!a.is_killed());
    rt.debug_check_invariants().unwrap();
}

#[test]
fn linux_badness_counts_shared_pages_in_swap_as_swap_entries() {
    let Some(rt) = runtime_with(64, 128, EvictionPath::Auto, |b| b.victim_policy(LinuxBadness)) else { return };
    let parent = rt.arena("parent").create().unwrap();
    let p = filled(&parent, 40, 1);
    p.page_out(0, 40 * PAGE).unwrap();
    let child = parent.fork("child").unwrap();
    let private = rt.arena("private").create().unwrap();
    let _q = filled(&private, 30, 2);
    // Every page of the parent is now a share in swap, referred to by both sides: each has 40 swap
    // entries, as the kernel would count them; neither side alone frees their slots.
    let st = rt.stats();
    let find = |n: &str| st.arenas.iter().find(|a| a.name == n).unwrap().clone();
    for n in ["parent", "child"] {
        let a = find(n);
        assert_eq!((a.resident_pages, a.swapped_pages, a.shared_pages), (0, 40, 40), "{n}: {st}");
        assert_eq!(a.unique_pages, 0, "{n}: {st}");
    }
    assert!(find("parent").oom_score > find("private").oom_score, "{st}");
    // So the kernel's formula picks a side of the fork (40 pages each) over the 30 resident ones.
    let r = rt.run_oom_killer(Deficit { frames: 4, slots: 0 });
    assert_eq!(r.victims.len(), 1, "{r}");
    assert_ne!(r.victims[0].name, "private", "{r}");
    // The survivor still reads the data.
    let survivor = if parent.is_killed() { child.region(&p).unwrap() } else { &p };
    verify(survivor, 40, 1);
    drop(child);
}

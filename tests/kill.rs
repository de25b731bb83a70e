//! Kill mechanics: an arena whose working set cannot fit in frames plus swap is killed; its
//! accessors fail with `Error::Killed`; the other arenas keep their data; nothing crashes; raw
//! access to the killed arena raises SIGBUS (checked in a child process).

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, Event, EvictionPath, KillTrigger};
use std::os::unix::process::ExitStatusExt;

#[test]
fn arena_that_cannot_fit_is_killed_and_others_survive() {
    for path in PATHS {
        let Some(rt) = runtime(24, 32, path) else {
            continue;
        };
        let events = rt.events();
        let bystander = rt.arena("bystander").create().unwrap();
        let b = bystander.reserve(8 * PAGE).unwrap();
        for i in 0..8 {
            b.fill(i * PAGE, PAGE, 0xB0 + i as u8).unwrap();
        }
        let victim = rt.arena("leaky").create().unwrap();
        let v = victim.reserve(1 << 30).unwrap();
        let mut written = 0;
        let mut killed = false;
        for i in 0..200usize {
            match v.write(i * PAGE, &[i as u8 | 1; 64]) {
                Ok(()) => written += 1,
                Err(Error::Killed { arena }) => {
                    assert_eq!(arena, "leaky");
                    killed = true;
                    break;
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert!(killed, "{path:?}: 200 dirty pages cannot fit in 24 frames + 32 slots, yet no kill");
        assert!(written <= 24 + 32, "{path:?}: {written} pages written; more than frames + swap");
        assert!(victim.is_killed());
        // Every accessor of the killed arena fails, none crashes.
        let mut buf = [0u8; 16];
        assert!(matches!(v.read(0, &mut buf), Err(Error::Killed { .. })));
        assert!(matches!(v.fill(PAGE, 10, 1), Err(Error::Killed { .. })));
        assert!(matches!(v.page_out(0, PAGE), Err(Error::Killed { .. })));
        assert!(matches!(victim.reserve(PAGE), Err(Error::Killed { .. })));
        assert!(victim.kill().is_none(), "a second kill reports nothing");
        // The bystander's data is intact.
        for i in 0..8 {
            let mut page = vec![0u8; PAGE];
            b.read(i * PAGE, &mut page).unwrap();
            assert!(page.iter().all(|&x| x == 0xB0 + i as u8), "{path:?}: bystander page {i} damaged");
        }
        // The kill was published with a report, and its frames and slots were freed.
        // A low-swap warning came first, then the kill with its report.
        let evs: Vec<Event> = events.try_iter().collect();
        let low = evs.iter().position(|e| matches!(e, Event::SwapLow { .. }));
        let kill = evs.iter().position(|e| matches!(e, Event::Killed(_)));
        assert!(low.is_some() && kill.is_some() && low < kill, "{evs:?}");
        let Some(Event::Killed(r)) = kill.map(|i| &evs[i]) else { unreachable!() };
        assert_eq!(r.victims.len(), 1, "{r}");
        assert_eq!(r.victims[0].name, "leaky");
        assert!(matches!(r.trigger, KillTrigger::Exhaustion { ref faulting_arena } if faulting_arena == "leaky"));
        assert!(r.frames_freed() + r.slots_freed() > 0, "{r}");
        assert_eq!(r.candidates.len(), 2, "the report lists every live arena: {r}");
        eprintln!("{r}");
        let st = rt.stats();
        assert_eq!(st.kills, 1);
        let dead = st.arenas.iter().find(|a| a.name == "leaky").unwrap();
        assert_eq!((dead.resident_pages, dead.swapped_pages), (0, 0));
        // The runtime keeps working for everyone else.
        eprintln!("{}", rt.stats());
        let fresh = rt.arena("fresh").create().unwrap();
        let f = fresh.reserve(40 * PAGE).unwrap();
        for i in 0..40 {
            f.write(i * PAGE, &[7; 8]).unwrap();
        }
        for i in 0..40 {
            let mut x = [0u8; 8];
            f.read(i * PAGE, &mut x).unwrap();
            assert_eq!(x, [7; 8]);
        }
    }
}

#[test]
fn dropping_a_killed_arena_and_runtime_is_clean() {
    let Some(rt) = runtime(16, 16, EvictionPath::Auto) else {
        return;
    };
    let a = rt.arena("x").create().unwrap();
    let r = a.reserve(64 * PAGE).unwrap();
    r.fill(0, 8 * PAGE, 1).unwrap();
    a.kill().unwrap();
    drop(rt);
    drop(a);
    drop(r);
}

/// Runs in a child process: raw access to a killed arena's page must raise SIGBUS.
#[test]
fn raw_access_after_kill_child() {
    if !is_child("raw_access_after_kill_child") {
        return;
    }
    let rt = runtime(16, 16, EvictionPath::Auto).expect("uffd available in the child");
    let a = rt.arena("victim").create().unwrap();
    let r = a.reserve(16 * PAGE).unwrap();
    let p = r.as_ptr();
    // SAFETY: inside the region, which lives until the end of this function.
    unsafe { p.write_volatile(42) };
    a.kill().unwrap();
    // SAFETY: as above. The arena is dead: this read must raise SIGBUS, never return.
    let v = unsafe { p.add(PAGE).read_volatile() };
    println!("UNREACHABLE: read {v} from a killed arena");
    std::process::exit(3);
}

#[test]
fn raw_access_after_kill_raises_sigbus() {
    if is_child("raw_access_after_kill_child") || runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    let (status, stdout) = run_child("raw_access_after_kill_child");
    assert!(!stdout.contains("UNREACHABLE"), "raw read of a killed page returned data: {stdout}");
    assert_eq!(status.signal(), Some(libc::SIGBUS), "child status {status:?}; stdout {stdout}");
}

//! Property-based fuzzing of the public API: random sequences of operations, bad arguments
//! included, checked against a model. Every operation must return (no panic, no hang — a
//! watchdog aborts the process if one takes too long), errors must be the typed ones the model
//! expects, and contents must match byte for byte.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, EvictionPath, FaultMode, Region};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Op {
    Reserve(usize),
    Release(usize),
    Write { r: usize, off: usize, len: usize, byte: u8 },
    Read { r: usize, off: usize, len: usize },
    Fill { r: usize, off: usize, len: usize, byte: u8 },
    PageOut { r: usize, off: usize, len: usize },
    Pin { r: usize, page: usize, n: usize },
    Unpin { r: usize, page: usize, n: usize },
    Reclaim(usize),
}

fn op() -> impl Strategy<Value = Op> {
    // Sizes and offsets deliberately run past the ends of regions, and to zero.
    let size = prop_oneof![Just(0usize), 1usize..(24 * PAGE), Just(usize::MAX / 2)];
    prop_oneof![
        size.prop_map(Op::Reserve),
        (0usize..4).prop_map(Op::Release),
        (0usize..4, 0usize..(26 * PAGE), 0usize..(3 * PAGE), any::<u8>()).prop_map(|(r, off, len, byte)| Op::Write {
            r,
            off,
            len,
            byte
        }),
        (0usize..4, 0usize..(26 * PAGE), 0usize..(3 * PAGE)).prop_map(|(r, off, len)| Op::Read { r, off, len }),
        (0usize..4, 0usize..(26 * PAGE), 0usize..(5 * PAGE), any::<u8>()).prop_map(|(r, off, len, byte)| Op::Fill {
            r,
            off,
            len,
            byte
        }),
        (0usize..4, 0usize..(26 * PAGE), 0usize..(26 * PAGE)).prop_map(|(r, off, len)| Op::PageOut { r, off, len }),
        (0usize..4, 0usize..26, 0usize..4).prop_map(|(r, page, n)| Op::Pin { r, page, n }),
        (0usize..4, 0usize..26, 0usize..4).prop_map(|(r, page, n)| Op::Unpin { r, page, n }),
        (0usize..32).prop_map(Op::Reclaim),
    ]
}

struct Slot {
    region: Region,
    model: Vec<u8>,
    pinned: Vec<bool>,
}

/// Aborts the process if an operation does not return within a minute.
fn watchdog() -> &'static AtomicU64 {
    static BEAT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        std::thread::spawn(|| {
            let t0 = Instant::now();
            let mut last = (0, Duration::ZERO);
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let b = BEAT.load(Ordering::Relaxed);
                if b != last.0 {
                    last = (b, t0.elapsed());
                } else if b != 0 && t0.elapsed() - last.1 > Duration::from_secs(60) {
                    eprintln!("fuzz watchdog: an operation has not returned for 60 s: a hang");
                    std::process::abort();
                }
            }
        });
    });
    &BEAT
}

fn run(ops: &[Op], path: EvictionPath, mode: FaultMode) -> Result<(), TestCaseError> {
    let beat = watchdog();
    let Some(rt) = runtime_with(16, 256, path, |b| b.fault_mode(mode).max_readahead(4).pin_limit(6 * PAGE)) else {
        return Ok(());
    };
    let arena = rt.arena("fuzz").create().unwrap();
    let mut slots: Vec<Slot> = Vec::new();
    let mut pinned_total = 0usize;
    for op in ops {
        beat.fetch_add(1, Ordering::Relaxed);
        match *op {
            Op::Reserve(len) => match arena.reserve(len) {
                Ok(region) => {
                    prop_assert!(len > 0);
                    let pages = region.len() / PAGE;
                    slots.push(Slot { model: vec![0; region.len()], pinned: vec![false; pages], region });
                }
                Err(Error::InvalidArgument { .. }) => prop_assert!(len == 0 || len > 1 << 44),
                Err(e) => prop_assert!(false, "reserve({len}): {e}"),
            },
            Op::Release(i) => {
                if i < slots.len() {
                    pinned_total -= slots[i].pinned.iter().filter(|&&p| p).count();
                    slots.swap_remove(i);
                }
            }
            Op::Write { r, off, len, byte } | Op::Fill { r, off, len, byte } => {
                let Some(s) = slots.get_mut(r) else { continue };
                let fits = off.checked_add(len).is_some_and(|e| e <= s.model.len());
                let res = if matches!(op, Op::Write { .. }) {
                    s.region.write(off, &vec![byte; len])
                } else {
                    s.region.fill(off, len, byte)
                };
                match res {
                    Ok(()) => {
                        prop_assert!(fits);
                        s.model[off..off + len].fill(byte);
                    }
                    Err(Error::OutOfBounds { .. }) => prop_assert!(!fits),
                    Err(e) => prop_assert!(false, "{op:?}: {e}"),
                }
            }
            Op::Read { r, off, len } => {
                let Some(s) = slots.get(r) else { continue };
                let fits = off.checked_add(len).is_some_and(|e| e <= s.model.len());
                let mut buf = vec![0xEE; len];
                match s.region.read(off, &mut buf) {
                    Ok(()) => {
                        prop_assert!(fits);
                        prop_assert_eq!(&buf[..], &s.model[off..off + len], "read at {} len {}", off, len);
                    }
                    Err(Error::OutOfBounds { .. }) => prop_assert!(!fits),
                    Err(e) => prop_assert!(false, "{op:?}: {e}"),
                }
            }
            Op::PageOut { r, off, len } => {
                let Some(s) = slots.get(r) else { continue };
                let ok_args = off % PAGE == 0 && off.checked_add(len).is_some_and(|e| e <= s.model.len());
                match s.region.page_out(off, len) {
                    Ok(_) => prop_assert!(ok_args),
                    Err(Error::OutOfBounds { .. } | Error::InvalidArgument { .. }) => prop_assert!(!ok_args),
                    Err(e) => prop_assert!(false, "{op:?}: {e}"),
                }
            }
            Op::Pin { r, page, n } => {
                let Some(s) = slots.get_mut(r) else { continue };
                let pages = s.pinned.len();
                let res = s.region.pin(page * PAGE, n * PAGE);
                let in_range = n > 0 && page + n <= pages;
                match res {
                    Ok(()) => {
                        prop_assert!(in_range && !s.pinned[page..page + n].iter().any(|&p| p));
                        prop_assert!(pinned_total + n <= 6);
                        s.pinned[page..page + n].fill(true);
                        pinned_total += n;
                    }
                    Err(Error::AlreadyPinned { .. }) => {
                        prop_assert!(s.pinned[page..(page + n).min(pages)].iter().any(|&p| p))
                    }
                    Err(Error::PinLimit { .. }) => prop_assert!(pinned_total + n > 6),
                    Err(Error::OutOfBounds { .. } | Error::InvalidArgument { .. }) => prop_assert!(!in_range),
                    Err(e) => prop_assert!(false, "{op:?}: {e}"),
                }
            }
            Op::Unpin { r, page, n } => {
                let Some(s) = slots.get_mut(r) else { continue };
                let pages = s.pinned.len();
                let in_range = n > 0 && page + n <= pages;
                match s.region.unpin(page * PAGE, n * PAGE) {
                    Ok(()) => {
                        prop_assert!(in_range && s.pinned[page..page + n].iter().all(|&p| p));
                        s.pinned[page..page + n].fill(false);
                        pinned_total -= n;
                    }
                    Err(Error::NotPinned { .. }) => prop_assert!(in_range),
                    Err(Error::OutOfBounds { .. } | Error::InvalidArgument { .. }) => prop_assert!(!in_range),
                    Err(e) => prop_assert!(false, "{op:?}: {e}"),
                }
            }
            Op::Reclaim(n) => {
                rt.reclaim(n);
            }
        }
        if let Err(e) = rt.debug_check_invariants() {
            prop_assert!(false, "after {op:?}: {e}");
        }
    }
    for s in &slots {
        let mut buf = vec![0u8; s.model.len()];
        s.region.read(0, &mut buf).unwrap();
        prop_assert!(buf == s.model, "final contents differ");
    }
    prop_assert_eq!(rt.stats().pinned_frames as usize, pinned_total);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn api_sequences_match_the_model(ops in proptest::collection::vec(op(), 1..60), pick in 0usize..4) {
        let (path, mode) = [
            (EvictionPath::Move, FaultMode::HandlerThreads),
            (EvictionPath::WriteProtect, FaultMode::HandlerThreads),
            (EvictionPath::Move, FaultMode::InThread),
            (EvictionPath::WriteProtect, FaultMode::InThread),
        ][pick];
        run(&ops, path, mode)?;
    }
}

//! Property-based fuzzing of the public API: random sequences of operations, bad arguments
//! included, checked against a model. Every operation must return (no panic, no hang — a
//! watchdog aborts the process if one takes too long), errors must be the typed ones the model
//! expects, and contents must match byte for byte.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, EvictionPath, FaultMode, MapMode, Region};
use proptest::prelude::*;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Op {
    Reserve(usize),
    Release(usize),
    Write {
        r: usize,
        off: usize,
        len: usize,
        byte: u8,
    },
    Read {
        r: usize,
        off: usize,
        len: usize,
    },
    Fill {
        r: usize,
        off: usize,
        len: usize,
        byte: u8,
    },
    PageOut {
        r: usize,
        off: usize,
        len: usize,
    },
    Pin {
        r: usize,
        page: usize,
        n: usize,
    },
    Unpin {
        r: usize,
        page: usize,
        n: usize,
    },
    Reclaim(usize),
    /// Fork the arena; the child's regions join the slots.
    Fork,
    /// Map `len` bytes of a fresh 24-page file from `off` (page-aligned or not, possibly past
    /// its end).
    MapFile {
        off: usize,
        len: usize,
        shared: bool,
    },
    Flush(usize),
}

/// Pages in each mapped file.
const FILE_PAGES: usize = 24;

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
        Just(Op::Fork),
        (prop_oneof![(0usize..30).prop_map(|p| p * PAGE), 1usize..(30 * PAGE)], 0usize..(30 * PAGE), any::<bool>())
            .prop_map(|(off, len, shared)| Op::MapFile { off, len, shared }),
        (0usize..4).prop_map(Op::Flush),
    ]
}

struct Slot {
    region: Region,
    model: Vec<u8>,
    pinned: Vec<bool>,
    /// For a file map: the file, whether it is `Shared`, and the file offset mapped.
    file: Option<(std::fs::File, bool, usize)>,
    /// Pages at least partly inside the file (all of them for anonymous regions).
    valid: usize,
}

impl Slot {
    /// Whether an access of `len` bytes at `off` (inside the region) reaches past the file.
    fn beyond(&self, off: usize, len: usize) -> bool {
        len > 0 && (off + len - 1) / PAGE >= self.valid
    }

    fn file_matches(&self) -> bool {
        file_matches(&self.file, &self.model)
    }
}

/// For a `Shared` map: the file holds the model over its valid pages.
fn file_matches(file: &Option<(std::fs::File, bool, usize)>, model: &[u8]) -> bool {
    let Some((f, true, at)) = file else { return true };
    let n = (FILE_PAGES * PAGE).saturating_sub(*at).min(model.len());
    let mut disk = vec![0u8; n];
    f.read_exact_at(&mut disk, *at as u64).unwrap();
    disk == model[..n]
}

fn temp_file(data: &[u8]) -> std::fs::File {
    static N: AtomicU64 = AtomicU64::new(0);
    let p = std::env::temp_dir().join(format!("pw-fuzz-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    f.write_all_at(data, 0).unwrap();
    f
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
                    slots.push(Slot {
                        model: vec![0; region.len()],
                        pinned: vec![false; pages],
                        region,
                        file: None,
                        valid: usize::MAX,
                    });
                }
                Err(Error::InvalidArgument { .. }) => prop_assert!(len == 0 || len > 1 << 44),
                Err(e) => prop_assert!(false, "reserve({len}): {e}"),
            },
            Op::Release(i) => {
                if i < slots.len() {
                    pinned_total -= slots[i].pinned.iter().filter(|&&p| p).count();
                    let Slot { region, model, file, .. } = slots.swap_remove(i);
                    drop(region);
                    prop_assert!(file_matches(&file, &model), "a released Shared map's file differs from the model");
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
                        prop_assert!(fits && !s.beyond(off, len));
                        s.model[off..off + len].fill(byte);
                    }
                    Err(Error::OutOfBounds { .. }) => prop_assert!(!fits),
                    Err(Error::BeyondEndOfFile { .. }) => prop_assert!(fits && s.beyond(off, len)),
                    Err(e) => prop_assert!(false, "{op:?}: {e}"),
                }
            }
            Op::Read { r, off, len } => {
                let Some(s) = slots.get(r) else { continue };
                let fits = off.checked_add(len).is_some_and(|e| e <= s.model.len());
                let mut buf = vec![0xEE; len];
                match s.region.read(off, &mut buf) {
                    Ok(()) => {
                        prop_assert!(fits && !s.beyond(off, len));
                        prop_assert_eq!(&buf[..], &s.model[off..off + len], "read at {} len {}", off, len);
                    }
                    Err(Error::OutOfBounds { .. }) => prop_assert!(!fits),
                    Err(Error::BeyondEndOfFile { .. }) => prop_assert!(fits && s.beyond(off, len)),
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
                    Err(Error::BeyondEndOfFile { .. }) => prop_assert!(in_range && page + n > s.valid),
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
            Op::Fork => {
                let mine: Vec<usize> =
                    (0..slots.len()).filter(|&i| slots[i].region.arena().id() == arena.id()).collect();
                let shared_map = mine.iter().any(|&i| matches!(slots[i].file, Some((_, true, _))));
                match arena.fork("child") {
                    Ok(mut f) => {
                        prop_assert!(!shared_map);
                        for i in mine {
                            let s = &slots[i];
                            let region = f.take_region(&s.region).expect("a child region per parent region");
                            let file = s.file.as_ref().map(|(f, sh, at)| (f.try_clone().unwrap(), *sh, *at));
                            let (model, pinned, valid) = (s.model.clone(), vec![false; s.pinned.len()], s.valid);
                            slots.push(Slot { region, model, pinned, file, valid });
                        }
                    }
                    Err(Error::InvalidArgument { what: "fork", .. }) => prop_assert!(shared_map),
                    Err(e) => prop_assert!(false, "fork: {e}"),
                }
            }
            Op::MapFile { off, len, shared } => {
                let data: Vec<u8> =
                    (0..FILE_PAGES * PAGE).map(|i| (i / PAGE) as u8 ^ (i as u8).wrapping_mul(13)).collect();
                let f = temp_file(&data);
                let mode = if shared { MapMode::Shared } else { MapMode::Private };
                match arena.map_file(&f, off as u64, len, mode) {
                    Ok(region) => {
                        prop_assert!(off % PAGE == 0 && len > 0);
                        let mut model = vec![0u8; region.len()];
                        let n = (FILE_PAGES * PAGE).saturating_sub(off).min(model.len());
                        if n > 0 {
                            model[..n].copy_from_slice(&data[off..off + n]);
                        }
                        let valid = (FILE_PAGES * PAGE).saturating_sub(off).div_ceil(PAGE);
                        let pages = region.len() / PAGE;
                        slots.push(Slot {
                            region,
                            model,
                            pinned: vec![false; pages],
                            file: Some((f, shared, off)),
                            valid,
                        });
                    }
                    Err(Error::InvalidArgument { .. }) => prop_assert!(off % PAGE != 0 || len == 0),
                    Err(e) => prop_assert!(false, "{op:?}: {e}"),
                }
            }
            Op::Flush(r) => {
                let Some(s) = slots.get(r) else { continue };
                match s.region.flush() {
                    Ok(()) => prop_assert!(s.file_matches(), "after flush the file differs from the model"),
                    Err(e) => prop_assert!(false, "{op:?}: {e}"),
                }
            }
        }
        if let Err(e) = rt.debug_check_invariants() {
            prop_assert!(false, "after {op:?}: {e}");
        }
    }
    for s in &slots {
        let n = s.model.len().min(s.valid.saturating_mul(PAGE));
        let mut buf = vec![0u8; n];
        s.region.read(0, &mut buf).unwrap();
        prop_assert!(buf == s.model[..n], "final contents differ");
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

//! Isolation between guests: a never-touched page reads as zeros, never as another arena's stale
//! frame or swap slot — also when the frame pool recycles frames that held another arena's data.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;

#[test]
fn fresh_pages_never_show_another_arenas_data() {
    for path in PATHS {
        for mode in MODES {
            let Some(rt) = runtime_with(32, 512, path, |b| b.fault_mode(mode).max_readahead(1)) else { continue };
            // A fills many pages with a pattern; they are evicted (on the MOVE path, into pool
            // frames), then A is killed or released.
            for round in 0..2 {
                let a = rt.arena("secret").create().unwrap();
                let r = a.reserve(128 * PAGE).unwrap();
                r.fill(0, 128 * PAGE, 0xA5).unwrap();
                r.page_out(0, 128 * PAGE).unwrap();
                if round == 0 {
                    a.kill().unwrap();
                }
                drop(r);
                // B touches fresh pages: with raw writes of one byte (write faults), raw reads and
                // safe reads. Every other byte must be zero.
                let b = rt.arena("other").create().unwrap();
                let s = b.reserve(128 * PAGE).unwrap();
                for p in 0..128 {
                    let base = s.as_ptr();
                    match p % 3 {
                        // SAFETY: inside the region, which outlives the access.
                        0 => unsafe { base.add(p * PAGE).write_volatile(1) },
                        // SAFETY: as above.
                        1 => assert_eq!(unsafe { base.add(p * PAGE + 7).read_volatile() }, 0),
                        _ => {}
                    }
                    let mut page = vec![0u8; PAGE];
                    s.read(p * PAGE, &mut page).unwrap();
                    let expect_first = u8::from(p % 3 == 0);
                    assert_eq!(page[0], expect_first, "{path:?} {mode:?} page {p}");
                    assert!(page[1..].iter().all(|&x| x == 0), "{path:?} {mode:?}: page {p} shows stale data");
                }
            }
        }
    }
}

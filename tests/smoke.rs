//! Smoke test: write pages past the budget, read them back, on both eviction paths.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;

#[test]
fn write_evict_read_back() {
    for path in PATHS {
        let Some(rt) = runtime(16, 256, path) else {
            continue;
        };
        let a = rt.arena("a").unwrap();
        let r = a.reserve(64 * PAGE).unwrap();
        for i in 0..64usize {
            r.write(i * PAGE + 7, &[(i as u8) ^ 0x5a; 100]).unwrap();
        }
        for i in 0..64usize {
            let mut b = [0u8; 100];
            r.read(i * PAGE + 7, &mut b).unwrap();
            assert_eq!(b, [(i as u8) ^ 0x5a; 100], "page {i} path {path:?}");
        }
        println!("{}", rt.stats());
    }
}

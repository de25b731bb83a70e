//! Swap encryption at rest: data round-trips exactly, the swap file never holds plaintext, and a
//! tampered slot is caught (the page is lost, never returned altered).

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, SwapFaults};

const MARK: &[u8] = b"PAGEWARDEN-PLAINTEXT-MARKER";

#[test]
fn encrypted_swap_round_trips_and_hides_plaintext() {
    for path in PATHS {
        let dir = std::env::temp_dir().join(format!("pw-enc-{}-{path:?}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("swap");
        let Some(rt) = runtime_with(16, 256, path, |b| b.swap_file(&file, 256 * PAGE).encrypt_swap(true)) else {
            continue;
        };
        let a = rt.arena("secret").create().unwrap();
        let r = a.reserve(64 * PAGE).unwrap();
        for i in 0..64 {
            let mut page = vec![i as u8; PAGE];
            page[..MARK.len()].copy_from_slice(MARK);
            r.write(i * PAGE, &page).unwrap();
        }
        r.page_out(0, 64 * PAGE).unwrap();
        assert!(rt.stats().totals.writebacks >= 48);
        // A named swap file is private to its owner.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        // The swap file holds no plaintext.
        let on_disk = std::fs::read(&file).unwrap();
        assert!(!on_disk.windows(MARK.len()).any(|w| w == MARK), "{path:?}: plaintext in the swap file");
        // And everything comes back exactly.
        for i in 0..64 {
            let mut page = vec![0u8; PAGE];
            r.read(i * PAGE, &mut page).unwrap();
            assert_eq!(&page[..MARK.len()], MARK);
            assert!(page[MARK.len()..].iter().all(|&x| x == i as u8), "{path:?}: page {i}");
        }
        drop(r);
        drop(a);
        drop(rt);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_tampered_encrypted_slot_is_lost_not_returned() {
    let faults = SwapFaults { flip_bit_slots: vec![2], ..Default::default() };
    let Some(rt) = runtime_with(16, 64, pagewarden::EvictionPath::Auto, |b| b.encrypt_swap(true).swap_faults(faults))
    else {
        return;
    };
    let a = rt.arena("a").create().unwrap();
    let r = a.reserve(8 * PAGE).unwrap();
    for i in 0..8 {
        r.fill(i * PAGE, PAGE, 0x30 + i as u8).unwrap();
    }
    r.page_out(0, 8 * PAGE).unwrap();
    for i in 0..8 {
        let mut page = vec![0u8; PAGE];
        match r.read(i * PAGE, &mut page) {
            Err(Error::Corrupted { offset }) if i == 2 => assert_eq!(offset, 2 * PAGE),
            Ok(()) if i != 2 => assert!(page.iter().all(|&x| x == 0x30 + i as u8)),
            other => panic!("page {i}: {other:?}"),
        }
    }
}

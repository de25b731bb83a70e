//! Pinned pages survive any amount of memory pressure; everything else is reclaimed around them.
//!
//! ```text
//! cargo run --example pinned
//! ```
//!
//! A `nic` arena pins a 512 KiB ring buffer, as a driver pins pages a device writes into by DMA:
//! moving or evicting such a page would corrupt data the device is writing. A `scan` arena then
//! streams through 8 MiB — four times the 2 MiB budget. The runtime must evict constantly, and
//! it does, but never a pinned page: the ring stays resident the whole time. Pins are capped (the
//! pin limit), because every pinned frame is one reclaim can no longer use. After `unpin` the ring
//! is ordinary memory again, and the next scan pushes it out to swap like anything else.

use pagewarden::{Error, Runtime};

const PAGE: usize = 4096;
const MIB: usize = 1 << 20;
const RING: usize = MIB / 2;
const SCAN: usize = 8 * MIB;

fn main() -> Result<(), Error> {
    // The library's warnings about its configuration (a misspelt PAGEWARDEN_* name) show
    // without RUST_LOG; RUST_LOG replaces this filter.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("pagewarden::config=warn,pagewarden::runtime=warn"),
    )
    .init();
    let rt = Runtime::builder()
        .frame_budget(2 * MIB)
        .swap_capacity(16 * MIB)
        .pin_limit(MIB) // at most half the budget pinned at once
        .build()?;
    let nic = rt.arena("nic").create()?;
    let scan = rt.arena("scan").create()?;

    let ring = nic.reserve(RING)?;
    ring.pin(0, RING)?; // faulted in now, unevictable until unpin
    for p in 0..RING / PAGE {
        ring.write(p * PAGE, &[u8::try_from(p % 256).unwrap_or(0); 64])?; // "DMA" writes into the ring
    }
    println!(
        "nic pinned a 512 KiB ring: {} of {} budget frames are now pinned\n",
        rt.stats().pinned_frames,
        rt.budget_frames()
    );

    // Pins are capped: the limit is 1 MiB, 512 KiB is pinned, so another 768 KiB is refused.
    let more = nic.reserve(MIB)?;
    match more.pin(0, 3 * MIB / 4) {
        Err(e @ Error::PinLimit { .. }) => println!("pinning 768 KiB more is refused: {e}\n"),
        other => panic!("expected Error::PinLimit, got {other:?}"),
    }
    // Asking for the pinned range to be paged out frees nothing.
    println!("page_out of the pinned ring freed {} frames\n", ring.page_out(0, RING)?);

    // The scan: 8 MiB through a 2 MiB budget, twice.
    let stream = scan.reserve(SCAN)?;
    for pass in 1..=2 {
        stream.fill(0, SCAN, pass)?;
        let (n, s) = (nic.stats(), scan.stats());
        println!(
            "scan pass {pass}: scan has {:4.1} MiB resident and {:4.1} MiB in swap ({} evictions so far); \
             nic: {} of 128 pages resident, {} pinned, {} evicted",
            s.resident_pages as f64 * PAGE as f64 / MIB as f64,
            s.swapped_pages as f64 * PAGE as f64 / MIB as f64,
            s.counters.evictions,
            n.resident_pages,
            n.pinned_pages,
            n.counters.evictions,
        );
        assert_eq!(n.counters.evictions, 0, "a pinned page was evicted");
    }
    for p in 0..RING / PAGE {
        let mut b = [0u8; 64];
        ring.read(p * PAGE, &mut b)?;
        assert_eq!(b, [u8::try_from(p % 256).unwrap_or(0); 64]);
    }
    println!("the ring's contents are intact\n");

    // Unpinned, the ring is reclaimable like any other memory.
    ring.unpin(0, RING)?;
    stream.fill(0, SCAN, 9)?;
    let n = nic.stats();
    println!(
        "after unpin and one more pass: nic has {} of 128 pages resident, {} in swap ({} evicted)",
        n.resident_pages, n.swapped_pages, n.counters.evictions
    );
    for p in 0..RING / PAGE {
        let mut b = [0u8; 64];
        ring.read(p * PAGE, &mut b)?; // read back from swap
        assert_eq!(b, [u8::try_from(p % 256).unwrap_or(0); 64]);
    }
    println!(
        "and reads back intact from swap.\n\n\
         why: a pinned page is the one thing reclaim may not touch, like an mlock'ed page or a DMA\n\
         target in the kernel. The runtime keeps pins out of its eviction lists and works with what is\n\
         left: here 1.5 MiB of frames carried an 8 MiB scan. The pin limit keeps enough unpinned frames\n\
         for that to stay possible; with everything pinned, reclaim would have nothing to take and\n\
         the only way out would be the OOM killer."
    );
    Ok(())
}

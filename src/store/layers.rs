//! Layers over any store: encryption at rest, and (for tests) a fault injector.
//!
//! Encryption ([`RuntimeBuilder::encrypt_swap`](crate::RuntimeBuilder::encrypt_swap)) seals each
//! page with ChaCha20-Poly1305 under a key drawn from the kernel when the runtime starts and never
//! stored. The nonce is the slot number and a per-runtime write counter, so no (key, nonce) pair is
//! ever reused; the 16-byte tag and the counter stay in memory (24 bytes per slot). A page whose
//! tag does not verify is lost, like a page whose checksum fails. Sealing and opening allocate (a
//! page buffer, and a staging mapping for writes): the encrypted path is not allocation-free.

use super::{PageBufs, PageBufsMut, StoreError, StoreUsage, SwapStore};
use crate::sys::SysError;
use crate::sys::mem::Mapping;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Failures to inject into swap I/O, for testing the error paths. Not a stable interface.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct SwapFaults {
    /// After this many successful write calls, every write fails with `write_errno`.
    pub fail_writes_after: Option<u64>,
    /// The errno of failed writes (default EIO).
    pub write_errno: Option<i32>,
    /// Reads touching these slots fail with EIO.
    pub fail_read_slots: Vec<u32>,
    /// Reads of these slots succeed but return the page with one bit flipped.
    pub flip_bit_slots: Vec<u32>,
    /// Every I/O call takes at least this long.
    pub delay: Option<Duration>,
    /// Swap reads panic (a stand-in for any bug in the fault path).
    pub panic_on_read: bool,
    /// Every read and write call transfers at most one page, so multi-page transfers come back
    /// short and must be resumed (the file store only).
    pub short_io: bool,
    /// An eviction waits this long before it takes its pages out of their arena (moves or
    /// write-protects them): a window for a kill or a release to land meanwhile.
    pub take_delay: Option<Duration>,
    /// An eviction's take of its pages fails with this errno (as the kernel's would, e.g. EBUSY
    /// for a page it cannot move now) instead of being tried.
    pub take_errno: Option<i32>,
}

/// The trait methods a layer leaves to the store below it (`self.inner`): growth, figures,
/// discard, flush, and what the store below says of itself.
macro_rules! leave_to_inner {
    () => {
        fn grow(&self, slots: u32) -> Result<(), StoreError> {
            self.inner.grow(slots)
        }

        fn backed(&self) -> u32 {
            self.inner.backed()
        }

        fn discard(&self, first: u32, n: u32) {
            self.inner.discard(first, n);
        }

        fn flush(&self) -> Result<(), StoreError> {
            self.inner.flush()
        }

        fn is_direct(&self) -> bool {
            self.inner.is_direct()
        }

        /// As signal-safe as the store below. (Encryption allocates: the runtime has always
        /// allowed it in the in-thread mode anyway, see the module documentation.)
        fn signal_safe(&self) -> bool {
            self.inner.signal_safe()
        }

        fn usage(&self) -> StoreUsage {
            self.inner.usage()
        }
    };
}

/// The fault injector, over the store below it.
#[derive(Debug)]
pub(crate) struct Injected {
    inner: Arc<dyn SwapStore>,
    plan: SwapFaults,
    writes: AtomicU64,
}

impl Injected {
    pub(crate) fn new(inner: Arc<dyn SwapStore>, plan: SwapFaults) -> Injected {
        Injected { inner, plan, writes: AtomicU64::new(0) }
    }
}

impl SwapStore for Injected {
    fn capacity(&self) -> u32 {
        self.inner.capacity()
    }

    fn write(&self, first: u32, pages: &PageBufs<'_>) -> Result<(), StoreError> {
        if let Some(d) = self.plan.delay {
            std::thread::sleep(d);
        }
        if let Some(after) = self.plan.fail_writes_after {
            if self.writes.fetch_add(1, Ordering::AcqRel) >= after {
                return Err(StoreError::io(self.plan.write_errno.unwrap_or(libc::EIO), "pwritev(swap) [injected]"));
            }
        }
        self.inner.write(first, pages)
    }

    fn read(&self, first: u32, pages: &mut PageBufsMut<'_>) -> Result<(), StoreError> {
        if let Some(d) = self.plan.delay {
            std::thread::sleep(d);
        }
        assert!(!self.plan.panic_on_read, "injected panic in a swap read");
        let slots = first..first + crate::mm::n32(pages.len());
        if self.plan.fail_read_slots.iter().any(|s| slots.contains(s)) {
            return Err(StoreError::io(libc::EIO, "preadv(swap) [injected]"));
        }
        self.inner.read(first, pages)?;
        for k in 0..pages.len() {
            if self.plan.flip_bit_slots.contains(&(first + crate::mm::n32(k))) {
                let (m, off) = pages.at(k);
                let at = off + 100;
                let mut b = [0u8; 1];
                if m.read(at, &mut b).is_ok() {
                    let _ = m.write(at, &[b[0] ^ 0x10]);
                }
            }
        }
        Ok(())
    }

    leave_to_inner!();
}

/// Encryption at rest over the store below it.
pub(crate) struct Encrypted {
    inner: Arc<dyn SwapStore>,
    cipher: chacha20poly1305::ChaCha20Poly1305,
    counter: AtomicU64,
    /// Per slot: the write counter used as nonce, and the tag.
    meta: std::sync::Mutex<Vec<(u64, [u8; 16])>>,
}

impl std::fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl Encrypted {
    /// Seals what goes into `inner` under a fresh random key.
    pub(crate) fn new(inner: Arc<dyn SwapStore>) -> Result<Encrypted, SysError> {
        use chacha20poly1305::KeyInit;
        let mut key = [0u8; 32];
        crate::sys::random(&mut key)?;
        let cipher = chacha20poly1305::ChaCha20Poly1305::new(&key.into());
        key.fill(0);
        let slots = inner.capacity();
        Ok(Encrypted {
            inner,
            cipher,
            counter: AtomicU64::new(1),
            meta: std::sync::Mutex::new(vec![(0, [0; 16]); crate::mm::idx(u64::from(slots))]),
        })
    }

    fn nonce(slot: u32, counter: u64) -> chacha20poly1305::Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&slot.to_le_bytes());
        n[4..].copy_from_slice(&counter.to_le_bytes());
        n.into()
    }

    /// Encrypts `page` (plaintext in, ciphertext out) for `slot`.
    fn seal(&self, slot: u32, page: &mut [u8]) -> Result<(), StoreError> {
        use chacha20poly1305::AeadInPlace;
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&Self::nonce(slot, counter), &[], page)
            .map_err(|_| StoreError::io(libc::EIO, "encrypt(swap)"))?;
        let mut meta = crate::util::lock(&self.meta);
        meta[crate::mm::idx(u64::from(slot))] = (counter, tag.into());
        Ok(())
    }

    /// Decrypts `page` read from `slot`; fails if it was not written by this runtime as it is.
    fn open(&self, slot: u32, page: &mut [u8]) -> Result<(), StoreError> {
        use chacha20poly1305::AeadInPlace;
        let (counter, tag) = crate::util::lock(&self.meta)[crate::mm::idx(u64::from(slot))];
        self.cipher
            .decrypt_in_place_detached(&Self::nonce(slot, counter), &[], page, &tag.into())
            .map_err(|_| StoreError::io(libc::EBADMSG, "decrypt(swap): authentication failed"))
    }
}

impl SwapStore for Encrypted {
    fn capacity(&self) -> u32 {
        self.inner.capacity()
    }

    fn write(&self, first: u32, pages: &PageBufs<'_>) -> Result<(), StoreError> {
        // Seal into a staging buffer: the source pages stay as they are (a failed write puts them
        // back in service).
        let (n, ps) = (pages.len(), pages.page_size());
        let staging = Mapping::anonymous(n * ps)?;
        let mut buf = vec![0u8; ps];
        for k in 0..n {
            pages.copy_page(k, &mut buf);
            self.seal(first + crate::mm::n32(k), &mut buf)?;
            staging.write(k * ps, &buf)?;
        }
        self.inner.write(first, &PageBufs::run(&staging, 0, n, ps)?)
    }

    fn read(&self, first: u32, pages: &mut PageBufsMut<'_>) -> Result<(), StoreError> {
        self.inner.read(first, pages)?;
        let mut buf = vec![0u8; pages.page_size()];
        for k in 0..pages.len() {
            pages.copy_page(k, &mut buf);
            self.open(first + crate::mm::n32(k), &mut buf)?;
            pages.fill_page(k, &buf);
        }
        Ok(())
    }

    leave_to_inner!();
}

#[cfg(test)]
mod tests {
    use super::super::tests::Ram;
    use super::*;

    fn page_of(m: &Mapping, off: usize, ps: usize) -> Vec<u8> {
        let mut b = vec![0u8; ps];
        m.read(off, &mut b).unwrap();
        b
    }

    /// What reaches the store below is ciphertext; what comes back is the plaintext; a slot
    /// altered below fails to open.
    #[test]
    fn encryption_seals_below_and_opens_above() {
        let ps = crate::sys::page_size();
        let ram = Arc::new(Ram::new(8, ps));
        let enc = Encrypted::new(ram.clone()).unwrap();
        let a = Mapping::anonymous(2 * ps).unwrap();
        a.fill(0, ps, 0x11).unwrap();
        a.fill(ps, ps, 0x22).unwrap();
        enc.write(3, &PageBufs::run(&a, 0, 2, ps).unwrap()).unwrap();
        assert_ne!(ram.slots.lock().unwrap()[3], page_of(&a, 0, ps), "plaintext reached the store");
        assert_eq!(page_of(&a, 0, ps), vec![0x11; ps], "the source pages are left as they were");
        let b = Mapping::anonymous(2 * ps).unwrap();
        enc.read(3, &mut PageBufsMut::run(&b, 0, 2, ps).unwrap()).unwrap();
        assert_eq!(page_of(&b, 0, ps), vec![0x11; ps]);
        assert_eq!(page_of(&b, ps, ps), vec![0x22; ps]);
        ram.slots.lock().unwrap()[4][7] ^= 1;
        let e = enc.read(3, &mut PageBufsMut::run(&b, 0, 2, ps).unwrap()).unwrap_err();
        assert_eq!(e.errno(), libc::EBADMSG);
        assert!(enc.signal_safe(), "as the store below");
    }

    /// The injector fails writes after a count, fails reads of listed slots, flips a bit of
    /// others, and passes everything else through.
    #[test]
    fn injector_fails_and_flips_as_planned() {
        let ps = crate::sys::page_size();
        let ram = Arc::new(Ram::new(8, ps));
        let plan = SwapFaults {
            fail_writes_after: Some(1),
            write_errno: Some(libc::ENOSPC),
            fail_read_slots: vec![2],
            flip_bit_slots: vec![1],
            ..Default::default()
        };
        let inj = Injected::new(ram.clone(), plan);
        let a = Mapping::anonymous(2 * ps).unwrap();
        a.fill(0, 2 * ps, 5).unwrap();
        inj.write(0, &PageBufs::run(&a, 0, 2, ps).unwrap()).unwrap();
        let e = inj.write(2, &PageBufs::run(&a, 0, 1, ps).unwrap()).unwrap_err();
        assert!(!e.is_full() && e.errno() == libc::ENOSPC, "an injected ENOSPC is a failed write: {e}");
        assert!(ram.slots.lock().unwrap()[2].is_empty(), "nothing written below");
        let b = Mapping::anonymous(2 * ps).unwrap();
        inj.read(0, &mut PageBufsMut::run(&b, 0, 2, ps).unwrap()).unwrap();
        assert_eq!(page_of(&b, 0, ps), vec![5; ps]);
        let flipped = page_of(&b, ps, ps);
        assert_eq!(flipped.iter().filter(|&&x| x != 5).count(), 1);
        assert!(inj.read(1, &mut PageBufsMut::run(&b, 0, 2, ps).unwrap()).is_err(), "slot 2 fails");
    }
}

//! Swap I/O above the file: a checksum per slot, verified on every swap-in; optional encryption
//! at rest; and (for tests) a fault injector.
//!
//! Encryption ([`RuntimeBuilder::encrypt_swap`](crate::RuntimeBuilder::encrypt_swap)) seals each
//! page with ChaCha20-Poly1305 under a key drawn from the kernel when the runtime starts and never
//! stored. The nonce is the slot number and a per-runtime write counter, so no (key, nonce) pair is
//! ever reused; the 16-byte tag and the counter stay in memory (24 bytes per slot). A page whose
//! tag does not verify is lost, like a page whose checksum fails.
//!
//! ```text
//!   evict:   write pages ──► slots        then record xxh3(page) per slot (under the state lock)
//!   page-in: read slots  ──► buffers      then compare xxh3(buffer) with the record: a mismatch
//!                                         poisons that page — never silently wrong data
//! ```

use crate::runtime::Core;
use crate::sys::SysError;
use crate::sys::mem::Mapping;
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
    /// short and must be resumed.
    pub short_io: bool,
}

/// The injector's state.
#[derive(Debug, Default)]
pub(crate) struct Injector {
    plan: SwapFaults,
    writes: AtomicU64,
}

impl Injector {
    pub(crate) fn new(plan: SwapFaults) -> Injector {
        Injector { plan, ..Default::default() }
    }
}

/// Per-runtime swap encryption.
pub(crate) struct Crypto {
    cipher: chacha20poly1305::ChaCha20Poly1305,
    counter: AtomicU64,
    /// Per slot: the write counter used as nonce, and the tag.
    meta: std::sync::Mutex<Vec<(u64, [u8; 16])>>,
}

impl Crypto {
    pub(crate) fn new(slots: u32) -> Result<Crypto, SysError> {
        use chacha20poly1305::KeyInit;
        let mut key = [0u8; 32];
        crate::sys::random(&mut key)?;
        let cipher = chacha20poly1305::ChaCha20Poly1305::new(&key.into());
        key.fill(0);
        Ok(Crypto {
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
    fn seal(&self, slot: u32, page: &mut [u8]) -> Result<(), SysError> {
        use chacha20poly1305::AeadInPlace;
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&Self::nonce(slot, counter), &[], page)
            .map_err(|_| SysError::new("encrypt(swap)", libc::EIO))?;
        let mut meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        meta[crate::mm::idx(u64::from(slot))] = (counter, tag.into());
        Ok(())
    }

    /// Decrypts `page` read from `slot`; fails if it was not written by this runtime as it is.
    fn open(&self, slot: u32, page: &mut [u8]) -> Result<(), SysError> {
        use chacha20poly1305::AeadInPlace;
        let (counter, tag) = self.meta.lock().unwrap_or_else(|p| p.into_inner())[crate::mm::idx(u64::from(slot))];
        self.cipher
            .decrypt_in_place_detached(&Self::nonce(slot, counter), &[], page, &tag.into())
            .map_err(|_| SysError::new("decrypt(swap): authentication failed", libc::EBADMSG))
    }
}

/// The checksum of one page of `m` at `off`. Allocates nothing (it runs in the in-thread fault
/// path): the page is hashed through a buffer on the stack.
pub(crate) fn page_sum(m: &Mapping, off: usize, page: usize) -> u32 {
    const CHUNK: usize = 4096;
    let mut buf = [0u8; CHUNK];
    let h = if page <= CHUNK {
        if m.read(off, &mut buf[..page]).is_err() {
            return 0;
        }
        xxhash_rust::xxh3::xxh3_64(&buf[..page])
    } else {
        // Larger pages: the streaming hash of the whole page, a chunk at a time.
        let mut x = xxhash_rust::xxh3::Xxh3::new();
        for at in (0..page).step_by(CHUNK) {
            let n = CHUNK.min(page - at);
            if m.read(off + at, &mut buf[..n]).is_err() {
                return 0;
            }
            x.update(&buf[..n]);
        }
        x.digest()
    };
    // Truncated to 32 bits: a corrupted page passes with probability 2^-32. Never 0, which
    // marks a slot without a record.
    u32::try_from(h & u64::from(u32::MAX)).unwrap_or(1).max(1)
}

impl Core {
    /// Reads `n` consecutive slots starting at `first` into `n` consecutive pages of `m` from
    /// `off`. Without encryption this allocates nothing (the in-thread fault path reads here).
    pub(crate) fn swap_read(&self, first: u32, m: &Mapping, off: usize, n: usize) -> Result<(), SysError> {
        let swap = self.swap.as_ref().expect("a page has a slot only when swap exists");
        let ps = self.page();
        if let Some(inj) = &self.faults {
            if let Some(d) = inj.plan.delay {
                std::thread::sleep(d);
            }
            assert!(!inj.plan.panic_on_read, "injected panic in a swap read");
            let slots = first..first + crate::mm::n32(n);
            if inj.plan.fail_read_slots.iter().any(|s| slots.contains(s)) {
                return Err(SysError::new("preadv(swap) [injected]", libc::EIO));
            }
        }
        swap.read_run(u64::from(first) * ps as u64, m, off, n)?;
        if let Some(c) = &self.crypto {
            let mut buf = vec![0u8; ps];
            for k in 0..n {
                m.read(off + k * ps, &mut buf)?;
                c.open(first + crate::mm::n32(k), &mut buf)?;
                m.write(off + k * ps, &buf)?;
            }
        }
        if let Some(inj) = &self.faults {
            for k in 0..n {
                if inj.plan.flip_bit_slots.contains(&(first + crate::mm::n32(k))) {
                    let at = off + k * ps + 100;
                    let mut b = [0u8; 1];
                    if m.read(at, &mut b).is_ok() {
                        let _ = m.write(at, &[b[0] ^ 0x10]);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `n` pages to consecutive slots starting at `first`: page `k` from `src(k)`. Without
    /// encryption this allocates nothing (eviction runs in the in-thread fault path too).
    pub(crate) fn swap_write<'m>(
        &self,
        first: u32,
        n: usize,
        src: impl Fn(usize) -> (&'m Mapping, usize),
    ) -> Result<(), SysError> {
        let swap = self.swap.as_ref().expect("dirty eviction needs swap");
        if let Some(inj) = &self.faults {
            if let Some(d) = inj.plan.delay {
                std::thread::sleep(d);
            }
            if let Some(after) = inj.plan.fail_writes_after {
                if inj.writes.fetch_add(1, Ordering::AcqRel) >= after {
                    return Err(SysError::new("pwritev(swap) [injected]", inj.plan.write_errno.unwrap_or(libc::EIO)));
                }
            }
        }
        let ps = self.page();
        let Some(c) = &self.crypto else { return swap.write_pages_with(u64::from(first) * ps as u64, n, src) };
        // Seal into a staging buffer: the source pages stay as they are (a failed write puts them
        // back in service).
        let staging = Mapping::anonymous(n * ps)?;
        let mut buf = vec![0u8; ps];
        for k in 0..n {
            let (m, off) = src(k);
            m.read(off, &mut buf)?;
            c.seal(first + crate::mm::n32(k), &mut buf)?;
            staging.write(k * ps, &buf)?;
        }
        swap.write_pages_with(u64::from(first) * ps as u64, n, |k| (&staging, k * ps))
    }
}

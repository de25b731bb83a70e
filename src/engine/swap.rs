//! Swap I/O above the store: a checksum per slot, verified on every swap-in. The store (a file
//! by default, see [`SwapStore`](crate::SwapStore)) with its layers (encryption, the test fault
//! injector) keeps the bytes; the engine keeps the checksums.
//!
//! ```text
//!   evict:   write pages ──► slots        then record xxh3(page) per slot (under the state lock)
//!   page-in: read slots  ──► buffers      then compare xxh3(buffer) with the record: a mismatch
//!                                         poisons that page — never silently wrong data
//! ```

use crate::engine::Core;
use crate::store::{PageBufs, PageBufsMut, StoreError};
use crate::sys::mem::Mapping;

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
    /// `off`, which are this page-in's staging memory (a scratch buffer or a pool frame nobody
    /// else uses until it is installed). Without encryption the file store allocates nothing
    /// here (the in-thread fault path reads here).
    pub(crate) fn swap_read(&self, first: u32, m: &Mapping, off: usize, n: usize) -> Result<(), StoreError> {
        let swap = self.swap.as_ref().expect("a page has a slot only when swap exists");
        swap.read(first, &mut PageBufsMut::run(m, off, n, self.page())?)
    }

    /// Writes `n` pages to consecutive slots starting at `first`: page `k` from `src(k)`, a page
    /// out of its arena or write-protected in it, so that nobody writes it meanwhile. Grows the
    /// store first. Without encryption the file store allocates nothing here (eviction runs in
    /// the in-thread fault path too).
    pub(crate) fn swap_write<'m>(
        &self,
        first: u32,
        n: usize,
        src: &'m (dyn Fn(usize) -> (&'m Mapping, usize) + Sync),
    ) -> Result<(), StoreError> {
        let swap = self.swap.as_ref().expect("dirty eviction needs swap");
        swap.grow(first + crate::mm::n32(n))?;
        swap.write(first, &PageBufs::each(src, n, self.page())?)
    }
}

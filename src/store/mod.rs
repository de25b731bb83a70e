//! Swap stores: where evicted pages go. The engine hands a store runs of consecutive slots to
//! write and read; the store decides where the bytes live (a file, memory, another machine).
//!
//! ```text
//!   engine ──grow/write/read(first slot, n pages)──► [fault injector]   tests only
//!                                                    [encryption]       encrypt_swap(true)
//!                                                    store              FileStore (default),
//!                                                                       or RuntimeBuilder::swap_store
//!   checksums stay with the engine: one per slot, recorded after a write, checked after a read
//! ```
//!
//! Page buffers are lent to a store as [`PageBufs`] (pages to write) and [`PageBufsMut`] (pages
//! to fill). They are views of runtime-owned memory — pool frames, staging buffers, or arena
//! pages write-protected for the write — that the store copies out of and into. A view never
//! hands out a reference into that memory: other threads may touch the same bytes through raw
//! pointers (an application thread reading a write-protected page, say), and a reference would
//! assert an exclusivity no one can promise. Copying costs one `memcpy` a page, which a store
//! that keeps the data pays anyway; the file store skips it and lets the kernel move the bytes.
//! Views are `Send` and `Sync`, so a store may hand one to its own I/O threads, for the length of
//! the call only (the borrow says so).

mod file;
mod layers;

pub(crate) use file::FileStore;
pub use layers::SwapFaults;
pub(crate) use layers::{Encrypted, Injected};

use crate::sys::mem::Mapping;
use std::borrow::Cow;
use std::fmt;

/// A place for swapped-out pages: page-sized slots numbered from 0, read and written a run of
/// consecutive slots at a time.
///
/// The runtime takes one with [`RuntimeBuilder::swap_store`](crate::RuntimeBuilder::swap_store);
/// without it, a file store built from the swap settings serves (a swap file that grows on
/// demand). Checksums, encryption ([`encrypt_swap`](crate::RuntimeBuilder::encrypt_swap)) and
/// slot allocation are the runtime's: a store only keeps bytes. A slot is written before it is
/// read; it may be written again (after it was freed and handed out anew).
///
/// # Errors
///
/// Every call returns a [`StoreError`]. A failed read loses the pages of that run that cannot be
/// read one by one (they are poisoned, never returned wrong). A failed [`write`](Self::write)
/// loses nothing: the pages stay in memory, dirty, and the runtime stops swapping (it treats swap
/// as full from then on). A failed [`grow`](Self::grow) with [`StoreError::is_full`] means the
/// backing medium is full: swap stops at [`backed`](Self::backed) slots, [`Event::SwapLow`]
/// is published, and memory that runs out goes to the OOM killer.
///
/// # Threads and signal handlers
///
/// Calls come from the runtime's handler and reclaimer threads, several at once (on different
/// slots), and the same slot is never read and written at once. In
/// [`FaultMode::InThread`](crate::FaultMode::InThread), [`grow`](Self::grow),
/// [`read`](Self::read) and [`write`](Self::write) also run **inside a SIGBUS handler** of an
/// application thread, which may have been interrupted anywhere, even inside `malloc`: there a
/// store must not allocate, take a lock an application thread may hold, or wait for another
/// thread to make progress. A store that can promise that says so with
/// [`signal_safe`](Self::signal_safe) (the file store does); every other store is refused in
/// that mode ([`Error::StoreNotSignalSafe`](crate::Error::StoreNotSignalSafe) at `build`) and
/// serves with handler threads only, where it may block, allocate and use threads of its own.
///
/// [`Event::SwapLow`]: crate::Event::SwapLow
///
/// # Example
///
/// A store in memory (what a test would use; a real one keeps the pages elsewhere):
///
/// ```
/// use pagewarden::{PageBufs, PageBufsMut, Runtime, StoreError, SwapStore};
/// use std::sync::{Arc, Mutex};
///
/// #[derive(Debug)]
/// struct RamStore { page: usize, slots: Mutex<Vec<Option<Box<[u8]>>>> }
///
/// impl SwapStore for RamStore {
///     fn capacity(&self) -> u32 { self.slots.lock().unwrap().len() as u32 }
///     fn write(&self, first: u32, pages: &PageBufs<'_>) -> Result<(), StoreError> {
///         let mut slots = self.slots.lock().unwrap();
///         for k in 0..pages.len() {
///             let mut buf = vec![0u8; self.page].into_boxed_slice();
///             pages.copy_page(k, &mut buf);
///             slots[first as usize + k] = Some(buf);
///         }
///         Ok(())
///     }
///     fn read(&self, first: u32, pages: &mut PageBufsMut<'_>) -> Result<(), StoreError> {
///         let slots = self.slots.lock().unwrap();
///         for k in 0..pages.len() {
///             let Some(buf) = &slots[first as usize + k] else {
///                 return Err(StoreError::io(libc::EIO, "read of a slot never written"));
///             };
///             pages.fill_page(k, buf);
///         }
///         Ok(())
///     }
/// }
///
/// let page = 4096;
/// let store = Arc::new(RamStore { page, slots: Mutex::new(vec![None; 1024]) });
/// let rt = Runtime::builder().frame_budget(32 * page).swap_store(store).build()?;
/// assert_eq!(rt.stats().swap_slots, 1024);
/// let arena = rt.arena("a").create()?;
/// let r = arena.reserve(256 * page)?;
/// for p in 0..256 {
///     r.write(p * page, &[p as u8])?;              // 256 pages under a 32-frame budget
/// }
/// for p in 0..256 {
///     let mut b = [0u8];
///     r.read(p * page, &mut b)?;
///     assert_eq!(b[0], p as u8);
/// }
/// assert!(rt.stats().totals.swap_ins > 0);
/// # Ok::<(), pagewarden::Error>(())
/// ```
pub trait SwapStore: Send + Sync + fmt::Debug {
    /// The most slots the store holds: the runtime's swap capacity. Must not change.
    fn capacity(&self) -> u32;

    /// Writes `pages.len()` pages to slots `first..first + pages.len()`, page `k` to slot
    /// `first + k`. Those slots are below a successful [`grow`](Self::grow). May run in a signal
    /// handler (see the trait's documentation).
    fn write(&self, first: u32, pages: &PageBufs<'_>) -> Result<(), StoreError>;

    /// Reads slots `first..first + pages.len()` into the pages, slot `first + k` into page `k`.
    /// May run in a signal handler.
    fn read(&self, first: u32, pages: &mut PageBufsMut<'_>) -> Result<(), StoreError>;

    /// Makes sure slots `0..slots` are backed, before the runtime writes below `slots`; a store
    /// that needs no growth keeps the default (nothing to do). Fails with
    /// [`StoreError::full`] when the medium is full: the runtime then hands out no slot past
    /// [`backed`](Self::backed). May run in a signal handler.
    fn grow(&self, slots: u32) -> Result<(), StoreError> {
        let _ = slots;
        Ok(())
    }

    /// Slots backed now (0.. of them can be written without growing). The default: all of them.
    fn backed(&self) -> u32 {
        self.capacity()
    }

    /// Slots `first..first + n` hold nothing any more; a store may release their space. The
    /// runtime does not call it yet (slots are freed under its state lock, where no store call
    /// may wait); the default does nothing.
    fn discard(&self, first: u32, n: u32) {
        let _ = (first, n);
    }

    /// Writes everything written so far through to the medium. The default does nothing.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether reads bypass the page cache (`O_DIRECT`): shown in [`Stats`](crate::Stats).
    fn is_direct(&self) -> bool {
        false
    }

    /// Whether [`grow`](Self::grow), [`read`](Self::read) and [`write`](Self::write) may run in
    /// a signal handler: they allocate nothing, take no lock an interrupted thread may hold and
    /// wait for no other thread. Default `false`: the runtime then refuses the store in
    /// [`FaultMode::InThread`](crate::FaultMode::InThread).
    fn signal_safe(&self) -> bool {
        false
    }

    /// Figures for [`Stats`](crate::Stats). The default: all zero.
    fn usage(&self) -> StoreUsage {
        StoreUsage::default()
    }
}

/// What a store holds and has done, for [`Stats`](crate::Stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// Bytes of the medium the store occupies now (a file's allocated blocks).
    pub occupied_bytes: u64,
    /// Bytes the store has allocated for slots (a file's length).
    pub allocated_bytes: u64,
    /// Read calls issued to the medium.
    pub read_ios: u64,
    /// Write calls issued to the medium.
    pub write_ios: u64,
}

/// Why a store call failed: an errno-like cause and a message naming what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    full: bool,
    errno: i32,
    what: Cow<'static, str>,
}

impl StoreError {
    /// An I/O failure: `what` names the operation (shown as "`what` failed: `errno`").
    pub fn io(errno: i32, what: impl Into<Cow<'static, str>>) -> StoreError {
        StoreError { full: false, errno, what: what.into() }
    }

    /// The medium is full (growth failed): swap stops where the store is backed; no page is lost.
    pub fn full(errno: i32, what: impl Into<Cow<'static, str>>) -> StoreError {
        StoreError { full: true, errno, what: what.into() }
    }

    /// Whether growth failed because the medium is full.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The errno-like cause.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The operation that failed.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The same failure as an [`std::io::Error`] (the errno is kept).
    pub fn io_error(&self) -> std::io::Error {
        std::io::Error::from_raw_os_error(self.errno)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.what, self.io_error())
    }
}

impl std::error::Error for StoreError {}

impl From<crate::sys::SysError> for StoreError {
    fn from(e: crate::sys::SysError) -> StoreError {
        StoreError::io(e.errno, e.op)
    }
}

/// Where each page of a view lies.
#[derive(Clone, Copy)]
enum Layout<'a> {
    /// Consecutive pages of one mapping from an offset.
    Run(&'a Mapping, usize),
    /// Page `k` at `at(k)`.
    Each(&'a (dyn Fn(usize) -> (&'a Mapping, usize) + Sync)),
}

impl Layout<'_> {
    fn at(&self, k: usize, page: usize) -> (&Mapping, usize) {
        match *self {
            Layout::Run(m, off) => (m, off + k * page),
            Layout::Each(f) => f(k),
        }
    }
}

/// The pages of a view and where each lies, checked once to lie inside their mappings so that
/// the accessors cannot fail.
struct View<'a> {
    n: usize,
    page: usize,
    at: Layout<'a>,
}

impl<'a> View<'a> {
    fn new(at: Layout<'a>, n: usize, page: usize) -> Result<Self, crate::sys::SysError> {
        for k in 0..n {
            let (m, off) = at.at(k, page);
            m.at(off, page)?;
        }
        Ok(View { n, page, at })
    }

    fn at(&self, k: usize) -> (&Mapping, usize) {
        assert!(k < self.n, "page {k} of {}", self.n);
        self.at.at(k, self.page)
    }

    fn copy_page(&self, k: usize, out: &mut [u8]) {
        assert_eq!(out.len(), self.page, "copy_page needs a buffer of one page");
        let (m, off) = self.at(k);
        m.read(off, out).expect("pages of a view were checked to lie in their mapping");
    }

    fn fmt(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name).field("pages", &self.n).field("page_size", &self.page).finish()
    }
}

/// Pages lent to [`SwapStore::write`]: copy them out with [`copy_page`](Self::copy_page). Nobody
/// writes them while the call runs (they are out of their arena, or write-protected in it).
pub struct PageBufs<'a>(View<'a>);

/// Pages lent to [`SwapStore::read`]: fill them with [`fill_page`](Self::fill_page). They are
/// the runtime's staging memory, nobody else's, until the call returns.
pub struct PageBufsMut<'a>(View<'a>);

impl fmt::Debug for PageBufs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt("PageBufs", f)
    }
}

impl fmt::Debug for PageBufsMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt("PageBufsMut", f)
    }
}

impl<'a> PageBufs<'a> {
    /// `n` consecutive pages of `m` from `off`.
    pub(crate) fn run(m: &'a Mapping, off: usize, n: usize, page: usize) -> Result<Self, crate::sys::SysError> {
        View::new(Layout::Run(m, off), n, page).map(PageBufs)
    }

    /// `n` pages, page `k` at `at(k)`.
    pub(crate) fn each(
        at: &'a (dyn Fn(usize) -> (&'a Mapping, usize) + Sync),
        n: usize,
        page: usize,
    ) -> Result<Self, crate::sys::SysError> {
        View::new(Layout::Each(at), n, page).map(PageBufs)
    }

    /// Where page `k` lies, for stores inside the crate that hand it to the kernel.
    pub(crate) fn at(&self, k: usize) -> (&Mapping, usize) {
        self.0.at(k)
    }

    /// Pages in the run.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.0.n
    }

    /// Bytes per page.
    pub fn page_size(&self) -> usize {
        self.0.page
    }

    /// Copies page `k` into `out`, which must be one page long.
    ///
    /// # Panics
    ///
    /// If `k >= self.len()` or `out.len() != self.page_size()`.
    pub fn copy_page(&self, k: usize, out: &mut [u8]) {
        self.0.copy_page(k, out);
    }
}

impl<'a> PageBufsMut<'a> {
    /// `n` consecutive pages of `m` from `off`.
    pub(crate) fn run(m: &'a Mapping, off: usize, n: usize, page: usize) -> Result<Self, crate::sys::SysError> {
        View::new(Layout::Run(m, off), n, page).map(PageBufsMut)
    }

    /// Where page `k` lies, for stores inside the crate that hand it to the kernel.
    pub(crate) fn at(&self, k: usize) -> (&Mapping, usize) {
        self.0.at(k)
    }

    /// Pages in the run.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.0.n
    }

    /// Bytes per page.
    pub fn page_size(&self) -> usize {
        self.0.page
    }

    /// Fills page `k` with `data`, which must be one page long.
    ///
    /// # Panics
    ///
    /// If `k >= self.len()` or `data.len() != self.page_size()`.
    pub fn fill_page(&mut self, k: usize, data: &[u8]) {
        assert_eq!(data.len(), self.0.page, "fill_page needs one page of data");
        let (m, off) = self.0.at(k);
        m.write(off, data).expect("pages of a view were checked to lie in their mapping");
    }

    /// Copies page `k` as it is now into `out` (one page long): for a layer that transforms what
    /// the store below it read.
    ///
    /// # Panics
    ///
    /// If `k >= self.len()` or `out.len() != self.page_size()`.
    pub fn copy_page(&self, k: usize, out: &mut [u8]) {
        self.0.copy_page(k, out);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A store in memory, for the layers' tests.
    #[derive(Debug)]
    pub(crate) struct Ram {
        pub(crate) page: usize,
        pub(crate) slots: Mutex<Vec<Vec<u8>>>,
    }

    impl Ram {
        pub(crate) fn new(slots: u32, page: usize) -> Ram {
            Ram { page, slots: Mutex::new(vec![Vec::new(); slots as usize]) }
        }
    }

    impl SwapStore for Ram {
        fn capacity(&self) -> u32 {
            crate::mm::n32(self.slots.lock().unwrap().len())
        }
        fn write(&self, first: u32, pages: &PageBufs<'_>) -> Result<(), StoreError> {
            let mut s = self.slots.lock().unwrap();
            for k in 0..pages.len() {
                let mut b = vec![0u8; self.page];
                pages.copy_page(k, &mut b);
                s[first as usize + k] = b;
            }
            Ok(())
        }
        fn read(&self, first: u32, pages: &mut PageBufsMut<'_>) -> Result<(), StoreError> {
            let s = self.slots.lock().unwrap();
            for k in 0..pages.len() {
                let b = &s[first as usize + k];
                if b.is_empty() {
                    return Err(StoreError::io(libc::EIO, "ram read"));
                }
                pages.fill_page(k, b);
            }
            Ok(())
        }
        fn signal_safe(&self) -> bool {
            true
        }
    }

    /// A store may hand the views to its own threads during a call.
    #[test]
    fn views_are_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<PageBufs<'_>>();
        both::<PageBufsMut<'_>>();
    }

    #[test]
    fn views_copy_in_and_out_and_refuse_pages_outside_their_mapping() {
        let ps = crate::sys::page_size();
        let a = Mapping::anonymous(4 * ps).unwrap();
        a.fill(ps, ps, 9).unwrap();
        a.fill(3 * ps, ps, 4).unwrap();
        let pick = |k: usize| (&a, [3 * ps, ps][k]);
        let src = PageBufs::each(&pick, 2, ps).unwrap();
        let ram = Ram::new(8, ps);
        ram.write(5, &src).unwrap();
        let b = Mapping::anonymous(2 * ps).unwrap();
        let mut dst = PageBufsMut::run(&b, 0, 2, ps).unwrap();
        ram.read(5, &mut dst).unwrap();
        let mut x = vec![0u8; ps];
        dst.copy_page(0, &mut x);
        assert!(x.iter().all(|&v| v == 4));
        dst.copy_page(1, &mut x);
        assert!(x.iter().all(|&v| v == 9));
        assert!(PageBufsMut::run(&b, ps, 2, ps).is_err());
        assert!(PageBufs::run(&b, 0, 3, ps).is_err());
        let e = StoreError::full(libc::ENOSPC, "grow");
        assert!(e.is_full() && e.errno() == libc::ENOSPC);
        assert_eq!(e.to_string(), format!("grow failed: {}", std::io::Error::from_raw_os_error(libc::ENOSPC)));
    }
}

//! Anonymous private mappings owned by the runtime: arena regions, the frame pool, bounce buffers.

use super::{SysError, SysResult, page_size, range_ok};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

/// An anonymous, private, read-write mapping reserved with `MAP_NORESERVE`.
///
/// ```text
///   addr                                              addr + len
///   |-- page 0 --|-- page 1 --|-- ... --|-- page n-1 --|
///   untouched pages cost no memory; a page becomes a frame when the kernel (or a
///   userfaultfd ioctl) populates it, and stops being one on MADV_DONTNEED or UFFDIO_MOVE.
/// ```
///
/// The mapping is marked `MADV_DONTFORK` (a `fork()` of the host process must not share its pages:
/// UFFDIO_MOVE refuses shared pages, and the child would see pages the runtime no longer tracks) and
/// `MADV_NOHUGEPAGE` (a transparent huge page would break 4 KiB accounting).
///
/// Rust never holds a reference into the mapping: its contents are only copied in and out through
/// the methods below, or moved by the kernel. Because other threads may touch the same bytes through
/// raw pointers at any time, the copies use raw pointer operations, never slices over the mapping.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is an address range; it carries no thread-affine state, and all access to its
// contents goes through raw-pointer copies that are valid from any thread while the mapping lives.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references only allow the same raw copies and kernel calls.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Reserves `len` bytes (a multiple of the page size) of address space. Costs no frames.
    pub(crate) fn anonymous(len: usize) -> SysResult<Mapping> {
        if len == 0 || len % page_size() != 0 {
            return Err(SysError::new("mmap", libc::EINVAL));
        }
        // SAFETY: a fresh anonymous private mapping at an address of the kernel's choosing cannot
        // alias any existing Rust object; we check for MAP_FAILED before using the pointer.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(SysError::last("mmap"));
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(SysError::new("mmap", libc::ENOMEM))?;
        let m = Mapping { ptr, len };
        m.advise(0, len, libc::MADV_DONTFORK, "madvise(MADV_DONTFORK)")?;
        // NOHUGEPAGE fails with EINVAL on kernels built without THP; that is fine.
        let _ = m.advise(0, len, libc::MADV_NOHUGEPAGE, "madvise(MADV_NOHUGEPAGE)");
        Ok(m)
    }

    /// The first address of the mapping.
    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The raw start pointer, for callers that touch the memory directly.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Whether `addr` lies inside the mapping.
    pub(crate) fn contains(&self, addr: usize) -> bool {
        addr >= self.addr() && addr - self.addr() < self.len
    }

    /// Address of byte `off`, checked against the length.
    pub(crate) fn at(&self, off: usize, len: usize) -> SysResult<u64> {
        if !range_ok(off, len, self.len) {
            return Err(SysError::new("range check", libc::EFAULT));
        }
        Ok((self.addr() + off) as u64)
    }

    fn advise(&self, off: usize, len: usize, advice: libc::c_int, op: &'static str) -> SysResult<()> {
        self.at(off, len)?;
        // SAFETY: the range lies inside this mapping (checked above), which we own; madvise with
        // these advice values never touches memory Rust holds references to.
        let rc = unsafe { libc::madvise(self.as_ptr().add(off).cast(), len, advice) };
        if rc != 0 {
            return Err(SysError::last(op));
        }
        Ok(())
    }

    /// `MADV_DONTNEED`: drops the frames of a page-aligned range; later touches fault again.
    pub(crate) fn discard(&self, off: usize, len: usize) -> SysResult<()> {
        if len == 0 {
            return Ok(());
        }
        self.advise(off, len, libc::MADV_DONTNEED, "madvise(MADV_DONTNEED)")
    }

    /// Copies `buf.len()` bytes out of the mapping, starting at `off`. May fault.
    pub(crate) fn read(&self, off: usize, buf: &mut [u8]) -> SysResult<()> {
        self.at(off, buf.len())?;
        // SAFETY: source range checked to lie in the live mapping; `buf` is a distinct Rust slice
        // (it cannot point into the mapping, which never lends references), so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(self.as_ptr().add(off), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the mapping at `off`. May fault.
    pub(crate) fn write(&self, off: usize, data: &[u8]) -> SysResult<()> {
        self.at(off, data.len())?;
        // SAFETY: destination range checked to lie in the live, writable mapping; `data` is a Rust
        // slice outside it.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(off), data.len()) };
        Ok(())
    }

    /// Reads one byte at `off` with a volatile load, so that the access really happens (and
    /// faults the page in if it is missing): a plain copy into an unused buffer may be optimised
    /// away.
    pub(crate) fn touch(&self, off: usize) -> SysResult<u8> {
        self.at(off, 1)?;
        // SAFETY: the byte lies inside the live mapping (checked above); a volatile read of a
        // `u8` has no alignment requirement and every bit pattern is valid.
        Ok(unsafe { self.as_ptr().add(off).read_volatile() })
    }

    /// Sets `len` bytes at `off` to `byte`. May fault.
    pub(crate) fn fill(&self, off: usize, len: usize, byte: u8) -> SysResult<()> {
        self.at(off, len)?;
        // SAFETY: range checked to lie in the live, writable mapping.
        unsafe { std::ptr::write_bytes(self.as_ptr().add(off), byte, len) };
        Ok(())
    }

    /// Counts the pages of a page-aligned range that hold a frame right now (`mincore`).
    pub(crate) fn resident_pages(&self, off: usize, len: usize) -> SysResult<usize> {
        self.at(off, len)?;
        let pages = len.div_ceil(page_size());
        let mut vec = vec![0u8; pages];
        // SAFETY: the range is inside our mapping and `vec` has one byte per page, as mincore needs.
        let rc = unsafe { libc::mincore(self.as_ptr().add(off).cast(), len, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(SysError::last("mincore"));
        }
        Ok(vec.iter().filter(|&&b| b & 1 != 0).count())
    }
}

/// `process_madvise` on the calling process: not tried yet, works, or unavailable (the kernel is
/// older than 6.14, or a seccomp filter refuses it).
static BATCH: AtomicU8 = AtomicU8::new(BATCH_UNKNOWN);
const BATCH_UNKNOWN: u8 = 0;
const BATCH_YES: u8 = 1;
const BATCH_NO: u8 = 2;
/// `PIDFD_SELF_PROCESS` (Linux 6.14): the calling process, without opening a pidfd.
const PIDFD_SELF_PROCESS: libc::c_int = -10001;
/// Ranges per `process_madvise` call: the kernel takes up to 1024 (`UIO_MAXIOV`); 256 keep the
/// descriptors (4 KiB) on the stack, which may be a faulting thread's in a signal handler.
const MAX_IOV: usize = 256;

/// `MADV_DONTNEED` over many page-aligned ranges (mapping, offset, length), as one
/// `process_madvise` call per 256 ranges where the kernel has it for the calling process. The
/// kernel then flushes the TLB once per call instead of once per range: on a virtual machine a
/// flush that must interrupt the other CPUs costs tens of microseconds, far more than dropping
/// the page. Falls back to one `madvise` per range.
pub(crate) fn discard_many<'m, I>(ranges: I) -> SysResult<()>
where
    I: Iterator<Item = (&'m Mapping, usize, usize)> + Clone,
{
    for (m, off, len) in ranges.clone() {
        m.at(off, len)?;
    }
    // The descriptors live on the stack, a chunk at a time: eviction runs in the in-thread fault
    // path too, which allocates nothing.
    let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
    let mut rest = ranges;
    loop {
        let chunk = rest.clone();
        let (mut n, mut total) = (0usize, 0usize);
        while n < MAX_IOV {
            let Some((m, off, len)) = rest.next() else { break };
            iov[n] = libc::iovec {
                // SAFETY: `off` lies inside the mapping (checked above), so the pointer stays in
                // bounds; the kernel only reads these descriptors.
                iov_base: unsafe { m.as_ptr().add(off) }.cast(),
                iov_len: len,
            };
            total += len;
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        if BATCH.load(Ordering::Relaxed) == BATCH_NO || n == 1 {
            for (m, off, len) in chunk.take(n) {
                m.discard(off, len)?;
            }
            continue;
        }
        // SAFETY: `iov[..n]` holds valid descriptors of ranges inside mappings we own, and
        // MADV_DONTNEED never touches memory Rust holds references to (see `advise`).
        let rc = unsafe {
            libc::syscall(libc::SYS_process_madvise, PIDFD_SELF_PROCESS, iov.as_ptr(), n, libc::MADV_DONTNEED, 0)
        };
        if rc >= 0 && usize::try_from(rc).is_ok_and(|got| got == total) {
            BATCH.store(BATCH_YES, Ordering::Relaxed);
            continue;
        }
        let err = SysError::last("process_madvise(MADV_DONTNEED)");
        if rc < 0 && BATCH.load(Ordering::Relaxed) == BATCH_UNKNOWN {
            // Not available here (ENOSYS, EBADF for the self pidfd, EINVAL or EPERM for the
            // advice): use madvise from now on.
            BATCH.store(BATCH_NO, Ordering::Relaxed);
        } else if rc < 0 {
            return Err(err);
        }
        // Unavailable, or a partial result: the ranges not reported done, one by one (dropping a
        // range twice is harmless).
        let mut done = usize::try_from(rc).unwrap_or(0);
        for (m, off, len) in chunk.take(n) {
            if done >= len {
                done -= len;
                continue;
            }
            done = 0;
            m.discard(off, len)?;
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and nothing can reach it after drop (no references were ever
        // lent; raw pointers handed out are documented to die with the owning region).
        let rc = unsafe { libc::munmap(self.as_ptr().cast(), self.len) };
        debug_assert_eq!(rc, 0, "munmap of an owned mapping failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_in_out_and_discard() {
        let ps = page_size();
        let m = Mapping::anonymous(4 * ps).unwrap();
        m.write(ps - 2, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 4];
        m.read(ps - 2, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert!(m.resident_pages(0, 4 * ps).unwrap() >= 2);
        m.discard(0, 4 * ps).unwrap();
        assert_eq!(m.resident_pages(0, 4 * ps).unwrap(), 0);
        m.read(ps - 2, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
        assert!(m.write(4 * ps - 1, &[1, 2]).is_err());
        assert!(Mapping::anonymous(0).is_err());
    }

    #[test]
    fn discard_many_drops_exactly_the_ranges() {
        let ps = page_size();
        let (a, b) = (Mapping::anonymous(8 * ps).unwrap(), Mapping::anonymous(4 * ps).unwrap());
        for p in 0..8 {
            a.write(p * ps, &[u8::try_from(p).unwrap() + 1]).unwrap();
        }
        for p in 0..4 {
            b.write(p * ps, &[u8::try_from(p).unwrap() + 11]).unwrap();
        }
        discard_many([(&a, ps, ps), (&a, 4 * ps, 2 * ps), (&b, 3 * ps, ps), (&a, 7 * ps, ps)].into_iter()).unwrap();
        let first = |m: &Mapping, p: usize| {
            let mut x = [0u8];
            m.read(p * ps, &mut x).unwrap();
            x[0]
        };
        let got: Vec<u8> = (0..8).map(|p| first(&a, p)).collect();
        assert_eq!(got, [1, 0, 3, 4, 0, 0, 7, 0]);
        let got: Vec<u8> = (0..4).map(|p| first(&b, p)).collect();
        assert_eq!(got, [11, 12, 13, 0]);
        // Ranges outside a mapping are refused before anything is dropped.
        assert!(discard_many([(&b, 0, ps), (&b, 4 * ps, ps)].into_iter()).is_err());
        assert_eq!(first(&b, 0), 11);
        // More ranges than one call takes.
        let c = Mapping::anonymous(2100 * ps).unwrap();
        for p in 0..2100 {
            c.write(p * ps, &[1]).unwrap();
        }
        let odd: Vec<(&Mapping, usize, usize)> = (0..1050).map(|k| (&c, (2 * k + 1) * ps, ps)).collect();
        discard_many(odd.iter().copied()).unwrap();
        assert_eq!(c.resident_pages(0, 2100 * ps).unwrap(), 1050);
        assert!((0..2100).all(|p| first(&c, p) == u8::from(p % 2 == 0)));
        // The fallback for kernels without it: one madvise per range, same result. (Other
        // tests running meanwhile only lose the batching.)
        let was = BATCH.swap(BATCH_NO, Ordering::Relaxed);
        for p in 0..2100 {
            c.write(p * ps, &[1]).unwrap();
        }
        let res = discard_many(odd.iter().copied());
        BATCH.store(was, Ordering::Relaxed);
        res.unwrap();
        assert_eq!(c.resident_pages(0, 2100 * ps).unwrap(), 1050);
    }
}

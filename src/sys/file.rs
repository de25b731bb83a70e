//! The swap file: creation (unlinked, mode 0600), growth on demand (or preallocation), and
//! positioned page I/O between the file and [`Mapping`]s, with `O_DIRECT` so swapped pages do not
//! linger in the page cache.

use super::mem::Mapping;
use super::{SysError, SysResult, page_size};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A file used as page-granular swap.
#[derive(Debug)]
pub(crate) struct SwapFile {
    fd: OwnedFd,
    direct: bool,
    /// Read and write calls issued (one per run of consecutive slots), for the stats.
    pub(crate) read_ios: std::sync::atomic::AtomicU64,
    pub(crate) write_ios: std::sync::atomic::AtomicU64,
    /// Most pages one system call may transfer (tests set 1 to exercise short transfers).
    pub(crate) max_pages_per_call: std::sync::atomic::AtomicUsize,
    /// Set when the file has a name we created and must remove.
    remove: Option<PathBuf>,
    /// The most bytes the file may grow to.
    capacity: u64,
    /// Bytes allocated so far, from offset 0: every write ends below this. Changed only with
    /// `grow` held.
    len: std::sync::atomic::AtomicU64,
    /// Serialises growth.
    grow: std::sync::Mutex<()>,
    /// The file system has no `fallocate`: the file grows sparse, with `ftruncate`.
    sparse: std::sync::atomic::AtomicBool,
}

/// Bytes the swap file grows by at a time (less near its capacity).
pub(crate) const GROW_CHUNK: u64 = 64 << 20;

/// Whether a swap write failed because the swap file could not grow: the disk (or the quota) is
/// full. Nothing was written; slots past [`SwapFile::allocated`] cannot be used. The file store
/// reports it as [`StoreError::full`](crate::StoreError::full).
pub(crate) fn is_disk_full(e: &SysError) -> bool {
    e.op == "fallocate(swap file)" && matches!(e.errno, libc::ENOSPC | libc::EDQUOT)
}

/// Bytes moved by a read or write call that returned `rc`; `None` when it was interrupted
/// (EINTR: call again).
fn transferred(op: &'static str, rc: isize) -> SysResult<Option<usize>> {
    if rc >= 0 {
        return Ok(Some(usize::try_from(rc).unwrap_or(0)));
    }
    let e = SysError::last(op);
    if e.errno == libc::EINTR { Ok(None) } else { Err(e) }
}

fn cpath(p: &Path) -> SysResult<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| SysError::new("path", libc::EINVAL))
}

fn open(p: &CString, flags: libc::c_int, op: &'static str) -> SysResult<OwnedFd> {
    // SAFETY: `p` is NUL-terminated; open(2) reads only the path.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err(SysError::last(op));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Where the swap file lives.
#[derive(Debug, Clone)]
pub(crate) enum Location<'a> {
    /// An unlinked temporary file in this directory (`O_TMPFILE`, or create-then-unlink).
    TempIn(&'a Path),
    /// A named file we create (truncating) and remove when dropped.
    Named(&'a Path),
}

impl SwapFile {
    /// Creates the file with mode 0600, empty, to grow on demand up to `capacity` bytes; with
    /// `preallocate`, allocates all of it now (failing with ENOSPC if it does not fit). With
    /// `direct`, opens with `O_DIRECT`; if the file system refuses it, falls back to buffered I/O
    /// and says so in [`SwapFile::is_direct`].
    pub(crate) fn create(loc: Location<'_>, capacity: u64, direct: bool, preallocate: bool) -> SysResult<SwapFile> {
        let mut last = SysError::new("open(swap)", libc::EINVAL);
        for try_direct in [direct, false] {
            if !try_direct && direct && last.errno != libc::EINVAL {
                break;
            }
            let dflag = if try_direct { libc::O_DIRECT } else { 0 };
            let made = match loc {
                Location::TempIn(dir) => Self::temp_in(dir, dflag),
                Location::Named(path) => {
                    let c = cpath(path)?;
                    // Exclusively: an existing file (someone's data, or readable by others) or a
                    // symlink planted at the path is refused, never truncated or followed.
                    open(&c, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | dflag, "open(swap file)")
                        .map(|fd| (fd, Some(path.to_path_buf())))
                }
            };
            match made {
                Ok((fd, remove)) => {
                    let f = SwapFile {
                        fd,
                        direct: try_direct,
                        read_ios: Default::default(),
                        write_ios: Default::default(),
                        max_pages_per_call: std::sync::atomic::AtomicUsize::new(1024),
                        remove,
                        capacity,
                        len: std::sync::atomic::AtomicU64::new(0),
                        grow: std::sync::Mutex::new(()),
                        sparse: std::sync::atomic::AtomicBool::new(false),
                    };
                    if preallocate {
                        f.ensure_len(capacity, false)?;
                    }
                    return Ok(f);
                }
                Err(e) => last = e,
            }
            if !direct {
                break;
            }
        }
        Err(last)
    }

    fn temp_in(dir: &Path, dflag: libc::c_int) -> SysResult<(OwnedFd, Option<PathBuf>)> {
        let c = cpath(dir)?;
        match open(&c, libc::O_TMPFILE | libc::O_RDWR | dflag, "open(O_TMPFILE)") {
            Ok(fd) => return Ok((fd, None)),
            Err(e) if matches!(e.errno, libc::EOPNOTSUPP | libc::EISDIR) => {}
            Err(e) => return Err(e),
        }
        // No O_TMPFILE on this file system: create a unique name exclusively, then unlink it.
        for n in 0..1000u32 {
            let name = dir.join(format!(".pagewarden-swap-{}-{n}", std::process::id()));
            let cn = cpath(&name)?;
            match open(&cn, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | dflag, "open(swap file)") {
                Ok(fd) => {
                    // SAFETY: unlink(2) on a NUL-terminated path we just created.
                    unsafe { libc::unlink(cn.as_ptr()) };
                    return Ok((fd, None));
                }
                Err(e) if e.errno == libc::EEXIST => continue,
                Err(e) => return Err(e),
            }
        }
        Err(SysError::new("open(swap file)", libc::EEXIST))
    }

    /// Makes sure the first `end` bytes of the file are allocated, growing it by
    /// [`GROW_CHUNK`] at a time (with `chunked`; less near the capacity, or exactly to `end` when a
    /// whole chunk does not fit). Fails with ENOSPC (or EDQUOT) when the disk is full, with the
    /// file as it was. Allocates no memory: it runs in the in-thread fault path's evictions.
    pub(crate) fn ensure_len(&self, end: u64, chunked: bool) -> SysResult<()> {
        use std::sync::atomic::Ordering;
        if end <= self.len.load(Ordering::Acquire) {
            return Ok(());
        }
        if end > self.capacity {
            return Err(SysError::new("fallocate(swap file): past its capacity", libc::ENOSPC));
        }
        let _g = crate::util::lock(&self.grow);
        let have = self.len.load(Ordering::Acquire);
        if end <= have {
            return Ok(());
        }
        let want = if chunked { end.max(have.saturating_add(GROW_CHUNK)).min(self.capacity) } else { end };
        let new = match self.extend(have, want) {
            Ok(n) => n,
            // A whole chunk does not fit: perhaps what this write needs does.
            Err(e) if want > end && matches!(e.errno, libc::ENOSPC | libc::EDQUOT) => self.extend(have, end)?,
            Err(e) => return Err(e),
        };
        self.len.store(new, Ordering::Release);
        Ok(())
    }

    /// Allocates bytes `from..to` of the file (and extends its size to `to`).
    fn extend(&self, from: u64, to: u64) -> SysResult<u64> {
        let off = libc::off_t::try_from(from).map_err(|_| SysError::new("fallocate(swap file)", libc::EFBIG))?;
        let end = libc::off_t::try_from(to).map_err(|_| SysError::new("fallocate(swap file)", libc::EFBIG))?;
        if !self.sparse.load(std::sync::atomic::Ordering::Relaxed) {
            // SAFETY: fallocate on our own descriptor; no memory is passed.
            let rc = unsafe { libc::fallocate(self.fd.as_raw_fd(), 0, off, end - off) };
            if rc == 0 {
                return Ok(to);
            }
            let e = SysError::last("fallocate(swap file)");
            if e.errno != libc::EOPNOTSUPP {
                return Err(e);
            }
            // No fallocate here: grow the file sparse (a full disk then shows as a failed write).
            self.sparse.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: ftruncate on our own descriptor.
        if unsafe { libc::ftruncate(self.fd.as_raw_fd(), end) } != 0 {
            return Err(SysError::last("ftruncate(swap file)"));
        }
        Ok(to)
    }

    /// Bytes allocated so far (the file's length, which only grows).
    pub(crate) fn allocated(&self) -> u64 {
        self.len.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The most bytes the file may grow to.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes of disk the file occupies now (its allocated blocks).
    pub(crate) fn occupied(&self) -> u64 {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat writes one `struct stat` into the buffer we pass.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), st.as_mut_ptr()) } < 0 {
            return 0;
        }
        // SAFETY: fstat succeeded, so it initialised the struct.
        let st = unsafe { st.assume_init() };
        u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512)
    }

    /// Whether I/O bypasses the page cache.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    /// Reads pages at file offset `at` into the listed page-aligned buffers, in order.
    #[cfg(test)]
    pub(crate) fn read_pages(&self, at: u64, pages: &[(&Mapping, usize)]) -> SysResult<()> {
        self.io(at, pages.len(), |k| pages[k], false)
    }

    /// Reads `n` pages at file offset `at` into `n` consecutive pages of `m` from `off`.
    #[cfg(test)]
    pub(crate) fn read_run(&self, at: u64, m: &Mapping, off: usize, n: usize) -> SysResult<()> {
        let ps = page_size();
        self.io(at, n, |k| (m, off + k * ps), false)
    }

    /// Reads `n` pages at file offset `at`, in order: page `k` into `page(k)`.
    pub(crate) fn read_pages_with<'m>(
        &self,
        at: u64,
        n: usize,
        page: impl Fn(usize) -> (&'m Mapping, usize),
    ) -> SysResult<()> {
        self.io(at, n, page, false)
    }

    /// Flushes written pages to the device (`fdatasync`).
    pub(crate) fn sync(&self) -> SysResult<()> {
        // SAFETY: fdatasync on a descriptor we own; no memory is passed.
        if unsafe { libc::fdatasync(self.fd.as_raw_fd()) } < 0 {
            return Err(SysError::last("fdatasync(swap file)"));
        }
        Ok(())
    }

    /// Writes the listed pages to file offset `at`, contiguously, in order.
    #[cfg(test)]
    pub(crate) fn write_pages(&self, at: u64, pages: &[(&Mapping, usize)]) -> SysResult<()> {
        self.io(at, pages.len(), |k| pages[k], true)
    }

    /// Writes `n` pages to file offset `at`, contiguously, in order: page `k` from `page(k)`.
    pub(crate) fn write_pages_with<'m>(
        &self,
        at: u64,
        n: usize,
        page: impl Fn(usize) -> (&'m Mapping, usize),
    ) -> SysResult<()> {
        self.io(at, n, page, true)
    }

    /// Transfers `n` pages between file offset `at` and the buffers `page(0..n)` name, in order.
    fn io<'m>(&self, at: u64, n: usize, page: impl Fn(usize) -> (&'m Mapping, usize), write: bool) -> SysResult<()> {
        let ps = page_size();
        let counter = if write { &self.write_ios } else { &self.read_ios };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let op = if write { "pwritev(swap)" } else { "preadv(swap)" };
        // Every buffer is checked before any I/O starts.
        for k in 0..n {
            let (m, off) = page(k);
            m.at(off, ps)?;
        }
        if write {
            // The file grows to hold every slot written.
            self.ensure_len(at + (ps * n) as u64, true)?;
        }
        // The iovecs live on the stack, a chunk at a time: this runs in the in-thread fault
        // path, which allocates nothing.
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; IOV_CHUNK];
        let total = ps * n;
        let mut done = 0usize;
        while done < total {
            // Skip fully transferred pages and trim a partially transferred one.
            let first = done / ps;
            let limit = self.max_pages_per_call.load(std::sync::atomic::Ordering::Relaxed).clamp(1, IOV_CHUNK);
            let cnt = (n - first).min(limit);
            for (k, v) in iov[..cnt].iter_mut().enumerate() {
                let (m, off) = page(first + k);
                *v = libc::iovec { iov_base: crate::util::idx(m.at(off, ps)?) as *mut libc::c_void, iov_len: ps };
            }
            let skip = done % ps;
            if skip != 0 {
                // O_DIRECT cannot resume mid-page; buffered I/O can.
                iov[0].iov_base = (iov[0].iov_base as usize + skip) as *mut libc::c_void;
                iov[0].iov_len -= skip;
            }
            let pos = libc::off_t::try_from(at + done as u64).map_err(|_| SysError::new(op, libc::EFBIG))?;
            let cnt = libc::c_int::try_from(cnt).unwrap_or(1);
            // SAFETY: every iovec names `ps` bytes (or a tail of them) inside a live Mapping we own
            // (checked by `Mapping::at`); the kernel reads or writes only those bytes. Mapping
            // memory is never referenced by Rust, so a kernel write into it aliases nothing.
            let Some(got) = transferred(op, unsafe {
                if write {
                    libc::pwritev(self.fd.as_raw_fd(), iov.as_ptr(), cnt, pos)
                } else {
                    libc::preadv(self.fd.as_raw_fd(), iov.as_ptr(), cnt, pos)
                }
            })?
            else {
                continue;
            };
            if got == 0 {
                // End of file or a device that makes no progress.
                return Err(SysError::new(op, if write { libc::ENOSPC } else { libc::EIO }));
            }
            done += got;
        }
        Ok(())
    }
}

/// A user's file mapped into a region: positioned reads and writes between it and [`Mapping`]s.
#[derive(Debug)]
pub(crate) struct DataFile {
    fd: OwnedFd,
}

impl DataFile {
    /// Takes its own descriptor for `fd` (the caller keeps theirs).
    pub(crate) fn dup(fd: std::os::fd::BorrowedFd<'_>) -> SysResult<DataFile> {
        Ok(DataFile {
            fd: fd
                .try_clone_to_owned()
                .map_err(|e| SysError::new("dup(file)", e.raw_os_error().unwrap_or(libc::EBADF)))?,
        })
    }

    /// Whether the descriptor was opened for writing.
    pub(crate) fn writable(&self) -> SysResult<bool> {
        // SAFETY: F_GETFL on a descriptor we own reads its status flags; no memory is passed.
        let fl = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_GETFL) };
        if fl < 0 {
            return Err(SysError::last("fcntl(F_GETFL)"));
        }
        Ok(matches!(fl & libc::O_ACCMODE, libc::O_RDWR | libc::O_WRONLY))
    }

    /// Whether the descriptor can be read.
    pub(crate) fn readable(&self) -> SysResult<bool> {
        // SAFETY: as in `writable`.
        let fl = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_GETFL) };
        if fl < 0 {
            return Err(SysError::last("fcntl(F_GETFL)"));
        }
        Ok(matches!(fl & libc::O_ACCMODE, libc::O_RDWR | libc::O_RDONLY))
    }

    fn stat(&self) -> SysResult<libc::stat> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat writes one `struct stat` into the buffer we pass.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), st.as_mut_ptr()) } < 0 {
            return Err(SysError::last("fstat(file)"));
        }
        // SAFETY: fstat succeeded, so it initialised the struct.
        Ok(unsafe { st.assume_init() })
    }

    /// The file's current length in bytes.
    pub(crate) fn len(&self) -> SysResult<u64> {
        Ok(u64::try_from(self.stat()?.st_size).unwrap_or(0))
    }

    /// What kind of file the descriptor refers to: `None` for a regular file, else its kind's
    /// name ("directory", "FIFO (pipe)", "socket", ...).
    pub(crate) fn not_regular(&self) -> SysResult<Option<&'static str>> {
        Ok(match self.stat()?.st_mode & libc::S_IFMT {
            libc::S_IFREG => None,
            libc::S_IFDIR => Some("directory"),
            libc::S_IFIFO => Some("FIFO (pipe)"),
            libc::S_IFSOCK => Some("socket"),
            libc::S_IFCHR => Some("character device"),
            libc::S_IFBLK => Some("block device"),
            libc::S_IFLNK => Some("symbolic link"),
            _ => Some("file of unknown type"),
        })
    }

    /// Reads up to `len` bytes at file offset `at` into `m` at `off`; returns the bytes read
    /// (fewer at end of file).
    pub(crate) fn read_into(&self, at: u64, m: &Mapping, off: usize, len: usize) -> SysResult<usize> {
        self.io(at, m, off, len, false)
    }

    /// Writes `len` bytes of `m` at `off` to file offset `at`.
    pub(crate) fn write_from(&self, at: u64, m: &Mapping, off: usize, len: usize) -> SysResult<()> {
        let n = self.io(at, m, off, len, true)?;
        if n < len {
            return Err(SysError::new("pwrite(file)", libc::ENOSPC));
        }
        Ok(())
    }

    /// Flushes written data to the device (`fdatasync`).
    pub(crate) fn sync(&self) -> SysResult<()> {
        // SAFETY: fdatasync on a descriptor we own; no memory is passed.
        if unsafe { libc::fdatasync(self.fd.as_raw_fd()) } < 0 {
            return Err(SysError::last("fdatasync(file)"));
        }
        Ok(())
    }

    fn io(&self, at: u64, m: &Mapping, off: usize, len: usize, write: bool) -> SysResult<usize> {
        let op = if write { "pwrite(file)" } else { "pread(file)" };
        let base = crate::util::idx(m.at(off, len)?);
        let mut done = 0usize;
        while done < len {
            let pos = libc::off_t::try_from(at + done as u64).map_err(|_| SysError::new(op, libc::EFBIG))?;
            let p = (base + done) as *mut libc::c_void;
            // SAFETY: `[base, base + len)` lies inside the live mapping (checked by `Mapping::at`);
            // the kernel reads or writes only those bytes, which Rust never references.
            let Some(n) = transferred(op, unsafe {
                if write {
                    libc::pwrite(self.fd.as_raw_fd(), p, len - done, pos)
                } else {
                    libc::pread(self.fd.as_raw_fd(), p, len - done, pos)
                }
            })?
            else {
                continue;
            };
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        if let Some(p) = self.remove.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Pages per `preadv`/`pwritev` call at most: 1 MiB of 4 KiB pages, 4 KiB of iovecs on the stack.
const IOV_CHUNK: usize = 256;

/// `RAMFS_MAGIC` from linux/magic.h (libc lacks it).
const RAMFS_MAGIC: libc::__fsword_t = 0x8584_58f6;

/// File system facts about a directory: free bytes and whether it is RAM-backed (tmpfs/ramfs).
pub(crate) fn fs_info(dir: &Path) -> SysResult<(u64, bool)> {
    let c = cpath(dir)?;
    let mut s = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: statfs writes one struct statfs into `s`; the path is NUL-terminated.
    let rc = unsafe { libc::statfs(c.as_ptr(), s.as_mut_ptr()) };
    if rc != 0 {
        return Err(SysError::last("statfs"));
    }
    // SAFETY: statfs succeeded, so the struct is initialised.
    let s = unsafe { s.assume_init() };
    let free = s.f_bavail.saturating_mul(u64::try_from(s.f_bsize).unwrap_or(0));
    let ram = matches!(s.f_type, libc::TMPFS_MAGIC | RAMFS_MAGIC);
    Ok((free, ram))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_direct_and_buffered() {
        let ps = page_size();
        let dir = std::env::temp_dir();
        for direct in [true, false] {
            let f = SwapFile::create(Location::TempIn(&dir), 16 * ps as u64, direct, false).unwrap();
            let a = Mapping::anonymous(4 * ps).unwrap();
            a.fill(0, ps, 1).unwrap();
            a.fill(2 * ps, ps, 3).unwrap();
            f.write_pages(ps as u64, &[(&a, 0), (&a, 2 * ps)]).unwrap();
            let b = Mapping::anonymous(4 * ps).unwrap();
            f.read_pages(ps as u64, &[(&b, 3 * ps), (&b, 0)]).unwrap();
            let mut x = [0u8; 2];
            b.read(3 * ps + 5, &mut x[..1]).unwrap();
            b.read(7, &mut x[1..]).unwrap();
            assert_eq!(x, [1, 3]);
        }
        let (free, _) = fs_info(&dir).unwrap();
        assert!(free > 0);
    }

    /// The file starts empty and grows by chunks as pages are written past its end, never past
    /// its capacity; preallocated, it has its capacity from the start.
    #[test]
    fn grows_in_chunks_up_to_its_capacity() {
        let page = page_size();
        let ps = page as u64;
        let dir = std::env::temp_dir();
        let cap = 2 * GROW_CHUNK + 16 * ps;
        let f = SwapFile::create(Location::TempIn(&dir), cap, true, false).unwrap();
        assert_eq!(f.allocated(), 0);
        let a = Mapping::anonymous(page).unwrap();
        a.fill(0, page, 7).unwrap();
        f.write_pages(0, &[(&a, 0)]).unwrap();
        assert_eq!(f.allocated(), GROW_CHUNK);
        f.write_pages(GROW_CHUNK + 5 * ps, &[(&a, 0)]).unwrap();
        assert_eq!(f.allocated(), 2 * GROW_CHUNK);
        f.write_pages(cap - ps, &[(&a, 0)]).unwrap();
        assert_eq!(f.allocated(), cap, "the last chunk stops at the capacity");
        assert!(f.write_pages(cap, &[(&a, 0)]).is_err(), "past the capacity");
        let b = Mapping::anonymous(page).unwrap();
        f.read_run(GROW_CHUNK + 5 * ps, &b, 0, 1).unwrap();
        let mut x = [0u8; 1];
        b.read(17, &mut x).unwrap();
        assert_eq!(x, [7]);
        let p = SwapFile::create(Location::TempIn(&dir), 16 * ps, true, true).unwrap();
        assert_eq!(p.allocated(), 16 * ps);
        assert!(p.occupied() >= 16 * ps);
    }

    /// More pages than one call's iovecs, and calls limited to a few pages: every page lands in
    /// its place.
    #[test]
    fn long_runs_go_in_chunks() {
        let ps = page_size();
        let n = IOV_CHUNK + 45;
        for limit in [1024, 7] {
            let f = SwapFile::create(Location::TempIn(&std::env::temp_dir()), (n + 1) as u64 * ps as u64, true, false)
                .unwrap();
            f.max_pages_per_call.store(limit, std::sync::atomic::Ordering::Relaxed);
            let a = Mapping::anonymous(n * ps).unwrap();
            for k in 0..n {
                a.fill(k * ps, ps, u8::try_from(k % 251).unwrap()).unwrap();
            }
            let pages: Vec<(&Mapping, usize)> = (0..n).map(|k| (&a, k * ps)).collect();
            f.write_pages(ps as u64, &pages).unwrap();
            let b = Mapping::anonymous((n + 1) * ps).unwrap();
            f.read_run(ps as u64, &b, ps, n).unwrap();
            for k in 0..n {
                let mut x = [0u8; 2];
                b.read((k + 1) * ps, &mut x[..1]).unwrap();
                b.read((k + 2) * ps - 1, &mut x[1..]).unwrap();
                assert_eq!(x, [u8::try_from(k % 251).unwrap(); 2], "page {k}, {limit} pages per call");
            }
            // A buffer outside its mapping is refused before any I/O.
            assert!(f.read_run(0, &b, n * ps, 2).is_err());
        }
    }
}

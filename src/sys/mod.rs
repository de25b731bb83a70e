//! The platform layer: every system call and every `unsafe` block of the crate lives here.
//!
//! Porting pagewarden means editing this folder only. The layers above see safe types:
//!
//! * [`mem::Mapping`] — an anonymous private mapping we own. Rust never forms a reference to its
//!   contents; it is read and written only through the bounds-checked copies in this module and by
//!   the kernel (userfaultfd ioctls, `pread`/`pwrite`). That is what makes handing its addresses to
//!   the kernel sound.
//! * [`uffd::Uffd`] — a userfaultfd with the ioctls we use, each taking `Mapping`s and offsets, never
//!   raw addresses, so no ioctl can name memory that Rust owns.
//! * [`file::SwapFile`] — positioned, optionally `O_DIRECT`, I/O between a file and mappings (the
//!   system calls of the default swap store, `store::FileStore`).
//! * [`poll`] — an eventfd to wake the handler threads and a two-descriptor poll.
//!
//! Errors keep the errno ([`SysError`]); the public layer turns them into advice.

#![allow(unsafe_code)]

pub(crate) mod file;
pub(crate) mod mem;
pub(crate) mod poll;
pub(crate) mod signal;
pub(crate) mod uffd;

use std::fmt;
use std::io;

/// A failed system call: which operation, and the errno it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SysError {
    /// The call that failed, e.g. `"UFFDIO_COPY"`.
    pub(crate) op: &'static str,
    /// The errno, as the kernel returned it.
    pub(crate) errno: i32,
}

impl SysError {
    /// Captures `errno` right after a failed call.
    pub(crate) fn last(op: &'static str) -> SysError {
        SysError { op, errno: io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) }
    }

    pub(crate) fn new(op: &'static str, errno: i32) -> SysError {
        SysError { op, errno }
    }

    /// The same failure as an [`io::Error`] (the errno is kept).
    pub(crate) fn io(self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, self.io())
    }
}

impl std::error::Error for SysError {}

pub(crate) type SysResult<T> = Result<T, SysError>;

/// The base page size of the machine, in bytes (4096 on x86_64).
pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions; it only reads a constant.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(v).ok().filter(|&p| p.is_power_of_two()).unwrap_or(4096)
    })
}

/// The kernel thread id of the calling thread (what userfaultfd reports with
/// `UFFD_FEATURE_THREAD_ID`).
pub(crate) fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).unwrap_or(0)
}

/// Checks that a `(offset, len)` range lies inside an object of `size` bytes.
fn range_ok(off: usize, len: usize, size: usize) -> bool {
    off.checked_add(len).is_some_and(|end| end <= size)
}

/// Memory figures of the machine (or of the cgroup the process runs in, when that is tighter).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemInfo {
    /// `MemTotal`.
    pub(crate) total: u64,
    /// `MemAvailable`, lowered to the cgroup's headroom (`memory.max - memory.current`) if any.
    pub(crate) available: u64,
}

pub(crate) fn mem_info() -> MemInfo {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let total = field("MemTotal:").unwrap_or(1 << 30);
    let mut available = field("MemAvailable:").unwrap_or(total / 2);
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    if let (Some(max), Some(cur)) = (read("/sys/fs/cgroup/memory.max"), read("/sys/fs/cgroup/memory.current")) {
        available = available.min(max.saturating_sub(cur));
    }
    MemInfo { total, available }
}

/// Fills `buf` with random bytes from the kernel (`getrandom(2)`), for per-runtime keys.
pub(crate) fn random(buf: &mut [u8]) -> SysResult<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: getrandom writes at most `len - done` bytes into the rest of `buf`, which we own.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = SysError::last("getrandom");
            if e.errno == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        done += usize::try_from(n).unwrap_or(0);
    }
    Ok(())
}

/// Writes `msg` to standard error and aborts the process, allocating nothing and taking no lock:
/// callable from a signal handler, where a panic could not unwind and a deadlock would be silent.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
pub(crate) fn die(msg: &str) -> ! {
    // SAFETY: write(2) from a valid buffer of `msg.len()` bytes to descriptor 2; a failed or short
    // write is of no consequence, we abort next.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    std::process::abort()
}

//! Our own userfaultfd wrapper, on `libc` and the kernel's structs from `linux-raw-sys`.
//!
//! Every ioctl takes [`Mapping`]s and offsets, never raw addresses: the destination of a COPY, MOVE,
//! POISON or WRITEPROTECT is always memory the runtime owns and Rust never references, which is why
//! these calls can be safe functions.
//!
//! Kernel semantics this module encodes (see KERNEL_NOTES in the project's shared docs):
//! * `EEXIST` from COPY/ZEROPAGE/MOVE means a page was already there. The kernel then skipped the
//!   wake-up, so we wake the range ourselves before reporting the outcome.
//! * `EAGAIN` means the address space was changing (a pending non-cooperative event) or the copy was
//!   partial. We resume after the bytes already done, a bounded number of times.

use super::mem::Mapping;
use super::{SysError, SysResult};
use linux_raw_sys::general as k;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `_IO(0xAA, 0x00)` on /dev/userfaultfd.
const USERFAULTFD_IOC_NEW: libc::c_ulong = 0xAA00;

/// `_IOC(dir, 0xAA, nr, sizeof(A))`: the request number of a userfaultfd ioctl whose argument is
/// an `A` (the size is part of the number).
const fn uffd_ioc<A>(dir: Dir, nr: u8) -> libc::c_ulong {
    ((dir as libc::c_ulong) << 30)
        | ((std::mem::size_of::<A>() as libc::c_ulong) << 16)
        | (0xAA << 8)
        | nr as libc::c_ulong
}

/// An ioctl's direction bits, as the kernel's `_IOR` / `_IOWR` put them.
#[derive(Clone, Copy)]
enum Dir {
    /// `_IOR`: the kernel only reads the argument.
    Read = 2,
    /// `_IOWR`: the kernel reads it and writes results back.
    ReadWrite = 3,
}

/// A userfaultfd ioctl: its request number tied to the one kernel struct it takes.
///
/// # Safety
/// `REQ` must be the ioctl whose argument is exactly `Arg` (the kernel's struct layout), and the
/// kernel must read and write nothing but that struct and the addresses named inside it.
unsafe trait Ioctl {
    type Arg;
    const REQ: libc::c_ulong;
    const NAME: &'static str;
}

macro_rules! ioctls {
    ($($(#[$doc:meta])* $name:ident($arg:ty) = $dir:ident $nr:literal;)*) => {$(
        $(#[$doc])*
        struct $name;
        // SAFETY: the request number is built from the kernel's direction, `nr` and the size of `$arg`, the
        // struct `linux/userfaultfd.h` declares for it (checked against linux-raw-sys below);
        // the kernel reads and writes that struct and the ranges named in it only.
        unsafe impl Ioctl for $name {
            type Arg = $arg;
            const REQ: libc::c_ulong = uffd_ioc::<$arg>(Dir::$dir, $nr);
            const NAME: &'static str = concat!("ioctl(UFFDIO_", stringify!($name), ")");
        }
    )*};
}

ioctls! {
    /// UFFDIO_API: the handshake.
    Api(k::uffdio_api) = ReadWrite 0x3F;
    /// UFFDIO_REGISTER.
    Register(k::uffdio_register) = ReadWrite 0x00;
    /// UFFDIO_UNREGISTER.
    Unregister(k::uffdio_range) = Read 0x01;
    /// UFFDIO_WAKE.
    Wake(k::uffdio_range) = Read 0x02;
    /// UFFDIO_COPY.
    Copy(k::uffdio_copy) = ReadWrite 0x03;
    /// UFFDIO_ZEROPAGE.
    Zeropage(k::uffdio_zeropage) = ReadWrite 0x04;
    /// UFFDIO_MOVE (not in linux-raw-sys: see KERNEL_NOTES).
    Move(k::uffdio_move) = ReadWrite 0x05;
    /// UFFDIO_WRITEPROTECT.
    Writeprotect(k::uffdio_writeprotect) = ReadWrite 0x06;
    /// UFFDIO_POISON (not in linux-raw-sys: see KERNEL_NOTES).
    Poison(k::uffdio_poison) = ReadWrite 0x08;
}

// The numbers built above are the kernel's: those linux-raw-sys carries, and the two measured
// on our kernel (KERNEL_NOTES).
const _: () = {
    use linux_raw_sys::ioctl as n;
    assert!(Api::REQ == n::UFFDIO_API as libc::c_ulong);
    assert!(Register::REQ == n::UFFDIO_REGISTER as libc::c_ulong);
    assert!(Unregister::REQ == n::UFFDIO_UNREGISTER as libc::c_ulong);
    assert!(Wake::REQ == n::UFFDIO_WAKE as libc::c_ulong);
    assert!(Copy::REQ == n::UFFDIO_COPY as libc::c_ulong);
    assert!(Zeropage::REQ == n::UFFDIO_ZEROPAGE as libc::c_ulong);
    assert!(Writeprotect::REQ == n::UFFDIO_WRITEPROTECT as libc::c_ulong);
    assert!(Move::REQ == 0xC028_AA05);
    assert!(Poison::REQ == 0xC020_AA08);
};

/// Issues ioctl `I` on `fd` with `arg`.
///
/// # Safety
/// Every address inside `arg` must come from [`Mapping::at`] on a mapping that outlives the call:
/// memory the runtime owns and Rust never references, so that the kernel's writes there (COPY,
/// MOVE, ZEROPAGE, POISON) alias nothing.
unsafe fn ioctl<I: Ioctl>(fd: RawFd, arg: &mut I::Arg) -> SysResult<()> {
    // SAFETY: `I::REQ` takes exactly an `I::Arg` (the `Ioctl` contract), passed by a pointer
    // valid for the call; the addresses inside it are the caller's to vouch for (see above).
    let rc = unsafe { libc::ioctl(fd, I::REQ as _, std::ptr::from_mut(arg)) };
    if rc != 0 { Err(SysError::new(I::NAME, errno())) } else { Ok(()) }
}

const MOVE_MODE_DONTWAKE: u64 = 1;
const WRITEPROTECT_MODE_WP: u64 = 1;
const WRITEPROTECT_MODE_DONTWAKE: u64 = 2;
const POISON_MODE_DONTWAKE: u64 = 1;

/// Bits of the `ioctls` mask that UFFDIO_REGISTER returns.
pub(crate) mod ioctl_bit {
    #[cfg(test)]
    pub(crate) const COPY: u64 = 1 << 3;
    pub(crate) const MOVE: u64 = 1 << 5;
    pub(crate) const WRITEPROTECT: u64 = 1 << 6;
    pub(crate) const POISON: u64 = 1 << 8;
}

/// Feature bits of UFFDIO_API.
pub(crate) mod feature {
    use linux_raw_sys::general as k;
    pub(crate) const PAGEFAULT_FLAG_WP: u64 = k::UFFD_FEATURE_PAGEFAULT_FLAG_WP as u64;
    pub(crate) const THREAD_ID: u64 = k::UFFD_FEATURE_THREAD_ID as u64;
    pub(crate) const POISON: u64 = k::UFFD_FEATURE_POISON as u64;
    pub(crate) const MOVE: u64 = k::UFFD_FEATURE_MOVE as u64;
    pub(crate) const SIGBUS: u64 = k::UFFD_FEATURE_SIGBUS as u64;
}

/// Registration modes.
pub(crate) const MODE_MISSING: u64 = k::UFFDIO_REGISTER_MODE_MISSING as u64;
pub(crate) const MODE_WP: u64 = k::UFFDIO_REGISTER_MODE_WP as u64;

/// How the descriptor was obtained, in the order we try them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UffdSource {
    /// `/dev/userfaultfd` with `USERFAULTFD_IOC_NEW` (needs read/write access to the device).
    Device,
    /// The `userfaultfd(2)` syscall (needs CAP_SYS_PTRACE or `vm.unprivileged_userfaultfd=1`).
    Syscall,
    /// The syscall with `UFFD_USER_MODE_ONLY`: works unprivileged, but a system call whose buffer
    /// lies on a non-resident managed page fails with `EFAULT` instead of faulting it in.
    SyscallUserModeOnly,
}

/// Why each way of creating the descriptor failed.
#[derive(Debug, Clone)]
pub(crate) struct OpenFailure {
    pub(crate) device: SysError,
    pub(crate) syscall: SysError,
    pub(crate) user_mode_only: SysError,
}

/// One event read from the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UffdEvent {
    /// A thread faulted at `addr`.
    PageFault {
        addr: usize,
        /// The access was a write.
        write: bool,
        /// A write-protect fault (the page is present but protected), not a missing page.
        wp: bool,
        /// Kernel thread id of the faulting thread (0 without `UFFD_FEATURE_THREAD_ID`).
        tid: u32,
    },
    /// An event we did not ask for (fork, remap, remove, unmap), by number.
    Other(u8),
}

/// The result of a COPY or MOVE that met an existing page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filled {
    /// Every byte was installed.
    All,
    /// Installation stopped at an existing page after `bytes`; the range was woken.
    Exists { bytes: usize },
}

/// A userfaultfd descriptor after the API handshake.
#[derive(Debug)]
pub(crate) struct Uffd {
    fd: OwnedFd,
    features: u64,
    source: UffdSource,
}

fn range(m: &Mapping, off: usize, len: usize) -> SysResult<k::uffdio_range> {
    Ok(k::uffdio_range { start: m.at(off, len)?, len: len as u64 })
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

const EAGAIN_RETRIES: u32 = 10_000;

impl Uffd {
    fn open_raw() -> Result<(OwnedFd, UffdSource), OpenFailure> {
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
        let device = (|| {
            // SAFETY: open(2) on a NUL-terminated literal path; no memory is shared with the kernel
            // beyond the path.
            let dev = unsafe { libc::open(c"/dev/userfaultfd".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if dev < 0 {
                return Err(SysError::last("open(/dev/userfaultfd)"));
            }
            // SAFETY: `dev` is a descriptor we just opened and own.
            let dev = unsafe { OwnedFd::from_raw_fd(dev) };
            // SAFETY: USERFAULTFD_IOC_NEW takes its flags by value and returns a new descriptor.
            let fd = unsafe { libc::ioctl(dev.as_raw_fd(), USERFAULTFD_IOC_NEW as _, flags) };
            if fd < 0 {
                return Err(SysError::last("ioctl(USERFAULTFD_IOC_NEW)"));
            }
            // SAFETY: the ioctl returned a fresh descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })();
        let device = match device {
            Ok(fd) => return Ok((fd, UffdSource::Device)),
            Err(e) => e,
        };
        let sys = |extra: libc::c_int, op| {
            // SAFETY: the userfaultfd syscall takes only flags and returns a new descriptor.
            let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | extra) };
            if fd < 0 {
                return Err(SysError::last(op));
            }
            let fd = RawFd::try_from(fd).map_err(|_| SysError::new(op, libc::EBADF))?;
            // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let syscall = match sys(0, "userfaultfd(2)") {
            Ok(fd) => return Ok((fd, UffdSource::Syscall)),
            Err(e) => e,
        };
        let umo = k::UFFD_USER_MODE_ONLY as libc::c_int;
        match sys(umo, "userfaultfd(2, UFFD_USER_MODE_ONLY)") {
            Ok(fd) => Ok((fd, UffdSource::SyscallUserModeOnly)),
            Err(user_mode_only) => Err(OpenFailure { device, syscall, user_mode_only }),
        }
    }

    fn handshake(fd: &OwnedFd, features: u64) -> SysResult<k::uffdio_api> {
        let mut api = k::uffdio_api { api: u64::from(k::UFFD_API), features, ioctls: 0 };
        // SAFETY: uffdio_api holds no address.
        unsafe { ioctl::<Api>(fd.as_raw_fd(), &mut api) }?;
        Ok(api)
    }

    /// Asks the kernel which features it supports, on a throwaway descriptor (the handshake can be
    /// made once per descriptor).
    pub(crate) fn probe() -> Result<(u64, UffdSource), OpenFailure> {
        let (fd, source) = Self::open_raw()?;
        let api = Self::handshake(&fd, 0).map_err(|e| OpenFailure { device: e, syscall: e, user_mode_only: e })?;
        Ok((api.features, source))
    }

    /// Creates a descriptor and enables `wanted & supported` features.
    pub(crate) fn open(wanted: u64) -> Result<Uffd, OpenFailure> {
        let (supported, _) = Self::probe()?;
        let (fd, source) = Self::open_raw()?;
        let api = Self::handshake(&fd, wanted & supported).map_err(|e| OpenFailure {
            device: e,
            syscall: e,
            user_mode_only: e,
        })?;
        Ok(Uffd { fd, features: api.features & wanted, source })
    }

    /// The features enabled on this descriptor.
    pub(crate) fn features(&self) -> u64 {
        self.features
    }

    pub(crate) fn source(&self) -> UffdSource {
        self.source
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Issues ioctl `I` on this descriptor. Every argument built in this module names its
    /// ranges with [`Mapping::at`] (through `range` or directly), which is what makes this safe.
    fn ioctl<I: Ioctl>(&self, arg: &mut I::Arg) -> SysResult<()> {
        // SAFETY: callers in this module fill every address of `arg` from `Mapping::at` on a
        // mapping they borrow for the call (see `ioctl`'s contract).
        unsafe { ioctl::<I>(self.fd.as_raw_fd(), arg) }
    }

    /// Registers a range of `m` for `mode` faults; returns the ioctl mask the range supports.
    pub(crate) fn register(&self, m: &Mapping, off: usize, len: usize, mode: u64) -> SysResult<u64> {
        let mut r = k::uffdio_register { range: range(m, off, len)?, mode, ioctls: 0 };
        self.ioctl::<Register>(&mut r)?;
        Ok(r.ioctls)
    }

    /// Unregisters a range; threads parked on it are woken by the kernel.
    pub(crate) fn unregister(&self, m: &Mapping, off: usize, len: usize) -> SysResult<()> {
        let mut r = range(m, off, len)?;
        self.ioctl::<Unregister>(&mut r)
    }

    /// Wakes threads parked on faults in the range; they retry their access.
    pub(crate) fn wake(&self, m: &Mapping, off: usize, len: usize) -> SysResult<()> {
        let mut r = range(m, off, len)?;
        self.ioctl::<Wake>(&mut r)
    }

    /// Shared retry loop of COPY and MOVE: `step(done)` issues the ioctl for the bytes after
    /// `done` and returns `(rc_errno, progress)`.
    fn fill_loop(
        &self,
        dst: &Mapping,
        dst_off: usize,
        len: usize,
        wake: bool,
        op: &'static str,
        mut step: impl FnMut(usize) -> SysResult<(i32, i64)>,
    ) -> SysResult<Filled> {
        let mut done = 0usize;
        let mut retries = 0;
        while done < len {
            let (err, progress) = step(done)?;
            if progress > 0 {
                done += usize::try_from(progress).unwrap_or(0);
            }
            match err {
                0 => continue,
                libc::EAGAIN if retries < EAGAIN_RETRIES => {
                    retries += 1;
                    if progress <= 0 {
                        std::thread::yield_now();
                    }
                }
                libc::EEXIST => {
                    if wake {
                        self.wake(dst, dst_off, len)?;
                    }
                    return Ok(Filled::Exists { bytes: done });
                }
                e => return Err(SysError::new(op, e)),
            }
        }
        Ok(Filled::All)
    }

    /// UFFDIO_COPY: copies `len` bytes from `src` into the missing pages of `dst`, atomically
    /// per page. With `wp`, the pages are installed write-protected (the first write then raises a
    /// write-protect fault). With `wake`, threads parked on the range resume.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn copy(
        &self,
        dst: &Mapping,
        dst_off: usize,
        src: &Mapping,
        src_off: usize,
        len: usize,
        wp: bool,
        wake: bool,
    ) -> SysResult<Filled> {
        dst.at(dst_off, len)?;
        src.at(src_off, len)?;
        let mut mode = 0u64;
        if wp {
            mode |= u64::from(k::UFFDIO_COPY_MODE_WP);
        }
        if !wake {
            mode |= u64::from(k::UFFDIO_COPY_MODE_DONTWAKE);
        }
        self.fill_loop(dst, dst_off, len, wake, "ioctl(UFFDIO_COPY)", |done| {
            let mut c = k::uffdio_copy {
                dst: dst.at(dst_off + done, len - done)?,
                src: src.at(src_off + done, len - done)?,
                len: (len - done) as u64,
                mode,
                copy: 0,
            };
            let r = self.ioctl::<Copy>(&mut c);
            Ok((r.err().map_or(0, |e| e.errno), c.copy))
        })
    }

    /// UFFDIO_MOVE (Linux 6.8+): moves the page-table entries of `len` bytes from `src` to the empty
    /// range of `dst`, with no copy. Afterwards `src` is empty and faults as missing.
    ///
    /// Errors the caller must expect: `ENOENT` (a hole in `src`), `EBUSY` (a source page is pinned
    /// or shared), `EEXIST` (reported as [`Filled::Exists`]).
    pub(crate) fn move_pages(
        &self,
        dst: &Mapping,
        dst_off: usize,
        src: &Mapping,
        src_off: usize,
        len: usize,
        wake: bool,
    ) -> SysResult<Filled> {
        match self.move_run(dst, dst_off, src, src_off, len, wake)? {
            (_, None) => Ok(Filled::All),
            (done, Some(libc::EEXIST)) => {
                // The kernel skipped the wake for the range: do it.
                if wake {
                    self.wake(dst, dst_off, len)?;
                }
                Ok(Filled::Exists { bytes: done })
            }
            (_, Some(errno)) => Err(SysError::new("ioctl(UFFDIO_MOVE)", errno)),
        }
    }

    /// UFFDIO_MOVE of a run of neighbouring pages, stopping at the first page that cannot be
    /// moved (EAGAIN is retried): returns the bytes moved (from the start of the run) and the
    /// errno that stopped it, if any (ENOENT: a hole in the source; EEXIST: the destination is
    /// populated; EBUSY: the page is pinned or shared). Threads parked on the range resume only
    /// with `wake`. On 6.18 the kernel flushes the TLB once per run, not once per page.
    pub(crate) fn move_run(
        &self,
        dst: &Mapping,
        dst_off: usize,
        src: &Mapping,
        src_off: usize,
        len: usize,
        wake: bool,
    ) -> SysResult<(usize, Option<i32>)> {
        let mode = if wake { 0 } else { MOVE_MODE_DONTWAKE };
        dst.at(dst_off, len)?;
        src.at(src_off, len)?;
        let mut done = 0usize;
        let mut retries = 0;
        while done < len {
            let mut mv = k::uffdio_move {
                dst: dst.at(dst_off + done, len - done)?,
                src: src.at(src_off + done, len - done)?,
                len: (len - done) as u64,
                mode,
                move_: 0,
            };
            let r = self.ioctl::<Move>(&mut mv);
            if mv.move_ > 0 {
                done += usize::try_from(mv.move_).unwrap_or(0);
            }
            match r {
                Ok(()) => {}
                Err(e) if e.errno == libc::EAGAIN && retries < EAGAIN_RETRIES => {
                    retries += 1;
                    if mv.move_ <= 0 {
                        std::thread::yield_now();
                    }
                }
                Err(e) => return Ok((done, Some(e.errno))),
            }
        }
        Ok((done, None))
    }

    /// UFFDIO_WRITEPROTECT: sets (`protect`) or clears write protection on present pages. Clearing
    /// wakes threads parked on write-protect faults unless `wake` is false.
    pub(crate) fn writeprotect(&self, m: &Mapping, off: usize, len: usize, protect: bool, wake: bool) -> SysResult<()> {
        let mut mode = 0;
        if protect {
            mode |= WRITEPROTECT_MODE_WP;
        }
        // The kernel accepts DONTWAKE only when clearing protection (setting never wakes).
        if !wake && !protect {
            mode |= WRITEPROTECT_MODE_DONTWAKE;
        }
        let mut w = k::uffdio_writeprotect { range: range(m, off, len)?, mode };
        let mut retries = 0;
        loop {
            match self.ioctl::<Writeprotect>(&mut w) {
                Err(e) if e.errno == libc::EAGAIN && retries < EAGAIN_RETRIES => {
                    retries += 1;
                    std::thread::yield_now();
                }
                r => return r,
            }
        }
    }

    /// UFFDIO_POISON (Linux 6.6+): marks missing pages so that any access raises SIGBUS.
    /// Pages already present are left alone (`EEXIST` is not an error here).
    pub(crate) fn poison(&self, m: &Mapping, off: usize, len: usize, wake: bool) -> SysResult<()> {
        let mode = if wake { 0 } else { POISON_MODE_DONTWAKE };
        let mut p = k::uffdio_poison { range: range(m, off, len)?, mode, updated: 0 };
        match self.ioctl::<Poison>(&mut p) {
            Err(e) if e.errno == libc::EEXIST => {
                if wake {
                    self.wake(m, off, len)?;
                }
                Ok(())
            }
            r => r,
        }
    }

    /// UFFDIO_ZEROPAGE: maps the shared zero page read-only into missing pages.
    ///
    /// The runtime does not use it: a zero page installed this way carries no write-protect bit,
    /// so the first write would be an ordinary kernel COW outside the budget (KERNEL_NOTES trap 6).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn zeropage(&self, m: &Mapping, off: usize, len: usize, wake: bool) -> SysResult<Filled> {
        let mode = if wake { 0 } else { u64::from(k::UFFDIO_ZEROPAGE_MODE_DONTWAKE) };
        let mut z = k::uffdio_zeropage { range: range(m, off, len)?, mode, zeropage: 0 };
        match self.ioctl::<Zeropage>(&mut z) {
            Ok(()) => Ok(Filled::All),
            Err(e) if e.errno == libc::EEXIST => {
                if wake {
                    self.wake(m, off, len)?;
                }
                Ok(Filled::Exists { bytes: usize::try_from(z.zeropage).unwrap_or(0) })
            }
            Err(e) => Err(e),
        }
    }

    /// Reads up to `out.len()` pending events without blocking. Returns 0 when none is pending.
    pub(crate) fn read_events(&self, out: &mut [UffdEvent]) -> SysResult<usize> {
        const MAX: usize = 64;
        let n = out.len().min(MAX);
        let mut raw = [std::mem::MaybeUninit::<k::uffd_msg>::uninit(); MAX];
        let bytes = n * std::mem::size_of::<k::uffd_msg>();
        // SAFETY: `raw` has room for `n` messages (`bytes` bytes); read(2) writes at most that.
        let rc = unsafe { libc::read(self.fd.as_raw_fd(), raw.as_mut_ptr().cast(), bytes) };
        if rc < 0 {
            let e = errno();
            return if e == libc::EAGAIN || e == libc::EINTR { Ok(0) } else { Err(SysError::new("read(uffd)", e)) };
        }
        let got = usize::try_from(rc).unwrap_or(0) / std::mem::size_of::<k::uffd_msg>();
        for (slot, msg) in out.iter_mut().zip(raw.iter()).take(got) {
            // SAFETY: the kernel filled the first `got` messages completely.
            let msg = unsafe { msg.assume_init() };
            *slot = if u32::from(msg.event) == k::UFFD_EVENT_PAGEFAULT {
                // SAFETY: for PAGEFAULT events the `pagefault` member of the union is the one the
                // kernel wrote; every bit pattern is a valid u64/u32.
                let pf = unsafe { msg.arg.pagefault };
                let flags = pf.flags;
                // SAFETY: `ptid` is the only member of `feat`; it is zero without THREAD_ID.
                let tid = unsafe { pf.feat.ptid };
                UffdEvent::PageFault {
                    addr: usize::try_from(pf.address).unwrap_or(usize::MAX),
                    write: flags & u64::from(k::UFFD_PAGEFAULT_FLAG_WRITE) != 0,
                    wp: flags & u64::from(k::UFFD_PAGEFAULT_FLAG_WP) != 0,
                    tid,
                }
            } else {
                UffdEvent::Other(msg.event)
            };
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::page_size;

    fn uffd() -> Option<Uffd> {
        match Uffd::open(feature::MOVE | feature::POISON | feature::THREAD_ID | feature::PAGEFAULT_FLAG_WP) {
            Ok(u) => Some(u),
            Err(e) => {
                crate::test_support::uffd_unavailable(&format!("{e:?}"));
                None
            }
        }
    }

    #[test]
    fn copy_move_poison_roundtrip() {
        let Some(u) = uffd() else { return };
        let ps = page_size();
        let a = Mapping::anonymous(8 * ps).unwrap();
        let b = Mapping::anonymous(8 * ps).unwrap();
        let src = Mapping::anonymous(8 * ps).unwrap();
        src.fill(0, 8 * ps, 7).unwrap();
        let ioctls = u.register(&a, 0, 8 * ps, MODE_MISSING | MODE_WP).unwrap();
        assert!(ioctls & ioctl_bit::COPY != 0);
        u.register(&b, 0, 8 * ps, MODE_MISSING).unwrap();
        assert_eq!(u.copy(&a, 0, &src, 0, 4 * ps, false, true).unwrap(), Filled::All);
        // Copying over an existing page reports it rather than failing.
        assert_eq!(u.copy(&a, 0, &src, 0, ps, false, true).unwrap(), Filled::Exists { bytes: 0 });
        if ioctls & ioctl_bit::MOVE != 0 {
            assert_eq!(u.move_pages(&b, 0, &a, 0, 2 * ps, true).unwrap(), Filled::All);
            assert_eq!(a.resident_pages(0, 2 * ps).unwrap(), 0);
            let mut x = [0u8; 1];
            b.read(ps, &mut x).unwrap();
            assert_eq!(x[0], 7);
            let e = u.move_pages(&b, 4 * ps, &a, 6 * ps, ps, true).unwrap_err();
            assert_eq!(e.errno, libc::ENOENT);
            // A run stops at the first page it cannot move: pages 2 and 3 of `a` are there, 4 is
            // not (never filled).
            assert_eq!(u.move_run(&b, 4 * ps, &a, 2 * ps, 3 * ps, false).unwrap(), (2 * ps, Some(libc::ENOENT)));
            assert_eq!(b.resident_pages(4 * ps, 2 * ps).unwrap(), 2);
            // And at a populated destination.
            assert_eq!(u.move_run(&b, 0, &b, 4 * ps, 2 * ps, false).unwrap(), (0, Some(libc::EEXIST)));
        }
        if ioctls & ioctl_bit::POISON != 0 {
            u.poison(&a, 6 * ps, ps, true).unwrap();
            // Present pages are not poisoned and not an error.
            u.poison(&a, 2 * ps, ps, true).unwrap();
        }
        u.writeprotect(&a, 2 * ps, 2 * ps, true, false).unwrap();
        u.writeprotect(&a, 2 * ps, 2 * ps, false, true).unwrap();
        let z = Mapping::anonymous(2 * ps).unwrap();
        u.register(&z, 0, 2 * ps, MODE_MISSING).unwrap();
        assert_eq!(u.zeropage(&z, 0, ps, true).unwrap(), Filled::All);
        let mut evs = [UffdEvent::Other(0); 4];
        assert_eq!(u.read_events(&mut evs).unwrap(), 0);
    }
}

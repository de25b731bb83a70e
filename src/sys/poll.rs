//! Waiting for userfaultfd events while staying wakeable for shutdown.

use super::{SysError, SysResult};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd that wakes the handler threads (shutdown).
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> SysResult<Waker> {
        // SAFETY: eventfd takes only flags and returns a new descriptor.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(SysError::last("eventfd"));
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd })
    }

    /// Makes the eventfd readable; it stays readable (we never drain it: it is only for shutdown).
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local u64, as eventfd requires.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until `a` or `b` is readable, or `timeout_ms` passes. Returns `(a_ready, b_ready)`.
pub(crate) fn poll2(a: RawFd, b: RawFd, timeout_ms: i32) -> SysResult<(bool, bool)> {
    let mut fds = [
        libc::pollfd { fd: a, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b, events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: poll reads and writes exactly the two pollfd structs of the local array.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    if rc < 0 {
        let e = SysError::last("poll");
        return if e.errno == libc::EINTR { Ok((false, false)) } else { Err(e) };
    }
    let ready = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    Ok((ready(&fds[0]), ready(&fds[1])))
}

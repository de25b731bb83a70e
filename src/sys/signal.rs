//! The SIGBUS handler of the in-thread fault path.
//!
//! With `UFFD_FEATURE_SIGBUS`, a missing (or write-protect) fault on a registered range raises
//! SIGBUS in the faulting thread instead of queueing an event. The handler installed here asks
//! the runtime to resolve the fault in place; when the runtime installs the page, the handler
//! returns and the faulting instruction is retried — no handler thread, no wake-up.
//!
//! Faults the runtime does not claim (addresses that are not its own, accesses that must fail)
//! are chained to the handler that was installed before ours, or to the default action.
//!
//! The handler runs the runtime's ordinary fault code: it takes the runtime's locks, and on its
//! ordinary paths allocates nothing (see [`FaultMode::InThread`](crate::FaultMode::InThread) for
//! the rare ones that do). That is sound in practice because SIGBUS is synchronous: it arrives
//! only at an access to managed memory, and neither the runtime nor the allocator touches managed
//! memory while holding a lock. Application code must not touch managed memory while it holds a
//! lock the fault path needs, or from inside another signal handler.

use super::{SysError, SysResult};
use std::sync::OnceLock;

/// Resolves a fault at `addr` (`write`: the access was a write). Returns `true` when the access
/// should be retried, `false` when the signal must go to the previous handler or default action.
pub(crate) type Resolver = fn(addr: usize, write: bool) -> bool;

struct Installed {
    resolver: Resolver,
    previous: libc::sigaction,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the SIGBUS handler once per process; later calls keep the first resolver.
pub(crate) fn install_sigbus(resolver: Resolver) -> SysResult<()> {
    let mut err = None;
    INSTALLED.get_or_init(|| {
        // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags, SIG_DFL).
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above; we fill in the handler and flags before installing it.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_sigbus as *const () as usize;
        // Not SA_ONSTACK: the resolution runs the runtime's fault path, which needs more stack
        // than a signal stack offers (Rust's per-thread alternate stack is a few KiB). A SIGBUS
        // from userfaultfd never means the thread's own stack is exhausted.
        sa.sa_flags = libc::SA_SIGINFO;
        // SAFETY: sigemptyset initialises the mask we own.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: installs our handler and stores the old action in `previous`; both point to
        // valid sigaction structs. `on_sigbus` has the SA_SIGINFO signature.
        if unsafe { libc::sigaction(libc::SIGBUS, &sa, &mut previous) } != 0 {
            err = Some(SysError::last("sigaction(SIGBUS)"));
        }
        Installed { resolver, previous }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether the faulting access was a write, from the saved CPU context.
#[cfg(target_arch = "x86_64")]
fn is_write(ctx: *mut libc::c_void) -> bool {
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler. On x86_64 bit 1 of
    // the page-fault error code (REG_ERR) is set for writes.
    let err = unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_ERR as usize] };
    err & 2 != 0
}

/// Elsewhere, assume a write: the page is installed writable and dirty, which is always correct.
#[cfg(not(target_arch = "x86_64"))]
fn is_write(_ctx: *mut libc::c_void) -> bool {
    true
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let Some(inst) = INSTALLED.get() else { return };
    // SAFETY: the kernel passes a valid siginfo_t; for SIGBUS `si_addr` is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    if (inst.resolver)(addr, is_write(ctx)) {
        return;
    }
    chain(&inst.previous, sig, info, ctx);
}

fn chain(prev: &libc::sigaction, sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        // Restore the default action; returning retries the access, which faults again and
        // takes the default action (terminate, dump core). A synchronous SIGBUS cannot be ignored.
        // SAFETY: an all-zero sigaction with SIG_DFL is valid; installing it only changes the
        // disposition.
        let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: valid sigaction struct; old action not requested.
        unsafe { libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut()) };
        return;
    }
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this signature,
        // and we pass it the kernel's own arguments.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO takes only the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}

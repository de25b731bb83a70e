//! The crate's error type. Every variant says what went wrong and what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in pagewarden.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No userfaultfd could be created. Each field is why one way of creating it failed, in the
    /// order they were tried.
    UserfaultfdUnavailable {
        /// Opening `/dev/userfaultfd` (needs read/write permission on the device).
        device: io::Error,
        /// The `userfaultfd(2)` syscall (needs CAP_SYS_PTRACE or `vm.unprivileged_userfaultfd=1`).
        syscall: io::Error,
        /// The syscall with `UFFD_USER_MODE_ONLY` (Linux 5.11+, works unprivileged).
        user_mode_only: io::Error,
    },
    /// The kernel lacks a userfaultfd feature this configuration needs.
    MissingKernelFeature {
        /// The feature, as the kernel names it.
        feature: &'static str,
        /// What pagewarden needs it for, and which kernel has it.
        needed_for: &'static str,
    },
    /// The swap file could not be created or preallocated.
    SwapFile {
        /// Where it was to be created.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// [`FaultMode::InThread`](crate::FaultMode::InThread) was asked for with a
    /// [`swap_store`](crate::RuntimeBuilder::swap_store) that is not
    /// [`signal_safe`](crate::SwapStore::signal_safe): in that mode the store is called inside a
    /// SIGBUS handler, where it must not allocate, lock or wait for other threads.
    StoreNotSignalSafe,
    /// A configuration value is out of range.
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A `PAGEWARDEN_*` environment variable has a value that cannot be used: it does not parse,
    /// or the setting it gives is out of range. Fix the variable or unset it.
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// Its value (lossily converted if it is not UTF-8).
        value: String,
        /// What is wrong with it and what is expected.
        detail: String,
    },
    /// An argument is out of range (a zero size, an unaligned offset, ...).
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// An access lies outside the region.
    OutOfBounds {
        /// First byte of the access.
        offset: usize,
        /// Its length.
        len: usize,
        /// The region's size.
        size: usize,
    },
    /// The kernel refused to reserve address space (`mmap` failed).
    AddressSpace {
        /// Bytes requested.
        requested: usize,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The arena was killed (out of memory, or [`Arena::kill`](crate::Arena::kill)); its memory is
    /// gone and every accessor fails from now on. A call on a killed arena or its regions reports
    /// this before anything else that may be wrong with it (bounds, alignment, limits).
    Killed {
        /// The arena's name.
        arena: String,
    },
    /// A fault of this access needed a frame, none could be freed, and no arena could be killed
    /// (all are exempt, or the OOM killer is in dry-run mode). The access did not complete; the
    /// region's contents are unchanged by the part that failed. Retry after memory is freed.
    OutOfMemory {
        /// The arena that was accessed.
        arena: String,
    },
    /// A reservation would take the commit charge past the limit (`Overcommit::Strict`), or is
    /// larger than frames plus swap (`Overcommit::Heuristic`).
    CommitLimit {
        /// Bytes requested.
        requested: u64,
        /// Bytes already committed.
        committed: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Pinning would exceed the runtime's pin limit.
    PinLimit {
        /// Pages requested.
        requested: u64,
        /// Pages pinned already.
        pinned: u64,
        /// The limit, in pages.
        limit: u64,
    },
    /// A page in the range is already pinned (pins do not nest).
    AlreadyPinned {
        /// Offset of the first such page.
        offset: usize,
    },
    /// A page in the range is not pinned.
    NotPinned {
        /// Offset of the first such page.
        offset: usize,
    },
    /// The runtime stopped serving faults after an internal failure (a panic in its fault handler
    /// or reclaimer, or in the victim policy it called). Data in it can no longer be reached; drop
    /// the runtime's regions.
    RuntimeFailed {
        /// What failed.
        detail: String,
    },
    /// A page of the access could not be brought back (its swap slot could not be read); the
    /// page is poisoned rather than returned with wrong contents.
    Corrupted {
        /// Offset of the first poisoned page in the region.
        offset: usize,
    },
    /// An access to a file-backed region reached pages wholly past the end of the file (as with
    /// `mmap`, raw access there raises SIGBUS).
    BeyondEndOfFile {
        /// Offset in the region of the first such page.
        offset: usize,
        /// The file's length when the access was checked.
        file_len: u64,
    },
    /// [`Arena::map_file`](crate::Arena::map_file) was given a descriptor that is not a regular
    /// file (a directory, pipe, socket, device...): only regular files can be mapped.
    NotARegularFile {
        /// What the descriptor refers to ("directory", "FIFO (pipe)", "socket", ...).
        file_type: &'static str,
    },
    /// Reading or writing a mapped file failed.
    FileIo {
        /// What was being done.
        op: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
    /// An I/O error from the caller's own code, converted by `?` in a function returning
    /// [`Result`] (opening the file to map, say). pagewarden reports its own I/O failures with the
    /// variants above, which say what was being done.
    Io {
        /// The operating system's reason.
        source: io::Error,
    },
    /// An unexpected system call failure.
    Sys {
        /// The call.
        op: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
}

impl From<crate::sys::SysError> for Error {
    fn from(e: crate::sys::SysError) -> Self {
        Error::Sys { op: e.op, source: e.io() }
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        Error::Sys { op: "swap store", source: e.io_error() }
    }
}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Self {
        Error::Io { source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UserfaultfdUnavailable { device, syscall, user_mode_only } => write!(
                f,
                "userfaultfd is unavailable: /dev/userfaultfd: {device}; userfaultfd(2): {syscall}; \
                 userfaultfd(2) with UFFD_USER_MODE_ONLY: {user_mode_only}. \
                 Fix one of: run as root; grant access to the device (e.g. `chmod 0666 /dev/userfaultfd` \
                 or a udev rule / group for it); `sysctl -w vm.unprivileged_userfaultfd=1`; give the process \
                 CAP_SYS_PTRACE. In a container, the seccomp profile must allow the userfaultfd syscall \
                 (Docker's default blocks it: use --security-opt seccomp=<profile allowing it>)."
            ),
            Error::MissingKernelFeature { feature, needed_for } => {
                write!(f, "the kernel lacks userfaultfd feature {feature}, needed for {needed_for}")
            }
            Error::SwapFile { path, source } => {
                let hint = match source.raw_os_error() {
                    Some(libc::ENOSPC) => "free disk space there or choose a smaller swap capacity",
                    Some(libc::EACCES | libc::EPERM) => "choose a directory you can write to",
                    Some(libc::EROFS) => "the file system is read-only: choose another directory",
                    Some(libc::ENOENT | libc::ENOTDIR) => "the directory does not exist: create it or choose another",
                    Some(libc::EEXIST | libc::ELOOP) => {
                        "a file or symlink is already there: a named swap file is always created afresh, so remove \
                         it or choose another path"
                    }
                    _ => "choose another location with `RuntimeBuilder::swap_dir` or `swap_file`",
                };
                write!(f, "cannot create the swap file at {}: {source} ({hint})", path.display())
            }
            Error::StoreNotSignalSafe => write!(
                f,
                "the swap store is not signal-safe, and FaultMode::InThread calls it inside a SIGBUS handler; \
                 use FaultMode::HandlerThreads with this store, or a store whose signal_safe() returns true"
            ),
            Error::InvalidConfig { what, detail } => {
                write!(f, "invalid configuration: {what}: {detail}")
            }
            Error::InvalidEnv { var, value, detail } => write!(
                f,
                "invalid environment variable {var}={value:?}: {detail}; fix or unset {var} \
                 (see RuntimeBuilder's documentation for the PAGEWARDEN_* variables)"
            ),
            Error::InvalidArgument { what, detail } => {
                write!(f, "invalid argument: {what}: {detail}")
            }
            Error::OutOfBounds { offset, len, size } => {
                write!(f, "access of {len} bytes at offset {offset} is outside the region of {size} bytes")
            }
            Error::AddressSpace { requested, source } => write!(
                f,
                "cannot reserve {requested} bytes of address space: {source} (check `ulimit -v`, \
                 vm.max_map_count, and vm.overcommit_memory)"
            ),
            Error::Killed { arena } => {
                write!(f, "arena '{arena}' was killed to relieve memory pressure; its contents are gone")
            }
            Error::OutOfMemory { arena } => write!(
                f,
                "out of memory: a page of arena '{arena}' needed a frame, none could be reclaimed and no \
                 arena may be killed (all exempt, or OOM dry-run); free memory, raise the budget or swap, \
                 or make an arena killable"
            ),
            Error::CommitLimit { requested, committed, limit } => write!(
                f,
                "commit limit: reserving {requested} bytes with {committed} committed would exceed the \
                 limit of {limit} bytes (swap + ratio x budget); release regions, add swap, or relax \
                 the overcommit mode"
            ),
            Error::PinLimit { requested, pinned, limit } => write!(
                f,
                "pin limit: pinning {requested} more pages with {pinned} pinned exceeds the limit of {limit} \
                 pages (RuntimeBuilder::pin_limit)"
            ),
            Error::AlreadyPinned { offset } => {
                write!(f, "the page at offset {offset} is already pinned; pins do not nest")
            }
            Error::NotPinned { offset } => write!(f, "the page at offset {offset} is not pinned"),
            Error::RuntimeFailed { detail } => write!(
                f,
                "the runtime stopped serving faults after an internal failure ({detail}); its regions are \
                 unusable: drop them, and fix the victim policy if it was the one that panicked, else report \
                 the bug"
            ),
            Error::Corrupted { offset } => {
                write!(f, "the page at region offset {offset} could not be read back from swap and is poisoned")
            }
            Error::BeyondEndOfFile { offset, file_len } => write!(
                f,
                "region offset {offset} lies in a page wholly past the end of the mapped file ({file_len} bytes); \
                 extend the file (e.g. File::set_len) before touching it"
            ),
            Error::NotARegularFile { file_type } => write!(
                f,
                "map_file needs a regular file, but the descriptor refers to a {file_type}; map a regular \
                 file, or copy the data into a region with Region::write"
            ),
            Error::FileIo { op, source } => write!(f, "{op} on the mapped file failed: {source}"),
            Error::Io { source } => write!(f, "I/O error: {source}"),
            Error::Sys { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::SwapFile { source, .. }
            | Error::AddressSpace { source, .. }
            | Error::Sys { source, .. }
            | Error::Io { source }
            | Error::FileIo { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Arenas (named owners of memory) and regions (their reserved ranges).

use crate::engine::{Accessor, ArenaShared, ArenaState, Liveness, RegionState};
use crate::entry::RtHandle;
use crate::error::{Error, Result};
use crate::filemap::{FileMap, MapMode};
use crate::mm::page::{PageState, PageTable};
use crate::mm::readahead::Stream;
use crate::oom::Profile;
use crate::oom::policy::{Impact, OomHints};
use crate::oom::pressure::Psi;
use crate::oom::report::OomReport;
use crate::stats::{ArenaStats, Counters, Histogram};
use crate::sys::file::DataFile;
use crate::sys::mem::Mapping;
use crate::sys::uffd;
use crate::util::lock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest region: page indices are 32-bit (16 TiB with 4 KiB pages).
const MAX_REGION_PAGES: u64 = 1 << 32;

pub(crate) struct ArenaInner {
    rt: Arc<RtHandle>,
    shared: Arc<ArenaShared>,
}

impl Drop for ArenaInner {
    fn drop(&mut self) {
        let core = &self.rt.core;
        let mut st = core.lock();
        st.arenas.retire(self.shared.id);
    }
}

/// A guest: a named owner of regions that is accounted, and killed, as one.
///
/// Cheap to clone (a handle). Regions keep their arena alive.
///
/// ```
/// # let rt = pagewarden::Runtime::builder().frame_budget(16 << 20).build()?;
/// let arena = rt.arena("worker").create()?;
/// let a = arena.reserve(64 << 30)?;   // 64 GiB of address space: overcommit
/// a.fill(0, 1 << 20, 0xAB)?;
/// println!("{:?}", arena.stats());
/// # Ok::<(), pagewarden::Error>(())
/// ```
#[derive(Clone)]
pub struct Arena {
    inner: Arc<ArenaInner>,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("id", &self.inner.shared.id)
            .field("name", &self.inner.shared.name)
            .field("killed", &self.is_killed())
            .finish()
    }
}

/// Creates an arena with an OOM profile; from [`Runtime::arena`](crate::Runtime::arena).
///
/// ```
/// use pagewarden::Impact;
/// # let rt = pagewarden::Runtime::builder().frame_budget(16 << 20).build()?;
/// let db = rt.arena("database").oom_score_adj(-500).impact(Impact::Interactive).create()?;
/// let batch = rt.arena("batch").impact(Impact::Background).nice(10).prefer().create()?;
/// # Ok::<(), pagewarden::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "an ArenaBuilder does nothing until .create()"]
pub struct ArenaBuilder {
    rt: Arc<RtHandle>,
    name: String,
    adj: i32,
    impact: Impact,
    hints: OomHints,
    nice: i32,
    prefer: bool,
    avoid: bool,
}

impl ArenaBuilder {
    pub(crate) fn new(rt: Arc<RtHandle>, name: &str) -> ArenaBuilder {
        ArenaBuilder {
            rt,
            name: name.to_string(),
            adj: 0,
            impact: Impact::Normal,
            hints: OomHints::default(),
            nice: 0,
            prefer: false,
            avoid: false,
        }
    }

    /// Like `/proc/PID/oom_score_adj`: −1000..=1000, added to the badness in thousandths of all
    /// memory. −1000 means never kill, whatever the policy.
    pub fn oom_score_adj(mut self, adj: i32) -> Self {
        self.adj = adj;
        self
    }

    /// The impact class (default [`Impact::Normal`]); [`Impact::Critical`] is never killed.
    pub fn impact(mut self, impact: Impact) -> Self {
        self.impact = impact;
        self
    }

    /// Hint: the arena's owner runs with privileges (dearer to kill).
    pub fn privileged(mut self, yes: bool) -> Self {
        self.hints.privileged = yes;
        self
    }

    /// Hint: niceness, −20..=19 (positive is cheaper to kill).
    pub fn nice(mut self, nice: i32) -> Self {
        self.nice = nice;
        self
    }

    /// Hint: CPU time invested so far (dearer to kill); update it with [`Arena::set_hints`].
    pub fn cpu_time(mut self, t: Duration) -> Self {
        self.hints.cpu_time = t;
        self
    }

    /// Hint: how long the work has been running, if longer than the arena has existed.
    pub fn age(mut self, t: Duration) -> Self {
        self.hints.age = Some(t);
        self
    }

    /// Mark: kill this one first when a policy has a choice.
    pub fn prefer(mut self) -> Self {
        self.prefer = true;
        self.avoid = false;
        self
    }

    /// Mark: kill this one last.
    pub fn avoid(mut self) -> Self {
        self.avoid = true;
        self.prefer = false;
        self
    }

    /// Creates the arena.
    pub fn create(self) -> Result<Arena> {
        self.rt.core.check()?;
        let adj = check_adj(self.adj)?;
        let mut hints = self.hints;
        hints.nice = check_nice(self.nice)?;
        let profile = Profile {
            adj,
            impact: self.impact,
            hints,
            prefer: self.prefer,
            avoid: self.avoid,
            created: Instant::now(),
        };
        let rt = self.rt;
        let shared = {
            let mut st = rt.core.lock();
            let name = self.name;
            let make = |id| ArenaState {
                shared: Arc::new(ArenaShared {
                    id,
                    name,
                    killed: AtomicBool::new(false),
                    accessors: Mutex::new(Vec::new()),
                    failures: AtomicU64::new(0),
                    reserve_pages: AtomicUsize::new(0),
                    oom_poisoned: AtomicUsize::new(0),
                }),
                regions: Default::default(),
                counters: Counters::default(),
                hist: Histogram::default(),
                profile,
                psi: Psi::new(Instant::now()),
            };
            st.arenas.insert(make).ok_or_else(|| Error::InvalidArgument {
                what: "arena",
                detail: "more than 2^32 arenas were created in this runtime".into(),
            })?
        };
        Ok(Arena { inner: Arc::new(ArenaInner { rt, shared }) })
    }
}

fn check_adj(adj: i32) -> Result<i16> {
    if !(-1000..=1000).contains(&adj) {
        return Err(Error::InvalidArgument { what: "oom_score_adj", detail: format!("{adj}; must be -1000..=1000") });
    }
    Ok(i16::try_from(adj).unwrap_or(0))
}

fn check_nice(nice: i32) -> Result<i8> {
    if !(-20..=19).contains(&nice) {
        return Err(Error::InvalidArgument { what: "nice", detail: format!("{nice}; must be -20..=19") });
    }
    Ok(i8::try_from(nice).unwrap_or(0))
}

impl Arena {
    /// The arena's name.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The arena's id, unique within its runtime.
    pub fn id(&self) -> u64 {
        u64::from(self.inner.shared.id)
    }

    /// Whether the arena was killed.
    pub fn is_killed(&self) -> bool {
        self.inner.shared.killed.load(Ordering::Acquire)
    }

    fn killed_err(&self) -> Error {
        Error::Killed { arena: self.inner.shared.name.clone() }
    }

    /// The first check of every call on the arena or its regions: a killed arena says
    /// [`Error::Killed`] whatever else is wrong with the call, then a failed runtime says
    /// [`Error::RuntimeFailed`]; only then are the arguments looked at.
    fn alive(&self) -> Result<()> {
        if self.is_killed() {
            return Err(self.killed_err());
        }
        self.inner.rt.core.check()
    }

    /// Reserves `len` bytes (rounded up to whole pages) of address space for this arena. This
    /// costs no frames: pages get one on first touch. Reservations may far exceed the budget.
    pub fn reserve(&self, len: usize) -> Result<Region> {
        self.reserve_backed(len, None)
    }

    /// Maps `len` bytes of `file`, from file offset `offset` (page-aligned), into a new region
    /// of this arena. Pages fill from the file on first touch and clean ones are dropped under
    /// pressure with no I/O (they are read again when needed). With [`MapMode::Shared`] writes
    /// go back to the file (on eviction, [`Region::flush`] and release; the file must be open
    /// for writing); with [`MapMode::Private`] they never do. The runtime keeps its own
    /// descriptor, so the caller may close theirs. `file` must be a regular file: a directory,
    /// pipe, socket or device is refused with [`Error::NotARegularFile`].
    ///
    /// As with `mmap`, the region may extend past the end of the file: the part of the last
    /// page past the end reads as zeros, pages wholly past it cannot be used (safe accessors
    /// return [`Error::BeyondEndOfFile`], raw access raises SIGBUS) until the file grows, and
    /// write-back never extends the file.
    ///
    /// ```
    /// use std::io::{Read, Seek, Write};
    /// let mut f = tempfile_in_tmp()?;
    /// f.write_all(&[7u8; 8192])?;
    /// let rt = pagewarden::Runtime::builder().frame_budget(16 << 20).build()?;
    /// let arena = rt.arena("files").create()?;
    /// let r = arena.map_file(&f, 0, 8192, pagewarden::MapMode::Shared)?;
    /// let mut b = [0u8; 2];
    /// r.read(4095, &mut b)?;
    /// assert_eq!(b, [7, 7]);
    /// r.write(0, b"hi")?;
    /// r.flush()?;                                   // now on disk
    /// let mut head = [0u8; 2];
    /// f.rewind()?;
    /// f.read_exact(&mut head)?;
    /// assert_eq!(&head, b"hi");
    /// # fn tempfile_in_tmp() -> std::io::Result<std::fs::File> {
    /// #     let p = std::env::temp_dir().join(format!("pw-doc-{}", std::process::id()));
    /// #     let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&p)?;
    /// #     std::fs::remove_file(&p)?;
    /// #     Ok(f)
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_file(&self, file: &impl std::os::fd::AsFd, offset: u64, len: usize, mode: MapMode) -> Result<Region> {
        self.alive()?;
        let ps = self.inner.rt.core.page() as u64;
        if offset % ps != 0 {
            return Err(Error::InvalidArgument {
                what: "offset",
                detail: format!("{offset} is not a multiple of the page size ({ps})"),
            });
        }
        let file = DataFile::dup(file.as_fd()).map_err(|e| Error::FileIo { op: "dup", source: e.io() })?;
        // Only a regular file has pages to read back (a directory cannot be read, a pipe or socket
        // cannot be read at an offset, a device has no length).
        if let Some(file_type) = file.not_regular().map_err(|e| Error::FileIo { op: "fstat", source: e.io() })? {
            return Err(Error::NotARegularFile { file_type });
        }
        if !file.readable().map_err(|e| Error::FileIo { op: "fcntl", source: e.io() })? {
            return Err(Error::InvalidArgument { what: "file", detail: "it is not open for reading".into() });
        }
        if mode == MapMode::Shared && !file.writable().map_err(|e| Error::FileIo { op: "fcntl", source: e.io() })? {
            return Err(Error::InvalidArgument {
                what: "file",
                detail: "a Shared map writes back, but the file is open read-only (open it read-write, or map \
                         it Private)"
                    .into(),
            });
        }
        if offset.checked_add(len as u64).is_none_or(|end| end > i64::MAX as u64) {
            return Err(Error::InvalidArgument {
                what: "offset",
                detail: format!("{offset} + {len} bytes is past the largest file offset"),
            });
        }
        self.reserve_backed(len, Some(Arc::new(FileMap { file, offset, mode })))
    }

    pub(crate) fn reserve_backed(&self, len: usize, file: Option<Arc<FileMap>>) -> Result<Region> {
        self.alive()?;
        let core = &self.inner.rt.core;
        let ps = core.page();
        if len == 0 {
            return Err(Error::InvalidArgument { what: "len", detail: "a region must have at least one byte".into() });
        }
        let rounded = len.checked_next_multiple_of(ps).ok_or_else(|| Error::InvalidArgument {
            what: "len",
            detail: format!("{len} bytes cannot be rounded up to whole pages"),
        })?;
        let pages = (rounded / ps) as u64;
        if pages > MAX_REGION_PAGES {
            return Err(Error::InvalidArgument {
                what: "len",
                detail: format!("{len} bytes is more than the largest region ({} bytes)", MAX_REGION_PAGES * ps as u64),
            });
        }
        core.commit(rounded as u64)?;
        let made = Mapping::anonymous(rounded)
            .map_err(|e| Error::AddressSpace { requested: rounded, source: e.io() })
            .and_then(|map| {
                core.uffd.register(&map, 0, rounded, uffd::MODE_MISSING | uffd::MODE_WP).map_err(|e| {
                    match e.errno {
                        libc::ENOMEM => Error::AddressSpace { requested: rounded, source: e.io() },
                        _ => Error::from(e),
                    }
                })?;
                Ok(map)
            });
        let map = match made {
            Ok(m) => Arc::new(m),
            Err(e) => {
                core.lock().usage.committed -= rounded as u64;
                return Err(e);
            }
        };
        let poisoned = Arc::new(AtomicU64::new(0));
        let mut st = core.lock();
        if self.is_killed() {
            st.usage.committed -= rounded as u64;
            drop(st);
            let _ = core.uffd.unregister(&map, 0, rounded);
            return Err(self.killed_err());
        }
        let Some(id) = st.regions.next_id() else {
            st.usage.committed -= rounded as u64;
            drop(st);
            let _ = core.uffd.unregister(&map, 0, rounded);
            return Err(Error::InvalidArgument {
                what: "region",
                detail: "more than 2^32 regions were created in this runtime".into(),
            });
        };
        let inserted = st.regions.insert(RegionState {
            arena: self.inner.shared.id,
            map: map.clone(),
            pages: PageTable::default(),
            npages: pages,
            counts: Default::default(),
            stream: Stream::default(),
            live: Liveness::Live,
            poisoned: poisoned.clone(),
            family: id,
            file: file.clone(),
        });
        debug_assert_eq!(inserted, id);
        if file.as_ref().is_some_and(|f| f.mode == MapMode::Shared) {
            st.file_maps.add(id);
        }
        if let Some(a) = st.arenas.get_mut(&self.inner.shared.id) {
            a.regions.insert(id);
        }
        Ok(Region { arena: self.clone(), id, map, poisoned, file })
    }

    /// Forks the arena copy-on-write: a new arena named `name`, with the same OOM profile, and
    /// one region per region of this arena that reads exactly what this one held at the moment
    /// of the fork. From then on each side's writes are its own.
    ///
    /// Nothing is copied and no frame is charged at fork time: every touched page is shared,
    /// backed by the existing frame or swap slot, until one side writes it; that write makes the
    /// copy (one frame, charged then). Under [`Overcommit::Strict`](crate::Overcommit::Strict)
    /// the child's reservations are charged to the commit limit, as the kernel charges a fork,
    /// so the fork of a large arena can be refused with [`Error::CommitLimit`]. Forks of forks
    /// work, and killing or releasing either side leaves the other intact.
    ///
    /// The fork waits for the arena's pages in flight (swap I/O, safe writes) to settle: a
    /// write racing with the fork lands wholly before or after it only if the two are ordered
    /// by the caller, as with `fork(2)`.
    ///
    /// ```
    /// let rt = pagewarden::Runtime::builder().frame_budget(16 << 20).build()?;
    /// let parent = rt.arena("parent").create()?;
    /// let r = parent.reserve(1 << 20)?;
    /// r.write(0, b"before")?;
    /// let fork = parent.fork("snapshot")?;
    /// r.write(0, b"after!")?;                       // the parent's write breaks the sharing
    /// let mut buf = [0u8; 6];
    /// fork.region(&r).unwrap().read(0, &mut buf)?;
    /// assert_eq!(&buf, b"before");                  // the child still sees the fork's moment
    /// # Ok::<(), pagewarden::Error>(())
    /// ```
    pub fn fork(&self, name: &str) -> Result<Fork> {
        let core = &self.inner.rt.core;
        self.alive()?;
        let (profile, parents) = {
            let st = core.lock();
            let a = st.arenas.get(&self.inner.shared.id).ok_or_else(|| self.killed_err())?;
            let mut parents: Vec<(u32, usize, Option<Arc<FileMap>>)> =
                a.regions.iter().map(|&r| (r, st.region(r).map.len(), st.region(r).file.clone())).collect();
            parents.sort_unstable_by_key(|p| p.0);
            (a.profile.clone(), parents)
        };
        if parents.iter().any(|p| p.2.as_ref().is_some_and(|f| f.mode == MapMode::Shared)) {
            return Err(Error::InvalidArgument {
                what: "fork",
                detail: "the arena has a Shared file map, whose pages the file (not a snapshot) holds; flush \
                         and release it, or map the file Private, before forking"
                    .into(),
            });
        }
        let child = ArenaBuilder {
            rt: self.inner.rt.clone(),
            name: name.to_string(),
            adj: i32::from(profile.adj),
            impact: profile.impact,
            hints: profile.hints,
            nice: i32::from(profile.hints.nice),
            prefer: profile.prefer,
            avoid: profile.avoid,
        }
        .create()?;
        // Reserve the child's regions (charged to the commit limit); on failure they and the
        // child arena are released as they drop.
        let mut regions = Vec::with_capacity(parents.len());
        for (prid, len, file) in &parents {
            regions.push((*prid, child.reserve_backed(*len, file.clone())?));
        }
        let mut st = core.lock();
        loop {
            if self.is_killed() {
                return Err(self.killed_err());
            }
            // A failed runtime's work in flight never settles.
            core.check()?;
            let busy = parents.iter().any(|(p, ..)| st.regions.get(p).is_some_and(|r| r.counts.inflight > 0))
                || st.usage.held.keys().any(|&k| parents.iter().any(|(p, ..)| crate::mm::lru::unkey(k).0 == *p));
            if !busy {
                break;
            }
            st = core.wait_progress(st, Duration::from_millis(2));
        }
        for (prid, r) in &regions {
            if st.regions.get(prid).is_some_and(|x| x.live == Liveness::Live) {
                core.share_region(&mut st, *prid, r.id)?;
            }
        }
        Ok(Fork { arena: child, regions })
    }

    /// Kills the arena now: its frames, pins and swap slots are freed at once, every safe accessor
    /// of its regions returns [`Error::Killed`] from now on, and raw accesses to its pages raise
    /// SIGBUS. Dirty pages of its [`MapMode::Shared`] file maps are in their files when it
    /// returns (including those an eviction was writing back at the time), and so when
    /// [`Event::Killed`](crate::Event::Killed) is published. Returns the report, or `None` if it
    /// was already killed.
    pub fn kill(&self) -> Option<OomReport> {
        let core = &self.inner.rt.core;
        core.kill_and_settle(core.lock(), self.inner.shared.id)
    }

    /// A snapshot of this arena's figures.
    pub fn stats(&self) -> ArenaStats {
        let core = &self.inner.rt.core;
        let mut st = core.lock();
        core.arena_stats(&mut st, self.inner.shared.id, Instant::now())
    }

    /// The kernel-scale OOM score, 0..=2000 (like `/proc/PID/oom_score`).
    pub fn oom_score(&self) -> u32 {
        self.stats().oom_score
    }

    /// Changes `oom_score_adj` (−1000..=1000), like writing `/proc/PID/oom_score_adj`.
    pub fn set_oom_score_adj(&self, adj: i32) -> Result<()> {
        self.alive()?;
        let adj = check_adj(adj)?;
        self.with_profile(|p| p.adj = adj);
        Ok(())
    }

    /// Replaces the hints (privileged, niceness, CPU time, age).
    pub fn set_hints(&self, hints: OomHints) -> Result<()> {
        self.alive()?;
        check_nice(i32::from(hints.nice))?;
        self.with_profile(|p| p.hints = hints);
        Ok(())
    }

    fn with_profile(&self, f: impl FnOnce(&mut Profile)) {
        let mut st = self.inner.rt.core.lock();
        if let Some(a) = st.arenas.get_mut(&self.inner.shared.id) {
            f(&mut a.profile);
        }
    }
}

/// A copy-on-write fork of an arena, from [`Arena::fork`]: the child arena and its regions, one
/// per region of the parent.
#[derive(Debug)]
pub struct Fork {
    arena: Arena,
    /// (parent region id, child region), in the order the parent's regions were reserved.
    regions: Vec<(u32, Region)>,
}

impl Fork {
    /// The child arena.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// The child's copy of the parent's region `parent`, if `parent` was a region of the forked
    /// arena when it was forked.
    pub fn region(&self, parent: &Region) -> Option<&Region> {
        self.regions.iter().find(|(p, _)| *p == parent.id).map(|(_, r)| r)
    }

    /// The child's regions, in the order the parent's regions were reserved.
    pub fn regions(&self) -> impl Iterator<Item = &Region> + '_ {
        self.regions.iter().map(|(_, r)| r)
    }

    /// Takes the child's copy of the parent's region `parent` out of the fork (`None` if there is
    /// none, or it was taken already).
    pub fn take_region(&mut self, parent: &Region) -> Option<Region> {
        let i = self.regions.iter().position(|(p, _)| *p == parent.id)?;
        Some(self.regions.remove(i).1)
    }

    /// The child arena and its regions (in the order the parent's regions were reserved).
    pub fn into_parts(self) -> (Arena, Vec<Region>) {
        (self.arena, self.regions.into_iter().map(|(_, r)| r).collect())
    }
}

/// Marks the calling thread as inside a safe accessor of an arena, so that a fault on a dead page
/// is answered with a zero page (and an error from the accessor) instead of SIGBUS.
struct AccessGuard<'a> {
    arena: &'a Arena,
    tid: u32,
}

impl<'a> AccessGuard<'a> {
    fn enter(arena: &'a Arena) -> AccessGuard<'a> {
        let tid = crate::sys::gettid();
        lock(&arena.inner.shared.accessors).push(Accessor { tid, failed: false });
        AccessGuard { arena, tid }
    }

    /// Whether one of this access's faults could not be served.
    fn failed(&self) -> bool {
        let a = lock(&self.arena.inner.shared.accessors);
        a.iter().any(|x| x.tid == self.tid && x.failed)
    }
}

impl Drop for AccessGuard<'_> {
    fn drop(&mut self) {
        let shared = &self.arena.inner.shared;
        {
            let mut a = lock(&shared.accessors);
            if let Some(i) = a.iter().position(|x| x.tid == self.tid) {
                a.swap_remove(i);
            }
        }
        if shared.reserve_pages.load(Ordering::Acquire) > 0 {
            self.arena.inner.rt.core.scrub_reserve(shared.id, self.tid);
        }
    }
}

/// A contiguous range of virtual memory owned by an arena, served by real page faults.
///
/// Access it safely with [`read`](Region::read), [`write`](Region::write) and
/// [`fill`](Region::fill), or directly through [`as_ptr`](Region::as_ptr). Dropping the region
/// releases it: its frames and swap slots are freed at once and the range is unmapped.
///
/// ```
/// # let rt = pagewarden::Runtime::builder().frame_budget(16 << 20).build()?;
/// # let arena = rt.arena("a").create()?;
/// let r = arena.reserve(1 << 30)?;
/// r.write(123_456, &[1, 2, 3])?;
/// let mut b = [0u8; 3];
/// r.read(123_456, &mut b)?;
/// assert_eq!(b, [1, 2, 3]);
/// # Ok::<(), pagewarden::Error>(())
/// ```
pub struct Region {
    arena: Arena,
    id: u32,
    map: Arc<Mapping>,
    poisoned: Arc<AtomicU64>,
    file: Option<Arc<FileMap>>,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("arena", &self.arena.name())
            .field("addr", &format_args!("{:#x}", self.map.addr()))
            .field("len", &self.map.len())
            .finish()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.arena.inner.rt.core.release_region(self.id);
    }
}

impl Region {
    /// Size in bytes (a multiple of the page size).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The arena this region belongs to.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// The first byte of the region, for direct access through real page faults.
    ///
    /// The pointer is valid for [`len`](Region::len) bytes until the region is dropped. Hazards
    /// the safe accessors take care of and raw access does not:
    /// * if the arena is killed, or a page's swap copy is lost, touching the page raises SIGBUS
    ///   (the default action ends the process, as a kernel OOM kill would);
    /// * memory shared between threads follows the usual rules: synchronise, or use atomics;
    /// * do not `madvise`, `mprotect`, `mremap` or `munmap` the range.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// For a file-backed region: refuses an access reaching pages wholly past the end of the file.
    fn check_file(&self, offset: usize, len: usize) -> Result<()> {
        let Some(fm) = &self.file else { return Ok(()) };
        let ps = self.map_page();
        let in_file = fm.pages_in_file(ps)?;
        let last = ((offset + len.max(1) - 1) / ps) as u64;
        if last >= in_file {
            let first = (offset / ps) as u64;
            let bad = first.max(in_file);
            let file_len = fm.file.len().map_err(|e| Error::FileIo { op: "fstat", source: e.io() })?;
            return Err(Error::BeyondEndOfFile { offset: crate::mm::idx(bad) * ps, file_len });
        }
        Ok(())
    }

    /// Writes this region's dirty pages back to its file and syncs the file, like `msync`
    /// (`MS_SYNC`): when it returns, every write made before the call is in the file, including
    /// pages an eviction was writing back at the time. A no-op for anonymous regions and
    /// [`MapMode::Private`] maps. Pages written
    /// during the flush may or may not be in it; they stay dirty and go out with the next flush
    /// (or at release).
    pub fn flush(&self) -> Result<()> {
        let core = &self.arena.inner.rt.core;
        self.arena.alive()?;
        core.flush_region(self.id, 0..(self.map.len() / self.map_page()) as u64)
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.map.len()) {
            return Err(Error::OutOfBounds { offset, len, size: self.map.len() });
        }
        Ok(())
    }

    /// Runs `f(offset, done, n)` over page-sized chunks of `[offset, offset + len)` as a safe
    /// accessor, stopping early if the arena is killed or a fault cannot be served.
    ///
    /// A write first holds each page resident (faulting it in with a read if needed), so the copy
    /// itself can only take a write-protect fault, which never needs memory: a safe write is never
    /// caught half-way by exhaustion, and its bytes never land in an emergency copy. When the
    /// region or arena has poisoned pages, reads check each page before touching it.
    fn access(
        &self,
        offset: usize,
        len: usize,
        write: bool,
        mut f: impl FnMut(usize, usize, usize) -> Result<()>,
    ) -> Result<()> {
        self.arena.alive()?;
        self.check(offset, len)?;
        let core = &self.arena.inner.rt.core;
        if len == 0 {
            return Ok(());
        }
        self.check_file(offset, len)?;
        let shared = &self.arena.inner.shared;
        let ps = self.map_page();
        let mut stop: Option<Error> = None;
        let failed = {
            let g = AccessGuard::enter(&self.arena);
            let failures = shared.failures.load(Ordering::Acquire);
            let failed = || shared.failures.load(Ordering::Acquire) != failures && g.failed();
            let careful = self.poisoned.load(Ordering::Acquire) > 0 || shared.oom_poisoned.load(Ordering::Acquire) > 0;
            let mut done = 0;
            while done < len && !shared.killed.load(Ordering::Acquire) && !failed() && !core.is_failed() {
                let off = offset + done;
                let n = (len - done).min(ps - off % ps);
                let page = (off / ps) as u64;
                if write {
                    match self.hold(page, off - off % ps, &failed) {
                        Ok(()) => {}
                        Err(e) => {
                            stop = Some(e);
                            break;
                        }
                    }
                    let r = f(off, done, n);
                    core.release_page(self.id, page);
                    r?;
                } else {
                    if careful {
                        if let Err(e) = core.check_readable(self.id, page) {
                            stop = Some(e);
                            break;
                        }
                    }
                    f(off, done, n)?;
                }
                done += n;
            }
            failed()
        };
        // A killed arena, or a failed runtime (which answered this access's faults with emergency
        // pages): say so.
        self.arena.alive()?;
        if let Some(e) = stop {
            return Err(e);
        }
        if failed {
            return Err(Error::OutOfMemory { arena: shared.name.clone() });
        }
        if self.poisoned.load(Ordering::Acquire) > 0 {
            if let Some(p) = self.first_poisoned(offset, len) {
                return Err(Error::Corrupted { offset: p });
            }
        }
        Ok(())
    }

    /// Holds `page` (starting at byte `start`) resident for a write, faulting it in with real read
    /// faults until it is.
    fn hold(&self, page: u64, start: usize, failed: &dyn Fn() -> bool) -> Result<()> {
        let core = &self.arena.inner.rt.core;
        loop {
            match core.hold_page(self.id, page) {
                crate::engine::pin::Hold::Held => return Ok(()),
                crate::engine::pin::Hold::Failed(e) => return Err(e),
                crate::engine::pin::Hold::Missing => {
                    self.map.touch(start)?;
                    core.check()?;
                    if failed() {
                        return Err(Error::OutOfMemory { arena: self.arena.name().to_string() });
                    }
                    if self.arena.is_killed() {
                        return Err(self.arena.killed_err());
                    }
                }
            }
        }
    }

    fn map_page(&self) -> usize {
        self.arena.inner.rt.core.page()
    }

    fn first_poisoned(&self, offset: usize, len: usize) -> Option<usize> {
        let ps = self.map_page();
        let st = self.arena.inner.rt.core.lock();
        let r = st.regions.get(&self.id)?;
        let (first, last) = ((offset / ps) as u64, ((offset + len - 1) / ps) as u64);
        r.pages
            .entries()
            .into_iter()
            .find(|&(p, e)| p >= first && p <= last && e.state() == PageState::Poisoned)
            .map(|(p, _)| crate::mm::idx(p) * ps)
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// Errors: [`Error::OutOfBounds`], [`Error::Killed`], [`Error::Corrupted`].
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        self.access(offset, len, false, |off, done, n| Ok(self.map.read(off, &mut buf[done..done + n])?))
    }

    /// Copies `data` into the region at `offset`.
    ///
    /// Errors: [`Error::OutOfBounds`], [`Error::Killed`], [`Error::Corrupted`].
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.access(offset, data.len(), true, |off, done, n| Ok(self.map.write(off, &data[done..done + n])?))
    }

    /// Sets `len` bytes at `offset` to `byte`.
    ///
    /// Errors: [`Error::OutOfBounds`], [`Error::Killed`], [`Error::Corrupted`].
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.access(offset, len, true, |off, _, n| Ok(self.map.fill(off, n, byte)?))
    }

    /// Evicts the resident pages of `[offset, offset + len)` now (like `MADV_PAGEOUT`): clean
    /// pages are dropped, dirty ones written to swap. `offset` must be page-aligned; `len` is
    /// rounded up to whole pages. Returns the number of frames freed. Pages that cannot be evicted
    /// (swap full) stay resident.
    pub fn page_out(&self, offset: usize, len: usize) -> Result<usize> {
        self.arena.alive()?;
        let ps = self.map_page();
        if offset % ps != 0 {
            return Err(Error::InvalidArgument {
                what: "offset",
                detail: format!("{offset} is not page-aligned ({ps})"),
            });
        }
        self.check(offset, len)?;
        let first = (offset / ps) as u64;
        let end = (offset + len).div_ceil(ps) as u64;
        Ok(self.arena.inner.rt.core.page_out(self.id, first..end))
    }

    fn page_range(&self, offset: usize, len: usize) -> Result<std::ops::Range<u64>> {
        self.arena.alive()?;
        let ps = self.map_page();
        if offset % ps != 0 {
            return Err(Error::InvalidArgument {
                what: "offset",
                detail: format!("{offset} is not page-aligned ({ps})"),
            });
        }
        if len == 0 {
            return Err(Error::InvalidArgument { what: "len", detail: "an empty range".into() });
        }
        self.check(offset, len)?;
        Ok((offset / ps) as u64..(offset + len).div_ceil(ps) as u64)
    }

    /// Faults every page of `[offset, offset + len)` in now, with real faults from user mode, and
    /// makes them writable (they count as dirty).
    ///
    /// Needed before passing managed memory to a system call in
    /// [`FaultMode::InThread`](crate::FaultMode::InThread): a kernel-mode access to a non-resident
    /// page — or a kernel write to a page still write-protected for dirty tracking — fails with
    /// `EFAULT` there. Also useful before a latency-sensitive phase. Pages may be evicted again
    /// afterwards unless pinned.
    pub fn prefault(&self, offset: usize, len: usize) -> Result<()> {
        // A write access that copies nothing: each page is faulted in, held and marked dirty.
        self.access(offset, len, true, |_, _, _| Ok(()))
    }

    /// Pins `[offset, offset + len)` (offset page-aligned, length rounded up to pages): faults the
    /// pages in and makes them unevictable, like `mlock` or a DMA pin, until [`unpin`](Region::unpin).
    /// Pins count against the runtime's pin limit and do not nest.
    ///
    /// Errors: [`Error::PinLimit`], [`Error::AlreadyPinned`], [`Error::Killed`],
    /// [`Error::OutOfMemory`] (nothing could be freed to fault a page in), bounds and alignment.
    /// On error nothing stays pinned.
    pub fn pin(&self, offset: usize, len: usize) -> Result<()> {
        let range = self.page_range(offset, len)?;
        let core = &self.arena.inner.rt.core;
        core.pin_reserve(self.id, range.clone())?;
        let mut done = range.start;
        let mut res = Ok(());
        for p in range.clone() {
            loop {
                match core.pin_page(self.id, p) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
                // Not resident: fault it in through a safe read, then try again. (`black_box` keeps
                // the copy into the unused buffer from being optimised away.)
                let mut b = [0u8; 1];
                if let Err(e) = self.read(crate::mm::idx(p) * self.map_page(), std::hint::black_box(&mut b)) {
                    res = Err(e);
                    break;
                }
            }
            if res.is_err() {
                break;
            }
            done = p + 1;
        }
        if res.is_err() {
            core.unpin_pages(self.id, range.start..done);
            core.release_pin_quota(range.end - done);
        }
        if self.arena.is_killed() {
            return Err(self.arena.killed_err());
        }
        res
    }

    /// Unpins `[offset, offset + len)`; every page in it must be pinned ([`Error::NotPinned`]).
    pub fn unpin(&self, offset: usize, len: usize) -> Result<()> {
        let range = self.page_range(offset, len)?;
        let core = &self.arena.inner.rt.core;
        if let Some(p) = core.first_unpinned(self.id, range.clone()) {
            return Err(Error::NotPinned { offset: crate::mm::idx(p) * self.map_page() });
        }
        core.unpin_pages(self.id, range);
        Ok(())
    }
}

//! One server per SQLite file: an exclusive lock on `<file>.lock`, taken
//! at open and checked again before every commit that acknowledges a
//! delivery, every dispatch claim and every dispatch attempt.
//!
//! SQLite alone lets a second server in, and two servers on one file each
//! keep their own in-memory record of recent ids: both would store a
//! delivery sent to each, and both would dispatch. The lock keeps the
//! second one out at start-up. A lock file removed while the server runs
//! (a clean-up of "stale" lock files) would let the next one in, so the
//! store checks that the path still names the file it holds: if the path
//! is free it takes the lock again; if another server has taken it, this
//! one refuses deliveries (503: the platform retries, the other server
//! stores), claims and attempts from then on, as PostgreSQL stops when its
//! `postmaster.pid` is replaced. It still records the outcomes of attempts
//! that were open, which the other server's start cut the leases of (see
//! `SqliteStore::open_for_dispatch`).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::store::StoreError;

/// The lock file of the store at `path`: `<resolved path>.lock`.
pub(super) fn lock_path(path: &Path) -> PathBuf {
    let mut lock_path = resolved(path).into_os_string();
    lock_path.push(".lock");
    PathBuf::from(lock_path)
}

/// Locks `<path>.lock` (created if needed) for this store, without waiting,
/// and returns the locked file with what watches it.
/// `path` is resolved first: a symbolic link to the file (or to a folder on
/// its way) must find the same lock as the file's own name.
///
/// # Errors
/// [`StoreError::InUse`] when another store holds the lock, and
/// [`StoreError::Database`] when the lock file cannot be opened or locked.
pub(super) fn take_ownership(path: &Path) -> Result<(File, LockWatch), StoreError> {
    let real = resolved(path);
    let lock_path = lock_path(path);
    match lock(&lock_path) {
        Ok(file) => {
            let identity = FileId::of_open(&file, &lock_path)?;
            let owner = Owner {
                path: lock_path.clone(),
                device: AtomicU64::new(0),
                inode: AtomicU64::new(0),
                lost: AtomicBool::new(false),
            };
            owner.hold(identity);
            let watch = LockWatch {
                owner: Arc::new(owner),
                identity,
                path: lock_path,
                retaken: None,
                lost: None,
            };
            Ok((file, watch))
        }
        // Named as resolved: the lock the message names is the one held.
        Err(Refused::Held) => Err(StoreError::InUse(real.display().to_string())),
        Err(Refused::Error(e)) => Err(e),
    }
}

/// Why [`lock`] failed.
enum Refused {
    /// Another open of the file holds the lock.
    Held,
    Error(StoreError),
}

fn lock(lock_path: &Path) -> Result<File, Refused> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| {
            Refused::Error(StoreError::Database(format!(
                "cannot open {}: {e}",
                lock_path.display()
            )))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Refused::Held),
        Err(TryLockError::Error(e)) => Err(Refused::Error(StoreError::Database(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        )))),
    }
}

/// What the dispatcher reads of the writer's [`LockWatch`], without a lock
/// shared with the writer: the dispatcher thread runs at a lower priority,
/// and a mutex it held when the scheduler set it aside would stall the
/// writer's commits behind it.
#[derive(Debug)]
pub(super) struct Owner {
    path: PathBuf,
    /// The locked file's device and inode (0 and 0 where the platform has
    /// none), updated by the writer when it locks the path again. Read
    /// apart from each other: a torn read can only make
    /// [`Owner::may_dispatch`] say no once, which stops one run.
    device: AtomicU64,
    inode: AtomicU64,
    /// Set by the writer once another server holds the lock.
    lost: AtomicBool,
}

impl Owner {
    /// Whether this store may still dispatch (see
    /// [`crate::store::EventStore::may_dispatch`]): another server has not
    /// taken the file over, and the lock path names the file locked. A
    /// path found removed says no until the writer has locked it again (at
    /// its next commit or claim).
    pub(super) fn may_dispatch(&self) -> bool {
        if self.lost.load(Ordering::Acquire) {
            return false;
        }
        let held = FileId {
            device: self.device.load(Ordering::Acquire),
            inode: self.inode.load(Ordering::Acquire),
        };
        held.inode == 0 || FileId::of_path(&self.path) == Some(held)
    }

    /// Records the file locked now.
    fn hold(&self, file: Option<FileId>) {
        let file = file.unwrap_or(FileId {
            device: 0,
            inode: 0,
        });
        self.device.store(file.device, Ordering::Release);
        self.inode.store(file.inode, Ordering::Release);
    }
}

/// The lock file this store holds, as the writer checks it (the dispatcher
/// reads its [`Owner`]).
#[derive(Debug)]
pub(super) struct LockWatch {
    owner: Arc<Owner>,
    path: PathBuf,
    /// The file locked, which `path` must still name.
    identity: Option<FileId>,
    /// The lock taken again after the first file was removed (the first
    /// is held by the store until it closes, and released with it).
    retaken: Option<File>,
    /// Set once another server holds the lock: every check fails with it.
    lost: Option<String>,
}

impl LockWatch {
    /// What the dispatcher checks.
    pub(super) fn owner(&self) -> Arc<Owner> {
        Arc::clone(&self.owner)
    }

    /// Whether this store still owns its file: the lock path names the file
    /// it holds, or names nothing or an unlocked file, which it locks again.
    ///
    /// # Errors
    /// [`StoreError::Database`] once another server holds the lock (for good:
    /// this store must not write again), or when the lock cannot be checked.
    pub(super) fn check(&mut self) -> Result<(), StoreError> {
        if let Some(lost) = &self.lost {
            return Err(StoreError::Database(lost.clone()));
        }
        let Some(identity) = self.identity else {
            return Ok(());
        };
        if FileId::of_path(&self.path) == Some(identity) {
            return Ok(());
        }
        match lock(&self.path) {
            Ok(file) => {
                self.identity = FileId::of_open(&file, &self.path)?;
                self.owner.hold(self.identity);
                self.retaken = Some(file);
                tracing::warn!(
                    path = %self.path.display(),
                    "the lock file was removed or replaced while the server ran: locked again (do not remove it: it keeps a second server off this database)"
                );
                Ok(())
            }
            Err(Refused::Held) => {
                let lost = format!(
                    "{} was removed or replaced while this server ran, and another webhook-server holds it now: this server refuses every write from here on (two servers on one SQLite file would store deliveries twice); stop one of them",
                    self.path.display()
                );
                tracing::error!(error = %lost, "another server took over the database");
                self.owner.lost.store(true, Ordering::Release);
                self.lost = Some(lost.clone());
                Err(StoreError::Database(lost))
            }
            Err(Refused::Error(e)) => Err(e),
        }
    }
}

/// Device and inode: what names one file whatever its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    device: u64,
    inode: u64,
}

impl FileId {
    /// The open file's identity; `None` where the platform has none.
    #[cfg(unix)]
    fn of_open(file: &File, path: &Path) -> Result<Option<Self>, StoreError> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = file
            .metadata()
            .map_err(|e| StoreError::Database(format!("cannot read {}: {e}", path.display())))?;
        Ok(Some(Self {
            device: meta.dev(),
            inode: meta.ino(),
        }))
    }

    #[cfg(not(unix))]
    fn of_open(_file: &File, _path: &Path) -> Result<Option<Self>, StoreError> {
        Ok(None)
    }

    /// What `path` names now, `None` when it names nothing.
    #[cfg(unix)]
    fn of_path(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(path).ok().map(|meta| Self {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    #[cfg(not(unix))]
    fn of_path(_path: &Path) -> Option<Self> {
        None
    }
}

/// `path` with every symbolic link resolved; for a file not created yet, its
/// folder resolved and the name kept, after following a link that points to
/// it (a dangling link is where SQLite will create the file). As given when
/// that fails.
fn resolved(path: &Path) -> PathBuf {
    let mut path = path.to_path_buf();
    // A chain of links, as the kernel follows it (which stops at 40).
    for _ in 0..40 {
        if let Ok(real) = std::fs::canonicalize(&path) {
            return real;
        }
        match std::fs::read_link(&path) {
            Ok(target) => {
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                path = base.join(target);
            }
            Err(_) => break,
        }
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir).map_or_else(|_| path.clone(), |d| d.join(name))
        }
        _ => path,
    }
}

//! Whether the writer can still make deliveries durable, for the commits
//! that acknowledge them and for `/readyz`.
//!
//! Two ways a store that answers pings can no longer keep what it
//! acknowledges:
//!
//! - **The database file was removed or replaced while open** (the data
//!   directory deleted, a volume remounted). SQLite keeps writing through
//!   its open descriptors to the unlinked file, and every commit "succeeds"
//!   into a file nobody will read again. So before a commit that
//!   acknowledges anything, the path must still name the file the store
//!   opened (same device and inode); if not, the batch rolls back (503,
//!   nothing acknowledged) until the server is restarted on a real file.
//! - **Commits fail** (disk full, I/O errors). Each caller already gets
//!   503; readiness must say so too, or a load balancer keeps sending
//!   deliveries. After a failed commit, a ping writes a probe row and is
//!   ready again only once that commits.
//! - **Another server took the file over**: its lock file was removed
//!   while this one ran and a second server started on it (see
//!   `ownership.rs`). Checked with the file, before the same commits.
//! - **The file is damaged** (SQLite reports it malformed). A probe may
//!   still commit (it touches other pages) while every delivery fails, so
//!   once a statement has reported damage the store stays not ready until
//!   it is restarted on a sound file.

use std::path::{Path, PathBuf};

use super::ownership::LockWatch;
use crate::store::StoreError;

/// The writer's view of its file and of its last commits.
#[derive(Debug)]
pub(super) struct Health {
    /// The file as opened, `None` where it is not checked (in-memory
    /// databases in tests, platforms without inode numbers).
    file: Option<FileIdentity>,
    /// The lock that makes this store the file's only server, `None` where
    /// it is not checked (tests on in-memory databases).
    lock: Option<LockWatch>,
    /// The last batch that acknowledged something, or probed, failed to
    /// commit, and none has committed since.
    pub(super) failing: bool,
    /// SQLite reported the file damaged: not ready until restarted.
    pub(super) damaged: bool,
}

#[derive(Debug)]
struct FileIdentity {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl Health {
    /// Watches the file at `path` (as it is now).
    ///
    /// # Errors
    /// When the file cannot be read.
    pub(super) fn of_file(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            file: FileIdentity::of(path)?,
            lock: None,
            failing: false,
            damaged: false,
        })
    }

    /// Also checks the store's lock (see `ownership.rs`).
    pub(super) fn with_lock(mut self, lock: LockWatch) -> Self {
        self.lock = Some(lock);
        self
    }

    /// No file to watch (an in-memory database).
    #[cfg(test)]
    pub(super) fn unchecked() -> Self {
        Self {
            file: None,
            lock: None,
            failing: false,
            damaged: false,
        }
    }

    /// Whether the store's path still names the file it opened, and the
    /// store still owns it.
    ///
    /// # Errors
    /// [`StoreError::Database`] naming the path when it does not.
    pub(super) fn check_file(&mut self) -> Result<(), StoreError> {
        if let Some(file) = &self.file {
            file.check()?;
        }
        self.check_owner()
    }

    /// Whether the store still owns its file (see `ownership.rs`).
    ///
    /// # Errors
    /// [`StoreError::Database`] once another server holds the file's lock.
    pub(super) fn check_owner(&mut self) -> Result<(), StoreError> {
        match &mut self.lock {
            Some(lock) => lock.check(),
            None => Ok(()),
        }
    }
}

/// Whether `error` is SQLite reporting a damaged file: the texts of
/// `SQLITE_CORRUPT` ("database disk image is malformed") and `SQLITE_NOTADB`
/// ("file is not a database"), which is all a [`StoreError`] keeps.
pub(super) fn reports_damage(error: &StoreError) -> bool {
    let text = error.to_string();
    text.contains("disk image is malformed") || text.contains("file is not a database")
}

/// What a ping answers once the file is known to be damaged.
pub(super) fn damaged_error(path: Option<&Path>) -> StoreError {
    StoreError::Database(format!(
        "{} is damaged (SQLite reports it malformed): stop the server, keep a copy of the file \
         and its -wal, and check it with `sqlite3 FILE 'PRAGMA integrity_check'` (see \
         docs/deployment.md)",
        path.map_or_else(|| "the database".to_owned(), |p| p.display().to_string())
    ))
}

impl Health {
    /// The file being watched, when there is one.
    pub(super) fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }
}

impl FileIdentity {
    #[cfg(unix)]
    fn of(path: &Path) -> Result<Option<Self>, StoreError> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path)
            .map_err(|e| StoreError::Database(format!("cannot read {}: {e}", path.display())))?;
        Ok(Some(Self {
            path: path.to_path_buf(),
            device: meta.dev(),
            inode: meta.ino(),
        }))
    }

    #[cfg(not(unix))]
    fn of(_path: &Path) -> Result<Option<Self>, StoreError> {
        Ok(None)
    }

    #[cfg(unix)]
    fn check(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt as _;
        let same = std::fs::metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.device && m.ino() == self.inode);
        if same {
            Ok(())
        } else {
            Err(StoreError::Database(format!(
                "{} was removed or replaced while the server was running: writes are refused, since they would go to a file nobody reads; restart the server",
                self.path.display()
            )))
        }
    }

    #[cfg(not(unix))]
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_or_replaced_file_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        std::fs::write(&path, b"x").unwrap();
        let mut health = Health::of_file(&path).unwrap();
        health.check_file().unwrap();
        // Rewritten in place: the same file.
        std::fs::write(&path, b"yy").unwrap();
        health.check_file().unwrap();
        // Replaced by another file under the same name.
        let other = dir.path().join("other.db");
        std::fs::write(&other, b"z").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let err = health.check_file().unwrap_err().to_string();
        assert!(err.contains("removed or replaced"), "{err}");
        // Removed.
        let mut health = Health::of_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(health.check_file().is_err());
        assert!(Health::unchecked().check_file().is_ok());
    }
}

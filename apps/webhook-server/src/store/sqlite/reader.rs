//! Reading a stopped server's SQLite file, for a copy into another store
//! (`webhook-server copy-store`), without changing what it holds.
//!
//! Opening the file as a [`SqliteStore`] would migrate it, release the
//! leases a crashed server left and take new ones: a copy's source must come
//! out of the copy as it went in, in case the operator goes back to it. So
//! the reader takes the file's lock (no server may run on it meanwhile, and
//! none can start), checks it is a webhook-server file of this build's schema
//! version, and reads through a read-only connection: neither a statement
//! nor SQLite's own checkpoint on close writes to the file or its WAL.

use std::fs::File;
use std::sync::Mutex;

use rusqlite::OpenFlags;

use super::schema::MIGRATIONS;
use super::*;

/// A read-only view of a stopped server's SQLite file. Holds the file's lock
/// while it lives.
#[derive(Debug)]
pub struct SqliteReader {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    // The lock on `<file>.lock`, released on drop.
    _owner: File,
}

impl SqliteReader {
    /// Opens `path` for reading.
    ///
    /// # Errors
    /// [`StoreError::InUse`] when a server (or another copy) holds the
    /// file; [`StoreError::Database`] when there is no file, when it holds
    /// no webhook-server store (an empty file, another program's database)
    /// or one of another schema version than this build's.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Database(format!(
                "there is no SQLite file at {}: nothing to copy (is this the server's \
                 configuration?)",
                path.display()
            )));
        }
        let (owner, _watch) = take_ownership(path)?;
        // Read only, not just `query_only`: a read-write connection that
        // closes last folds the WAL of a server that did not stop cleanly
        // into the file and deletes it (an outside audit saw the file's
        // bytes change). A read-only one reads the WAL as it is.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let events: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            [],
            |r| r.get(0),
        )?;
        let current = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version == 0 || events == 0 {
            return Err(StoreError::Database(format!(
                "{} holds no webhook-server store (schema version {version}, {} events table): \
                 nothing to copy",
                path.display(),
                if events == 0 { "no" } else { "an" }
            )));
        }
        if version != current {
            return Err(StoreError::Database(format!(
                "{} is at schema version {version}, this build's is {current}: {}",
                path.display(),
                if version < current {
                    "start this build's server on it once (it migrates the file at start-up), \
                     stop it, then copy"
                } else {
                    "copy it with the newer webhook-server that wrote it"
                }
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(conn)),
            _owner: owner,
        })
    }

    /// `sqlite PATH (read only)`.
    pub fn describe(&self) -> String {
        format!("sqlite {} (read only)", self.path.display())
    }

    /// Up to `limit` whole events (raw bodies and normalised products
    /// included) with `seq` above `after`, oldest first. Leases are not
    /// part of them.
    ///
    /// # Errors
    /// [`StoreError`] when the file cannot be read, or a row is corrupt.
    pub async fn export(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().map_err(|_| StoreError::Unavailable)?;
            events::export(&conn, after, limit)
        })
        .await
        .map_err(|_| StoreError::Unavailable)?
    }
}

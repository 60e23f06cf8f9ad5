//! The one error type of the storage layer.
//!
//! The variants are grouped so the server can map them to HTTP statuses in one place:
//! [`StoreError::Conflict`] (409), [`StoreError::NotFound`] (404),
//! [`StoreError::InvalidInput`] (400 or 422), [`StoreError::StorageFull`] (507: the
//! disk is full, nothing was stored, a retry succeeds once space is freed), and
//! everything else (500: the database file is unusable or the operating system refused
//! an operation).

use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the storage layer.
///
/// `Clone`, because one failed group commit is reported to every caller whose batch
/// was in it; the underlying I/O and SQLite errors are shared behind an `Arc`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The row already exists (a campaign or key id is taken).
    #[error("{0}")]
    Conflict(String),
    /// The row named by the caller does not exist. The lookups of this crate return
    /// `Option` or `bool` instead; the variant is for callers that need an error.
    #[error("{0}")]
    NotFound(String),
    /// A value the caller passed cannot be stored (for example a number above
    /// `i64::MAX`, the largest integer SQLite holds).
    #[error("{0}")]
    InvalidInput(String),
    /// The database file has a schema this build cannot use: newer than it knows,
    /// or not a TLA database at all. The file is left untouched.
    #[error("{0}")]
    Schema(String),
    /// A stored value does not decode (an unknown status or event kind, a key hash
    /// of the wrong length, scopes that are not a JSON array of strings).
    #[error("corrupt row in table `{table}`: {detail}")]
    Corrupt {
        /// The table holding the bad row.
        table: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The operating system refused a file operation (creating the data directory).
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The path the operation was about.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// SQLite failed (disk full, I/O error, locked database, bug in a statement).
    #[error("sqlite error while {context}: {source}")]
    Sqlite {
        /// What the store was doing, lowercase, e.g. "appending events".
        context: &'static str,
        /// SQLite's error.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// The disk (or the file system holding the data directory) is full: SQLite's
    /// `SQLITE_FULL`, or `ENOSPC` from the operating system. The operation was rolled
    /// back and stored nothing; the same call succeeds once space is freed.
    #[error("storage full while {context}: {detail}")]
    StorageFull {
        /// What the store was doing, lowercase, e.g. "appending events".
        context: &'static str,
        /// The error SQLite or the operating system reported.
        detail: String,
    },
    /// The thread writing a group commit panicked; the batches in that group were not
    /// acknowledged and may or may not be stored (a retry with the same ids is safe).
    #[error("the event log writer panicked while committing this batch; retry it")]
    WriterPanicked,
    /// A shared event log (a replicated stream) cannot be reached or did not answer in
    /// time. What was sent may or may not be stored: a retry with the same event ids is
    /// safe.
    #[error("the shared event log is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Wraps a SQLite error with what the store was doing when it happened.
    /// A full disk (`SQLITE_FULL`) becomes [`StoreError::StorageFull`].
    pub(crate) fn sqlite(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| {
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                return StoreError::StorageFull {
                    context,
                    detail: source.to_string(),
                };
            }
            StoreError::Sqlite {
                context,
                source: Arc::new(source),
            }
        }
    }

    /// Wraps an operating-system error on `path`; `ENOSPC` (and a full quota) becomes
    /// [`StoreError::StorageFull`].
    pub(crate) fn io(
        context: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> StoreError {
        if matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ) {
            return StoreError::StorageFull {
                context,
                detail: format!("{}: {source}", path.display()),
            };
        }
        StoreError::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    /// True for a full disk ([`StoreError::StorageFull`]): nothing was stored and the
    /// same call succeeds once space is freed.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::StorageFull { .. })
    }

    /// True for errors caused by the caller's input or by the state of the data
    /// (conflict, not found, invalid input): the ones a client can act on.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict(_) | StoreError::NotFound(_) | StoreError::InvalidInput(_)
        )
    }
}

/// Converts an unsigned number to SQLite's signed 64-bit integer, or says which field
/// was too large.
pub(crate) fn to_sql_int(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::InvalidInput(format!(
            "{field} {value} is too large to store; the largest accepted value is {}",
            i64::MAX
        ))
    })
}

/// Converts a stored integer back to an unsigned number, or reports the row corrupt.
pub(crate) fn from_sql_int(
    table: &'static str,
    field: &'static str,
    value: i64,
) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("{field} is negative ({value})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_above_i64_max_are_rejected_with_the_field_name() {
        let error = to_sql_int("version", u64::MAX).unwrap_err();
        assert!(error.is_client_error());
        assert!(
            error
                .to_string()
                .starts_with("version 18446744073709551615 is too large")
        );
        assert_eq!(to_sql_int("version", 7).unwrap(), 7);
    }

    #[test]
    fn a_full_disk_is_classified_as_storage_full() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let error = StoreError::sqlite("appending events")(full);
        assert!(error.is_storage_full(), "{error:?}");
        assert!(!error.is_client_error());
        assert!(
            error
                .to_string()
                .starts_with("storage full while appending events"),
            "{error}"
        );
        let io_failure = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
            None,
        );
        assert!(!StoreError::sqlite("committing")(io_failure).is_storage_full());
        let enospc = std::io::Error::from_raw_os_error(28);
        let path = std::path::Path::new("/data");
        assert!(StoreError::io("creating the data directory", path, enospc).is_storage_full());
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!StoreError::io("creating the data directory", path, denied).is_storage_full());
    }

    #[test]
    fn negative_stored_numbers_are_corrupt() {
        let error = from_sql_int("events", "version", -1).unwrap_err();
        assert_eq!(
            error.to_string(),
            "corrupt row in table `events`: version is negative (-1)"
        );
    }
}

//! Why the store could not open, read or write.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another Offload server is using the data directory {path}: stop it, or give this one a directory of its own with --data-dir (or OFFLOAD_DATA_DIR)"
    )]
    InUse { path: PathBuf },
    #[error("locking the data directory {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening the session database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the session database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "updating the session database {path} to this version: {source} (the file is unchanged: the update runs in one transaction)"
    )]
    Migrate {
        path: PathBuf,
        source: rusqlite_migration::Error,
    },
    #[error("starting the session database's writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the session database has stopped")]
    Stopped,
}

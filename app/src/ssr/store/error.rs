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
    #[error(
        "connecting to the database {target}: {source} (is PostgreSQL running there, and does the URL name a user it lets in?)"
    )]
    Connect {
        target: String,
        source: tokio_postgres::Error,
    },
    #[error(
        "another Offload server is using the database {target}: stop it, or give this one a database of its own (one server per database for now)"
    )]
    DatabaseInUse { target: String },
    #[error(
        "updating the database {target} to this version: {source} (the database is unchanged: the update runs in one transaction)"
    )]
    MigrateDatabase {
        target: String,
        source: tokio_postgres::Error,
    },
    #[error(
        "the database {target} was written by a newer Offload (its schema is at version {version}, this build knows {known}): run that release, or give this one another database"
    )]
    NewerDatabase {
        target: String,
        version: i64,
        known: i64,
    },
    #[error("the database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the database is unreachable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("the database did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("starting the session database's writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the session database has stopped")]
    Stopped,
    #[error("another server writes the record now: this one records nothing more")]
    Lost,
    #[error("the record could not be written: {0}")]
    Unrecorded(String),
}

//! API tokens. `offload token create NAME` prints a token once; the record keeps only the
//! SHA-256 of its secret, so a copy of the database lets no one in. A token is
//! `offload_<id>_<secret>`: the id (public, 16 hex digits) finds its row, and the secret's hash
//! is compared in constant time. A token's tasks belong to the owner `token:NAME`, with the
//! same caps and fairness as a browser session.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{postgres, sqlite};

/// What every token starts with, so that scanners (and people) can tell one.
const PREFIX: &str = "offload_";

/// Why a token command failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "{0:?} cannot name a token: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
    )]
    BadName(String),
    #[error("a token called {0:?} exists already: revoke it first, or choose another name")]
    Exists(String),
    #[error("there is no token called {0:?}")]
    Unknown(String),
    #[error("the system's random numbers are unavailable: {0}")]
    Random(String),
    #[error("the token database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the token database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

/// A token as `offload token list` shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    /// Its public id, the part between `offload_` and the secret.
    pub id: String,
    pub created_at_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

/// A new token as it is recorded: its public id and its secret's hash; and as it is shown once.
pub(super) struct NewToken {
    pub(super) id: String,
    pub(super) secret_sha256: Vec<u8>,
    pub(super) shown: String,
}

impl NewToken {
    /// A token for `name`, if it is a valid name, from the system's random numbers.
    fn new(name: &str) -> Result<Self, TokenError> {
        if !valid_name(name) {
            return Err(TokenError::BadName(name.to_owned()));
        }
        let mut random = [0u8; 40];
        getrandom::fill(&mut random).map_err(|e| TokenError::Random(e.to_string()))?;
        let id = hex(&random[..8]);
        let secret = hex(&random[8..]);
        Ok(Self {
            secret_sha256: Sha256::digest(secret.as_bytes()).to_vec(),
            shown: format!("{PREFIX}{id}_{secret}"),
            id,
        })
    }
}

/// A presented token's public id and secret, if it has a token's shape.
pub(super) fn parse(presented: &str) -> Option<(&str, &str)> {
    presented
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
}

/// Whether `secret` is the one whose hash is `stored`, compared in constant time so that
/// timing tells nothing about it.
pub(super) fn matches(stored: &[u8], secret: &str) -> bool {
    bool::from(stored.ct_eq(Sha256::digest(secret.as_bytes()).as_slice()))
}

/// The tokens in the record, read and written beside a running server (which reads them
/// through its own connection): the data directory's database, or the PostgreSQL one.
pub enum Tokens {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl Tokens {
    /// Opens the database of `data_dir` (creating and migrating it if needed).
    pub fn open(data_dir: &Path, legacy_type: &str) -> Result<Self, TokenError> {
        Ok(Self::Sqlite(sqlite::open_shared(data_dir, legacy_type)?))
    }

    /// Connects to the PostgreSQL database at `url` (migrating it if needed).
    pub async fn connect(url: &str) -> Result<Self, TokenError> {
        Ok(Self::Postgres(postgres::connect_migrated(url).await?))
    }

    /// Creates token `name` and returns it: the only time it is shown.
    pub async fn create(&mut self, name: &str, now_ms: u64) -> Result<String, TokenError> {
        let token = NewToken::new(name)?;
        let created = match self {
            Self::Sqlite(conn) => sqlite::tokens::create(conn, name, &token, now_ms)?,
            Self::Postgres(client) => {
                postgres::tokens::create(client, name, &token, now_ms).await?
            }
        };
        if !created {
            return Err(TokenError::Exists(name.to_owned()));
        }
        Ok(token.shown)
    }

    /// Every token, oldest first.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        Ok(match self {
            Self::Sqlite(conn) => sqlite::tokens::list(conn)?,
            Self::Postgres(client) => postgres::tokens::list(client).await?,
        })
    }

    /// Revokes token `name`: it is refused from the next request on.
    pub async fn revoke(&mut self, name: &str, now_ms: u64) -> Result<(), TokenError> {
        let revoked = match self {
            Self::Sqlite(conn) => sqlite::tokens::revoke(conn, name, now_ms)?,
            Self::Postgres(client) => postgres::tokens::revoke(client, name, now_ms).await?,
        };
        if !revoked {
            return Err(TokenError::Unknown(name.to_owned()));
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["a", "ci-bot", "team.prod_2", &"x".repeat(64)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-a", "a b", "ä", "a/b", &"x".repeat(65), "token:x"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}

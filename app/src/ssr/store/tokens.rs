//! API tokens. `offload token create NAME` prints a token once; the database keeps only the
//! SHA-256 of its secret, so a copy of the database lets no one in. A token is
//! `offload_<id>_<secret>`: the id (public, 16 hex digits) finds its row, and the secret's hash
//! is compared in constant time. A token's tasks belong to the owner `token:NAME`, with the
//! same caps and fairness as a browser session.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

/// The tokens in a data directory's database, read and written beside a running server
/// (SQLite lets them share the file; the server reads tokens through its own connection).
pub struct Tokens {
    conn: Connection,
}

impl Tokens {
    /// Opens the database of `data_dir` (creating and migrating it if needed).
    pub fn open(data_dir: &Path, legacy_type: &str) -> Result<Self, TokenError> {
        Ok(Self {
            conn: super::schema::open_shared(data_dir, legacy_type)?,
        })
    }

    /// Creates token `name` and returns it: the only time it is shown.
    pub fn create(&mut self, name: &str, now_ms: u64) -> Result<String, TokenError> {
        if !valid_name(name) {
            return Err(TokenError::BadName(name.to_owned()));
        }
        let mut random = [0u8; 40];
        getrandom::fill(&mut random).map_err(|e| TokenError::Random(e.to_string()))?;
        let id = hex(&random[..8]);
        let secret = hex(&random[8..]);
        let tx = self.conn.transaction()?;
        let active: bool = tx
            .query_row(
                "SELECT revoked_at_ms IS NULL FROM tokens WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(false);
        if active {
            return Err(TokenError::Exists(name.to_owned()));
        }
        // A revoked token's name may be given again; its tasks stay the owner's.
        tx.execute("DELETE FROM tokens WHERE name = ?1", [name])?;
        tx.execute(
            "INSERT INTO tokens (id, name, secret_sha256, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![
                id,
                name,
                Sha256::digest(secret.as_bytes()).as_slice(),
                now_ms as i64
            ],
        )?;
        tx.commit()?;
        Ok(format!("{PREFIX}{id}_{secret}"))
    }

    /// Every token, oldest first.
    pub fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        let mut statement = self.conn.prepare(
            "SELECT name, id, created_at_ms, revoked_at_ms FROM tokens ORDER BY created_at_ms, name",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(TokenInfo {
                name: row.get(0)?,
                id: row.get(1)?,
                created_at_ms: row.get::<_, i64>(2)? as u64,
                revoked_at_ms: row.get::<_, Option<i64>>(3)?.map(|ms| ms as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes token `name`: it is refused from the next request on.
    pub fn revoke(&mut self, name: &str, now_ms: u64) -> Result<(), TokenError> {
        let changed = self.conn.execute(
            "UPDATE tokens SET revoked_at_ms = ?2 WHERE name = ?1 AND revoked_at_ms IS NULL",
            params![name, now_ms as i64],
        )?;
        if changed == 0 {
            return Err(TokenError::Unknown(name.to_owned()));
        }
        Ok(())
    }
}

/// The name of the live token `presented` is, if it is one. Looked up by its public id; the
/// secret's hash is compared in constant time, so timing tells nothing about it.
pub fn verify(conn: &Connection, presented: &str) -> rusqlite::Result<Option<String>> {
    let Some((id, secret)) = presented
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
    else {
        return Ok(None);
    };
    let row: Option<(String, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT name, secret_sha256 FROM tokens WHERE id = ?1 AND revoked_at_ms IS NULL",
        )?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let digest = Sha256::digest(secret.as_bytes());
    Ok(row.and_then(|(name, stored)| bool::from(stored.ct_eq(digest.as_slice())).then_some(name)))
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
    fn a_token_works_until_it_is_revoked_and_only_its_hash_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut tokens = Tokens::open(dir.path(), "t").unwrap();
        let token = tokens.create("ci-bot", 1000).unwrap();
        assert!(
            token.starts_with("offload_") && token.len() == 8 + 16 + 1 + 64,
            "{token}"
        );
        assert_eq!(
            verify(&tokens.conn, &token).unwrap().as_deref(),
            Some("ci-bot")
        );
        // A wrong secret, a forged id, junk: nobody.
        let (head, secret) = token.rsplit_once('_').unwrap();
        let wrong = format!("{head}_{}", "0".repeat(secret.len()));
        for bad in [
            wrong.as_str(),
            "offload_0000000000000000_00",
            "Bearer",
            "",
            "offload_",
        ] {
            assert_eq!(verify(&tokens.conn, bad).unwrap(), None, "{bad}");
        }
        let stored: Vec<u8> = tokens
            .conn
            .query_row("SELECT secret_sha256 FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored.len(), 32);
        assert!(!String::from_utf8_lossy(&stored).contains(secret));

        assert!(matches!(
            tokens.create("ci-bot", 2000),
            Err(TokenError::Exists(_))
        ));
        tokens.revoke("ci-bot", 3000).unwrap();
        assert_eq!(verify(&tokens.conn, &token).unwrap(), None);
        assert!(matches!(
            tokens.revoke("ci-bot", 4000),
            Err(TokenError::Unknown(_))
        ));
        let listed = tokens.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].revoked_at_ms, Some(3000));
        // The name may be given again, to a new secret.
        let again = tokens.create("ci-bot", 5000).unwrap();
        assert_ne!(again, token);
        assert_eq!(
            verify(&tokens.conn, &again).unwrap().as_deref(),
            Some("ci-bot")
        );
    }

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

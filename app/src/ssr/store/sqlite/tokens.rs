//! API tokens in the SQLite file (see [`crate::ssr::store::tokens`]).

use rusqlite::{Connection, OptionalExtension, params};

use crate::ssr::store::tokens::{NewToken, TokenInfo, matches, parse};

/// Records `token` as `name`'s; false when a live token has that name.
pub(in crate::ssr::store) fn create(
    conn: &mut Connection,
    name: &str,
    token: &NewToken,
    now_ms: u64,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    let active: bool = tx
        .query_row(
            "SELECT revoked_at_ms IS NULL FROM tokens WHERE name = ?1",
            [name],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(false);
    if active {
        return Ok(false);
    }
    // A revoked token's name may be given again; its tasks stay the owner's.
    tx.execute("DELETE FROM tokens WHERE name = ?1", [name])?;
    tx.execute(
        "INSERT INTO tokens (id, name, secret_sha256, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![token.id, name, token.secret_sha256, now_ms as i64],
    )?;
    tx.commit()?;
    Ok(true)
}

pub(in crate::ssr::store) fn list(conn: &Connection) -> rusqlite::Result<Vec<TokenInfo>> {
    conn.prepare(
        "SELECT name, id, created_at_ms, revoked_at_ms FROM tokens ORDER BY created_at_ms, name",
    )?
    .query_map([], |row| {
        Ok(TokenInfo {
            name: row.get(0)?,
            id: row.get(1)?,
            created_at_ms: row.get::<_, i64>(2)? as u64,
            revoked_at_ms: row.get::<_, Option<i64>>(3)?.map(|ms| ms as u64),
        })
    })?
    .collect()
}

/// False when no live token has that name.
pub(in crate::ssr::store) fn revoke(
    conn: &Connection,
    name: &str,
    now_ms: u64,
) -> rusqlite::Result<bool> {
    conn.execute(
        "UPDATE tokens SET revoked_at_ms = ?2 WHERE name = ?1 AND revoked_at_ms IS NULL",
        params![name, now_ms as i64],
    )
    .map(|changed| changed > 0)
}

/// The name of the live token `presented` is, if it is one.
pub(in crate::ssr::store) fn verify(
    conn: &Connection,
    presented: &str,
) -> rusqlite::Result<Option<String>> {
    let Some((id, secret)) = parse(presented) else {
        return Ok(None);
    };
    let row: Option<(String, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT name, secret_sha256 FROM tokens WHERE id = ?1 AND revoked_at_ms IS NULL",
        )?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(name, stored)| matches(&stored, secret).then_some(name)))
}

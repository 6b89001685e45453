//! API tokens in the PostgreSQL record (see [`crate::ssr::store::tokens`]).

use tokio_postgres::Client;

use crate::ssr::store::tokens::{NewToken, TokenInfo, matches, parse};

/// Records `token` as `name`'s; false when a live token has that name.
pub(in crate::ssr::store) async fn create(
    client: &mut Client,
    name: &str,
    token: &NewToken,
    now_ms: u64,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // The name's row, locked: two commands creating one name at once go one after the other.
    let active: Option<bool> = tx
        .query_opt(
            "SELECT revoked_at_ms IS NULL FROM tokens WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?
        .map(|row| row.get(0));
    if active == Some(true) {
        return Ok(false);
    }
    // A revoked token's name may be given again; its tasks stay the owner's.
    tx.execute("DELETE FROM tokens WHERE name = $1", &[&name])
        .await?;
    tx.execute(
        "INSERT INTO tokens (id, name, secret_sha256, created_at_ms) VALUES ($1, $2, $3, $4)",
        &[&token.id, &name, &token.secret_sha256, &(now_ms as i64)],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub(in crate::ssr::store) async fn list(
    client: &Client,
) -> Result<Vec<TokenInfo>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT name, id, created_at_ms, revoked_at_ms FROM tokens
             ORDER BY created_at_ms, name COLLATE \"C\"",
            &[],
        )
        .await?
        .iter()
        .map(|row| TokenInfo {
            name: row.get(0),
            id: row.get(1),
            created_at_ms: row.get::<_, i64>(2) as u64,
            revoked_at_ms: row.get::<_, Option<i64>>(3).map(|ms| ms as u64),
        })
        .collect())
}

/// False when no live token has that name.
pub(in crate::ssr::store) async fn revoke(
    client: &Client,
    name: &str,
    now_ms: u64,
) -> Result<bool, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE tokens SET revoked_at_ms = $2 WHERE name = $1 AND revoked_at_ms IS NULL",
            &[&name, &(now_ms as i64)],
        )
        .await
        .map(|changed| changed > 0)
}

/// The name of the live token `presented` is, if it is one.
pub(in crate::ssr::store) async fn verify(
    client: &deadpool_postgres::ClientWrapper,
    presented: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let Some((id, secret)) = parse(presented) else {
        return Ok(None);
    };
    let statement = client
        .prepare_cached(
            "SELECT name, secret_sha256 FROM tokens WHERE id = $1 AND revoked_at_ms IS NULL",
        )
        .await?;
    let row = client.query_opt(&statement, &[&id]).await?;
    Ok(row.and_then(|row| {
        let stored: Vec<u8> = row.get(1);
        matches(&stored, secret).then(|| row.get(0))
    }))
}

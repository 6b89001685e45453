//! Submissions safe to repeat under an `Idempotency-Key`: one request per owner and key at a
//! time, so that any number of copies at once make one task (or batch); a repeat gets what the
//! first made, another request under the same key a 422. (What a key got is in the record of
//! what it made, not here.)

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::problem::ApiError;
use crate::AppError;
use crate::ssr::{AppState, SessionId};

/// The header that makes a submission safe to repeat.
pub(super) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A submission's key, and the SHA-256 of its request: what its record keeps.
pub(super) type Keyed = (String, Vec<u8>);

/// What a submission makes: each has its own keys (the same key may name a task and a batch).
#[derive(Clone, Copy)]
pub(super) enum Makes {
    Task,
    Batch,
}

impl Makes {
    fn name(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Batch => "batch",
        }
    }

    /// What `key` made before for `owner`: its id, and its request's hash.
    async fn earlier(
        self,
        state: &AppState,
        owner: &SessionId,
        key: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, AppError> {
        let store = state.sessions.store();
        Ok(match self {
            Self::Task => store.by_idempotency_key(&owner.0, key).await?,
            Self::Batch => store.batch_by_idempotency_key(&owner.0, key).await?,
        })
    }
}

/// Answers a submission of `request` that makes a `makes`: without an `Idempotency-Key`,
/// `submit(request, None)`; with one, once per key: a repeat of the same request gets
/// `again(id)` of what it made, another request under the key a 422, a new key
/// `submit(request, Some(keyed))`.
pub(super) async fn once<R: Serialize, T>(
    state: &AppState,
    owner: &SessionId,
    headers: &HeaderMap,
    makes: Makes,
    request: R,
    again: impl AsyncFnOnce(u64) -> Result<T, ApiError>,
    submit: impl AsyncFnOnce(R, Option<Keyed>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let Some(key) = headers.get(IDEMPOTENCY_KEY) else {
        return submit(request, None).await;
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()))
        .map(str::to_owned)
        .ok_or_else(|| {
            AppError::invalid("an Idempotency-Key is 1 to 255 visible ASCII characters")
        })?;
    let hash = Sha256::digest(serde_json::to_vec(&request).unwrap_or_default()).to_vec();
    let what = makes.name();
    // One request per owner and key at a time: the others wait, then find what it made.
    let slot_key = format!("{what} {key}");
    let slot = state.idempotency.slot(owner, &slot_key);
    let turn = slot.lock().await;
    let answer = match makes.earlier(state, owner, &key).await {
        Err(error) => Err(error.into()),
        Ok(Some((_, first))) if first != hash => Err(AppError::Unprocessable(format!(
            "the Idempotency-Key {key:?} was used with another request: use a new key for a \
             new {what}"
        ))
        .into()),
        Ok(Some((id, _))) => again(id).await,
        Ok(None) => submit(request, Some((key, hash))).await,
    };
    drop(turn);
    state.idempotency.release(owner, &slot_key, slot);
    answer
}

/// The submissions under an `Idempotency-Key` in progress, by owner and key: an entry lives
/// only while requests for it are being answered, so the map holds at most one entry per
/// request in flight. (What a key got is in the task's record.)
#[derive(Default)]
pub struct IdempotencyLocks {
    slots: parking_lot::Mutex<HashMap<(String, String), Slot>>,
}

type Slot = Arc<tokio::sync::Mutex<()>>;

impl IdempotencyLocks {
    fn slot(&self, owner: &SessionId, key: &str) -> Slot {
        self.slots
            .lock()
            .entry((owner.0.clone(), key.to_owned()))
            .or_default()
            .clone()
    }

    /// Done with `slot`: forgotten once no other request holds it.
    fn release(&self, owner: &SessionId, key: &str, slot: Slot) {
        let mut slots = self.slots.lock();
        // The map's reference and ours: nobody else waits on it.
        if Arc::strong_count(&slot) == 2 {
            slots.remove(&(owner.0.clone(), key.to_owned()));
        }
    }
}

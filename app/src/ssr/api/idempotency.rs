//! The submissions under an `Idempotency-Key` being answered right now: one request per owner
//! and key at a time, so that any number of copies at once make one task. (What a key got is
//! in the task's record, not here.)

use std::collections::HashMap;
use std::sync::Arc;

use crate::ssr::SessionId;

/// The submissions under an `Idempotency-Key` in progress, by owner and key: an entry lives
/// only while requests for it are being answered, so the map holds at most one entry per
/// request in flight. (What a key got is in the task's record.)
#[derive(Default)]
pub struct IdempotencyLocks {
    slots: parking_lot::Mutex<HashMap<(String, String), Slot>>,
}

pub(super) type Slot = Arc<tokio::sync::Mutex<()>>;

impl IdempotencyLocks {
    pub(super) fn slot(&self, owner: &SessionId, key: &str) -> Slot {
        self.slots
            .lock()
            .entry((owner.0.clone(), key.to_owned()))
            .or_default()
            .clone()
    }

    /// Done with `slot`: forgotten once no other request holds it.
    pub(super) fn release(&self, owner: &SessionId, key: &str, slot: Slot) {
        let mut slots = self.slots.lock();
        // The map's reference and ours: nobody else waits on it.
        if Arc::strong_count(&slot) == 2 {
            slots.remove(&(owner.0.clone(), key.to_owned()));
        }
    }
}

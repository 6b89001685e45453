//! `GET /api/events`: the page's one live stream (server-sent events). It opens with a
//! snapshot of the session, then carries each change; a page that falls behind gets a fresh
//! snapshot instead of the changes it missed. When the server stops, it says so and ends.
//!
//! Streams are bounded ([`StreamLimits`]): a few per session (a new one closes the oldest) and
//! a total, past which a stream is refused with 503. A stream costs nothing to a session that
//! does not exist yet: it waits, holding only its permit, until the session's first submit.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream;
use parking_lot::Mutex;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::oneshot;

use crate::ssr::guard::FreshSession;
use crate::ssr::sessions::Session;
use crate::ssr::{AppState, SessionId};
use model::page::PageUpdate;

/// How many live streams may be open: per session (a new one closes that session's oldest)
/// and in all (past it, new ones are refused).
pub struct StreamLimits {
    per_session: usize,
    total: usize,
    inner: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    count: usize,
    next_ticket: u64,
    by_session: HashMap<SessionId, VecDeque<(u64, oneshot::Sender<()>)>>,
}

/// Every stream the server allows is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server already has {0} live streams open, its limit: close some Offload tabs or try again later"
)]
pub struct TooManyStreams(pub usize);

/// One open stream's place; dropping it frees the place.
pub struct StreamPermit {
    limits: Arc<StreamLimits>,
    session: SessionId,
    ticket: u64,
    /// Fires when a newer stream of the same session takes this one's place.
    pub(crate) replaced: oneshot::Receiver<()>,
}

impl StreamLimits {
    pub fn new(per_session: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_session: per_session.max(1),
            total,
            inner: Mutex::new(Open::default()),
        })
    }

    /// Streams open now.
    pub fn open_count(&self) -> usize {
        self.inner.lock().count
    }

    pub fn open(self: &Arc<Self>, session: &SessionId) -> Result<StreamPermit, TooManyStreams> {
        let mut open = self.inner.lock();
        let ticket = open.next_ticket;
        let mine = open.by_session.entry(session.clone()).or_default();
        if mine.len() >= self.per_session {
            // The session's oldest page goes: it is most likely a tab left behind.
            if let Some((_, close)) = mine.pop_front() {
                let _ = close.send(());
            }
        } else if open.count >= self.total {
            if open.by_session.get(session).is_some_and(VecDeque::is_empty) {
                open.by_session.remove(session);
            }
            return Err(TooManyStreams(self.total));
        }
        let (close, replaced) = oneshot::channel();
        open.by_session
            .entry(session.clone())
            .or_default()
            .push_back((ticket, close));
        open.next_ticket += 1;
        open.count += 1;
        Ok(StreamPermit {
            limits: self.clone(),
            session: session.clone(),
            ticket,
            replaced,
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.limits.inner.lock();
        open.count -= 1;
        if let Some(mine) = open.by_session.get_mut(&self.session) {
            mine.retain(|(ticket, _)| *ticket != self.ticket);
            if mine.is_empty() {
                open.by_session.remove(&self.session);
            }
        }
    }
}

pub async fn events(
    State(state): State<AppState>,
    Extension(id): Extension<SessionId>,
    fresh: Option<Extension<FreshSession>>,
) -> Response {
    if fresh.is_some() {
        // No cookie came with it, so no session can be behind it: an empty view, and done.
        let empty = PageUpdate::Snapshot {
            server_now_ms: cluster::now_ms(),
            tasks: Vec::new(),
            lines: Vec::new(),
        };
        return Sse::new(stream::once(async move {
            Ok::<_, Infallible>(to_event(&empty))
        }))
        .into_response();
    }
    if state.shutdown.has_begun() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is restarting: the page reconnects by itself",
        )
            .into_response();
    }
    let permit = match state.streams.open(&id) {
        Ok(permit) => permit,
        Err(full) => return (StatusCode::SERVICE_UNAVAILABLE, full.to_string()).into_response(),
    };
    // Subscribed before the look-up, so that a session created in between is not missed.
    let created = state.sessions.created();
    let follow = Follow {
        stage: match state.sessions.get(&id) {
            Some(session) => Stage::Following(session.subscribe(), session),
            None => Stage::Waiting(created),
        },
        first: true,
        state,
        id,
        permit,
    };
    let updates = stream::unfold(follow, |mut follow| async move {
        let update = follow.next().await?;
        Some((Ok::<_, Infallible>(to_event(&update)), follow))
    });
    Sse::new(updates)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// One stream's progress through its life.
struct Follow {
    state: AppState,
    id: SessionId,
    permit: StreamPermit,
    stage: Stage,
    first: bool,
}

enum Stage {
    /// No session yet: wait for its first submit.
    Waiting(broadcast::Receiver<SessionId>),
    Following(broadcast::Receiver<(u64, PageUpdate)>, Arc<Session>),
    Ended,
}

impl Follow {
    async fn next(&mut self) -> Option<PageUpdate> {
        if std::mem::take(&mut self.first) {
            return Some(match &self.stage {
                Stage::Following(_, session) => session.snapshot(),
                _ => PageUpdate::Snapshot {
                    server_now_ms: cluster::now_ms(),
                    tasks: Vec::new(),
                    lines: Vec::new(),
                },
            });
        }
        loop {
            let shutdown = self.state.shutdown.clone();
            let replaced = &mut self.permit.replaced;
            let woke = match &mut self.stage {
                Stage::Ended => return None,
                Stage::Waiting(created) => tokio::select! {
                    () = shutdown.begun() => Woke::Stopping,
                    _ = replaced => Woke::Replaced,
                    event = created.recv() => Woke::Created(event),
                },
                Stage::Following(updates, _) => tokio::select! {
                    () = shutdown.begun() => Woke::Stopping,
                    _ = replaced => Woke::Replaced,
                    update = updates.recv() => Woke::Update(update),
                },
            };
            match woke {
                Woke::Stopping => {
                    self.stage = Stage::Ended;
                    return Some(PageUpdate::Restarting);
                }
                Woke::Replaced | Woke::Created(Err(RecvError::Closed)) => return None,
                Woke::Created(event) => {
                    // After a lag, any of the missed creations may have been ours: look.
                    let maybe_mine = event.as_ref().map_or(true, |id| *id == self.id);
                    if let Some(session) = maybe_mine
                        .then(|| self.state.sessions.get(&self.id))
                        .flatten()
                    {
                        let updates = session.subscribe();
                        let snapshot = session.snapshot();
                        self.stage = Stage::Following(updates, session);
                        return Some(snapshot);
                    }
                }
                Woke::Update(Ok((_, update))) => return Some(update),
                Woke::Update(Err(RecvError::Lagged(_))) => {
                    if let Stage::Following(_, session) = &self.stage {
                        return Some(session.snapshot());
                    }
                }
                Woke::Update(Err(RecvError::Closed)) => return None,
            }
        }
    }
}

/// What a waiting stream woke up for.
enum Woke {
    Stopping,
    Replaced,
    Created(Result<SessionId, RecvError>),
    Update(Result<(u64, PageUpdate), RecvError>),
}

impl Drop for Follow {
    fn drop(&mut self) {
        // A page closing is activity: the session's idle time starts now.
        if let Stage::Following(_, session) = &self.stage {
            session.touch();
        }
    }
}

fn to_event(update: &PageUpdate) -> Event {
    Event::default()
        .json_data(update)
        .unwrap_or_else(|_| Event::default().comment("unencodable update"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> SessionId {
        SessionId(name.into())
    }

    #[test]
    fn a_session_keeps_its_newest_streams_and_the_total_is_capped() {
        let limits = StreamLimits::new(2, 3);
        let mut first = limits.open(&id("a")).unwrap();
        let _second = limits.open(&id("a")).unwrap();
        let _third = limits.open(&id("a")).unwrap();
        assert!(
            first.replaced.try_recv().is_ok(),
            "the oldest was told to close"
        );
        drop(first);
        assert_eq!(limits.open_count(), 2);
        let _b = limits.open(&id("b")).unwrap();
        assert_eq!(limits.open(&id("c")).err(), Some(TooManyStreams(3)));
        assert!(!limits.inner.lock().by_session.contains_key(&id("c")));
        drop(_b);
        assert!(limits.open(&id("c")).is_ok());
    }
}

//! `GET /api/events`: the page's one live stream (server-sent events). It opens with a
//! snapshot of the session, then carries each change; a page that falls behind gets a fresh
//! snapshot instead of the changes it missed.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use tokio::sync::broadcast::error::RecvError;

use crate::model::PageUpdate;
use crate::ssr::{AppState, SessionId};

pub async fn events(
    State(state): State<AppState>,
    Extension(id): Extension<SessionId>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let session = state.sessions.get_or_create(&id);
    let boot = state.sessions.boot();
    let updates = session.subscribe();
    let first = session.snapshot(boot);
    let rest = stream::unfold(
        (updates, session),
        move |(mut updates, session)| async move {
            let update = match updates.recv().await {
                Ok(update) => update,
                Err(RecvError::Lagged(_)) => session.snapshot(boot),
                Err(RecvError::Closed) => return None,
            };
            Some((update, (updates, session)))
        },
    );
    let events = stream::once(async { first })
        .chain(rest)
        .map(|update| Ok(to_event(&update)));
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn to_event(update: &PageUpdate) -> Event {
    Event::default()
        .json_data(update)
        .unwrap_or_else(|_| Event::default().comment("unencodable update"))
}

//! The API's server-sent events: `GET /api/v1/events` (every change to the caller's tasks)
//! and `GET /api/v1/tasks/{id}/events` (one task's, ending with it). Each event has an id, the
//! owner's change number: a client that reconnects with `Last-Event-ID` gets every later change
//! once, or a `snapshot` when it fell more than
//! [`JOURNAL_KEPT`](crate::ssr::sessions::JOURNAL_KEPT) changes behind (as the page
//! does). A `task` event says what `GET /api/v1/tasks/{id}` says at that moment: its state
//! changes are sent after they are recorded.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};
use utoipa::ToSchema;

use super::extract::{Owner, TaskIdPath};
use super::problem::{ApiError, Problem};
use super::tasks::owned_record;
use crate::AppError;
use crate::ssr::AppState;
use crate::ssr::sessions::{Resume, Session};
use crate::ssr::stream::StreamPermit;
use model::TaskState;
use model::page::{Outcome, PageUpdate, QueuedTask, TaskStatus, TerminalLine};

/// A task's state as an event carries it (`event: task`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskEvent {
    pub id: u64,
    /// Its type, while it is queued or running.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub state: TaskState,
    pub progress: f64,
    /// Its results-terminal line, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// The caller's unfinished tasks (`event: snapshot`): sent first, and instead of the changes a
/// reconnecting client missed when there were too many.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub tasks: Vec<TaskEvent>,
}

impl From<&QueuedTask> for TaskEvent {
    fn from(task: &QueuedTask) -> Self {
        Self {
            id: task.id,
            kind: Some(task.task.clone()),
            state: match task.status {
                TaskStatus::Queued => TaskState::Queued,
                TaskStatus::Running => TaskState::Running,
            },
            progress: task.progress,
            summary: None,
        }
    }
}

impl From<&TerminalLine> for TaskEvent {
    fn from(line: &TerminalLine) -> Self {
        Self {
            id: line.task,
            kind: None,
            state: TaskState::from(line.outcome),
            progress: if line.outcome == Outcome::Finished {
                1.0
            } else {
                0.0
            },
            summary: Some(line.text.clone()),
        }
    }
}

/// Every change to the caller's tasks, as they happen.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(("Last-Event-ID" = Option<u64>, Header, description = "The last event seen: resume after it")),
    responses(
        (status = 200, description = "Server-sent events: `snapshot` (Snapshot), `task` (TaskEvent), `restarting`; each with its id", content_type = "text/event-stream", body = String),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams are open (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn events(
    owner: Owner,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let follow = Follow::open(&state, &owner, &headers, None)?;
    Ok(sse(follow))
}

/// One task's changes, ending with it.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}/events",
    tag = "events",
    params(
        ("id" = u64, Path, description = "The task's id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The last event seen: resume after it"),
    ),
    responses(
        (status = 200, description = "Server-sent events: `task` (TaskEvent) for each change, the last when it ends", content_type = "text/event-stream", body = String),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's task", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams are open (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn task_events(
    owner: Owner,
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = owned_record(&state, &owner.0, id).await?;
    if let Some(outcome) = record.outcome {
        // Ended already: its last event, and the stream ends.
        let last = TaskEvent {
            id,
            kind: Some(record.task_type),
            state: TaskState::from(outcome),
            progress: if outcome == Outcome::Finished {
                1.0
            } else {
                0.0
            },
            summary: record.line,
        };
        let event = task_event(None, &last);
        return Ok(
            Sse::new(stream::once(async move { Ok::<_, Infallible>(event) })).into_response(),
        );
    }
    let follow = Follow::open(&state, &owner, &headers, Some(id))?;
    Ok(sse(follow))
}

fn sse(follow: Follow) -> Response {
    let events = stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok::<_, Infallible>(event), follow))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn task_event(seq: Option<u64>, task: &TaskEvent) -> Event {
    let event = Event::default()
        .event("task")
        .data(serde_json::to_string(task).unwrap_or_default());
    match seq {
        Some(seq) => event.id(seq.to_string()),
        None => event,
    }
}

/// One API stream: the owner's numbered changes, all or one task's.
struct Follow {
    state: AppState,
    session: std::sync::Arc<Session>,
    permit: StreamPermit,
    /// Only this task's changes; the stream ends with it.
    only: Option<u64>,
    /// Changes to send before those of the receiver.
    pending: std::collections::VecDeque<Event>,
    updates: broadcast::Receiver<(u64, PageUpdate)>,
    last: u64,
    ended: bool,
}

impl Follow {
    fn open(
        state: &AppState,
        owner: &Owner,
        headers: &HeaderMap,
        only: Option<u64>,
    ) -> Result<Self, ApiError> {
        let session = state
            .sessions
            .get_or_create(&owner.0)
            .map_err(|full| AppError::Unavailable(full.to_string()))?;
        let permit = state
            .streams
            .open(&owner.0)
            .map_err(|full| AppError::Unavailable(full.to_string()))?;
        let last_seen = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let (resume, updates) = session.resume(last_seen);
        let mut follow = Self {
            state: state.clone(),
            session,
            permit,
            only,
            pending: Default::default(),
            updates,
            last: last_seen.unwrap_or(0),
            ended: false,
        };
        follow.queue(resume);
        Ok(follow)
    }

    /// Queues what a resumption brings.
    fn queue(&mut self, resume: Resume) {
        match resume {
            Resume::Changes(changes) => {
                for (seq, update) in changes {
                    self.change(seq, &update);
                }
            }
            Resume::Snapshot(seq, tasks) => {
                self.last = seq;
                match self.only {
                    None => {
                        let snapshot = Snapshot {
                            tasks: tasks.iter().map(TaskEvent::from).collect(),
                        };
                        self.pending.push_back(
                            Event::default()
                                .event("snapshot")
                                .id(seq.to_string())
                                .data(serde_json::to_string(&snapshot).unwrap_or_default()),
                        );
                    }
                    Some(id) => match tasks.iter().find(|t| t.id == id) {
                        Some(task) => self
                            .pending
                            .push_back(task_event(Some(seq), &TaskEvent::from(task))),
                        // It ended in between: the client reads its end with GET.
                        None => self.ended = true,
                    },
                }
            }
        }
    }

    /// Queues change `seq` if it is news to this stream.
    fn change(&mut self, seq: u64, update: &PageUpdate) {
        if seq <= self.last {
            return;
        }
        self.last = seq;
        let event = match update {
            // A batch's row and line are the page's: the API follows a batch at its own
            // stream (`/api/v1/batches/{id}/events`).
            PageUpdate::Task(task) if task.batch.is_some() => return,
            PageUpdate::Done(line) if line.batch => return,
            PageUpdate::Task(task) => TaskEvent::from(task),
            PageUpdate::Done(line) => TaskEvent::from(line),
            PageUpdate::Snapshot { .. } | PageUpdate::Restarting => return,
        };
        if self.only.is_some_and(|id| id != event.id) {
            return;
        }
        let done = !matches!(event.state, TaskState::Queued | TaskState::Running);
        self.pending.push_back(task_event(Some(seq), &event));
        if done && self.only.is_some() {
            self.ended = true;
        }
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            let shutdown = self.state.shutdown.clone();
            tokio::select! {
                () = shutdown.begun() => {
                    self.ended = true;
                    return Some(Event::default().event("restarting").data("the server is restarting: reconnect with Last-Event-ID"));
                }
                _ = &mut self.permit.replaced => return None,
                update = self.updates.recv() => match update {
                    Ok((seq, update)) => self.change(seq, &update),
                    Err(RecvError::Lagged(_)) => {
                        // Fell behind the live changes: resume from the journal, or a snapshot.
                        let (resume, updates) = self.session.resume(Some(self.last));
                        self.updates = updates;
                        self.queue(resume);
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

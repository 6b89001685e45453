//! Browser sessions: each owns its task queue and the last lines of its results terminal, and
//! fans its changes out to the session's open pages. Bounded on every axis: lines per session,
//! updates a slow page may fall behind by, and idle sessions, which expire.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::model::{PageUpdate, QueuedTask, TaskStatus, TerminalLine};
use crate::ssr::SessionId;

/// How much a session may keep, and for how long.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A session with no page open and no unfinished task is forgotten after this long.
    pub idle_timeout: Duration,
    /// Terminal lines kept per session (oldest dropped first).
    pub max_lines: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            max_lines: 1000,
        }
    }
}

/// Updates a page may fall behind by before it is sent a fresh snapshot instead.
const UPDATE_BACKLOG: usize = 256;

pub struct Sessions {
    map: Mutex<HashMap<SessionId, Arc<Session>>>,
    config: SessionConfig,
    boot: u64,
}

impl Sessions {
    pub fn new(config: SessionConfig) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            config,
            // Distinct per server run, so a page can tell a reconnect from a restart.
            boot: uuid::Uuid::new_v4().as_u64_pair().0,
        }
    }

    pub fn boot(&self) -> u64 {
        self.boot
    }

    fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// The session, created on first use; marks it as seen.
    pub fn get_or_create(&self, id: &SessionId) -> Arc<Session> {
        let session = self
            .map
            .lock()
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Session::new(self.config.max_lines)))
            .clone();
        session.touch();
        session
    }

    /// Forgets sessions that are idle, have nothing running and no page open. Returns how many.
    pub fn expire_idle(&self) -> usize {
        let timeout = self.config.idle_timeout;
        let mut map = self.map.lock();
        let before = map.len();
        map.retain(|_, session| !session.is_expired(timeout));
        before - map.len()
    }

    /// Runs [`Sessions::expire_idle`] every `period`, for ever.
    pub async fn expire_every(self: Arc<Self>, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            let expired = self.expire_idle();
            if expired > 0 {
                tracing::info!(expired, left = self.len(), "expired idle sessions");
            }
        }
    }
}

pub struct Session {
    state: Mutex<State>,
    updates: broadcast::Sender<PageUpdate>,
}

struct State {
    tasks: BTreeMap<u64, QueuedTask>,
    lines: VecDeque<TerminalLine>,
    max_lines: usize,
    last_seen: Instant,
}

impl Session {
    fn new(max_lines: usize) -> Self {
        Self {
            state: Mutex::new(State {
                tasks: BTreeMap::new(),
                lines: VecDeque::new(),
                max_lines,
                last_seen: Instant::now(),
            }),
            updates: broadcast::channel(UPDATE_BACKLOG).0,
        }
    }

    fn touch(&self) {
        self.state.lock().last_seen = Instant::now();
    }

    fn is_expired(&self, timeout: Duration) -> bool {
        let state = self.state.lock();
        state.tasks.is_empty()
            && self.updates.receiver_count() == 0
            && state.last_seen.elapsed() >= timeout
    }

    fn send(&self, update: PageUpdate) {
        // No receiver just means no page is open; the state above still has it.
        let _ = self.updates.send(update);
    }

    /// Subscribes to this session's changes. Subscribe before taking the snapshot, so that
    /// nothing falls between them.
    pub fn subscribe(&self) -> broadcast::Receiver<PageUpdate> {
        self.updates.subscribe()
    }

    pub fn snapshot(&self, boot: u64) -> PageUpdate {
        let state = self.state.lock();
        PageUpdate::Snapshot {
            boot,
            server_now_ms: cluster::now_ms(),
            tasks: state.tasks.values().cloned().collect(),
            lines: state.lines.iter().cloned().collect(),
        }
    }

    pub fn owns(&self, task: u64) -> bool {
        self.state.lock().tasks.contains_key(&task)
    }

    pub fn queued(&self, task: QueuedTask) {
        self.state.lock().tasks.insert(task.id, task.clone());
        self.send(PageUpdate::Task(task));
    }

    /// The task is running and `fraction` done; progress never goes backwards.
    pub fn running(&self, id: u64, fraction: f64) {
        let update = {
            let mut state = self.state.lock();
            let Some(task) = state.tasks.get_mut(&id) else {
                return;
            };
            task.status = TaskStatus::Running;
            task.progress = task.progress.max(fraction);
            task.clone()
        };
        self.send(PageUpdate::Task(update));
    }

    /// The task left the queue; its line joins the terminal.
    pub fn done(&self, line: TerminalLine) {
        {
            let mut state = self.state.lock();
            state.tasks.remove(&line.task);
            if state.lines.len() >= state.max_lines {
                state.lines.pop_front();
            }
            state.lines.push_back(line.clone());
        }
        self.send(PageUpdate::Done(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    fn task(id: u64) -> QueuedTask {
        QueuedTask {
            id,
            n: id as i64,
            status: TaskStatus::Queued,
            progress: 0.0,
            submitted_at_ms: 0,
        }
    }

    fn line(task: u64) -> TerminalLine {
        TerminalLine {
            task,
            outcome: Outcome::Finished,
            text: format!("line {task}"),
        }
    }

    #[test]
    fn sessions_are_separate() {
        let sessions = Sessions::new(SessionConfig::default());
        let a = sessions.get_or_create(&SessionId("a".into()));
        let b = sessions.get_or_create(&SessionId("b".into()));
        a.queued(task(1));
        assert!(a.owns(1) && !b.owns(1));
        let PageUpdate::Snapshot { tasks, .. } = b.snapshot(0) else {
            unreachable!()
        };
        assert!(tasks.is_empty());
    }

    #[test]
    fn the_terminal_keeps_only_the_newest_lines() {
        let session = Session::new(3);
        for id in 0..5 {
            session.queued(task(id));
            session.done(line(id));
        }
        let PageUpdate::Snapshot { tasks, lines, .. } = session.snapshot(0) else {
            unreachable!()
        };
        assert!(tasks.is_empty());
        let kept: Vec<u64> = lines.iter().map(|l| l.task).collect();
        assert_eq!(kept, [2, 3, 4]);
    }

    #[test]
    fn only_idle_sessions_without_work_or_pages_expire() {
        let sessions = Sessions::new(SessionConfig {
            idle_timeout: Duration::ZERO,
            max_lines: 10,
        });
        let busy = sessions.get_or_create(&SessionId("busy".into()));
        busy.queued(task(1));
        let watched = sessions.get_or_create(&SessionId("watched".into()));
        let _page = watched.subscribe();
        sessions.get_or_create(&SessionId("idle".into()));
        assert_eq!(sessions.expire_idle(), 1);
        assert_eq!(sessions.len(), 2);
    }

    #[test]
    fn progress_only_rises_and_marks_the_task_running() {
        let session = Session::new(10);
        session.queued(task(1));
        let mut updates = session.subscribe();
        session.running(1, 0.5);
        session.running(1, 0.25);
        session.running(99, 0.5); // not this session's task: ignored
        for expected in [0.5, 0.5] {
            let Ok(PageUpdate::Task(t)) = updates.try_recv() else {
                panic!("expected a task update")
            };
            assert_eq!((t.status, t.progress), (TaskStatus::Running, expected));
        }
        assert!(updates.try_recv().is_err());
    }
}

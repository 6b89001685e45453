//! Browser sessions: each owns its task queue, the last lines of its results terminal and what
//! each task type's form offers it next, and fans its changes out to the session's open pages.
//!
//! A session exists only once it has submitted something: reading a page, opening the live
//! stream or cancelling cost nothing and leave nothing behind, so minting cookies cannot fill
//! memory. Every axis is bounded: sessions in all (the longest idle is evicted first), lines
//! per session, and updates a slow page may fall behind by. What a session holds is also in the
//! [`Store`], written before the page is told, so it survives a restart.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock, so that tests can move it instead of sleeping.
use tokio::time::Instant;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::ssr::SessionId;
use crate::ssr::store::{SavedSession, SavedTask, Store, Write};
use model::page::{PageUpdate, QueuedTask, TaskPageView, TaskStatus, TerminalLine};

/// How much the sessions may hold, and for how long.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A session with no page open and no unfinished task is forgotten after this long.
    pub idle_timeout: Duration,
    /// Terminal lines kept per session (oldest dropped first).
    pub max_lines: usize,
    /// Sessions held at once; past it the longest idle one is evicted.
    pub max_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            max_lines: 1000,
            max_sessions: 10_000,
        }
    }
}

/// Updates a page may fall behind by before it is sent a fresh snapshot instead.
const UPDATE_BACKLOG: usize = 16;
/// Session creations a waiting stream may miss before it looks its session up again.
const CREATED_BACKLOG: usize = 1024;

/// Every session is busy or watched, and there are already as many as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server already serves {0} sessions, all of them active: try again in a few minutes")]
pub struct SessionsFull(pub usize);

pub struct Sessions {
    map: Mutex<HashMap<SessionId, Arc<Session>>>,
    config: SessionConfig,
    store: Store,
    /// Each new session's id, for streams opened before their session existed.
    created: broadcast::Sender<SessionId>,
    next_task: AtomicU64,
}

impl Sessions {
    /// Sessions backed by `store`; the next task id is `next_task`.
    pub fn new(config: SessionConfig, store: Store, next_task: u64) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            config,
            store,
            created: broadcast::channel(CREATED_BACKLOG).0,
            next_task: AtomicU64::new(next_task),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh task id; ids are never reused, across restarts too.
    pub fn next_task_id(&self) -> u64 {
        self.next_task.fetch_add(1, Ordering::Relaxed)
    }

    /// The session, if it exists; marks it as seen.
    pub fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        let session = self.map.lock().get(id).cloned()?;
        session.touch();
        Some(session)
    }

    /// The session, created when missing. At the cap, the longest idle session without
    /// unfinished work or an open page is evicted to make room; when there is none, refused.
    pub fn get_or_create(&self, id: &SessionId) -> Result<Arc<Session>, SessionsFull> {
        let mut map = self.map.lock();
        if let Some(session) = map.get(id) {
            session.touch();
            return Ok(session.clone());
        }
        if map.len() >= self.config.max_sessions {
            let evict = map
                .iter()
                .filter_map(|(id, s)| s.idle_since().map(|at| (at, id)))
                .min()
                .map(|(_, id)| id.clone())
                .ok_or(SessionsFull(self.config.max_sessions))?;
            map.remove(&evict);
            tracing::info!(sessions = map.len(), "evicted the longest idle session");
            self.store.write_later(Write::Forget { session: evict.0 });
        }
        let session = Arc::new(Session::new(
            id.clone(),
            self.config.max_lines,
            BTreeMap::new(),
        ));
        map.insert(id.clone(), session.clone());
        drop(map);
        let _ = self.created.send(id.clone());
        Ok(session)
    }

    /// New sessions' ids from now on.
    pub fn created(&self) -> broadcast::Receiver<SessionId> {
        self.created.subscribe()
    }

    /// Puts back the sessions saved before a restart. Returns their unfinished tasks, oldest
    /// first, for the caller to run again.
    pub fn restore(&self, saved: Vec<SavedSession>) -> Vec<(Arc<Session>, SavedTask)> {
        let mut rerun = Vec::new();
        let mut map = self.map.lock();
        for saved in saved {
            let id = SessionId(saved.id);
            let session = Arc::new(Session::new(
                id.clone(),
                self.config.max_lines,
                saved.next_inputs,
            ));
            {
                let mut state = session.state.lock();
                let skip = saved.lines.len().saturating_sub(self.config.max_lines);
                state.lines.extend(saved.lines.into_iter().skip(skip));
            }
            rerun.extend(saved.unfinished.into_iter().map(|t| (session.clone(), t)));
            map.insert(id, session);
        }
        rerun.sort_by_key(|(_, saved)| saved.task.id);
        rerun
    }

    /// Forgets sessions that are idle, have nothing running and no page open. Returns how many.
    pub fn expire_idle(&self) -> usize {
        let timeout = self.config.idle_timeout;
        let expired: Vec<SessionId> = {
            let mut map = self.map.lock();
            let expired: Vec<SessionId> = map
                .iter()
                .filter(|(_, s)| s.idle_since().is_some_and(|at| at.elapsed() >= timeout))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                map.remove(id);
            }
            expired
        };
        let count = expired.len();
        self.store.write_all_later(
            expired
                .into_iter()
                .map(|id| Write::Forget { session: id.0 })
                .collect(),
        );
        count
    }

    /// Runs [`Sessions::expire_idle`] every `period`, for ever; `released` runs after each
    /// sweep that forgot something (the server gives freed memory back to the system there).
    pub async fn expire_every(self: Arc<Self>, period: Duration, released: impl Fn()) {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            let expired = self.expire_idle();
            if expired > 0 {
                tracing::info!(expired, left = self.len(), "expired idle sessions");
                released();
            }
        }
    }
}

pub struct Session {
    id: SessionId,
    state: Mutex<State>,
    /// Its changes, numbered (the API's event ids; pages ignore the number).
    updates: broadcast::Sender<(u64, PageUpdate)>,
    /// The last change's number, and the last few kept for an API stream that reconnects
    /// (`Last-Event-ID`).
    journal: Mutex<Journal>,
}

/// A session's numbered changes.
struct Journal {
    /// The last change's number.
    seq: u64,
    /// The last [`JOURNAL_KEPT`] changes, kept once an API stream has been opened (a session
    /// only ever watched by pages keeps none).
    recent: Option<VecDeque<(u64, PageUpdate)>>,
}

/// Changes a session keeps for API streams that reconnect: past them, a reconnecting stream
/// gets a snapshot instead.
pub const JOURNAL_KEPT: usize = 128;

/// Bits of an event id that count a journal's changes; above them, the journal's random
/// epoch, 21 bits so that every id stays below 2^53 (JavaScript's exact integers).
const COUNT_BITS: u32 = 32;
const EPOCH_BITS: u32 = 21;

impl Journal {
    /// A journal numbered from a random epoch: the session held again after a restart, on a
    /// standby that took over, or after an eviction is a new journal, and a `Last-Event-ID`
    /// from the old one must not be taken for one of its changes (it gets a snapshot).
    fn new() -> Self {
        let epoch = u64::from(getrandom::u32().unwrap_or_default()) & ((1 << EPOCH_BITS) - 1);
        Self {
            seq: epoch << COUNT_BITS,
            recent: None,
        }
    }
}

/// What an API stream resumes with.
pub enum Resume {
    /// Every change after the one it saw, in order.
    Changes(Vec<(u64, PageUpdate)>),
    /// It saw nothing yet, or fell too far behind: the queue as it is, numbered as of `seq`.
    Snapshot(u64, Vec<QueuedTask>),
}

struct State {
    tasks: BTreeMap<u64, Entry>,
    /// Its open batches' rows in the queue, by batch id: one each, however many members.
    batches: BTreeMap<u64, QueuedTask>,
    lines: VecDeque<TerminalLine>,
    max_lines: usize,
    /// What each task type's form offers next, by type name.
    next_inputs: BTreeMap<String, Value>,
    last_seen: Instant,
}

struct Entry {
    task: QueuedTask,
    /// The cluster's id for it, for cancelling.
    cluster: u64,
    /// Once it runs (this server's clock: the worker's is recorded when it ends).
    started_at_ms: Option<u64>,
}

impl Session {
    fn new(id: SessionId, max_lines: usize, next_inputs: BTreeMap<String, Value>) -> Self {
        Self {
            id,
            state: Mutex::new(State {
                tasks: BTreeMap::new(),
                batches: BTreeMap::new(),
                lines: VecDeque::new(),
                max_lines,
                next_inputs,
                last_seen: Instant::now(),
            }),
            updates: broadcast::channel(UPDATE_BACKLOG).0,
            journal: Mutex::new(Journal::new()),
        }
    }

    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// Marks the session as active now: a request, a result, a page closing.
    pub fn touch(&self) {
        self.state.lock().last_seen = Instant::now();
    }

    /// When it became idle, if it is: nothing unfinished and no page open.
    fn idle_since(&self) -> Option<Instant> {
        if self.id.is_token() {
            return None;
        }
        let state = self.state.lock();
        (state.tasks.is_empty() && state.batches.is_empty() && self.updates.receiver_count() == 0)
            .then_some(state.last_seen)
    }

    fn send(&self, update: PageUpdate) {
        // Numbered and sent under the journal's lock, so that a stream that resumes (below)
        // sees each change exactly once: from the journal or from its receiver.
        let mut journal = self.journal.lock();
        journal.seq += 1;
        let seq = journal.seq;
        if let Some(recent) = journal.recent.as_mut() {
            if recent.len() >= JOURNAL_KEPT {
                recent.pop_front();
            }
            recent.push_back((seq, update.clone()));
        }
        // No receiver just means no page or stream is open; the state above still has it.
        let _ = self.updates.send((seq, update));
    }

    /// Subscribes an API stream to the numbered changes after `last_seen` (its
    /// `Last-Event-ID`): what it missed, or a snapshot when it saw nothing or missed too much.
    pub fn resume(
        &self,
        last_seen: Option<u64>,
    ) -> (Resume, broadcast::Receiver<(u64, PageUpdate)>) {
        let mut journal = self.journal.lock();
        let receiver = self.updates.subscribe();
        let seq = journal.seq;
        let recent = journal.recent.get_or_insert_with(VecDeque::new);
        let oldest = recent.front().map_or(seq + 1, |(n, _)| *n);
        let resume = match last_seen {
            // Every change after it is still kept (or there is none).
            Some(last) if last <= seq && last + 1 >= oldest => {
                Resume::Changes(recent.iter().filter(|(n, _)| *n > last).cloned().collect())
            }
            _ => Resume::Snapshot(
                seq,
                self.state
                    .lock()
                    .tasks
                    .values()
                    .map(|e| e.task.clone())
                    .collect(),
            ),
        };
        (resume, receiver)
    }

    /// Subscribes to this session's changes. Subscribe before taking the snapshot, so that
    /// nothing falls between them.
    pub fn subscribe(&self) -> broadcast::Receiver<(u64, PageUpdate)> {
        self.updates.subscribe()
    }

    /// Its queue (its tasks, then a row per open batch) and terminal (the caller adds the
    /// form).
    pub fn view(&self) -> TaskPageView {
        let state = self.state.lock();
        TaskPageView {
            tasks: (state.tasks.values().map(|e| &e.task))
                .chain(state.batches.values())
                .cloned()
                .collect(),
            lines: state.lines.iter().cloned().collect(),
            ..TaskPageView::default()
        }
    }

    /// Its unfinished tasks, oldest first (not its batches: their members wait in them).
    pub fn unfinished(&self) -> Vec<QueuedTask> {
        let state = self.state.lock();
        state.tasks.values().map(|e| e.task.clone()).collect()
    }

    /// What the form of task type `task` offers this session, if it has submitted one.
    pub fn next_input(&self, task: &str) -> Option<Value> {
        self.state.lock().next_inputs.get(task).cloned()
    }

    pub fn snapshot(&self) -> PageUpdate {
        let view = self.view();
        PageUpdate::Snapshot {
            server_now_ms: cluster::now_ms(),
            tasks: view.tasks,
            lines: view.lines,
        }
    }

    /// One of this session's unfinished tasks as it stands: its status, its progress and when
    /// it started running (as this server heard).
    pub fn standing(&self, task: u64) -> Option<(TaskStatus, f64, Option<u64>)> {
        let state = self.state.lock();
        let entry = state.tasks.get(&task)?;
        Some((entry.task.status, entry.task.progress, entry.started_at_ms))
    }

    /// The cluster's id for one of this session's unfinished tasks.
    pub fn cluster_id(&self, task: u64) -> Option<u64> {
        self.state.lock().tasks.get(&task).map(|e| e.cluster)
    }

    /// A task was accepted (and recorded); its type's form now offers `next_input`.
    pub fn accepted(&self, task: QueuedTask, cluster: u64, next_input: Option<Value>) {
        {
            let mut state = self.state.lock();
            if let Some(next) = next_input {
                state.next_inputs.insert(task.task.clone(), next);
            }
            state.tasks.insert(
                task.id,
                Entry {
                    task: task.clone(),
                    cluster,
                    started_at_ms: None,
                },
            );
        }
        self.send(PageUpdate::Task(task));
    }

    /// The task is running and `fraction` done; progress never goes backwards.
    pub fn running(&self, id: u64, fraction: f64) {
        let update = {
            let mut state = self.state.lock();
            let Some(entry) = state.tasks.get_mut(&id) else {
                return;
            };
            entry.task.status = TaskStatus::Running;
            entry.task.progress = entry.task.progress.max(fraction);
            entry.started_at_ms.get_or_insert_with(cluster::now_ms);
            entry.task.clone()
        };
        self.send(PageUpdate::Task(update));
    }

    /// One of its batches was accepted or changed: `row` is its row in the queue.
    pub fn batch_changed(&self, row: QueuedTask) {
        self.state.lock().batches.insert(row.id, row.clone());
        self.send(PageUpdate::Task(row));
    }

    /// The task (or the batch) left the queue; its line joins the terminal, once.
    pub fn done(&self, line: TerminalLine) {
        {
            let mut state = self.state.lock();
            // A batch ends once (its follower says so), with or without a row before: one
            // whose members all reused earlier results ends before its first row.
            let left = if line.batch {
                state.batches.remove(&line.task);
                !state.lines.iter().any(|l| l.batch && l.task == line.task)
            } else {
                state.tasks.remove(&line.task).is_some()
            };
            if !left {
                return;
            }
            if state.lines.len() >= state.max_lines {
                state.lines.pop_front();
            }
            state.lines.push_back(line.clone());
            state.last_seen = Instant::now();
        }
        self.send(PageUpdate::Done(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::page::Outcome;

    fn task(id: u64) -> QueuedTask {
        QueuedTask {
            id,
            task: "t".into(),
            args: id.to_string(),
            status: TaskStatus::Queued,
            progress: 0.0,
            submitted_at_ms: 0,
            batch: None,
        }
    }

    fn line(task: u64) -> TerminalLine {
        TerminalLine {
            task,
            outcome: Outcome::Finished,
            text: format!("line {task}"),
            image: false,
            batch: false,
        }
    }

    fn sessions(config: SessionConfig) -> (Sessions, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _writer, _, next) = Store::open(dir.path(), "t", Default::default()).unwrap();
        (Sessions::new(config, store, next), dir)
    }

    fn id(name: &str) -> SessionId {
        SessionId(name.into())
    }

    #[tokio::test]
    async fn sessions_are_separate_and_reading_creates_nothing() {
        let (sessions, _dir) = sessions(SessionConfig::default());
        assert!(sessions.get(&id("a")).is_none());
        assert!(sessions.is_empty());
        let a = sessions.get_or_create(&id("a")).unwrap();
        let b = sessions.get_or_create(&id("b")).unwrap();
        a.accepted(task(1), 1, Some(serde_json::json!({"n": 2})));
        assert!(a.cluster_id(1).is_some() && b.cluster_id(1).is_none());
        assert!(b.view().tasks.is_empty());
        assert_eq!(a.next_input("t"), Some(serde_json::json!({"n": 2})));
        assert_eq!(b.next_input("t"), None);
    }

    #[tokio::test]
    async fn the_terminal_keeps_only_the_newest_lines_and_each_result_once() {
        let session = Session::new(id("s"), 3, BTreeMap::new());
        for id in 0..5 {
            session.accepted(task(id), id, None);
            session.done(line(id));
            session.done(line(id)); // a second report of the same task
        }
        let view = session.view();
        assert!(view.tasks.is_empty());
        let kept: Vec<u64> = view.lines.iter().map(|l| l.task).collect();
        assert_eq!(kept, [2, 3, 4]);
    }

    #[tokio::test]
    async fn a_batch_is_one_row_then_one_line_and_keeps_its_session() {
        let (sessions, _dir) = sessions(SessionConfig {
            idle_timeout: Duration::ZERO,
            ..SessionConfig::default()
        });
        let session = sessions.get_or_create(&id("batching")).unwrap();
        // Task 7 and batch 7 are two things.
        session.accepted(task(7), 7, None);
        let row = |counts: &str| QueuedTask {
            batch: Some(counts.into()),
            ..task(7)
        };
        session.batch_changed(row("0 of 3 done"));
        session.batch_changed(row("2 of 3 done"));
        session.done(line(7));
        let view = session.view();
        assert_eq!(view.tasks, vec![row("2 of 3 done")]);
        assert_eq!(sessions.expire_idle(), 0, "a batch is still running");
        let ended = TerminalLine {
            batch: true,
            ..line(7)
        };
        session.done(ended.clone());
        session.done(ended.clone());
        let view = session.view();
        assert!(view.tasks.is_empty());
        assert_eq!(view.lines, vec![line(7), ended]);
        assert!(session.unfinished().is_empty());
    }

    #[tokio::test]
    async fn only_idle_sessions_without_work_or_pages_expire() {
        let (sessions, _dir) = sessions(SessionConfig {
            idle_timeout: Duration::ZERO,
            ..SessionConfig::default()
        });
        let busy = sessions.get_or_create(&id("busy")).unwrap();
        busy.accepted(task(1), 1, None);
        let watched = sessions.get_or_create(&id("watched")).unwrap();
        let _page = watched.subscribe();
        sessions.get_or_create(&id("idle")).unwrap();
        assert_eq!(sessions.expire_idle(), 1);
        assert_eq!(sessions.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_result_arriving_after_the_idle_time_counts_as_activity() {
        let (sessions, _dir) = sessions(SessionConfig {
            idle_timeout: Duration::from_millis(200),
            ..SessionConfig::default()
        });
        let session = sessions.get_or_create(&id("away")).unwrap();
        session.accepted(task(1), 1, None);
        // The page is closed and the task runs longer than the idle time.
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(
            sessions.expire_idle(),
            0,
            "a session with a task running stays"
        );
        session.done(line(1));
        assert_eq!(sessions.expire_idle(), 0, "the result was just recorded");
        assert_eq!(sessions.get(&id("away")).unwrap().view().lines.len(), 1);
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_is_evicted_and_busy_ones_never_are() {
        let (sessions, _dir) = sessions(SessionConfig {
            max_sessions: 2,
            ..SessionConfig::default()
        });
        let old = sessions.get_or_create(&id("old")).unwrap();
        let newer = sessions.get_or_create(&id("newer")).unwrap();
        newer.touch();
        drop((old, newer));
        sessions.get_or_create(&id("third")).unwrap();
        assert!(sessions.get(&id("old")).is_none(), "the longest idle went");
        assert!(sessions.get(&id("newer")).is_some());

        for name in ["newer", "third"] {
            sessions.get(&id(name)).unwrap().accepted(task(1), 1, None);
        }
        assert_eq!(
            sessions.get_or_create(&id("fourth")).err(),
            Some(SessionsFull(2))
        );
    }

    #[tokio::test]
    async fn progress_only_rises_and_marks_the_task_running() {
        let session = Session::new(id("s"), 10, BTreeMap::new());
        session.accepted(task(1), 1, None);
        let mut updates = session.subscribe();
        session.running(1, 0.5);
        session.running(1, 0.25);
        session.running(99, 0.5); // not this session's task: ignored
        for expected in [0.5, 0.5] {
            let Ok((_, PageUpdate::Task(t))) = updates.try_recv() else {
                panic!("expected a task update")
            };
            assert_eq!((t.status, t.progress), (TaskStatus::Running, expected));
        }
        assert!(updates.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_event_id_from_another_copy_of_the_session_is_answered_with_a_snapshot() {
        // The owner's session before a restart (or on the server that died), and again.
        let before = Session::new(id("s"), 10, BTreeMap::new());
        before.resume(None);
        for n in 1..=3 {
            before.accepted(task(n), n, None);
        }
        let (_, mut seen) = before.resume(None);
        before.running(1, 0.5);
        let (last, _) = seen.try_recv().unwrap();

        let after = Session::new(id("s"), 10, BTreeMap::new());
        after.resume(None);
        for n in 4..=9 {
            after.accepted(task(n), n, None);
        }
        let (resume, _) = after.resume(Some(last));
        assert!(
            matches!(resume, Resume::Snapshot(..)),
            "not the other copy's changes taken for the ones missed"
        );
        let (resume, mut updates) = after.resume(None);
        let Resume::Snapshot(seq, _) = resume else {
            panic!("a first stream gets a snapshot");
        };
        after.running(4, 0.5);
        let (next, _) = updates.try_recv().unwrap();
        assert_eq!(next, seq + 1);
        assert!(
            next < 1 << 53,
            "event ids stay integers JavaScript holds exactly"
        );
        let (resume, _) = after.resume(Some(seq));
        assert!(matches!(resume, Resume::Changes(changes) if changes.len() == 1));
    }
}

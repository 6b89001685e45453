//! What goes into the store and comes out of it: the writes it takes, the sessions and tasks it
//! gives back, and what it keeps ([`Retention`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::oneshot;

use cluster::{Binary, Ran};
use model::page::{Outcome, QueuedTask, TerminalLine};

/// What the store keeps of ended tasks, and what it loads at start.
#[derive(Clone)]
pub struct Retention {
    /// Ended tasks leave this long after they ended (None: kept for ever).
    pub max_age: Option<std::time::Duration>,
    /// Most ended tasks kept per owner (a session or a token); the oldest leave first.
    pub per_owner: usize,
    /// Lines of each session's terminal loaded at start.
    pub terminal_lines: usize,
    /// Now, in ms since the Unix epoch: the system's clock, or a test's.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Some(std::time::Duration::from_secs(30 * 86_400)),
            per_owner: 100_000,
            terminal_lines: 1_000,
            clock: Arc::new(cluster::now_ms),
        }
    }
}

/// What one session looked like when the server last stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSession {
    pub id: String,
    /// What each task type's form offers next, by type name.
    pub next_inputs: BTreeMap<String, Value>,
    /// Accepted, not finished: to be run again.
    pub unfinished: Vec<SavedTask>,
    /// Oldest first.
    pub lines: Vec<TerminalLine>,
}

/// An accepted task and its input.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedTask {
    pub task: QueuedTask,
    pub input: Value,
}

/// One task as the record holds it, for its detail page.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: u64,
    pub task_type: String,
    pub input: Value,
    pub args: String,
    pub submitted_at_ms: u64,
    /// Once it ended.
    pub outcome: Option<Outcome>,
    pub line: Option<String>,
    pub output: Option<Value>,
    /// The media type of its binary output, if it has one ([`Store::output`]).
    pub output_media: Option<String>,
    pub finished_at_ms: Option<u64>,
    /// The task it runs again ("Run again", or the API's retry).
    pub retry_of: Option<u64>,
    /// Which worker ran it, when it started, and at which attempt (recorded when it ended).
    pub ran: Option<Ran>,
    /// The task whose result it took instead of running (a batch's member, with reuse).
    pub reused_from: Option<u64>,
    /// The batch it is a member of.
    pub batch: Option<u64>,
}

/// Which of an owner's tasks a list wants, newest first.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Of this type only.
    pub kind: Option<String>,
    /// `Some(Some(o))`: ended as `o`; `Some(None)`: not ended yet.
    pub ended: Option<Option<Outcome>>,
    /// Older than this task id (a cursor).
    pub before: Option<u64>,
    /// Whose input or terminal line contains this text (ASCII letters in any case).
    pub search: Option<String>,
    /// Members of this batch only.
    pub batch: Option<u64>,
    /// A batch's members are listed as one: its first member, for the batch.
    pub fold_batches: bool,
    pub limit: usize,
}

/// One change to the record.
#[derive(Debug, Clone)]
pub enum Write {
    /// A task was accepted for `session`; its type's form now offers `next_input` (a batch's
    /// member leaves the form as it was: None).
    Accepted {
        session: String,
        task: QueuedTask,
        input: Value,
        next_input: Option<Value>,
        /// The task it runs again.
        retry_of: Option<u64>,
        /// The API's `Idempotency-Key` and the SHA-256 of the request it came with.
        idempotency: Option<(String, Vec<u8>)>,
        /// The batch it is a member of, and its index there.
        member: Option<Member>,
        /// What it computes (`TaskType::reuse_key`).
        reuse_key: Option<i64>,
    },
    /// A batch's member took the result of `from`, an ended task of the same owner that
    /// computed the same, instead of running.
    Reused {
        session: String,
        task: QueuedTask,
        member: Member,
        from: u64,
    },
    /// A batch was accepted for `session`: its members are to come, by index.
    Batch(NewBatch),
    /// A batch was cancelled: no member of it is handed to the queue any more.
    BatchCancelled { batch: u64, at_ms: u64 },
    /// A batch's last member ended (or it was cancelled and its last running member ended).
    BatchFinished { batch: u64, at_ms: u64 },
    /// A task ended with this line (and this output, when it produced one, with its bytes
    /// apart).
    Done {
        session: String,
        line: TerminalLine,
        output: Option<Value>,
        binary: Option<Binary>,
        /// Where it ran: its attempt counts the restarts it went through too.
        ran: Option<Ran>,
        /// Server clock, ms since the Unix epoch.
        finished_at_ms: u64,
    },
    /// The session expired or was evicted: its forms' suggestions go (unless a task of it is
    /// unfinished on record: then it came back meanwhile, or its task is to run again after
    /// a restart); its tasks stay on record (its history) until retention removes them.
    Forget { session: String },
    /// Prune what retention no longer keeps, a chunk at a time between other writes.
    Prune,
    /// The server is alive and its writer writes: PostgreSQL's records the time, for the
    /// standbys (see `postgres::writer::Take::WhenFree`); nothing for the SQLite file.
    Beat,
    /// This server serves at `url`: PostgreSQL's record tells the servers standing by, which
    /// forward their requests there; nothing for the SQLite file.
    Announce { url: String },
}

pub(super) struct Op {
    pub(super) write: Option<Write>,
    pub(super) ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// A member's place: its batch, and its index there (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub batch: u64,
    pub index: u64,
    /// The last of the members handed over together: the batch's count of members handed
    /// over moves past it (at a start, past its last member on record too).
    pub last: bool,
}

/// A batch as it is accepted.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: u64,
    pub session: String,
    pub task_type: String,
    /// Its specification, resolved (members are computed from it by index).
    pub spec: Value,
    pub members: u64,
    pub created_at_ms: u64,
    /// The API's `Idempotency-Key` and the SHA-256 of the request it came with.
    pub idempotency: Option<(String, Vec<u8>)>,
    /// The batch whose failed and cancelled members it runs again.
    pub retry_of: Option<u64>,
    /// Its members take earlier results of the same computations instead of running.
    pub reuse: bool,
}

/// A batch as the record holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    pub id: u64,
    pub session: String,
    pub task_type: String,
    pub spec: Value,
    pub members: u64,
    /// Members handed to the queue so far.
    pub fed: u64,
    pub created_at_ms: u64,
    pub cancelled_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// Its ended members, by outcome (in [`Outcome::ALL`]'s order).
    pub ended: [u64; 4],
    /// The batch whose failed and cancelled members it runs again.
    pub retry_of: Option<u64>,
    /// Its members take earlier results of the same computations instead of running.
    pub reuse: bool,
}

/// A batch that was open when the server last stopped, with its members that were handed to
/// the queue and had not ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedBatch {
    pub batch: BatchRecord,
    /// By index.
    pub unfinished: Vec<(u64, SavedTask)>,
}

/// A member of a batch as the record holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub index: u64,
    pub task: TaskRecord,
}

/// The columns both implementations read a task record from, in this order.
pub(super) const TASK_COLUMNS: &str =
    "tasks.id, task_type, tasks.input, args, submitted_at_ms, outcome,
                      tasks.text, output, finished_at_ms, output_media, retry_of, started_at_ms,
                      worker, attempts, reused_from, batch";

/// The columns both implementations read a batch record from, in this order; `ended` counts
/// by outcome from the members' covering index.
pub(super) const BATCH_COLUMNS: &str = "id, session, task_type, spec, members, fed, created_at_ms,
                     cancelled_at_ms, finished_at_ms, retry_of, reuse,
                     (SELECT count(*) FROM tasks WHERE batch = batches.id AND outcome = 'finished'),
                     (SELECT count(*) FROM tasks WHERE batch = batches.id AND outcome = 'failed'),
                     (SELECT count(*) FROM tasks WHERE batch = batches.id AND outcome = 'cancelled'),
                     (SELECT count(*) FROM tasks WHERE batch = batches.id AND outcome = 'lost')";

/// `%text%` for LIKE, its own `%`, `_` and `\` taken literally (with `ESCAPE '\'`).
pub(super) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

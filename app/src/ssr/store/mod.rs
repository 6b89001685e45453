//! The durable record of sessions: what each session's forms offer next, its accepted tasks
//! that have not finished, its finished tasks (terminal line, input and output as JSON), its
//! batches, and the API's tokens. Two implementations stand behind one seam, [`Store`]:
//!
//! - [`sqlite`], an embedded file under the data directory: the default, nothing to install;
//! - [`postgres`], a PostgreSQL database (`--database postgres://…`): the record outlives the
//!   machine, and several app servers share it (one writes; the others forward to it).
//!
//! Each has its own numbered migrations, so a record written by an older build opens in a newer
//! one with everything it held; one conformance suite ([`conformance`]) runs every store test
//! against both.
//!
//! The seam is the same for both: writes arrive on a bounded channel and a writer of each
//! implementation commits them in batches ([`commits`]); a caller that must not go on before
//! its write is durable awaits the write's acknowledgement. Reads go to the implementation's
//! reader. The sessions' state is read once, at start ([`Store::open`], [`Store::connect`]);
//! afterwards the in-memory sessions are the truth and the record follows them. Task records
//! are read on demand (a task's detail, the API, the history).
//!
//! Ended tasks are kept as [`Retention`] says, and pruned by the writer itself: by age in
//! chunks between batches of writes (at start, then whenever [`Store::prune`] asks), and per
//! owner as each task ends past the cap. No request ever waits for a whole pruning pass.

mod commits;
#[cfg(test)]
mod conformance;
mod error;
mod figures;
mod postgres;
mod records;
mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tokens;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

pub use error::StoreError;
pub use figures::Figures;
pub use postgres::follow_writer;
pub use records::{
    BatchRecord, Member, MemberRecord, NewBatch, Retention, SavedBatch, SavedSession, SavedTask,
    TaskFilter, TaskRecord, Write,
};
pub use sqlite::open_shared;

use records::Op;

/// Most writes [`Store::write_when_back`] keeps trying at once: past it, a write is given up
/// (its task runs again after a restart).
pub const MAX_RETRIED: usize = 10_000;
/// Longest wait between two tries of such a write.
const RETRY_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// Tries of such a write before it is given up: about ten minutes of an outage.
const TRIES: u32 = 125;

/// A handle on the writer, and on a reader for task details; cheap to clone. The writer stops
/// when every handle is gone.
#[derive(Clone)]
pub struct Store {
    ops: mpsc::Sender<Op>,
    /// Where reads go.
    reader: Reader,
    /// Kept by the writer.
    figures: Arc<Figures>,
    /// What the writer keeps.
    retention: Retention,
    /// Writes [`Store::write_when_back`] is trying again.
    retrying: Arc<AtomicUsize>,
    /// Turns once another server took the database over (see [`Store::lost`]).
    lost: watch::Receiver<bool>,
}

/// The implementation's reader.
#[derive(Clone)]
enum Reader {
    Sqlite(sqlite::Reader),
    Postgres(postgres::Reader),
}

/// Calls the same read on whichever implementation holds the record.
macro_rules! read {
    ($store:expr, $reader:ident => $read:expr) => {
        match &$store.reader {
            Reader::Sqlite($reader) => $read,
            Reader::Postgres($reader) => $read,
        }
    };
}

/// What an implementation hands the [`Store`] when it opens.
struct Opened<R> {
    reader: R,
    ops: mpsc::Sender<Op>,
    writer: WriterThread,
    saved: Vec<SavedSession>,
    next_task: u64,
    /// Turns when the writer lost the record to another server.
    lost: watch::Receiver<bool>,
}

/// Joins the writer's thread once every [`Store`] handle is dropped, so that nothing queued is
/// lost on a clean exit; then the search indexer's, where there is one.
pub struct WriterThread {
    writer: JoinHandle<()>,
    indexer: Option<JoinHandle<()>>,
}

impl WriterThread {
    pub fn join(self) {
        let _ = self.writer.join();
        if let Some(indexer) = self.indexer {
            // It ends at its next wake-up once nothing holds its mark.
            indexer.thread().unpark();
            let _ = indexer.join();
        }
    }
}

/// A store just opened: its handle, its writer's thread, the sessions on record and the next
/// task id to give.
pub type OpenedStore = (Store, WriterThread, Vec<SavedSession>, u64);

impl Store {
    /// Opens (or creates) `dir/offload.sqlite3`, returns what it holds and starts the writer.
    /// The directory is locked until the writer ends.
    ///
    /// `legacy_type` is the task type of the rows written before task types existed (the
    /// task crate's `FIRST_RELEASE`, never the registry's first: that is only the default).
    pub fn open(
        dir: &Path,
        legacy_type: &str,
        retention: Retention,
    ) -> Result<OpenedStore, StoreError> {
        let figures = Arc::new(Figures::default());
        let opened = sqlite::open(dir, legacy_type, retention.clone(), figures.clone())?;
        Ok(Self::opened(opened, Reader::Sqlite, figures, retention))
    }

    /// Connects to the PostgreSQL database at `url` (migrating it), returns what it holds and
    /// starts the writer. The database is this server's until the writer ends; while another
    /// server writes it, [`StoreError::DatabaseInUse`].
    pub async fn connect(url: &str, retention: Retention) -> Result<OpenedStore, StoreError> {
        Self::connect_as(url, postgres::Take::OrRefuse, retention).await
    }

    /// [`Store::connect`] for a standby: while another server writes the database, waits
    /// (however long) until that server stops or dies, or has not beaten (see
    /// [`Store::beat`]) for `silent_after` — then cuts it off — and takes the database and
    /// reads what it holds.
    pub async fn stand_by(
        url: &str,
        retention: Retention,
        silent_after: Duration,
    ) -> Result<OpenedStore, StoreError> {
        Self::connect_as(url, postgres::Take::WhenFree { silent_after }, retention).await
    }

    /// Says that this server is alive, through its queue of writes: a server on PostgreSQL
    /// calls it every second, or its standby takes it for hung (see [`Store::stand_by`]).
    pub fn beat(&self) {
        if matches!(self.reader, Reader::Postgres(_)) {
            self.write_later(Write::Beat);
        }
    }

    /// Tells the servers standing by (see [`follow_writer`]) that this server serves at `url`
    /// (through the queue of writes, so after the writes before it); nothing for SQLite.
    pub fn announce(&self, url: &str) {
        if matches!(self.reader, Reader::Postgres(_)) {
            self.write_later(Write::Announce {
                url: url.to_owned(),
            });
        }
    }

    async fn connect_as(
        url: &str,
        how: postgres::Take,
        retention: Retention,
    ) -> Result<OpenedStore, StoreError> {
        let figures = Arc::new(Figures::default());
        let opened = postgres::connect(url, how, retention.clone(), figures.clone()).await?;
        Ok(Self::opened(opened, Reader::Postgres, figures, retention))
    }

    /// Resolves once another server has taken the record over (a standby took the database
    /// while this server's connection to it was gone): this server's writes fail from then
    /// on, so it should stop. Never, for the SQLite file.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        if lost.wait_for(|lost| *lost).await.is_err() {
            // The writer ended without losing the record: a clean stop.
            std::future::pending::<()>().await;
        }
    }

    fn opened<R>(
        opened: Opened<R>,
        reader: fn(R) -> Reader,
        figures: Arc<Figures>,
        retention: Retention,
    ) -> OpenedStore {
        let store = Self {
            ops: opened.ops,
            reader: reader(opened.reader),
            figures,
            retention,
            retrying: Arc::default(),
            lost: opened.lost,
        };
        (store, opened.writer, opened.saved, opened.next_task)
    }

    /// Task `id`, if it is `session`'s and still recorded (committed writes only).
    pub async fn task(&self, session: &str, id: u64) -> Result<Option<TaskRecord>, StoreError> {
        read!(self, r => r.task(session, id).await)
    }

    /// The owner of the live token `presented` (see [`tokens`]), if it is one.
    pub async fn token_owner(&self, presented: &str) -> Result<Option<String>, StoreError> {
        match &self.reader {
            Reader::Sqlite(reader) => reader.token_owner(presented),
            Reader::Postgres(reader) => reader.token_owner(presented).await,
        }
    }

    /// The task `session` submitted under `Idempotency-Key` `key`, with its request's hash.
    pub async fn by_idempotency_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        read!(self, r => r.by_idempotency_key(session, key).await)
    }

    /// `session`'s tasks that `filter` wants, newest first, and whether there are more.
    pub async fn tasks(
        &self,
        session: &str,
        filter: TaskFilter,
    ) -> Result<(Vec<TaskRecord>, bool), StoreError> {
        read!(self, r => r.tasks(session, filter).await)
    }

    /// The id of `session`'s newest task on record.
    pub async fn newest_task(&self, session: &str) -> Result<Option<u64>, StoreError> {
        read!(self, r => r.newest_task(session).await)
    }

    /// The binary output of task `id` (media type and bytes), if it is `session`'s.
    pub async fn output(
        &self,
        session: &str,
        id: u64,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        read!(self, r => r.output(session, id).await)
    }

    /// Batch `id`, with its ended members counted by outcome, if it is `session`'s.
    pub async fn batch(&self, session: &str, id: u64) -> Result<Option<BatchRecord>, StoreError> {
        read!(self, r => r.batch(session, id).await)
    }

    /// `session`'s batches older than batch `before`, newest first, and whether there are more.
    pub async fn batches(
        &self,
        session: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<BatchRecord>, bool), StoreError> {
        read!(self, r => r.batches(session, before, limit).await)
    }

    /// Batch `batch`'s members after index `after`, in order, and whether there are more
    /// (the caller has checked whose batch it is).
    pub async fn members(
        &self,
        batch: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<MemberRecord>, bool), StoreError> {
        read!(self, r => r.members(batch, after, limit).await)
    }

    /// The batch `session` submitted under `Idempotency-Key` `key`, with its request's hash.
    pub async fn batch_by_idempotency_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        read!(self, r => r.batch_by_idempotency_key(session, key).await)
    }

    /// The newest task of `session` that finished computing what `key` says (see
    /// `TaskType::reuse_key`), if one is on record.
    pub async fn reusable(&self, session: &str, key: i64) -> Result<Option<u64>, StoreError> {
        read!(self, r => r.reusable(session, key).await)
    }

    /// The batches that were open when the server last stopped (committed writes only), and
    /// the greatest batch id ever given.
    pub async fn open_batches(&self) -> Result<(Vec<SavedBatch>, u64), StoreError> {
        read!(self, r => r.open_batches().await)
    }

    /// Whether the record can be reached now (`/health` asks): the SQLite file, beside the
    /// server, always can; PostgreSQL must answer a query within a second, and still be this
    /// server's to write.
    pub async fn reachable(&self) -> Result<(), StoreError> {
        if *self.lost.borrow() {
            // Reads would work, but a balancer must send nothing here any more.
            return Err(StoreError::Lost);
        }
        match &self.reader {
            Reader::Sqlite(_) => Ok(()),
            Reader::Postgres(reader) => reader.reachable().await,
        }
    }

    /// The database's size and contents, as of the writer's last write.
    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// What the store keeps of ended tasks.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Has the writer prune what retention no longer keeps (it also does at start): returns
    /// once the first chunk (1,000 tasks) is gone; the rest go a chunk at a time
    /// between other writes.
    pub async fn prune(&self) -> Result<(), StoreError> {
        self.write(Write::Prune).await
    }

    /// Queues `write` and returns once it is committed.
    pub async fn write(&self, write: Write) -> Result<(), StoreError> {
        self.send(Some(write)).await
    }

    /// Queues `writes` in order and returns once every one is committed (they go into as few
    /// commits as the writer makes of them, in order).
    pub async fn write_many(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut acks = Vec::with_capacity(writes.len());
        for write in writes {
            let (ack, done) = oneshot::channel();
            self.ops
                .send(Op {
                    write: Some(write),
                    ack: Some(ack),
                })
                .await
                .map_err(|_| StoreError::Stopped)?;
            acks.push(done);
        }
        for done in acks {
            acknowledged(done.await)?;
        }
        Ok(())
    }

    /// Queues `write` without waiting for it (for records whose loss only means a rerun).
    pub fn write_later(&self, write: Write) {
        self.write_all_later(vec![write]);
    }

    /// Queues `writes`, in order, without waiting for them.
    pub fn write_all_later(&self, writes: Vec<Write>) {
        let ops = self.ops.clone();
        tokio::spawn(async move {
            for write in writes {
                let op = Op {
                    write: Some(write),
                    ack: None,
                };
                if ops.send(op).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Keeps trying `write`, which could not be committed (the database is out of reach), until
    /// it is: every 0.2 s at first, then less often, up to every 5 s; given up when the store
    /// stops, or after about ten minutes. False, and nothing tried, when [`MAX_RETRIED`]
    /// writes are waiting already.
    pub fn write_when_back(&self, write: Write) -> bool {
        if self.retrying.fetch_add(1, Ordering::Relaxed) >= MAX_RETRIED {
            self.retrying.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        // A weak handle: a write waiting for the database never keeps the writer from ending.
        let ops = self.ops.downgrade();
        let retrying = self.retrying.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(200);
            for _ in 0..TRIES {
                tokio::time::sleep(wait).await;
                let Some(ops) = ops.upgrade() else { break };
                let (ack, done) = oneshot::channel();
                let op = Op {
                    write: Some(write.clone()),
                    ack: Some(ack),
                };
                if ops.send(op).await.is_err() {
                    break;
                }
                drop(ops);
                match acknowledged(done.await) {
                    Ok(()) => break,
                    Err(StoreError::Stopped) => break,
                    Err(_) => wait = (wait * 2).min(RETRY_AT_MOST_EVERY),
                }
            }
            retrying.fetch_sub(1, Ordering::Relaxed);
        });
        true
    }

    /// Returns once everything queued before it is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.send(None).await
    }

    async fn send(&self, write: Option<Write>) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.ops
            .send(Op {
                write,
                ack: Some(ack),
            })
            .await
            .map_err(|_| StoreError::Stopped)?;
        acknowledged(done.await)
    }
}

/// What a write's acknowledgement says.
fn acknowledged(
    ack: Result<Result<(), String>, oneshot::error::RecvError>,
) -> Result<(), StoreError> {
    match ack {
        Ok(Ok(())) => Ok(()),
        // The writer has logged why.
        Ok(Err(message)) => Err(StoreError::Unrecorded(message)),
        Err(_) => Err(StoreError::Stopped),
    }
}

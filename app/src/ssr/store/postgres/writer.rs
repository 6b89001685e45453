//! The PostgreSQL writer: one connection, on a thread and runtime of its own, that commits the
//! queued writes in batches as the SQLite writer does ([`crate::ssr::store::commits`]), prunes
//! between them and keeps the figures.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Statement};

use cluster::Binary;

use super::{StoreError, WRITING, open_migrated, target};
use crate::ssr::store::commits::{self, PRUNE_CHUNK};
use crate::ssr::store::figures::Figures;
use crate::ssr::store::records::{Op, Retention, Write};

/// How often, and how far apart, a starting server tries to take the database.
const LOCK_TRIES: u32 = 10;
const LOCK_RETRY: Duration = Duration::from_millis(200);
/// How long a standby waits before it connects again after the database went.
const STANDBY_RETRY: Duration = Duration::from_secs(1);
/// How often an idle writer checks that its connection, and so the database, is still its.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How a starting server takes the database from another that writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Refused while another server writes it (after a short wait for a killed one's
    /// connection to go).
    OrRefuse,
    /// A standby: waits until the server that writes it stops or dies, or has not beaten for
    /// this long (it hangs, or its process was stopped): then it ends that server's
    /// connection, which releases the database.
    WhenFree { silent_after: Duration },
}

/// Records that the writing server is alive (see [`Take::WhenFree`]): at its start, and then
/// every second through the queue of writes (`Write::Beat`), so that a server whose runtime or
/// writer is stuck stops beating.
const BEAT: &str = "UPDATE meta SET value = (extract(epoch FROM clock_timestamp()) * 1000)::bigint
                     WHERE key = 'writer_beat_ms'";

/// The connection that holds the database, if its server has not beaten for `$2` ms and the
/// connection is older than that (so that a server that took the database a moment ago, and
/// has yet to beat, is never taken for a silent one).
const SILENT_HOLDER: &str = "
    SELECT l.pid, (extract(epoch FROM clock_timestamp()) * 1000)::bigint - m.value
      FROM pg_locks l
      JOIN pg_stat_activity a ON a.pid = l.pid
      JOIN meta m ON m.key = 'writer_beat_ms'
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
       AND a.backend_start < clock_timestamp() - make_interval(secs => $2::bigint / 1000.0)
       AND m.value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $2";

/// How long a standby waits on the database's lock before it looks at the writer's heartbeat.
const LOOK_EVERY: &str = "SET lock_timeout = '1s'";
/// The database's size is read at most this often (it sums the files' sizes).
const MEASURE_EVERY: Duration = Duration::from_secs(1);

/// One statement of a commit, with its parameters owned, so that a whole commit's statements
/// are sent at once.
struct Step {
    sql: &'static str,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

/// What a write adds to the figures once its commit is made: by its steps' row counts.
#[derive(Clone, Copy)]
enum Counts {
    /// Nothing to count.
    Nothing,
    /// A new task row (0 when it was recorded already).
    Added,
    /// Ended tasks the per-owner cap deleted.
    Trimmed,
}

fn step(sql: &'static str, params: Vec<Box<dyn ToSql + Sync + Send>>) -> Step {
    Step { sql, params }
}

/// Statements prepared once on the writer's connection, by their text.
#[derive(Default)]
struct Prepared(HashMap<&'static str, Statement>);

impl Prepared {
    /// Runs `steps` in one transaction, sent in one go (pipelined: `BEGIN`, every statement and
    /// `COMMIT` in one round trip once the statements are prepared): their row counts, in order.
    /// A failed statement aborts the transaction, and so the `COMMIT` rolls it back.
    /// Then reads the count of owners, in the same round trip, so that the figures are the
    /// commit's when its writers hear back.
    async fn commit(
        &mut self,
        client: &Client,
        steps: &[Step],
    ) -> Result<Committed, tokio_postgres::Error> {
        for sql in steps.iter().map(|step| step.sql).chain([OWNERS]) {
            if !self.0.contains_key(sql) {
                let statement = client.prepare(sql).await?;
                self.0.insert(sql, statement);
            }
        }
        let statements = &self.0;
        let begin = client.batch_execute("BEGIN");
        let runs = futures::future::join_all(steps.iter().map(|step| {
            client.execute_raw(
                &statements[step.sql],
                step.params.iter().map(|p| &**p as &(dyn ToSql + Sync)),
            )
        }));
        let commit = client.batch_execute("COMMIT");
        let owners = client.query_opt(&statements[OWNERS], &[]);
        let (began, ran, committed, owners) = futures::join!(begin, runs, commit, owners);
        let rows = began.and_then(|()| ran.into_iter().collect::<Result<Vec<u64>, _>>());
        if rows.is_err() {
            // The COMMIT has rolled an aborted transaction back; should one be open still
            // (a statement that never left this process), it goes too.
            let _ = client.batch_execute("ROLLBACK").await;
        }
        let rows = rows?;
        committed?;
        let owners = owners?.map(|row| row.get::<_, i64>(0).max(0) as u64);
        Ok(Committed { rows, owners })
    }
}

/// The count of owners with ended tasks (kept by a trigger).
const OWNERS: &str = "SELECT value FROM meta WHERE key = 'owners'";

/// What a commit did: each statement's row count, in order, and the count of owners after it.
struct Committed {
    rows: Vec<u64>,
    owners: Option<u64>,
}

impl Committed {
    fn count_owners(&self, figures: &Figures) {
        if let Some(owners) = self.owners {
            figures.owners.store(owners, Relaxed);
        }
    }
}

pub(super) struct Writer {
    /// Where to connect again should the connection go (a restart of the database).
    config: Config,
    client: Client,
    prepared: Prepared,
    retention: Retention,
    figures: Arc<Figures>,
    /// Rows by age remain to be pruned.
    pruning: bool,
    /// When the database's size was last read.
    measured: Option<Instant>,
    /// Turns when another server has taken the database (a standby took over while this
    /// one's connection was gone): this writer writes no more.
    lost: watch::Sender<bool>,
}

/// This writer's connection went, and another server's writer holds the database now.
struct Lost;

/// What connecting again found.
enum Reconnected {
    /// The database is this server's again.
    Back,
    /// The database is still out of reach.
    OutOfReach(StoreError),
    /// Another server took the database meanwhile.
    Lost,
}

/// Ends the connection that holds the database when its server has been silent for longer
/// than `silent_after`: the lock goes with it, and the standby takes it next.
async fn cut_off_if_silent(client: &Client, silent_after: Duration) -> Result<(), StoreError> {
    let silent_ms = silent_after.as_millis() as i64;
    if let Some(row) = client
        .query_opt(SILENT_HOLDER, &[&WRITING, &silent_ms])
        .await?
    {
        let (pid, silent_for): (i32, i64) = (row.get(0), row.get(1));
        tracing::warn!(
            silent_s = silent_for as f64 / 1e3,
            "the server that writes the database has not beaten for too long (hung, or stopped): cutting it off, and taking over"
        );
        client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await?;
    }
    Ok(())
}

impl Writer {
    /// Connects, migrates and takes the database for this server (or says who has it), then
    /// counts what it holds and prunes a first chunk.
    pub(super) async fn start(
        config: &Config,
        how: Take,
        retention: Retention,
        figures: Arc<Figures>,
        lost: watch::Sender<bool>,
    ) -> Result<Self, StoreError> {
        let client = match how {
            Take::OrRefuse => Self::take(config).await?,
            Take::WhenFree { silent_after } => Self::take_when_free(config, silent_after).await?,
        };
        let mut writer = Self {
            config: config.clone(),
            client,
            prepared: Prepared::default(),
            retention,
            figures,
            // Once at start: a server that was down for a while has ages to catch up on.
            pruning: true,
            measured: None,
            lost,
        };
        writer.recount().await?;
        // The first chunk before the server answers: what it shows at start is already pruned.
        writer.prune_chunk().await;
        Ok(writer)
    }

    /// Connects, migrates and takes the database for this server. A server that was just
    /// killed holds it until its backend sees the connection gone: this tries for a little
    /// while before it says the database is in use.
    async fn take(config: &Config) -> Result<Client, StoreError> {
        let client = open_migrated(config).await?;
        let mut tries = 0;
        while !client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITING])
            .await?
            .get::<_, bool>(0)
        {
            tries += 1;
            if tries == LOCK_TRIES {
                return Err(StoreError::DatabaseInUse {
                    target: target(config),
                });
            }
            tokio::time::sleep(LOCK_RETRY).await;
        }
        client.execute(BEAT, &[]).await?;
        Ok(client)
    }

    /// A standby's start: waits until no other server writes the database, then takes it.
    /// While the database is out of reach it tries again every [`STANDBY_RETRY`]; what is
    /// not about reaching it (a schema a newer build wrote) ends the wait. Every second of
    /// waiting it looks at the writer's heartbeat, and cuts off a writer silent for longer
    /// than `silent_after`.
    async fn take_when_free(config: &Config, silent_after: Duration) -> Result<Client, StoreError> {
        let mut said = false;
        loop {
            let waited = async {
                let client = open_migrated(config).await?;
                client.batch_execute(LOOK_EVERY).await?;
                loop {
                    match client
                        .query_one("SELECT pg_advisory_lock($1)", &[&WRITING])
                        .await
                    {
                        Ok(_) => break,
                        Err(error) if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                            if !said {
                                tracing::info!(
                                    database = %target(config),
                                    "standing by: another server writes this database; this one takes over when it stops"
                                );
                                said = true;
                            }
                            cut_off_if_silent(&client, silent_after).await?;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
                client.batch_execute("RESET lock_timeout").await?;
                client.execute(BEAT, &[]).await?;
                Ok::<_, StoreError>(client)
            };
            match waited.await {
                Ok(client) => {
                    if said {
                        tracing::info!("taking over: this server writes the database now");
                    }
                    return Ok(client);
                }
                Err(error @ (StoreError::Connect { .. } | StoreError::Postgres(_))) => {
                    tracing::warn!(%error, "standing by: the database is out of reach");
                    tokio::time::sleep(STANDBY_RETRY).await;
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Connects again after the connection went (the database restarted, or an operator
    /// ended it), taking the database again. Should another server have taken it meanwhile
    /// (a standby), this one has lost it: it says so, and writes no more.
    async fn reconnect(&mut self) -> Reconnected {
        match Self::take(&self.config).await {
            Ok(client) => {
                self.client = client;
                self.prepared = Prepared::default();
                tracing::info!("connected to the database again");
                Reconnected::Back
            }
            Err(StoreError::DatabaseInUse { target }) => {
                tracing::error!(
                    database = %target,
                    "another server took the database over while this one's connection was gone: this server writes no more"
                );
                self.lost.send_replace(true);
                Reconnected::Lost
            }
            Err(error) => Reconnected::OutOfReach(error),
        }
    }

    /// Between writes: connects again should the connection have gone, so that a server
    /// that lost the database says so at once rather than at its next write.
    async fn check(&mut self) -> Result<(), Lost> {
        if !self.client.is_closed() {
            return Ok(());
        }
        match self.reconnect().await {
            Reconnected::Lost => Err(Lost),
            // Out of reach: the next check, or the next write, tries again.
            Reconnected::Back | Reconnected::OutOfReach(_) => Ok(()),
        }
    }

    /// Counts the rows once (at start, and should a transaction fail).
    async fn recount(&mut self) -> Result<(), tokio_postgres::Error> {
        let tasks: i64 = self
            .client
            .query_one("SELECT count(*) FROM tasks", &[])
            .await?
            .get(0);
        self.figures.tasks.store(tasks as u64, Relaxed);
        let owners: i64 = self.client.query_one(OWNERS, &[]).await?.get(0);
        self.figures.owners.store(owners.max(0) as u64, Relaxed);
        self.measured = None;
        self.measure().await;
        Ok(())
    }

    /// The bytes in use, now and then.
    async fn measure(&mut self) {
        if self.measured.is_some_and(|at| at.elapsed() < MEASURE_EVERY) {
            return;
        }
        self.measured = Some(Instant::now());
        if let Ok(row) = self
            .client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
        {
            self.figures
                .bytes
                .store(row.get::<_, i64>(0).max(0) as u64, Relaxed);
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut last_commit = Instant::now();
        let mut last_writes = 0;
        loop {
            let first = if self.pruning {
                match rx.try_recv() {
                    Ok(op) => op,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.prune_chunk().await;
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match tokio::time::timeout(CHECK_EVERY, rx.recv()).await {
                    Ok(Some(op)) => op,
                    Ok(None) => break,
                    Err(_) => match self.check().await {
                        Ok(()) => continue,
                        Err(Lost) => return,
                    },
                }
            };
            if let Some(wait) = commits::pause(last_commit, last_writes) {
                tokio::time::sleep(wait).await;
            }
            let batch = commits::gather(first, &mut rx);
            last_writes = batch.len();
            let started = Instant::now();
            let result = if self.client.is_closed() {
                match self.reconnect().await {
                    Reconnected::Back => self.apply(&batch).await.map_err(|e| e.to_string()),
                    Reconnected::OutOfReach(error) => Err(error.to_string()),
                    Reconnected::Lost => {
                        // Its writers hear that it was not recorded; later ones find the
                        // writer gone.
                        commits::acknowledge(
                            batch,
                            Err("another server writes the database now".into()),
                            Duration::ZERO,
                        );
                        return;
                    }
                }
            } else {
                self.apply(&batch).await.map_err(|e| e.to_string())
            };
            last_commit = Instant::now();
            if result.is_err()
                && let Err(error) = self.recount().await
            {
                tracing::error!(%error, "could not count the session records again");
            }
            if batch
                .iter()
                .any(|op| matches!(op.write, Some(Write::Prune)))
            {
                // Its caller hears back once the first chunk is gone.
                self.prune_chunk().await;
            }
            commits::acknowledge(batch, result, last_commit - started);
            // After the callers heard back: a read of the database's size is a round trip.
            self.measure().await;
        }
        // Released now, not once the server notices the connection gone: the next server
        // (a restart) takes it at once.
        if let Err(error) = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&WRITING])
            .await
        {
            tracing::warn!(%error, "could not release the database");
        }
    }

    /// Deletes up to [`PRUNE_CHUNK`] tasks that ended longer ago than retention keeps; pruning
    /// goes on (between writes) while chunks come back full.
    async fn prune_chunk(&mut self) {
        let Some(max_age) = self.retention.max_age else {
            self.pruning = false;
            return;
        };
        let cutoff = (self.retention.clock)().saturating_sub(max_age.as_millis() as u64) as i64;
        let steps = [
            remember_last_ids(None),
            step(
                "DELETE FROM tasks WHERE id IN
                   (SELECT id FROM tasks WHERE done_seq IS NOT NULL AND finished_at_ms < $1
                    ORDER BY finished_at_ms LIMIT $2)",
                vec![Box::new(cutoff), Box::new(PRUNE_CHUNK as i64)],
            ),
            // A batch with no member on record (cancelled before any was handed over) goes
            // by its own age; the others go with their last member.
            step(
                "DELETE FROM batches WHERE finished_at_ms < $1
                   AND NOT EXISTS (SELECT 1 FROM tasks WHERE batch = batches.id)",
                vec![Box::new(cutoff)],
            ),
        ];
        let pruned = self
            .prepared
            .commit(&self.client, &steps)
            .await
            .map(|committed| {
                committed.count_owners(&self.figures);
                committed.rows[1] as usize
            });
        self.pruning = commits::chunk_pruned(pruned, &self.figures);
    }

    async fn apply(&mut self, batch: &[Op]) -> Result<(), tokio_postgres::Error> {
        let mut steps = Vec::new();
        let mut counts = Vec::new();
        for write in batch.iter().filter_map(|op| op.write.as_ref()) {
            for (step, count) in steps_of(write, &self.retention) {
                steps.push(step);
                counts.push(count);
            }
        }
        if steps.is_empty() {
            return Ok(());
        }
        let committed = self.prepared.commit(&self.client, &steps).await?;
        committed.count_owners(&self.figures);
        let (mut added, mut trimmed) = (0, 0);
        for (count, rows) in counts.into_iter().zip(committed.rows) {
            match count {
                Counts::Nothing => {}
                Counts::Added => added += rows,
                Counts::Trimmed => trimmed += rows,
            }
        }
        self.figures.tasks.fetch_add(added, Relaxed);
        self.figures.count_pruned(trimmed as usize);
        Ok(())
    }
}

/// The statements of `write`, and what each one's row count means.
fn steps_of(write: &Write, retention: &Retention) -> Vec<(Step, Counts)> {
    let id = |n: u64| -> Box<dyn ToSql + Sync + Send> { Box::new(n as i64) };
    let text = |t: &str| -> Box<dyn ToSql + Sync + Send> { Box::new(t.to_owned()) };
    match write {
        Write::Accepted {
            session,
            task,
            input,
            next_input,
            retry_of,
            idempotency,
            member,
            reuse_key,
        } => {
            let mut steps = Vec::new();
            if let Some(next_input) = next_input {
                steps.push((
                    step(
                        "INSERT INTO sessions (id, next_inputs)
                         VALUES ($1, jsonb_build_object($2::text, $3::text::jsonb))
                         ON CONFLICT (id) DO UPDATE
                         SET next_inputs = sessions.next_inputs || excluded.next_inputs",
                        vec![
                            text(session),
                            text(&task.task),
                            Box::new(next_input.to_string()),
                        ],
                    ),
                    Counts::Nothing,
                ));
            }
            steps.push((
                step(
                    // Any conflict: the same task recorded again, or an Idempotency-Key taken.
                    "INSERT INTO tasks (id, session, task_type, input, args, submitted_at_ms,
                                        retry_of, idempotency_key, request_sha256, batch, member,
                                        reuse_key)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT DO NOTHING",
                    vec![
                        id(task.id),
                        text(session),
                        text(&task.task),
                        Box::new(input.to_string()),
                        text(&task.args),
                        id(task.submitted_at_ms),
                        Box::new(retry_of.map(|id| id as i64)),
                        Box::new(idempotency.as_ref().map(|(key, _)| key.clone())),
                        Box::new(idempotency.as_ref().map(|(_, hash)| hash.clone())),
                        Box::new(member.map(|m| m.batch as i64)),
                        Box::new(member.map(|m| m.index as i64)),
                        Box::new(*reuse_key),
                    ],
                ),
                Counts::Added,
            ));
            if let Some(member) = member.filter(|m| m.last) {
                steps.push((fed(member.batch, member.index), Counts::Nothing));
            }
            steps
        }
        Write::Done {
            session,
            line,
            output,
            binary,
            ran,
            finished_at_ms,
        } => {
            let cap = Box::new(retention.per_owner as i64);
            vec![
                (
                    // Once, however often it ran (`done_seq IS NULL`); the trigger counts it.
                    step(
                        "UPDATE tasks SET done_seq = nextval('done_seq'), outcome = $1, text = $2,
                                          output = $3, finished_at_ms = $4, output_media = $6,
                                          output_data = $7, started_at_ms = $8, worker = $9,
                                          attempts = $10
                         WHERE id = $5 AND done_seq IS NULL",
                        vec![
                            text(line.outcome.name()),
                            text(&line.text),
                            Box::new(output.as_ref().map(Value::to_string)),
                            id(*finished_at_ms),
                            id(line.task),
                            Box::new(binary.as_ref().map(|b| Binary::media_type(b).to_owned())),
                            Box::new(binary.as_ref().map(|b| Binary::bytes(b).to_vec())),
                            Box::new(ran.as_ref().map(|ran| ran.started_at_ms as i64)),
                            Box::new(ran.as_ref().map(|ran| ran.worker.clone())),
                            Box::new(ran.as_ref().map(|ran| ran.attempt as i64)),
                        ],
                    ),
                    Counts::Nothing,
                ),
                (
                    remember_last_ids(Some((session, retention.per_owner))),
                    Counts::Nothing,
                ),
                (
                    // The owner's oldest ended tasks make room: one per task past the cap.
                    step(
                        "DELETE FROM tasks WHERE id IN
                           (SELECT id FROM tasks WHERE session = $1 AND done_seq IS NOT NULL
                            ORDER BY done_seq
                            LIMIT greatest(coalesce(
                                (SELECT ended FROM owners WHERE session = $1), 0) - $2, 0))",
                        vec![text(session), cap],
                    ),
                    Counts::Trimmed,
                ),
            ]
        }
        Write::Forget { session } => vec![(
            // Only while nothing of it is unfinished on record: the session may have come back
            // (a submission) before this write arrived, and its row is what has its unfinished
            // tasks run again after a restart.
            step(
                "DELETE FROM sessions WHERE id = $1 AND NOT EXISTS
                   (SELECT 1 FROM tasks WHERE session = $1 AND done_seq IS NULL)",
                vec![text(session)],
            ),
            Counts::Nothing,
        )],
        Write::Prune => Vec::new(),
        Write::Beat => vec![(step(BEAT, vec![]), Counts::Nothing)],
        Write::Announce { url } => vec![(
            step("UPDATE writer SET url = $1", vec![text(url)]),
            Counts::Nothing,
        )],
        Write::Reused {
            session,
            task,
            member,
            from,
        } => {
            let mut steps = vec![(
                step(
                    "INSERT INTO tasks (id, session, task_type, input, args, submitted_at_ms,
                                        batch, member, reuse_key, reused_from, done_seq,
                                        outcome, text, output, finished_at_ms, output_media,
                                        output_data, started_at_ms, worker, attempts)
                     SELECT $1, session, task_type, input, args, $2, $3, $4, reuse_key, id,
                            nextval('done_seq'), outcome, text || ' (from #' || id || ')',
                            output, $5, output_media, output_data, started_at_ms, worker,
                            attempts
                     FROM tasks WHERE id = $6 AND session = $7
                     ON CONFLICT DO NOTHING",
                    vec![
                        id(task.id),
                        id(task.submitted_at_ms),
                        id(member.batch),
                        id(member.index),
                        id((retention.clock)()),
                        id(*from),
                        text(session),
                    ],
                ),
                Counts::Added,
            )];
            if member.last {
                steps.push((fed(member.batch, member.index), Counts::Nothing));
            }
            steps
        }
        Write::Batch(batch) => vec![(
            step(
                "INSERT INTO batches (id, session, task_type, spec, members, created_at_ms,
                                      idempotency_key, request_sha256, retry_of, reuse)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT DO NOTHING",
                vec![
                    id(batch.id),
                    text(&batch.session),
                    text(&batch.task_type),
                    Box::new(batch.spec.to_string()),
                    id(batch.members),
                    id(batch.created_at_ms),
                    Box::new(batch.idempotency.as_ref().map(|(key, _)| key.clone())),
                    Box::new(batch.idempotency.as_ref().map(|(_, hash)| hash.clone())),
                    Box::new(batch.retry_of.map(|id| id as i64)),
                    Box::new(batch.reuse),
                ],
            ),
            Counts::Nothing,
        )],
        Write::BatchCancelled { batch, at_ms } => vec![(
            step(
                "UPDATE batches SET cancelled_at_ms = $2
                 WHERE id = $1 AND cancelled_at_ms IS NULL AND finished_at_ms IS NULL",
                vec![id(*batch), id(*at_ms)],
            ),
            Counts::Nothing,
        )],
        Write::BatchFinished { batch, at_ms } => vec![(
            step(
                "UPDATE batches SET finished_at_ms = $2 WHERE id = $1 AND finished_at_ms IS NULL",
                vec![id(*batch), id(*at_ms)],
            ),
            Counts::Nothing,
        )],
    }
}

/// Records the greatest task and batch ids given, before rows are deleted: ids are never
/// given twice, even once the rows that held them are gone (a start gives the next id after
/// the greater of this and what is on record). Only deletions need it, so a commit of new
/// tasks writes none of it: pruning records them always; a task's end only when its owner is
/// past `(owner, cap)` (its oldest tasks are then deleted).
fn remember_last_ids(past_cap: Option<(&str, usize)>) -> Step {
    match past_cap {
        None => step(
            "INSERT INTO meta (key, value)
             SELECT 'last_task_id', (SELECT coalesce(max(id), 0) FROM tasks)
             UNION ALL SELECT 'last_batch_id', (SELECT coalesce(max(id), 0) FROM batches)
             ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value, excluded.value)",
            Vec::new(),
        ),
        Some((owner, cap)) => step(
            "INSERT INTO meta (key, value)
             SELECT * FROM (SELECT 'last_task_id', (SELECT coalesce(max(id), 0) FROM tasks)
                            UNION ALL
                            SELECT 'last_batch_id', (SELECT coalesce(max(id), 0) FROM batches))
                    AS ids (key, value)
             WHERE (SELECT ended FROM owners WHERE session = $1) > $2
             ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value, excluded.value)",
            vec![Box::new(owner.to_owned()), Box::new(cap as i64)],
        ),
    }
}

/// The batch's count of members handed over moves past member `index`.
fn fed(batch: u64, index: u64) -> Step {
    step(
        "UPDATE batches SET fed = greatest(fed, $2) WHERE id = $1",
        vec![Box::new(batch as i64), Box::new(index as i64 + 1)],
    )
}

//! The record in a PostgreSQL database (`--database postgres://…`). The writer is a thread of
//! its own with its own connection, as the SQLite writer is ([`writer`]); reads go through a
//! pool of connections. The server holds a session-level advisory lock on the database while
//! its writer runs: the server's sessions are its memory's (see the module above), so one
//! server writes a database at a time, as one writes a data directory. Others stand by
//! ([`Take::WhenFree`]), and serve meanwhile by forwarding to it ([`follow_writer`]). The
//! lock goes with the writer's connection, so when that server stops or dies (its connection
//! closed, or its silence caught by TCP keepalives) a standby is granted the lock at once,
//! reads the record and serves; when it hangs (its heartbeat, `Write::Beat`, stops), the
//! standby ends its connection first.
//!
//! tokio-postgres (with deadpool-postgres's pool) rather than sqlx: plain SQL as the SQLite
//! side writes it, no macros and no database at compile time, and a lighter build.

mod reads;
mod schema;
#[cfg(test)]
mod tests;
pub(super) mod tokens;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{Client, Config, NoTls};

use super::commits::CHANNEL;
use super::records::{BatchRecord, MemberRecord, Retention, SavedBatch, TaskFilter, TaskRecord};
use super::{Figures, Opened, StoreError, WriterThread};
use schema::Migrated;
pub(crate) use writer::Take;
use writer::Writer;

/// Held by the server whose writer writes the database.
const WRITING: i64 = 0x6f66_666c_6f61_6402;
/// Connections the readers share.
const POOL: usize = 16;
/// Longest a read waits for a connection, or for one to be made.
const WAIT: Duration = Duration::from_secs(5);
/// How often a standby reads where the writing server serves: a takeover is seen this late.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// Longest the database may take to answer a health check.
const HEALTHY_WITHIN: Duration = Duration::from_secs(1);
/// TCP keepalives on both ends of every connection: a server whose machine died (no FIN ever
/// comes) is seen gone after about 5 + 3 × 2 s, and its lock with it, so a standby takes over;
/// and a server learns as soon that its database's machine went.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;

/// The database `config` names, for messages: its hosts, port and name, never its password.
fn target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

fn parse(url: &str) -> Result<Config, StoreError> {
    let mut config = url
        .parse::<Config>()
        .map_err(|source| StoreError::Connect {
            // An unparsable URL may hold a password anywhere: not repeated.
            target: "given".into(),
            source,
        })?;
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES);
    // The database's end, as the session's settings (the URL's own options are kept).
    let server_side = format!(
        "-c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={}",
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        KEEPALIVE_RETRIES
    );
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {server_side}"),
        _ => server_side,
    };
    config.options(options);
    Ok(config)
}

/// Connects to `config`'s database; the connection runs on the current runtime.
async fn open(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|source| StoreError::Connect {
                target: target(config),
                source,
            })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "a database connection ended");
        }
    });
    Ok(client)
}

/// Connects to `config`'s database and migrates it to this build's schema.
async fn open_migrated(config: &Config) -> Result<Client, StoreError> {
    let mut client = open(config).await?;
    match schema::migrate(&mut client).await {
        Ok(Migrated::Current) => Ok(client),
        Ok(Migrated::Newer(version)) => Err(StoreError::NewerDatabase {
            target: target(config),
            version,
            known: schema::known(),
        }),
        Err(source) => Err(StoreError::MigrateDatabase {
            target: target(config),
            source,
        }),
    }
}

/// A connection to `url`'s database, migrated: for the token commands beside a server.
pub(super) async fn connect_migrated(url: &str) -> Result<Client, StoreError> {
    open_migrated(&parse(url)?).await
}

/// Connects to `url`'s database (migrating it), takes it for this server as `how` says, reads
/// what it holds and starts the writer.
pub(super) async fn connect(
    url: &str,
    how: Take,
    retention: Retention,
    figures: Arc<Figures>,
) -> Result<Opened<Reader>, StoreError> {
    let config = parse(url)?;
    let (ops, rx) = mpsc::channel(CHANNEL);
    let (lost, lost_rx) = watch::channel(false);
    let (started, ready) = oneshot::channel();
    let writer_config = config.clone();
    let terminal_lines = retention.terminal_lines;
    let thread = std::thread::Builder::new()
        .name("offload-store".into())
        .spawn(move || {
            // A runtime of its own, as the SQLite writer has a thread of its own: a slow
            // commit never holds up the server's other work.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = started.send(Err(StoreError::Thread(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                match Writer::start(&writer_config, how, retention, figures, lost).await {
                    Ok(writer) => {
                        let _ = started.send(Ok(()));
                        writer.run(rx).await;
                    }
                    Err(error) => {
                        let _ = started.send(Err(error));
                    }
                }
            });
        })
        .map_err(StoreError::Thread)?;
    ready.await.map_err(|_| StoreError::Stopped)??;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(WAIT))
        .create_timeout(Some(WAIT))
        .build()
        .map_err(|error| StoreError::Thread(std::io::Error::other(error)))?;
    let client = pool.get().await?;
    let saved = reads::load(&client, terminal_lines).await?;
    let next_task = reads::last_task_id(&client).await? + 1;
    drop(client);
    Ok(Opened {
        reader: Reader { pool },
        ops,
        writer: WriterThread {
            writer: thread,
            indexer: None,
        },
        saved,
        next_task,
        lost: lost_rx,
    })
}

/// Where the server that writes `url`'s database serves (the URL it announced, see
/// `Store::announce`), read every [`FOLLOW_EVERY`] for as long as the receiver is held: a
/// standby forwards its requests there. `None` until it is first read (the database out of
/// reach, or no server has written it yet); then the last URL read, which may be a writer's
/// that died since, and stays while the database is out of reach (that writer still answers,
/// if only to say the record is out of reach).
pub fn follow_writer(url: &str) -> Result<watch::Receiver<Option<String>>, StoreError> {
    let config = parse(url)?;
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut said = false;
        while !tx.is_closed() {
            let read = async {
                let client = open(&config).await?;
                let statement = client.prepare("SELECT url FROM writer").await?;
                while !tx.is_closed() {
                    let url: String = client.query_one(&statement, &[]).await?.get(0);
                    let url = (!url.is_empty()).then_some(url);
                    tx.send_if_modified(|known| {
                        let changed = *known != url;
                        *known = url;
                        changed
                    });
                    said = false;
                    tokio::time::sleep(FOLLOW_EVERY).await;
                }
                Ok::<_, StoreError>(())
            };
            if let Err(error) = read.await {
                // Also a database not migrated yet (its first server is starting).
                if !said {
                    tracing::warn!(%error, "cannot read where the writing server serves; trying again");
                    said = true;
                }
                tokio::time::sleep(FOLLOW_EVERY * 5).await;
            }
        }
    });
    Ok(rx)
}

/// Reads the PostgreSQL record; cheap to clone.
#[derive(Clone)]
pub(super) struct Reader {
    pool: Pool,
}

impl Reader {
    pub(super) async fn reachable(&self) -> Result<(), StoreError> {
        let answered = tokio::time::timeout(HEALTHY_WITHIN, async {
            let client = self.pool.get().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        });
        answered
            .await
            .unwrap_or(Err(StoreError::Timeout(HEALTHY_WITHIN)))
    }

    pub(super) async fn task(
        &self,
        session: &str,
        id: u64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let client = self.pool.get().await?;
        Ok(reads::task(&client, session, id).await?)
    }

    pub(super) async fn token_owner(&self, presented: &str) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        Ok(tokens::verify(&client, presented).await?)
    }

    pub(super) async fn by_idempotency_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let client = self.pool.get().await?;
        Ok(reads::by_idempotency_key(&client, "tasks", session, key).await?)
    }

    pub(super) async fn tasks(
        &self,
        session: &str,
        filter: TaskFilter,
    ) -> Result<(Vec<TaskRecord>, bool), StoreError> {
        let client = self.pool.get().await?;
        Ok(reads::tasks(&client, session, &filter).await?)
    }

    pub(super) async fn newest_task(&self, session: &str) -> Result<Option<u64>, StoreError> {
        let client = self.pool.get().await?;
        Ok(reads::newest_task(&client, session).await?)
    }

    pub(super) async fn output(
        &self,
        session: &str,
        id: u64,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let client = self.pool.get().await?;
        Ok(reads::output(&client, session, id).await?)
    }

    pub(super) async fn batch(
        &self,
        session: &str,
        id: u64,
    ) -> Result<Option<BatchRecord>, StoreError> {
        let client = self.pool.get().await?;
        Ok(reads::batch(&client, session, id).await?)
    }

    pub(super) async fn batches(
        &self,
        session: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<BatchRecord>, bool), StoreError> {
        let client = self.pool.get().await?;
        Ok(reads::batches(&client, session, before, limit).await?)
    }

    pub(super) async fn members(
        &self,
        batch: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<MemberRecord>, bool), StoreError> {
        let client = self.pool.get().await?;
        Ok(reads::members(&client, batch, after, limit).await?)
    }

    pub(super) async fn batch_by_idempotency_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let client = self.pool.get().await?;
        Ok(reads::by_idempotency_key(&client, "batches", session, key).await?)
    }

    pub(super) async fn reusable(
        &self,
        session: &str,
        key: i64,
    ) -> Result<Option<u64>, StoreError> {
        let client = self.pool.get().await?;
        Ok(reads::reusable(&client, session, key).await?)
    }

    pub(super) async fn open_batches(&self) -> Result<(Vec<SavedBatch>, u64), StoreError> {
        let client = self.pool.get().await?;
        Ok((
            reads::open_batches(&client).await?,
            reads::last_batch_id(&client).await?,
        ))
    }
}

/// Migrates the tests' template database.
#[cfg(any(test, feature = "testing"))]
pub(super) async fn migrate_for_tests(client: &mut Client) {
    match schema::migrate(client).await {
        Ok(Migrated::Current) => {}
        other => panic!("migrating the template: {other:?}"),
    }
}

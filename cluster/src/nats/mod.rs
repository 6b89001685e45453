//! Scale-out on NATS JetStream: workers in other processes, on any machine.
//!
//! The app server keeps what it had with the embedded cluster: its fair queue, the admission
//! caps and the time limit all stay in its [`crate::Scheduler`], and a task is handed to NATS
//! only when admission gives it a slot, so one session's thousand tasks never sit in
//! JetStream in front of another session's one. A slot here is a future awaiting the result,
//! not a thread, and every wait has a deadline. What NATS carries:
//!
//! - **work**: a work-queue stream that every worker pulls from through one durable consumer,
//!   one message per free thread; a message carries one task, or several quick ones handed
//!   over at the same moment. Explicit acks, in-progress acks while a message is worked on,
//!   and redelivery after [`ACK_WAIT`] when a worker dies. The fourth delivery is not run: its
//!   tasks fail as `lost: its worker died 3 times` (Dask's `allowed-failures`);
//! - **results**: a core request to the app server's own subject, answered once the
//!   server has handed them to their tasks; the worker acks the work only then. Results no
//!   one answers within [`RESULT_REQUEST_PATIENCE`] (the server is stopped, restarting or cut
//!   off from NATS) are stored instead in a stream with one durable consumer per app server,
//!   which that server keeps reading: the stream is a mailbox, used only when needed;
//! - **progress** and **cancels**: plain subjects (progress may be dropped; a cancel reaches
//!   every worker, and one that arrives before its task is remembered for a while);
//! - **workers**: a KV bucket where each worker process writes its heartbeat every second,
//!   with a [`WORKER_TTL`] so that a dead one disappears on its own;
//! - **reports**: each app server's figures, once a second, for the cluster's dashboard.
//!
//! Every name starts with a configurable prefix, so deployments can share one NATS.

mod dispatch;
mod observer;
mod server;
mod wire;
mod worker;

use std::time::Duration;

use async_nats::ConnectErrorKind;
use async_nats::jetstream::{self, consumer, kv, stream};

pub use crate::probe::token;
pub use dispatch::{ConnectError, NatsCluster, NatsConfig};
pub use observer::NatsObserver;
pub(crate) use observer::Observer;
pub use server::{LocalNats, ServerError};
pub use wire::{TypeAd, WorkerInfo};
pub(crate) use worker::State as WorkerView;
pub use worker::{NatsWorker, WorkerConfig};

/// A running task must be acknowledged (in-progress acks count) this often, or JetStream
/// gives it to another worker: the time a dead worker's task waits before it runs again.
pub const ACK_WAIT: Duration = Duration::from_secs(5);
/// How often a worker tells JetStream that a message's tasks are still in progress.
const IN_PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Deliveries of one task that may die with their worker before it fails as lost.
pub const MAX_DELIVERIES: i64 = 3;
/// How often a worker writes its heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A worker whose heartbeat is older than this is gone.
pub const WORKER_TTL: Duration = Duration::from_secs(5);
/// How long JetStream remembers message ids, so that a republished task or result is kept once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long an unclaimed result waits for its app server.
const RESULTS_KEPT: Duration = Duration::from_secs(24 * 3600);
/// How long a starting process waits for NATS to answer.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);
/// How long a worker waits for its app server to take results sent as a request before it
/// stores them in the results stream instead.
const RESULT_REQUEST_PATIENCE: Duration = Duration::from_secs(1);
/// Pause between attempts when NATS does not answer.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// Why talking to NATS failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("{0:?} is not a valid NATS name prefix: use letters, digits, '-' and '_'")]
    Prefix(String),
    #[error("{0:?} is not a valid server id: use letters, digits, '-' and '_'")]
    ServerId(String),
    #[error("cannot reach NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(
        "setting up JetStream ({what}) failed: {reason} (is the server started with -js, version 2.10 or later?)"
    )]
    Setup { what: String, reason: String },
}

fn setup_error(what: String, reason: impl std::fmt::Display) -> NatsError {
    NatsError::Setup {
        what,
        reason: reason.to_string(),
    }
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `url` without its password, for logs and messages.
pub fn redacted(url: &str) -> String {
    match url.parse::<async_nats::ServerAddr>() {
        Ok(addr) if addr.password().is_some() => format!(
            "{}://{}:***@{}:{}",
            addr.scheme(),
            addr.username().unwrap_or_default(),
            addr.host(),
            addr.port()
        ),
        _ => url.to_owned(),
    }
}

/// This machine's name, for worker and server names.
pub fn host_name() -> String {
    crate::probe::this_process().host.clone()
}

/// Every stream, subject, consumer and bucket name of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Result<Self, NatsError> {
        if valid_token(prefix) {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(NatsError::Prefix(prefix.to_owned()))
        }
    }

    fn work_stream(&self) -> String {
        format!("{}_work", self.prefix)
    }
    /// Where the tasks for workers of one catalogue (see [`TypeAd::queue`]) wait.
    fn work_subject(&self, queue: &str) -> String {
        format!("{}.work.{queue}", self.prefix)
    }
    fn results_stream(&self) -> String {
        format!("{}_results", self.prefix)
    }
    fn results_subject(&self, server: &str) -> String {
        format!("{}.results.{server}", self.prefix)
    }
    /// Where an app server takes results as core requests (outside the results stream's
    /// subjects: these are not stored).
    fn result_requests_subject(&self, server: &str) -> String {
        format!("{}.result-requests.{server}", self.prefix)
    }
    fn progress_subject(&self, server: &str) -> String {
        format!("{}.progress.{server}", self.prefix)
    }
    fn cancel_subject(&self) -> String {
        format!("{}.cancel", self.prefix)
    }
    fn reports_subject(&self, server: &str) -> String {
        format!("{}.reports.{server}", self.prefix)
    }
    fn workers_bucket(&self) -> String {
        format!("{}_workers", self.prefix)
    }
}

/// A connection with the cluster's streams and bucket in place (created when missing, so any
/// process may start first).
struct Connection {
    client: async_nats::Client,
    js: jetstream::Context,
    names: Names,
    workers: kv::Store,
}

/// A client of the NATS at `url`, waiting up to [`CONNECT_PATIENCE`] for it to answer
/// (processes of a cluster may start in any order); refused credentials fail at once.
async fn connect(url: &str, role: &str) -> Result<async_nats::Client, NatsError> {
    let addr: async_nats::ServerAddr = url.parse().map_err(|e| NatsError::Connect {
        url: redacted(url),
        reason: format!("{e}: expected nats://[USER:PASSWORD@]HOST:PORT"),
    })?;
    // Processes of a cluster may start in any order: wait a while for NATS to come up.
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        let options = match (addr.username(), addr.password()) {
            (Some(user), Some(password)) => {
                async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            }
            _ => async_nats::ConnectOptions::new(),
        };
        let connected = options
            .name(format!("offload {role}"))
            // After the first connection, keep trying for ever: NATS may restart.
            .max_reconnects(None)
            .connect(addr.clone())
            .await;
        let error = match connected {
            Ok(client) => return Ok(client),
            Err(error) => error,
        };
        let refused = matches!(
            error.kind(),
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication
        );
        if refused || tokio::time::Instant::now() >= deadline {
            let tried = if refused {
                String::new()
            } else {
                format!(" (tried for {} s)", CONNECT_PATIENCE.as_secs())
            };
            return Err(NatsError::Connect {
                url: redacted(url),
                reason: format!("{error}{tried}"),
            });
        }
        tracing::warn!(url = %redacted(url), %error, "NATS does not answer yet: retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Connection {
    async fn open(url: &str, names: Names, role: &str) -> Result<Self, NatsError> {
        let client = connect(url, role).await?;
        let js = jetstream::new(client.clone());
        // Created, or updated from a release that had one subject for every worker.
        js.create_or_update_stream(stream::Config {
            name: names.work_stream(),
            subjects: vec![names.work_subject("*")],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .map_err(|e| setup_error(names.work_stream(), e))?;
        js.get_or_create_stream(stream::Config {
            name: names.results_stream(),
            subjects: vec![names.results_subject("*")],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            max_age: RESULTS_KEPT,
            ..Default::default()
        })
        .await
        .map_err(|e| setup_error(names.results_stream(), e))?;
        let bucket = names.workers_bucket();
        let workers = match js.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    history: 1,
                    max_age: WORKER_TTL,
                    storage: stream::StorageType::Memory,
                    ..Default::default()
                })
                .await
                .map_err(|e| setup_error(bucket.clone(), e))?,
        };
        Ok(Self {
            client,
            js,
            names,
            workers,
        })
    }

    /// The durable consumer the workers of catalogue `queue` share: they take only the tasks
    /// of the types they run, with the same input schemas.
    async fn work_consumer(&self, queue: &str) -> Result<consumer::PullConsumer, NatsError> {
        let stream = self
            .js
            .get_stream(self.names.work_stream())
            .await
            .map_err(|e| setup_error(self.names.work_stream(), e))?;
        // A work queue allows one consumer per subject: an earlier release's consumer took
        // every subject. Its tasks were taken or are rerun by their servers.
        let _ = stream.delete_consumer("workers").await;
        let name = format!("workers-{queue}");
        stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.names.work_subject(queue),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| setup_error("the workers' consumer".into(), e))
    }

    /// Publishes `payload` on a stream's `subject` under message id `id` (JetStream keeps a
    /// repeated id once) and waits until JetStream has stored it.
    async fn store(&self, subject: String, payload: bytes::Bytes, id: &str) -> Result<(), String> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(id);
        let ack = self
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map(drop).map_err(|e| e.to_string())
    }

    /// Live workers, from their heartbeats.
    async fn read_workers(&self) -> Result<Vec<WorkerInfo>, async_nats::Error> {
        use futures::StreamExt;
        let mut keys = self.workers.keys().await?;
        let mut found = Vec::new();
        let now = crate::now_ms();
        while let Some(key) = keys.next().await {
            let Some(value) = self.workers.get(key?).await? else {
                continue;
            };
            match serde_json::from_slice::<WorkerInfo>(&value) {
                Ok(info) if now.saturating_sub(info.at_ms) < WORKER_TTL.as_millis() as u64 => {
                    found.push(info);
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "a heartbeat that does not decode"),
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_tokens_keep_to_what_nats_allows() {
        assert!(Names::new("offload").is_ok());
        assert!(Names::new("team-a_2").is_ok());
        for bad in ["", "a.b", "a b", "a*", ">", &"x".repeat(65)] {
            assert!(Names::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(token("my.host name"), "my-host-name");
        assert_eq!(token(""), "x");
        assert_eq!(
            redacted("nats://offload:secret@10.0.0.5:4222"),
            "nats://offload:***@10.0.0.5:4222"
        );
        assert_eq!(redacted("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        let names = Names::new("p").unwrap();
        assert_eq!(names.results_subject("web-1"), "p.results.web-1");
        assert_eq!(
            names.result_requests_subject("web-1"),
            "p.result-requests.web-1"
        );
        assert_eq!(names.workers_bucket(), "p_workers");
    }
}

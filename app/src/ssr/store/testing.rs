//! A throwaway PostgreSQL for the store's tests: Debian's server, started once per test process
//! in a temporary directory (`initdb` as the `postgres` user, since it refuses root; fsync off),
//! ended with the process, and a database per test cloned from a template that holds the
//! schema. `OFFLOAD_TEST_DATABASE_URL` (a URL to a server that lets its user create databases)
//! uses an existing server instead. A missing PostgreSQL fails the tests: `make test` installs
//! it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

/// The server's address without a database, and the template's name.
struct Server {
    base: String,
    template: String,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A new, empty database (no schema) on the tests' server: its URL.
pub async fn empty_database() -> String {
    create("template0").await
}

/// A new database with the store's schema on the tests' server: its URL.
pub async fn database() -> String {
    let server = server().await;
    create(&server.template).await
}

/// Waits (polling, there is no event to wait on) until a server stands by for `url`'s
/// database: a connection waits for its writer's lock. The tests' server holds other tests'
/// databases too, hence the filter.
pub async fn until_one_stands_by(url: &str) {
    let operator = connect(url).await;
    loop {
        let waiting: i64 = operator
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .expect("reading pg_locks")
            .get(0);
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Ends the connection of the server that writes `url`'s database, as a restart of the
/// database or a network partition past the keepalives would: a standby takes it over.
pub async fn cut_the_writer(url: &str) {
    connect(url)
        .await
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks
              WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .expect("ending the writer's connection");
}

async fn create(template: &str) -> String {
    let server = server().await;
    let name = format!(
        "offload_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = connect(&format!("{}/postgres", server.base)).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .await
        .unwrap_or_else(|e| panic!("creating the test database {name}: {e}"));
    format!("{}/{name}", server.base)
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the tests' PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}

async fn server() -> &'static Server {
    SERVER
        .get_or_init(|| async {
            let base = match std::env::var("OFFLOAD_TEST_DATABASE_URL") {
                Ok(url) => url
                    .rsplit_once('/')
                    .map(|(base, _)| base.to_owned())
                    .filter(|base| base.contains("://"))
                    .unwrap_or_else(|| panic!("OFFLOAD_TEST_DATABASE_URL={url} names no database")),
                Err(_) => start(),
            };
            let template = format!("offload_template_{}", std::process::id());
            let admin = ready(&format!("{base}/postgres")).await;
            admin
                .batch_execute(&format!("CREATE DATABASE {template} TEMPLATE template0"))
                .await
                .unwrap_or_else(|e| panic!("creating the template database: {e}"));
            let mut client = connect(&format!("{base}/{template}")).await;
            super::postgres::migrate_for_tests(&mut client).await;
            drop(client);
            Server { base, template }
        })
        .await
}

/// Connects once a fresh server takes connections.
async fn ready(url: &str) -> Client {
    for _ in 0..300 {
        if let Ok((client, connection)) = tokio_postgres::connect(url, NoTls).await {
            tokio::spawn(connection);
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the tests' PostgreSQL does not answer at {url}");
}

/// Debian's server programs: on the PATH, or under /usr/lib/postgresql/<version>/bin.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
    }) {
        return dir;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|dir| dir.join("initdb").is_file());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server is not installed (no initdb): `make test` installs Debian's \
             `postgresql` package, or set OFFLOAD_TEST_DATABASE_URL to use a running server"
        )
    })
}

/// The `postgres` user's ids, when this process runs as root (initdb refuses root).
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam's result is read before any other call
    // that could overwrite it.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let user = libc::getpwnam(c"postgres".as_ptr());
        if user.is_null() {
            panic!("running as root, and there is no `postgres` user to run PostgreSQL as");
        }
        Some(((*user).pw_uid, (*user).pw_gid))
    }
}

/// Starts the process's shared server in a new directory: its base URL. It ends with the
/// process.
fn start() -> String {
    // Never stopped: the thread that waits for it lives until the process ends, and the
    // server is killed then (PR_SET_PDEATHSIG).
    let cluster = Cluster::init("shared");
    cluster.run();
    cluster.base()
}

/// A PostgreSQL server of one test's own, which it may stop and start again (a restart of the
/// database mid-run): the shared server serves the process's other tests meanwhile. Stopped
/// when dropped.
pub struct OwnServer {
    cluster: Cluster,
}

impl OwnServer {
    pub async fn start() -> Self {
        static OWN: AtomicU64 = AtomicU64::new(0);
        let cluster = Cluster::init(&format!("own-{}", OWN.fetch_add(1, Ordering::Relaxed)));
        cluster.run();
        ready(&format!("{}/postgres", cluster.base())).await;
        Self { cluster }
    }

    /// A new, empty database on it: its URL.
    pub async fn database(&self) -> String {
        let name = format!("offload_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let admin = connect(&format!("{}/postgres", self.cluster.base())).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating the test database {name}: {e}"));
        format!("{}/{name}", self.cluster.base())
    }

    /// Stops it (a fast shutdown: its connections are cut) and returns once it has exited.
    pub fn stop(&self) {
        self.cluster.stop();
    }

    /// Starts it again, on the same port and data, and returns once it takes connections.
    pub async fn start_again(&self) {
        self.cluster.run();
        ready(&format!("{}/postgres", self.cluster.base())).await;
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.cluster.stop();
        let _ = std::fs::remove_dir_all(&self.cluster.root);
    }
}

/// A server's directory, port and process.
struct Cluster {
    bin: PathBuf,
    user: Option<(u32, u32)>,
    root: PathBuf,
    port: u16,
    /// The running server's pid, and what says it has exited.
    running: std::sync::Mutex<Option<(u32, std::sync::mpsc::Receiver<()>)>>,
}

impl Cluster {
    /// A new data directory (`initdb`) under the temporary directory, and a free port.
    fn init(name: &str) -> Self {
        let bin = bin_dir();
        let user = postgres_user();
        let root = std::env::temp_dir().join(format!("offload-pg-{}-{name}", std::process::id()));
        remove_stale(&root);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("creating the tests' PostgreSQL directory");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).expect("giving it to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = Self {
            bin,
            user,
            root,
            port,
            running: std::sync::Mutex::new(None),
        };
        let initdb = cluster
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(cluster.root.join("data"))
            .output()
            .expect("running initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        cluster
    }

    fn base(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// `program` of the server's, run as the `postgres` user when this process is root.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(&self.root);
        if let Some((uid, gid)) = self.user {
            std::os::unix::process::CommandExt::uid(&mut command, uid);
            std::os::unix::process::CommandExt::gid(&mut command, gid);
        }
        command
    }

    /// Starts the server; it takes connections a moment later.
    fn run(&self) {
        let mut postgres = self.command("postgres");
        postgres
            .arg("-D")
            .arg(self.root.join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
            ])
            .arg(format!("unix_socket_directories={}", self.root.display()))
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "max_connections=300"])
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.root.join("log"))
                    .expect("its log file"),
            );
        // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut postgres, || {
                // The server ends with the thread that started it: the one below, which lives
                // as long as the server or the test process.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let (started, spawned) = std::sync::mpsc::channel();
        let (exited, exit) = std::sync::mpsc::channel();
        std::thread::spawn(move || match postgres.spawn() {
            Ok(mut child) => {
                let _ = started.send(Ok(child.id()));
                let _ = child.wait();
                let _ = exited.send(());
            }
            Err(error) => {
                let _ = started.send(Err(error));
            }
        });
        let pid = spawned
            .recv()
            .expect("the starting thread")
            .expect("starting postgres");
        *self.running.lock().unwrap() = Some((pid, exit));
    }

    /// A fast shutdown (SIGINT), waited for.
    fn stop(&self) {
        if let Some((pid, exit)) = self.running.lock().unwrap().take() {
            // SAFETY: kill has no memory effects; the pid is the child's, not reaped yet.
            unsafe {
                libc::kill(pid as i32, libc::SIGINT);
            }
            let _ = exit.recv_timeout(Duration::from_secs(30));
        }
    }
}

/// Removes the directories earlier test processes left, once those processes are gone.
fn remove_stale(own: &Path) {
    let Some(parent) = own.parent() else { return };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("offload-pg-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

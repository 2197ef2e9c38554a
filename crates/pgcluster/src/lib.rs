//! Throwaway PostgreSQL clusters for the integration tests and for `cdc-tui --demo`.
//!
//! [`PgCluster::start`] runs `initdb` into a fresh temporary directory, configures the
//! cluster for logical replication (trust authentication on loopback, no fsync) and
//! starts a `postgres` server on a free TCP port of 127.0.0.1, waiting until it accepts
//! connections.
//!
//! Cleanup happens on every path:
//! * [`PgCluster::stop`] shuts the server down gracefully ("fast" mode) and removes the
//!   temporary directory, reporting any failure;
//! * dropping a [`PgCluster`] (for example when a test panics) stops the server
//!   synchronously ("immediate" mode) and removes the temporary directory;
//! * if the process dies without running destructors (a `static` that is never dropped,
//!   `std::process::exit`, a signal, an abort), a small watchdog process that every
//!   cluster starts notices it (its end of a pipe reaches end-of-file, which the kernel
//!   guarantees however the process ends), then stops the server and removes the
//!   temporary directory.
//!
//! PostgreSQL refuses to run as root. When this process runs as root the server
//! binaries (and the watchdog) run as the `postgres` system user instead, and the
//! temporary directory is handed over to that user.
//!
//! # Sharing one cluster across the tests of a test binary
//!
//! A [`PgCluster`] holds no tokio resources (the server is a `std::process::Child`), so
//! one cluster can be shared by tests that each run on their own tokio runtime. Keep it
//! in a `static`; statics are never dropped, and the watchdog removes the server when the
//! test binary exits:
//!
//! ```ignore
//! static CLUSTER: tokio::sync::OnceCell<PgCluster> = tokio::sync::OnceCell::const_new();
//!
//! async fn cluster() -> &'static PgCluster {
//!     CLUSTER
//!         .get_or_init(|| async {
//!             PgCluster::start(ClusterOptions::default())
//!                 .await
//!                 .unwrap_or_else(|error| panic!("{error}"))
//!         })
//!         .await
//! }
//! ```
//!
//! Give every test its own database ([`PgCluster::create_database`] with a unique name)
//! and its own slot and publication names. Do not keep clients in statics: their
//! connection task lives on the runtime of the test that made it. Tests that restart or
//! break the server start their own cluster.

use std::error::Error as StdError;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::NoTls;

/// How many fresh ports [`PgCluster::start`] tries when the chosen port is taken
/// between choosing it and the server binding it.
const PORT_ATTEMPTS: u32 = 5;
/// Lines of the server log quoted in start errors.
const LOG_TAIL_LINES: usize = 40;
/// At most this many bytes from the end of the server log are read for error messages.
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// Delay between two readiness probes while the server starts.
const PROBE_INTERVAL: Duration = Duration::from_millis(25);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a graceful stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the synchronous cleanup in `Drop` waits at each step.
const DROP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `initdb` may take.
const INITDB_TIMEOUT: Duration = Duration::from_secs(180);

/// The superuser created by `initdb`.
pub const SUPERUSER: &str = "postgres";

/// Message appended to errors telling the user how to get a server.
const INSTALL_HINT: &str = "install them with `apt-get install postgresql`, \
or point cdc.toml at an existing database";

/// Shell script of the watchdog process. Its standard input is a pipe whose write end
/// only the owning process holds: a line `disarm` means "the owner cleaned up, exit";
/// end-of-file (the owner died, however) means "stop the server and remove the
/// temporary directory". Arguments: pg_ctl path, data directory, temporary directory.
const WATCHDOG_SCRIPT: &str = r#"IFS= read -r command
if [ "$command" = disarm ]; then exit 0; fi
"$1" stop -D "$2" -m immediate -w -t 30 >/dev/null 2>&1
rm -rf -- "$3"
"#;

/// Errors of [`PgCluster`] and [`find_server_bindir`].
///
/// Every message is complete on its own (causes are included in the text).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found ({searched}); {INSTALL_HINT}"
    )]
    BinariesNotFound {
        /// Where they were looked for.
        searched: String,
    },
    /// Running as root, and there is no `postgres` user to run the server as.
    #[error(
        "running as root, but PostgreSQL refuses to run as root and there is no `postgres` \
         system user in /etc/passwd to run it as; run as an ordinary user, or {INSTALL_HINT}"
    )]
    NoServerUser,
    /// A [`ClusterOptions`] value is unusable.
    #[error("invalid cluster option: {0}")]
    InvalidOption(String),
    /// A file system or process operation failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        error: io::Error,
    },
    /// `initdb` failed.
    #[error("initdb failed ({status}): {stderr}")]
    InitDb {
        /// Exit status, or "timed out".
        status: String,
        /// What initdb printed on stderr (and stdout).
        stderr: String,
    },
    /// The server could not listen on its port because something else does.
    #[error(
        "PostgreSQL could not listen on 127.0.0.1:{port}: the port is in use\n\
         --- server log tail ---\n{log_tail}"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The server log file (already removed when [`PgCluster::start`] failed).
        log_path: PathBuf,
        /// Its last lines for this start attempt.
        log_tail: String,
    },
    /// The server did not come up.
    #[error("PostgreSQL server failed to start: {reason}\n--- server log tail ---\n{log_tail}")]
    Start {
        /// What went wrong.
        reason: String,
        /// The server log file (already removed when [`PgCluster::start`] failed).
        log_path: PathBuf,
        /// Its last lines for this start attempt.
        log_tail: String,
    },
    /// The server did not shut down cleanly.
    #[error("could not stop PostgreSQL server: {0}")]
    Stop(String),
    /// A connection or statement failed.
    #[error("{context}: {}", error_chain(.error))]
    Sql {
        /// What was being done.
        context: String,
        /// The underlying error.
        error: tokio_postgres::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let context = context.into();
    move |error| ClusterError::Io { context, error }
}

/// Renders an error and all its causes, `a: b: c`.
fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How to create a [`PgCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Extra `postgresql.conf` settings, appended after the built-in ones (so they win),
    /// e.g. `("wal_sender_timeout", "2s")`. Values are written quoted; names must be
    /// plain setting names.
    pub extra_settings: Vec<(String, String)>,
    /// Files written into the data directory after `initdb`, before the server starts
    /// (paths relative to the data directory, existing folders only), owned by the
    /// server user with mode 0600, e.g. `server.crt` and `server.key` for `ssl=on`.
    pub extra_files: Vec<(PathBuf, Vec<u8>)>,
    /// Extra `pg_hba.conf` lines, placed before the built-in trust lines (so they win), e.g.
    /// `host all app 127.0.0.1/32 scram-sha-256` or `hostnossl all app 127.0.0.1/32 reject`.
    pub extra_hba: Vec<String>,
    /// Directory with `initdb`, `pg_ctl` and `postgres`; `None` uses
    /// [`find_server_bindir`].
    pub bindir: Option<PathBuf>,
    /// How long to wait for the server to accept connections.
    pub start_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            extra_settings: Vec::new(),
            extra_files: Vec::new(),
            extra_hba: Vec::new(),
            bindir: None,
            start_timeout: Duration::from_secs(30),
        }
    }
}

impl ClusterOptions {
    /// Adds one `postgresql.conf` setting.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_settings.push((name.into(), value.into()));
        self
    }

    fn validate(&self) -> Result<(), ClusterError> {
        for (name, value) in &self.extra_settings {
            let mut chars = name.chars();
            let name_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !name_ok {
                return Err(ClusterError::InvalidOption(format!(
                    "{name:?} is not a PostgreSQL setting name"
                )));
            }
            if value.contains(['\n', '\r', '\0']) {
                return Err(ClusterError::InvalidOption(format!(
                    "the value of setting {name} contains a line break or NUL"
                )));
            }
        }
        if let Some(line) = self
            .extra_hba
            .iter()
            .find(|line| line.contains(['\n', '\r', '\0']))
        {
            return Err(ClusterError::InvalidOption(format!(
                "the pg_hba line {line:?} contains a line break or NUL"
            )));
        }
        for (path, _) in &self.extra_files {
            let plain = path.components().count() > 0
                && path.components().all(|c| matches!(c, Component::Normal(_)));
            if !plain {
                return Err(ClusterError::InvalidOption(format!(
                    "extra file path {} must be relative to the data directory, without `..`",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}

/// The system user the server runs as when this process is root.
#[derive(Debug, Clone, Copy)]
struct ServerUser {
    uid: u32,
    gid: u32,
}

/// The watchdog process that cleans up if this process dies without running `Drop`.
#[derive(Debug)]
struct Watchdog {
    child: Child,
    /// Write end of the watchdog's stdin; closing it without writing `disarm` (which the
    /// kernel does when this process dies) triggers the cleanup.
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Tells the watchdog that cleanup is done and waits for it to exit.
    fn disarm(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            // The watchdog may already be gone; nothing to do then.
            let _ = stdin.write_all(b"disarm\n");
        }
        if !wait_child_blocking(&mut self.child, DROP_TIMEOUT) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running throwaway PostgreSQL server. See the module documentation.
#[derive(Debug)]
pub struct PgCluster {
    bindir: PathBuf,
    server_user: Option<ServerUser>,
    /// The temporary directory: holds `data/`, the log and the Unix socket.
    root: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    start_timeout: Duration,
    postmaster: Option<Child>,
    watchdog: Option<Watchdog>,
    /// Declared last: removed after `Drop::drop` stopped the server.
    temp_dir: Option<TempDir>,
}

impl PgCluster {
    /// Creates a cluster in a fresh temporary directory and starts it on a free port of
    /// 127.0.0.1, returning once it accepts connections.
    ///
    /// The server and its directory are cleaned up by [`PgCluster::stop`], by dropping
    /// the value, or by the watchdog if this process exits without either.
    pub async fn start(options: ClusterOptions) -> Result<PgCluster, ClusterError> {
        options.validate()?;
        let bindir = match &options.bindir {
            Some(dir) if has_server_binaries(dir) => dir.clone(),
            Some(dir) => {
                return Err(ClusterError::BinariesNotFound {
                    searched: format!("configured bindir {}", dir.display()),
                });
            }
            None => find_server_bindir()?,
        };
        let server_user = server_user()?;
        let temp_dir = tempfile::Builder::new()
            .prefix("pgcluster-")
            .tempdir()
            .map_err(io_error("creating a temporary directory for PostgreSQL"))?;
        let root = temp_dir.path().to_path_buf();
        if let Some(user) = server_user {
            chown(&root, user)?;
        }
        let mut cluster = PgCluster {
            bindir,
            server_user,
            data_dir: root.join("data"),
            log_path: root.join("postgres.log"),
            root,
            port: 0,
            start_timeout: options.start_timeout,
            postmaster: None,
            watchdog: None,
            temp_dir: Some(temp_dir),
        };
        // From here on, an early return drops `cluster`, which cleans up.
        cluster.watchdog = Some(cluster.spawn_watchdog()?);
        cluster.initdb().await?;
        cluster.configure(&options)?;

        let mut attempt = 1;
        loop {
            let port = free_port()?;
            match cluster.launch(port).await {
                Ok(()) => break,
                Err(ClusterError::PortInUse { port, .. }) if attempt < PORT_ATTEMPTS => {
                    tracing::debug!(
                        port,
                        attempt,
                        "port taken before PostgreSQL bound it; retrying"
                    );
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
        tracing::info!(
            port = cluster.port,
            data_dir = %cluster.data_dir.display(),
            "throwaway PostgreSQL cluster started"
        );
        Ok(cluster)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for `database` as the superuser, e.g.
    /// `postgres://postgres@127.0.0.1:5432/db` (the name is percent-encoded).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
            self.port,
            percent_encode(database)
        )
    }

    /// The data directory (inside the temporary directory).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Connects to `database` as the superuser. The connection is driven by a task
    /// spawned on the current tokio runtime, which ends when the client is dropped.
    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client, ClusterError> {
        let (client, connection) =
            self.client_config(database)
                .connect(NoTls)
                .await
                .map_err(|error| ClusterError::Sql {
                    context: format!("connecting to database {database:?} on port {}", self.port),
                    error,
                })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error_chain(&error), "throwaway cluster connection ended");
            }
        });
        Ok(client)
    }

    /// Creates a database (the name is quoted, so any name works).
    pub async fn create_database(&self, name: &str) -> Result<(), ClusterError> {
        let client = self.connect("postgres").await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_identifier(name)))
            .await
            .map_err(|error| ClusterError::Sql {
                context: format!("creating database {name:?}"),
                error,
            })
    }

    /// Shuts the server down ("fast" mode), waits for it to exit and removes the
    /// temporary directory.
    pub async fn stop(mut self) -> Result<(), ClusterError> {
        // On error `self` is dropped, which still cleans up (immediate shutdown).
        self.shutdown().await?;
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        if let Some(temp_dir) = self.temp_dir.take() {
            let root = self.root.display().to_string();
            temp_dir
                .close()
                .map_err(io_error(format!("removing the cluster directory {root}")))?;
        }
        tracing::info!(port = self.port, "throwaway PostgreSQL cluster stopped");
        Ok(())
    }

    /// Stops the server ("fast" mode) and starts it again on the same port with the same
    /// data directory, returning once it accepts connections.
    pub async fn restart(&mut self) -> Result<(), ClusterError> {
        self.shutdown().await?;
        self.launch(self.port).await
    }

    /// Stops the server ("fast" mode) and keeps its data directory and port, for a test of
    /// a database that is down; [`PgCluster::start_server`] brings it back.
    pub async fn stop_server(&mut self) -> Result<(), ClusterError> {
        self.shutdown().await
    }

    /// Starts the server stopped by [`PgCluster::stop_server`] again, on the same port,
    /// returning once it accepts connections.
    pub async fn start_server(&mut self) -> Result<(), ClusterError> {
        if self.postmaster.is_some() {
            return Ok(());
        }
        self.launch(self.port).await
    }

    /// Process id of the running postmaster.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    fn client_config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .dbname(database)
            .application_name("cdc-tui-pgcluster")
            .connect_timeout(Duration::from_secs(5));
        config
    }

    /// A command for one of the server binaries, run as the server user.
    fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        command
            .current_dir(&self.root)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        if let Some(user) = self.server_user {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    fn spawn_watchdog(&self) -> Result<Watchdog, ClusterError> {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("pgcluster-watchdog")
            .arg(self.bindir.join("pg_ctl"))
            .arg(&self.data_dir)
            .arg(&self.root)
            .current_dir("/")
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Keep terminal signals (Ctrl-C) away: it must outlive this process.
            .process_group(0);
        if let Some(user) = self.server_user {
            command.uid(user.uid).gid(user.gid);
        }
        let mut child = command
            .spawn()
            .map_err(io_error("starting the cleanup watchdog (/bin/sh)"))?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    async fn initdb(&self) -> Result<(), ClusterError> {
        let mut command = tokio::process::Command::from(self.server_command("initdb"));
        command
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "--auth=trust",
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .kill_on_drop(true);
        let output = tokio::time::timeout(INITDB_TIMEOUT, command.output()).await;
        let output = match output {
            Ok(output) => output.map_err(io_error(format!(
                "running {}",
                self.bindir.join("initdb").display()
            )))?,
            Err(_) => {
                return Err(ClusterError::InitDb {
                    status: format!("timed out after {INITDB_TIMEOUT:?}"),
                    stderr: String::new(),
                });
            }
        };
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
            if text.is_empty() {
                text = String::from_utf8_lossy(&output.stdout).trim().to_string();
            }
            return Err(ClusterError::InitDb {
                status: output.status.to_string(),
                stderr: text,
            });
        }
        Ok(())
    }

    /// Appends the settings to postgresql.conf, writes pg_hba.conf and the extra files.
    fn configure(&self, options: &ClusterOptions) -> Result<(), ClusterError> {
        let socket_dir = self.root.to_str().ok_or_else(|| {
            ClusterError::InvalidOption(format!(
                "temporary directory {} is not valid UTF-8",
                self.root.display()
            ))
        })?;
        let mut settings: Vec<(&str, &str)> = vec![
            ("listen_addresses", "127.0.0.1"),
            ("unix_socket_directories", socket_dir),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("wal_level", "logical"),
            ("max_replication_slots", "20"),
            ("max_wal_senders", "20"),
            ("logging_collector", "off"),
            ("log_destination", "stderr"),
        ];
        settings.extend(
            options
                .extra_settings
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        let mut conf = String::from("\n# added by cdc-tui pgcluster\n");
        for (name, value) in settings {
            conf.push_str(&format!("{name} = {}\n", quote_conf_value(value)));
        }
        let conf_path = self.data_dir.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut file| file.write_all(conf.as_bytes()))
            .map_err(io_error(format!("writing {}", conf_path.display())))?;

        let mut hba = String::from("# written by cdc-tui pgcluster\n");
        for line in &options.extra_hba {
            hba.push_str(line);
            hba.push('\n');
        }
        hba.push_str(
            "local all all trust\n\
             local replication all trust\n\
             host all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n",
        );
        let hba_path = self.data_dir.join("pg_hba.conf");
        fs::write(&hba_path, hba).map_err(io_error(format!("writing {}", hba_path.display())))?;

        for (relative, contents) in &options.extra_files {
            let path = self.data_dir.join(relative);
            let context = format!("writing {}", path.display());
            fs::write(&path, contents).map_err(io_error(context.clone()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .map_err(io_error(context))?;
            if let Some(user) = self.server_user {
                chown(&path, user)?;
            }
        }
        Ok(())
    }

    /// Starts `postgres` on `port` and waits until it accepts connections.
    async fn launch(&mut self, port: u16) -> Result<(), ClusterError> {
        self.port = port;
        let log_context = format!("opening the server log {}", self.log_path.display());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io_error(log_context.clone()))?;
        if let Some(user) = self.server_user {
            chown(&self.log_path, user)?;
        }
        let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_stderr = log.try_clone().map_err(io_error(log_context))?;

        let mut command = self.server_command("postgres");
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(port.to_string())
            .stdout(log)
            .stderr(log_stderr)
            // Terminal signals go to this process only; it decides when the server stops.
            .process_group(0);
        let child = command.spawn().map_err(io_error(format!(
            "starting {}",
            self.bindir.join("postgres").display()
        )))?;
        tracing::debug!(pid = child.id(), port, "postgres spawned");
        self.postmaster = Some(child);

        let result = self.wait_ready(log_offset).await;
        if result.is_err() {
            self.kill_server_blocking();
        }
        result
    }

    async fn wait_ready(&mut self, log_offset: u64) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.start_timeout;
        loop {
            let config = self.client_config("postgres");
            let Some(child) = self.postmaster.as_mut() else {
                return Err(self.start_error("the server is not running".to_string(), log_offset));
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Probe, but notice at once if the server exits meanwhile (a probe can hang
            // when something else holds the port).
            let outcome = tokio::select! {
                probe = tokio::time::timeout(
                    PROBE_TIMEOUT.min(remaining).max(PROBE_INTERVAL),
                    config.connect(NoTls),
                ) => Ok(probe),
                exited = wait_child_exit(child) => Err(exited),
            };
            let last_error = match outcome {
                Ok(Ok(Ok((client, connection)))) => {
                    drop(client);
                    // With the client gone the connection sends Terminate and finishes.
                    let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
                    return Ok(());
                }
                Ok(Ok(Err(error))) => error_chain(&error),
                Ok(Err(_)) => "connection attempt timed out".to_string(),
                Err(exited) => {
                    self.postmaster = None;
                    let status = match exited {
                        Ok(status) => status.to_string(),
                        Err(error) => format!("could not wait for it: {error}"),
                    };
                    let (tail, attempt_log) = read_log_tail(&self.log_path, log_offset);
                    if attempt_log.contains("Address already in use") {
                        return Err(ClusterError::PortInUse {
                            port: self.port,
                            log_path: self.log_path.clone(),
                            log_tail: tail,
                        });
                    }
                    return Err(self.start_error(
                        format!("postgres exited ({status}) before accepting connections"),
                        log_offset,
                    ));
                }
            };
            if Instant::now() >= deadline {
                return Err(self.start_error(
                    format!(
                        "not accepting connections on 127.0.0.1:{} after {:?} (last error: {last_error})",
                        self.port, self.start_timeout
                    ),
                    log_offset,
                ));
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    fn start_error(&self, reason: String, log_offset: u64) -> ClusterError {
        let (log_tail, _) = read_log_tail(&self.log_path, log_offset);
        ClusterError::Start {
            reason,
            log_path: self.log_path.clone(),
            log_tail,
        }
    }

    /// Graceful ("fast") shutdown of the running server, if any.
    async fn shutdown(&mut self) -> Result<(), ClusterError> {
        let Some(mut child) = self.postmaster.take() else {
            return Ok(());
        };
        let running = matches!(child.try_wait(), Ok(None));
        if running {
            let mut command = tokio::process::Command::from(self.server_command("pg_ctl"));
            command
                .arg("stop")
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "fast", "-w", "-t"])
                .arg(STOP_TIMEOUT.as_secs().to_string())
                .kill_on_drop(true);
            let output = command.output().await;
            let failure = match output {
                Ok(output) if output.status.success() => None,
                Ok(output) => Some(format!(
                    "pg_ctl stop failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )),
                Err(error) => Some(format!("could not run pg_ctl: {error}")),
            };
            if let Some(reason) = failure {
                // The server may have exited meanwhile; otherwise report and let Drop kill it.
                if matches!(child.try_wait(), Ok(None)) {
                    self.postmaster = Some(child);
                    return Err(ClusterError::Stop(reason));
                }
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(None) => {
                    self.postmaster = Some(child);
                    return Err(ClusterError::Stop(format!(
                        "postgres did not exit within {STOP_TIMEOUT:?} after pg_ctl stop"
                    )));
                }
                Err(error) => {
                    return Err(ClusterError::Stop(format!(
                        "could not wait for postgres: {error}"
                    )));
                }
            }
        }
    }

    /// Immediate, synchronous shutdown of the running server, if any (used by `Drop`
    /// and on failed starts). Falls back to SIGKILL.
    fn kill_server_blocking(&mut self) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        let stopped = self
            .server_command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "-t"])
            .arg(DROP_TIMEOUT.as_secs().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !(stopped && wait_child_blocking(&mut child, DROP_TIMEOUT)) {
            tracing::warn!(pid = child.id(), "killing PostgreSQL server with SIGKILL");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.kill_server_blocking();
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        // `temp_dir` is dropped after this, removing the directory.
    }
}

/// Finds the directory holding the PostgreSQL server binaries (`initdb`, `pg_ctl`,
/// `postgres`): `pg_config --bindir` if it has them, else the first `initdb` on `PATH`
/// (following symlinks), else the newest `/usr/lib/postgresql/*/bin`.
pub fn find_server_bindir() -> Result<PathBuf, ClusterError> {
    let pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    if let Ok(output) = pg_config
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
    }

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if !initdb.is_file() {
                continue;
            }
            if let Ok(real) = fs::canonicalize(&initdb)
                && let Some(real_dir) = real.parent()
                && has_server_binaries(real_dir)
            {
                return Ok(real_dir.to_path_buf());
            }
            if has_server_binaries(&dir) {
                return Ok(dir);
            }
        }
    }

    let mut newest: Option<((u32, u32), PathBuf)> = None;
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(parse_version) else {
                continue;
            };
            let bin = entry.path().join("bin");
            if has_server_binaries(&bin) && newest.as_ref().is_none_or(|(best, _)| version > *best)
            {
                newest = Some((version, bin));
            }
        }
    }
    newest
        .map(|(_, dir)| dir)
        .ok_or_else(|| ClusterError::BinariesNotFound {
            searched: "looked at `pg_config --bindir`, PATH and /usr/lib/postgresql/*/bin"
                .to_string(),
        })
}

/// `15` → (15, 0), `9.6` → (9, 6).
fn parse_version(name: &str) -> Option<(u32, u32)> {
    let (major, minor) = name.split_once('.').unwrap_or((name, "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"].iter().all(|name| {
        fs::metadata(dir.join(name))
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// `None` when the server can run as the current user; the `postgres` user when this
/// process is root.
fn server_user() -> Result<Option<ServerUser>, ClusterError> {
    if effective_uid()? != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_error("reading /etc/passwd"))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            if fields.next()? != "postgres" {
                return None;
            }
            let _password = fields.next()?;
            let uid = fields.next()?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            (uid != 0).then_some(ServerUser { uid, gid })
        })
        .map(Some)
        .ok_or(ClusterError::NoServerUser)
}

/// The effective uid, from /proc/self/status (`Uid: real effective saved fs`), or
/// from `id -u` where /proc is missing.
fn effective_uid() -> Result<u32, ClusterError> {
    if let Ok(status) = fs::read_to_string("/proc/self/status")
        && let Some(uid) = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|uid| uid.parse().ok())
    {
        return Ok(uid);
    }
    let output = Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .output()
        .map_err(io_error("running `id -u` to find the current user"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| ClusterError::Io {
            context: "finding the current user".to_string(),
            error: io::Error::other("`id -u` printed no number"),
        })
}

fn chown(path: &Path, user: ServerUser) -> Result<(), ClusterError> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(io_error(format!(
        "handing {} to the postgres user",
        path.display()
    )))
}

/// A port that was free a moment ago (the server may still lose a race for it).
fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io_error("finding a free TCP port on 127.0.0.1"))
}

/// Polls a child until it exits.
async fn wait_child_exit(child: &mut Child) -> io::Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// Polls a child until it exits or `timeout` passes; true when it exited.
fn wait_child_blocking(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => return false,
        }
    }
}

/// Returns the last lines of the log, and all of the log written since `offset` (both
/// limited to the last [`LOG_TAIL_BYTES`]).
fn read_log_tail(path: &Path, offset: u64) -> (String, String) {
    let read = || -> io::Result<String> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        let start = offset.min(len).max(len.saturating_sub(LOG_TAIL_BYTES));
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            let tail = if tail.trim().is_empty() {
                "(empty)".to_string()
            } else {
                tail
            };
            (tail, text)
        }
        Err(error) => (format!("(could not read the log: {error})"), String::new()),
    }
}

/// A `postgresql.conf` value: single-quoted, with `'` and `\` escaped.
fn quote_conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// An SQL identifier in double quotes.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpStream;

    /// Set in the child process of `watchdog_cleans_up_after_killed_process`.
    const CHILD_ENV: &str = "PGCLUSTER_WATCHDOG_CHILD";

    fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True when the process is gone or a zombie (exited, not yet reaped by its new
    /// parent).
    fn process_gone(pid: u32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(status) => status
                .lines()
                .find_map(|line| line.strip_prefix("State:"))
                .is_some_and(|state| state.trim_start().starts_with(['Z', 'X'])),
            Err(_) => true,
        }
    }

    fn accepts_connections(port: u16) -> bool {
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1))
            .is_ok()
    }

    async fn show(client: &tokio_postgres::Client, setting: &str) -> String {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .expect("SHOW");
        row.get(0)
    }

    #[test]
    fn finds_server_binaries() {
        let dir = find_server_bindir().expect("server binaries");
        assert!(dir.join("initdb").is_file(), "{}", dir.display());
    }

    #[test]
    fn helpers_quote_and_encode() {
        assert_eq!(quote_conf_value(r"a'b\c"), r"'a''b\\c'");
        assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(percent_encode("my db/ü"), "my%20db%2F%C3%BC");
        assert_eq!(parse_version("9.6"), Some((9, 6)));
        assert_eq!(parse_version("15"), Some((15, 0)));
        assert_eq!(parse_version("x"), None);
    }

    #[tokio::test]
    async fn start_create_database_and_stop() {
        let options = ClusterOptions::default().setting("wal_sender_timeout", "2s");
        let cluster = PgCluster::start(options).await.expect("start");
        let port = cluster.port();
        let pid = cluster.pid().expect("postmaster pid");
        let root = cluster.root.clone();
        assert!(cluster.data_dir().join("PG_VERSION").is_file());
        assert!(accepts_connections(port));

        let name = "cdc test \"db\"";
        cluster
            .create_database(name)
            .await
            .expect("create database");
        let (client, connection) = tokio_postgres::connect(&cluster.url(name), NoTls)
            .await
            .expect("connect by url");
        let connection = tokio::spawn(connection);
        assert_eq!(show(&client, "wal_level").await, "logical");
        assert_eq!(show(&client, "wal_sender_timeout").await, "2s");
        assert_eq!(show(&client, "fsync").await, "off");
        assert_eq!(show(&client, "max_replication_slots").await, "20");
        let db: String = client
            .query_one("SELECT current_database()", &[])
            .await
            .expect("current_database")
            .get(0);
        assert_eq!(db, name);
        drop(client);
        connection.await.expect("join").expect("connection");

        let error = cluster
            .create_database(name)
            .await
            .expect_err("duplicate database");
        assert!(error.to_string().contains("already exists"), "{error}");

        cluster.stop().await.expect("stop");
        assert!(!root.exists(), "{} still exists", root.display());
        assert!(process_gone(pid));
        assert!(!accepts_connections(port), "port {port} still accepts");
    }

    #[tokio::test]
    async fn drop_without_stop_cleans_up() {
        let cluster = PgCluster::start(ClusterOptions::default())
            .await
            .expect("start");
        let pid = cluster.pid().expect("postmaster pid");
        let watchdog_pid = cluster.watchdog.as_ref().expect("watchdog").child.id();
        let root = cluster.root.clone();
        let port = cluster.port();
        let started = Instant::now();
        drop(cluster);
        let elapsed = started.elapsed();
        wait_until("the postmaster is gone", Duration::from_secs(30), || {
            process_gone(pid)
        });
        assert!(process_gone(watchdog_pid));
        assert!(!root.exists(), "{} still exists", root.display());
        assert!(!accepts_connections(port));
        assert!(elapsed < Duration::from_secs(10), "drop took {elapsed:?}");
    }

    #[tokio::test]
    async fn restart_keeps_port_and_data() {
        let mut cluster = PgCluster::start(ClusterOptions::default())
            .await
            .expect("start");
        let port = cluster.port();
        let old_pid = cluster.pid().expect("pid");
        let client = cluster.connect("postgres").await.expect("connect");
        client
            .batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
            .await
            .expect("create table");

        cluster.restart().await.expect("restart");
        assert_eq!(cluster.port(), port);
        assert_ne!(cluster.pid(), Some(old_pid));
        assert!(process_gone(old_pid));
        assert!(client.is_closed() || client.simple_query("SELECT 1").await.is_err());

        let client = cluster.connect("postgres").await.expect("reconnect");
        let x: i32 = client
            .query_one("SELECT x FROM kept", &[])
            .await
            .expect("select")
            .get(0);
        assert_eq!(x, 42);
        cluster.stop().await.expect("stop");
    }

    #[tokio::test]
    async fn port_clash_is_detected() {
        let mut cluster = PgCluster::start(ClusterOptions::default())
            .await
            .expect("start");
        let port = cluster.port();
        cluster.shutdown().await.expect("shutdown");
        let blocker = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind old port");
        let error = cluster.launch(port).await.expect_err("port is taken");
        assert!(
            matches!(error, ClusterError::PortInUse { port: p, .. } if p == port),
            "{error}"
        );
        assert!(
            error.to_string().contains("Address already in use"),
            "{error}"
        );
        drop(blocker);
        cluster
            .launch(port)
            .await
            .expect("launch on the freed port");
        cluster.stop().await.expect("stop");
    }

    #[tokio::test]
    async fn bad_settings_give_clear_errors() {
        let error = PgCluster::start(ClusterOptions::default().setting("bad name", "1"))
            .await
            .expect_err("invalid name");
        assert!(matches!(error, ClusterError::InvalidOption(_)), "{error}");

        let error = PgCluster::start(ClusterOptions {
            extra_files: vec![(PathBuf::from("../escape"), Vec::new())],
            ..ClusterOptions::default()
        })
        .await
        .expect_err("invalid file");
        assert!(matches!(error, ClusterError::InvalidOption(_)), "{error}");

        let error = PgCluster::start(ClusterOptions::default().setting("shared_buffers", "lots"))
            .await
            .expect_err("server rejects the setting");
        let text = error.to_string();
        assert!(matches!(error, ClusterError::Start { .. }), "{text}");
        assert!(text.contains("shared_buffers"), "{text}");
        if let ClusterError::Start { log_path, .. } = &error {
            assert!(!log_path.exists(), "temporary directory left behind");
        }

        let error = PgCluster::start(ClusterOptions {
            bindir: Some(PathBuf::from("/nonexistent")),
            ..ClusterOptions::default()
        })
        .await
        .expect_err("no binaries");
        assert!(
            error.to_string().contains("apt-get install postgresql"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn extra_files_are_written() {
        let options = ClusterOptions {
            extra_files: vec![(PathBuf::from("extra.txt"), b"hello".to_vec())],
            ..ClusterOptions::default()
        };
        let cluster = PgCluster::start(options).await.expect("start");
        let client = cluster.connect("postgres").await.expect("connect");
        let text: String = client
            .query_one("SELECT pg_read_file('extra.txt')", &[])
            .await
            .expect("read file")
            .get(0);
        assert_eq!(text, "hello");
        cluster.stop().await.expect("stop");
    }

    /// Helper run in a child process by `watchdog_cleans_up_after_killed_process`:
    /// starts a cluster, reports it, then waits to be killed.
    #[tokio::test]
    #[ignore = "run as a child process by watchdog_cleans_up_after_killed_process"]
    async fn watchdog_child_process() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let cluster = PgCluster::start(ClusterOptions::default())
            .await
            .expect("start");
        println!(
            "PGCLUSTER {} {} {}",
            cluster.pid().expect("pid"),
            cluster.port(),
            cluster.root.display()
        );
        io::stdout().flush().expect("flush");
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    #[test]
    fn watchdog_cleans_up_after_killed_process() {
        // The test name as libtest sees it: the module path without the crate name.
        let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let name = format!("{module}::watchdog_child_process");
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args([name.as_str(), "--exact", "--ignored", "--nocapture"])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn test binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut report = None;
        for line in io::BufReader::new(stdout).lines() {
            let line = line.expect("read child output");
            if let Some((_, rest)) = line.split_once("PGCLUSTER ") {
                report = Some(rest.to_string());
                break;
            }
        }
        // SIGKILL: no destructor, no atexit handler runs in the child.
        child.kill().expect("kill child");
        child.wait().expect("wait child");
        let report = report.expect("child did not report a cluster");
        let mut fields = report.split(' ');
        let pid: u32 = fields.next().and_then(|f| f.parse().ok()).expect("pid");
        let port: u16 = fields.next().and_then(|f| f.parse().ok()).expect("port");
        let root = PathBuf::from(fields.next().expect("dir"));
        assert!(root.is_absolute());

        wait_until(
            "the orphaned postmaster is gone",
            Duration::from_secs(30),
            || process_gone(pid),
        );
        wait_until(
            "the temporary directory is gone",
            Duration::from_secs(30),
            || !root.exists(),
        );
        assert!(!accepts_connections(port));
    }
}

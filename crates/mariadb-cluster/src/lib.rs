//! Throwaway MariaDB servers: `mariadb-install-db` into a temp dir, `mariadbd` with a
//! row-based binlog on a free port of 127.0.0.1 (as the `mysql` user when root), ready once it
//! accepts connections, with a user [`USER`] that logs in with [`PASSWORD`] over TCP and may do
//! everything (replication included). For cdc-tui's demo, tests and benchmarks.
//!
//! Stopped on every path: [`MariaDb::stop`] and `Drop` end the server; a watchdog (a shell
//! reading a pipe from this process, which reaches end-of-file however the process ends)
//! kills it and removes its directory when the process ends with the server still running.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

/// The user made at the start, with every privilege (replication included).
pub const USER: &str = "cdc";
pub const PASSWORD: &str = "cdc-secret";

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0} not found: install mariadb-server (apt-get install mariadb-server)")]
    NotInstalled(&'static str),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("mariadb-install-db failed: {0}")]
    InstallDb(String),
    #[error("mariadbd exited ({status}): {log}")]
    Exited { status: String, log: String },
    #[error("mariadbd did not accept connections within {START_TIMEOUT:?}: {0}")]
    Timeout(String),
    #[error("{what}: {source}")]
    Sql {
        what: &'static str,
        source: mysql_async::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Io { what, source }
}

fn sql(what: &'static str) -> impl FnOnce(mysql_async::Error) -> ServerError {
    move |source| ServerError::Sql { what, source }
}

/// Whether MariaDB's server binaries are installed.
pub fn installed() -> bool {
    ["mariadb-install-db", "mariadbd"]
        .iter()
        .all(|program| find_program(program).is_ok())
}

fn find_program(name: &'static str) -> Result<PathBuf, ServerError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or(ServerError::NotInstalled(name))
}

/// A running throwaway MariaDB server.
pub struct MariaDb {
    dir: tempfile::TempDir,
    port: u16,
    /// Server options beyond the defaults, kept for restarts.
    extra: Vec<String>,
    server: Option<Child>,
    watchdog: Option<(Child, ChildStdin)>,
}

impl MariaDb {
    /// A new server with `extra` options (`--binlog-format=STATEMENT`).
    pub async fn start(extra: &[&str]) -> Result<MariaDb, ServerError> {
        let install_db = find_program("mariadb-install-db")?;
        find_program("mariadbd")?;
        let dir = tempfile::Builder::new()
            .prefix("cdc-tui-mariadb-")
            .tempdir()
            .map_err(io("a temp dir"))?;
        // A temp dir of its own: servers bootstrapping at once in the shared /tmp were seen
        // to lose each other's temporary tables.
        std::fs::create_dir(dir.path().join("tmp")).map_err(io("the server's tmpdir"))?;
        let as_root = is_root();
        if as_root {
            let status = Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(dir.path())
                .status()
                .map_err(io("chown"))?;
            if !status.success() {
                return Err(ServerError::InstallDb(format!(
                    "cannot hand {} to the mysql user",
                    dir.path().display()
                )));
            }
        }
        let mut install = Command::new(install_db);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .arg(format!("--tmpdir={}", dir.path().join("tmp").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if as_root {
            install.arg("--user=mysql");
        }
        let output = tokio::task::spawn_blocking(move || install.output())
            .await
            .map_err(|error| io("mariadb-install-db")(std::io::Error::other(error)))?
            .map_err(io("mariadb-install-db"))?;
        if !output.status.success() {
            return Err(ServerError::InstallDb(
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ));
        }
        let mut server = MariaDb {
            dir,
            port: free_port().map_err(io("a free port"))?,
            extra: extra.iter().map(|option| option.to_string()).collect(),
            server: None,
            watchdog: None,
        };
        server.watchdog = Some(server.spawn_watchdog()?);
        server.start_server().await?;
        let mut conn = server.root().await?;
        conn.query_drop(format!(
            "CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'; \
             GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%' WITH GRANT OPTION"
        ))
        .await
        .map_err(sql("create the user"))?;
        conn.disconnect().await.map_err(sql("disconnect"))?;
        tracing::info!(port = server.port, dir = %server.dir().display(), "throwaway MariaDB server started");
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mariadb.sock")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("mariadb.pid")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mariadb.err")
    }

    /// `mysql://cdc:cdc-secret@127.0.0.1:port/database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "mysql://{USER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// A connection as root over the server's socket.
    pub async fn root(&self) -> Result<Conn, ServerError> {
        let opts = OptsBuilder::default()
            .socket(Some(self.socket().to_string_lossy().into_owned()))
            .user(Some("root"));
        Conn::new(opts).await.map_err(sql("connect as root"))
    }

    /// A connection as [`USER`] over TCP, to `database` if given.
    pub async fn connect(&self, database: Option<&str>) -> Result<Conn, ServerError> {
        let opts = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(USER))
            .pass(Some(PASSWORD))
            .db_name(database)
            .prefer_socket(false);
        Conn::new(opts).await.map_err(sql("connect"))
    }

    /// Starts `mariadbd` (on the same port and data) and waits until it accepts connections.
    pub async fn start_server(&mut self) -> Result<(), ServerError> {
        if self.server.is_some() {
            return Ok(());
        }
        let mut command = Command::new(find_program("mariadbd")?);
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", path("data")))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--tmpdir={}", path("tmp")))
            .arg(format!("--pid-file={}", self.pid_file().display()))
            .arg(format!("--log-error={}", self.log_path().display()))
            .arg(format!("--log-bin={}", path("data/binlog")))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--binlog-format=ROW",
                "--server-id=1",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
                "--max-connections=200",
            ])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // A group of its own: a Ctrl-C (or `timeout`) meant for the process that started it
            // must not stop the server before that process is done with it.
            .process_group(0);
        if is_root() {
            command.arg("--user=mysql");
        }
        self.server = Some(command.spawn().map_err(io("start mariadbd"))?);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            if let Ok(conn) = self.root().await {
                let _ = conn.disconnect().await;
                return Ok(());
            }
            if let Some(status) = (self.server.as_mut()).and_then(|c| c.try_wait().ok().flatten()) {
                self.server = None;
                return Err(ServerError::Exited {
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServerError::Timeout(self.log_tail()));
            }
        }
    }

    /// Shuts the server down (SIGTERM: it flushes and exits) and waits for it.
    pub async fn stop_server(&mut self) {
        if let Some(child) = self.server.take() {
            let _ = tokio::task::spawn_blocking(move || terminate(child)).await;
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Ends the server and removes its directory.
    pub async fn stop(mut self) {
        self.stop_server().await;
        tracing::info!(port = self.port, "throwaway MariaDB server stopped");
    }

    /// A shell that kills the server (by its pid file) and removes the directory when this
    /// process's end of its stdin closes without `disarm`.
    fn spawn_watchdog(&self) -> Result<(Child, ChildStdin), ServerError> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(
                "read line; [ \"$line\" = disarm ] && exit 0; \
                 [ -f \"$1\" ] && kill -9 \"$(cat \"$1\")\" 2>/dev/null; sleep 1; rm -rf \"$2\"",
            )
            .arg("mariadb-watchdog")
            .arg(self.pid_file())
            .arg(self.dir.path())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(io("start the watchdog"))?;
        let stdin = child.stdin.take().ok_or(ServerError::Io {
            what: "the watchdog's stdin",
            source: std::io::ErrorKind::BrokenPipe.into(),
        })?;
        Ok((child, stdin))
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(child) = self.server.take() {
            terminate(child);
        }
        if let Some((mut child, mut stdin)) = self.watchdog.take() {
            let _ = stdin.write_all(b"disarm\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// SIGTERM, then SIGKILL if the server is still there after a while.
fn terminate(mut child: Child) {
    let pid = child.id().to_string();
    let signal = |name: &str| {
        let _ = Command::new("kill")
            .args([name, &pid])
            .stderr(Stdio::null())
            .status();
    };
    signal("-TERM");
    // The exit itself is the signal: a thread waits for it, this one waits on the thread.
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = child.wait();
        let _ = exited.send(());
    });
    if exit.recv_timeout(Duration::from_secs(20)).is_err() {
        signal("-KILL");
        let _ = exit.recv_timeout(Duration::from_secs(5));
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .map(|uid| uid == "0")
        })
        .unwrap_or(false)
}

/// A port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
}

//! Throwaway MariaDB servers for the tests: `mariadb-install-db` into a temp dir, `mariadbd`
//! with a row-based binlog on a free port of 127.0.0.1 (as the `mysql` user when root), ready
//! once it accepts connections, with a user `cdc` that logs in with a password over TCP.
//!
//! Stopped on every path: [`MariaDb::stop`] and `Drop` end the server; a watchdog (a shell
//! reading a pipe from this process, which reaches end-of-file however the process ends)
//! kills it and removes its directory when a test binary exits with the server in a static.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use tokio::sync::OnceCell;

/// The user tests connect as, with every privilege (replication included).
pub const USER: &str = "cdc";
pub const PASSWORD: &str = "cdc-secret";

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

static SHARED: OnceCell<MariaDb> = OnceCell::const_new();

/// The server shared by the tests of one binary (each test uses databases of its own).
pub async fn shared() -> &'static MariaDb {
    SHARED
        .get_or_init(|| async { MariaDb::start(&[]).await })
        .await
}

/// Whether MariaDB's server binaries are installed.
pub fn installed() -> bool {
    ["mariadb-install-db", "mariadbd"]
        .iter()
        .all(|program| find_program(program).is_some())
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
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
    pub async fn start(extra: &[&str]) -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("cdc-tui-mariadb-")
            .tempdir()
            .expect("a temp dir");
        // A temp dir of its own: servers bootstrapping at once in the shared /tmp were seen
        // to lose each other's temporary tables.
        std::fs::create_dir(dir.path().join("tmp")).expect("the server's tmpdir");
        let as_root = is_root();
        if as_root {
            let status = Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "hand the temp dir to the mysql user");
        }
        let install_db = find_program("mariadb-install-db").expect(
            "mariadb-install-db not found: install mariadb-server (apt-get install mariadb-server)",
        );
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
            .expect("join")
            .expect("run mariadb-install-db");
        assert!(
            output.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = MariaDb {
            dir,
            port: free_port(),
            extra: extra.iter().map(|option| option.to_string()).collect(),
            server: None,
            watchdog: None,
        };
        server.watchdog = Some(server.spawn_watchdog());
        server.start_server().await;
        let mut conn = server.root().await;
        conn.query_drop(format!(
            "CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'; \
             GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%' WITH GRANT OPTION"
        ))
        .await
        .expect("create the test user");
        conn.disconnect().await.expect("disconnect");
        server
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

    /// `mysql://cdc:…@127.0.0.1:port/db`.
    pub fn url(&self, database: &str) -> String {
        self.url_as(USER, PASSWORD, database)
    }

    pub fn url_as(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "mysql://{user}:{}@127.0.0.1:{}/{database}",
            super::percent_encode(password),
            self.port
        )
    }

    /// A connection as root over the server's socket.
    pub async fn root(&self) -> Conn {
        let opts = OptsBuilder::default()
            .socket(Some(self.socket().to_string_lossy().into_owned()))
            .user(Some("root"));
        Conn::new(opts).await.expect("connect as root")
    }

    /// A connection as the test user to `database` (over TCP).
    pub async fn connect(&self, database: &str) -> Conn {
        let opts = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(USER))
            .pass(Some(PASSWORD))
            .db_name(Some(database))
            .prefer_socket(false);
        Conn::new(opts).await.expect("connect as the test user")
    }

    /// A fresh database named after `prefix`, unique within this binary's run.
    pub async fn create_database(&self, prefix: &str) -> String {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "{prefix}_{}",
            COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut conn = self.root().await;
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("create database");
        conn.disconnect().await.expect("disconnect");
        name
    }

    /// Starts `mariadbd` (on the same port and data) and waits until it accepts connections.
    pub async fn start_server(&mut self) {
        assert!(self.server.is_none(), "the server is already running");
        let mut command = Command::new(find_program("mariadbd").expect("mariadbd"));
        command
            .arg("--no-defaults")
            .arg(format!(
                "--datadir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--tmpdir={}",
                self.dir.path().join("tmp").display()
            ))
            .arg(format!("--pid-file={}", self.pid_file().display()))
            .arg(format!("--log-error={}", self.log_path().display()))
            .arg(format!(
                "--log-bin={}",
                self.dir.path().join("data/binlog").display()
            ))
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
            .stderr(Stdio::null());
        if is_root() {
            command.arg("--user=mysql");
        }
        self.server = Some(command.spawn().expect("start mariadbd"));
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            let opts = OptsBuilder::default()
                .socket(Some(self.socket().to_string_lossy().into_owned()))
                .user(Some("root"));
            if let Ok(conn) = Conn::new(opts).await {
                let _ = conn.disconnect().await;
                return;
            }
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.server = None;
                panic!("mariadbd exited ({status}): {}", self.log_tail());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mariadbd did not accept connections within {START_TIMEOUT:?}: {}",
                self.log_tail()
            );
        }
    }

    /// Shuts the server down (SIGTERM: it flushes and exits) and waits for it.
    pub async fn stop_server(&mut self) {
        if let Some(child) = self.server.take() {
            tokio::task::spawn_blocking(move || terminate(child))
                .await
                .expect("join");
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mariadb.err")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Ends the server and removes its directory.
    pub async fn stop(mut self) {
        self.stop_server().await;
    }

    /// A shell that kills the server (by its pid file) and removes the directory when this
    /// process's end of its stdin closes without `disarm`.
    fn spawn_watchdog(&self) -> (Child, ChildStdin) {
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
            .expect("start the watchdog");
        let stdin = child.stdin.take().expect("the watchdog's stdin");
        (child, stdin)
    }
}

use std::os::unix::process::CommandExt;

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
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

//! Throwaway MariaDB servers for the tests: `mariadb-install-db` into a temp dir, `mariadbd`
//! with a row-based binlog on a free port of 127.0.0.1 (as the `mysql` user when root), ready
//! once it accepts connections, with a user `cdc` that logs in with a password over TCP.
//!
//! With `CDC_TEST_MYSQL_URL` set (`mysql://root:pw@host:3306/`, a user that may create
//! databases and read the binlog), [`shared`] is that server instead (a MySQL 8, say): each
//! test still makes a database of its own in it and drops it after. Servers a test starts
//! itself ([`MariaDb::start`]: to stop, restart or reconfigure) stay throwaway MariaDBs.
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

/// The variable naming an external server for the shared-server tests.
pub const EXTERNAL_URL: &str = "CDC_TEST_MYSQL_URL";

/// The server shared by the tests of one binary (each test uses databases of its own): the
/// one `CDC_TEST_MYSQL_URL` names, else a throwaway MariaDB.
pub async fn shared() -> &'static MariaDb {
    SHARED
        .get_or_init(|| async {
            match external_url() {
                Some(url) => MariaDb::external(&url),
                None => MariaDb::start(&[]).await,
            }
        })
        .await
}

/// `CDC_TEST_MYSQL_URL`, when set and not empty.
pub fn external_url() -> Option<String> {
    std::env::var(EXTERNAL_URL)
        .ok()
        .filter(|url| !url.is_empty())
}

/// Whether the shared server is an external one: tests that hold MariaDB's own behaviour
/// (its GTIDs, its JSON text) check this and skip.
pub fn shared_is_external() -> bool {
    external_url().is_some()
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
    /// An external server (`CDC_TEST_MYSQL_URL`): reached with these, never started here.
    external: Option<External>,
}

/// How to reach an external server.
struct External {
    host: String,
    user: String,
    password: String,
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
            external: None,
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

    /// The server `url` names (`CDC_TEST_MYSQL_URL`); its user makes and drops the tests'
    /// databases.
    pub fn external(url: &str) -> MariaDb {
        let opts = mysql_async::Opts::from_url(url)
            .unwrap_or_else(|error| panic!("{EXTERNAL_URL} does not parse: {error}"));
        MariaDb {
            dir: tempfile::Builder::new()
                .prefix("cdc-tui-mysql-")
                .tempdir()
                .expect("a temp dir"),
            port: opts.tcp_port(),
            extra: Vec::new(),
            server: None,
            watchdog: None,
            external: Some(External {
                host: opts.ip_or_hostname().to_string(),
                user: opts.user().unwrap_or("root").to_string(),
                password: opts.pass().unwrap_or_default().to_string(),
            }),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn host(&self) -> &str {
        self.external
            .as_ref()
            .map_or("127.0.0.1", |external| &external.host)
    }

    /// The user tests connect as, with its password.
    fn login(&self) -> (&str, &str) {
        self.external.as_ref().map_or((USER, PASSWORD), |external| {
            (&external.user, &external.password)
        })
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
        let (user, password) = self.login();
        self.url_as(user, password, database)
    }

    pub fn url_as(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "mysql://{user}:{}@{}:{}/{database}",
            super::percent_encode(password),
            self.host(),
            self.port
        )
    }

    /// A connection as root over the server's socket (an external server: as its user).
    pub async fn root(&self) -> Conn {
        if self.external.is_some() {
            return self.connect_to(None).await;
        }
        let opts = OptsBuilder::default()
            .socket(Some(self.socket().to_string_lossy().into_owned()))
            .user(Some("root"));
        Conn::new(opts).await.expect("connect as root")
    }

    /// A connection as the test user to `database` (over TCP).
    pub async fn connect(&self, database: &str) -> Conn {
        self.connect_to(Some(database)).await
    }

    async fn connect_to(&self, database: Option<&str>) -> Conn {
        let (user, password) = self.login();
        let opts = OptsBuilder::default()
            .ip_or_hostname(self.host())
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .db_name(database)
            .prefer_socket(false);
        Conn::new(opts).await.expect("connect as the test user")
    }

    /// Whether this is the external server of `CDC_TEST_MYSQL_URL`.
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// A fresh database named after `prefix`, unique within this binary's run.
    pub async fn create_database(&self, prefix: &str) -> String {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = match self.external {
            // Unique across runs too: a failed run leaves its databases behind.
            Some(_) => format!("cdc_test_{prefix}_{}_{count}", std::process::id()),
            None => format!("{prefix}_{count}"),
        };
        let mut conn = self.root().await;
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("create database");
        conn.disconnect().await.expect("disconnect");
        name
    }

    /// Drops a database of [`MariaDb::create_database`] (on an external server, the test's
    /// own clean-up).
    pub async fn drop_database(&self, name: &str) {
        let mut conn = self.root().await;
        conn.query_drop(format!("DROP DATABASE `{name}`"))
            .await
            .expect("drop the database");
        conn.disconnect().await.expect("disconnect");
    }

    /// Starts `mariadbd` (on the same port and data) and waits until it accepts connections.
    pub async fn start_server(&mut self) {
        assert!(
            self.external.is_none(),
            "an external server is not started here"
        );
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

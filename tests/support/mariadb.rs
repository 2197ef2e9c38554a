//! MariaDB servers for the tests: throwaway ones (`crates/mariadb-cluster`: `mariadb-install-db`
//! into a temp dir, a row-based binlog, a free port, a user `cdc` that logs in with a password
//! over TCP), or the one `CDC_TEST_MYSQL_URL` names.
//!
//! With `CDC_TEST_MYSQL_URL` set (`mysql://root:pw@host:3306/`, a user that may create
//! databases and read the binlog), [`shared`] is that server instead (a MySQL 8, say): each
//! test still makes a database of its own in it and drops it after. Servers a test starts
//! itself ([`MariaDb::start`]: to stop, restart or reconfigure) stay throwaway MariaDBs.

use std::path::Path;

pub use mariadb_cluster::{PASSWORD, USER};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use tokio::sync::OnceCell;

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
    mariadb_cluster::installed()
}

/// A throwaway MariaDB server, or the external one.
pub struct MariaDb {
    server: Server,
}

enum Server {
    Local(mariadb_cluster::MariaDb),
    /// `CDC_TEST_MYSQL_URL`'s: reached with these, never started here.
    External {
        dir: tempfile::TempDir,
        host: String,
        port: u16,
        user: String,
        password: String,
    },
}

impl MariaDb {
    /// A new server with `extra` options (`--binlog-format=STATEMENT`).
    pub async fn start(extra: &[&str]) -> MariaDb {
        let server = mariadb_cluster::MariaDb::start(extra)
            .await
            .unwrap_or_else(|error| panic!("a throwaway MariaDB: {error}"));
        MariaDb {
            server: Server::Local(server),
        }
    }

    /// The server `url` names (`CDC_TEST_MYSQL_URL`); its user makes and drops the tests'
    /// databases.
    pub fn external(url: &str) -> MariaDb {
        let opts = mysql_async::Opts::from_url(url)
            .unwrap_or_else(|error| panic!("{EXTERNAL_URL} does not parse: {error}"));
        MariaDb {
            server: Server::External {
                dir: tempfile::Builder::new()
                    .prefix("cdc-tui-mysql-")
                    .tempdir()
                    .expect("a temp dir"),
                host: opts.ip_or_hostname().to_string(),
                port: opts.tcp_port(),
                user: opts.user().unwrap_or("root").to_string(),
                password: opts.pass().unwrap_or_default().to_string(),
            },
        }
    }

    fn local(&mut self) -> &mut mariadb_cluster::MariaDb {
        match &mut self.server {
            Server::Local(server) => server,
            Server::External { .. } => panic!("an external server is not started or stopped here"),
        }
    }

    pub fn port(&self) -> u16 {
        match &self.server {
            Server::Local(server) => server.port(),
            Server::External { port, .. } => *port,
        }
    }

    fn host(&self) -> &str {
        match &self.server {
            Server::Local(_) => "127.0.0.1",
            Server::External { host, .. } => host,
        }
    }

    /// The user tests connect as, with its password.
    fn login(&self) -> (&str, &str) {
        match &self.server {
            Server::Local(_) => (USER, PASSWORD),
            Server::External { user, password, .. } => (user, password),
        }
    }

    pub fn dir(&self) -> &Path {
        match &self.server {
            Server::Local(server) => server.dir(),
            Server::External { dir, .. } => dir.path(),
        }
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
            self.port()
        )
    }

    /// A connection as root over the server's socket (an external server: as its user).
    pub async fn root(&self) -> Conn {
        match &self.server {
            Server::Local(server) => server.root().await.expect("connect as root"),
            Server::External { .. } => self.connect_to(None).await,
        }
    }

    /// A connection as the test user to `database` (over TCP).
    pub async fn connect(&self, database: &str) -> Conn {
        self.connect_to(Some(database)).await
    }

    async fn connect_to(&self, database: Option<&str>) -> Conn {
        let (user, password) = self.login();
        let opts = OptsBuilder::default()
            .ip_or_hostname(self.host())
            .tcp_port(self.port())
            .user(Some(user))
            .pass(Some(password))
            .db_name(database)
            .prefer_socket(false);
        Conn::new(opts).await.expect("connect as the test user")
    }

    /// Whether this is the external server of `CDC_TEST_MYSQL_URL`.
    fn is_external(&self) -> bool {
        matches!(self.server, Server::External { .. })
    }

    /// A fresh database named after `prefix`, unique within this binary's run.
    pub async fn create_database(&self, prefix: &str) -> String {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = match self.is_external() {
            // Unique across runs too: a failed run leaves its databases behind.
            true => format!("cdc_test_{prefix}_{}_{count}", std::process::id()),
            false => format!("{prefix}_{count}"),
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

    /// Starts `mariadbd` again (on the same port and data) and waits until it accepts
    /// connections.
    pub async fn start_server(&mut self) {
        (self.local().start_server().await).unwrap_or_else(|error| panic!("{error}"));
    }

    /// Shuts the server down (SIGTERM: it flushes and exits) and waits for it.
    pub async fn stop_server(&mut self) {
        self.local().stop_server().await;
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill_server(&mut self) {
        self.local().kill_server();
    }

    /// Ends the server and removes its directory.
    pub async fn stop(self) {
        if let Server::Local(server) = self.server {
            server.stop().await;
        }
    }
}

//! A MongoDB wire-protocol server for tests.
//!
//! It keeps data in memory and presents itself to drivers as the primary of a
//! one-member replica set (`rs0`), so that change streams work. Faults can be
//! injected: dropping every connection, forgetting the change history, and
//! turning into a standalone server.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = mongo_test_server::TestServer::start().await?;
//! let uri = server.uri(); // hand this to mongodb::Client::with_uri_str
//! server.drop_all_connections();
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Supported: OP_MSG (body and document sequences, checksum, moreToCome),
//! OP_QUERY for the `hello`/`isMaster` handshake; commands `hello`,
//! `isMaster`, `ping`, `buildInfo`, `getParameter`, `getLastError`,
//! `endSessions`, `insert`, `update`, `delete`, `findAndModify`, `find`,
//! `getMore`, `killCursors`, `count`, `aggregate` (`$changeStream`, or
//! `$match`/`$sort`/`$skip`/`$limit`/`$project`/`$count`/constant `$group`),
//! `listCollections`, `listDatabases`, `listIndexes`, `create`,
//! `createIndexes` (accepted, ignored), `drop`, `dropDatabase` and a few
//! informational ones (`serverStatus`, `hostInfo`, `whatsmyuri`, ...).
//!
//! Not supported: authentication, transactions, compression, TLS, pipeline
//! updates, `$regex` and other query operators beyond comparison/`$in`/
//! `$exists`/`$size`/`$not`/`$and`/`$or`/`$nor`, secondary indexes, and
//! rename events. Pre- and post-images are always available to change
//! streams (no `changeStreamPreAndPostImages` needed).

mod commands;
mod error;
mod query;
mod server;
mod store;
pub mod wire;

use std::io::{self, Write};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use server::Shared;

pub use commands::{MAX_WIRE_VERSION, SERVER_VERSION};

/// The replica set name reported by `hello`.
pub const REPLICA_SET_NAME: &str = "rs0";

/// A running server on 127.0.0.1. Dropping it stops the server too;
/// `shutdown` additionally waits for the listener to be released.
pub struct TestServer {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts on a free port.
    pub async fn start() -> io::Result<TestServer> {
        Self::start_on(0).await
    }

    /// Starts on `port` (0 picks a free one).
    pub async fn start_on(port: u16) -> io::Result<TestServer> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let shared = Shared::new(port);
        let accept = tokio::spawn(server::accept_loop(listener, shared.clone()));
        Ok(TestServer {
            shared,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `127.0.0.1:PORT`, the name the server gives itself in `hello`.
    pub fn host(&self) -> String {
        self.shared.host()
    }

    /// Connection string for the official drivers. It uses a direct
    /// connection and no `replicaSet`, so that it keeps working after
    /// `set_standalone(true)` (a replicaSet name would make the driver refuse
    /// the server instead of letting the change stream fail with 40573).
    pub fn uri(&self) -> String {
        format!("mongodb://{}/?directConnection=true", self.host())
    }

    /// Connection string that makes the driver discover the replica set
    /// (`replicaSet=rs0`, no direct connection), as against a real cluster.
    pub fn replica_set_uri(&self) -> String {
        format!("mongodb://{}/?replicaSet={REPLICA_SET_NAME}", self.host())
    }

    /// Fault: close every open client connection now (including ones in
    /// the middle of a waiting getMore). New connections are accepted.
    pub fn drop_all_connections(&self) {
        self.shared.drop_all_connections();
    }

    /// Fault: forget all change events so far. Resuming from any earlier
    /// token or operation time then fails with code 286
    /// (ChangeStreamHistoryLost); so does a live stream that had not yet
    /// read every forgotten event.
    pub fn forget_history(&self) {
        self.shared.forget_history();
    }

    /// When true, `hello` omits `setName` and friends so drivers see a
    /// standalone server, and `$changeStream` fails with code 40573.
    pub fn set_standalone(&self, standalone: bool) {
        self.shared.set_standalone(standalone);
    }

    /// Number of change events currently in the history.
    pub fn event_count(&self) -> usize {
        self.shared.store().event_count()
    }

    /// How many times the command `name` (e.g. "aggregate", "getMore") has
    /// been received, successful or not.
    pub fn command_count(&self, name: &str) -> u64 {
        self.shared.command_count(name)
    }

    /// Number of connections accepted since the server started.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections_accepted()
    }

    /// Number of change stream getMores currently parked on the server
    /// waiting for new events: a way for tests to know that a watcher is
    /// established and idle before injecting a fault.
    pub fn waiting_change_streams(&self) -> usize {
        self.shared
            .waiting_streams
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Number of client connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }

    /// Stops accepting, closes every connection and waits for the listener
    /// to be closed.
    pub async fn shutdown(mut self) {
        self.shared.begin_shutdown();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
    }
}

/// Serves on 127.0.0.1:`port` (0: a free port) until the process is killed,
/// after printing `listening on 127.0.0.1:PORT` to stdout.
pub async fn serve_forever(port: u16) -> io::Result<()> {
    serve(port, false).await
}

async fn serve(port: u16, standalone: bool) -> io::Result<()> {
    let mut server = TestServer::start_on(port).await?;
    server.set_standalone(standalone);
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {}", server.host())?;
    out.flush()?;
    drop(out);
    if let Some(accept) = server.accept.take() {
        accept.await.map_err(io::Error::other)?;
    }
    Ok(())
}

const USAGE: &str = "usage: mongo_test_server [--port PORT] [--standalone]

A MongoDB wire-protocol test server (in memory, replica set \"rs0\" primary).
  --port PORT    listen on 127.0.0.1:PORT (default 27017; 0 picks a free port)
  --standalone   present as a standalone server (change streams fail with 40573)
Prints `listening on 127.0.0.1:PORT` and serves until killed.";

/// Command-line entry point for an example or binary: `args` excludes the
/// program name (pass `std::env::args().skip(1)`). Builds its own Tokio
/// runtime, so call it from a plain `fn main`, not from inside a runtime.
pub fn run_cli<I, S>(args: I) -> io::Result<()>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut port: u16 = 27017;
    let mut standalone = false;
    let mut args = args.into_iter().map(Into::into);
    let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, format!("{msg}\n{USAGE}"));
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--standalone" => {
                standalone = true;
                continue;
            }
            "--port" | "-p" => args
                .next()
                .ok_or_else(|| bad("--port needs a value".into()))?,
            other => match other.strip_prefix("--port=") {
                Some(v) => v.to_owned(),
                None => return Err(bad(format!("unknown argument '{other}'"))),
            },
        };
        port = value
            .parse()
            .map_err(|_| bad(format!("invalid port '{value}'")))?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(serve(port, standalone))
}

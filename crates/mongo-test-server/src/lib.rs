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
//! TLS (every connection, like mongod's `requireTLS`) takes a certificate
//! chain and key as PEM; the client needs the CA that signed them:
//!
//! ```no_run
//! # async fn demo(cert_pem: &[u8], key_pem: &[u8]) -> std::io::Result<()> {
//! let server = mongo_test_server::TestServer::builder()
//!     .tls_pem(cert_pem, key_pem)?
//!     .start()
//!     .await?;
//! let uri = format!("{}&tlsCAFile=/path/ca.pem", server.uri()); // has tls=true
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
//! `createIndexes` (accepted, ignored), `drop`, `dropDatabase`,
//! `renameCollection` and a few informational ones (`serverStatus`,
//! `hostInfo`, `whatsmyuri`, ...).
//!
//! Change streams on a collection, a database (`aggregate: 1`) and the
//! deployment (`allChangesForCluster` on admin, leaving out admin, config and
//! local), with `$match` stages after `$changeStream`; `drop`, `rename` and
//! `dropDatabase` events, and `invalidate` as the real server sends it (a
//! collection stream on drop, rename or dropDatabase, a database stream on
//! dropDatabase, a deployment stream never); `startAfter` an invalidate.
//!
//! Multi-document transactions (`startTransaction`, `commitTransaction`,
//! `abortTransaction`): their events appear at the commit, all with its
//! cluster time, `lsid` and `txnNumber`; an abort puts the data back. Unlike
//! the real server, a transaction's writes are visible to other sessions before
//! it commits, and there are no write conflicts.
//!
//! Not supported: authentication (x.509 included), compression, pipeline
//! updates, `$regex` and other query operators beyond
//! comparison/`$in`/`$exists`/`$size`/`$not`/`$and`/`$or`/`$nor`, secondary
//! indexes, DDL inside transactions. Pre- and post-images are always available to change
//! streams (no `changeStreamPreAndPostImages` needed).

mod commands;
mod error;
mod query;
mod server;
mod store;
pub mod wire;

use std::io::{self, Write};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use server::Shared;

pub use commands::{MAX_WIRE_VERSION, SERVER_VERSION};
/// The rustls of [`Builder::tls_config`], for building a configuration of its own.
pub use rustls;

/// The replica set name reported by `hello`.
pub const REPLICA_SET_NAME: &str = "rs0";

/// A running server on 127.0.0.1. Dropping it stops the server too;
/// `shutdown` additionally waits for the listener to be released.
pub struct TestServer {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    tls: bool,
}

/// Options for [`TestServer`]: `TestServer::builder().port(p).tls_pem(..)?.start()`.
#[derive(Default)]
pub struct Builder {
    port: u16,
    tls: Option<Arc<ServerConfig>>,
}

impl Builder {
    /// Listens on 127.0.0.1:`port` (0, the default, picks a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Serves TLS only, with this certificate chain (leaf first) and private
    /// key, both PEM. Fails on PEM that holds no certificate or no usable key.
    pub fn tls_pem(self, cert_chain_pem: &[u8], key_pem: &[u8]) -> io::Result<Self> {
        Ok(self.tls_config(tls_server_config(cert_chain_pem, key_pem)?))
    }

    /// Serves TLS only, with a ready configuration (e.g. one asking for
    /// client certificates).
    pub fn tls_config(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    pub async fn start(self) -> io::Result<TestServer> {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await?;
        let port = listener.local_addr()?.port();
        let shared = Shared::new(port);
        let tls = self.tls.is_some();
        let acceptor = self.tls.map(TlsAcceptor::from);
        let accept = tokio::spawn(server::accept_loop(listener, shared.clone(), acceptor));
        Ok(TestServer {
            shared,
            accept: Some(accept),
            tls,
        })
    }
}

/// A rustls server configuration from PEM. The provider is named rather than
/// taken from the process default: the driver's dependencies can enable both
/// ring and aws-lc-rs, and rustls then refuses to guess.
fn tls_server_config(cert_chain_pem: &[u8], key_pem: &[u8]) -> io::Result<Arc<ServerConfig>> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("TLS certificate chain PEM", &e))?;
    if certs.is_empty() {
        return Err(invalid("TLS certificate chain PEM", &"no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("TLS key PEM", &e))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid("TLS certificate and key", &e))?;
    Ok(Arc::new(config))
}

impl TestServer {
    /// A server with options: a port, TLS.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Starts on a free port, without TLS.
    pub async fn start() -> io::Result<TestServer> {
        Self::start_on(0).await
    }

    /// Starts on `port` (0 picks a free one), without TLS.
    pub async fn start_on(port: u16) -> io::Result<TestServer> {
        Self::builder().port(port).start().await
    }

    /// Whether every connection must speak TLS.
    pub fn tls(&self) -> bool {
        self.tls
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
    /// Under TLS it has `&tls=true`; append `&tlsCAFile=…` for the CA.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://{}/?directConnection=true{}",
            self.host(),
            self.tls_option()
        )
    }

    /// Connection string that makes the driver discover the replica set
    /// (`replicaSet=rs0`, no direct connection), as against a real cluster.
    pub fn replica_set_uri(&self) -> String {
        format!(
            "mongodb://{}/?replicaSet={REPLICA_SET_NAME}{}",
            self.host(),
            self.tls_option()
        )
    }

    fn tls_option(&self) -> &'static str {
        if self.tls { "&tls=true" } else { "" }
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
    serve(TestServer::builder().port(port), false).await
}

async fn serve(builder: Builder, standalone: bool) -> io::Result<()> {
    let mut server = builder.start().await?;
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

const USAGE: &str = "usage: mongo_test_server [--port PORT] [--standalone] \
[--tls-cert PEM --tls-key PEM]

A MongoDB wire-protocol test server (in memory, replica set \"rs0\" primary).
  --port PORT       listen on 127.0.0.1:PORT (default 27017; 0 picks a free port)
  --standalone      present as a standalone server (change streams fail with 40573)
  --tls-cert PEM    serve TLS only, with this certificate chain (needs --tls-key)
  --tls-key PEM     the certificate's private key
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
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut args = args.into_iter().map(Into::into);
    let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, format!("{msg}\n{USAGE}"));
    while let Some(arg) = args.next() {
        // `--port=P` as well as `--port P`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| bad(format!("{name} needs a value")))
        };
        match name {
            "-h" | "--help" if inline.is_none() => {
                println!("{USAGE}");
                return Ok(());
            }
            "--standalone" if inline.is_none() => standalone = true,
            "--port" | "-p" => {
                let text = value("--port")?;
                port = text
                    .parse()
                    .map_err(|_| bad(format!("invalid port '{text}'")))?;
            }
            "--tls-cert" => tls_cert = Some(value("--tls-cert")?),
            "--tls-key" => tls_key = Some(value("--tls-key")?),
            _ => return Err(bad(format!("unknown argument '{arg}'"))),
        }
    }
    let mut builder = TestServer::builder().port(port);
    match (tls_cert, tls_key) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            let read = |path: &str| {
                std::fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
            };
            builder = builder.tls_pem(&read(&cert)?, &read(&key)?)?;
        }
        _ => return Err(bad("--tls-cert and --tls-key go together".into())),
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(serve(builder, standalone))
}

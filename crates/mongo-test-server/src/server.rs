//! Accept loop, per-connection tasks and the state they share (including the
//! fault-injection switches).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bson::Document;
use bson::oid::ObjectId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::commands::{self, Outcome};
use crate::store::Store;
use crate::wire;

/// State shared by every connection of one server.
pub struct Shared {
    store: Mutex<Store>,
    /// Woken whenever a change event is recorded, so waiting getMores re-check.
    pub events: Notify,
    /// Bumped to make every open connection close itself.
    kill: watch::Sender<u64>,
    /// `topologyVersion.counter`; awaitable hellos return when it changes.
    pub topology: watch::Sender<i64>,
    shutdown: watch::Sender<bool>,
    pub standalone: AtomicBool,
    pub process_id: ObjectId,
    pub port: u16,
    pub started: Instant,
    next_connection_id: AtomicI64,
    /// How many times each command ran, for tests that assert on driver behaviour.
    command_counts: Mutex<HashMap<String, u64>>,
    /// Latest retryable write per session: lsid -> (txnNumber, reply).
    retryable_writes: Mutex<HashMap<String, (i64, Document)>>,
    next_request_id: AtomicI32,
    open_connections: AtomicUsize,
    /// Change stream getMores currently parked waiting for events.
    pub waiting_streams: AtomicUsize,
}

impl Shared {
    pub fn new(port: u16) -> Arc<Self> {
        Arc::new(Shared {
            store: Mutex::new(Store::new()),
            events: Notify::new(),
            kill: watch::Sender::new(0),
            topology: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
            standalone: AtomicBool::new(false),
            process_id: ObjectId::new(),
            port,
            started: Instant::now(),
            next_connection_id: AtomicI64::new(1),
            command_counts: Mutex::new(HashMap::new()),
            retryable_writes: Mutex::new(HashMap::new()),
            next_request_id: AtomicI32::new(1),
            open_connections: AtomicUsize::new(0),
            waiting_streams: AtomicUsize::new(0),
        })
    }

    /// Locks the store. A panic while holding the lock cannot leave the data
    /// half-written in a way tests care about, so poisoning is ignored.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn next_request_id(&self) -> i32 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn count_command(&self, name: &str) {
        let mut counts = self
            .command_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *counts.entry(name.to_owned()).or_default() += 1;
    }

    pub fn command_count(&self, name: &str) -> u64 {
        let counts = self
            .command_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts.get(name).copied().unwrap_or(0)
    }

    /// The stored reply if this (session, txnNumber) write already ran.
    pub fn retried_write(&self, key: &(String, i64)) -> Option<Document> {
        let writes = self
            .retryable_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match writes.get(&key.0) {
            Some((txn, reply)) if *txn == key.1 => Some(reply.clone()),
            _ => None,
        }
    }

    pub fn remember_write(&self, key: (String, i64), reply: Document) {
        let mut writes = self
            .retryable_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Like the server's session table, only the latest write per session is kept.
        writes.insert(key.0, (key.1, reply));
    }

    /// Connections accepted since the start (connection ids are sequential).
    pub fn connections_accepted(&self) -> u64 {
        self.next_connection_id
            .load(Ordering::Relaxed)
            .saturating_sub(1) as u64
    }

    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::SeqCst)
    }

    pub fn drop_all_connections(&self) {
        self.kill.send_modify(|g| *g += 1);
    }

    pub fn forget_history(&self) {
        self.store().forget_history();
        // Waiting change stream cursors must notice they may now be behind.
        self.events.notify_waiters();
    }

    pub fn set_standalone(&self, standalone: bool) {
        if self.standalone.swap(standalone, Ordering::SeqCst) != standalone {
            // A new topologyVersion makes monitoring hellos answer at once.
            self.topology.send_modify(|c| *c += 1);
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.drop_all_connections();
    }
}

/// Accepts connections until shutdown, one task per connection. With `tls`,
/// every connection must begin with a TLS handshake.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(handle_connection(
                    stream,
                    peer,
                    shared.clone(),
                    id,
                    tls.clone(),
                ));
            }
            // Typically out of file descriptors: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Identity of one client connection, as commands see it.
pub struct ConnCtx {
    pub id: i64,
    pub peer: SocketAddr,
}

/// Increments a gauge for as long as it lives (also when its future is cancelled).
pub struct GaugeGuard<'a>(&'a AtomicUsize);

impl<'a> GaugeGuard<'a> {
    pub fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::SeqCst);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    id: i64,
    tls: Option<TlsAcceptor>,
) {
    // Subscribing marks the current generation as seen: only later kills apply.
    let mut kill = shared.kill.subscribe();
    if *shared.shutdown.borrow() {
        return;
    }
    let _open = GaugeGuard::new(&shared.open_connections);
    let ctx = ConnCtx { id, peer };
    // The handshake runs under the kill switch too, so a client stuck in it
    // is dropped like any other. A failed handshake (a plaintext client, an
    // unknown CA on the client side) just closes the connection, as mongod does.
    let serve = async {
        match tls {
            None => serve(stream, &shared, &ctx).await,
            Some(acceptor) => serve(acceptor.accept(stream).await?, &shared, &ctx).await,
        }
    };
    // Dropping the stream closes the socket, which is exactly the fault the
    // kill switch is meant to inject, even in the middle of a waiting getMore.
    tokio::select! {
        _ = kill.changed() => {}
        _ = serve => {}
    }
}

/// Runs the wire protocol on one connection, plain or TLS, until the client
/// leaves or a frame cannot be read.
async fn serve(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    shared: &Shared,
    ctx: &ConnCtx,
) -> io::Result<()> {
    loop {
        let frame = read_frame(&mut stream).await?;
        let message = wire::parse_message(&frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        match commands::handle_message(shared, ctx, message).await {
            Outcome::Reply(bytes) => {
                stream.write_all(&bytes).await?;
                // A TLS stream may hold the last record back until flushed.
                stream.flush().await?;
            }
            Outcome::NoReply => {}
            Outcome::Close => return Ok(()),
        }
    }
}

/// Reads one length-prefixed message, refusing bad lengths before allocating.
async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut len_bytes = [0u8; 4];
    reader.read_exact(&mut len_bytes).await?;
    let len = wire::check_length(i32::from_le_bytes(len_bytes))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    // Grow with the bytes that actually arrive rather than trusting the
    // length up front: a peer claiming 48 MB and sending nothing costs little.
    let mut frame = Vec::with_capacity(len.min(64 * 1024));
    frame.extend_from_slice(&len_bytes);
    let body_len = (len - 4) as u64;
    let read = reader.take(body_len).read_to_end(&mut frame).await?;
    if read as u64 != body_len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(frame)
}

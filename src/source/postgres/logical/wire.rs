//! Our replication connection, on the PostgreSQL wire protocol (`postgres-protocol` writes the
//! frontend messages and does SCRAM and MD5; the few backend messages a replication session
//! gets are read here).
//!
//! A session goes through three phases:
//! 1. [`Connection::connect`]: TLS as the URL's `sslmode` says (SSLRequest, then rustls), a
//!    startup with `replication=database`, authentication (trust, password, MD5,
//!    SCRAM-SHA-256).
//! 2. [`Connection::simple_query`]: replication commands on the same session before it
//!    streams (`CREATE_REPLICATION_SLOT`: a temporary slot belongs to its session).
//! 3. [`Connection::start_replication`] turns it into a [`ReplicationStream`]: the listener
//!    reads the server's messages itself (no queue between them), and a small task of the
//!    stream's own writes the standby status updates, so they keep going out while the listener
//!    is paused or waiting on a full handler queue (the server's `wal_sender_timeout` never
//!    ends a slow stream, and TCP flow control is what slows the server down).
//!
//! [`ReplicationStream::close`] ends the session as the protocol has it: a last status update
//! with the acknowledged position, CopyDone, the server's reply read through ReadyForQuery,
//! then Terminate; so the server logs no lost client.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::source::postgres::tls::describe_rustls_error;

/// Read from the socket in steps of this much: many WAL messages per read.
const READ_CHUNK: usize = 128 * 1024;

/// The largest message PostgreSQL sends is about 1 GB (one value); a length beyond this is a
/// broken stream, not a message to allocate for.
const MAX_MESSAGE: usize = (1 << 30) + (1 << 20);

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Whatever the connection runs on: TCP, TLS over TCP, or a Unix socket.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type Stream = Box<dyn Io>;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp {
        host: String,
        port: u16,
    },
    /// A Unix socket's directory and port (the socket is `DIR/.s.PGSQL.PORT`).
    Unix {
        dir: PathBuf,
        port: u16,
    },
}

/// TLS for the connection, as `sslmode` asks.
#[derive(Clone)]
pub enum Tls {
    Disable,
    /// TLS when the server offers it (`prefer`), or always (every other mode): the rustls
    /// config carries the certificate checks of the mode.
    Use {
        config: Arc<ClientConfig>,
        required: bool,
    },
}

/// What a session needs. No `Debug`: it holds the password.
pub struct Config {
    pub address: Address,
    pub user: String,
    pub password: Option<Vec<u8>>,
    pub database: String,
    pub application_name: String,
    /// The URL's `options` (session settings), sent as they are.
    pub options: Option<String>,
    pub tls: Tls,
    pub connect_timeout: Duration,
}

/// A failed step of the session; never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The server's ErrorResponse: `message (SQLSTATE code)`.
    #[error("{0}")]
    Server(String),
    /// Authentication the client cannot do.
    #[error("{0}")]
    Auth(String),
    /// The TLS handshake, or a server without TLS where it is required; `permanent` when
    /// waiting will not help (a certificate that does not fit).
    #[error("{message}")]
    Tls { message: String, permanent: bool },
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A message that does not fit the protocol.
    #[error("{0}")]
    Protocol(String),
}

impl WireError {
    fn closed() -> WireError {
        WireError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ))
    }
}

/// One backend message: its tag and body.
struct Frame {
    tag: u8,
    body: Bytes,
}

/// Reads backend messages into a buffer of its own; cancel-safe (a read cut short by a
/// `select!` loses nothing: what arrived is in the buffer).
struct Reader<R> {
    io: R,
    buffer: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(io: R) -> Self {
        Reader {
            io,
            buffer: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// A whole message already in the buffer.
    fn buffered(&mut self) -> Result<Option<Frame>, WireError> {
        if self.buffer.len() < 5 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]) as usize;
        if !(4..=MAX_MESSAGE).contains(&length) {
            return Err(WireError::Protocol(format!(
                "a message of {length} bytes from the server: the stream is broken"
            )));
        }
        if self.buffer.len() < length + 1 {
            self.buffer.reserve(length + 1 - self.buffer.len());
            return Ok(None);
        }
        let mut frame = self.buffer.split_to(length + 1).freeze();
        let tag = frame[0];
        frame.advance(5);
        Ok(Some(Frame { tag, body: frame }))
    }

    async fn frame(&mut self) -> Result<Frame, WireError> {
        loop {
            if let Some(frame) = self.buffered()? {
                return Ok(frame);
            }
            self.buffer.reserve(READ_CHUNK);
            if self.io.read_buf(&mut self.buffer).await? == 0 {
                return Err(WireError::closed());
            }
        }
    }
}

/// An authenticated replication session that does not stream yet.
pub struct Connection {
    reader: Reader<Stream>,
    out: BytesMut,
}

impl Connection {
    pub async fn connect(config: &Config) -> Result<Connection, WireError> {
        tokio::time::timeout(config.connect_timeout, Self::open(config))
            .await
            .map_err(|_| {
                WireError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer from the server within {} s",
                        config.connect_timeout.as_secs()
                    ),
                ))
            })?
    }

    async fn open(config: &Config) -> Result<Connection, WireError> {
        let stream: Stream = match &config.address {
            Address::Tcp { host, port } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                // Status updates go out at once, not after a delayed ACK.
                tcp.set_nodelay(true)?;
                match &config.tls {
                    Tls::Disable => Box::new(tcp),
                    Tls::Use { config, required } => {
                        negotiate_tls(tcp, host, config.clone(), *required).await?
                    }
                }
            }
            // As libpq: no TLS over a Unix socket.
            Address::Unix { dir, port } => Box::new(
                tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}"))).await?,
            ),
        };
        let mut connection = Connection {
            reader: Reader::new(stream),
            out: BytesMut::new(),
        };
        connection.startup(config).await?;
        Ok(connection)
    }

    async fn send(&mut self) -> Result<(), WireError> {
        self.reader.io.write_all(&self.out).await?;
        self.reader.io.flush().await?;
        self.out.clear();
        Ok(())
    }

    async fn startup(&mut self, config: &Config) -> Result<(), WireError> {
        let mut parameters = vec![
            ("user", config.user.as_str()),
            ("database", config.database.as_str()),
            ("replication", "database"),
            ("client_encoding", "UTF8"),
            ("application_name", config.application_name.as_str()),
        ];
        if let Some(options) = &config.options {
            parameters.push(("options", options.as_str()));
        }
        frontend::startup_message(parameters, &mut self.out)?;
        self.send().await?;
        self.authenticate(config).await?;
        // Parameter statuses and the backend key, up to the first ReadyForQuery.
        loop {
            let frame = self.reader.frame().await?;
            match frame.tag {
                b'Z' => return Ok(()),
                b'E' => return Err(server_error(&frame.body)),
                _ => {}
            }
        }
    }

    async fn authenticate(&mut self, config: &Config) -> Result<(), WireError> {
        let password = || {
            config.password.as_deref().ok_or_else(|| {
                WireError::Auth(format!(
                    "the server asks for the password of user {}, and the database url gives \
                     none",
                    config.user
                ))
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            let frame = self.reader.frame().await?;
            let mut body = frame.body;
            match frame.tag {
                b'R' => {}
                b'E' => return Err(server_error(&body)),
                tag => {
                    return Err(WireError::Protocol(format!(
                        "the server sent message {:?} during authentication",
                        tag as char
                    )));
                }
            }
            if body.len() < 4 {
                return Err(WireError::Protocol("a short authentication request".into()));
            }
            match body.get_i32() {
                0 => return Ok(()),
                3 => {
                    frontend::password_message(password()?, &mut self.out)?;
                    self.send().await?;
                }
                5 => {
                    let salt: [u8; 4] = body.as_ref().try_into().map_err(|_| {
                        WireError::Protocol("an MD5 request without its salt".into())
                    })?;
                    let hash = md5_hash(config.user.as_bytes(), password()?, salt);
                    frontend::password_message(hash.as_bytes(), &mut self.out)?;
                    self.send().await?;
                }
                10 => {
                    let offers_scram = body
                        .split(|byte| *byte == 0)
                        .any(|mechanism| mechanism == SCRAM_SHA_256.as_bytes());
                    if !offers_scram {
                        return Err(WireError::Auth(format!(
                            "the server offers SASL mechanisms {:?} and cdc-tui speaks \
                             SCRAM-SHA-256 only",
                            String::from_utf8_lossy(&body).trim_matches('\0')
                        )));
                    }
                    let session = ScramSha256::new(password()?, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(
                        SCRAM_SHA_256,
                        session.message(),
                        &mut self.out,
                    )?;
                    self.send().await?;
                    scram = Some(session);
                }
                11 => {
                    let session = scram.as_mut().ok_or_else(|| {
                        WireError::Protocol("a SASL continuation before SASL began".into())
                    })?;
                    session.update(&body).map_err(scram_error)?;
                    frontend::sasl_response(session.message(), &mut self.out)?;
                    self.send().await?;
                }
                12 => {
                    let session = scram.as_mut().ok_or_else(|| {
                        WireError::Protocol("a SASL final message before SASL began".into())
                    })?;
                    session.finish(&body).map_err(scram_error)?;
                }
                method => {
                    return Err(WireError::Auth(format!(
                        "the server asks for an authentication method cdc-tui does not speak \
                         (request {method}: Kerberos, GSSAPI or SSPI); allow scram-sha-256, md5 \
                         or password for user {} in pg_hba.conf",
                        config.user
                    )));
                }
            }
        }
    }

    /// Runs one command; returns its rows (text values, `None` for NULL).
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WireError> {
        frontend::query(sql, &mut self.out)?;
        self.send().await?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            let frame = self.reader.frame().await?;
            match frame.tag {
                b'D' => rows.push(data_row(frame.body)?),
                b'E' => failed = Some(server_error(&frame.body)),
                b'Z' => return failed.map_or(Ok(rows), Err),
                // Row descriptions, command tags, notices.
                _ => {}
            }
        }
    }

    /// Sends `command` (START_REPLICATION) and, once the server answers with CopyBoth, hands
    /// the session to a [`ReplicationStream`] that acknowledges `feedback.applied` until told
    /// more.
    pub async fn start_replication(
        mut self,
        command: &str,
        feedback: Feedback,
    ) -> Result<ReplicationStream, WireError> {
        frontend::query(command, &mut self.out)?;
        self.send().await?;
        loop {
            let frame = self.reader.frame().await?;
            match frame.tag {
                b'W' => break,
                b'E' => return Err(server_error(&frame.body)),
                // Notices, parameter statuses.
                _ => {}
            }
        }
        let Reader { io, buffer } = self.reader;
        let (read, write) = tokio::io::split(io);
        let progress = Arc::new(Progress {
            applied: AtomicU64::new(feedback.applied),
            reply_requested: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let (stop, stopped) = oneshot::channel();
        let writer = tokio::spawn(send_status(write, progress.clone(), feedback, stopped));
        Ok(ReplicationStream {
            reader: Reader { io: read, buffer },
            progress,
            writer: Some(writer),
            stop: Some(stop),
        })
    }
}

/// SSLRequest, then the handshake; or plain TCP where the server has no TLS and it is not
/// required.
async fn negotiate_tls(
    mut tcp: tokio::net::TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
    required: bool,
) -> Result<Stream, WireError> {
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await?;
    match tcp.read_u8().await? {
        b'S' => {}
        b'N' if !required => return Ok(Box::new(tcp)),
        b'N' => {
            return Err(WireError::Tls {
                message: "the server does not support TLS, and the url's sslmode requires it \
                          (use sslmode=prefer or disable to connect without)"
                    .to_string(),
                permanent: true,
            });
        }
        other => {
            return Err(WireError::Protocol(format!(
                "the server answered the TLS request with {:?}",
                other as char
            )));
        }
    }
    let name = ServerName::try_from(host.to_string()).map_err(|_| WireError::Tls {
        message: format!("{host:?} is not a host name TLS can check"),
        permanent: true,
    })?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|error| {
            match error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(rustls_error) => {
                    let message = describe_rustls_error(rustls_error);
                    WireError::Tls {
                        permanent: message.starts_with("TLS: "),
                        message,
                    }
                }
                None => WireError::Tls {
                    message: format!("TLS handshake failed: {error}"),
                    permanent: false,
                },
            }
        })?;
    Ok(Box::new(tls))
}

fn scram_error(error: io::Error) -> WireError {
    WireError::Auth(format!("SCRAM authentication failed: {error}"))
}

/// An ErrorResponse as `message (SQLSTATE code)`.
fn server_error(body: &[u8]) -> WireError {
    let (mut message, mut code) = (None, None);
    for field in body.split(|byte| *byte == 0) {
        match field.split_first() {
            Some((b'M', text)) => message = Some(String::from_utf8_lossy(text)),
            Some((b'C', text)) => code = Some(String::from_utf8_lossy(text)),
            _ => {}
        }
    }
    WireError::Server(match (message, code) {
        (Some(message), Some(code)) => format!("{message} (SQLSTATE {code})"),
        (Some(message), None) => message.into_owned(),
        (None, Some(code)) => format!("error (SQLSTATE {code})"),
        (None, None) => "an error without a message".to_string(),
    })
}

fn data_row(mut body: Bytes) -> Result<Vec<Option<String>>, WireError> {
    let short = || WireError::Protocol("a short data row".into());
    if body.len() < 2 {
        return Err(short());
    }
    let columns = body.get_u16();
    let mut row = Vec::with_capacity(usize::from(columns));
    for _ in 0..columns {
        if body.len() < 4 {
            return Err(short());
        }
        let length = body.get_i32();
        let Ok(length) = usize::try_from(length) else {
            row.push(None);
            continue;
        };
        if body.len() < length {
            return Err(short());
        }
        row.push(Some(
            String::from_utf8_lossy(&body.split_to(length)).into_owned(),
        ));
    }
    Ok(row)
}

/// How a stream acknowledges.
#[derive(Debug, Clone, Copy)]
pub struct Feedback {
    /// The position acknowledged until [`ReplicationStream::acknowledge`] raises it.
    pub applied: u64,
    /// A raised position goes out at most this long after the last status update.
    pub ack_interval: Duration,
    /// A status update goes out at least this often.
    pub status_interval: Duration,
}

/// Shared between the listener (which raises `applied`) and the status task.
struct Progress {
    applied: AtomicU64,
    /// The server asked for a reply (a keepalive's flag).
    reply_requested: AtomicBool,
    wake: Notify,
}

/// What the server streams.
#[derive(Debug)]
pub enum Event {
    /// One pgoutput message (an XLogData's payload).
    Data(Bytes),
    /// A keepalive: the server's WAL end.
    KeepAlive { wal_end: u64 },
}

/// A streaming session.
pub struct ReplicationStream {
    reader: Reader<ReadHalf<Stream>>,
    progress: Arc<Progress>,
    /// The status task; it hands the write half back when stopped.
    writer: Option<JoinHandle<io::Result<WriteHalf<Stream>>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl ReplicationStream {
    /// The next message; `None` when the server ended the stream (CopyDone). Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Event>, WireError> {
        loop {
            let frame = match self.reader.buffered()? {
                Some(frame) => frame,
                None => {
                    let Some(writer) = self.writer.as_mut() else {
                        return Err(WireError::closed());
                    };
                    tokio::select! {
                        frame = self.reader.frame() => frame?,
                        // The status task ends only on a stop or a failed write.
                        ended = writer => {
                            self.writer = None;
                            return Err(match ended {
                                Ok(Err(error)) => WireError::Io(error),
                                _ => WireError::closed(),
                            });
                        }
                    }
                }
            };
            match frame.tag {
                b'd' => {
                    if let Some(event) = self.copy_data(frame.body)? {
                        return Ok(Some(event));
                    }
                }
                b'c' => return Ok(None),
                b'E' => return Err(server_error(&frame.body)),
                // Notices, parameter statuses.
                _ => {}
            }
        }
    }

    fn copy_data(&mut self, mut body: Bytes) -> Result<Option<Event>, WireError> {
        let short = || WireError::Protocol("a short replication message".into());
        match body.first() {
            // XLogData: start, end, send time, then the payload.
            Some(b'w') if body.len() >= 25 => {
                body.advance(25);
                Ok(Some(Event::Data(body)))
            }
            // Keepalive: WAL end, send time, reply requested.
            Some(b'k') if body.len() >= 18 => {
                body.advance(1);
                let wal_end = body.get_u64();
                body.advance(8);
                if body.get_u8() == 1 {
                    self.progress.reply_requested.store(true, Ordering::Release);
                    self.progress.wake.notify_one();
                }
                Ok(Some(Event::KeepAlive { wal_end }))
            }
            Some(b'w' | b'k') => Err(short()),
            _ => Ok(None),
        }
    }

    /// Raises the acknowledged position (it never goes back); the status task sends it
    /// within the ack interval.
    pub fn acknowledge(&self, lsn: u64) {
        if self.progress.applied.fetch_max(lsn, Ordering::AcqRel) < lsn {
            self.progress.wake.notify_one();
        }
    }

    /// Ends the session by `deadline`: a last status update with the acknowledged position,
    /// CopyDone, the server's CopyDone, CommandComplete and ReadyForQuery (changes still in
    /// flight are dropped: they were not acknowledged), then Terminate.
    pub async fn close(mut self, deadline: Instant) -> Result<(), WireError> {
        let (Some(stop), Some(writer)) = (self.stop.take(), self.writer.take()) else {
            return Err(WireError::closed());
        };
        let _ = stop.send(());
        let mut write = match tokio::time::timeout_at(deadline, writer).await {
            Ok(Ok(Ok(write))) => write,
            Ok(Ok(Err(error))) => return Err(error.into()),
            _ => return Err(timed_out("CopyDone")),
        };
        let until_ready = async {
            loop {
                let frame = self.reader.frame().await?;
                match frame.tag {
                    b'Z' => return Ok(()),
                    b'E' => return Err(server_error(&frame.body)),
                    // The rest of what was in flight, the server's CopyDone, CommandComplete.
                    _ => {}
                }
            }
        };
        tokio::time::timeout_at(deadline, until_ready)
            .await
            .map_err(|_| timed_out("the end of the stream"))??;
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let end = async {
            write.write_all(&out).await?;
            write.flush().await?;
            write.shutdown().await
        };
        tokio::time::timeout_at(deadline, end)
            .await
            .map_err(|_| timed_out("Terminate"))??;
        Ok(())
    }
}

impl Drop for ReplicationStream {
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            writer.abort();
        }
    }
}

fn timed_out(what: &str) -> WireError {
    WireError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the server did not answer in time ({what})"),
    ))
}

/// The status task: a standby status update when the acknowledged position rose (at most one
/// per ack interval), when the server asks, and at least every status interval; on a stop, a
/// last one and CopyDone, then the write half back.
async fn send_status(
    mut write: WriteHalf<Stream>,
    progress: Arc<Progress>,
    feedback: Feedback,
    mut stop: oneshot::Receiver<()>,
) -> io::Result<WriteHalf<Stream>> {
    let mut out = BytesMut::new();
    let mut sent: Option<u64> = None;
    let mut last = Instant::now();
    loop {
        let applied = progress.applied.load(Ordering::Acquire);
        let due = if progress.reply_requested.swap(false, Ordering::AcqRel) {
            Instant::now()
        } else if sent != Some(applied) {
            last + feedback.ack_interval
        } else {
            last + feedback.status_interval
        };
        tokio::select! {
            biased;
            _ = &mut stop => break,
            () = tokio::time::sleep_until(due) => {
                let applied = progress.applied.load(Ordering::Acquire);
                status_update(applied, &mut out);
                write.write_all(&out).await?;
                write.flush().await?;
                out.clear();
                sent = Some(applied);
                last = Instant::now();
            }
            () = progress.wake.notified() => {}
        }
    }
    status_update(progress.applied.load(Ordering::Acquire), &mut out);
    frontend::copy_done(&mut out);
    write.write_all(&out).await?;
    write.flush().await?;
    Ok(write)
}

/// A standby status update ('r' in CopyData): written, flushed and applied all at `lsn`.
fn status_update(lsn: u64, out: &mut BytesMut) {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        });
    out.put_u8(b'd');
    out.put_i32(4 + 34);
    out.put_u8(b'r');
    out.put_u64(lsn);
    out.put_u64(lsn);
    out.put_u64(lsn);
    out.put_i64(micros - PG_EPOCH_UNIX_MICROS);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader<&[u8]> {
        let mut reader = Reader::new(&[][..]);
        reader.buffer.extend_from_slice(bytes);
        reader
    }

    #[test]
    fn messages_are_split_whole() {
        let mut reader = reader(b"Z\0\0\0\x05Id\0\0\0\x07ab");
        let first = reader.buffered().unwrap().unwrap();
        assert_eq!((first.tag, first.body.as_ref()), (b'Z', &b"I"[..]));
        assert!(reader.buffered().unwrap().is_none(), "half a message");
        reader.buffer.extend_from_slice(b"c");
        let second = reader.buffered().unwrap().unwrap();
        assert_eq!((second.tag, second.body.as_ref()), (b'd', &b"abc"[..]));
        let error = self::reader(b"d\0\0\0\x02").buffered().err().unwrap();
        assert!(error.to_string().contains("broken"), "{error}");
    }

    #[test]
    fn server_errors_carry_their_sqlstate() {
        let error = server_error(b"SERROR\0VERROR\0C55006\0Mreplication slot \"s\" is active\0\0");
        assert_eq!(
            error.to_string(),
            "replication slot \"s\" is active (SQLSTATE 55006)"
        );
        assert_eq!(
            server_error(b"C42000\0\0").to_string(),
            "error (SQLSTATE 42000)"
        );
    }

    #[test]
    fn data_rows_read_nulls_and_values() {
        let mut body = BytesMut::new();
        body.put_u16(3);
        body.put_i32(4);
        body.put_slice(b"slot");
        body.put_i32(-1);
        body.put_i32(0);
        assert_eq!(
            data_row(body.freeze()).unwrap(),
            [Some("slot".to_string()), None, Some(String::new())]
        );
        let mut short = BytesMut::new();
        short.put_u16(1);
        short.put_i32(9);
        assert!(data_row(short.freeze()).is_err());
    }

    #[test]
    fn status_updates_have_the_protocols_shape() {
        let mut out = BytesMut::new();
        status_update(0x16_B374_D848, &mut out);
        assert_eq!(out.len(), 1 + 4 + 34);
        assert_eq!(&out[..6], b"d\0\0\0\x26r");
        assert_eq!(&out[6..14], &0x16_B374_D848u64.to_be_bytes());
        assert_eq!(out[38], 0, "no reply asked of the server");
    }
}

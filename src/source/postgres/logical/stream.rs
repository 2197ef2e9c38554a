//! The replication connection: connecting with the URL's parameters, creating the slot on the
//! session that streams it, starting `pgoutput`, and sorting the connection's errors into
//! waiting-may-help or not, each with what to do.

use std::time::Duration;

use pgwire_replication::{Lsn, PgWireError, ReplicationClient, ReplicationConfig};
use tokio_postgres::config::Host;

use crate::secret::DatabaseUrl;
use crate::source::SourceError;
use crate::source::postgres::logical::setup::{parse_lsn, slot_in_use};
use crate::source::postgres::tls::Target;

/// Replication events buffered between the connection's worker and the listener. Small: the
/// handler's queue is the real buffer, and a full buffer here is what slows the server down
/// (while the worker keeps sending status updates).
const EVENT_BUFFER: usize = 256;

/// A flushed position is acknowledged at most this long after the last status update, so a
/// slot's `confirmed_flush_lsn` follows the flushes closely; also the pace of status updates
/// while changes stream in (a small message each, cheap for the server).
const ACK_INTERVAL: Duration = Duration::from_millis(20);

/// Status updates go out at least this often, and at most this seldom.
const STATUS_MIN: Duration = Duration::from_millis(100);
const STATUS_MAX: Duration = Duration::from_secs(5);

/// How often to send standby status updates: a quarter of the server's `wal_sender_timeout`,
/// so a paused or backpressured stream is never timed out.
pub fn status_interval(wal_sender_timeout: Option<Duration>) -> Duration {
    wal_sender_timeout.map_or(STATUS_MAX, |timeout| {
        (timeout / 4).clamp(STATUS_MIN, STATUS_MAX)
    })
}

/// The replication connection's settings, from the same URL the SQL connection uses.
pub async fn replication_config(
    url: &DatabaseUrl,
    slot: &str,
    publication: &str,
    status_interval: Duration,
) -> Result<ReplicationConfig, SourceError> {
    let target = Target::parse(url).map_err(SourceError::permanent)?;
    let parsed = &target.config;
    let host = match (parsed.get_hosts().first(), parsed.get_hostaddrs().first()) {
        (_, Some(address)) => address.to_string(),
        (Some(Host::Tcp(host)), None) => host.clone(),
        (Some(Host::Unix(path)), None) => path.to_string_lossy().into_owned(),
        (None, None) => {
            return Err(SourceError::permanent(
                "the database url names no host".to_string(),
            ));
        }
    };
    let user = parsed
        .get_user()
        .ok_or_else(|| SourceError::permanent("the database url names no user".to_string()))?;
    let password = parsed
        .get_password()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default();
    let database = parsed.get_dbname().unwrap_or(user);
    // The same sslmode and CA file as the SQL connection.
    let port = parsed.get_ports().first().copied().unwrap_or(5432);
    let certificate_name = target.certificate_name(&host, port).await;
    let tls = target.replication_tls(&host, certificate_name.as_deref());
    let mut config = ReplicationConfig::new(host, user, password, database, slot, publication)
        .with_port(port)
        .with_tls(tls)
        .with_start_lsn(Lsn::ZERO)
        .with_status_interval(ACK_INTERVAL.min(status_interval))
        .with_wakeup_interval(status_interval)
        .with_buffer_size(EVENT_BUFFER)
        .with_application_name(format!("cdc-tui {slot}"));
    if let Some(options) = parsed.get_options() {
        config = config.with_options(options);
    }
    Ok(config)
}

/// Creates a logical slot for `pgoutput` on this (gated, not yet streaming) session and
/// returns its consistent point. A temporary slot belongs to this session: it is dropped when
/// the session ends, however it ends.
pub async fn create_slot(
    client: &mut ReplicationClient,
    slot: &str,
    temporary: bool,
    user: &str,
    url: &DatabaseUrl,
) -> Result<u64, SourceError> {
    let command = format!(
        "CREATE_REPLICATION_SLOT {slot}{} LOGICAL pgoutput NOEXPORT_SNAPSHOT",
        if temporary { " TEMPORARY" } else { "" }
    );
    let rows = client
        .simple_query(&command)
        .await
        .map_err(|error| wire_error(&error, slot, user, url))?;
    rows.first()
        .and_then(|row| row.get(1))
        .and_then(Option::as_ref)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(parse_lsn)
        .ok_or_else(|| {
            SourceError::transient(format!(
                "CREATE_REPLICATION_SLOT {slot} answered without a consistent point"
            ))
        })
}

/// The SQLSTATE in a server error's text (`… (SQLSTATE 55006)`).
fn sqlstate(text: &str) -> Option<&str> {
    let (_, rest) = text.rsplit_once("(SQLSTATE ")?;
    rest.strip_suffix(')')
}

/// A replication connection error as a listener error: what happened, in the server's words,
/// and what to do.
pub fn wire_error(error: &PgWireError, slot: &str, user: &str, url: &DatabaseUrl) -> SourceError {
    let text = url.redact(&error.to_string());
    let message = match error {
        PgWireError::Server(server) => server.as_str(),
        _ => text.as_str(),
    };
    let message = url.redact(message);
    match error {
        PgWireError::Server(server) => match sqlstate(server) {
            // The slot is held by another session.
            Some("55006") => {
                let pid = server
                    .split("PID ")
                    .nth(1)
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|pid| pid.parse().ok());
                slot_in_use(slot, pid)
            }
            // All `max_replication_slots` hold a slot: one must go, or the limit go up.
            Some("53400") if message.contains("replication slots") => {
                SourceError::permanent(format!(
                    "{message}: every replication slot is taken; drop an unused one (SELECT \
                     pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT \
                     active) or raise max_replication_slots and restart the server"
                ))
            }
            Some("55000") if message.contains("max_replication_slots > 0") => {
                SourceError::permanent(format!(
                    "{message}: the server allows no replication slots; set \
                     max_replication_slots (to at least the number of listeners) and restart \
                     the server"
                ))
            }
            // Too many connections; the walsender's own limit is `max_wal_senders`.
            Some("53300") if message.contains("max_wal_senders") => {
                if message.contains("(currently 0)") {
                    SourceError::permanent(format!(
                        "{message}: the server allows no replication connections; set \
                         max_wal_senders (to at least the number of listeners plus standbys) \
                         and restart the server"
                    ))
                } else {
                    SourceError::transient(format!(
                        "{message}: every WAL sender is taken (by standbys and other \
                         consumers); waiting for one to be free; stop a consumer or raise \
                         max_wal_senders and restart the server"
                    ))
                }
            }
            Some("42501") => SourceError::permanent(format!(
                "{message}: user {user} needs the REPLICATION privilege for logical replication; \
                 a superuser can grant it with ALTER ROLE {} WITH REPLICATION (or use \
                 strategy = \"polling\")",
                crate::source::postgres::quote_ident(user)
            )),
            Some("55000") if message.contains("wal_level") => SourceError::permanent(format!(
                "{message}: run `ALTER SYSTEM SET wal_level = logical` as a superuser and \
                 restart the server"
            )),
            // Authentication, missing database, a broken or invalidated slot, a bad option:
            // waiting does not help.
            Some(code)
                if code.starts_with("28")
                    || code.starts_with("3D")
                    || code.starts_with("42")
                    || code == "55000"
                    || code == "0A000" =>
            {
                if code == "42704" || code == "42710" {
                    // A slot or publication dropped (or a slot created) behind our back: set
                    // up again.
                    SourceError::transient(message)
                } else {
                    SourceError::permanent(message)
                }
            }
            _ => SourceError::transient(message),
        },
        PgWireError::Tls(_) => SourceError::permanent(format!("replication connection: {text}")),
        PgWireError::Auth(_) | PgWireError::MessageTooLarge { .. } => SourceError::permanent(text),
        _ => SourceError::transient(format!("replication connection: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ErrorKind;

    #[test]
    fn status_updates_beat_the_sender_timeout() {
        assert_eq!(
            status_interval(Some(Duration::from_secs(2))),
            Duration::from_millis(500)
        );
        assert_eq!(
            status_interval(Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
        assert_eq!(status_interval(None), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn config_comes_from_the_url() {
        let url = DatabaseUrl::new("postgres://app:s3cret@db.example:6543/shop?sslmode=disable");
        let config = replication_config(&url, "s", "p", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            (config.host.as_str(), config.port, config.user.as_str()),
            ("db.example", 6543, "app")
        );
        assert_eq!(
            (config.password.as_str(), config.database.as_str()),
            ("s3cret", "shop")
        );
        assert_eq!(config.slot, "s");
    }

    #[test]
    fn server_errors_are_sorted_and_say_what_to_do() {
        let url = DatabaseUrl::new("postgres://app:s3cret@db/shop");
        let error =
            |text: &str| wire_error(&PgWireError::Server(text.into()), "slot_a", "app", &url);
        let busy = error("replication slot \"slot_a\" is active for PID 4242 (SQLSTATE 55006)");
        assert_eq!(busy.kind, ErrorKind::Transient);
        assert!(busy.message.contains("PID 4242"), "{}", busy.message);
        let full = error("all replication slots are in use (SQLSTATE 53400)");
        assert_eq!(full.kind, ErrorKind::Permanent);
        assert!(full.message.contains("max_replication_slots"));
        let no_slots = error(
            "replication slots can only be used if max_replication_slots > 0 (SQLSTATE 55000)",
        );
        assert_eq!(no_slots.kind, ErrorKind::Permanent);
        assert!(no_slots.message.contains("set max_replication_slots"));
        let senders_taken = error(
            "number of requested standby connections exceeds max_wal_senders (currently 2) \
             (SQLSTATE 53300)",
        );
        assert_eq!(senders_taken.kind, ErrorKind::Transient);
        assert!(senders_taken.message.contains("raise max_wal_senders"));
        let no_senders = error(
            "number of requested standby connections exceeds max_wal_senders (currently 0) \
             (SQLSTATE 53300)",
        );
        assert_eq!(no_senders.kind, ErrorKind::Permanent);
        assert!(no_senders.message.contains("set max_wal_senders"));
        let clients = error("sorry, too many clients already (SQLSTATE 53300)");
        assert_eq!(clients.kind, ErrorKind::Transient);
        assert!(
            !clients.message.contains("max_wal_senders"),
            "{}",
            clients.message
        );
        let denied =
            error("must be superuser or replication role to start walsender (SQLSTATE 42501)");
        assert_eq!(denied.kind, ErrorKind::Permanent);
        assert!(denied.message.contains("REPLICATION privilege"));
        assert_eq!(
            error("terminating connection due to administrator command (SQLSTATE 57P01)").kind,
            ErrorKind::Transient
        );
        let io = wire_error(
            &PgWireError::Io(std::sync::Arc::new(std::io::Error::other(
                "reset talking to postgres://app:s3cret@db/shop",
            ))),
            "slot_a",
            "app",
            &url,
        );
        assert_eq!(io.kind, ErrorKind::Transient);
        assert!(!io.message.contains("s3cret"), "{}", io.message);
    }
}

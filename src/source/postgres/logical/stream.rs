//! The replication connection: connecting with the URL's parameters, creating the slot on the
//! session that streams it, starting `pgoutput`, and sorting the connection's errors into
//! waiting-may-help or not, each with what to do.

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::config::Host;

use crate::secret::DatabaseUrl;
use crate::source::SourceError;
use crate::source::postgres::logical::setup::{format_lsn, parse_lsn, slot_in_use};
use crate::source::postgres::logical::wire::{self, Address, Connection, Tls, WireError};
use crate::source::postgres::tls::{SslMode, Target};

/// A flushed position is acknowledged at most this long after the last status update, so a
/// slot's `confirmed_flush_lsn` follows the flushes closely; also the pace of status updates
/// while changes stream in (a small message each, cheap for the server).
pub const ACK_INTERVAL: Duration = Duration::from_millis(20);

/// Status updates go out at least this often, and at most this seldom.
const STATUS_MIN: Duration = Duration::from_millis(100);
const STATUS_MAX: Duration = Duration::from_secs(5);

/// How long connecting may take when the URL gives no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often to send standby status updates: a quarter of the server's `wal_sender_timeout`,
/// so a paused or backpressured stream is never timed out.
pub fn status_interval(wal_sender_timeout: Option<Duration>) -> Duration {
    wal_sender_timeout.map_or(STATUS_MAX, |timeout| {
        (timeout / 4).clamp(STATUS_MIN, STATUS_MAX)
    })
}

/// The replication connection's settings, from the same URL the SQL connection uses (the
/// same host, user, password, database, `options`, and TLS).
pub fn replication_config(url: &DatabaseUrl, slot: &str) -> Result<wire::Config, SourceError> {
    let target = Target::parse(url).map_err(SourceError::permanent)?;
    let parsed = &target.config;
    let port = parsed.get_ports().first().copied().unwrap_or(5432);
    let address = match (parsed.get_hostaddrs().first(), parsed.get_hosts().first()) {
        (Some(address), _) => Address::Tcp {
            host: address.to_string(),
            port,
        },
        (None, Some(Host::Tcp(host))) => Address::Tcp {
            host: host.clone(),
            port,
        },
        (None, Some(Host::Unix(dir))) => Address::Unix {
            dir: PathBuf::from(dir),
            port,
        },
        (None, None) => {
            return Err(SourceError::permanent(
                "the database url names no host".to_string(),
            ));
        }
    };
    let user = parsed
        .get_user()
        .ok_or_else(|| SourceError::permanent("the database url names no user".to_string()))?;
    let tls = match target.mode {
        SslMode::Disable => Tls::Disable,
        mode => Tls::Use {
            config: target.client_config().map_err(SourceError::permanent)?,
            required: mode != SslMode::Prefer,
        },
    };
    Ok(wire::Config {
        address,
        user: user.to_string(),
        password: parsed.get_password().map(<[u8]>::to_vec),
        database: parsed.get_dbname().unwrap_or(user).to_string(),
        application_name: format!("cdc-tui {slot}"),
        options: parsed.get_options().map(str::to_string),
        tls,
        connect_timeout: parsed
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT),
    })
}

/// START_REPLICATION of `slot` from `start` (0: the slot's own position) for pgoutput with
/// logical decoding messages; on PostgreSQL 14+ (`version_num` 140000) protocol version 2 with
/// `streaming`, so a large transaction arrives while it runs, else version 1.
pub fn start_command(slot: &str, start: u64, publication: &str, version_num: i32) -> String {
    let protocol = if version_num >= 140_000 {
        "proto_version '2', streaming 'on'"
    } else {
        "proto_version '1'"
    };
    format!(
        "START_REPLICATION SLOT {slot} LOGICAL {} ({protocol}, publication_names {}, messages \
         'true')",
        format_lsn(start),
        option_literal(&crate::source::postgres::quote_ident(publication)),
    )
}

/// A replication command's option value: the walsender's grammar takes only `'…'` with
/// quotes doubled.
fn option_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Creates a logical slot for `pgoutput` on this (gated, not yet streaming) session and
/// returns its consistent point. A temporary slot belongs to this session: it is dropped when
/// the session ends, however it ends.
pub async fn create_slot(
    connection: &mut Connection,
    slot: &str,
    temporary: bool,
    user: &str,
    url: &DatabaseUrl,
) -> Result<u64, SourceError> {
    let command = format!(
        "CREATE_REPLICATION_SLOT {slot}{} LOGICAL pgoutput NOEXPORT_SNAPSHOT",
        if temporary { " TEMPORARY" } else { "" }
    );
    let rows = connection
        .simple_query(&command)
        .await
        .map_err(|error| wire_error(&error, slot, user, url))?;
    rows.first()
        .and_then(|row| row.get(1))
        .and_then(Option::as_deref)
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
pub fn wire_error(error: &WireError, slot: &str, user: &str, url: &DatabaseUrl) -> SourceError {
    let message = url.redact(&error.to_string());
    match error {
        WireError::Server(server) => match sqlstate(server) {
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
        WireError::Tls {
            permanent: true, ..
        }
        | WireError::Auth(_) => {
            SourceError::permanent(format!("replication connection: {message}"))
        }
        WireError::Tls { .. } | WireError::Io(_) | WireError::Protocol(_) => {
            SourceError::transient(format!("replication connection: {message}"))
        }
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

    #[test]
    fn config_comes_from_the_url() {
        let url = DatabaseUrl::new("postgres://app:s3cret@db.example:6543/shop?sslmode=disable");
        let config = replication_config(&url, "s").unwrap();
        assert_eq!(
            config.address,
            Address::Tcp {
                host: "db.example".into(),
                port: 6543
            }
        );
        assert_eq!(
            (config.user.as_str(), config.database.as_str()),
            ("app", "shop")
        );
        assert_eq!(config.password.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(config.application_name, "cdc-tui s");
        assert!(matches!(config.tls, Tls::Disable));
        let config = replication_config(&DatabaseUrl::new("postgres://app@db/shop"), "s").unwrap();
        assert!(
            matches!(
                config.tls,
                Tls::Use {
                    required: false,
                    ..
                }
            ),
            "prefer: TLS when the server has it"
        );
        assert_eq!(config.password, None);
        let config = replication_config(
            &DatabaseUrl::new("postgres://app@db/shop?sslmode=verify-full&sslrootcert=system"),
            "s",
        )
        .unwrap();
        assert!(matches!(config.tls, Tls::Use { required: true, .. }));
        let config = replication_config(
            &DatabaseUrl::new("postgres://app@%2Ftmp%2Fpg:5433/shop"),
            "s",
        )
        .unwrap();
        assert_eq!(
            config.address,
            Address::Unix {
                dir: "/tmp/pg".into(),
                port: 5433
            }
        );
    }

    #[test]
    fn the_start_command_quotes_the_publication_and_streams_from_14() {
        assert_eq!(
            start_command("slot_a", 0x16_B374_D848, "pub_a", 150_004),
            "START_REPLICATION SLOT slot_a LOGICAL 16/B374D848 (proto_version '2', streaming \
             'on', publication_names '\"pub_a\"', messages 'true')"
        );
        assert_eq!(
            start_command("slot_a", 0, "pub_a", 130_010),
            "START_REPLICATION SLOT slot_a LOGICAL 0/0 (proto_version '1', publication_names \
             '\"pub_a\"', messages 'true')"
        );
    }

    #[test]
    fn server_errors_are_sorted_and_say_what_to_do() {
        let url = DatabaseUrl::new("postgres://app:s3cret@db/shop");
        let error = |text: &str| wire_error(&WireError::Server(text.into()), "slot_a", "app", &url);
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
            &WireError::Io(std::io::Error::other(
                "reset talking to postgres://app:s3cret@db/shop",
            )),
            "slot_a",
            "app",
            &url,
        );
        assert_eq!(io.kind, ErrorKind::Transient);
        assert!(!io.message.contains("s3cret"), "{}", io.message);
    }
}

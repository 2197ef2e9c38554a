//! How far behind a listener is, in words and a warning level: the time from a change's commit
//! to its capture (or, when idle, since the last commit), and the server's WAL past what the
//! slot acknowledged.

use chrono::{DateTime, TimeDelta, Utc};

use crate::registry::{Lag, ServerLag};
use crate::units;

/// No capture for this long: the listener is idle, and its lag is the time since the last commit.
const IDLE_AFTER: TimeDelta = TimeDelta::seconds(5);
const WARN_TIME: TimeDelta = TimeDelta::seconds(1);
const BAD_TIME: TimeDelta = TimeDelta::seconds(30);
const WARN_BYTES: u64 = 16 << 20;
const BAD_BYTES: u64 = 1 << 30;
/// Below this much `safe_wal_size`, the slot is close to losing the WAL it needs.
const RISKY_SAFE_WAL: i64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Normal,
    Warn,
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLag {
    /// The newest change was captured this long after its commit.
    Behind(TimeDelta),
    /// Nothing captured lately; the last commit seen was this long ago.
    Idle(TimeDelta),
}

pub fn time_lag(lag: &Lag, now: DateTime<Utc>) -> Option<TimeLag> {
    let commit = lag.last_commit?;
    let capture = lag.last_capture?;
    Some(if now - capture > IDLE_AFTER {
        TimeLag::Idle(now - commit)
    } else {
        TimeLag::Behind((capture - commit).max(TimeDelta::zero()))
    })
}

fn time_level(lag: Option<TimeLag>) -> Level {
    match lag {
        Some(TimeLag::Behind(behind)) if behind >= BAD_TIME => Level::Bad,
        Some(TimeLag::Behind(behind)) if behind >= WARN_TIME => Level::Warn,
        _ => Level::Normal,
    }
}

fn bytes_level(server: &ServerLag) -> Level {
    let by_bytes = match server.bytes {
        Some(bytes) if bytes >= BAD_BYTES => Level::Bad,
        Some(bytes) if bytes >= WARN_BYTES => Level::Warn,
        _ => Level::Normal,
    };
    by_bytes.max(slot_level(server))
}

/// How much the slot's `wal_status` and `safe_wal_size` put it at risk.
pub fn slot_level(server: &ServerLag) -> Level {
    let by_status = match server.wal_status.as_deref() {
        Some("lost" | "unreserved") => Level::Bad,
        Some("extended") => Level::Warn,
        _ => Level::Normal,
    };
    let by_safe = match server.safe_wal_size {
        Some(safe) if safe <= 0 => Level::Bad,
        Some(safe) if safe < RISKY_SAFE_WAL => Level::Warn,
        _ => Level::Normal,
    };
    by_status.max(by_safe)
}

/// The lag in a few columns for the listeners table: the WAL behind when that is what
/// warns, else the time. `-` when the source says nothing.
pub fn compact(lag: &Lag, now: DateTime<Utc>) -> (String, Level) {
    let time = time_lag(lag, now);
    let (time_level, bytes_level) = (time_level(time), bytes_level(&lag.server));
    let level = time_level.max(bytes_level);
    let text = match (time, lag.server.bytes) {
        (_, Some(bytes)) if bytes_level > time_level => format!("{}B", short_bytes(bytes)),
        (Some(TimeLag::Behind(behind)), _) => duration(behind),
        (Some(TimeLag::Idle(idle)), _) => format!("idle {}", duration(idle)),
        (None, Some(bytes)) => format!("{}B", short_bytes(bytes)),
        (None, None) => "-".to_string(),
    };
    (text, level)
}

/// Every lag fact, for the listener detail: lines of text and their level.
pub fn described(lag: &Lag, now: DateTime<Utc>) -> Vec<(String, Level)> {
    let mut lines = Vec::new();
    let time = time_lag(lag, now);
    lines.push((
        match time {
            Some(TimeLag::Behind(behind)) => {
                format!(
                    "{} from commit to capture (newest change)",
                    duration(behind)
                )
            }
            Some(TimeLag::Idle(idle)) => {
                format!("idle: the last commit seen was {} ago", duration(idle))
            }
            None => "no change with a commit time captured yet".to_string(),
        },
        time_level(time),
    ));
    let server = &lag.server;
    if let Some(bytes) = server.bytes {
        lines.push((
            format!(
                "{} of WAL on the server past the acknowledged position",
                units::bytes(bytes)
            ),
            bytes_level(&ServerLag {
                wal_status: None,
                safe_wal_size: None,
                ..server.clone()
            }),
        ));
    }
    let risk = slot_level(server);
    if server.wal_status.is_some() || server.safe_wal_size.is_some() {
        let status = server.wal_status.as_deref().unwrap_or("unknown");
        let safe = server.safe_wal_size.map_or_else(
            || "no limit (max_slot_wal_keep_size = -1)".to_string(),
            |safe| units::bytes(safe.max(0) as u64),
        );
        let warning = match risk {
            Level::Normal => "",
            Level::Warn => ": the slot is at risk of losing the WAL it needs",
            Level::Bad => ": the slot is losing (or lost) the WAL it needs",
        };
        lines.push((
            format!("slot wal_status {status}, safe_wal_size {safe}{warning}"),
            risk,
        ));
    }
    lines
}

/// `850ms`, `1.2s`, `14s`, `3m`, `2h`.
pub fn duration(delta: TimeDelta) -> String {
    let millis = delta.num_milliseconds().max(0);
    match millis {
        0..1_000 => format!("{millis}ms"),
        1_000..10_000 => format!("{:.1}s", millis as f64 / 1e3),
        10_000..60_000 => format!("{}s", millis / 1_000),
        60_000..3_600_000 => format!("{}m", millis / 60_000),
        _ => format!("{}h", millis / 3_600_000),
    }
}

/// `512`, `4.1K`, `12M`, `1.5G`, for a narrow column.
fn short_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::testing::at;

    fn lag(commit: i64, capture: i64, bytes: Option<u64>) -> Lag {
        Lag {
            last_commit: Some(at(commit)),
            last_capture: Some(at(capture)),
            server: ServerLag {
                bytes,
                ..ServerLag::default()
            },
        }
    }

    #[test]
    fn time_lag_is_commit_to_capture_or_idle_time() {
        let now = at(10_000);
        assert_eq!(
            compact(&lag(9_000, 9_012, None), now),
            ("12ms".into(), Level::Normal)
        );
        assert_eq!(
            compact(&lag(7_000, 9_500, None), now),
            ("2.5s".into(), Level::Warn)
        );
        assert_eq!(
            compact(&lag(-40_000, 9_000, None), now),
            ("49s".into(), Level::Bad)
        );
        assert_eq!(
            compact(&lag(-170_000, -170_000, None), now),
            ("idle 3m".into(), Level::Normal),
            "idle is no warning"
        );
        assert_eq!(compact(&Lag::default(), now), ("-".into(), Level::Normal));
    }

    #[test]
    fn bytes_show_when_they_warn_and_a_slot_at_risk_says_so() {
        let now = at(10_000);
        assert_eq!(
            compact(&lag(9_000, 9_012, Some(40 << 20)), now),
            ("40MB".into(), Level::Warn)
        );
        assert_eq!(compact(&lag(9_000, 9_012, Some(100)), now).0, "12ms");
        let mut risky = lag(9_000, 9_012, Some(100));
        risky.server.wal_status = Some("unreserved".into());
        risky.server.safe_wal_size = Some(-5);
        assert_eq!(compact(&risky, now), ("100B".into(), Level::Bad));
        let lines = described(&risky, now);
        assert_eq!(
            lines.last().unwrap(),
            &(
                "slot wal_status unreserved, safe_wal_size 0 B: the slot is losing (or lost) the \
                 WAL it needs"
                    .to_string(),
                Level::Bad
            )
        );
    }
}

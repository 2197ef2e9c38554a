//! How a source's errors are sorted: the supervisor retries transient ones with backoff and
//! fails the listener on permanent ones, with the message as its state's reason.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Waiting may help (the database is down, the connection dropped): retry with backoff.
    Transient,
    /// Waiting will not help (no such table, no privilege): the listener fails.
    Permanent,
    /// The user stopped the listener (or the program is shutting down).
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub kind: ErrorKind,
    pub message: String,
}

impl SourceError {
    pub fn transient(message: impl Into<String>) -> Self {
        SourceError {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        SourceError {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }

    pub fn stopped() -> Self {
        SourceError {
            kind: ErrorKind::Stopped,
            message: "stopped".into(),
        }
    }
}

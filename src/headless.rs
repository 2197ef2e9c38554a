//! Headless mode: JSON lines on stdout (status, change, flush, error) and control commands on
//! stdin. Change and flush lines come from the handler's stdout sink; this module writes the
//! status and error lines. Every line is one write, so lines never interleave.

use std::io::Write;
use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, oneshot};

use crate::change::format_time;
use crate::registry::{ListenerSnapshot, StatusEvent};
use crate::runtime::{Command, Runtime};

/// Writes one JSON line to stdout. A closed stdout is ignored here: the handler's sink sees
/// the same error on its next batch and ends the run.
pub fn print_line(value: &serde_json::Value) {
    let mut line = value.to_string();
    line.push('\n');
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(line.as_bytes());
    let _ = stdout.flush();
}

pub fn status_line(event: &StatusEvent) -> serde_json::Value {
    json!({
        "type": "status",
        "listener": &*event.identity,
        "state": event.state.as_str(),
        "reason": event.reason,
        "at": format_time(&event.at),
    })
}

fn snapshot_line(snapshot: &ListenerSnapshot) -> serde_json::Value {
    json!({
        "type": "status",
        "listener": &*snapshot.identity,
        "state": snapshot.state.as_str(),
        "reason": snapshot.reason,
        "at": format_time(&chrono::Utc::now()),
    })
}

fn error_line(message: &str) -> serde_json::Value {
    json!({"type": "error", "message": message})
}

/// Prints status lines as states change; once `done` fires, prints what is left and ends.
pub async fn print_status_events(
    mut events: broadcast::Receiver<StatusEvent>,
    mut done: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(event) => print_line(&status_line(&event)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!("{missed} status events were skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = &mut done => break,
        }
    }
    while let Ok(event) = events.try_recv() {
        print_line(&status_line(&event));
    }
}

/// Reads control commands from stdin until it ends; end of input does not stop capture.
pub async fn read_commands(runtime: Arc<Runtime>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) if line.trim().is_empty() => continue,
            Ok(Some(line)) => answer(&runtime, &line),
            Ok(None) => return,
            Err(error) => {
                tracing::warn!("stdin: {error}");
                return;
            }
        }
    }
}

/// Answers a command with the listener's status, or an error line.
fn answer(runtime: &Runtime, line: &str) {
    match Command::parse(line).and_then(|command| runtime.execute(command)) {
        Ok(handle) => print_line(&snapshot_line(&handle.snapshot())),
        Err(message) => print_line(&error_line(&message)),
    }
}

//! Headless mode: JSON lines on stdout (status, change, flush, error) and control commands on
//! stdin. Change and flush lines come from the handler's stdout sink; this module writes the
//! status and error lines. Every line is one write, so lines never interleave.

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, oneshot};

use crate::change::format_time;
use crate::registry::{Control, ListenerHandle, ListenerState, RunningTransaction, StatusEvent};
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

/// A status line: the listener, its state and why, at a time.
fn status_line(
    identity: &str,
    state: ListenerState,
    reason: Option<&str>,
    at: &DateTime<Utc>,
) -> serde_json::Value {
    json!({
        "type": "status",
        "listener": identity,
        "state": state.as_str(),
        "reason": reason,
        "at": format_time(at),
    })
}

fn event_line(event: &StatusEvent) -> serde_json::Value {
    status_line(
        &event.identity,
        event.state,
        event.reason.as_deref(),
        &event.at,
    )
}

/// A command's answer: the status line, and the listener's transactions that are still
/// running (streamed by the server while they run), when there are any.
fn answer_line(
    identity: &str,
    state: ListenerState,
    reason: Option<&str>,
    running: &[RunningTransaction],
    at: &DateTime<Utc>,
) -> serde_json::Value {
    let mut line = status_line(identity, state, reason, at);
    if !running.is_empty() {
        line["running"] = running
            .iter()
            .map(|tx| {
                let tables: Vec<&str> = tx.tables.iter().map(|table| &**table).collect();
                json!({
                    "id": &*tx.id,
                    "changes": tx.changes,
                    "discarded": tx.discarded,
                    "tables": tables,
                })
            })
            .collect();
    }
    line
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
                Ok(event) => print_line(&event_line(&event)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!("{missed} status events were skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = &mut done => break,
        }
    }
    drain(&mut events, |event| print_line(&event_line(&event)));
}

/// Hands `print` every event still queued, past any the channel dropped for lagging.
fn drain(events: &mut broadcast::Receiver<StatusEvent>, mut print: impl FnMut(StatusEvent)) {
    use broadcast::error::TryRecvError;
    loop {
        match events.try_recv() {
            Ok(event) => print(event),
            Err(TryRecvError::Lagged(missed)) => {
                tracing::warn!("{missed} status events were skipped");
            }
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
}

/// Serves headless mode until nothing can progress: reads control commands from stdin until
/// it ends (capture goes on), then waits until every listener is stopped or failed (while one
/// runs, pauses or retries, it could still deliver). `Ok` when every listener was stopped on
/// purpose (a `stop` command; none at all counts), else the error names the ones that were
/// not (exit 1). A signal ends the run sooner, elsewhere.
pub async fn serve(runtime: Arc<Runtime>) -> anyhow::Result<()> {
    read_commands(runtime.clone()).await;
    let registry = runtime.registry();
    // Subscribed before looking, so no state change falls between a look and the wait.
    let mut events = registry.subscribe();
    loop {
        if let Some(outcome) = nothing_can_progress(&registry.handles()) {
            return outcome.map_err(|failed| {
                anyhow::anyhow!(
                    "stdin is closed and no listener can go on: {}",
                    failed.join("; ")
                )
            });
        }
        // A lag only means: look again.
        if let Err(broadcast::error::RecvError::Closed) = events.recv().await {
            // No listener can announce anything any more; a signal ends the run.
            std::future::pending::<()>().await;
        }
    }
}

/// `None` while a listener can still progress; `Some(Ok)` when every one was stopped on
/// purpose, else `Some(Err)` with each other one and its state (and reason).
fn nothing_can_progress(handles: &[Arc<ListenerHandle>]) -> Option<Result<(), Vec<String>>> {
    let mut not_on_purpose = Vec::new();
    for handle in handles {
        let snapshot = handle.snapshot();
        if !snapshot.state.is_final() {
            return None;
        }
        let on_purpose =
            snapshot.state == ListenerState::Stopped && handle.control() == Control::Stop;
        if !on_purpose {
            not_on_purpose.push(match snapshot.reason {
                Some(reason) => format!("{} {}: {reason}", snapshot.identity, snapshot.state),
                None => format!("{} {}", snapshot.identity, snapshot.state),
            });
        }
    }
    Some(if not_on_purpose.is_empty() {
        Ok(())
    } else {
        Err(not_on_purpose)
    })
}

/// Reads control commands from stdin until it ends; end of input does not stop capture.
async fn read_commands(runtime: Arc<Runtime>) {
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
    let outcome = Command::parse(line)
        .and_then(|command| runtime.execute(command).map_err(|error| error.to_string()));
    match outcome {
        Ok(handle) => {
            let snapshot = handle.snapshot();
            print_line(&answer_line(
                &snapshot.identity,
                snapshot.state,
                snapshot.reason.as_deref(),
                &snapshot.running,
                &Utc::now(),
            ));
        }
        Err(message) => print_line(&error_line(&message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(identity: &str) -> StatusEvent {
        StatusEvent {
            identity: identity.into(),
            state: ListenerState::Running,
            reason: None,
            at: Utc::now(),
        }
    }

    #[test]
    fn nothing_can_progress_once_every_listener_is_stopped_or_failed() {
        use crate::config::ListenerConfig;
        use crate::registry::Registry;
        let registry = Registry::new();
        assert_eq!(
            nothing_can_progress(&registry.handles()),
            Some(Ok(())),
            "none at all"
        );
        let add = |name: &str| {
            registry
                .add(ListenerConfig::new(name, "shop", "public.t", "polling"))
                .unwrap()
        };
        let (a, b) = (add("a"), add("b"));
        assert_eq!(nothing_can_progress(&registry.handles()), None, "starting");
        registry.stop("a/public.t").unwrap();
        a.set_state(ListenerState::Stopped, None);
        for (state, reason) in [
            (ListenerState::Running, None),
            (ListenerState::Paused, None),
            (
                ListenerState::Retrying,
                Some("connection refused".to_string()),
            ),
        ] {
            b.set_state(state, reason);
            assert_eq!(nothing_can_progress(&registry.handles()), None, "{state}");
        }
        b.set_state(ListenerState::Failed, Some("no such table".into()));
        assert_eq!(
            nothing_can_progress(&registry.handles()),
            Some(Err(vec!["b/public.t failed: no such table".to_string()]))
        );
        // Stopped on purpose: by a stop command, not a source that ended by itself.
        let c = add("c");
        c.set_state(ListenerState::Stopped, None);
        registry.stop("b/public.t").unwrap();
        let outcome = nothing_can_progress(&registry.handles());
        assert_eq!(
            outcome,
            Some(Err(vec![
                "b/public.t failed: no such table".to_string(),
                "c/public.t stopped".to_string()
            ]))
        );
        registry.stop("c/public.t").unwrap();
        b.set_state(ListenerState::Stopped, None);
        assert_eq!(nothing_can_progress(&registry.handles()), Some(Ok(())));
    }

    #[test]
    fn the_final_drain_goes_on_past_a_lag() {
        let (sender, mut events) = broadcast::channel(2);
        for identity in ["a", "b", "c", "d"] {
            sender.send(event(identity)).unwrap();
        }
        let mut seen = Vec::new();
        drain(&mut events, |event| seen.push(event.identity.to_string()));
        assert_eq!(seen, ["c", "d"]);
    }

    #[test]
    fn a_status_line_has_the_documented_shape() {
        let line = event_line(&StatusEvent {
            reason: Some("why".into()),
            ..event("o/public.t")
        });
        assert_eq!(line["type"], "status");
        assert_eq!(line["listener"], "o/public.t");
        assert_eq!(line["state"], ListenerState::Running.as_str());
        assert_eq!(line["reason"], "why");
        assert!(line["at"].is_string());
        let keys = |value: &serde_json::Value| {
            value
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&line), ["type", "listener", "state", "reason", "at"]);

        let at = Utc::now();
        let idle = answer_line("o/public.t", ListenerState::Running, None, &[], &at);
        assert_eq!(
            idle,
            status_line("o/public.t", ListenerState::Running, None, &at)
        );
        let running = [RunningTransaction {
            id: "901".into(),
            changes: 180_000,
            discarded: 20,
            tables: vec!["public.events".into()],
        }];
        let busy = answer_line("o/public.t", ListenerState::Running, None, &running, &at);
        assert_eq!(
            busy["running"],
            json!([{"id": "901", "changes": 180_000, "discarded": 20, "tables": ["public.events"]}])
        );
        assert_eq!(
            keys(&busy),
            ["type", "listener", "state", "reason", "at", "running"]
        );
    }
}

//! Sources: one folder per database. Every listener runs as one task under `run_listener`,
//! which turns errors into states (`retrying` with capped exponential backoff, or `failed`)
//! so a failing listener never stops the others and no error is printed and forgotten.

pub mod mongo;
pub mod postgres;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::change::Change;
use crate::config::Strategy;
use crate::pipeline::ChangeSender;
use crate::positions::PositionStore;
use crate::registry::{Control, ListenerHandle, ListenerState};
use crate::secret::DatabaseUrl;

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

/// How long a stopping listener waits for its last changes to be flushed before it gives up
/// saving their position (they are then delivered again after a restart).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopped source may take to drain and save before it is cancelled.
const STOP_GRACE: Duration = Duration::from_secs(12);

/// What a source needs: its handle in the registry, where to send changes, where to save
/// positions, and the user's controls.
pub struct SourceContext {
    pub handle: Arc<ListenerHandle>,
    pub url: DatabaseUrl,
    pub positions: PositionStore,
    changes: ChangeSender,
    control: watch::Receiver<Control>,
    flushed: watch::Receiver<u64>,
    /// The last sequence number handed out, and the last one the handler received.
    assigned_seq: u64,
    last_sent: u64,
    /// Set when the source reached `running` since the last error: the backoff starts over.
    connected: bool,
    /// How far this run's changes were sent, spelled as the source likes: kept across retries
    /// (not across runs), so a source that resumes from an older acknowledged position after a
    /// reconnect can skip what it already sent.
    pub sent_through: Option<String>,
}

impl SourceContext {
    pub fn new(
        handle: Arc<ListenerHandle>,
        url: DatabaseUrl,
        positions: PositionStore,
        changes: ChangeSender,
    ) -> Self {
        SourceContext {
            control: handle.subscribe_control(),
            flushed: handle.subscribe_flushed(),
            handle,
            url,
            positions,
            changes,
            assigned_seq: 0,
            last_sent: 0,
            connected: false,
            sent_through: None,
        }
    }

    pub fn identity(&self) -> &str {
        self.handle.identity()
    }

    /// The sequence number for the next change of this listener.
    pub fn next_seq(&mut self) -> u64 {
        self.assigned_seq += 1;
        self.assigned_seq
    }

    /// The last sequence number sent to the handler (a send a stop cut short does not count).
    pub fn last_sent_seq(&self) -> u64 {
        self.last_sent
    }

    /// Sends a change, waiting while the queue is full (backpressure). A stop ends the wait.
    pub async fn send(&mut self, change: Change) -> Result<(), SourceError> {
        let seq = change.seq;
        tokio::select! {
            biased;
            sent = self.changes.send(change) => {
                sent.map_err(|_| SourceError::stopped())?;
                self.last_sent = seq;
                Ok(())
            }
            () = wait_for_stop(&mut self.control) => Err(SourceError::stopped()),
        }
    }

    /// Runs `future` unless the listener is stopped first.
    pub async fn unless_stopped<F: Future>(&mut self, future: F) -> Result<F::Output, SourceError> {
        tokio::select! {
            biased;
            () = wait_for_stop(&mut self.control) => Err(SourceError::stopped()),
            output = future => Ok(output),
        }
    }

    /// Marks the listener running (connected and reading).
    pub fn set_running(&mut self) {
        self.connected = true;
        self.handle.set_state(ListenerState::Running, None);
    }

    /// Between reads: waits until `deadline` (the next read) while keeping to the user's
    /// controls. Paused (state `paused`), it waits past the deadline until resumed; a flush
    /// returns `Wake::Flushed` at once, even while paused, so the caller saves positions; a
    /// stop is the `Stopped` error.
    pub async fn idle_until(&mut self, deadline: Instant) -> Result<Wake, SourceError> {
        loop {
            let control = *self.control.borrow_and_update();
            let sleep = async {
                match control {
                    Control::Run => tokio::time::sleep_until(deadline).await,
                    Control::Pause | Control::Stop => std::future::pending().await,
                }
            };
            match control {
                Control::Stop => return Err(SourceError::stopped()),
                Control::Pause => self.handle.set_state(ListenerState::Paused, None),
                Control::Run if self.handle.state() == ListenerState::Paused => {
                    self.handle.set_state(ListenerState::Running, None);
                }
                Control::Run => {}
            }
            tokio::select! {
                () = sleep => return Ok(Wake::Deadline),
                Ok(()) = self.flushed.changed() => return Ok(Wake::Flushed),
                Ok(()) = self.control.changed() => {}
            }
        }
    }

    /// Holds a stream the user paused: `None` once it is to run again (the listener marked
    /// running), else marks it paused and waits for what [`SourceContext::wait_until`] waits
    /// for, so the caller acknowledges flushes and keeps its session alive meanwhile; a stop is
    /// the `Stopped` error.
    pub async fn while_paused(&mut self, deadline: Instant) -> Result<Option<Wake>, SourceError> {
        match self.control() {
            Control::Run => {
                self.set_running();
                Ok(None)
            }
            Control::Stop => Err(SourceError::stopped()),
            Control::Pause => {
                self.handle.set_state(ListenerState::Paused, None);
                Ok(Some(self.wait_until(deadline).await))
            }
        }
    }

    /// Waits until `deadline`, a flush of more of this listener's changes, or a change of
    /// the user's control, whichever comes first.
    pub async fn wait_until(&mut self, deadline: Instant) -> Wake {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => Wake::Deadline,
            Ok(()) = self.flushed.changed() => Wake::Flushed,
            Ok(()) = self.control.changed() => Wake::Control,
        }
    }

    pub fn control(&self) -> Control {
        *self.control.borrow()
    }

    /// The highest sequence number the handler has flushed.
    pub fn flushed_seq(&self) -> u64 {
        *self.flushed.borrow()
    }

    /// Waits until every change sent so far is flushed, or `timeout` passes. True when flushed.
    pub async fn drain(&mut self, timeout: Duration) -> bool {
        let target = self.last_sent;
        let deadline = Instant::now() + timeout;
        tokio::time::timeout_at(deadline, self.flushed.wait_for(|&seq| seq >= target))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    /// The saved position of this listener, if any; a state dir that cannot be read fails
    /// the listener, naming the dir.
    pub fn load_position(&self) -> Result<Option<String>, SourceError> {
        self.positions.load(self.identity()).map_err(|error| {
            SourceError::permanent(format!(
                "cannot read the saved position under {}: {error}",
                self.positions.dir().display()
            ))
        })
    }

    /// Saves a position after its changes were flushed; a failure to save fails the listener
    /// loudly rather than acknowledging something that is not stored.
    pub fn save_position(&self, position: &str) -> Result<(), SourceError> {
        self.positions
            .save(self.identity(), position)
            .map_err(|error| {
                SourceError::permanent(format!(
                    "cannot save the position under {}: {error}",
                    self.positions.dir().display()
                ))
            })?;
        self.handle.set_position(position.to_string());
        Ok(())
    }
}

/// Why `SourceContext::wait_until` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Deadline,
    Flushed,
    Control,
}

async fn wait_for_stop(control: &mut watch::Receiver<Control>) {
    if control.wait_for(|c| *c == Control::Stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Source positions waiting for the handler: each is released once every change up to its
/// sequence number is flushed. Bounded by the changes in flight (the queue, the batch being
/// gathered and the one being flushed).
pub struct PendingPositions<T> {
    queue: VecDeque<(u64, T)>,
}

impl<T> Default for PendingPositions<T> {
    fn default() -> Self {
        PendingPositions {
            queue: VecDeque::new(),
        }
    }
}

impl<T> PendingPositions<T> {
    /// `position` is safe to acknowledge once changes up to `seq` are flushed.
    pub fn push(&mut self, seq: u64, position: T) {
        self.queue.push_back((seq, position));
    }

    /// The newest position whose changes are all flushed, dropping the older ones.
    pub fn take_flushed(&mut self, flushed_seq: u64) -> Option<T> {
        let mut released = None;
        while self
            .queue
            .front()
            .is_some_and(|(seq, _)| *seq <= flushed_seq)
        {
            released = self.queue.pop_front().map(|(_, position)| position);
        }
        released
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

/// Capped exponential backoff: 0.5 s, 1 s, 2 s, … up to 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}

/// Runs one listener until it stops or fails, retrying transient errors with backoff.
pub async fn run_listener(mut ctx: SourceContext) {
    let mut backoff = Backoff::default();
    loop {
        ctx.connected = false;
        let mut stop_requested = ctx.handle.subscribe_control();
        let strategy = ctx.handle.config().strategy;
        let result = {
            let run = async {
                match strategy {
                    Strategy::Polling => postgres::polling::run(&mut ctx).await,
                    Strategy::Logical => postgres::logical::run(&mut ctx).await,
                    Strategy::ChangeStream => mongo::run(&mut ctx).await,
                }
            };
            tokio::pin!(run);
            // A source notices a stop itself, drains and saves its position; one stuck in a
            // connect that never answers is given up on after a grace period.
            tokio::select! {
                result = &mut run => result,
                () = wait_for_stop(&mut stop_requested) => {
                    tokio::time::timeout(STOP_GRACE, &mut run)
                        .await
                        .unwrap_or_else(|_| Err(SourceError::stopped()))
                }
            }
        };
        let error = match result {
            Ok(()) => SourceError::stopped(),
            Err(error) => error,
        };
        match error.kind {
            ErrorKind::Stopped => {
                ctx.handle.set_state(ListenerState::Stopped, None);
                return;
            }
            ErrorKind::Permanent => {
                tracing::error!(listener = ctx.identity(), "failed: {}", error.message);
                ctx.handle
                    .set_state(ListenerState::Failed, Some(error.message));
                return;
            }
            ErrorKind::Transient => {
                if ctx.connected {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(
                    listener = ctx.identity(),
                    "retrying in {delay:?}: {}",
                    error.message
                );
                ctx.handle.set_state(
                    ListenerState::Retrying,
                    Some(format!(
                        "{} (next try in {:.1} s)",
                        error.message,
                        delay.as_secs_f64()
                    )),
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = wait_for_stop(&mut ctx.control) => {
                        ctx.handle.set_state(ListenerState::Stopped, None);
                        return;
                    }
                }
                ctx.handle.set_state(ListenerState::Starting, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_positions_release_only_what_is_flushed() {
        let mut pending = PendingPositions::default();
        pending.push(3, "a");
        pending.push(5, "b");
        pending.push(9, "c");
        assert_eq!(pending.take_flushed(2), None);
        assert_eq!(pending.take_flushed(6), Some("b"));
        assert_eq!(pending.take_flushed(8), None);
        assert_eq!(pending.take_flushed(9), Some("c"));
        assert!(pending.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..9).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), BACKOFF_FIRST);
    }
}

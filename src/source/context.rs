//! The API a source uses: its listener's config, sending changes (stamped here, once for every
//! source), saving positions only after their changes were flushed, and the user's controls.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::change::{Change, ChangeEvent, Note, NoteKind};
use crate::config::schema::ListenerConfig;
use crate::pipeline::{Captured, ChangeSender, Item};
use crate::positions::PositionStore;
use crate::registry::{Control, ListenerHandle, ListenerState};
use crate::secret::DatabaseUrl;
use crate::source::SourceError;

/// How long a stopping listener waits for its last changes to be flushed before it gives up
/// saving their position (they are then delivered again after a restart).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a source needs: its listener's config and state, where to send changes, where to
/// save positions, and the user's controls.
pub struct SourceContext {
    handle: Arc<ListenerHandle>,
    pub url: DatabaseUrl,
    pub positions: PositionStore,
    changes: ChangeSender,
    control: watch::Receiver<Control>,
    flushed: watch::Receiver<u64>,
    /// The sequence number of the last change the handler received (a send a stop cut short
    /// does not count); the next change gets the one after it.
    last_sent: u64,
    /// Set when the source reached `running` since the last error: the backoff starts over.
    pub(super) connected: bool,
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
            last_sent: 0,
            connected: false,
            sent_through: None,
        }
    }

    pub fn identity(&self) -> &str {
        self.handle.identity()
    }

    /// The listener's config.
    pub fn config(&self) -> &ListenerConfig {
        self.handle.config()
    }

    /// The last sequence number sent to the handler (a send a stop cut short does not count).
    pub fn last_sent_seq(&self) -> u64 {
        self.last_sent
    }

    /// Sends a change, stamped with this listener, its next sequence number and the capture
    /// time, waiting while the queue is full (backpressure). A stop ends the wait.
    pub async fn emit(&mut self, event: ChangeEvent) -> Result<(), SourceError> {
        let seq = self.last_sent + 1;
        let captured_at = Utc::now();
        if let Some(commit_time) = &event.commit_time {
            self.handle.note_captured(commit_time, &captured_at);
        }
        let captured = Captured {
            listener: self.handle.clone(),
            item: Item::Change(Change {
                listener: self.handle.identity_arc(),
                seq,
                captured_at,
                event,
            }),
        };
        tokio::select! {
            biased;
            sent = self.changes.send(captured) => {
                sent.map_err(|_| SourceError::stopped())?;
                self.last_sent = seq;
                Ok(())
            }
            () = wait_for_stop(&mut self.control) => Err(SourceError::stopped()),
        }
    }

    /// Sends a note to be printed in place among this listener's changes (a schema change),
    /// waiting while the queue is full. A stop ends the wait.
    pub async fn note(&mut self, kind: NoteKind) -> Result<(), SourceError> {
        let captured = Captured {
            listener: self.handle.clone(),
            item: Item::Note(Box::new(Note {
                listener: self.handle.identity_arc(),
                captured_at: Utc::now(),
                kind,
            })),
        };
        tokio::select! {
            biased;
            sent = self.changes.send(captured) => sent.map_err(|_| SourceError::stopped()),
            () = wait_for_stop(&mut self.control) => Err(SourceError::stopped()),
        }
    }

    /// Facts worth showing beside the state (a slot's retained WAL, a hint).
    pub fn set_detail(&self, detail: Option<String>) {
        self.handle.set_detail(detail);
    }

    /// How far the server is ahead of this listener, for the UI.
    pub fn set_server_lag(&self, lag: crate::registry::ServerLag) {
        self.handle.set_server_lag(lag);
    }

    /// Whether a transaction's changes are being captured (a stop would cut it).
    pub fn set_in_transaction(&self, open: bool) {
        self.handle.set_in_transaction(open);
    }

    /// The transactions received while they run and not ended yet, for the UI.
    pub fn set_running_transactions(&self, running: Vec<crate::registry::RunningTransaction>) {
        self.handle.set_running_transactions(running);
    }

    /// A transaction received while it ran rolled back (its changes dropped), for the UI.
    pub fn note_rolled_back(&self, transaction: crate::registry::RunningTransaction) {
        self.handle.note_rolled_back(transaction);
    }

    /// The position the listener last acknowledged, for the UI.
    pub fn set_position(&self, position: String) {
        self.handle.set_position(position);
    }

    /// Marks the listener running, with a note on why it runs as it does (a gap reported).
    pub fn set_running_because(&mut self, reason: String) {
        self.connected = true;
        self.handle.set_state(ListenerState::Running, Some(reason));
    }

    pub(super) fn set_state(&self, state: ListenerState, reason: Option<String>) {
        self.handle.set_state(state, reason);
    }

    pub(super) fn subscribe_control(&self) -> watch::Receiver<Control> {
        self.handle.subscribe_control()
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

pub(super) async fn wait_for_stop(control: &mut watch::Receiver<Control>) {
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
}

//! The event log the UI shows: the newest `capacity` changes. Counters keep counting past it:
//! `pushed` less `len` is how many older entries made room.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::change::Change;

pub struct LogRing {
    capacity: usize,
    inner: Mutex<RingInner>,
}

struct RingInner {
    entries: VecDeque<Change>,
    /// Every change ever pushed, so a reader can tell what is new since its last look.
    pushed: u64,
}

/// What a reader copies out under the lock: a window of entries and the totals.
pub struct LogView<T> {
    pub value: T,
    pub len: usize,
    pub pushed: u64,
}

impl LogRing {
    pub fn new(capacity: usize) -> Self {
        LogRing {
            capacity: capacity.max(1),
            inner: Mutex::new(RingInner {
                entries: VecDeque::with_capacity(capacity.clamp(1, 4096)),
                pushed: 0,
            }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves a flushed batch's changes in, dropping the oldest past the capacity.
    pub fn extend(&self, changes: Vec<Change>) {
        let mut inner = self.lock();
        inner.pushed += changes.len() as u64;
        let skip = changes.len().saturating_sub(self.capacity);
        for change in changes.into_iter().skip(skip) {
            if inner.entries.len() == self.capacity {
                inner.entries.pop_front();
            }
            inner.entries.push_back(change);
        }
    }

    /// Runs `read` on the entries (oldest first) under the lock, with the number of the oldest
    /// entry (the n-th change ever pushed is number n), so a reader can address entries by a
    /// number that stays on the same change while the ring moves on. Copy out what is needed
    /// and draw after, never while holding the lock.
    pub fn view_numbered<T>(&self, read: impl FnOnce(u64, &VecDeque<Change>) -> T) -> LogView<T> {
        let inner = self.lock();
        let first = inner.pushed - inner.entries.len() as u64;
        LogView {
            value: read(first, &inner.entries),
            len: inner.entries.len(),
            pushed: inner.pushed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RingInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

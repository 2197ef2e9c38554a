//! The event log the UI shows: the newest `capacity` changes. Counters keep counting past it:
//! `pushed` less `len` is how many older entries made room. Beside them, the notes among
//! those changes (transactions, messages, schema changes), each with the number of the change
//! it came before, so the UI can group changes by transaction.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::change::{Change, Note};

pub struct LogRing {
    capacity: usize,
    inner: Mutex<RingInner>,
}

struct RingInner {
    entries: VecDeque<Change>,
    /// Every change ever pushed, so a reader can tell what is new since its last look.
    pushed: u64,
    /// At most `capacity` notes, oldest first; they leave with the changes they came before.
    notes: VecDeque<RingNote>,
    /// Every note ever pushed.
    notes_pushed: u64,
}

/// A note in the ring: it came before the change numbered `before` (after the newest change
/// when no change has that number yet).
#[derive(Debug, Clone)]
pub struct RingNote {
    pub before: u64,
    pub note: Note,
}

/// The notes as a reader sees them: `notes[0]` is the `first`-th note ever pushed.
pub struct NotesView<'a> {
    pub first: u64,
    pub notes: &'a VecDeque<RingNote>,
}

impl NotesView<'_> {
    /// The note numbered `number` (the n-th ever pushed), while the ring holds it.
    pub fn get(&self, number: u64) -> Option<&Note> {
        let at = usize::try_from(number.checked_sub(self.first)?).ok()?;
        self.notes.get(at).map(|held| &held.note)
    }
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
                notes: VecDeque::new(),
                notes_pushed: 0,
            }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves a flushed batch's changes in, dropping the oldest past the capacity.
    pub fn extend(&self, changes: Vec<Change>) {
        self.extend_with_notes(changes, Vec::new());
    }

    /// Moves a flushed batch's changes in with its notes, each at the index of the change it
    /// came before (as `Batch::notes` has them).
    pub fn extend_with_notes(&self, changes: Vec<Change>, notes: Vec<(usize, Note)>) {
        let mut inner = self.lock();
        let base = inner.pushed;
        for (at, note) in notes {
            if inner.notes.len() == self.capacity {
                inner.notes.pop_front();
            }
            inner.notes.push_back(RingNote {
                before: base + at as u64,
                note,
            });
            inner.notes_pushed += 1;
        }
        inner.pushed += changes.len() as u64;
        let skip = changes.len().saturating_sub(self.capacity);
        for change in changes.into_iter().skip(skip) {
            if inner.entries.len() == self.capacity {
                inner.entries.pop_front();
            }
            inner.entries.push_back(change);
        }
        // Notes before the oldest change left would group changes no longer there.
        let first = inner.pushed - inner.entries.len() as u64;
        while inner.notes.front().is_some_and(|n| n.before < first) {
            inner.notes.pop_front();
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

    /// As `view_numbered`, with the notes too.
    pub fn view_with_notes<T>(
        &self,
        read: impl FnOnce(u64, &VecDeque<Change>, NotesView) -> T,
    ) -> LogView<T> {
        let inner = self.lock();
        let first = inner.pushed - inner.entries.len() as u64;
        let notes = NotesView {
            first: inner.notes_pushed - inner.notes.len() as u64,
            notes: &inner.notes,
        };
        LogView {
            value: read(first, &inner.entries, notes),
            len: inner.entries.len(),
            pushed: inner.pushed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RingInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

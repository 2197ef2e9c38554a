//! Multi-document transactions in a change stream. The server sends a transaction's events
//! together at its commit, each with the session's `lsid` and the `txnNumber`, but marks
//! neither the first nor the last: a transaction ends where the next event is not of it, or
//! where the stream goes quiet (an empty batch, or no event for [`TRANSACTION_IDLE`]). Each
//! change is handed on at once, with its place in the transaction; only the `transaction`
//! line waits for the end.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::change::{NoteKind, TxRef};

/// A transaction whose next event has not come this long after its last is taken as ended.
/// Its events were all written at its commit and come back to back, so this only delays the
/// `transaction` line, never a change.
pub const TRANSACTION_IDLE: Duration = Duration::from_millis(250);

/// A transaction being read.
#[derive(Debug)]
struct Open {
    id: Arc<str>,
    /// Its first change's position, shared by its changes and its `transaction` line.
    position: Arc<str>,
    commit_time: Option<DateTime<Utc>>,
    changes: u32,
    /// In order of first change.
    tables: Vec<Arc<str>>,
}

impl Open {
    fn note(&self) -> NoteKind {
        NoteKind::Transaction {
            id: Arc::clone(&self.id),
            position: Arc::clone(&self.position),
            commit_time: self.commit_time,
            changes: u64::from(self.changes),
            tables: self.tables.clone(),
            discarded: 0,
        }
    }
}

/// Tracks the transaction the changes being read belong to.
#[derive(Debug, Default)]
pub struct Transactions {
    open: Option<Open>,
    /// The last one ended: should more of it come after all (a stream slower than
    /// [`TRANSACTION_IDLE`]), its changes go on counting from where they were.
    ended: Option<Open>,
}

/// What a change's transaction means for the lines around it.
#[derive(Debug, PartialEq)]
pub struct Placed {
    /// The `transaction` line of the one that ended before this change.
    pub ended: Option<NoteKind>,
    /// The change's place in its transaction.
    pub tx: Option<TxRef>,
}

impl Transactions {
    /// A change of `table` at `position`, written in the transaction `id` (None: a single
    /// write).
    pub fn change(
        &mut self,
        id: Option<&str>,
        table: &Arc<str>,
        position: &Arc<str>,
        commit_time: Option<DateTime<Utc>>,
    ) -> Placed {
        let ended = match (&self.open, id) {
            (Some(open), Some(id)) if &*open.id == id => None,
            (Some(_), _) => self.end(),
            (None, _) => None,
        };
        let Some(id) = id else {
            return Placed { ended, tx: None };
        };
        let open = match self.open.take() {
            Some(open) => open,
            None => match self.ended.take() {
                Some(again) if &*again.id == id => again,
                _ => Open {
                    id: id.into(),
                    position: Arc::clone(position),
                    commit_time,
                    changes: 0,
                    tables: Vec::new(),
                },
            },
        };
        let open = self.open.insert(open);
        open.changes += 1;
        if !open.tables.contains(table) {
            open.tables.push(Arc::clone(table));
        }
        let tx = TxRef {
            id: Arc::clone(&open.id),
            position: Arc::clone(&open.position),
            index: open.changes,
        };
        Placed {
            ended,
            tx: Some(tx),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Ends the open transaction (something else came, or nothing did): its `transaction`
    /// line.
    pub fn end(&mut self) -> Option<NoteKind> {
        let open = self.open.take()?;
        let note = open.note();
        self.ended = Some(open);
        Some(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(note: Option<NoteKind>) -> Option<(String, String, u64, Vec<String>)> {
        match note? {
            NoteKind::Transaction {
                id,
                position,
                changes,
                tables,
                ..
            } => Some((
                id.to_string(),
                position.to_string(),
                changes,
                tables.iter().map(|t| t.to_string()).collect(),
            )),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_transaction_ends_where_the_next_event_is_not_of_it() {
        let mut txs = Transactions::default();
        let (orders, items): (Arc<str>, Arc<str>) = ("shop.orders".into(), "shop.items".into());
        let at = |p: &str| -> Arc<str> { p.into() };
        let single = txs.change(None, &orders, &at("p1"), None);
        assert_eq!(
            single,
            Placed {
                ended: None,
                tx: None
            }
        );
        let first = txs.change(Some("s:1"), &orders, &at("p2"), None);
        assert_eq!(first.ended, None);
        let tx = first.tx.unwrap();
        assert_eq!((&*tx.id, &*tx.position, tx.index), ("s:1", "p2", 1));
        let second = txs.change(Some("s:1"), &items, &at("p3"), None);
        assert_eq!(second.tx.unwrap().index, 2);
        txs.change(Some("s:1"), &orders, &at("p4"), None);
        // The next transaction ends it, before its own first change.
        let next = txs.change(Some("s:2"), &items, &at("p5"), None);
        assert_eq!(
            summary(next.ended),
            Some((
                "s:1".into(),
                "p2".into(),
                3,
                vec!["shop.orders".into(), "shop.items".into()]
            ))
        );
        assert_eq!(next.tx.unwrap().index, 1);
        // A single write ends it too, and has no tx.
        let after = txs.change(None, &orders, &at("p6"), None);
        assert_eq!(summary(after.ended).unwrap().2, 1);
        assert_eq!(after.tx, None);
        assert!(!txs.is_open());
        assert_eq!(txs.end(), None);
    }

    #[test]
    fn a_transaction_ended_by_a_quiet_stream_goes_on_counting_if_more_of_it_comes() {
        let mut txs = Transactions::default();
        let orders: Arc<str> = "shop.orders".into();
        txs.change(Some("s:1"), &orders, &"p1".into(), None);
        assert!(txs.is_open());
        assert_eq!(summary(txs.end()).unwrap().2, 1);
        let late = txs.change(Some("s:1"), &orders, &"p2".into(), None);
        assert_eq!(late.ended, None);
        let tx = late.tx.unwrap();
        assert_eq!((&*tx.position, tx.index), ("p1", 2));
        assert_eq!(summary(txs.end()).unwrap().2, 2);
    }
}

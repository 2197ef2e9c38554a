//! Collates a batch into packets per (listener, table, op). The batch keeps its changes in
//! arrival order (so a listener's insert, update, insert stay in that order); packets are the
//! summary the flush line and the acknowledgements use. A mixed batch keeps every op.

use std::sync::Arc;
use std::time::Duration;

use crate::change::{Change, Note, Op};
use crate::pipeline::{Captured, Item};
use crate::registry::ListenerHandle;

pub struct Packet {
    pub listener: Arc<ListenerHandle>,
    pub table: Arc<str>,
    pub op: Op,
    pub count: usize,
    /// The highest sequence number of this listener in the packet.
    pub last_seq: u64,
}

pub struct Batch {
    /// Batch numbers count from 1 in each run.
    pub number: u64,
    pub changes: Vec<Change>,
    /// Notes among the changes: each goes before the change at its index (after the last
    /// change when the index is `changes.len()`).
    pub notes: Vec<(usize, Note)>,
    pub packets: Vec<Packet>,
    pub waited: Duration,
}

/// The batch's changes in arrival order, its notes in place among them, and its packets in
/// order of first appearance; a batch has few packets, so a linear search beats hashing.
pub fn collate(captured: Vec<Captured>) -> (Vec<Change>, Vec<(usize, Note)>, Vec<Packet>) {
    let mut packets: Vec<Packet> = Vec::new();
    let mut changes = Vec::with_capacity(captured.len());
    let mut notes = Vec::new();
    for Captured { listener, item } in captured {
        let change = match item {
            Item::Change(change) => change,
            Item::Note(note) => {
                notes.push((changes.len(), *note));
                continue;
            }
        };
        let found = packets.iter_mut().find(|packet| {
            Arc::ptr_eq(&packet.listener, &listener)
                && packet.op == change.op
                && packet.table == change.table
        });
        match found {
            Some(packet) => {
                packet.count += 1;
                packet.last_seq = packet.last_seq.max(change.seq);
            }
            None => packets.push(Packet {
                listener,
                table: change.table.clone(),
                op: change.op,
                count: 1,
                last_seq: change.seq,
            }),
        }
        changes.push(change);
    }
    (changes, notes, packets)
}

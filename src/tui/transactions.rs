//! The log grouped by transaction (`t`): changes that share a transaction (listener and `tx`
//! id) are one row, with per-table tallies, the application's `message` labels and, once its
//! `transaction` note arrived, its commit time; before that it is in progress and grows.
//! Changes without a transaction (polling) stay rows of their own.
//!
//! `TxGroups` is kept up to date from the log ring as entries arrive (each entry and note
//! once, under the ring's lock, as the filter does); `GroupedIndex` is the rows one scrolls
//! through, made from the groups, what is expanded and the filter.
//!
//! Rows are addressed like log entries (`LogIndex`), by a number that stays on the same row
//! while the ring moves on: a transaction's row is `2 × anchor` (its first change's number),
//! a change's row `2 × number + 1`, so a transaction's row sorts just before its first change.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};

use crate::change::{Change, Note, NoteKind, Op};
use crate::pipeline::log_ring::NotesView;
use crate::registry::RunningTransaction;
use crate::tui::format;
use crate::tui::log_index::{LogFilter, LogIndex};

/// Labels kept for transactions whose first change has not arrived yet: messages usually come
/// first in their transaction. Bounded, for messages whose transaction never has changes.
const EARLY_LABELS_KEPT: usize = 256;
/// Labels kept per transaction.
const LABELS_KEPT: usize = 8;

/// The row number of a transaction anchored at change `anchor`.
pub fn tx_row(anchor: u64) -> u64 {
    anchor * 2
}

/// The row number of change `number`.
pub fn change_row(number: u64) -> u64 {
    number * 2 + 1
}

/// What a row number stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowRef {
    /// A transaction, by the number of its first change.
    Tx(u64),
    Change(u64),
}

impl RowRef {
    pub fn of(row: u64) -> RowRef {
        if row.is_multiple_of(2) {
            RowRef::Tx(row / 2)
        } else {
            RowRef::Change(row / 2)
        }
    }
}

/// Changes of one table in a transaction, per op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTally {
    pub table: Arc<str>,
    pub counts: [u64; 4],
}

/// One transaction as seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxSummary {
    pub listener: Arc<str>,
    pub id: Arc<str>,
    /// Changes seen, including those that have left the log.
    pub changes: u64,
    /// Changes of its rolled-back subtransactions (savepoints), dropped by the source.
    pub discarded: u64,
    pub tables: Vec<TableTally>,
    /// The `message` contents of the transaction, in order.
    pub labels: Vec<String>,
    pub first_captured: DateTime<Utc>,
    /// Set by its `transaction` note: the transaction is complete.
    pub committed: Option<Committed>,
    /// A streamed transaction that rolled back: its changes were dropped, none delivered.
    pub rolled_back: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub commit_time: Option<DateTime<Utc>>,
    pub position: Arc<str>,
}

impl TxSummary {
    /// `tx 812 · 12:00:01.123 · 5 changes · orders +1, order_items +3, customers ~1`, or
    /// `tx 901 · running · 180,000 changes so far · events +180,000` while in progress, or
    /// `tx 901 · rolled back · 180,000 changes discarded · public.events`; with
    /// `· 120 discarded (rolled-back savepoint)` after the count when savepoints rolled back.
    pub fn describe(&self, zone: FixedOffset) -> String {
        let counted = |count: u64| {
            let plural = if count == 1 { "" } else { "s" };
            format!("{} change{plural}", format::count(count))
        };
        let mut text = match &self.committed {
            // Everything it had went, its savepoints' changes too.
            _ if self.rolled_back => format!(
                "tx {} · rolled back · {} discarded",
                self.id,
                counted(self.changes + self.discarded)
            ),
            Some(committed) => {
                let time = committed.commit_time.unwrap_or(self.first_captured);
                let clock = format::clock(&time, zone);
                format!("tx {} · {clock} · {}", self.id, counted(self.changes))
            }
            None => format!(
                "tx {} · running · {} so far",
                self.id,
                counted(self.changes)
            ),
        };
        if self.discarded > 0 && !self.rolled_back {
            text.push_str(&format!(
                " · {} discarded (rolled-back savepoint)",
                format::count(self.discarded)
            ));
        }
        let tables: Vec<String> = self.tables.iter().map(TableTally::describe).collect();
        format!("{text} · {}", tables.join(", "))
    }
}

impl TxSummary {
    /// A transaction the server streams while it runs, from the listener's counters: its
    /// changes are not in the log before its commit, only how many and of which tables.
    pub fn streamed(
        listener: &Arc<str>,
        transaction: &RunningTransaction,
        since: DateTime<Utc>,
        rolled_back: bool,
    ) -> TxSummary {
        TxSummary {
            listener: listener.clone(),
            id: transaction.id.clone(),
            changes: transaction.changes,
            discarded: transaction.discarded,
            tables: (transaction.tables.iter())
                .map(|table| TableTally {
                    table: table.clone(),
                    counts: [0; 4],
                })
                .collect(),
            labels: Vec::new(),
            first_captured: since,
            committed: None,
            rolled_back,
        }
    }
}

impl TableTally {
    /// `order_items +3 ~1`: the table without its schema, then each op's count; without
    /// counts (a streamed transaction's tables, whose ops are not counted before the commit)
    /// the table's whole name.
    fn describe(&self) -> String {
        if self.counts == [0; 4] {
            return self.table.to_string();
        }
        let name = self.table.rsplit_once('.').map_or(&*self.table, |(_, t)| t);
        let mut text = name.to_string();
        for op in Op::ALL {
            let count = self.counts[op.index()];
            if count > 0 {
                let sign = match op {
                    Op::Insert => "+",
                    Op::Update => "~",
                    Op::Delete => "-",
                    Op::Truncate => "truncated ",
                };
                text.push_str(&format!(" {sign}{}", format::count(count)));
            }
        }
        text
    }
}

#[derive(Debug)]
enum Item {
    Plain(u64),
    Tx(Box<TxItem>),
}

#[derive(Debug)]
struct TxItem {
    anchor: u64,
    /// Numbers of its changes still in the log, ascending.
    members: VecDeque<u64>,
    summary: TxSummary,
}

impl Item {
    fn anchor(&self) -> u64 {
        match self {
            Item::Plain(number) => *number,
            Item::Tx(tx) => tx.anchor,
        }
    }
}

type TxKey = (Arc<str>, Arc<str>);

/// The log's entries as transactions and plain changes, oldest first.
#[derive(Debug, Default)]
pub struct TxGroups {
    items: VecDeque<Item>,
    /// Changes numbered below this have been taken in.
    next_change: u64,
    /// Notes numbered below this have been taken in.
    next_note: u64,
    /// Transactions with no `transaction` note yet, to the anchor of their item.
    open: HashMap<TxKey, u64>,
    early_labels: HashMap<TxKey, Vec<String>>,
}

impl TxGroups {
    /// Takes in what arrived since the last look and drops what left the ring (`first` is the
    /// number of `entries[0]`). True when the groups changed.
    pub fn update(&mut self, first: u64, entries: &VecDeque<Change>, notes: NotesView) -> bool {
        let mut changed = self.evict(first);
        let end = first + entries.len() as u64;
        let notes_end = notes.first + notes.notes.len() as u64;
        let mut note = self.next_note.max(notes.first);
        for number in self.next_change.max(first)..end {
            while note < notes_end && notes.notes[(note - notes.first) as usize].before <= number {
                self.take_note(&notes.notes[(note - notes.first) as usize].note);
                note += 1;
            }
            self.take_change(number, &entries[(number - first) as usize]);
            changed = true;
        }
        while note < notes_end {
            changed |= self.take_note(&notes.notes[(note - notes.first) as usize].note);
            note += 1;
        }
        self.next_change = self.next_change.max(end);
        self.next_note = note;
        changed
    }

    fn evict(&mut self, first: u64) -> bool {
        let mut changed = false;
        // Only items anchored before `first` can hold evicted changes.
        let mut at = 0;
        while at < self.items.len() && self.items[at].anchor() < first {
            let keep = match &mut self.items[at] {
                Item::Plain(_) => false,
                Item::Tx(tx) => {
                    while tx.members.front().is_some_and(|&n| n < first) {
                        tx.members.pop_front();
                    }
                    !tx.members.is_empty()
                }
            };
            if keep {
                at += 1;
            } else {
                if let Some(Item::Tx(tx)) = self.items.remove(at) {
                    let key = (tx.summary.listener.clone(), tx.summary.id.clone());
                    if self.open.get(&key) == Some(&tx.anchor) {
                        self.open.remove(&key);
                    }
                }
                changed = true;
            }
        }
        changed
    }

    fn tx_mut(&mut self, anchor: u64) -> Option<&mut TxItem> {
        let at = self.items.partition_point(|item| item.anchor() < anchor);
        match self.items.get_mut(at) {
            Some(Item::Tx(tx)) if tx.anchor == anchor => Some(tx),
            _ => None,
        }
    }

    fn take_change(&mut self, number: u64, change: &Change) {
        let Some(tx) = &change.tx else {
            self.items.push_back(Item::Plain(number));
            return;
        };
        let key: TxKey = (change.listener.clone(), tx.id.clone());
        let item = match self.open.get(&key).copied() {
            Some(anchor) => self.tx_mut(anchor),
            None => None,
        };
        let item = match item {
            Some(item) => item,
            None => {
                let labels = self.early_labels.remove(&key).unwrap_or_default();
                self.open.insert(key.clone(), number);
                self.items.push_back(Item::Tx(Box::new(TxItem {
                    anchor: number,
                    members: VecDeque::new(),
                    summary: TxSummary {
                        listener: key.0,
                        id: key.1,
                        changes: 0,
                        discarded: 0,
                        tables: Vec::new(),
                        labels,
                        first_captured: change.captured_at,
                        committed: None,
                        rolled_back: false,
                    },
                })));
                match self.items.back_mut() {
                    Some(Item::Tx(tx)) => tx,
                    _ => unreachable!("just pushed"),
                }
            }
        };
        item.members.push_back(number);
        let summary = &mut item.summary;
        summary.changes += 1;
        let tally = match summary.tables.iter().position(|t| t.table == change.table) {
            Some(at) => &mut summary.tables[at],
            None => {
                summary.tables.push(TableTally {
                    table: change.table.clone(),
                    counts: [0; 4],
                });
                summary.tables.last_mut().expect("just pushed")
            }
        };
        tally.counts[change.op.index()] += 1;
    }

    /// True when a shown transaction changed.
    fn take_note(&mut self, note: &Note) -> bool {
        match &note.kind {
            NoteKind::Message {
                content,
                tx: Some(tx),
                ..
            } => {
                let key: TxKey = (note.listener.clone(), tx.id.clone());
                match self.open.get(&key).copied() {
                    Some(anchor) => {
                        let item = self.tx_mut(anchor);
                        if let Some(item) = item
                            && item.summary.labels.len() < LABELS_KEPT
                        {
                            item.summary.labels.push(content.clone());
                        }
                        true
                    }
                    None => {
                        if self.early_labels.len() >= EARLY_LABELS_KEPT {
                            self.early_labels.clear();
                        }
                        let labels = self.early_labels.entry(key).or_default();
                        if labels.len() < LABELS_KEPT {
                            labels.push(content.clone());
                        }
                        false
                    }
                }
            }
            NoteKind::Transaction {
                id,
                position,
                commit_time,
                discarded,
                ..
            } => {
                let key: TxKey = (note.listener.clone(), id.clone());
                self.early_labels.remove(&key);
                let Some(anchor) = self.open.remove(&key) else {
                    return false;
                };
                if let Some(item) = self.tx_mut(anchor) {
                    item.summary.discarded = *discarded;
                    item.summary.committed = Some(Committed {
                        commit_time: *commit_time,
                        position: position.clone(),
                    });
                }
                true
            }
            NoteKind::Message { tx: None, .. }
            | NoteKind::Schema { .. }
            | NoteKind::Error { .. } => false,
        }
    }

    /// Whether changes of transaction `id` of `listener` are in the log.
    pub fn holds(&self, listener: &str, id: &str) -> bool {
        let is = |summary: &TxSummary| &*summary.listener == listener && &*summary.id == id;
        self.items.iter().rev().any(|item| match item {
            Item::Tx(tx) => is(&tx.summary),
            Item::Plain(_) => false,
        })
    }

    /// The transaction anchored at `anchor`, with its changes still in the log.
    pub fn transaction(&self, anchor: u64) -> Option<(&TxSummary, Vec<u64>)> {
        let at = self.items.partition_point(|item| item.anchor() < anchor);
        match self.items.get(at) {
            Some(Item::Tx(tx)) if tx.anchor == anchor => {
                Some((&tx.summary, tx.members.iter().copied().collect()))
            }
            _ => None,
        }
    }

    /// The rows to scroll through: every transaction and plain change (those holding a match
    /// of an active filter), an expanded transaction followed by its (matching) changes.
    pub fn index(&self, expanded: &HashSet<u64>, filter: &LogFilter) -> GroupedIndex {
        let filtering = filter.is_active();
        let shown = |number: u64| !filtering || filter.contains(number);
        let mut rows = Vec::new();
        for item in &self.items {
            match item {
                Item::Plain(number) => {
                    if shown(*number) {
                        rows.push(change_row(*number));
                    }
                }
                Item::Tx(tx) => {
                    let mut members = tx.members.iter().copied().filter(|&n| shown(n));
                    if filtering && members.clone().next().is_none() {
                        continue;
                    }
                    rows.push(tx_row(tx.anchor));
                    if expanded.contains(&tx.anchor) {
                        rows.extend(members.by_ref().map(change_row));
                    }
                }
            }
        }
        let positions = rows
            .iter()
            .enumerate()
            .map(|(at, &row)| (row, at))
            .collect();
        GroupedIndex { rows, positions }
    }
}

/// The grouped log's rows in order.
#[derive(Debug, Default)]
pub struct GroupedIndex {
    rows: Vec<u64>,
    positions: HashMap<u64, usize>,
}

impl LogIndex for GroupedIndex {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn number_at(&self, position: usize) -> u64 {
        self.rows[position]
    }

    fn position_of(&self, row: u64) -> usize {
        // A row gone (evicted, collapsed, filtered out): the next one still there.
        self.positions.get(&row).copied().unwrap_or_else(|| {
            self.rows
                .partition_point(|&n| n < row)
                .min(self.rows.len().saturating_sub(1))
        })
    }
}

/// The whole transaction, as its popup shows it: facts, then every change with what it did
/// (an insert's row, a delete's old row, an update's fields before → after). Laid out once.
pub struct TxView {
    /// The number of its first change, as `Effect::CopyTransaction` takes it (a note's row,
    /// as `Effect::Copy` takes it, for a note).
    pub anchor: u64,
    pub title: String,
    pub facts: Vec<(&'static str, String)>,
    pub lines: Vec<TxLine>,
    pub scroll: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxLine {
    /// `#2 update public.order_items {"id":7}`
    Change {
        index: String,
        op: Op,
        text: String,
    },
    /// A field: `+` inserted, `-` deleted, `~` changed (`old → new`), ` ` unchanged.
    Field {
        sign: char,
        text: String,
    },
    Blank,
}

impl TxView {
    pub fn new(anchor: u64, summary: &TxSummary, changes: &[Change], zone: FixedOffset) -> TxView {
        let mut facts = vec![("listener", summary.listener.to_string())];
        match &summary.committed {
            Some(committed) => {
                let time = committed.commit_time.map_or_else(
                    || "(not given by the source)".to_string(),
                    |time| {
                        format!(
                            "{} ({})",
                            format::clock(&time, zone),
                            crate::change::format_time(&time)
                        )
                    },
                );
                facts.push(("committed", time));
                facts.push(("position", committed.position.to_string()));
            }
            None => facts.push(("state", "running: no transaction line yet".to_string())),
        }
        let shown = if changes.len() as u64 == summary.changes {
            format::count(summary.changes)
        } else {
            format!(
                "{} ({} still in the log)",
                format::count(summary.changes),
                format::count(changes.len() as u64)
            )
        };
        facts.push(("changes", shown));
        if summary.discarded > 0 {
            let discarded = format::count(summary.discarded);
            facts.push(("discarded", format!("{discarded} (rolled-back savepoint)")));
        }
        let tables: Vec<String> = summary.tables.iter().map(TableTally::describe).collect();
        facts.push(("tables", tables.join(", ")));
        for label in &summary.labels {
            facts.push(("message", label.clone()));
        }
        let mut lines = Vec::new();
        for change in changes {
            if !lines.is_empty() {
                lines.push(TxLine::Blank);
            }
            lines.push(TxLine::Change {
                index: change
                    .tx
                    .as_ref()
                    .map_or_else(String::new, |tx| format!("#{}", tx.index)),
                op: change.op,
                text: format!(
                    "{} {}",
                    change.table,
                    format::fields(change.key.as_ref(), None, usize::MAX)
                ),
            });
            lines.extend(field_lines(change));
        }
        TxView {
            anchor,
            title: format!("Transaction tx {}", summary.id),
            facts,
            lines,
            scroll: 0,
        }
    }
}

impl TxView {
    /// A note of the plain log (a schema change, an error, a message) laid out as a
    /// transaction is: facts, then its text a line at a time. `row` is its row in the log.
    pub fn of_note(row: u64, note: &Note, zone: FixedOffset) -> TxView {
        let captured = format!(
            "{} ({})",
            format::clock(&note.captured_at, zone),
            crate::change::format_time(&note.captured_at)
        );
        let mut facts = vec![
            ("listener", note.listener.to_string()),
            ("captured", captured),
        ];
        let (title, text) = match &note.kind {
            NoteKind::Schema {
                table,
                change,
                detail,
            } => {
                facts.push(("table", table.to_string()));
                facts.push(("change", change.to_string()));
                (format!("Schema change {table}"), detail.as_str())
            }
            NoteKind::Error { message } => ("Error".to_string(), message.as_str()),
            NoteKind::Message {
                prefix,
                content,
                transactional,
                tx,
                position,
            } => {
                facts.push(("prefix", prefix.clone()));
                let tx = tx.as_ref().map_or_else(
                    || "none: not transactional".to_string(),
                    |tx| format!("{} (#{})", tx.id, tx.index),
                );
                facts.push(("tx", tx));
                facts.push(("position", position.clone()));
                let title = if *transactional {
                    "Message"
                } else {
                    "Message (not transactional)"
                };
                (title.to_string(), content.as_str())
            }
            NoteKind::Transaction { id, position, .. } => {
                facts.push(("position", position.to_string()));
                (format!("Transaction tx {id}"), "")
            }
        };
        let lines = text
            .lines()
            .flat_map(|line| wrap(line, NOTE_TEXT_WIDTH))
            .map(|text| TxLine::Field { sign: ' ', text })
            .collect();
        TxView {
            anchor: row,
            title,
            facts,
            lines,
            scroll: 0,
        }
    }
}

/// A note's text is wrapped to fit an 80-column popup, so all of it shows.
const NOTE_TEXT_WIDTH: usize = 70;

/// `line` cut at spaces into lines of at most `width` characters (a longer word alone).
fn wrap(line: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in line.split(' ') {
        let current = lines.last_mut().expect("never empty");
        let length = current.chars().count();
        if length > 0 && length + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if length > 0 {
                current.push(' ');
            }
            current.push_str(word);
        }
    }
    lines
}

/// What one change did to its row, a line per field.
fn field_lines(change: &Change) -> Vec<TxLine> {
    let field = |sign, name: &str, value: String| TxLine::Field {
        sign,
        text: format!("{name}: {value}"),
    };
    let all = |sign, row: Option<&crate::change::Row>| -> Vec<TxLine> {
        row.into_iter()
            .flat_map(|row| {
                row.iter()
                    .enumerate()
                    .map(move |(at, (name, _))| (at, name, row))
            })
            .map(|(at, name, row)| field(sign, name, row.value_text(at).into_owned()))
            .collect()
    };
    match change.op {
        Op::Insert => all('+', change.after.as_ref()),
        Op::Delete => all('-', change.before.as_ref().or(change.key.as_ref())),
        Op::Truncate => Vec::new(),
        Op::Update => match (&change.before, &change.after) {
            (Some(before), Some(after)) => {
                let changed = crate::tui::detail::changed_fields(change);
                let text = |row: &crate::change::Row, name: &str| {
                    row.position(name)
                        .map_or_else(|| "∅".to_string(), |at| row.value_text(at).into_owned())
                };
                after
                    .iter()
                    .map(|(name, _)| name)
                    .chain(
                        changed
                            .iter()
                            .copied()
                            .filter(|name| after.get(name).is_none()),
                    )
                    .map(|name| {
                        if changed.contains(&name) {
                            field(
                                '~',
                                name,
                                format!("{} → {}", text(before, name), text(after, name)),
                            )
                        } else {
                            field(' ', name, text(after, name))
                        }
                    })
                    .collect()
            }
            (_, after) => {
                let mut lines = vec![TxLine::Field {
                    sign: ' ',
                    text: "(the row before: not given by the source)".to_string(),
                }];
                lines.extend(all('~', after.as_ref()));
                lines
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::TxRef;
    use crate::pipeline::LogRing;
    use crate::tui::testing::{at, change};
    use serde_json::json;

    fn tx_change(op: Op, table: &str, id: &str, index: u32) -> Change {
        let mut change = change(op, table, json!({"id": index}), json!({"id": index}));
        change.tx = Some(TxRef {
            id: id.into(),
            position: "0/1A2B3C0".into(),
            index,
        });
        change
    }

    fn note(kind: NoteKind) -> Note {
        Note {
            listener: "orders/public.orders".into(),
            captured_at: at(0),
            kind,
        }
    }

    fn committed(id: &str, changes: u64) -> Note {
        note(NoteKind::Transaction {
            id: id.into(),
            position: "0/1A2B3C0".into(),
            commit_time: Some(at(5)),
            changes,
            tables: Vec::new(),
            discarded: 0,
        })
    }

    fn update(groups: &mut TxGroups, ring: &LogRing) -> bool {
        ring.view_with_notes(|first, entries, notes| groups.update(first, entries, notes))
            .value
    }

    #[test]
    fn changes_of_a_transaction_group_and_commit_with_their_labels() {
        let ring = LogRing::new(100);
        let mut groups = TxGroups::default();
        let message = note(NoteKind::Message {
            prefix: "app".into(),
            content: "POST /checkout req=42".into(),
            transactional: true,
            tx: Some(TxRef {
                id: "812".into(),
                position: "0/1A2B3C0".into(),
                index: 1,
            }),
            position: "0/1A2B2F8".into(),
        });
        ring.extend_with_notes(
            vec![
                change(Op::Insert, "public.plain", json!({"id": 1}), json!({})),
                tx_change(Op::Insert, "public.orders", "812", 1),
                tx_change(Op::Insert, "public.order_items", "812", 2),
            ],
            vec![(1, message)],
        );
        assert!(update(&mut groups, &ring));
        let (summary, members) = groups.transaction(1).unwrap();
        assert_eq!(members, [1, 2]);
        assert_eq!(summary.labels, ["POST /checkout req=42"]);
        assert_eq!(
            summary.describe(FixedOffset::east_opt(0).unwrap()),
            "tx 812 · running · 2 changes so far · orders +1, order_items +1"
        );
        ring.extend_with_notes(
            vec![tx_change(Op::Update, "public.order_items", "812", 3)],
            vec![(1, committed("812", 3))],
        );
        assert!(update(&mut groups, &ring));
        let (summary, members) = groups.transaction(1).unwrap();
        assert_eq!(members, [1, 2, 3]);
        assert_eq!(
            summary.describe(FixedOffset::east_opt(0).unwrap()),
            "tx 812 · 10:00:00.005 · 3 changes · orders +1, order_items +1 ~1"
        );
        let index = groups.index(&HashSet::new(), &LogFilter::default());
        assert_eq!(index.rows, [change_row(0), tx_row(1)]);
        let index = groups.index(&HashSet::from([1]), &LogFilter::default());
        assert_eq!(
            index.rows,
            [
                change_row(0),
                tx_row(1),
                change_row(1),
                change_row(2),
                change_row(3)
            ]
        );
        assert!(!update(&mut groups, &ring), "nothing new");
    }

    #[test]
    fn a_note_text_wraps_at_spaces() {
        assert_eq!(wrap("ab cd ef", 5), ["ab cd", "ef"]);
        assert_eq!(wrap("abcdefgh ij", 5), ["abcdefgh", "ij"]);
        assert_eq!(wrap("", 5), [""]);
    }

    #[test]
    fn evicted_changes_leave_their_transaction_and_a_filter_keeps_transactions_with_a_match() {
        let ring = LogRing::new(3);
        let mut groups = TxGroups::default();
        ring.extend(vec![
            tx_change(Op::Insert, "public.orders", "1", 1),
            tx_change(Op::Insert, "public.items", "1", 2),
            tx_change(Op::Insert, "public.items", "2", 1),
        ]);
        update(&mut groups, &ring);
        ring.extend_with_notes(
            vec![tx_change(Op::Delete, "public.orders", "2", 2)],
            vec![(0, committed("1", 2)), (1, committed("2", 2))],
        );
        update(&mut groups, &ring);
        let (summary, members) = groups.transaction(0).unwrap();
        assert_eq!(members, [1], "change 0 left the ring");
        assert_eq!(summary.changes, 2, "the tallies keep counting");
        assert!(summary.committed.is_some());

        let mut filter = LogFilter::default();
        filter.set_text("op:delete");
        ring.view_numbered(|first, entries| filter.scan(first, entries, 100));
        let index = groups.index(&HashSet::from([2]), &filter);
        assert_eq!(index.rows, [tx_row(2), change_row(3)]);
    }
}

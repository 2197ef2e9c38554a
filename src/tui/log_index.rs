//! Which log entries the user scrolls through: all of the ring, or those matching the filter.
//!
//! Entries are addressed by number: the n-th change ever pushed to the ring is number n, so a
//! number keeps pointing at the same change while the ring moves on. The filter keeps the
//! numbers of its matches and checks each entry once: new entries as they arrive, and, after
//! the filter text changed, older ones a bounded slice per frame, so a frame's work follows
//! what arrived since the last one, not the ring's capacity.

use std::collections::VecDeque;
use std::io::Write as _;

use serde_json::Value;

use crate::change::{Change, Note, NoteKind, Row};
use crate::pipeline::log_ring::NotesView;

/// Positions (0 = the oldest in view) to entry numbers and back.
pub trait LogIndex {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of the entry at `position` (< `len`).
    fn number_at(&self, position: usize) -> u64;

    /// The position of entry `number`, or of the first one after it, at most the last position.
    fn position_of(&self, number: u64) -> usize;
}

/// Every entry in the ring: numbers `first .. first + len`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllEntries {
    pub first: u64,
    pub len: usize,
}

impl LogIndex for AllEntries {
    fn len(&self) -> usize {
        self.len
    }

    fn number_at(&self, position: usize) -> u64 {
        self.first + position as u64
    }

    fn position_of(&self, number: u64) -> usize {
        let position = usize::try_from(number.saturating_sub(self.first)).unwrap_or(usize::MAX);
        position.min(self.len.saturating_sub(1))
    }
}

/// Older entries checked per frame after the filter changed: a 10,000-entry ring is through in
/// a few frames, and the handler never waits long on the ring's lock.
pub const SCAN_BUDGET: usize = 2048;

/// The filter's matches, kept up to date incrementally.
#[derive(Debug, Default)]
pub struct LogFilter {
    text: String,
    terms: Vec<Term>,
    /// Why the text is not understood; it then matches nothing.
    error: Option<String>,
    /// Ascending numbers of the matching entries still in the ring.
    matches: VecDeque<u64>,
    /// Entries numbered `scanned.0 .. scanned.1` have been checked; `None` before the first scan.
    scanned: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    field: Field,
    /// Lower case.
    needle: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    /// A plain word: in the table, op, key or row.
    Any,
    Table,
    Op,
    Listener,
    /// `key:4`: a field of the key equals it.
    Key,
    /// `status=paid`: this column of the key or the row (after, else before) equals it.
    Column(String),
}

/// The prefixes a filter word can have, for the error about an unknown one.
const PREFIXES: &str = "table:, op:, key:, listener: or column=value";

impl LogFilter {
    pub fn is_active(&self) -> bool {
        !self.terms.is_empty() || self.error.is_some()
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Takes a new filter text; a changed filter starts checking over. True when it changed.
    pub fn set_text(&mut self, text: &str) -> bool {
        if text == self.text {
            return false;
        }
        self.text = text.to_string();
        (self.terms, self.error) = match parse_terms(text) {
            Ok(terms) => (terms, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        self.matches.clear();
        self.scanned = None;
        true
    }

    /// Whether every entry in the ring has been checked.
    pub fn is_complete(&self, first: u64) -> bool {
        self.scanned.is_some_and(|(from, _)| from <= first)
    }

    /// Checks the entries that arrived since the last scan, then up to `budget` older ones not
    /// checked yet. `first` is the number of `entries[0]`. Returns whether the matches changed.
    pub fn scan(&mut self, first: u64, entries: &VecDeque<Change>, budget: usize) -> bool {
        if !self.is_active() {
            return false;
        }
        let end = first + entries.len() as u64;
        let (from, to) = self.scanned.unwrap_or((end, end));
        let mut changed = false;
        while self.matches.front().is_some_and(|&n| n < first) {
            self.matches.pop_front();
            changed = true;
        }
        let entry = |number: u64| &entries[(number - first) as usize];
        for number in to.max(first)..end {
            if self.matches_change(entry(number)) {
                self.matches.push_back(number);
                changed = true;
            }
        }
        let from = from.clamp(first, end);
        let lowest = from.saturating_sub(budget as u64).max(first);
        for number in (lowest..from).rev() {
            if self.matches_change(entry(number)) {
                self.matches.push_front(number);
                changed = true;
            }
        }
        self.scanned = Some((lowest, end));
        changed
    }

    /// Whether entry `number` is one of the matches found so far.
    pub fn contains(&self, number: u64) -> bool {
        self.matches.binary_search(&number).is_ok()
    }

    pub fn matches_change(&self, change: &Change) -> bool {
        self.error.is_none() && self.terms.iter().all(|term| term.matches(change))
    }

    /// Whether a note the plain log shows matches: `table:` keeps a table's schema changes,
    /// `op:` the kind (`op:schema`, `op:error`, `op:message`), `listener:` a listener's notes,
    /// a plain word the note's text; `key:` and `column=value` are about rows, which notes
    /// have none of.
    pub fn matches_note(&self, note: &Note) -> bool {
        self.error.is_none() && self.terms.iter().all(|term| term.matches_note(note))
    }
}

impl LogIndex for LogFilter {
    fn len(&self) -> usize {
        self.matches.len()
    }

    fn number_at(&self, position: usize) -> u64 {
        self.matches[position]
    }

    fn position_of(&self, number: u64) -> usize {
        self.matches
            .partition_point(|&n| n < number)
            .min(self.matches.len().saturating_sub(1))
    }
}

/// Notes (schema changes, errors, messages) take rows of their own in the plain log, numbered
/// apart from changes: the top bit set, then the note's number (the n-th note ever pushed).
const NOTE_ROW: u64 = 1 << 63;

/// The row number of note `number` in the plain log.
pub fn note_row(number: u64) -> u64 {
    NOTE_ROW | number
}

/// The note a plain log row stands for, if it is a note's.
pub fn note_of_row(row: u64) -> Option<u64> {
    (row & NOTE_ROW != 0).then_some(row & !NOTE_ROW)
}

/// Whether the plain log gives `note` a row: a transaction's own line is what its changes
/// already show, so only schema changes, errors and messages.
pub fn shows_note(note: &Note) -> bool {
    !matches!(note.kind, NoteKind::Transaction { .. })
}

/// A note as the plain log shows it, column by column.
pub struct NoteParts {
    /// `schema`, `error` or `message`, where a change shows its op.
    pub kind: &'static str,
    /// Where a change shows its table: the table, the message's prefix.
    pub subject: String,
    /// Where a change shows its key: what happened to the table (`columns`, `joined`, …), the
    /// message's transaction.
    pub what: String,
    /// The rest: what changed, the error, the message's content.
    pub text: String,
}

impl NoteParts {
    pub fn of(note: &Note) -> NoteParts {
        let (kind, subject, what, text) = match &note.kind {
            NoteKind::Schema {
                table,
                change,
                detail,
            } => (
                "schema",
                table.to_string(),
                change.to_string(),
                detail.clone(),
            ),
            NoteKind::Error { message } => ("error", String::new(), String::new(), message.clone()),
            NoteKind::Message {
                prefix,
                content,
                tx,
                ..
            } => (
                "message",
                prefix.clone(),
                tx.as_ref()
                    .map_or_else(String::new, |tx| format!("tx {}", tx.id)),
                content.clone(),
            ),
            NoteKind::Transaction {
                id,
                changes,
                discarded,
                ..
            } => (
                "commit",
                String::new(),
                format!("tx {id}"),
                if *discarded > 0 {
                    format!("{changes} changes, {discarded} discarded (rolled-back savepoint)")
                } else {
                    format!("{changes} changes")
                },
            ),
        };
        NoteParts {
            kind,
            subject,
            what,
            text,
        }
    }
}

/// A note the plain log shows: it came before change `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NoteAt {
    before: u64,
    number: u64,
}

/// The plain log's rows: the changes one scrolls through (all of the ring, or the filter's
/// matches) with the notes among them in place, each note before the change it came before.
/// Positions are worked out from the two ascending lists, nothing is laid out per frame.
#[derive(Debug, Default)]
pub struct PlainIndex {
    pub filter: LogFilter,
    pub ring: AllEntries,
    /// The notes shown (those the filter keeps), ascending.
    notes: VecDeque<NoteAt>,
    /// Notes numbered below this have been looked at.
    next_note: u64,
}

impl PlainIndex {
    /// The changes one scrolls through.
    pub fn changes(&self) -> &dyn LogIndex {
        if self.filter.is_active() {
            &self.filter
        } else {
            &self.ring
        }
    }

    /// Takes in the notes that arrived since the last look (all of them again after the filter
    /// changed) and drops those that left the ring. True when the notes shown changed.
    pub fn take_notes(&mut self, first: u64, notes: &NotesView, refilter: bool) -> bool {
        let mut changed = false;
        if refilter {
            changed = !self.notes.is_empty();
            self.notes.clear();
            self.next_note = 0;
        }
        while self
            .notes
            .front()
            .is_some_and(|n| n.number < notes.first || n.before < first)
        {
            self.notes.pop_front();
            changed = true;
        }
        let end = notes.first + notes.notes.len() as u64;
        for number in self.next_note.max(notes.first)..end {
            let held = &notes.notes[(number - notes.first) as usize];
            let shown = !self.filter.is_active() || self.filter.matches_note(&held.note);
            if held.before >= first && shows_note(&held.note) && shown {
                self.notes.push_back(NoteAt {
                    before: held.before,
                    number,
                });
                changed = true;
            }
        }
        self.next_note = end;
        changed
    }

    /// Shown notes that came before or at change `number`.
    fn notes_up_to(&self, number: u64) -> usize {
        self.notes.partition_point(|n| n.before <= number)
    }

    /// Changes in view numbered below `number`.
    fn changes_below(&self, number: u64) -> usize {
        let changes = self.changes();
        if changes.is_empty() {
            return 0;
        }
        let at = changes.position_of(number);
        if changes.number_at(at) < number {
            at + 1
        } else {
            at
        }
    }

    /// The row of the change at `at` among the changes in view.
    fn change_position(&self, at: usize) -> usize {
        at + self.notes_up_to(self.changes().number_at(at))
    }
}

impl LogIndex for PlainIndex {
    fn len(&self) -> usize {
        self.changes().len() + self.notes.len()
    }

    fn number_at(&self, position: usize) -> u64 {
        let changes = self.changes().len();
        // The changes at rows up to `position`: change positions grow with their index.
        let (mut low, mut high) = (0, changes);
        while low < high {
            let mid = (low + high) / 2;
            if self.change_position(mid) <= position {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        if low > 0 && self.change_position(low - 1) == position {
            return self.changes().number_at(low - 1);
        }
        // A note: `low` changes come before it.
        note_row(self.notes[position - low].number)
    }

    fn position_of(&self, row: u64) -> usize {
        let last = self.len().saturating_sub(1);
        let position = match note_of_row(row) {
            Some(number) => {
                // A note gone: the next note still there.
                let at = self.notes.partition_point(|n| n.number < number);
                match self.notes.get(at) {
                    Some(note) => at + self.changes_below(note.before),
                    None => last,
                }
            }
            // The change, or the row after where it would be: notes before it come first.
            None => self.changes_below(row) + self.notes_up_to(row),
        };
        position.min(last)
    }
}

/// What the log marks in the rows the filter shows: its plain words, and `column=value` as
/// the row prints it (`id=4`, `status="paid"`). Longest first, so the longest match wins.
pub fn highlights(text: &str) -> Vec<String> {
    let mut marks: Vec<String> = parse_terms(text)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|term| match term.field {
            Field::Any if !term.needle.is_empty() => vec![term.needle],
            Field::Column(column) => vec![
                format!("{column}={}", term.needle),
                format!("{column}=\"{}\"", term.needle),
            ],
            _ => Vec::new(),
        })
        .collect();
    marks.sort_by_key(|mark| std::cmp::Reverse(mark.len()));
    marks
}

/// Words, each `prefix:needle`, `column=value` or plain; an unknown prefix is an error.
fn parse_terms(text: &str) -> Result<Vec<Term>, String> {
    text.split_whitespace()
        .map(|word| {
            let word = word.to_lowercase();
            let is_name = |name: &str| {
                !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
            };
            let (field, needle) = match (word.split_once(':'), word.split_once('=')) {
                (Some(("op", needle)), _) => (Field::Op, needle),
                (Some(("table", needle)), _) => (Field::Table, needle),
                (Some(("key", needle)), _) => (Field::Key, needle),
                (Some(("listener", needle)), _) => (Field::Listener, needle),
                (Some((prefix, _)), _)
                    if is_name(prefix) && !prefix.starts_with(char::is_numeric) =>
                {
                    return Err(format!("unknown filter field {prefix}: (use {PREFIXES})"));
                }
                (_, Some((column, value))) if is_name(column) => {
                    (Field::Column(column.to_string()), value)
                }
                _ => (Field::Any, word.as_str()),
            };
            Ok(Term {
                field,
                needle: needle.to_string(),
            })
        })
        .collect()
}

impl Term {
    fn matches_note(&self, note: &Note) -> bool {
        let needle = self.needle.as_str();
        let parts = NoteParts::of(note);
        match &self.field {
            Field::Table => match &note.kind {
                NoteKind::Schema { table, .. } => contains_ignore_case(table, needle),
                _ => false,
            },
            Field::Op => parts.kind.contains(needle),
            Field::Listener => contains_ignore_case(&note.listener, needle),
            Field::Key | Field::Column(_) => false,
            Field::Any => [parts.kind, &parts.subject, &parts.what, &parts.text]
                .iter()
                .any(|part| contains_ignore_case(part, needle)),
        }
    }

    fn matches(&self, change: &Change) -> bool {
        let needle = self.needle.as_str();
        let row = || change.after.as_ref().or(change.before.as_ref());
        match &self.field {
            Field::Table => contains_ignore_case(&change.table, needle),
            Field::Op => change.op.as_str().contains(needle),
            Field::Listener => contains_ignore_case(change.identity(), needle),
            Field::Key => change
                .key
                .as_ref()
                .is_some_and(|key| key.iter().any(|(_, value)| value_equals(value, needle))),
            Field::Column(column) => {
                [change.key.as_ref(), row()]
                    .into_iter()
                    .flatten()
                    .any(|row| {
                        row.iter().any(|(name, value)| {
                            name.eq_ignore_ascii_case(column) && value_equals(value, needle)
                        })
                    })
            }
            Field::Any => {
                contains_ignore_case(&change.table, needle)
                    || change.op.as_str().contains(needle)
                    || row_contains(change.key.as_ref(), needle)
                    || row_contains(row(), needle)
            }
        }
    }
}

/// Whether a value, as the log shows it (a string without its quotes), equals `needle` (lower
/// case), ignoring case.
fn value_equals(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(text) => text.to_lowercase() == needle,
        Value::Number(number) => number.to_string() == needle,
        Value::Bool(b) => needle == if *b { "true" } else { "false" },
        Value::Null => needle == "null",
        other => other.to_string().to_lowercase() == needle,
    }
}

/// Whether a column name or a value of `row` contains `needle` (lower case).
fn row_contains(row: Option<&Row>, needle: &str) -> bool {
    row.is_some_and(|row| {
        row.iter().any(|(name, value)| {
            contains_ignore_case(name, needle) || value_contains(value, needle)
        })
    })
}

/// Whether a key, a string or a scalar anywhere in `value` contains `needle` (lower case).
fn value_contains(value: &Value, needle: &str) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => if *b { "true" } else { "false" }.contains(needle),
        Value::Number(n) => {
            // Formatted on the stack: the filter checks every new entry.
            let mut text = [0u8; 64];
            let mut cursor = std::io::Cursor::new(&mut text[..]);
            let _ = write!(cursor, "{n}");
            let len = cursor.position() as usize;
            std::str::from_utf8(&text[..len]).is_ok_and(|digits| digits.contains(needle))
        }
        Value::String(s) => contains_ignore_case(s, needle),
        Value::Array(items) => items.iter().any(|item| value_contains(item, needle)),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, item)| contains_ignore_case(key, needle) || value_contains(item, needle)),
    }
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        // No allocation on the common path.
        let needle = needle.as_bytes();
        needle.is_empty()
            || haystack
                .as_bytes()
                .windows(needle.len())
                .any(|window| window.eq_ignore_ascii_case(needle))
    } else {
        haystack.to_lowercase().contains(needle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Op;
    use crate::tui::testing::change;
    use serde_json::json;

    fn ring(changes: Vec<Change>) -> VecDeque<Change> {
        changes.into()
    }

    #[test]
    fn terms_match_table_op_key_and_row() {
        let mut filter = LogFilter::default();
        let update = change(
            Op::Update,
            "public.orders",
            json!({"id": 42}),
            json!({"status": "Paid"}),
        );
        let delete = change(Op::Delete, "public.items", json!({"id": 7}), Value::Null);
        let check = |filter: &mut LogFilter, text: &str| {
            filter.set_text(text);
            [&update, &delete].map(|c| filter.matches_change(c))
        };
        assert_eq!(check(&mut filter, "orders"), [true, false]);
        assert_eq!(check(&mut filter, "op:delete"), [false, true]);
        assert_eq!(check(&mut filter, "table:items"), [false, true]);
        assert_eq!(
            check(&mut filter, "paid"),
            [true, false],
            "case-insensitive, in the row"
        );
        assert_eq!(check(&mut filter, "42"), [true, false], "in the key");
        assert_eq!(
            check(&mut filter, "STATUS update"),
            [true, false],
            "every word"
        );
        assert_eq!(check(&mut filter, "table:update"), [false, false]);
        assert_eq!(
            check(&mut filter, "id=42"),
            [true, false],
            "a column equals"
        );
        assert_eq!(
            check(&mut filter, "id=4"),
            [false, false],
            "equals, not contains"
        );
        assert_eq!(
            check(&mut filter, "status=paid"),
            [true, false],
            "unquoted, any case"
        );
        assert_eq!(check(&mut filter, "key:7"), [false, true]);
        assert_eq!(check(&mut filter, "key:4"), [false, false]);
        assert_eq!(check(&mut filter, "listener:orders"), [true, true]);
        assert_eq!(check(&mut filter, "listener:nope"), [false, false]);
        assert_eq!(
            check(&mut filter, "10:00"),
            [false, false],
            "a time is a plain word"
        );
        assert_eq!(
            highlights("Paid id=4 op:update"),
            ["id=\"4\"", "paid", "id=4"]
        );
        filter.set_text("colour:red orders");
        assert_eq!(
            filter.error(),
            Some("unknown filter field colour: (use table:, op:, key:, listener: or column=value)")
        );
        assert!(filter.is_active());
        assert!(!filter.matches_change(&update), "an error matches nothing");
    }

    #[test]
    fn notes_take_rows_in_place_among_all_changes_or_the_matches() {
        use crate::change::NoteKind;
        use crate::pipeline::LogRing;
        let ring = LogRing::new(100);
        let note = |message: &str| Note {
            listener: "orders/public.orders".into(),
            captured_at: crate::tui::testing::at(0),
            kind: NoteKind::Error {
                message: message.into(),
            },
        };
        let row = |table: &str| change(Op::Insert, table, json!({"id": 1}), json!({}));
        // Changes 0..4; note 0 before change 1, notes 1 and 2 before change 3, note 3 last.
        ring.extend_with_notes(
            vec![row("odd"), row("even"), row("odd"), row("even")],
            vec![
                (1, note("a")),
                (3, note("b even")),
                (3, note("c")),
                (4, note("d")),
            ],
        );
        let mut index = PlainIndex::default();
        let take = |index: &mut PlainIndex, refilter: bool| {
            ring.view_with_notes(|first, entries, notes| {
                index.ring = AllEntries {
                    first,
                    len: entries.len(),
                };
                index.filter.scan(first, entries, 100);
                index.take_notes(first, &notes, refilter)
            })
            .value
        };
        assert!(take(&mut index, false));
        let rows: Vec<u64> = (0..index.len()).map(|at| index.number_at(at)).collect();
        assert_eq!(
            rows,
            [
                0,
                note_row(0),
                1,
                2,
                note_row(1),
                note_row(2),
                3,
                note_row(3)
            ]
        );
        for (at, &row) in rows.iter().enumerate() {
            assert_eq!(index.position_of(row), at, "row {row:x}");
        }
        assert!(!take(&mut index, false), "nothing new");

        let refilter = index.filter.set_text("even");
        assert!(take(&mut index, refilter));
        let rows: Vec<u64> = (0..index.len()).map(|at| index.number_at(at)).collect();
        assert_eq!(rows, [1, note_row(1), 3]);
        assert_eq!(
            index.position_of(2),
            1,
            "a change filtered out: the next row"
        );
        assert_eq!(
            index.position_of(note_row(2)),
            2,
            "a note filtered out: the next"
        );
    }

    #[test]
    fn scans_new_entries_and_older_ones_within_the_budget() {
        let row = |i: u64| {
            let table = if i.is_multiple_of(2) { "even" } else { "odd" };
            change(Op::Insert, table, json!({"id": i}), json!({}))
        };
        let mut entries = ring((0..10).map(row).collect());
        let mut filter = LogFilter::default();
        filter.set_text("even");
        assert!(filter.scan(0, &entries, 3));
        // The newest three first, then three older ones per scan.
        assert_eq!(filter.matches, [8]);
        filter.scan(0, &entries, 3);
        filter.scan(0, &entries, 3);
        assert_eq!(filter.matches, [2, 4, 6, 8]);
        assert!(!filter.is_complete(0));
        filter.scan(0, &entries, 3);
        assert!(filter.is_complete(0));
        assert_eq!(filter.matches, [0, 2, 4, 6, 8]);

        // Four more arrive; the ring (capacity 10) evicts 0..4.
        for i in 10..14 {
            entries.pop_front();
            entries.push_back(row(i));
        }
        assert!(filter.scan(4, &entries, 3));
        assert_eq!(filter.matches, [4, 6, 8, 10, 12]);
        assert_eq!(filter.position_of(9), 3);
        assert_eq!(filter.position_of(100), 4);
        assert_eq!(filter.number_at(0), 4);
        assert!(!filter.scan(4, &entries, 3), "nothing new");
    }
}

//! The UI's own state: focus, the selected listener, the log cursor and follow mode, the filter
//! and the popups. Pure: actions go in, effects on the runtime come out (`Effect`), and the
//! caller carries them out.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::registry::ListenerSnapshot;
use crate::tui::add_dialog::{AddDialog, DatabaseChoice};
use crate::tui::detail::DetailView;
use crate::tui::effect::Effect;
use crate::tui::keys::{Action, Context};
use crate::tui::log_index::{LogIndex, note_of_row};
use crate::tui::transactions::{RowRef, TxView, change_row, tx_row};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    #[default]
    Listeners,
    Log,
}

/// What the keys currently drive; each mode looks bindings up in its contexts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Main(Focus),
    Filter,
    Help,
    Detail,
    AddDialog,
    ListenerDetail,
    Confirm,
    ExportPath,
}

impl Mode {
    #[cfg(test)]
    pub const ALL: [Mode; 9] = [
        Mode::Main(Focus::Listeners),
        Mode::Main(Focus::Log),
        Mode::Filter,
        Mode::Help,
        Mode::Detail,
        Mode::AddDialog,
        Mode::ListenerDetail,
        Mode::Confirm,
        Mode::ExportPath,
    ];

    /// Where this mode looks its bindings up, first match wins.
    pub fn contexts(self) -> &'static [Context] {
        use Context as C;
        match self {
            Mode::Main(Focus::Listeners) => &[C::Listeners, C::Main, C::Screen, C::Global],
            Mode::Main(Focus::Log) => &[C::Log, C::Main, C::Screen, C::Global],
            Mode::Filter => &[C::Filter, C::Global],
            Mode::Help => &[C::Help, C::Screen, C::Global],
            Mode::Detail => &[C::Detail, C::Screen, C::Global],
            Mode::AddDialog => &[C::AddDialog, C::Global],
            Mode::ListenerDetail => &[C::ListenerDetail, C::Screen, C::Global],
            Mode::Confirm => &[C::Confirm, C::Global],
            Mode::ExportPath => &[C::ExportPath, C::Global],
        }
    }
}

pub enum Popup {
    Help {
        scroll: usize,
    },
    Detail(Box<DetailView>),
    /// A whole transaction (Enter on its row in the grouped log); keys as for `Detail`.
    Transaction(Box<TxView>),
    /// A note of the plain log (Enter on its row), laid out as a transaction; keys as for
    /// `Detail`.
    Note(Box<TxView>),
    Add(AddDialog),
    /// One listener's detail, drawn from each frame's snapshot.
    Listener {
        identity: Arc<str>,
        scroll: usize,
    },
    /// A question; `y` carries out the effect.
    Confirm {
        question: String,
        effect: Effect,
    },
    /// The path of the file `w` writes, being typed.
    Export {
        path: String,
    },
}

/// Where a click landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Click {
    /// The n-th listener row in view.
    Listener(usize),
    /// The log entry at this position.
    Log(usize),
}

/// A short note in the footer: what an action did, or why it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub is_error: bool,
    pub until: Instant,
}

const MESSAGE_TIME: Duration = Duration::from_secs(5);

/// What actions need to know about the data on screen.
pub struct View<'a> {
    pub listeners: &'a [ListenerSnapshot],
    pub log: &'a dyn LogIndex,
    pub databases: &'a [DatabaseChoice],
    /// Rows of the log and of the open popup's scrolling area, as last drawn (for paging).
    pub log_rows: usize,
    pub popup_rows: usize,
    /// Where `w` proposes to write.
    pub export_path: PathBuf,
}

/// The log's cursor. Entries are addressed by number (see `log_index`), so the cursor and the
/// window stay on the same entries while new ones arrive, until the user asks to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    /// Keep the newest entry selected and in view.
    pub follow: bool,
    selected: Option<u64>,
    top: Option<u64>,
}

impl Default for LogCursor {
    fn default() -> Self {
        LogCursor {
            follow: true,
            selected: None,
            top: None,
        }
    }
}

/// The rows of the log in view: positions `top .. top + rows`, the cursor at `selected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogWindow {
    pub top: usize,
    pub rows: usize,
    pub selected: Option<usize>,
}

impl LogCursor {
    /// The selected position, if the index has any entry.
    pub fn selected_position(&self, index: &dyn LogIndex) -> Option<usize> {
        let last = index.len().checked_sub(1)?;
        Some(match self.selected {
            Some(number) if !self.follow => index.position_of(number),
            _ => last,
        })
    }

    /// Moves the cursor by `delta` rows; moving up stops following, reaching the newest entry
    /// by moving down follows again.
    pub fn move_by(&mut self, delta: isize, index: &dyn LogIndex) {
        let Some(current) = self.selected_position(index) else {
            return;
        };
        let last = index.len() - 1;
        let target = current.saturating_add_signed(delta).min(last);
        self.selected = Some(index.number_at(target));
        self.follow = delta > 0 && target == last;
    }

    /// Puts the cursor on the entry at `position` (a click), if there is one.
    pub fn select(&mut self, position: usize, index: &dyn LogIndex) {
        if position < index.len() {
            self.selected = Some(index.number_at(position));
            self.follow = false;
        }
    }

    pub fn oldest(&mut self, index: &dyn LogIndex) {
        if !index.is_empty() {
            self.selected = Some(index.number_at(0));
            self.follow = false;
        }
    }

    pub fn newest(&mut self) {
        self.follow = true;
    }

    /// Stops following where the cursor is, or starts following.
    pub fn toggle_follow(&mut self, index: &dyn LogIndex) {
        if self.follow {
            if let Some(last) = index.len().checked_sub(1) {
                self.selected = Some(index.number_at(last));
            }
            self.follow = false;
        } else {
            self.follow = true;
        }
    }

    /// Puts the cursor on entry `number`, not following.
    pub fn select_number(&mut self, number: u64) {
        self.selected = Some(number);
        self.follow = false;
    }

    /// Numbers the cursor's entries anew (the log grouped or not).
    pub fn renumber(&mut self, map: impl Fn(u64) -> u64) {
        self.selected = self.selected.map(&map);
        self.top = self.top.map(&map);
    }

    /// Places the window of `rows` rows so that it shows the cursor, and remembers where it
    /// is: the newest rows when following, else where the user left it.
    pub fn place(&mut self, index: &dyn LogIndex, rows: usize) -> LogWindow {
        let Some(selected) = self.selected_position(index) else {
            self.top = None;
            return LogWindow::default();
        };
        let len = index.len();
        let lowest_top = len.saturating_sub(rows);
        let mut top = match self.top {
            Some(number) if !self.follow => index.position_of(number).min(lowest_top),
            _ => lowest_top,
        };
        if selected < top {
            top = selected;
        } else if rows > 0 && selected >= top + rows {
            top = selected + 1 - rows;
        }
        self.selected = Some(index.number_at(selected));
        self.top = Some(index.number_at(top));
        LogWindow {
            top,
            rows: rows.min(len - top),
            selected: Some(selected),
        }
    }
}

#[derive(Default)]
pub struct UiState {
    pub focus: Focus,
    pub selected_listener: usize,
    /// The first listener row in view; moves only to keep the selection in view.
    pub listeners_top: usize,
    pub log: LogCursor,
    /// The filter text; the log narrows as it changes.
    pub filter: String,
    pub editing_filter: bool,
    pub popup: Option<Popup>,
    pub message: Option<Message>,
    /// The log grouped by transaction (`t`).
    pub grouped: bool,
    /// Transactions shown with their changes, by the number of their first change.
    pub expanded_tx: HashSet<u64>,
    /// Listeners shown with a row per table, by identity.
    pub expanded_listeners: HashSet<Arc<str>>,
}

impl UiState {
    pub fn mode(&self) -> Mode {
        match &self.popup {
            Some(Popup::Help { .. }) => Mode::Help,
            Some(Popup::Detail(_) | Popup::Transaction(_) | Popup::Note(_)) => Mode::Detail,
            Some(Popup::Add(_)) => Mode::AddDialog,
            Some(Popup::Listener { .. }) => Mode::ListenerDetail,
            Some(Popup::Confirm { .. }) => Mode::Confirm,
            Some(Popup::Export { .. }) => Mode::ExportPath,
            None if self.editing_filter => Mode::Filter,
            None => Mode::Main(self.focus),
        }
    }

    /// The selected listener, clamped to the listeners there are.
    pub fn selected_listener<'a>(
        &self,
        listeners: &'a [ListenerSnapshot],
    ) -> Option<&'a ListenerSnapshot> {
        listeners
            .get(self.selected_listener)
            .or_else(|| listeners.last())
    }

    /// Scrolls the listeners table as little as needed to show the selected one in `rows`.
    pub fn place_listeners(&mut self, count: usize, rows: usize) {
        let selected = self.selected_listener.min(count.saturating_sub(1));
        self.listeners_top = self
            .listeners_top
            .min(selected)
            .max((selected + 1).saturating_sub(rows))
            .min(count.saturating_sub(rows));
    }

    pub fn select_listener(&mut self, identity: &str, listeners: &[ListenerSnapshot]) {
        if let Some(at) = listeners.iter().position(|l| &*l.identity == identity) {
            self.selected_listener = at;
        }
    }

    pub fn notify(&mut self, text: impl Into<String>, is_error: bool, now: Instant) {
        self.message = Some(Message {
            text: text.into(),
            is_error,
            until: now + MESSAGE_TIME,
        });
    }

    /// Drops a message whose time is up; true when one was dropped (the screen changes).
    pub fn expire_message(&mut self, now: Instant) -> bool {
        let expired = self.message.as_ref().is_some_and(|m| m.until <= now);
        if expired {
            self.message = None;
        }
        expired
    }

    pub fn show_detail(&mut self, number: u64, change: crate::change::Change) {
        self.popup = Some(Popup::Detail(Box::new(DetailView::new(number, change))));
    }

    /// The add dialog, if open (to deliver table lists and errors).
    pub fn add_dialog(&mut self) -> Option<&mut AddDialog> {
        match &mut self.popup {
            Some(Popup::Add(dialog)) => Some(dialog),
            _ => None,
        }
    }

    /// A typed character, in whatever text field has the keys.
    pub fn type_char(&mut self, c: char) {
        match &mut self.popup {
            Some(Popup::Add(dialog)) => dialog.type_char(c),
            Some(Popup::Export { path }) => path.push(c),
            None if self.editing_filter => self.filter.push(c),
            _ => {}
        }
    }

    pub fn apply(&mut self, action: Action, view: &View) -> Option<Effect> {
        match action {
            Action::Quit => return Some(Effect::Quit),
            Action::Help => {
                self.popup = match self.popup {
                    Some(Popup::Help { .. }) => None,
                    _ => Some(Popup::Help { scroll: 0 }),
                };
                return None;
            }
            _ => {}
        }
        match &mut self.popup {
            Some(Popup::Help { scroll }) => {
                if action == Action::Close {
                    self.popup = None;
                } else {
                    scroll_by(scroll, action, view.popup_rows);
                }
                None
            }
            Some(Popup::Detail(_) | Popup::Transaction(_) | Popup::Note(_)) => match action {
                Action::Copy => match &self.popup {
                    Some(Popup::Detail(detail)) => Some(Effect::Copy(detail.number)),
                    Some(Popup::Transaction(view)) => Some(Effect::CopyTransaction(view.anchor)),
                    Some(Popup::Note(view)) => Some(Effect::Copy(view.anchor)),
                    _ => None,
                },
                Action::Close => {
                    self.popup = None;
                    None
                }
                Action::Previous | Action::Next => {
                    let before = self.log.selected_position(view.log);
                    let delta = if action == Action::Next { 1 } else { -1 };
                    self.log.move_by(delta, view.log);
                    let after = self.log.selected_position(view.log);
                    (after != before)
                        .then(|| after.map(|at| self.open_at(view.log.number_at(at))))
                        .flatten()
                }
                _ => {
                    if let Some(scroll) = self.popup_scroll() {
                        scroll_by(scroll, action, view.popup_rows);
                    }
                    None
                }
            },
            Some(Popup::Add(dialog)) => {
                if action == Action::Close {
                    self.popup = None;
                    None
                } else {
                    dialog.apply(action)
                }
            }
            Some(Popup::Listener { identity, scroll }) => match action {
                Action::Close => {
                    self.popup = None;
                    None
                }
                Action::Restart => Some(Effect::Restart(identity.clone())),
                _ => {
                    scroll_by(scroll, action, view.popup_rows);
                    None
                }
            },
            Some(Popup::Confirm { effect, .. }) => {
                let effect = effect.clone();
                self.popup = None;
                (action == Action::Confirm).then_some(effect)
            }
            Some(Popup::Export { path }) => match action {
                Action::Close => {
                    self.popup = None;
                    None
                }
                Action::DeleteBack => {
                    path.pop();
                    None
                }
                Action::Confirm => {
                    let path = PathBuf::from(std::mem::take(path));
                    self.popup = None;
                    Some(Effect::Export(path))
                }
                _ => None,
            },
            None if self.editing_filter => {
                match action {
                    Action::Confirm => self.editing_filter = false,
                    Action::Close => {
                        self.filter.clear();
                        self.editing_filter = false;
                    }
                    Action::DeleteBack => {
                        self.filter.pop();
                    }
                    _ => {}
                }
                None
            }
            None => self.apply_main(action, view),
        }
    }

    fn apply_main(&mut self, action: Action, view: &View) -> Option<Effect> {
        let page = view.log_rows.max(1) as isize;
        match action {
            Action::Up | Action::Down if self.focus == Focus::Listeners => {
                let count = view.listeners.len();
                if count > 0 {
                    let current = self.selected_listener.min(count - 1);
                    self.selected_listener = if action == Action::Down {
                        (current + 1) % count
                    } else {
                        (current + count - 1) % count
                    };
                }
            }
            Action::Up => self.log.move_by(-1, view.log),
            Action::Down => self.log.move_by(1, view.log),
            Action::PageUp => self.log.move_by(-page, view.log),
            Action::PageDown => self.log.move_by(page, view.log),
            Action::Home => self.log.oldest(view.log),
            Action::End => self.log.newest(),
            Action::ToggleFollow => self.log.toggle_follow(view.log),
            Action::SwitchFocus => {
                self.focus = match self.focus {
                    Focus::Listeners => Focus::Log,
                    Focus::Log => Focus::Listeners,
                };
            }
            Action::StartFilter => self.editing_filter = true,
            Action::ClearFilter => self.filter.clear(),
            Action::OpenDetail => {
                let at = self.log.selected_position(view.log)?;
                return Some(self.open_at(view.log.number_at(at)));
            }
            Action::PauseReplay => return Some(Effect::PauseReplay),
            Action::ToggleGrouping => {
                self.grouped = !self.grouped;
                // The cursor stays on its change (or a transaction's first change).
                if self.grouped {
                    // A note has no row there: the newest row instead.
                    self.log.renumber(|row| match note_of_row(row) {
                        Some(_) => u64::MAX,
                        None => change_row(row),
                    });
                } else {
                    self.log.renumber(|row| match RowRef::of(row) {
                        RowRef::Tx(number) | RowRef::Change(number) => number,
                    });
                }
            }
            Action::Expand | Action::Collapse if self.focus == Focus::Log && self.grouped => {
                self.expand_tx(action == Action::Expand, view.log);
            }
            Action::Expand | Action::Collapse if self.focus == Focus::Listeners => {
                let identity = self.selected_listener(view.listeners)?.identity.clone();
                if action == Action::Expand {
                    self.expanded_listeners.insert(identity);
                } else {
                    self.expanded_listeners.remove(&identity);
                }
            }
            Action::AddListener => {
                self.popup = Some(Popup::Add(AddDialog::new(view.databases.to_vec())));
            }
            Action::TogglePause => {
                let listener = self.selected_listener(view.listeners)?;
                return Some(Effect::TogglePause(listener.identity.clone()));
            }
            Action::Stop => {
                let listener = self.selected_listener(view.listeners)?;
                let stop = Effect::Stop(listener.identity.clone());
                if listener.state.is_final() {
                    // Refused with the reason by the runtime; nothing to confirm.
                    return Some(stop);
                }
                let mut costs = Vec::new();
                if listener.holds_persistent_slot() {
                    costs.push(
                        "its persistent slot keeps holding WAL on the server while it is stopped",
                    );
                }
                if listener.in_transaction {
                    costs.push(
                        "it is in the middle of a transaction, which is read again after a restart",
                    );
                }
                if costs.is_empty() {
                    return Some(stop);
                }
                self.popup = Some(Popup::Confirm {
                    question: format!("Stop {}? {}.", listener.identity, costs.join("; ")),
                    effect: stop,
                });
            }
            Action::Restart | Action::Remove => {
                let identity = self.selected_listener(view.listeners)?.identity.clone();
                return Some(if action == Action::Restart {
                    Effect::Restart(identity)
                } else {
                    Effect::Remove(identity)
                });
            }
            Action::ListenerDetail => {
                let identity = self.selected_listener(view.listeners)?.identity.clone();
                self.popup = Some(Popup::Listener {
                    identity,
                    scroll: 0,
                });
            }
            Action::NextMatch | Action::PreviousMatch => {
                self.focus = Focus::Log;
                let delta = if action == Action::NextMatch { 1 } else { -1 };
                self.log.move_by(delta, view.log);
            }
            Action::Copy => {
                let at = self.log.selected_position(view.log)?;
                let row = view.log.number_at(at);
                return Some(match (self.grouped, RowRef::of(row)) {
                    (false, _) => Effect::Copy(row),
                    (true, RowRef::Change(number)) => Effect::Copy(number),
                    (true, RowRef::Tx(anchor)) => Effect::CopyTransaction(anchor),
                });
            }
            Action::Export => {
                self.popup = Some(Popup::Export {
                    path: view.export_path.display().to_string(),
                });
            }
            _ => {}
        }
        None
    }

    /// What Enter on log row `number` opens: a change, or in the grouped log a transaction.
    fn open_at(&self, number: u64) -> Effect {
        if !self.grouped {
            return Effect::OpenDetail(number);
        }
        match RowRef::of(number) {
            RowRef::Tx(anchor) => Effect::OpenTransaction(anchor),
            RowRef::Change(number) => Effect::OpenDetail(number),
        }
    }

    /// Expands the transaction at the cursor, or collapses it (from one of its changes too,
    /// the cursor then moving up to the transaction's row).
    fn expand_tx(&mut self, expand: bool, log: &dyn LogIndex) {
        let Some(at) = self.log.selected_position(log) else {
            return;
        };
        let anchor = match RowRef::of(log.number_at(at)) {
            RowRef::Tx(anchor) => anchor,
            RowRef::Change(_) if expand => return,
            RowRef::Change(_) => {
                let Some(anchor) =
                    (0..at)
                        .rev()
                        .find_map(|at| match RowRef::of(log.number_at(at)) {
                            RowRef::Tx(anchor) => Some(anchor),
                            RowRef::Change(_) => None,
                        })
                else {
                    return;
                };
                self.log.select_number(tx_row(anchor));
                anchor
            }
        };
        if expand {
            self.expanded_tx.insert(anchor);
        } else {
            self.expanded_tx.remove(&anchor);
        }
    }

    pub fn show_transaction(&mut self, view: TxView) {
        self.popup = Some(Popup::Transaction(Box::new(view)));
    }

    pub fn show_note(&mut self, view: TxView) {
        self.popup = Some(Popup::Note(Box::new(view)));
    }

    fn popup_scroll(&mut self) -> Option<&mut usize> {
        match &mut self.popup {
            Some(Popup::Help { scroll }) => Some(scroll),
            Some(Popup::Detail(detail)) => Some(&mut detail.scroll),
            Some(Popup::Transaction(view) | Popup::Note(view)) => Some(&mut view.scroll),
            Some(Popup::Listener { scroll, .. }) => Some(scroll),
            Some(Popup::Add(_) | Popup::Confirm { .. } | Popup::Export { .. }) | None => None,
        }
    }

    /// A click on the main screen: on listener row `listener` (counted from the top row in
    /// view) or on log row `log_row`, which it selects and focuses.
    pub fn click(&mut self, target: Click, view: &View) {
        if self.popup.is_some() || self.editing_filter {
            return;
        }
        match target {
            Click::Listener(row) => {
                let at = self.listeners_top + row;
                if at < view.listeners.len() {
                    self.selected_listener = at;
                    self.focus = Focus::Listeners;
                }
            }
            Click::Log(position) => {
                if position < view.log.len() {
                    self.log.select(position, view.log);
                    self.focus = Focus::Log;
                }
            }
        }
    }

    /// Keeps popup scrolling within its content, now that the content's size is known.
    pub fn clamp_popup_scroll(&mut self, content_rows: usize, visible_rows: usize) {
        let most = content_rows.saturating_sub(visible_rows);
        if let Some(scroll) = self.popup_scroll() {
            *scroll = (*scroll).min(most);
        }
    }
}

/// Scrolling a popup. The far end is clamped once the content's size is known
/// (`clamp_popup_scroll`).
fn scroll_by(scroll: &mut usize, action: Action, page: usize) {
    let page = page.max(1);
    *scroll = match action {
        Action::Up => scroll.saturating_sub(1),
        Action::Down => scroll.saturating_add(1),
        Action::PageUp => scroll.saturating_sub(page),
        Action::PageDown => scroll.saturating_add(page),
        Action::Home => 0,
        Action::End => usize::MAX,
        _ => *scroll,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::log_index::AllEntries;

    fn view<'a>(listeners: &'a [ListenerSnapshot], log: &'a dyn LogIndex) -> View<'a> {
        View {
            listeners,
            log,
            databases: &[],
            log_rows: 10,
            popup_rows: 10,
            export_path: PathBuf::from("/tmp/events.jsonl"),
        }
    }

    #[test]
    fn scrolling_up_stops_following_and_reaching_the_end_follows_again() {
        let mut cursor = LogCursor::default();
        let log = AllEntries {
            first: 100,
            len: 50,
        };
        assert!(cursor.follow);
        assert_eq!(cursor.selected_position(&log), Some(49));

        cursor.move_by(-1, &log);
        assert!(!cursor.follow);
        assert_eq!(cursor.selected_position(&log), Some(48));

        // New entries arrive and old ones are evicted: the cursor stays on its entry.
        let moved_on = AllEntries {
            first: 105,
            len: 50,
        };
        assert_eq!(cursor.selected_position(&moved_on), Some(43));

        cursor.move_by(100, &moved_on);
        assert!(cursor.follow, "the newest entry reached by moving down");
        cursor.move_by(-20, &moved_on);
        cursor.newest();
        assert_eq!(cursor.selected_position(&moved_on), Some(49));

        cursor.toggle_follow(&moved_on);
        assert!(!cursor.follow);
        let more = AllEntries {
            first: 110,
            len: 50,
        };
        assert_eq!(
            cursor.selected_position(&more),
            Some(44),
            "stopping the follow pins the entry that was newest"
        );
        cursor.toggle_follow(&more);
        assert_eq!(cursor.selected_position(&more), Some(49));
    }

    #[test]
    fn home_moves_to_the_oldest_and_an_evicted_cursor_lands_on_the_oldest_left() {
        let mut cursor = LogCursor::default();
        cursor.oldest(&AllEntries { first: 0, len: 10 });
        assert!(!cursor.follow);
        assert_eq!(
            cursor.selected_position(&AllEntries { first: 5, len: 10 }),
            Some(0)
        );
        // An empty log has no cursor.
        assert_eq!(cursor.selected_position(&AllEntries::default()), None);
    }

    #[test]
    fn the_window_follows_the_tail_or_stays_put() {
        let mut cursor = LogCursor::default();
        let log = AllEntries { first: 0, len: 100 };
        assert_eq!(
            cursor.place(&log, 10),
            LogWindow {
                top: 90,
                rows: 10,
                selected: Some(99)
            }
        );
        cursor.move_by(-15, &log);
        assert_eq!(
            cursor.place(&log, 10),
            LogWindow {
                top: 84,
                rows: 10,
                selected: Some(84)
            }
        );
        // Newer entries do not move a window that does not follow.
        let grown = AllEntries { first: 0, len: 120 };
        assert_eq!(cursor.place(&grown, 10).top, 84);
        // A short log fills from the top.
        let mut fresh = LogCursor::default();
        assert_eq!(
            fresh.place(&AllEntries { first: 0, len: 3 }, 10),
            LogWindow {
                top: 0,
                rows: 3,
                selected: Some(2)
            }
        );
    }

    #[test]
    fn listener_selection_wraps_both_ways() {
        let listeners = crate::tui::testing::listener_snapshots(3);
        let log = AllEntries::default();
        let mut state = UiState::default();
        state.apply(Action::Up, &view(&listeners, &log));
        assert_eq!(state.selected_listener, 2);
        state.apply(Action::Down, &view(&listeners, &log));
        assert_eq!(state.selected_listener, 0);
        state.apply(Action::Down, &view(&listeners, &log));
        assert_eq!(state.selected_listener, 1);
        assert_eq!(
            state.apply(Action::TogglePause, &view(&listeners, &log)),
            Some(Effect::TogglePause(listeners[1].identity.clone()))
        );
        assert_eq!(
            state.apply(Action::Stop, &view(&listeners, &log)),
            Some(Effect::Stop(listeners[1].identity.clone()))
        );
        // With no listeners, nothing to pause.
        assert_eq!(state.apply(Action::TogglePause, &view(&[], &log)), None);
    }

    #[test]
    fn a_click_selects_a_listener_or_an_event_and_takes_the_focus() {
        let listeners = crate::tui::testing::listener_snapshots(3);
        let log = AllEntries { first: 50, len: 30 };
        let mut state = UiState::default();
        state.click(Click::Log(12), &view(&listeners, &log));
        assert_eq!(state.focus, Focus::Log);
        assert!(!state.log.follow);
        assert_eq!(state.log.selected_position(&log), Some(12));
        state.click(Click::Listener(2), &view(&listeners, &log));
        assert_eq!(
            (state.focus, state.selected_listener),
            (Focus::Listeners, 2)
        );
        // Below the last row, nothing changes.
        state.click(Click::Listener(7), &view(&listeners, &log));
        state.click(Click::Log(30), &view(&listeners, &log));
        assert_eq!(
            (state.focus, state.selected_listener),
            (Focus::Listeners, 2)
        );
        assert_eq!(state.log.selected_position(&log), Some(12));
    }

    #[test]
    fn the_listeners_table_scrolls_only_to_show_the_selection() {
        let mut state = UiState {
            selected_listener: 12,
            ..UiState::default()
        };
        state.place_listeners(50, 10);
        assert_eq!(state.listeners_top, 3);
        state.selected_listener = 8;
        state.place_listeners(50, 10);
        assert_eq!(state.listeners_top, 3, "still in view");
        state.selected_listener = 1;
        state.place_listeners(50, 10);
        assert_eq!(state.listeners_top, 1);
        state.place_listeners(5, 10);
        assert_eq!(state.listeners_top, 0, "all fit");
    }

    #[test]
    fn up_and_down_move_the_log_when_it_has_the_focus() {
        let listeners = crate::tui::testing::listener_snapshots(2);
        let log = AllEntries { first: 0, len: 30 };
        let mut state = UiState::default();
        state.apply(Action::SwitchFocus, &view(&listeners, &log));
        assert_eq!(state.mode(), Mode::Main(Focus::Log));
        state.apply(Action::Up, &view(&listeners, &log));
        assert_eq!(state.selected_listener, 0);
        assert_eq!(state.log.selected_position(&log), Some(28));
        state.apply(Action::PageUp, &view(&listeners, &log));
        assert_eq!(state.log.selected_position(&log), Some(18));
        state.apply(Action::Home, &view(&listeners, &log));
        assert_eq!(state.log.selected_position(&log), Some(0));
        assert_eq!(
            state.apply(Action::OpenDetail, &view(&listeners, &log)),
            Some(Effect::OpenDetail(0))
        );
        state.apply(Action::End, &view(&listeners, &log));
        assert!(state.log.follow);
    }

    #[test]
    fn the_filter_is_typed_kept_or_cleared() {
        let log = AllEntries::default();
        let mut state = UiState::default();
        state.apply(Action::StartFilter, &view(&[], &log));
        assert_eq!(state.mode(), Mode::Filter);
        for c in "ordersx".chars() {
            state.type_char(c);
        }
        state.apply(Action::DeleteBack, &view(&[], &log));
        assert_eq!(state.filter, "orders");
        state.apply(Action::Confirm, &view(&[], &log));
        assert_eq!(state.mode(), Mode::Main(Focus::Listeners));
        assert_eq!(state.filter, "orders", "kept");
        state.apply(Action::StartFilter, &view(&[], &log));
        state.apply(Action::Close, &view(&[], &log));
        assert_eq!(state.filter, "");
        state.filter = "x".into();
        state.apply(Action::ClearFilter, &view(&[], &log));
        assert_eq!(state.filter, "", "Esc on the main screen clears it too");
    }

    #[test]
    fn help_toggles_and_popups_close_with_esc() {
        let log = AllEntries::default();
        let mut state = UiState::default();
        state.apply(Action::Help, &view(&[], &log));
        assert_eq!(state.mode(), Mode::Help);
        state.apply(Action::PageDown, &view(&[], &log));
        state.clamp_popup_scroll(14, 10);
        assert!(matches!(state.popup, Some(Popup::Help { scroll: 4 })));
        state.apply(Action::Help, &view(&[], &log));
        assert!(state.popup.is_none());
        state.apply(Action::Help, &view(&[], &log));
        state.apply(Action::Close, &view(&[], &log));
        assert!(state.popup.is_none());
        assert_eq!(
            state.apply(Action::Quit, &view(&[], &log)),
            Some(Effect::Quit)
        );
    }
}

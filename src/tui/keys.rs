//! Every key binding, in one table: key → action lookup, the help screen and the footer hints
//! are all read from `BINDINGS`, so they cannot disagree.

use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A key as the bindings name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Ctrl(char),
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    /// Any printable character, in a text field (bindings only; never pressed as such).
    Text,
}

impl Key {
    /// The key of a terminal key event, if a binding could name it.
    pub fn from_event(event: KeyEvent) -> Option<Key> {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        Some(match event.code {
            KeyCode::Char(c) if ctrl => Key::Ctrl(c.to_ascii_lowercase()),
            KeyCode::Char(c) => Key::Char(c),
            KeyCode::Up => Key::Up,
            KeyCode::Down => Key::Down,
            KeyCode::Left => Key::Left,
            KeyCode::Right => Key::Right,
            KeyCode::PageUp => Key::PageUp,
            KeyCode::PageDown => Key::PageDown,
            KeyCode::Home => Key::Home,
            KeyCode::End => Key::End,
            KeyCode::Enter => Key::Enter,
            KeyCode::Esc => Key::Esc,
            KeyCode::Tab => Key::Tab,
            KeyCode::BackTab => Key::BackTab,
            KeyCode::Backspace => Key::Backspace,
            _ => return None,
        })
    }

    /// Whether this binding key stands for the pressed key.
    fn matches(self, pressed: Key) -> bool {
        self == pressed || (self == Key::Text && matches!(pressed, Key::Char(_)))
    }

    /// Arrows, which hints run together ("↑↓"); letters are kept apart ("n/N").
    fn is_glyph(self) -> bool {
        matches!(self, Key::Up | Key::Down | Key::Left | Key::Right)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Char(' ') => f.write_str("Space"),
            Key::Char(c) => write!(f, "{c}"),
            Key::Ctrl(c) => write!(f, "Ctrl-{}", c.to_ascii_uppercase()),
            Key::Up => f.write_str("↑"),
            Key::Down => f.write_str("↓"),
            Key::Left => f.write_str("←"),
            Key::Right => f.write_str("→"),
            Key::PageUp => f.write_str("PgUp"),
            Key::PageDown => f.write_str("PgDn"),
            Key::Home => f.write_str("Home"),
            Key::End => f.write_str("End"),
            Key::Enter => f.write_str("Enter"),
            Key::Esc => f.write_str("Esc"),
            Key::Tab => f.write_str("Tab"),
            Key::BackTab => f.write_str("Shift-Tab"),
            Key::Backspace => f.write_str("Backspace"),
            Key::Text => f.write_str("(type)"),
        }
    }
}

/// Where a binding applies. A screen mode looks bindings up in a list of contexts, first match
/// wins (see `Mode::contexts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Everywhere, even while typing.
    Global,
    /// Everywhere except in text fields.
    Screen,
    /// The main screen, no popup open.
    Main,
    /// The main screen with the listeners table focused.
    Listeners,
    /// The main screen with the event log focused.
    Log,
    /// Typing the log filter.
    Filter,
    Help,
    Detail,
    AddDialog,
    /// The selected listener's detail (after i).
    ListenerDetail,
    /// A yes/no question.
    Confirm,
    /// Typing the path of the export file (after w).
    ExportPath,
}

impl Context {
    /// The help screen's heading for this context's bindings.
    pub fn title(self) -> &'static str {
        match self {
            Context::Global => "Everywhere",
            Context::Screen => "Everywhere but text fields",
            Context::Main => "Main screen",
            Context::Listeners => "Listeners table (focused)",
            Context::Log => "Event log (focused)",
            Context::Filter => "Log filter (after /)",
            Context::Help => "Help",
            Context::Detail => "Event detail",
            Context::AddDialog => "Add a listener",
            Context::ListenerDetail => "Listener detail",
            Context::Confirm => "Confirmation",
            Context::ExportPath => "Export path (after w)",
        }
    }

    /// Every context, in the order the help screen lists them.
    pub const ALL: [Context; 12] = [
        Context::Global,
        Context::Screen,
        Context::Main,
        Context::Listeners,
        Context::Log,
        Context::Filter,
        Context::Detail,
        Context::ListenerDetail,
        Context::AddDialog,
        Context::Confirm,
        Context::ExportPath,
        Context::Help,
    ];
}

/// What a key asks for. The UI state decides what it means in the current mode (`Up` selects
/// a listener, moves in the log or scrolls a popup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Help,
    Close,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Previous,
    Next,
    SwitchFocus,
    AddListener,
    TogglePause,
    Stop,
    OpenDetail,
    StartFilter,
    ClearFilter,
    ToggleFollow,
    Confirm,
    DeleteBack,
    Type,
    ToggleGrouping,
    Expand,
    Collapse,
    PauseReplay,
    ListenerDetail,
    Restart,
    Remove,
    NextMatch,
    PreviousMatch,
    Copy,
    Export,
}

pub struct Binding {
    pub keys: &'static [Key],
    pub action: Action,
    pub description: &'static str,
    /// The footer's short label; bindings in a row with the same label share one hint.
    pub hint: Option<&'static str>,
    pub context: Context,
}

const fn bind(
    context: Context,
    keys: &'static [Key],
    action: Action,
    hint: Option<&'static str>,
    description: &'static str,
) -> Binding {
    Binding {
        keys,
        action,
        description,
        hint,
        context,
    }
}

use Action as A;
use Context as C;
use Key as K;

/// The one list of key bindings. Within a context, the order is the footer's priority: hints
/// that do not fit are dropped from the end.
#[rustfmt::skip]
pub static BINDINGS: &[Binding] = &[
    //   context        keys                        action           hint              description
    bind(C::Global,     &[K::Ctrl('c')],            A::Quit,         None,             "quit (terminal restored)"),
    bind(C::Screen,     &[K::Char('q')],            A::Quit,         Some("quit"),     "quit (terminal restored)"),
    bind(C::Screen,     &[K::Char('?')],            A::Help,         Some("help"),     "show or hide this help"),
    bind(C::Listeners,  &[K::Up, K::Char('k')],     A::Up,           Some("select"),   "select the previous listener"),
    bind(C::Listeners,  &[K::Down, K::Char('j')],   A::Down,         Some("select"),   "select the next listener"),
    bind(C::Log,        &[K::Up, K::Char('k')],     A::Up,           Some("move"),     "select the previous (older) event"),
    bind(C::Log,        &[K::Down, K::Char('j')],   A::Down,         Some("move"),     "select the next (newer) event; at the newest, follow"),
    bind(C::Log,        &[K::Right, K::Char('l')],  A::Expand,       Some("expand"),   "grouped log: show the selected transaction's changes"),
    bind(C::Log,        &[K::Left, K::Char('h')],   A::Collapse,     Some("expand"),   "grouped log: fold the selected transaction back into one row"),
    bind(C::Listeners,  &[K::Right, K::Char('l')],  A::Expand,       None,   "show the selected listener's tables: counts, rate, last change"),
    bind(C::Listeners,  &[K::Left, K::Char('h')],   A::Collapse,     None,   "hide the selected listener's tables"),
    bind(C::Listeners,  &[K::Enter],                A::ListenerDetail, Some("info"),   "show the selected listener's detail"),
    bind(C::Main,       &[K::Char('a')],            A::AddListener,  Some("add"),      "add a listener (database, table or scope like public.*, strategy)"),
    bind(C::Main,       &[K::Char('p')],            A::TogglePause,  Some("pause"),    "pause / resume the selected listener"),
    bind(C::Main,       &[K::Char('s')],            A::Stop,         Some("stop"),     "stop the selected listener (asks first when it holds a persistent slot or is mid-transaction)"),
    bind(C::Main,       &[K::Char('r')],            A::Restart,      Some("restart"),  "restart the selected stopped or failed listener with its configured settings"),
    bind(C::Main,       &[K::Char('x')],            A::Remove,       None,             "remove the selected stopped or failed listener from the table"),
    bind(C::Main,       &[K::Char('i')],            A::ListenerDetail, Some("info"),   "the selected listener's detail: full reason, scope and tables, slot, lag, history"),
    bind(C::Log,        &[K::Enter],                A::OpenDetail,   Some("detail"),   "show the selected event: before and after, changes highlighted; a note whole"),
    bind(C::Main,       &[K::Char('/')],            A::StartFilter,  Some("filter"),   "filter the log: every word must match; id=4 (a column equals), key:4 (the key equals), listener:NAME, op:update, table:orders, or a plain word anywhere"),
    bind(C::Main,       &[K::Char('n')],            A::NextMatch,    Some("match"),    "move to the next (newer) event the filter shows"),
    bind(C::Main,       &[K::Char('N')],            A::PreviousMatch, Some("match"),   "move to the previous (older) event the filter shows"),
    bind(C::Main,       &[K::Char('y')],            A::Copy,         Some("copy"),     "copy the selected event (or transaction) as JSON to the clipboard (OSC 52)"),
    bind(C::Main,       &[K::Char('w')],            A::Export,       Some("write"),    "write the events the filter shows to a JSON-lines file (the path is asked)"),
    bind(C::Main,       &[K::Char('t')],            A::ToggleGrouping, Some("group tx"), "group the log by transaction, or not (Enter on one shows it whole)"),
    bind(C::Main,       &[K::Char(' ')],            A::PauseReplay,  None,             "replay (--replay FILE): pause or resume reading the file"),
    bind(C::Main,       &[K::Char('f')],            A::ToggleFollow, Some("follow"),   "follow the newest event, or stop following"),
    bind(C::Main,       &[K::Tab, K::BackTab],      A::SwitchFocus,  Some("focus"),    "move the focus between the listeners and the log"),
    bind(C::Main,       &[K::PageUp],               A::PageUp,       Some("scroll"),   "scroll the log up a page"),
    bind(C::Main,       &[K::PageDown],             A::PageDown,     Some("scroll"),   "scroll the log down a page"),
    bind(C::Main,       &[K::Home],                 A::Home,         None,             "go to the oldest event in the log"),
    bind(C::Main,       &[K::End],                  A::End,          None,             "go to the newest event and follow"),
    bind(C::Main,       &[K::Esc],                  A::ClearFilter,  None,             "clear the log filter"),
    bind(C::Filter,     &[K::Enter],                A::Confirm,      Some("keep"),     "keep the filter and leave the field"),
    bind(C::Filter,     &[K::Esc],                  A::Close,        Some("clear"),    "clear the filter and leave the field"),
    bind(C::Filter,     &[K::Backspace],            A::DeleteBack,   None,             "delete the last character"),
    bind(C::Filter,     &[K::Text],                 A::Type,         None,             "edit the filter; the log narrows as you type"),
    bind(C::Detail,     &[K::Up, K::Char('k')],     A::Up,           Some("scroll"),   "scroll up"),
    bind(C::Detail,     &[K::Down, K::Char('j')],   A::Down,         Some("scroll"),   "scroll down"),
    bind(C::Detail,     &[K::Left, K::Char('h')],   A::Previous,     Some("event"),    "show the previous (older) event"),
    bind(C::Detail,     &[K::Right, K::Char('l')],  A::Next,         Some("event"),    "show the next (newer) event"),
    bind(C::Detail,     &[K::PageUp],               A::PageUp,       None,             "scroll up a page"),
    bind(C::Detail,     &[K::PageDown],             A::PageDown,     None,             "scroll down a page"),
    bind(C::Detail,     &[K::Home],                 A::Home,         None,             "scroll to the top"),
    bind(C::Detail,     &[K::End],                  A::End,          None,             "scroll to the bottom"),
    bind(C::Detail,     &[K::Char('y')],            A::Copy,         Some("copy"),     "copy this event as JSON to the clipboard (OSC 52)"),
    bind(C::Detail,     &[K::Esc, K::Enter],        A::Close,        Some("close"),    "close the detail"),
    bind(C::ListenerDetail, &[K::Up, K::Char('k')], A::Up,           Some("scroll"),   "scroll up"),
    bind(C::ListenerDetail, &[K::Down, K::Char('j')], A::Down,       Some("scroll"),   "scroll down"),
    bind(C::ListenerDetail, &[K::PageUp],           A::PageUp,       None,             "scroll up a page"),
    bind(C::ListenerDetail, &[K::PageDown],         A::PageDown,     None,             "scroll down a page"),
    bind(C::ListenerDetail, &[K::Home],             A::Home,         None,             "scroll to the top"),
    bind(C::ListenerDetail, &[K::End],              A::End,          None,             "scroll to the bottom"),
    bind(C::ListenerDetail, &[K::Char('r')],        A::Restart,      Some("restart"),  "restart this listener, when stopped or failed"),
    bind(C::ListenerDetail, &[K::Esc, K::Enter, K::Char('i')], A::Close, Some("close"), "close the detail"),
    bind(C::Confirm,    &[K::Char('y')],            A::Confirm,      Some("yes"),      "yes, do it"),
    bind(C::Confirm,    &[K::Char('n'), K::Esc],    A::Close,        Some("no"),       "no, leave it"),
    bind(C::ExportPath, &[K::Enter],                A::Confirm,      Some("write"),    "write the file"),
    bind(C::ExportPath, &[K::Backspace],            A::DeleteBack,   None,             "delete the last character"),
    bind(C::ExportPath, &[K::Esc],                  A::Close,        Some("cancel"),   "close without writing"),
    bind(C::ExportPath, &[K::Text],                 A::Type,         None,             "edit the path"),
    bind(C::AddDialog,  &[K::Up],                   A::Up,           Some("choose"),   "previous choice"),
    bind(C::AddDialog,  &[K::Down],                 A::Down,         Some("choose"),   "next choice"),
    bind(C::AddDialog,  &[K::Enter],                A::Confirm,      Some("next"),     "take the choice; on the last step, add the listener"),
    bind(C::AddDialog,  &[K::Backspace],            A::DeleteBack,   Some("back"),     "delete a character; in an empty field, go back a step"),
    bind(C::AddDialog,  &[K::Esc],                  A::Close,        Some("cancel"),   "close the dialog"),
    bind(C::AddDialog,  &[K::Text],                 A::Type,         None,             "filter the tables, or edit the cursor column"),
    bind(C::Help,       &[K::Up, K::Char('k')],     A::Up,           Some("scroll"),   "scroll up"),
    bind(C::Help,       &[K::Down, K::Char('j')],   A::Down,         Some("scroll"),   "scroll down"),
    bind(C::Help,       &[K::PageUp],               A::PageUp,       None,             "scroll up a page"),
    bind(C::Help,       &[K::PageDown],             A::PageDown,     None,             "scroll down a page"),
    bind(C::Help,       &[K::Home],                 A::Home,         None,             "scroll to the top"),
    bind(C::Help,       &[K::End],                  A::End,          None,             "scroll to the bottom"),
    bind(C::Help,       &[K::Esc],                  A::Close,        Some("close"),    "close the help"),
];

/// The binding a pressed key triggers in a screen mode (its contexts, first match wins).
pub fn binding_for(pressed: Key, contexts: &[Context]) -> Option<&'static Binding> {
    contexts.iter().find_map(|&context| {
        BINDINGS
            .iter()
            .find(|b| b.context == context && b.keys.iter().any(|k| k.matches(pressed)))
    })
}

/// One footer hint: keys and a short label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub keys: String,
    pub label: &'static str,
}

/// The footer hints of a screen mode, most important first. Neighbouring bindings with the same
/// label merge their first keys ("↑↓ select").
pub fn hints(contexts: &[Context]) -> Vec<Hint> {
    let mut hints: Vec<Hint> = Vec::new();
    let mut previous: Option<&Binding> = None;
    for binding in contexts
        .iter()
        .flat_map(|&context| BINDINGS.iter().filter(move |b| b.context == context))
    {
        let key = binding.keys[0];
        // A label shown once is enough ("Enter info" in the listeners, "i info" elsewhere).
        let shown = |label| {
            hints.iter().any(|h: &Hint| h.label == label)
                && previous.is_none_or(|before: &Binding| before.hint != Some(label))
        };
        let Some(label) = binding.hint.filter(|&label| !shown(label)) else {
            previous = None;
            continue;
        };
        match (hints.last_mut(), previous) {
            (Some(last), Some(before)) if before.hint == Some(label) => {
                let run_together = key.is_glyph() && before.keys[0].is_glyph();
                if !run_together {
                    last.keys.push('/');
                }
                last.keys.push_str(&key.to_string());
            }
            _ => hints.push(Hint {
                keys: key.to_string(),
                label,
            }),
        }
        previous = Some(binding);
    }
    hints
}

/// A binding's keys as the help screen lists them: "↑ k".
pub fn keys_label(binding: &Binding) -> String {
    binding
        .keys
        .iter()
        .map(Key::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::state::{Focus, Mode};

    #[test]
    fn no_key_means_two_things_in_one_mode() {
        for mode in Mode::ALL {
            let contexts = mode.contexts();
            let keys: Vec<(Key, Context)> = contexts
                .iter()
                .flat_map(|&c| {
                    BINDINGS
                        .iter()
                        .filter(move |b| b.context == c)
                        .flat_map(move |b| b.keys.iter().map(move |&k| (k, c)))
                })
                .collect();
            for (i, (key, context)) in keys.iter().enumerate() {
                for (other, other_context) in &keys[i + 1..] {
                    assert!(
                        !(key.matches(*other) || other.matches(*key)),
                        "{mode:?}: {key} is bound in {context:?} and {other_context:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn spec_keys_do_what_the_spec_says() {
        let main = Mode::Main(Focus::Listeners).contexts();
        let action = |key| binding_for(key, main).map(|b| b.action);
        assert_eq!(action(Key::Up), Some(Action::Up));
        assert_eq!(action(Key::Char('k')), Some(Action::Up));
        assert_eq!(action(Key::Down), Some(Action::Down));
        assert_eq!(action(Key::Char('j')), Some(Action::Down));
        assert_eq!(action(Key::Char('a')), Some(Action::AddListener));
        assert_eq!(action(Key::Char('p')), Some(Action::TogglePause));
        assert_eq!(action(Key::Char('s')), Some(Action::Stop));
        assert_eq!(action(Key::Char('?')), Some(Action::Help));
        assert_eq!(action(Key::Char('q')), Some(Action::Quit));
        assert_eq!(action(Key::Ctrl('c')), Some(Action::Quit));
        assert_eq!(action(Key::Char('r')), Some(Action::Restart));
        assert_eq!(action(Key::Char('i')), Some(Action::ListenerDetail));
        assert_eq!(action(Key::Enter), Some(Action::ListenerDetail));
        assert_eq!(action(Key::Char('y')), Some(Action::Copy));
        assert_eq!(action(Key::Char('w')), Some(Action::Export));
        assert_eq!(action(Key::Char('z')), None);
        let log = Mode::Main(Focus::Log).contexts();
        assert_eq!(
            binding_for(Key::Enter, log).map(|b| b.action),
            Some(Action::OpenDetail),
            "Enter opens the event when the log has the focus"
        );
        // While typing, letters are text; Ctrl-C still quits.
        let filter = Mode::Filter.contexts();
        assert_eq!(
            binding_for(Key::Char('q'), filter).map(|b| b.action),
            Some(Action::Type)
        );
        assert_eq!(
            binding_for(Key::Ctrl('c'), filter).map(|b| b.action),
            Some(Action::Quit)
        );
    }

    #[test]
    fn hints_merge_neighbours_with_one_label() {
        let hints = hints(Mode::Main(Focus::Listeners).contexts());
        let text: Vec<String> = hints
            .iter()
            .map(|h| format!("{} {}", h.keys, h.label))
            .collect();
        assert_eq!(
            text,
            [
                "↑↓ select",
                "Enter info",
                "a add",
                "p pause",
                "s stop",
                "r restart",
                "/ filter",
                "n/N match",
                "y copy",
                "w write",
                "t group tx",
                "f follow",
                "Tab focus",
                "PgUp/PgDn scroll",
                "q quit",
                "? help"
            ]
        );
    }
}

//! The add-a-listener dialog: pick a database, a table or collection (read from the database,
//! type to filter), a strategy the database kind allows, and the options that strategy asks
//! for (polling: a cursor column).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::Command;
use crate::source::{Prompt, SourceKind, Strategy};
use crate::tui::effect::Effect;
use crate::tui::keys::Action;

#[derive(Debug, Clone)]
pub struct DatabaseChoice {
    pub name: String,
    pub kind: &'static dyn SourceKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Database,
    Table,
    Strategy,
    /// The strategy's prompt at this index.
    Option(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tables {
    Loading,
    Loaded(Vec<String>),
    Failed(String),
}

pub struct AddDialog {
    pub databases: Vec<DatabaseChoice>,
    pub step: Step,
    pub database: usize,
    pub tables: Tables,
    pub table_filter: String,
    /// Index into `matching_tables()`.
    pub table_selected: usize,
    pub table: String,
    pub strategy: usize,
    /// The values typed for the chosen strategy's prompts.
    pub options: Vec<String>,
    pub error: Option<String>,
    /// The table list asked for last; older answers are dropped.
    request: u64,
}

/// Unique across dialogs, so an answer for a dialog closed meanwhile is never taken.
static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

impl AddDialog {
    pub fn new(databases: Vec<DatabaseChoice>) -> Self {
        AddDialog {
            databases,
            step: Step::Database,
            database: 0,
            tables: Tables::Loading,
            table_filter: String::new(),
            table_selected: 0,
            table: String::new(),
            strategy: 0,
            options: Vec::new(),
            error: None,
            request: 0,
        }
    }

    pub fn database(&self) -> Option<&DatabaseChoice> {
        self.databases.get(self.database)
    }

    /// The listed tables that contain the typed filter (ignoring case), or that a typed scope
    /// (`public.*`) covers.
    pub fn matching_tables(&self) -> Vec<&str> {
        let Tables::Loaded(tables) = &self.tables else {
            return Vec::new();
        };
        let needle = self.table_filter.to_lowercase();
        let scope = self.typed_scope().is_some();
        tables
            .iter()
            .filter(|table| {
                let table = table.to_lowercase();
                if scope {
                    wildcard_match(&needle, &table)
                } else {
                    table.contains(&needle)
                }
            })
            .map(String::as_str)
            .collect()
    }

    /// The typed filter, when it is a scope (has a `*`): Enter watches it whole.
    pub fn typed_scope(&self) -> Option<&str> {
        let typed = self.table_filter.trim();
        typed.contains('*').then_some(typed)
    }

    pub fn strategies(&self) -> &'static [&'static dyn Strategy] {
        self.database()
            .map_or(&[], |database| database.kind.strategies())
    }

    /// The strategy chosen (or highlighted).
    pub fn chosen_strategy(&self) -> Option<&'static dyn Strategy> {
        self.strategies().get(self.strategy).copied()
    }

    /// The prompts of the chosen strategy.
    pub fn prompts(&self) -> &'static [Prompt] {
        self.chosen_strategy()
            .map_or(&[], |strategy| strategy.prompts())
    }

    /// An answer to `Effect::ListTables`.
    pub fn tables_listed(&mut self, request: u64, listed: Result<Vec<String>, String>) {
        if request != self.request || self.tables != Tables::Loading {
            return;
        }
        self.tables = match listed {
            Ok(tables) => Tables::Loaded(tables),
            Err(message) => Tables::Failed(message),
        };
        self.table_selected = 0;
    }

    /// The runtime refused to add the listener; the dialog stays open to fix the choice.
    pub fn refused(&mut self, message: String) {
        self.error = Some(message);
    }

    pub fn type_char(&mut self, c: char) {
        self.error = None;
        match self.step {
            Step::Table => {
                self.table_filter.push(c);
                self.table_selected = 0;
            }
            Step::Option(at) => {
                if let Some(value) = self.options.get_mut(at) {
                    value.push(c);
                }
            }
            Step::Database | Step::Strategy => {}
        }
    }

    pub fn apply(&mut self, action: Action) -> Option<Effect> {
        self.error = None;
        match action {
            Action::Up | Action::Down => {
                let count = match self.step {
                    Step::Database => self.databases.len(),
                    Step::Table => self.matching_tables().len(),
                    Step::Strategy => self.strategies().len(),
                    Step::Option(_) => 0,
                };
                let choice = match self.step {
                    Step::Database => &mut self.database,
                    Step::Table => &mut self.table_selected,
                    Step::Strategy => &mut self.strategy,
                    Step::Option(_) => return None,
                };
                if count > 0 {
                    *choice = if action == Action::Down {
                        (*choice + 1) % count
                    } else {
                        (*choice + count - 1) % count
                    };
                }
                None
            }
            Action::DeleteBack => {
                let field = match self.step {
                    Step::Table => &mut self.table_filter,
                    Step::Option(at) if at < self.options.len() => &mut self.options[at],
                    Step::Database | Step::Strategy | Step::Option(_) => {
                        self.go_back();
                        return None;
                    }
                };
                if field.pop().is_none() {
                    self.go_back();
                }
                self.table_selected = 0;
                None
            }
            Action::Confirm => self.confirm(),
            _ => None,
        }
    }

    fn go_back(&mut self) {
        self.step = match self.step {
            Step::Database | Step::Table => Step::Database,
            Step::Strategy => Step::Table,
            Step::Option(0) => Step::Strategy,
            Step::Option(at) => Step::Option(at - 1),
        };
    }

    fn confirm(&mut self) -> Option<Effect> {
        match self.step {
            Step::Database => {
                let database = self.database()?.name.clone();
                self.step = Step::Table;
                self.tables = Tables::Loading;
                self.table_filter.clear();
                self.table_selected = 0;
                self.request = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
                Some(Effect::ListTables {
                    request: self.request,
                    database,
                })
            }
            Step::Table => {
                let matching = self.matching_tables();
                // A scope, or a name not in the list (or when the list failed), is taken as
                // typed.
                let table = match (self.typed_scope(), matching.get(self.table_selected)) {
                    (Some(scope), _) => scope.to_string(),
                    (None, Some(table)) => table.to_string(),
                    (None, None) => self.table_filter.trim().to_string(),
                };
                if table.is_empty() {
                    self.error = Some("pick a table, or type its name".to_string());
                    return None;
                }
                self.table = table;
                self.step = Step::Strategy;
                self.strategy = 0;
                None
            }
            Step::Strategy => {
                let strategy = self.chosen_strategy()?;
                self.options = strategy
                    .prompts()
                    .iter()
                    .map(|prompt| prompt.default.to_string())
                    .collect();
                self.next_option(0)
            }
            Step::Option(at) => {
                let prompt = self.prompts().get(at)?;
                let value = self.options.get(at).map_or("", |value| value.trim());
                if value.is_empty() {
                    self.error = Some(format!("{} must not be empty: {}", prompt.key, prompt.help));
                    return None;
                }
                self.next_option(at + 1)
            }
        }
    }

    /// Asks for the prompt at `at`, or adds the listener once every prompt is answered.
    fn next_option(&mut self, at: usize) -> Option<Effect> {
        if at < self.prompts().len() {
            self.step = Step::Option(at);
            return None;
        }
        let strategy = self.chosen_strategy()?;
        Some(Effect::Add(Command::Add {
            database: self.database().map(|d| d.name.clone()).unwrap_or_default(),
            table: self.table.clone(),
            strategy: strategy.name().to_string(),
            options: self
                .options
                .iter()
                .map(|value| value.trim().to_string())
                .collect(),
        }))
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (at, part) in parts.iter().enumerate() {
        if at + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(found) => rest = &rest[found + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(strategies: &[&dyn Strategy]) -> Vec<&'static str> {
        strategies.iter().map(|strategy| strategy.name()).collect()
    }

    fn dialog() -> AddDialog {
        AddDialog::new(crate::tui::testing::database_choices())
    }

    fn list_request(effect: Option<Effect>) -> u64 {
        match effect {
            Some(Effect::ListTables { request, .. }) => request,
            other => panic!("expected a table list request, got {other:?}"),
        }
    }

    #[test]
    fn a_typed_scope_is_taken_whole() {
        assert!(wildcard_match("public.*", "public.orders"));
        assert!(!wildcard_match("public.*", "sales.orders"));
        assert!(wildcard_match("*.orders", "sales.orders"));
        assert!(wildcard_match("p*s", "public.items"));
        assert!(!wildcard_match("p*x", "public.items"));
        let mut dialog = dialog();
        dialog.apply(Action::Down);
        let request = list_request(dialog.apply(Action::Confirm));
        dialog.tables_listed(
            request,
            Ok(vec!["public.items".into(), "sales.orders".into()]),
        );
        for c in "public.*".chars() {
            dialog.type_char(c);
        }
        assert_eq!(dialog.matching_tables(), ["public.items"]);
        assert_eq!(dialog.apply(Action::Confirm), None);
        assert_eq!(dialog.table, "public.*");
        assert_eq!(dialog.step, Step::Strategy);
    }

    #[test]
    fn database_then_filtered_table_then_polling_with_a_cursor_column() {
        let mut dialog = dialog();
        dialog.apply(Action::Up);
        assert_eq!(dialog.database().unwrap().name, "shop", "wraps");
        let request = list_request(dialog.apply(Action::Confirm));
        assert_eq!(dialog.step, Step::Table);

        // An answer to an older request is dropped.
        dialog.tables_listed(request - 1, Ok(vec!["stale".into()]));
        assert_eq!(dialog.tables, Tables::Loading);
        dialog.tables_listed(
            request,
            Ok(vec![
                "public.items".into(),
                "public.orders".into(),
                "sales.orders".into(),
            ]),
        );
        for c in "ORD".chars() {
            dialog.type_char(c);
        }
        assert_eq!(dialog.matching_tables(), ["public.orders", "sales.orders"]);
        dialog.apply(Action::Down);
        assert_eq!(dialog.apply(Action::Confirm), None);
        assert_eq!(dialog.table, "sales.orders");
        assert_eq!(names(dialog.strategies()), ["logical", "polling"]);
        dialog.apply(Action::Down);
        assert_eq!(dialog.apply(Action::Confirm), None);
        assert_eq!(dialog.step, Step::Option(0));
        assert_eq!(dialog.options, ["updated_at"]);
        for _ in 0.."updated_at".len() {
            dialog.apply(Action::DeleteBack);
        }
        assert_eq!(dialog.apply(Action::Confirm), None, "an empty column");
        assert!(dialog.error.is_some());
        for c in "modified".chars() {
            dialog.type_char(c);
        }
        assert_eq!(
            dialog.apply(Action::Confirm),
            Some(Effect::Add(Command::Add {
                database: "shop".into(),
                table: "sales.orders".into(),
                strategy: "polling".into(),
                options: vec!["modified".into()],
            }))
        );
        dialog.refused("the listener shop/sales.orders exists already".into());
        assert!(dialog.error.is_some());
    }

    #[test]
    fn a_failed_list_still_takes_a_typed_name_and_backspace_goes_back() {
        let mut dialog = dialog();
        let request = list_request(dialog.apply(Action::Confirm));
        dialog.tables_listed(request, Err("connection refused".into()));
        assert_eq!(dialog.apply(Action::Confirm), None);
        assert!(dialog.error.is_some(), "nothing picked or typed");
        for c in "shop.carts".chars() {
            dialog.type_char(c);
        }
        dialog.apply(Action::Confirm);
        assert_eq!(dialog.table, "shop.carts");
        assert_eq!(names(dialog.strategies()), ["change_stream"]);
        dialog.apply(Action::DeleteBack);
        assert_eq!(dialog.step, Step::Table);
        assert_eq!(
            dialog.apply(Action::Confirm),
            None,
            "the typed name is still there"
        );
        assert_eq!(
            dialog.apply(Action::Confirm),
            Some(Effect::Add(Command::Add {
                database: "catalog".into(),
                table: "shop.carts".into(),
                strategy: "change_stream".into(),
                options: vec![],
            }))
        );
    }
}

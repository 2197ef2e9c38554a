//! The add-a-listener dialog: pick a database, a table or collection (read from the database,
//! type to filter), a strategy the database kind allows, and for polling a cursor column.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{DatabaseKind, Strategy};
use crate::runtime::Command;
use crate::tui::keys::Action;
use crate::tui::state::Effect;

/// The cursor column the dialog suggests for polling.
pub const DEFAULT_CURSOR_COLUMN: &str = "updated_at";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseChoice {
    pub name: String,
    pub kind: DatabaseKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Database,
    Table,
    Strategy,
    CursorColumn,
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
    pub cursor_column: String,
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
            cursor_column: DEFAULT_CURSOR_COLUMN.to_string(),
            error: None,
            request: 0,
        }
    }

    pub fn database(&self) -> Option<&DatabaseChoice> {
        self.databases.get(self.database)
    }

    /// The listed tables that contain the typed filter (ignoring case).
    pub fn matching_tables(&self) -> Vec<&str> {
        let Tables::Loaded(tables) = &self.tables else {
            return Vec::new();
        };
        let needle = self.table_filter.to_lowercase();
        tables
            .iter()
            .filter(|table| table.to_lowercase().contains(&needle))
            .map(String::as_str)
            .collect()
    }

    pub fn strategies(&self) -> &'static [Strategy] {
        self.database()
            .map_or(&[], |database| database.kind.strategies())
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
            Step::CursorColumn => self.cursor_column.push(c),
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
                    Step::CursorColumn => 0,
                };
                let choice = match self.step {
                    Step::Database => &mut self.database,
                    Step::Table => &mut self.table_selected,
                    Step::Strategy => &mut self.strategy,
                    Step::CursorColumn => return None,
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
                    Step::CursorColumn => &mut self.cursor_column,
                    Step::Database | Step::Strategy => {
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
            Step::CursorColumn => Step::Strategy,
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
                // A name not in the list (or when the list failed) is taken as typed.
                let table = match matching.get(self.table_selected) {
                    Some(table) => table.to_string(),
                    None => self.table_filter.trim().to_string(),
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
                let strategy = *self.strategies().get(self.strategy)?;
                if strategy == Strategy::Polling {
                    self.step = Step::CursorColumn;
                    None
                } else {
                    Some(self.add(strategy, None))
                }
            }
            Step::CursorColumn => {
                let column = self.cursor_column.trim().to_string();
                if column.is_empty() {
                    self.error = Some(
                        "polling needs a column that increases on insert and update".to_string(),
                    );
                    return None;
                }
                Some(self.add(Strategy::Polling, Some(column)))
            }
        }
    }

    fn add(&self, strategy: Strategy, cursor_column: Option<String>) -> Effect {
        Effect::Add(Command::Add {
            database: self.database().map(|d| d.name.clone()).unwrap_or_default(),
            table: self.table.clone(),
            strategy,
            cursor_column,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(dialog.strategies(), [Strategy::Logical, Strategy::Polling]);
        dialog.apply(Action::Down);
        assert_eq!(dialog.apply(Action::Confirm), None);
        assert_eq!(dialog.step, Step::CursorColumn);
        assert_eq!(dialog.cursor_column, DEFAULT_CURSOR_COLUMN);
        for _ in 0..DEFAULT_CURSOR_COLUMN.len() {
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
                strategy: Strategy::Polling,
                cursor_column: Some("modified".into()),
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
        assert_eq!(dialog.strategies(), [Strategy::ChangeStream]);
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
                strategy: Strategy::ChangeStream,
                cursor_column: None,
            }))
        );
    }
}

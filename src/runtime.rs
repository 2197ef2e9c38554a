//! The capture runtime: the registry, the handler's channel and the listener tasks. Adding,
//! pausing, resuming and stopping listeners goes through here, from the TUI's keys and from
//! headless stdin commands alike.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::config::{self, DatabaseKind, ListenerConfig, LoadedConfig, Strategy};
use crate::pipeline::ChangeSender;
use crate::positions::PositionStore;
use crate::registry::{ListenerHandle, Registry};
use crate::secret::DatabaseUrl;
use crate::source::{self, SourceContext};

/// A database listeners can use.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub kind: DatabaseKind,
    pub url: DatabaseUrl,
    /// Where this database's listeners keep positions, when not the config's state dir.
    pub state_dir: Option<PathBuf>,
}

/// A control command, as typed on headless stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Pause(String),
    Resume(String),
    Stop(String),
    Add {
        database: String,
        table: String,
        strategy: Strategy,
        /// polling: the cursor column (the optional fourth word).
        cursor_column: Option<String>,
    },
}

impl Command {
    /// `pause <identity>`, `resume <identity>`, `stop <identity>`,
    /// `add <database> <table> <strategy> [cursor_column]`.
    pub fn parse(line: &str) -> Result<Command, String> {
        let words = split_words(line);
        match words.as_slice() {
            ["pause", identity] => Ok(Command::Pause(identity.to_string())),
            ["resume", identity] => Ok(Command::Resume(identity.to_string())),
            ["stop", identity] => Ok(Command::Stop(identity.to_string())),
            ["add", database, table, strategy, rest @ ..] if rest.len() <= 1 => {
                let strategy = Strategy::parse(strategy).ok_or_else(|| {
                    format!("unknown strategy: {strategy} (use logical, polling or change_stream)")
                })?;
                Ok(Command::Add {
                    database: database.to_string(),
                    table: table.to_string(),
                    strategy,
                    cursor_column: rest.first().map(|c| c.to_string()),
                })
            }
            [verb @ ("pause" | "resume" | "stop"), ..] => Err(format!("usage: {verb} <identity>")),
            ["add", ..] => {
                Err("usage: add <database> <table> <strategy> [cursor_column]".to_string())
            }
            [] => Err("empty command".to_string()),
            [verb, ..] => Err(format!("unknown command: {verb}")),
        }
    }
}

/// Splits on white space, except inside double quotes: `"Shop"."Order Items"` is one word.
fn split_words(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (at, c) in line.char_indices() {
        match (c, start) {
            ('"', _) => {
                quoted = !quoted;
                start.get_or_insert(at);
            }
            (c, Some(begin)) if c.is_whitespace() && !quoted => {
                words.push(&line[begin..at]);
                start = None;
            }
            (c, None) if !c.is_whitespace() => start = Some(at),
            _ => {}
        }
    }
    if let Some(begin) = start {
        words.push(&line[begin..]);
    }
    words
}

pub struct Runtime {
    registry: Arc<Registry>,
    databases: HashMap<String, Database>,
    positions: PositionStore,
    changes: Mutex<Option<ChangeSender>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Runtime {
    pub fn new(
        registry: Arc<Registry>,
        databases: Vec<Database>,
        positions: PositionStore,
        changes: ChangeSender,
    ) -> Self {
        Runtime {
            registry,
            databases: databases
                .into_iter()
                .map(|database| (database.name.clone(), database))
                .collect(),
            positions,
            changes: Mutex::new(Some(changes)),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The databases of a loaded config (their URLs resolved; validation checked they resolve).
    pub fn databases_of(loaded: &LoadedConfig) -> Vec<Database> {
        let config_dir = loaded.path.parent().unwrap_or(std::path::Path::new(""));
        loaded
            .config
            .databases
            .iter()
            .filter_map(|database| {
                Some(Database {
                    name: database.name.clone(),
                    kind: database.kind,
                    url: database.connection_url(config_dir).ok()?,
                    state_dir: None,
                })
            })
            .collect()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn databases(&self) -> impl Iterator<Item = &Database> {
        self.databases.values()
    }

    /// The tables (PostgreSQL) or collections (MongoDB) of a database, for the add dialog.
    pub async fn list_tables(&self, database: &str) -> Result<Vec<String>, String> {
        let database = self
            .databases
            .get(database)
            .ok_or_else(|| format!("no database named {database:?}"))?;
        let listed = match database.kind {
            DatabaseKind::Postgres => source::postgres::list_tables(&database.url).await,
            DatabaseKind::Mongodb => source::mongo::list_collections(&database.url).await,
        };
        listed.map_err(|error| error.message)
    }

    /// Registers a listener and starts its task.
    pub fn start(&self, listener: ListenerConfig) -> Result<Arc<ListenerHandle>, String> {
        let database = self
            .databases
            .get(&listener.database)
            .ok_or_else(|| format!("no database named {:?}", listener.database))?;
        config::check_listener(&listener, database.kind)
            .map_err(|(key, message)| format!("{key}: {message}"))?;
        let Some(changes) = self.lock_changes().clone() else {
            return Err("shutting down".to_string());
        };
        let handle = self.registry.add(listener).map_err(|e| e.to_string())?;
        let positions = match &database.state_dir {
            Some(dir) => PositionStore::new(dir),
            None => self.positions.clone(),
        };
        let ctx = SourceContext::new(handle.clone(), database.url.clone(), positions, changes);
        let task = tokio::spawn(source::run_listener(ctx));
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
        Ok(handle)
    }

    /// Carries out a control command; the answer is the listener it concerns.
    pub fn execute(&self, command: Command) -> Result<Arc<ListenerHandle>, String> {
        let registry = &self.registry;
        match command {
            Command::Pause(identity) => registry.pause(&identity).map_err(|e| e.to_string()),
            Command::Resume(identity) => registry.resume(&identity).map_err(|e| e.to_string()),
            Command::Stop(identity) => registry.stop(&identity).map_err(|e| e.to_string()),
            Command::Add {
                database,
                table,
                strategy,
                cursor_column,
            } => {
                // The database's name identifies a listener added at run time.
                let mut listener = ListenerConfig::new(&database, &database, &table, strategy);
                listener.cursor_column = cursor_column;
                self.start(listener)
            }
        }
    }

    /// Stops every listener, waits for each to flush and save its position, then closes the
    /// handler's channel so the handler flushes its last batch and ends.
    pub async fn shutdown(&self) {
        self.registry.stop_all();
        self.lock_changes().take();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!("a listener task ended abnormally: {error}");
            }
        }
    }

    fn lock_changes(&self) -> std::sync::MutexGuard<'_, Option<ChangeSender>> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_and_rejects_the_rest() {
        assert_eq!(
            Command::parse("pause orders/public.orders"),
            Ok(Command::Pause("orders/public.orders".into()))
        );
        assert_eq!(
            Command::parse("  resume a/b "),
            Ok(Command::Resume("a/b".into()))
        );
        assert_eq!(Command::parse("stop a/b"), Ok(Command::Stop("a/b".into())));
        assert_eq!(
            Command::parse("pause items/\"Shop\".\"Order Items\""),
            Ok(Command::Pause("items/\"Shop\".\"Order Items\"".into()))
        );
        assert_eq!(
            Command::parse("add shop \"Shop\".\"Order Items\" logical"),
            Ok(Command::Add {
                database: "shop".into(),
                table: "\"Shop\".\"Order Items\"".into(),
                strategy: Strategy::Logical,
                cursor_column: None,
            })
        );
        assert_eq!(
            Command::parse("add shop public.orders polling updated_at"),
            Ok(Command::Add {
                database: "shop".into(),
                table: "public.orders".into(),
                strategy: Strategy::Polling,
                cursor_column: Some("updated_at".into()),
            })
        );
        assert_eq!(
            Command::parse("frobnicate x"),
            Err("unknown command: frobnicate".into())
        );
        assert!(
            Command::parse("add shop t sideways")
                .unwrap_err()
                .contains("unknown strategy")
        );
        assert!(Command::parse("pause").unwrap_err().contains("usage"));
        assert!(Command::parse("").is_err());
    }
}

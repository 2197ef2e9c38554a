//! The capture runtime: the registry, the handler's channel and the listener tasks. Adding,
//! pausing, resuming, stopping and restarting listeners goes through here, from the TUI's keys
//! and from headless stdin commands alike; refusals are a [`RuntimeError`] the caller can
//! branch on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::config::{self, ListenerConfig, LoadedConfig};
use crate::pipeline::ChangeSender;
use crate::positions::PositionStore;
use crate::registry::{Control, ListenerHandle, ListenerState, Registry, RegistryError};
use crate::secret::DatabaseUrl;
use crate::source::{self, SourceContext, SourceKind};

/// A database listeners can use.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub kind: &'static dyn SourceKind,
    pub url: DatabaseUrl,
    /// Where this database's listeners keep positions, when not the config's state dir.
    pub state_dir: Option<PathBuf>,
}

/// Why the runtime refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("no listener {0}")]
    UnknownListener(String),
    #[error("the listener {0} exists already")]
    DuplicateListener(String),
    #[error("no database named {0:?}")]
    UnknownDatabase(String),
    /// The listener's settings do not fit its database: the key at fault and why.
    #[error("{key}: {message}")]
    InvalidListener { key: String, message: String },
    /// Pause, resume and stop need a listener that still runs.
    #[error("{identity} {}: restart it first", state.phrase())]
    Ended {
        identity: String,
        state: ListenerState,
    },
    /// Only a listener that ended can be removed.
    #[error("{identity} {}: only a stopped or failed listener can be removed", state.phrase())]
    NotEnded {
        identity: String,
        state: ListenerState,
    },
    /// Restart needs a listener that ended.
    #[error("{identity} {}: only a stopped or failed listener can be restarted", state.phrase())]
    StillRunning {
        identity: String,
        state: ListenerState,
    },
    #[error("the database did not answer: {0}")]
    Database(String),
    #[error("shutting down")]
    ShuttingDown,
}

impl From<RegistryError> for RuntimeError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Duplicate(identity) => RuntimeError::DuplicateListener(identity),
            RegistryError::Unknown(identity) => RuntimeError::UnknownListener(identity),
            RegistryError::NotEnded { identity, state } => {
                RuntimeError::NotEnded { identity, state }
            }
        }
    }
}

/// A control command, as typed on headless stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Only answers with the listener's status (headless: with its running transactions).
    Status(String),
    Pause(String),
    Resume(String),
    Stop(String),
    Restart(String),
    Add {
        database: String,
        table: String,
        strategy: String,
        /// Values for the strategy's prompts, in order (polling: the cursor column).
        options: Vec<String>,
    },
}

impl Command {
    /// `status <identity>`, `pause <identity>`, `resume <identity>`, `stop <identity>`,
    /// `restart <identity>`,
    /// `add <database> <table> <strategy> [option…]`.
    pub fn parse(line: &str) -> Result<Command, String> {
        let words = split_words(line);
        match words.as_slice() {
            ["status", identity] => Ok(Command::Status(identity.to_string())),
            ["pause", identity] => Ok(Command::Pause(identity.to_string())),
            ["resume", identity] => Ok(Command::Resume(identity.to_string())),
            ["stop", identity] => Ok(Command::Stop(identity.to_string())),
            ["restart", identity] => Ok(Command::Restart(identity.to_string())),
            ["add", database, table, strategy, options @ ..] if options.len() <= most_prompts() => {
                let names = source::strategy_names();
                if !names.contains(strategy) {
                    return Err(format!(
                        "unknown strategy: {strategy} (use {})",
                        source::either(&names)
                    ));
                }
                Ok(Command::Add {
                    database: database.to_string(),
                    table: table.to_string(),
                    strategy: strategy.to_string(),
                    options: options.iter().map(|option| option.to_string()).collect(),
                })
            }
            [
                verb @ ("status" | "pause" | "resume" | "stop" | "restart"),
                ..,
            ] => Err(format!("usage: {verb} <identity>")),
            ["add", ..] => Err(format!(
                "usage: add <database> <table> <strategy>{}",
                prompt_usage()
            )),
            [] => Err("empty command".to_string()),
            [verb, ..] => Err(format!("unknown command: {verb}")),
        }
    }
}

fn strategies() -> impl Iterator<Item = &'static dyn source::Strategy> {
    source::KINDS
        .iter()
        .flat_map(|kind| kind.strategies().iter().copied())
}

/// The most options any strategy's prompts take.
fn most_prompts() -> usize {
    strategies()
        .map(|strategy| strategy.prompts().len())
        .max()
        .unwrap_or(0)
}

/// ` [cursor_column]`: the optional words of `add`, from the strategies' prompts.
fn prompt_usage() -> String {
    let mut keys: Vec<&str> = Vec::new();
    for prompt in strategies().flat_map(|strategy| strategy.prompts()) {
        if !keys.contains(&prompt.key) {
            keys.push(prompt.key);
        }
    }
    keys.iter().map(|key| format!(" [{key}]")).collect()
}

/// Splits on white space, except inside double quotes or backticks (SQL's and MySQL's quoted
/// names): `"Shop"."Order Items"` and `` shop.`Order Items` `` are one word each.
fn split_words(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quote: Option<char> = None;
    for (at, c) in line.char_indices() {
        match (c, start) {
            ('"' | '`', _) if quote.is_none_or(|open| open == c) => {
                quote = if quote.is_some() { None } else { Some(c) };
                start.get_or_insert(at);
            }
            (c, Some(begin)) if c.is_whitespace() && quote.is_none() => {
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
        loaded
            .config
            .databases
            .iter()
            .filter_map(|database| {
                let kind = source::kind(&database.kind)?;
                Some(Database {
                    name: database.name.clone(),
                    kind,
                    url: kind.connection_url(database, loaded.dir()).ok()?,
                    state_dir: None,
                })
            })
            .collect()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Where positions are kept (unless a database has a dir of its own).
    pub fn state_dir(&self) -> &std::path::Path {
        self.positions.dir()
    }

    pub fn databases(&self) -> impl Iterator<Item = &Database> {
        self.databases.values()
    }

    fn database(&self, name: &str) -> Result<&Database, RuntimeError> {
        self.databases
            .get(name)
            .ok_or_else(|| RuntimeError::UnknownDatabase(name.to_string()))
    }

    /// The tables (or collections) of a database, for the add dialog.
    pub async fn list_tables(&self, database: &str) -> Result<Vec<String>, RuntimeError> {
        let database = self.database(database)?;
        database
            .kind
            .list_tables(&database.url)
            .await
            .map_err(|error| RuntimeError::Database(error.message))
    }

    /// Registers a listener and starts its task.
    pub fn start(&self, listener: ListenerConfig) -> Result<Arc<ListenerHandle>, RuntimeError> {
        let database = self.database(&listener.database)?;
        config::check_listener(&listener, database.kind)
            .map_err(|(key, message)| RuntimeError::InvalidListener { key, message })?;
        let strategy =
            source::strategy(database.kind.name(), &listener.strategy).ok_or_else(|| {
                RuntimeError::InvalidListener {
                    key: "strategy".into(),
                    message: format!("{} does not fit", listener.strategy),
                }
            })?;
        let Some(changes) = self.lock_changes().clone() else {
            return Err(RuntimeError::ShuttingDown);
        };
        let handle = self.registry.add(listener)?;
        let positions = match &database.state_dir {
            Some(dir) => PositionStore::new(dir),
            None => self.positions.clone(),
        };
        let ctx = SourceContext::new(handle.clone(), database.url.clone(), positions, changes);
        let task = tokio::spawn(source::run_listener(ctx, strategy));
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
        Ok(handle)
    }

    pub fn pause(&self, identity: &str) -> Result<Arc<ListenerHandle>, RuntimeError> {
        Ok(self.registry.pause(identity)?)
    }

    pub fn resume(&self, identity: &str) -> Result<Arc<ListenerHandle>, RuntimeError> {
        Ok(self.registry.resume(identity)?)
    }

    pub fn stop(&self, identity: &str) -> Result<Arc<ListenerHandle>, RuntimeError> {
        Ok(self.registry.stop(identity)?)
    }

    /// Pauses a running listener or resumes a paused one; the answer is what it asked for
    /// (`Pause` or `Run`). A listener that ended is refused.
    pub fn toggle_pause(&self, identity: &str) -> Result<Control, RuntimeError> {
        let handle = self.running(identity)?;
        if handle.control() == Control::Pause {
            self.resume(identity)?;
            Ok(Control::Run)
        } else {
            self.pause(identity)?;
            Ok(Control::Pause)
        }
    }

    /// Stops a listener that still runs.
    pub fn stop_running(&self, identity: &str) -> Result<Arc<ListenerHandle>, RuntimeError> {
        self.running(identity)?;
        self.stop(identity)
    }

    /// The listener, if its task still runs.
    fn running(&self, identity: &str) -> Result<Arc<ListenerHandle>, RuntimeError> {
        let handle = self.registry.get(identity)?;
        let state = handle.state();
        if state.is_final() {
            return Err(RuntimeError::Ended {
                identity: identity.to_string(),
                state,
            });
        }
        Ok(handle)
    }

    /// Starts a stopped or failed listener again with its configured settings (its slot,
    /// publication, cursor: the same listener, resuming from its saved position).
    pub fn restart(&self, identity: &str) -> Result<Arc<ListenerHandle>, RuntimeError> {
        let handle = self.registry.get(identity)?;
        let state = handle.state();
        if !state.is_final() {
            return Err(RuntimeError::StillRunning {
                identity: identity.to_string(),
                state,
            });
        }
        let mut config = handle.config().clone();
        // It runs because the user asked it to, whatever the file said at first.
        config.paused = false;
        self.start(config)
    }

    /// Takes a stopped or failed listener out of the registry (the UI's table).
    pub fn remove(&self, identity: &str) -> Result<Arc<ListenerHandle>, RuntimeError> {
        Ok(self.registry.remove(identity)?)
    }

    /// Carries out a control command; the answer is the listener it concerns.
    pub fn execute(&self, command: Command) -> Result<Arc<ListenerHandle>, RuntimeError> {
        match command {
            Command::Status(identity) => Ok(self.registry.get(&identity)?),
            Command::Pause(identity) => self.pause(&identity),
            Command::Resume(identity) => self.resume(&identity),
            Command::Stop(identity) => self.stop(&identity),
            Command::Restart(identity) => self.restart(&identity),
            Command::Add {
                database,
                table,
                strategy,
                options,
            } => {
                let kind = self.database(&database)?.kind;
                // The database's name identifies a listener added at run time.
                let mut listener = ListenerConfig::new(&database, &database, &table, &strategy);
                if let Some(strategy) = source::strategy(kind.name(), &strategy) {
                    for (prompt, value) in strategy.prompts().iter().zip(&options) {
                        listener = listener.with_option(prompt.key, value);
                    }
                }
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
            Command::parse("status a/b"),
            Ok(Command::Status("a/b".into()))
        );
        assert_eq!(
            Command::parse("restart a/b"),
            Ok(Command::Restart("a/b".into()))
        );
        assert_eq!(
            Command::parse("pause items/\"Shop\".\"Order Items\""),
            Ok(Command::Pause("items/\"Shop\".\"Order Items\"".into()))
        );
        assert_eq!(
            Command::parse("pause items/shop.`Order \"Items`"),
            Ok(Command::Pause("items/shop.`Order \"Items`".into()))
        );
        assert_eq!(
            Command::parse("add shop \"Shop\".\"Order Items\" logical"),
            Ok(Command::Add {
                database: "shop".into(),
                table: "\"Shop\".\"Order Items\"".into(),
                strategy: "logical".into(),
                options: vec![],
            })
        );
        assert_eq!(
            Command::parse("add shop public.orders polling updated_at"),
            Ok(Command::Add {
                database: "shop".into(),
                table: "public.orders".into(),
                strategy: "polling".into(),
                options: vec!["updated_at".into()],
            })
        );
        assert_eq!(
            Command::parse("frobnicate x"),
            Err("unknown command: frobnicate".into())
        );
        // Every registered strategy is offered (each kind adds its own).
        let refused = Command::parse("add shop t sideways").unwrap_err();
        assert!(
            refused
                .starts_with("unknown strategy: sideways (use logical, polling, change_stream, ")
                && refused.contains("follow")
                && refused.contains("jetstream"),
            "{refused}"
        );
        assert_eq!(
            Command::parse("add shop"),
            Err("usage: add <database> <table> <strategy> [cursor_column]".into())
        );
        assert!(Command::parse("pause").unwrap_err().contains("usage"));
        assert!(Command::parse("").is_err());
    }
}

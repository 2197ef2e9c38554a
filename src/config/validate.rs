//! Validation: the rules a parsed file must keep beyond its types. Rules that belong to a kind
//! of database or a strategy are theirs (`source::SourceKind`, `source::Strategy`); this module
//! only asks them, and names the key at fault.

use std::collections::HashSet;
use std::path::Path;

use super::locate::{PathStep, Rejected};
use super::schema::{
    Config, ConfigFile, DEMO_MYSQL_DATABASE, DEMO_MYSQL_LISTENER, DEMO_MYSQL_STRATEGY, DemoConfig,
    LISTENER_KEYS, ListenerCommon, ListenerConfig,
};
use crate::source::{self, SourceKind};

/// Batches larger than this buy nothing for a viewer and only delay acknowledgements.
const MAX_CHUNK_SIZE: usize = 100_000;

pub(super) fn validate(file: ConfigFile, config_dir: &Path) -> Result<Config, Rejected> {
    let key = PathStep::key;
    let pipeline = &file.pipeline;
    if pipeline.chunk_size == 0 || pipeline.chunk_size > MAX_CHUNK_SIZE {
        return Err(Rejected::new(
            vec![key("pipeline"), key("chunk_size")],
            format!("must be between 1 and {MAX_CHUNK_SIZE}"),
        ));
    }
    if pipeline.log_capacity == 0 {
        return Err(Rejected::new(
            vec![key("pipeline"), key("log_capacity")],
            "must be at least 1",
        ));
    }
    if file.state.dir.as_os_str().is_empty() {
        return Err(Rejected::new(
            vec![key("state"), key("dir")],
            "must not be empty",
        ));
    }
    if let Some(nats) = &file.sinks.nats {
        crate::pipeline::sinks::nats::check_config(nats).map_err(|(name, message)| {
            Rejected::new(vec![key("sinks"), key("nats"), key(name)], message)
        })?;
    }

    let mut names = HashSet::new();
    for (index, database) in file.databases.iter().enumerate() {
        let at = |name| vec![key("database"), PathStep::Index(index), key(name)];
        if database.name.trim().is_empty() {
            return Err(Rejected::new(at("name"), "must not be empty"));
        }
        if !names.insert(database.name.as_str()) {
            return Err(Rejected::new(
                at("name"),
                format!("a database named {:?} is already defined", database.name),
            ));
        }
        if (file.demo.databases().iter()).any(|(name, _)| *name == database.name) {
            return Err(Rejected::new(
                at("name"),
                format!(
                    "{:?} is the embedded demo's database while [demo] is enabled; pick another \
                     name",
                    database.name
                ),
            ));
        }
        let kind = source::kind(&database.kind).ok_or_else(|| {
            let known: Vec<String> = source::KINDS
                .iter()
                .map(|kind| format!("`{}`", kind.name()))
                .collect();
            Rejected::new(
                at("kind"),
                format!(
                    "unknown variant `{}`, expected {}",
                    database.kind,
                    source::either(&known.iter().map(String::as_str).collect::<Vec<_>>())
                ),
            )
        })?;
        let url_key = database.url_key();
        let url = database
            .resolve_url()
            .map_err(|message| Rejected::new(at(url_key), message))?;
        crate::secret::check_userinfo(url.expose())
            .map_err(|message| Rejected::new(at(url_key), message))?;
        kind.check_database(database, &url, config_dir)
            .map_err(|(name, message)| {
                Rejected::new(at(if name == "url" { url_key } else { name }), message)
            })?;
    }

    let mut listeners = Vec::with_capacity(file.listeners.len());
    let mut identities = HashSet::new();
    for (index, table) in file.listeners.into_iter().enumerate() {
        let listener = listener(index, table)?;
        let at = |name| vec![key("listener"), PathStep::Index(index), key(name)];
        let kind =
            database_kind(&file.databases, &file.demo, &listener.database).ok_or_else(|| {
                let known: Vec<&str> = file
                    .databases
                    .iter()
                    .map(|database| database.name.as_str())
                    .chain(file.demo.databases().into_iter().map(|(name, _)| name))
                    .collect();
                Rejected::new(
                    at("database"),
                    format!(
                        "no database named {:?} (defined: {})",
                        listener.database,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?;
        check_listener(&listener, kind).map_err(|(name, message)| {
            Rejected::new(
                vec![
                    key("listener"),
                    PathStep::Index(index),
                    PathStep::Key(name.into()),
                ],
                message,
            )
        })?;
        if !identities.insert(listener.identity()) {
            return Err(Rejected::new(
                at("identifier"),
                format!("the listener {} is defined twice", listener.identity()),
            ));
        }
        listeners.push(listener);
    }
    if file.demo.databases().len() > 1 {
        add_demo_mysql_listener(&mut listeners);
    }
    Ok(Config {
        pipeline: file.pipeline,
        state: file.state,
        demo: file.demo,
        databases: file.databases,
        listeners,
        sinks: file.sinks,
    })
}

/// Reads one `[[listener]]` table: its common keys typed, the rest kept as its strategy's
/// options. A key no strategy takes is unknown, as serde would say.
fn listener(index: usize, mut table: toml::Table) -> Result<ListenerConfig, Rejected> {
    let at = |name: &str| {
        vec![
            PathStep::key("listener"),
            PathStep::Index(index),
            PathStep::Key(name.to_string().into()),
        ]
    };
    let options_named: Vec<String> = table
        .keys()
        .filter(|name| !LISTENER_KEYS.contains(&name.as_str()))
        .cloned()
        .collect();
    let mut options = toml::Table::new();
    for name in options_named {
        if source::strategies_taking(&name).is_empty() {
            let mut expected: Vec<&str> = LISTENER_KEYS.to_vec();
            for strategy in source::KINDS.iter().flat_map(|kind| kind.strategies()) {
                expected.extend(strategy.option_keys());
            }
            expected.sort_unstable();
            expected.dedup();
            let expected: Vec<String> = expected.iter().map(|key| format!("`{key}`")).collect();
            return Err(Rejected::new(
                at(&name),
                format!(
                    "unknown field `{name}`, expected one of {}",
                    expected.join(", ")
                ),
            )
            .named(name));
        }
        if let Some(value) = table.remove(&name) {
            options.insert(name, value);
        }
    }
    let common: ListenerCommon = serde_path_to_error::deserialize(table).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        if path == "." {
            Rejected::new(
                vec![PathStep::key("listener"), PathStep::Index(index)],
                message,
            )
        } else {
            Rejected::new(at(&path), message)
        }
    })?;
    Ok(ListenerConfig {
        identifier: common.identifier,
        database: common.database,
        table: common.table.joined(),
        exclude: common.exclude,
        strategy: common.strategy,
        paused: common.paused,
        options,
    })
}

/// The kind of the named database, counting the demo's when it is enabled.
fn database_kind(
    databases: &[super::DatabaseConfig],
    demo: &DemoConfig,
    name: &str,
) -> Option<&'static dyn SourceKind> {
    if let Some((_, kind)) = demo.databases().into_iter().find(|(demo, _)| *demo == name) {
        return source::kind(kind);
    }
    let database = databases.iter().find(|database| database.name == name)?;
    source::kind(&database.kind)
}

/// With `[demo] mysql = true` and no listener on its MariaDB, one on the whole shop there, so
/// the one key is all it takes to see it.
fn add_demo_mysql_listener(listeners: &mut Vec<ListenerConfig>) {
    if (listeners.iter()).any(|listener| listener.database == DEMO_MYSQL_DATABASE) {
        return;
    }
    listeners.push(ListenerConfig {
        identifier: DEMO_MYSQL_LISTENER.into(),
        database: DEMO_MYSQL_DATABASE.into(),
        table: format!("{DEMO_MYSQL_DATABASE}.*"),
        exclude: Vec::new(),
        strategy: DEMO_MYSQL_STRATEGY.into(),
        paused: false,
        options: toml::Table::new(),
    });
}

/// Checks one listener against its database's kind; on error, the key at fault and why.
/// Shared by the config file and listeners added at run time.
pub fn check_listener(
    listener: &ListenerConfig,
    kind: &dyn SourceKind,
) -> Result<(), (String, String)> {
    if listener.identifier.trim().is_empty() || listener.identifier.contains('/') {
        return Err((
            "identifier".into(),
            "must be a non-empty name without '/'".into(),
        ));
    }
    let strategy = source::strategy(kind.name(), &listener.strategy).ok_or_else(|| {
        let all = source::strategy_names();
        let message = if all.contains(&listener.strategy.as_str()) {
            let allowed: Vec<&str> = kind.strategies().iter().map(|s| s.name()).collect();
            format!(
                "{} does not fit a {} database (use {})",
                listener.strategy,
                kind.name(),
                allowed.join(" or ")
            )
        } else {
            let all: Vec<String> = all.iter().map(|name| format!("`{name}`")).collect();
            format!(
                "unknown variant `{}`, expected one of {}",
                listener.strategy,
                all.join(", ")
            )
        };
        ("strategy".to_string(), message)
    })?;
    kind.check_table(&listener.table)
        .map_err(|message| ("table".to_string(), message))?;
    kind.check_exclude(&listener.exclude)
        .map_err(|message| ("exclude".to_string(), message))?;
    for name in listener.options.keys() {
        if !strategy.option_keys().contains(&name.as_str()) {
            let takers: Vec<String> = source::strategies_taking(name)
                .iter()
                .map(|taker| format!("strategy = \"{taker}\""))
                .collect();
            let takers: Vec<&str> = takers.iter().map(String::as_str).collect();
            return Err((
                name.clone(),
                format!("only applies to {}", source::either(&takers)),
            ));
        }
    }
    strategy
        .check_options(&listener.options)
        .map_err(|error| (error.key, error.message))
}

//! `cdc.toml`: typed structs with defaults, and a validation step whose errors name the file,
//! the line and the key (see `../shared/SPEC.md` for the contract).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::DatabaseUrl;
use crate::source::postgres::TableName;

pub const DEFAULT_CHUNK_SIZE: usize = 100;
pub const DEFAULT_TIMEOUT_MS: u64 = 200;
pub const DEFAULT_LOG_CAPACITY: usize = 10_000;
pub const DEFAULT_STATE_DIR: &str = ".cdc-tui";
pub const DEFAULT_DEMO_RATE: u32 = 50;
pub const DEFAULT_INTERVAL_MS: u64 = 500;
pub const DEFAULT_MAX_TRACKED_ROWS: usize = 200_000;
/// The database name the embedded demo provides.
pub const DEMO_DATABASE: &str = "demo";
/// Batches larger than this buy nothing for a viewer and only delay acknowledgements.
const MAX_CHUNK_SIZE: usize = 100_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub demo: DemoConfig,
    #[serde(default, rename = "database")]
    pub databases: Vec<DatabaseConfig>,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub sinks: SinksConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_log_capacity")]
    pub log_capacity: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            chunk_size: DEFAULT_CHUNK_SIZE,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            log_capacity: DEFAULT_LOG_CAPACITY,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: default_state_dir(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_demo_rate")]
    pub rate: u32,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            enabled: false,
            rate: DEFAULT_DEMO_RATE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseKind {
    Postgres,
    Mongodb,
}

impl DatabaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseKind::Postgres => "postgres",
            DatabaseKind::Mongodb => "mongodb",
        }
    }

    /// The strategies a listener on this kind of database may use.
    pub fn strategies(self) -> &'static [Strategy] {
        match self {
            DatabaseKind::Postgres => &[Strategy::Logical, Strategy::Polling],
            DatabaseKind::Mongodb => &[Strategy::ChangeStream],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub name: String,
    pub kind: DatabaseKind,
    #[serde(default)]
    pub url: Option<DatabaseUrl>,
    /// The name of an environment variable holding the URL, to keep secrets out of files.
    #[serde(default)]
    pub url_env: Option<String>,
    /// PostgreSQL: the CA file (PEM) to check the server's certificate with, relative to the
    /// config file; the same as `sslrootcert=PATH` in the URL.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl DatabaseConfig {
    /// The URL, from `url` or from the environment variable `url_env` names.
    pub fn resolve_url(&self) -> Result<DatabaseUrl, String> {
        match (&self.url, &self.url_env) {
            (Some(url), None) => Ok(url.clone()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(value) if !value.trim().is_empty() => Ok(DatabaseUrl::new(value)),
                _ => Err(format!("environment variable {var} is not set")),
            },
            (Some(_), Some(_)) => Err("give either url or url_env, not both".into()),
            (None, None) => Err("a database needs url or url_env".into()),
        }
    }

    /// The URL to connect with: [`DatabaseConfig::resolve_url`], with `ca_file` (relative to
    /// `config_dir`) added as libpq's `sslrootcert` parameter.
    pub fn connection_url(&self, config_dir: &Path) -> Result<DatabaseUrl, String> {
        let url = self.resolve_url()?;
        let Some(ca_file) = &self.ca_file else {
            return Ok(url);
        };
        let path = config_dir.join(ca_file);
        let text = url.expose();
        let separator = if text.contains('?') { '&' } else { '?' };
        Ok(DatabaseUrl::new(format!(
            "{text}{separator}sslrootcert={}",
            crate::source::postgres::tls::percent_encode_path(&path)
        )))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Logical,
    Polling,
    ChangeStream,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Logical => "logical",
            Strategy::Polling => "polling",
            Strategy::ChangeStream => "change_stream",
        }
    }

    pub fn parse(text: &str) -> Option<Strategy> {
        [Strategy::Logical, Strategy::Polling, Strategy::ChangeStream]
            .into_iter()
            .find(|strategy| strategy.as_str() == text)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub identifier: String,
    pub database: String,
    pub table: String,
    pub strategy: Strategy,
    /// logical: a persistent slot; absent, a temporary one.
    #[serde(default)]
    pub slot: Option<String>,
    /// logical: the publication, created for the table when absent.
    #[serde(default)]
    pub publication: Option<String>,
    /// polling: a column that increases on insert and update.
    #[serde(default)]
    pub cursor_column: Option<String>,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// polling: the most rows a poll compares to find updates and deletes.
    #[serde(default = "default_max_tracked_rows")]
    pub max_tracked_rows: usize,
    /// change_stream: the `fullDocument` option of the stream.
    #[serde(default)]
    pub full_document: Option<String>,
    #[serde(default)]
    pub paused: bool,
}

impl ListenerConfig {
    /// A listener's identity: `identifier/table`.
    pub fn identity(&self) -> String {
        format!("{}/{}", self.identifier, self.table)
    }

    /// A listener with the defaults of its strategy, as `add` makes it.
    pub fn new(identifier: &str, database: &str, table: &str, strategy: Strategy) -> Self {
        ListenerConfig {
            identifier: identifier.to_string(),
            database: database.to_string(),
            table: table.to_string(),
            strategy,
            slot: None,
            publication: None,
            cursor_column: None,
            interval_ms: DEFAULT_INTERVAL_MS,
            max_tracked_rows: DEFAULT_MAX_TRACKED_ROWS,
            full_document: None,
            paused: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Also append every change as a JSON line to this file (relative to the config file).
    #[serde(default)]
    pub jsonl: Option<PathBuf>,
}

fn default_chunk_size() -> usize {
    DEFAULT_CHUNK_SIZE
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_log_capacity() -> usize {
    DEFAULT_LOG_CAPACITY
}
fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}
fn default_demo_rate() -> u32 {
    DEFAULT_DEMO_RATE
}
fn default_interval_ms() -> u64 {
    DEFAULT_INTERVAL_MS
}
fn default_max_tracked_rows() -> usize {
    DEFAULT_MAX_TRACKED_ROWS
}

/// A config mistake, located: `file:line: key: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}:{line}: {}{message}",
    file.display(),
    if key.is_empty() { String::new() } else { format!("{key}: ") }
)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// One step of a path into the document, to find where a rejected key stands.
#[derive(Debug, Clone, Copy)]
enum PathStep<'a> {
    Key(&'a str),
    Index(usize),
}

/// A loaded config and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub path: PathBuf,
}

impl LoadedConfig {
    /// The state dir, relative to the config file.
    pub fn state_dir(&self) -> PathBuf {
        self.relative_to_config(&self.config.state.dir)
    }

    pub fn jsonl_path(&self) -> Option<PathBuf> {
        self.config
            .sinks
            .jsonl
            .as_ref()
            .map(|path| self.relative_to_config(path))
    }

    fn relative_to_config(&self, path: &Path) -> PathBuf {
        match self.path.parent() {
            Some(parent) if path.is_relative() => parent.join(path),
            _ => path.to_path_buf(),
        }
    }
}

/// Reads and validates a config file. `demo_flag` is `--demo`, which enables the demo database.
pub fn load(path: &Path, demo_flag: bool) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        key: String::new(),
        message: format!("cannot read the config file: {error}"),
    })?;
    Ok(LoadedConfig {
        config: check_text(path, &text, demo_flag)?,
        path: path.to_path_buf(),
    })
}

/// Parses and validates config text as [`load`] does, without reading a file: `path` only
/// names the file in errors, and `demo` is `--demo`.
pub fn check_text(path: &Path, text: &str, demo: bool) -> Result<Config, ConfigError> {
    let mut config = parse(path, text)?;
    config.demo.enabled |= demo;
    let config_dir = path.parent().unwrap_or(Path::new(""));
    validate(&config, config_dir).map_err(|rejected| rejected.locate(path, text))?;
    Ok(config)
}

/// Parses without validating (serde errors: unknown keys, wrong types, syntax).
fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        // A wrong type or value points at the value: name the key that holds it. Other
        // errors (an unknown field, a syntax error) point at what they name, if anything.
        let key = key_holding(text, &span).unwrap_or_else(|| {
            text.get(span.clone())
                .filter(|snippet| !snippet.contains('\n') && snippet.len() < 80)
                .unwrap_or("")
                .trim()
                .to_string()
        });
        ConfigError {
            file: path.to_path_buf(),
            line: line_of(text, span.start),
            key,
            message: error.message().trim().to_string(),
        }
    })
}

/// The dotted path (`pipeline.chunk_size`, `listener[0].strategy`) of the key whose value,
/// other than a table, contains `span`; `None` when no value does.
fn key_holding(text: &str, span: &std::ops::Range<usize>) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    fn search<'a>(
        value: &'a DeValue<'a>,
        span: &std::ops::Range<usize>,
        path: &mut Vec<PathStep<'a>>,
    ) -> bool {
        let children: Vec<(PathStep<'a>, &'a toml::Spanned<DeValue<'a>>)> = match value {
            DeValue::Table(table) => table
                .iter()
                .map(|(name, child)| (PathStep::Key(name.get_ref().as_ref()), child))
                .collect(),
            DeValue::Array(items) => items
                .iter()
                .enumerate()
                .map(|(index, child)| (PathStep::Index(index), child))
                .collect(),
            _ => Vec::new(),
        };
        for (step, child) in children {
            path.push(step);
            let holds = match child.get_ref() {
                DeValue::Table(_) => false,
                DeValue::Array(items) => !items.iter().any(|item| item.get_ref().is_table()),
                _ => true,
            } && child.span().start <= span.start
                && span.end <= child.span().end;
            if search(child.get_ref(), span, path) || holds {
                return true;
            }
            path.pop();
        }
        false
    }
    if span.is_empty() {
        return None;
    }
    let document = DeTable::parse(text).ok()?;
    let root = DeValue::Table(document.into_inner());
    let mut path = Vec::new();
    search(&root, span, &mut path).then(|| dotted(&path))
}

/// A rejected key before it is located in the file.
#[derive(Debug)]
struct Rejected {
    path: Vec<PathStep<'static>>,
    key: String,
    message: String,
}

impl Rejected {
    fn new(path: Vec<PathStep<'static>>, message: impl Into<String>) -> Self {
        let key = dotted(&path);
        Rejected {
            path,
            key,
            message: message.into(),
        }
    }

    fn locate(self, file: &Path, text: &str) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: find_line(text, &self.path),
            key: self.key,
            message: self.message,
        }
    }
}

/// A path as errors name it: `database[0].url`.
fn dotted(path: &[PathStep]) -> String {
    path.iter()
        .map(|step| match step {
            PathStep::Key(key) => key.to_string(),
            PathStep::Index(index) => format!("[{index}]"),
        })
        .collect::<Vec<_>>()
        .join(".")
        .replace(".[", "[")
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

/// The line of the deepest part of `path` that the document has.
fn find_line(text: &str, path: &[PathStep]) -> usize {
    use toml::de::{DeTable, DeValue};
    let Ok(document) = DeTable::parse(text) else {
        return 0;
    };
    let mut offset = document.span().start;
    let mut current: Option<&DeValue> = None;
    let mut table = Some(document.get_ref());
    for step in path {
        let next = match (step, table, current) {
            (PathStep::Key(key), Some(table), _) => table
                .iter()
                .find(|(name, _)| name.get_ref().as_ref() == *key)
                .map(|(name, value)| (name.span().start, value.get_ref())),
            (PathStep::Index(index), _, Some(DeValue::Array(items))) => items
                .get(*index)
                .map(|item| (item.span().start, item.get_ref())),
            _ => None,
        };
        let Some((start, value)) = next else { break };
        offset = start;
        current = Some(value);
        table = match value {
            DeValue::Table(inner) => Some(inner),
            _ => None,
        };
    }
    line_of(text, offset)
}

fn validate(config: &Config, config_dir: &Path) -> Result<(), Rejected> {
    use PathStep::{Index, Key};
    let pipeline = &config.pipeline;
    if pipeline.chunk_size == 0 || pipeline.chunk_size > MAX_CHUNK_SIZE {
        return Err(Rejected::new(
            vec![Key("pipeline"), Key("chunk_size")],
            format!("must be between 1 and {MAX_CHUNK_SIZE}"),
        ));
    }
    if pipeline.log_capacity == 0 {
        return Err(Rejected::new(
            vec![Key("pipeline"), Key("log_capacity")],
            "must be at least 1",
        ));
    }
    if config.state.dir.as_os_str().is_empty() {
        return Err(Rejected::new(
            vec![Key("state"), Key("dir")],
            "must not be empty",
        ));
    }

    let mut names = HashSet::new();
    for (index, database) in config.databases.iter().enumerate() {
        let at = |key| vec![Key("database"), Index(index), Key(key)];
        if database.name.trim().is_empty() {
            return Err(Rejected::new(at("name"), "must not be empty"));
        }
        if !names.insert(database.name.as_str()) {
            return Err(Rejected::new(
                at("name"),
                format!("a database named {:?} is already defined", database.name),
            ));
        }
        if config.demo.enabled && database.name == DEMO_DATABASE {
            return Err(Rejected::new(
                at("name"),
                "\"demo\" is the embedded demo's database while [demo] is enabled; pick another name",
            ));
        }
        let url_key = if database.url_env.is_some() {
            "url_env"
        } else {
            "url"
        };
        let url = database
            .resolve_url()
            .map_err(|message| Rejected::new(at(url_key), message))?;
        let expected = match database.kind {
            DatabaseKind::Postgres => ["postgres://", "postgresql://"].as_slice(),
            DatabaseKind::Mongodb => {
                if url.expose().starts_with("mongodb+srv://") {
                    return Err(Rejected::new(
                        at(url_key),
                        "mongodb+srv:// needs DNS SRV lookups, which this build leaves out: \
                         list the hosts instead, as in mongodb://host1,host2/?replicaSet=rs0",
                    ));
                }
                ["mongodb://"].as_slice()
            }
        };
        if !expected
            .iter()
            .any(|scheme| url.expose().starts_with(scheme))
        {
            return Err(Rejected::new(
                at(url_key),
                format!(
                    "a {} URL starts with {}",
                    database.kind.as_str(),
                    expected.join(" or ")
                ),
            ));
        }
        check_tls(database, config_dir, &url).map_err(|(key, message)| {
            Rejected::new(at(if key == "url" { url_key } else { key }), message)
        })?;
    }

    let mut identities = HashSet::new();
    for (index, listener) in config.listeners.iter().enumerate() {
        let at = |key| vec![Key("listener"), Index(index), Key(key)];
        if listener.identifier.trim().is_empty() || listener.identifier.contains('/') {
            return Err(Rejected::new(
                at("identifier"),
                "must be a non-empty name without '/'",
            ));
        }
        let kind = database_kind(config, &listener.database).ok_or_else(|| {
            let known: Vec<&str> = config
                .databases
                .iter()
                .map(|database| database.name.as_str())
                .chain(config.demo.enabled.then_some(DEMO_DATABASE))
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
        check_listener(listener, kind).map_err(|(key, message)| Rejected::new(at(key), message))?;
        if !identities.insert(listener.identity()) {
            return Err(Rejected::new(
                at("identifier"),
                format!("the listener {} is defined twice", listener.identity()),
            ));
        }
    }
    Ok(())
}

/// Checks a database's `ca_file` and, for PostgreSQL, that the URL can be connected with
/// (its `sslmode`, `sslrootcert`, port, options); on error, the key at fault and why.
fn check_tls(
    database: &DatabaseConfig,
    config_dir: &Path,
    url: &DatabaseUrl,
) -> Result<(), (&'static str, String)> {
    if let Some(ca_file) = &database.ca_file {
        if database.kind == DatabaseKind::Mongodb {
            return Err((
                "ca_file",
                "applies to postgres; for MongoDB add tls=true&tlsCAFile=/path/to/ca.pem to \
                 the URL"
                    .into(),
            ));
        }
        if url.expose().contains("sslrootcert=") {
            return Err((
                "ca_file",
                "the URL names a CA file too (sslrootcert): give one of them".into(),
            ));
        }
        let path = config_dir.join(ca_file);
        if let Err(error) = std::fs::File::open(&path) {
            return Err((
                "ca_file",
                format!("cannot read {}: {error}", path.display()),
            ));
        }
    }
    if database.kind == DatabaseKind::Postgres {
        let url = database
            .connection_url(config_dir)
            .map_err(|e| ("url", e))?;
        crate::source::postgres::tls::Target::parse(&url).map_err(|e| ("url", e))?;
    }
    Ok(())
}

/// The kind of the named database, counting the demo's when it is enabled.
pub fn database_kind(config: &Config, name: &str) -> Option<DatabaseKind> {
    if config.demo.enabled && name == DEMO_DATABASE {
        return Some(DatabaseKind::Postgres);
    }
    config
        .databases
        .iter()
        .find(|database| database.name == name)
        .map(|database| database.kind)
}

/// Checks one listener against its database kind; on error, the key at fault and why.
/// Shared by the config file and listeners added at run time.
pub fn check_listener(
    listener: &ListenerConfig,
    kind: DatabaseKind,
) -> Result<(), (&'static str, String)> {
    if !kind.strategies().contains(&listener.strategy) {
        let allowed: Vec<&str> = kind.strategies().iter().map(|s| s.as_str()).collect();
        return Err((
            "strategy",
            format!(
                "{} does not fit a {} database (use {})",
                listener.strategy,
                kind.as_str(),
                allowed.join(" or ")
            ),
        ));
    }
    match kind {
        DatabaseKind::Postgres => {
            TableName::parse(&listener.table).map_err(|message| ("table", message))?;
        }
        DatabaseKind::Mongodb => {
            let valid = listener
                .table
                .split_once('.')
                .is_some_and(|(db, coll)| !db.is_empty() && !coll.is_empty());
            if !valid {
                return Err((
                    "table",
                    format!(
                        "{:?} is not \"database.collection\" as MongoDB needs",
                        listener.table
                    ),
                ));
            }
        }
    }
    let only_for = |key: &'static str, present: bool, strategy: Strategy| {
        if present && listener.strategy != strategy {
            Err((key, format!("only applies to strategy = \"{strategy}\"")))
        } else {
            Ok(())
        }
    };
    only_for("slot", listener.slot.is_some(), Strategy::Logical)?;
    only_for(
        "publication",
        listener.publication.is_some(),
        Strategy::Logical,
    )?;
    only_for(
        "cursor_column",
        listener.cursor_column.is_some(),
        Strategy::Polling,
    )?;
    only_for(
        "full_document",
        listener.full_document.is_some(),
        Strategy::ChangeStream,
    )?;
    for (key, name) in [
        ("slot", &listener.slot),
        ("publication", &listener.publication),
    ] {
        if let Some(name) = name {
            let valid = !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err((
                    key,
                    format!("{name:?}: use 1 to 63 lower-case letters, digits and '_'"),
                ));
            }
        }
    }
    if listener.strategy == Strategy::Polling {
        match &listener.cursor_column {
            None => {
                return Err((
                    "cursor_column",
                    "polling needs a cursor_column that increases on insert and update".into(),
                ));
            }
            Some(column) if column.is_empty() => {
                return Err(("cursor_column", "must not be empty".into()));
            }
            Some(_) => {}
        }
        if listener.interval_ms == 0 {
            return Err(("interval_ms", "must be at least 1".into()));
        }
        if listener.max_tracked_rows == 0 {
            return Err(("max_tracked_rows", "must be at least 1".into()));
        }
    }
    if let Some(mode) = &listener.full_document {
        const MODES: [&str; 4] = ["default", "updateLookup", "whenAvailable", "required"];
        if !MODES.contains(&mode.as_str()) {
            return Err((
                "full_document",
                format!("{mode:?}: use one of {}", MODES.join(", ")),
            ));
        }
    }
    Ok(())
}

/// The config path: `--config`, else ./cdc.toml, else $XDG_CONFIG_HOME/cdc-tui/cdc.toml.
pub fn default_path() -> PathBuf {
    let local = PathBuf::from("cdc.toml");
    if local.exists() {
        return local;
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")));
    match xdg {
        Some(dir) if dir.join("cdc-tui/cdc.toml").exists() => dir.join("cdc-tui/cdc.toml"),
        _ => local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = r#"
[[database]]
name = "shop"
kind = "postgres"
url = "postgres://app:pw@127.0.0.1:5432/shop"
"#;

    fn check(text: &str) -> Result<Config, ConfigError> {
        check_text(Path::new("cdc.toml"), text, false)
    }

    #[test]
    fn good_configs_parse_with_defaults() {
        let empty = check("").unwrap();
        assert_eq!(empty.pipeline.chunk_size, DEFAULT_CHUNK_SIZE);
        assert_eq!(empty.pipeline.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(empty.pipeline.log_capacity, DEFAULT_LOG_CAPACITY);
        assert_eq!(empty.state.dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(empty.demo.rate, DEFAULT_DEMO_RATE);

        let full = check(&format!(
            r#"
[pipeline]
chunk_size = 7
timeout_ms = 0
log_capacity = 50
[state]
dir = "/tmp/x"
[demo]
enabled = true
rate = 10
{SHOP}
[[database]]
name = "docs"
kind = "mongodb"
url = "mongodb://127.0.0.1:27017/?replicaSet=rs0"
[[listener]]
identifier = "orders"
database = "shop"
table = "public.orders"
strategy = "logical"
slot = "cdc_tui_orders"
publication = "cdc_tui_orders"
[[listener]]
identifier = "items"
database = "shop"
table = '"Shop"."Order Items"'
strategy = "polling"
cursor_column = "updated_at"
interval_ms = 100
paused = true
[[listener]]
identifier = "demo_orders"
database = "demo"
table = "orders"
strategy = "logical"
[[listener]]
identifier = "events"
database = "docs"
table = "shop.events"
strategy = "change_stream"
full_document = "updateLookup"
[sinks]
jsonl = "events.jsonl"
"#
        ))
        .unwrap();
        assert_eq!(full.pipeline.chunk_size, 7);
        assert_eq!(full.listeners.len(), 4);
        assert_eq!(
            full.listeners[1].identity(),
            "items/\"Shop\".\"Order Items\""
        );
        assert!(full.listeners[1].paused);
        assert_eq!(full.listeners[0].interval_ms, DEFAULT_INTERVAL_MS);
        assert_eq!(full.sinks.jsonl, Some(PathBuf::from("events.jsonl")));
    }

    #[test]
    fn mistakes_name_the_line_and_the_key() {
        let listener = |extra: &str| {
            format!(
                "{SHOP}\n[[listener]]\nidentifier = \"orders\"\ndatabase = \"shop\"\ntable = \"public.orders\"\n{extra}\n"
            )
        };
        // (config, line, key, part of the message)
        let cases: Vec<(String, usize, &str, &str)> = vec![
            ("[pipeline]\nchunk_size = 0\n".into(), 2, "pipeline.chunk_size", "between 1"),
            ("[pipeline]\nchunk_size = \"many\"\n".into(), 2, "pipeline.chunk_size", "invalid type"),
            ("[pipeline]\nchunk_sise = 5\n".into(), 2, "chunk_sise", "unknown field"),
            ("[pipeline]\nlog_capacity = 0\n".into(), 2, "pipeline.log_capacity", "at least 1"),
            ("[demo]\nrate = -1\n".into(), 2, "demo.rate", "invalid value"),
            ("[[database]]\nname = \"x\"\nkind = \"oracle\"\nurl = \"o://\"\n".into(), 3, "database[0].kind", "unknown variant"),
            (format!("{SHOP}[[database]]\nname = \"shop\"\nkind = \"postgres\"\nurl = \"postgres://h/d\"\n"), 7, "database[1].name", "already defined"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\n".into(), 1, "database[0].url", "needs url or url_env"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl_env = \"CDC_TUI_TEST_UNSET_VARIABLE\"\n".into(), 4, "database[0].url_env", "CDC_TUI_TEST_UNSET_VARIABLE is not set"),
            ("[[database]]\nname = \"x\"\nkind = \"mongodb\"\nurl = \"postgres://h/d\"\n".into(), 4, "database[0].url", "mongodb://"),
            ("[[database]]\nname = \"x\"\nkind = \"mongodb\"\nurl = \"mongodb+srv://c.example.com/\"\n".into(), 4, "database[0].url", "list the hosts"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl = \"mongodb+srv://c.example.com/\"\n".into(), 4, "database[0].url", "a postgres URL starts with postgres:// or postgresql://"),
            (listener("strategy = \"logical\"").replace("\"shop\"\ntable", "\"nope\"\ntable"), 9, "listener[0].database", "no database named \"nope\""),
            (listener("strategy = \"change_stream\""), 11, "listener[0].strategy", "does not fit a postgres database"),
            (listener("strategy = \"polling\""), 7, "listener[0].cursor_column", "needs a cursor_column"),
            (listener("strategy = \"polling\"\ncursor_column = \"u\"\nslot = \"s\""), 13, "listener[0].slot", "only applies to strategy = \"logical\""),
            (listener("strategy = \"logical\"\nslot = \"Bad-Name\""), 12, "listener[0].slot", "lower-case"),
            (listener("strategy = \"logical\"\ncolour = \"red\""), 12, "colour", "unknown field"),
            ("listener = [{ identifier = \"o\", colour = \"red\" }]\n".into(), 1, "colour", "unknown field"),
            ("listener = [{ identifier = \"o\", paused = 3 }]\n".into(), 1, "listener[0].paused", "invalid type"),
            ("[[database]]\nname = \"x\"\nurl = \"postgres://h/d\"\n".into(), 1, "[[database]]", "missing field `kind`"),
            (listener("strategy = \"sideways\""), 11, "listener[0].strategy", "unknown variant"),
            (listener("strategy = \"polling\"\ncursor_column = \"u\"\ninterval_ms = \"fast\""), 13, "listener[0].interval_ms", "invalid type"),
            (listener("strategy = \"logical\"\npaused = [true]"), 12, "listener[0].paused", "invalid type"),
            ("[demo]\nenabled = true\n[sinks]\njsonl = 5\n".into(), 4, "sinks.jsonl", "invalid type"),
            (listener("strategy = \"logical\"").replace("public.orders", "Order Items"), 10, "listener[0].table", "quote a name"),
            (format!("{}[[listener]]\nidentifier = \"orders\"\ndatabase = \"shop\"\ntable = \"public.orders\"\nstrategy = \"polling\"\ncursor_column = \"u\"\n", listener("strategy = \"logical\"")), 13, "listener[1].identifier", "defined twice"),
            ("[state]\ndir = \"\"\n".into(), 2, "state.dir", "must not be empty"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl = \"postgres://h/d?sslmode=always\"\n".into(), 4, "database[0].url", "sslmode=always is not a mode"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl = \"postgres://h:port/d\"\n".into(), 4, "database[0].url", "not usable"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl = \"postgres://h/d?sslmode=verify-full\"\nca_file = \"/nonexistent/ca.pem\"\n".into(), 5, "database[0].ca_file", "cannot read /nonexistent/ca.pem"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl = \"postgres://h/d?sslrootcert=/a.pem\"\nca_file = \"/b.pem\"\n".into(), 5, "database[0].ca_file", "give one of them"),
            ("[[database]]\nname = \"x\"\nkind = \"mongodb\"\nurl = \"mongodb://h/\"\nca_file = \"/b.pem\"\n".into(), 5, "database[0].ca_file", "tlsCAFile"),
            ("[pipeline\n".into(), 1, "", "unclosed table"),
        ];
        for (text, line, key, message) in cases {
            let error = check(&text).expect_err(&text);
            assert_eq!(
                (error.line, error.key.as_str()),
                (line, key),
                "{text}\n=> {error}"
            );
            assert!(
                error.message.contains(message),
                "{text}\n=> {error} (expected {message:?})"
            );
            assert!(error.to_string().starts_with(&format!("cdc.toml:{line}: ")));
        }
    }

    #[test]
    fn the_demo_database_exists_only_while_the_demo_runs() {
        let text = "[[listener]]\nidentifier = \"o\"\ndatabase = \"demo\"\ntable = \"orders\"\nstrategy = \"logical\"\n";
        let error = check(text).unwrap_err();
        assert_eq!(error.key, "listener[0].database");
        let mut config = parse(Path::new("cdc.toml"), text).unwrap();
        config.demo.enabled = true;
        assert!(validate(&config, Path::new("")).is_ok());
    }

    #[test]
    fn ca_file_becomes_sslrootcert_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("my certs")).unwrap();
        std::fs::write(dir.path().join("my certs/ca.pem"), b"pem").unwrap();
        let path = dir.path().join("cdc.toml");
        let text = "[[database]]\nname = \"x\"\nkind = \"postgres\"\n\
                    url = \"postgres://app:pw@h/d?sslmode=verify-full\"\n\
                    ca_file = \"my certs/ca.pem\"\n";
        let config = check_text(&path, text, false).unwrap();
        let url = config.databases[0].connection_url(dir.path()).unwrap();
        let target = crate::source::postgres::tls::Target::parse(&url).unwrap();
        assert_eq!(
            target.roots,
            crate::source::postgres::tls::RootCerts::File(dir.path().join("my certs/ca.pem"))
        );
    }

    #[test]
    fn url_env_reads_the_url_and_keeps_it_masked() {
        // SAFETY: this test alone uses this variable.
        unsafe { std::env::set_var("CDC_TUI_TEST_URL_ENV", "postgres://app:hunter2@h/d") };
        let config = check(
            "[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl_env = \"CDC_TUI_TEST_URL_ENV\"\n",
        )
        .unwrap();
        let url = config.databases[0].resolve_url().unwrap();
        assert_eq!(url.expose(), "postgres://app:hunter2@h/d");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}

//! The shape of `cdc.toml` (SPEC "cdc.toml"): typed structs with their defaults. A listener's
//! strategy options are kept as the table the file gives; the strategy parses its own (see
//! `source::kind::Strategy`), so this module knows no database kind.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::DatabaseUrl;

pub const DEFAULT_CHUNK_SIZE: usize = 100;
pub const DEFAULT_TIMEOUT_MS: u64 = 200;
pub const DEFAULT_LOG_CAPACITY: usize = 10_000;
pub const DEFAULT_STATE_DIR: &str = ".cdc-tui";
pub const DEFAULT_DEMO_RATE: u32 = 50;
/// The database name the embedded demo provides.
pub const DEMO_DATABASE: &str = "demo";
/// The kind of the demo's database.
pub const DEMO_DATABASE_KIND: &str = "postgres";
/// The database of the demo's MariaDB (`[demo] mysql = true`), and its kind.
pub const DEMO_MYSQL_DATABASE: &str = "demo_mysql";
pub const DEMO_MYSQL_DATABASE_KIND: &str = "mysql";
pub const DEMO_MYSQL_STRATEGY: &str = "binlog";
/// The listener the demo adds on its MariaDB when the config has none there.
pub const DEMO_MYSQL_LISTENER: &str = "shop_mysql";

#[derive(Debug, Clone)]
pub struct Config {
    pub pipeline: PipelineConfig,
    pub state: StateConfig,
    pub demo: DemoConfig,
    pub databases: Vec<DatabaseConfig>,
    pub listeners: Vec<ListenerConfig>,
    pub sinks: SinksConfig,
}

/// The file as serde reads it: listeners are tables until validation knows their strategy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub demo: DemoConfig,
    #[serde(default, rename = "database")]
    pub databases: Vec<DatabaseConfig>,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<toml::Table>,
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
    /// A throwaway MariaDB beside the PostgreSQL cluster, with the same shop and workload.
    #[serde(default)]
    pub mysql: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            enabled: false,
            rate: DEFAULT_DEMO_RATE,
            mysql: false,
        }
    }
}

impl DemoConfig {
    /// The databases the demo provides, with their kinds: none while it is off.
    pub fn databases(&self) -> Vec<(&'static str, &'static str)> {
        let mut databases = Vec::new();
        if self.enabled {
            databases.push((DEMO_DATABASE, DEMO_DATABASE_KIND));
            if self.mysql {
                databases.push((DEMO_MYSQL_DATABASE, DEMO_MYSQL_DATABASE_KIND));
            }
        }
        databases
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub name: String,
    /// A registered source kind's name (`postgres`, `mongodb`); validation checks it.
    pub kind: String,
    #[serde(default)]
    pub url: Option<DatabaseUrl>,
    /// The name of an environment variable holding the URL, to keep secrets out of files.
    #[serde(default)]
    pub url_env: Option<String>,
    /// A CA file (PEM) to check the server's certificate with, relative to the config file,
    /// for kinds that take one (PostgreSQL: the same as `sslrootcert=PATH` in the URL).
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

    /// The key the URL comes from, for errors about it.
    pub fn url_key(&self) -> &'static str {
        if self.url_env.is_some() {
            "url_env"
        } else {
            "url"
        }
    }
}

/// The keys every listener has, whatever its strategy.
pub const LISTENER_KEYS: [&str; 6] = [
    "identifier",
    "database",
    "table",
    "exclude",
    "strategy",
    "paused",
];

/// One listener: what every listener has, and its strategy's own options as given (checked by
/// the strategy when the config is validated, and parsed by it again when it starts).
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub identifier: String,
    pub database: String,
    /// A table, a pattern, or patterns separated by commas (a TOML list is joined so).
    pub table: String,
    /// Patterns left out of the scope.
    pub exclude: Vec<String>,
    pub strategy: String,
    pub paused: bool,
    pub options: toml::Table,
}

/// The common part of a listener, as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenerCommon {
    pub identifier: String,
    pub database: String,
    pub table: Tables,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub strategy: String,
    #[serde(default)]
    pub paused: bool,
}

/// `table = "public.*"` or `table = ["public.orders", "public.order_*"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Tables {
    One(String),
    Many(Vec<String>),
}

impl Tables {
    /// As a listener's `table`: a list joined by commas.
    pub fn joined(self) -> String {
        match self {
            Tables::One(table) => table,
            Tables::Many(tables) => tables.join(", "),
        }
    }
}

impl ListenerConfig {
    /// A listener's identity: `identifier/table`.
    pub fn identity(&self) -> String {
        format!("{}/{}", self.identifier, self.table)
    }

    /// A listener with its strategy's defaults, as `add` makes it.
    pub fn new(identifier: &str, database: &str, table: &str, strategy: &str) -> Self {
        ListenerConfig {
            identifier: identifier.to_string(),
            database: database.to_string(),
            table: table.to_string(),
            exclude: Vec::new(),
            strategy: strategy.to_string(),
            paused: false,
            options: toml::Table::new(),
        }
    }

    /// The same listener with a strategy option set (a string, as dialogs and commands give).
    pub fn with_option(mut self, key: &str, value: &str) -> Self {
        self.options
            .insert(key.to_string(), toml::Value::String(value.to_string()));
        self
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Also append every change as a JSON line to this file (relative to the config file).
    #[serde(default)]
    pub jsonl: Option<PathBuf>,
    /// Also publish every change to NATS JetStream (`pipeline::sinks::nats`).
    #[serde(default)]
    pub nats: Option<NatsSinkConfig>,
}

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_NATS_STREAM: &str = "CDC";
pub const DEFAULT_NATS_SUBJECT: &str = "cdc.{database}.{table}";

/// `[sinks.nats]`: where and how changes are published.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    #[serde(default = "default_nats_url")]
    pub url: DatabaseUrl,
    /// The stream the subjects belong to; created when absent.
    #[serde(default = "default_nats_stream")]
    pub stream: String,
    /// `{database}`, `{table}`, `{op}` and `{listener}` are filled in per change.
    #[serde(default = "default_nats_subject")]
    pub subject: String,
    /// Replicas of a stream this sink creates (a JetStream cluster: 3).
    #[serde(default = "default_nats_replicas")]
    pub replicas: usize,
}

fn default_nats_url() -> DatabaseUrl {
    DatabaseUrl::new(DEFAULT_NATS_URL)
}
fn default_nats_stream() -> String {
    DEFAULT_NATS_STREAM.to_string()
}
fn default_nats_subject() -> String {
    DEFAULT_NATS_SUBJECT.to_string()
}
fn default_nats_replicas() -> usize {
    1
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

    /// The directory relative paths in the file are taken from.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    fn relative_to_config(&self, path: &Path) -> PathBuf {
        match self.path.parent() {
            Some(parent) if path.is_relative() => parent.join(path),
            _ => path.to_path_buf(),
        }
    }
}

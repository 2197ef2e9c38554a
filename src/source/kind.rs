//! What a source kind is: a database kind (its name, URL schemes, checks of a database and a
//! table or scope, listing tables) with its strategies (options, dialog prompts, a note, and
//! the capture itself). Every kind is registered once, in `source::KINDS`; config validation,
//! the add dialog, the command grammar, the CLI's about text and the listeners table all read
//! from there, so nothing outside a kind's folder names a kind or a strategy.

use std::fmt;
use std::path::Path;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::config::schema::DatabaseConfig;
use crate::secret::DatabaseUrl;
use crate::source::{SourceContext, SourceError};

/// A kind of database listeners capture from.
pub trait SourceKind: Sync {
    /// The name `kind = "…"` takes in cdc.toml.
    fn name(&self) -> &'static str;

    /// How the CLI's about text names what it captures: "MongoDB change streams".
    fn about(&self) -> &'static str;

    /// How a database of this kind is reached.
    fn url_schemes(&self) -> &'static [&'static str];

    /// The strategies a listener on this kind may use; the first is the default.
    fn strategies(&self) -> &'static [&'static dyn Strategy];

    /// Checks a database's URL (its scheme: [`check_scheme`]) and kind-specific keys; on
    /// error, the key at fault and why.
    fn check_database(
        &self,
        database: &DatabaseConfig,
        url: &DatabaseUrl,
        config_dir: &Path,
    ) -> Result<(), (&'static str, String)>;

    /// The URL to connect with (kinds may fold other keys into it, as `ca_file`).
    fn connection_url(
        &self,
        database: &DatabaseConfig,
        _config_dir: &Path,
    ) -> Result<DatabaseUrl, String> {
        database.resolve_url()
    }

    /// Checks the `table` of a listener (its syntax; whether it exists is found at start).
    fn check_table(&self, table: &str) -> Result<(), String>;

    /// Checks a listener's `exclude` patterns; kinds without patterns take none.
    fn check_exclude(&self, exclude: &[String]) -> Result<(), String> {
        match exclude {
            [] => Ok(()),
            _ => Err(format!("a {} listener takes no exclude", self.name())),
        }
    }

    /// The scope of `cdc-tui URL` without `--table`: everything the URL's user can read.
    fn whole_scope(&self, _url: &DatabaseUrl) -> String {
        "*".to_string()
    }

    /// What the add dialog calls a table of this kind.
    fn table_noun(&self) -> &'static str {
        "table"
    }

    /// The tables (or collections) a listener could watch, for the add dialog.
    fn list_tables<'a>(
        &'a self,
        url: &'a DatabaseUrl,
    ) -> BoxFuture<'a, Result<Vec<String>, SourceError>>;
}

/// One way of capturing from a kind of database.
pub trait Strategy: Sync {
    /// The name `strategy = "…"` takes.
    fn name(&self) -> &'static str;

    /// One line for the add dialog: what this strategy captures and how.
    fn note(&self) -> &'static str;

    /// The listener keys this strategy takes beyond the common ones.
    fn option_keys(&self) -> &'static [&'static str];

    /// Options the add dialog (and the headless `add` command, in order) asks for.
    fn prompts(&self) -> &'static [Prompt] {
        &[]
    }

    /// Checks a listener's options (its keys beyond the common ones).
    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError>;

    /// Captures until stopped or failed. `ctx` gives the listener's config, the database's
    /// URL, where to send changes and save positions, and the user's controls; errors are
    /// sorted (transient, permanent, stopped) and the supervisor retries or fails on them.
    fn run<'a>(&'a self, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), SourceError>>;
}

/// An option a dialog asks for.
#[derive(Debug, Clone, Copy)]
pub struct Prompt {
    /// The listener key it sets.
    pub key: &'static str,
    /// The dialog's label: "cursor".
    pub label: &'static str,
    /// Suggested in the dialog.
    pub default: &'static str,
    /// Shown under the field.
    pub help: &'static str,
}

/// An option a strategy refused: the key (within the listener) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    pub key: String,
    pub message: String,
}

impl OptionError {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        OptionError {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Options that passed validation but not a strategy's parse at start: the config changed
/// under a running program, which waiting will not mend.
impl From<OptionError> for SourceError {
    fn from(error: OptionError) -> Self {
        SourceError::permanent(format!("{}: {}", error.key, error.message))
    }
}

/// Parses a strategy's options into its own struct (`deny_unknown_fields`), naming the key at
/// fault.
pub fn parse_options<T: DeserializeOwned>(options: &toml::Table) -> Result<T, OptionError> {
    serde_path_to_error::deserialize(options.clone()).map_err(|error| {
        let key = error.path().to_string();
        let key = if key == "." { String::new() } else { key };
        OptionError {
            key,
            message: error.into_inner().to_string(),
        }
    })
}

impl fmt::Debug for dyn SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for dyn Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks that a URL starts with one of the kind's schemes.
pub fn check_scheme(
    kind: &dyn SourceKind,
    url: &DatabaseUrl,
) -> Result<(), (&'static str, String)> {
    let schemes = kind.url_schemes();
    if schemes
        .iter()
        .any(|scheme| url.expose().starts_with(scheme))
    {
        return Ok(());
    }
    Err((
        "url",
        format!("a {} URL starts with {}", kind.name(), schemes.join(" or ")),
    ))
}

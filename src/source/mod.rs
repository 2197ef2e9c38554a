//! Sources: one folder per database kind behind one trait ([`SourceKind`], its
//! [`Strategy`]s), registered in [`KINDS`]. A strategy captures through [`SourceContext`] (the
//! API a source uses) under the supervisor ([`run_listener`]: retries with backoff, stop grace).
//!
//! A new kind is its folder plus one line in `register_kinds!`.

pub mod ca_file;
pub mod context;
pub mod error;
pub mod glob;
pub mod kind;
pub mod name_pattern;
pub mod polling;
pub mod supervisor;

pub use context::{DRAIN_TIMEOUT, PendingPositions, SourceContext, Wake};
pub use error::{ErrorKind, SourceError};
pub use kind::{OptionError, Prompt, SourceKind, Strategy};
pub use supervisor::run_listener;

/// Declares each kind's folder and lists its [`SourceKind`] in [`KINDS`], so a kind is
/// registered by one line.
macro_rules! register_kinds {
    ($($folder:ident :: $kind:ident),* $(,)?) => {
        $(pub mod $folder;)*

        /// Every source kind, in the order dialogs and help list them.
        pub static KINDS: &[&dyn SourceKind] = &[$(&$folder::$kind),*];
    };
}

register_kinds! {
    postgres::Postgres,
    mongo::Mongo,
    mysql::Mysql,
    jsonl::Jsonl,
    nats::Nats,
}

/// The kind registered under `name`.
pub fn kind(name: &str) -> Option<&'static dyn SourceKind> {
    KINDS.iter().copied().find(|kind| kind.name() == name)
}

/// The strategy `name` of the kind `kind`.
pub fn strategy(kind: &str, name: &str) -> Option<&'static dyn Strategy> {
    self::kind(kind)?
        .strategies()
        .iter()
        .copied()
        .find(|strategy| strategy.name() == name)
}

/// Every strategy name, each once, in registration order.
pub fn strategy_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for strategy in KINDS.iter().flat_map(|kind| kind.strategies()) {
        if !names.contains(&strategy.name()) {
            names.push(strategy.name());
        }
    }
    names
}

/// The strategies (by name) that take the listener key `key`.
pub fn strategies_taking(key: &str) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for strategy in KINDS.iter().flat_map(|kind| kind.strategies()) {
        if strategy.option_keys().contains(&key) && !names.contains(&strategy.name()) {
            names.push(strategy.name());
        }
    }
    names
}

/// What the program captures, for the CLI's about text.
pub fn about() -> String {
    let captures: Vec<&str> = KINDS.iter().map(|kind| kind.about()).collect();
    format!("Watch database changes ({}) live", captures.join(", "))
}

/// `a`, `a or b`, `a, b or c`.
pub fn either(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [only] => only.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

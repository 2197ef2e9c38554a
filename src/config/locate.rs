//! Where in the file a mistake is: the line and the dotted key (`listener[0].strategy`) of a
//! serde error's span or of a rejected key's path, so every config error reads
//! `file:line: key: message`.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::schema::ConfigFile;

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
#[derive(Debug, Clone)]
pub enum PathStep<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

impl PathStep<'static> {
    /// A key named by the program.
    pub const fn key(name: &'static str) -> Self {
        PathStep::Key(Cow::Borrowed(name))
    }
}

/// Parses without validating (serde errors: unknown keys, wrong types, syntax).
pub(super) fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
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
                .map(|(name, child)| (PathStep::Key(Cow::Borrowed(name.get_ref().as_ref())), child))
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
pub struct Rejected {
    path: Vec<PathStep<'static>>,
    key: String,
    message: String,
}

impl Rejected {
    pub fn new(path: Vec<PathStep<'static>>, message: impl Into<String>) -> Self {
        let key = dotted(&path);
        Rejected {
            path,
            key,
            message: message.into(),
        }
    }

    pub fn locate(self, file: &Path, text: &str) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: find_line(text, &self.path),
            key: self.key,
            message: self.message,
        }
    }

    /// The same mistake named by another key (an unknown key is named as written).
    pub fn named(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
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
                .find(|(name, _)| name.get_ref().as_ref() == key.as_ref())
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

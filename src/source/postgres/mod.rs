//! PostgreSQL sources: logical replication (`logical`) and polling an increasing column
//! (`polling`), with the SQL connection, identifier quoting and value conversion they share.

pub mod logical;
pub mod pgoutput;
pub mod polling;
pub mod scope;
pub mod tls;
pub mod value;

use std::fmt;
use std::path::Path;

use futures_util::future::BoxFuture;
use tokio_postgres::error::SqlState;

use crate::config::schema::DatabaseConfig;
use crate::secret::DatabaseUrl;
use crate::source::ca_file;
use crate::source::kind::check_scheme;
use crate::source::postgres::scope::{Scope, TablePattern};
use crate::source::{SourceError, SourceKind, Strategy};

/// PostgreSQL: logical replication, or polling for users without replication rights.
pub struct Postgres;

impl SourceKind for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn about(&self) -> &'static str {
        "PostgreSQL logical replication or polling"
    }

    fn url_schemes(&self) -> &'static [&'static str] {
        &["postgres://", "postgresql://"]
    }

    fn strategies(&self) -> &'static [&'static dyn Strategy] {
        &[&logical::Logical, &polling::Polling]
    }

    fn check_database(
        &self,
        database: &DatabaseConfig,
        url: &DatabaseUrl,
        config_dir: &Path,
    ) -> Result<(), (&'static str, String)> {
        check_scheme(self, url)?;
        ca_file::check(database, url, config_dir, "sslrootcert")?;
        let url = self
            .connection_url(database, config_dir)
            .map_err(|e| ("url", e))?;
        tls::Target::parse(&url).map_err(|e| ("url", e))?;
        Ok(())
    }

    /// `ca_file` (relative to `config_dir`) is added as libpq's `sslrootcert` parameter.
    fn connection_url(
        &self,
        database: &DatabaseConfig,
        config_dir: &Path,
    ) -> Result<DatabaseUrl, String> {
        ca_file::add_to_url(database, config_dir, "sslrootcert")
    }

    fn check_table(&self, table: &str) -> Result<(), String> {
        Scope::parse(table, &[]).map(|_| ())
    }

    fn whole_scope(&self, _url: &DatabaseUrl) -> String {
        "*.*".to_string()
    }

    fn check_exclude(&self, exclude: &[String]) -> Result<(), String> {
        Scope::parse("*.*", exclude).map(|_| ())
    }

    fn list_tables<'a>(
        &'a self,
        url: &'a DatabaseUrl,
    ) -> BoxFuture<'a, Result<Vec<String>, SourceError>> {
        Box::pin(list_tables(url))
    }
}

/// A schema-qualified table name, parsed with SQL's rules: `"Shop"."Order Items"` keeps its
/// case and spaces, an unquoted part is folded to lower case, and no schema means `public`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn parse(text: &str) -> Result<TableName, String> {
        TablePattern::parse(text)?.exact().ok_or_else(|| {
            format!("{text:?} is a pattern: name one table here (quote a name with a '*' in it)")
        })
    }

    /// The name as a user would type it: parts quoted only where SQL needs quotes.
    pub fn display_name(&self) -> String {
        let part = |name: &str| {
            let plain = name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if plain && !name.is_empty() {
                name.to_string()
            } else {
                quote_ident(name)
            }
        };
        format!("{}.{}", part(&self.schema), part(&self.name))
    }

    /// The name as SQL text, both parts quoted.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// An identifier as SQL text: always quoted, inner quotes doubled, so no name is ever pasted
/// into SQL as code.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string as an SQL literal, as PostgreSQL's `quote_literal` writes it: quotes doubled, and
/// with a backslash the `E'…'` form with backslashes doubled, which reads the same whatever
/// `standard_conforming_strings` is. For text pasted into a simple-protocol query.
pub fn quote_literal(text: &str) -> String {
    let mut literal = String::with_capacity(text.len() + 3);
    if text.contains('\\') {
        literal.push('E');
    }
    literal.push('\'');
    for c in text.chars() {
        if c == '\'' || c == '\\' {
            literal.push(c);
        }
        literal.push(c);
    }
    literal.push('\'');
    literal
}

/// Opens an ordinary SQL connection, with the TLS the URL asks for (see [`tls`]); its
/// connection task ends with the client.
pub async fn connect(url: &DatabaseUrl) -> Result<tokio_postgres::Client, SourceError> {
    let target = tls::Target::parse(url).map_err(SourceError::permanent)?;
    let connector = target.connector().map_err(SourceError::permanent)?;
    let (client, connection) = target.config.connect(connector).await.map_err(|error| {
        let mut sorted = classify(&error, url);
        if error.as_db_error().is_none() && !sorted.message.starts_with("TLS") {
            // Say where: "Connection refused" or a failed name lookup alone do not.
            sorted.message = format!("connecting to {}: {}", target.address(), sorted.message);
        }
        sorted
    })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!("postgres connection ended: {error}");
        }
    });
    Ok(client)
}

/// Sorts a PostgreSQL error into waiting-may-help or not, with the server's own text and
/// never the password.
pub fn classify(error: &tokio_postgres::Error, url: &DatabaseUrl) -> SourceError {
    if let Some(text) = tls::describe_handshake_error(error) {
        let text = url.redact(&text);
        return if tls::is_certificate_error(error) {
            SourceError::permanent(text)
        } else {
            SourceError::transient(text)
        };
    }
    let text = match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(hint) = db.hint() {
                text.push_str(&format!(" (hint: {hint})"));
            }
            text
        }
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                let cause = cause.to_string();
                if !text.contains(&cause) {
                    text.push_str(&format!(": {cause}"));
                }
                source = cause_source(source);
            }
            text
        }
    };
    let text = url.redact(&text);
    if text.contains("server does not support TLS") {
        return SourceError::permanent(format!(
            "{text}: the URL's sslmode asks for TLS and the server has ssl = off; turn ssl on \
             in postgresql.conf, or use sslmode=prefer"
        ));
    }
    let permanent = error.code().is_some_and(|code| {
        [
            SqlState::UNDEFINED_TABLE,
            SqlState::UNDEFINED_COLUMN,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::INVALID_PASSWORD,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            SqlState::INVALID_CATALOG_NAME,
            SqlState::SYNTAX_ERROR,
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            SqlState::FEATURE_NOT_SUPPORTED,
        ]
        .contains(code)
    });
    if permanent {
        SourceError::permanent(text)
    } else {
        SourceError::transient(text)
    }
}

/// The tables this user can read, as `schema.table` (quoted where SQL needs it), for the
/// add-listener dialog.
pub async fn list_tables(url: &DatabaseUrl) -> Result<Vec<String>, SourceError> {
    let client = connect(url).await?;
    let rows = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg_toast%' \
               AND has_table_privilege(c.oid, 'SELECT') \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|error| classify(&error, url))?;
    Ok(rows
        .iter()
        .map(|row| {
            let table = TableName {
                schema: row.get(0),
                name: row.get(1),
            };
            table.display_name()
        })
        .collect())
}

fn cause_source<'a>(
    source: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    source.and_then(std::error::Error::source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_sql_rules() {
        let ok = [
            ("public.orders", "public", "orders"),
            ("orders", "public", "orders"),
            ("Sales.Orders", "sales", "orders"),
            ("\"Shop\".\"Order Items\"", "Shop", "Order Items"),
            ("\"we\"\"ird\".t", "we\"ird", "t"),
        ];
        for (text, schema, name) in ok {
            let table = TableName::parse(text).unwrap();
            assert_eq!((table.schema.as_str(), table.name.as_str()), (schema, name));
        }
        assert_eq!(
            TableName::parse("\"Shop\".\"Order Items\"")
                .unwrap()
                .quoted(),
            "\"Shop\".\"Order Items\""
        );
        for bad in ["", "a.b.c", "\"open", "Order Items", "a.", ".a", "\"a\"b"] {
            assert!(TableName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn literals_read_back_as_the_text_whatever_the_string_settings() {
        assert_eq!(
            quote_literal("2024-05-01 12:00:00+00"),
            "'2024-05-01 12:00:00+00'"
        );
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b'c"), r"E'a\\b''c'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(quote_ident("a"), "\"a\"");
        assert_eq!(
            quote_ident("x\"; drop table t; --"),
            "\"x\"\"; drop table t; --\""
        );
    }
}

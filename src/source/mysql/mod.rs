//! MySQL and MariaDB sources: the row-based binlog read as a replica (`binlog`), and polling
//! a column that increases (`polling`), with the connection, scopes, table metadata and value
//! conversion they share.

pub mod binlog;
pub mod polling;
pub mod position;
pub mod rows;
pub mod scope;
pub mod table;
pub mod value;

use std::path::Path;

use futures_util::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};

use crate::config::schema::DatabaseConfig;
use crate::secret::DatabaseUrl;
use crate::source::ca_file;
use crate::source::kind::check_scheme;
use crate::source::mysql::scope::Scope;
use crate::source::{SourceError, SourceKind, Strategy};

/// MySQL 8 and MariaDB 10.6+.
pub struct Mysql;

impl SourceKind for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn about(&self) -> &'static str {
        "MySQL/MariaDB binlog or polling"
    }

    fn url_schemes(&self) -> &'static [&'static str] {
        &["mysql://", "mariadb://"]
    }

    fn strategies(&self) -> &'static [&'static dyn Strategy] {
        &[&binlog::Binlog, &polling::Polling]
    }

    fn check_database(
        &self,
        database: &DatabaseConfig,
        url: &DatabaseUrl,
        config_dir: &Path,
    ) -> Result<(), (&'static str, String)> {
        check_scheme(self, url)?;
        ca_file::check(database, url, config_dir, "ssl-ca")?;
        let url = self
            .connection_url(database, config_dir)
            .map_err(|e| ("url", e))?;
        Target::parse(&url).map(|_| ()).map_err(|e| ("url", e))
    }

    /// `ca_file` (relative to `config_dir`) is added as the MySQL clients' `ssl-ca`.
    fn connection_url(
        &self,
        database: &DatabaseConfig,
        config_dir: &Path,
    ) -> Result<DatabaseUrl, String> {
        ca_file::add_to_url(database, config_dir, "ssl-ca")
    }

    fn check_table(&self, table: &str) -> Result<(), String> {
        Scope::parse(table, &[]).map(|_| ())
    }

    fn check_exclude(&self, exclude: &[String]) -> Result<(), String> {
        Scope::parse("*.*", exclude).map(|_| ())
    }

    /// The URL's database (`mysql://…/shop`: `shop.*`), else every database.
    fn whole_scope(&self, url: &DatabaseUrl) -> String {
        match Target::parse(url).ok().and_then(|target| target.database) {
            Some(database) => format!("{}.*", scope::display_part(&database)),
            None => "*.*".to_string(),
        }
    }

    fn list_tables<'a>(
        &'a self,
        url: &'a DatabaseUrl,
    ) -> BoxFuture<'a, Result<Vec<String>, SourceError>> {
        Box::pin(list_tables(url))
    }
}

/// How to reach the server: the driver's options, from a URL whose TLS parameters are spelled
/// as the MySQL clients spell them (`ssl-mode`, `ssl-ca`).
pub struct Target {
    pub opts: Opts,
    pub database: Option<String>,
    address: String,
}

/// `ssl-mode` as the MySQL clients take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl Target {
    pub fn parse(url: &DatabaseUrl) -> Result<Target, String> {
        let text = url.expose();
        let rest = text
            .strip_prefix("mysql://")
            .or_else(|| text.strip_prefix("mariadb://"))
            .ok_or("a mysql URL starts with mysql:// or mariadb://")?;
        crate::secret::check_userinfo(text)?;
        let (base, query) = match rest.split_once('?') {
            Some((base, query)) => (base, query),
            None => (rest, ""),
        };
        let mut mode = SslMode::Disabled;
        let mut ca_file = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key.to_ascii_lowercase().replace('_', "-").as_str() {
                "ssl-mode" | "sslmode" => {
                    mode = match value.to_ascii_uppercase().replace('-', "_").as_str() {
                        "DISABLED" => SslMode::Disabled,
                        "PREFERRED" => SslMode::Preferred,
                        "REQUIRED" => SslMode::Required,
                        "VERIFY_CA" => SslMode::VerifyCa,
                        "VERIFY_IDENTITY" => SslMode::VerifyIdentity,
                        other => {
                            return Err(format!(
                                "ssl-mode={other}: use DISABLED, PREFERRED, REQUIRED, VERIFY_CA \
                                 or VERIFY_IDENTITY"
                            ));
                        }
                    }
                }
                "ssl-ca" => ca_file = Some(crate::secret::percent_decode(value)),
                _ => kept.push(pair),
            }
        }
        if ca_file.is_some() && mode == SslMode::Disabled {
            mode = SslMode::VerifyCa;
        }
        let driver_url = if kept.is_empty() {
            format!("mysql://{base}")
        } else {
            format!("mysql://{base}?{}", kept.join("&"))
        };
        let opts = Opts::from_url(&driver_url)
            .map_err(|error| url.redact(&format!("the URL does not parse: {error}")))?;
        let database = opts.db_name().map(str::to_string);
        let address = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        let ssl = match mode {
            // PREFERRED falls back to plain text where the server has no TLS; the driver has
            // no such fallback, so it is plain text here (README says so).
            SslMode::Disabled | SslMode::Preferred => None,
            SslMode::Required => Some(
                SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ),
            SslMode::VerifyCa | SslMode::VerifyIdentity => {
                let mut ssl = SslOpts::default()
                    .with_danger_skip_domain_validation(mode == SslMode::VerifyCa);
                if let Some(path) = ca_file {
                    ssl = ssl
                        .with_root_certs(vec![std::path::PathBuf::from(path).into()])
                        .with_disable_built_in_roots(true);
                }
                Some(ssl)
            }
        };
        let opts = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .ssl_opts(ssl)
            .into();
        Ok(Target {
            opts,
            database,
            address,
        })
    }
}

/// Opens an SQL connection.
pub async fn connect(url: &DatabaseUrl) -> Result<Conn, SourceError> {
    let target = Target::parse(url).map_err(SourceError::permanent)?;
    if target.opts.ssl_opts().is_some() {
        // The driver builds its TLS config with the process's default provider, and rustls
        // has none when more than one is compiled in: ring, as the PostgreSQL kind uses.
        let _already = rustls::crypto::ring::default_provider().install_default();
    }
    Conn::new(target.opts.clone()).await.map_err(|error| {
        let mut sorted = classify(&error, url);
        if !matches!(error, mysql_async::Error::Server(_)) {
            sorted.message = format!("connecting to {}: {}", target.address, sorted.message);
        }
        sorted
    })
}

/// Server error codes that waiting will not mend.
const PERMANENT_CODES: &[u16] = &[
    1044, // access denied to a database
    1045, // access denied (wrong password)
    1049, // unknown database
    1054, // unknown column
    1142, // command denied on a table
    1146, // no such table
    1227, // a privilege is missing (REPLICATION SLAVE, BINLOG MONITOR)
    1064, // syntax
    1698, // access denied (auth plugin)
];

/// Sorts a driver error into waiting-may-help or not, never showing the password.
pub fn classify(error: &mysql_async::Error, url: &DatabaseUrl) -> SourceError {
    match error {
        mysql_async::Error::Server(server) => {
            let text = url.redact(&format!("{} (error {})", server.message, server.code));
            let text = match server.code {
                1227 => format!(
                    "{text}: grant the replication privileges: GRANT REPLICATION SLAVE, \
                     REPLICATION CLIENT ON *.* TO the user (MariaDB: REPLICATION REPLICA, \
                     BINLOG MONITOR)"
                ),
                1045 => format!("{text}: check the user name and password in the URL"),
                _ => text,
            };
            if PERMANENT_CODES.contains(&server.code) {
                SourceError::permanent(text)
            } else {
                SourceError::transient(text)
            }
        }
        mysql_async::Error::Url(error) => {
            SourceError::permanent(url.redact(&format!("the URL does not parse: {error}")))
        }
        mysql_async::Error::Io(mysql_async::IoError::Tls(error)) => {
            SourceError::permanent(url.redact(&format!("TLS: {error}")))
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(&format!(": {cause_text}"));
                }
                source = cause.source();
            }
            if text.contains("invalid peer certificate") {
                // rustls's verdict, passed on by the driver as an I/O error: waiting will not
                // make the certificate check out.
                return SourceError::permanent(url.redact(&format!(
                    "TLS: the server's certificate does not check out ({text}): ssl-ca= in the \
                     URL (or ca_file) must name the CA that signed it; under VERIFY_IDENTITY it \
                     must also name the URL's host"
                )));
            }
            SourceError::transient(url.redact(&text))
        }
    }
}

/// An identifier as SQL text: always quoted with backticks, inner backticks doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string as an SQL literal (quotes and backslashes escaped, whatever the SQL mode).
pub fn quote_literal(text: &str) -> String {
    let mut literal = String::with_capacity(text.len() + 2);
    literal.push('\'');
    for c in text.chars() {
        match c {
            '\'' => literal.push_str("''"),
            '\\' => literal.push_str("\\\\"),
            '\0' => literal.push_str("\\0"),
            c => literal.push(c),
        }
    }
    literal.push('\'');
    literal
}

/// The tables this user can see, as `db.table`, for the add dialog.
pub async fn list_tables(url: &DatabaseUrl) -> Result<Vec<String>, SourceError> {
    let mut conn = connect(url).await?;
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') \
             ORDER BY 1, 2",
        )
        .await
        .map_err(|error| classify(&error, url))?;
    let _ = conn.disconnect().await;
    Ok(rows
        .into_iter()
        .map(|(database, table)| scope::display_name(&database, &table))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_the_mysql_clients_tls_spelling() {
        let target = Target::parse(&DatabaseUrl::new(
            "mysql://app:p%40ss@db.example:3307/shop?ssl-mode=REQUIRED",
        ))
        .unwrap();
        assert_eq!(target.database.as_deref(), Some("shop"));
        assert_eq!(target.opts.pass(), Some("p@ss"));
        assert_eq!(target.opts.tcp_port(), 3307);
        assert!(target.opts.ssl_opts().is_some());
        let plain = Target::parse(&DatabaseUrl::new("mysql://app@127.0.0.1/")).unwrap();
        assert!(plain.opts.ssl_opts().is_none());
        assert_eq!(plain.database, None);
        let bad = Target::parse(&DatabaseUrl::new("mysql://a@h/d?ssl-mode=SOMETIMES"));
        assert!(bad.err().is_some_and(|error| error.contains("VERIFY_CA")));
    }

    #[test]
    fn literals_and_identifiers_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_literal(r"it's a \ test"), r"'it''s a \\ test'");
    }
}

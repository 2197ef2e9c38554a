//! A database's `ca_file` key, for the kinds that take it as a URL query parameter
//! (PostgreSQL's `sslrootcert`, MySQL's `ssl-ca`): checked, then added to the URL, relative to
//! the config file's directory.

use std::path::Path;

use crate::config::schema::DatabaseConfig;
use crate::secret::DatabaseUrl;

/// Checks `ca_file`: readable, and not named in the URL as well (as `param`).
pub fn check(
    database: &DatabaseConfig,
    url: &DatabaseUrl,
    config_dir: &Path,
    param: &str,
) -> Result<(), (&'static str, String)> {
    let Some(ca_file) = &database.ca_file else {
        return Ok(());
    };
    if names_ca(url, param) {
        return Err(("ca_file", both_named(param)));
    }
    let path = config_dir.join(ca_file);
    std::fs::File::open(&path).map(|_| ()).map_err(|error| {
        (
            "ca_file",
            format!("cannot read {}: {error}", path.display()),
        )
    })
}

/// The database's URL with its `ca_file` as the query parameter `param`.
pub fn add_to_url(
    database: &DatabaseConfig,
    config_dir: &Path,
    param: &str,
) -> Result<DatabaseUrl, String> {
    let url = database.resolve_url()?;
    let Some(ca_file) = &database.ca_file else {
        return Ok(url);
    };
    if names_ca(&url, param) {
        return Err(both_named(param));
    }
    let text = url.expose();
    let separator = if text.contains('?') { '&' } else { '?' };
    Ok(DatabaseUrl::new(format!(
        "{text}{separator}{param}={}",
        percent_encode_path(&config_dir.join(ca_file))
    )))
}

fn names_ca(url: &DatabaseUrl, param: &str) -> bool {
    url.expose().contains(&format!("{param}="))
}

fn both_named(param: &str) -> String {
    format!("the URL names a CA file too ({param}): give one of them")
}

/// A path as a URL query value: `%XX` for everything but unreserved characters and `/`.
pub fn percent_encode_path(path: &Path) -> String {
    let mut out = String::new();
    for byte in path.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(*byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

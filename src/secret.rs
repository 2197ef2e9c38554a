//! Database URLs hold passwords: this type never shows one, in `Debug`, logs or errors.

use std::fmt;

use serde::Deserialize;

/// A connection URL whose password is masked wherever it is shown.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

const MASK: &str = "***";

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The password in the URL's userinfo, if any, as written (percent-encoded).
    fn password(&self) -> Option<&str> {
        let rest = self.0.split_once("://")?.1;
        let authority = rest.split(['/', '?']).next()?;
        let userinfo = authority.rsplit_once('@')?.0;
        let password = userinfo.split_once(':')?.1;
        (!password.is_empty()).then_some(password)
    }

    /// Every spelling of every password in the URL: the userinfo's and a `password=` query
    /// parameter's, each as written and percent-decoded (drivers report the decoded one),
    /// longest first.
    fn secrets(&self) -> Vec<String> {
        let mut written: Vec<&str> = self.password().into_iter().collect();
        if let Some((_, query)) = self.0.split_once('?') {
            written.extend(
                query
                    .split('&')
                    .filter_map(|pair| pair.strip_prefix("password="))
                    .filter(|value| !value.is_empty()),
            );
        }
        let mut secrets: Vec<String> = written
            .iter()
            .flat_map(|text| [text.to_string(), percent_decode(text)])
            .collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        secrets
    }

    /// The URL with the password replaced by `***`, and any `password=` query value too.
    pub fn masked(&self) -> String {
        redact_password_params(&self.redact(&self.0))
    }

    /// Removes this URL's password from any text (say, a driver's error message), as
    /// written in the URL and percent-decoded.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in self.secrets() {
            if text.contains(&secret) {
                text = text.replace(&secret, MASK);
            }
        }
        text
    }
}

/// `%XX` sequences decoded.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes
            .get(at + 1..at + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[at], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Masks `password=…` values (libpq-style key/value parameters) up to the next separator.
fn redact_password_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("password=") {
        let (head, tail) = rest.split_at(at + "password=".len());
        out.push_str(head);
        let end = tail.find(['&', ' ', '\'']).unwrap_or(tail.len());
        if end > 0 {
            out.push_str(MASK);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_password_in_every_form() {
        let cases = [
            (
                "postgres://app:s3cret@db:5432/shop",
                "postgres://app:***@db:5432/shop",
            ),
            ("postgres://app@db/shop", "postgres://app@db/shop"),
            (
                "mongodb://u:p%40ss@h1,h2/?replicaSet=rs0",
                "mongodb://u:***@h1,h2/?replicaSet=rs0",
            ),
            (
                "postgres://db/shop?user=a&password=hunter2",
                "postgres://db/shop?user=a&password=***",
            ),
        ];
        for (url, masked) in cases {
            let url = DatabaseUrl::new(url);
            assert_eq!(url.masked(), masked);
            assert_eq!(format!("{url:?}"), masked);
            assert_eq!(url.to_string(), masked);
        }
    }

    #[test]
    fn redacts_the_password_from_error_text() {
        let url = DatabaseUrl::new("postgres://app:s3cret@db/shop");
        assert_eq!(
            url.redact("could not connect to postgres://app:s3cret@db/shop"),
            "could not connect to postgres://app:***@db/shop"
        );
        // Written percent-encoded, reported decoded.
        let url = DatabaseUrl::new("postgres://app:p%40ss%2Fw@db/shop?sslmode=require");
        assert_eq!(
            url.redact("auth failed for app:p@ss/w via postgres://app:p%40ss%2Fw@db"),
            "auth failed for app:*** via postgres://app:***@db"
        );
        // A password given as a query parameter.
        let url = DatabaseUrl::new("postgres://db/shop?user=a&password=hun%74er2");
        assert_eq!(url.redact("hunter2 and hun%74er2"), "*** and ***");
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}

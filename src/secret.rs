//! Database URLs hold passwords: this type never shows one, in `Debug`, logs or errors.
//!
//! A password is masked where one can stand, and nowhere else, so no message is garbled (a
//! password `o` leaves `password authentication failed for user "cdc"` whole, and
//! `postgres:postgres` keeps its user name):
//! - a URL's userinfo, however it is encoded: `postgres://cdc:***@db/shop`;
//! - `password=` settings: a URL's query, libpq's `key=value` strings (quoted or not);
//! - a driver's rendering of its settings: `password: "…"`, `password: Some("…")`, JSON's
//!   `"password": "…"`;
//! - this URL's own user and password written as `user:password` outside a URL, as written
//!   in the URL or percent-decoded.
//!
//! [`check_userinfo`] refuses URLs whose userinfo does not parse as the user meant (an `@`,
//! `/`, `:`, `?` or `#` in the password), so a password never spills into the host or path
//! where no masking would find it.

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

    /// The URL with the password replaced by `***`, and any `password=` value too.
    pub fn masked(&self) -> String {
        let mut url = self.0.clone();
        // The userinfo as the user meant it, even where a parser would cut it elsewhere.
        if let Some(userinfo) = Userinfo::of(&self.0)
            && let Some(password) = userinfo.password
            && !password.is_empty()
        {
            let start = userinfo.password_start();
            url.replace_range(start..start + password.len(), MASK);
        }
        mask_passwords(&url)
    }

    /// Masks passwords in `text` (a driver's or the server's message) where they can stand:
    /// see the module's documentation.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        // This URL's credentials first: written as they are in the URL, they may hold what
        // ends a URL's authority in running text (a URL refused by `check_userinfo`).
        if let Some(Userinfo {
            user,
            password: Some(password),
            ..
        }) = Userinfo::of(&self.0)
            && !password.is_empty()
        {
            let forms = [
                (user.to_string(), password.to_string()),
                (percent_decode(user), percent_decode(password)),
            ];
            for (user, password) in forms.iter().filter(|(user, _)| !user.is_empty()) {
                text = mask_credentials(&text, user, password);
            }
        }
        mask_passwords(&text)
    }
}

/// A URL's userinfo, as the user meant it: what comes before the last `@` that is not inside
/// the query (`?application_name=me@laptop`), split at its first `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Userinfo<'a> {
    /// Where the userinfo starts in the URL.
    start: usize,
    user: &'a str,
    password: Option<&'a str>,
}

impl<'a> Userinfo<'a> {
    fn of(url: &'a str) -> Option<Userinfo<'a>> {
        let start = url.find("://")? + 3;
        let rest = &url[start..];
        let at = rest
            .match_indices('@')
            .map(|(at, _)| at)
            .rev()
            .find(|&at| !in_query_value(&rest[..at]))?;
        let userinfo = &rest[..at];
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        Some(Userinfo {
            start,
            user,
            password,
        })
    }

    fn password_start(&self) -> usize {
        self.start + self.user.len() + 1
    }
}

/// True when the end of `before` lies in a query parameter's value (`…?key=val`).
fn in_query_value(before: &str) -> bool {
    before
        .split_once('?')
        .is_some_and(|(_, query)| query.contains('='))
}

/// Characters a URL's userinfo cannot hold as themselves (RFC 3986's gen-delims): each is
/// written `%XX`.
const USERINFO_RESERVED: [char; 7] = ['@', '/', ':', '?', '#', '[', ']'];

/// Checks that a URL's user name and password parse as written: a `@`, `/`, `:`, `?`, `#`,
/// `[` or `]` in them (`:` in the user name ends it; in the password it is reserved too, and
/// some drivers refuse it), or a `%` not starting a `%XX`, makes parsers cut the URL
/// elsewhere than the user meant (`postgres://cdc:p@ss/w:rd@db/shop` connects to host `ss`).
/// The error says which characters and how to write them, never the password itself. The
/// scheme does not matter: `postgres://`, `mongodb://` and `mysql://` URLs alike.
pub fn check_userinfo(url: &str) -> Result<(), String> {
    let Some(userinfo) = Userinfo::of(url) else {
        return Ok(());
    };
    let parts = [
        ("user name", Some(userinfo.user)),
        ("password", userinfo.password),
    ];
    for (what, text) in parts {
        let Some(text) = text else { continue };
        let mut found: Vec<char> = Vec::new();
        for c in text.chars().filter(|c| USERINFO_RESERVED.contains(c)) {
            if !found.contains(&c) {
                found.push(c);
            }
        }
        let bad_percent = text.split('%').skip(1).any(|after| {
            after
                .get(..2)
                .is_none_or(|hex| !hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
        });
        if bad_percent {
            found.push('%');
        }
        if found.is_empty() {
            continue;
        }
        let quoted: Vec<String> = found.iter().map(|c| format!("'{c}'")).collect();
        let encoded: Vec<String> = found
            .iter()
            .map(|&c| format!("%{:02X}", c as u32))
            .collect();
        let it = if found.len() == 1 { "it" } else { "them" };
        return Err(format!(
            "the {what} contains {}: write {it} as {} (a URL's user name and password \
             percent-encode @ / : ? # [ ] %; as written, the URL is cut at the wrong place)",
            join_words(&quoted),
            join_words(&encoded),
        ));
    }
    Ok(())
}

/// `a`, `a and b`, `a, b and c`.
fn join_words(words: &[String]) -> String {
    match words {
        [] => String::new(),
        [one] => one.clone(),
        [head @ .., last] => format!("{} and {last}", head.join(", ")),
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
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
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

/// Masks every password in `text` that stands where a password stands: in a URL's userinfo,
/// as a `password=` setting, or as a rendered `password: "…"` field. Nothing else changes.
pub fn mask_passwords(text: &str) -> String {
    mask_settings(&mask_url_userinfo(text))
}

/// Characters that end a URL's authority in running text: the authority's own delimiters,
/// white space, and what RFC 3986 allows nowhere in a URL.
fn ends_authority(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '/' | '?' | '#' | '"' | '<' | '>' | '`' | '[' | ']' | '{' | '}' | '\\' | '|' | '^'
        )
}

/// `scheme://user:password@host` → `scheme://user:***@host`, for every URL in `text`.
fn mask_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let start = found + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let authority = after.find(ends_authority).unwrap_or(after.len());
        let authority_text = &after[..authority];
        let masked = authority_text.rfind('@').and_then(|at| {
            let colon = authority_text[..at].find(':')?;
            (colon + 1 < at)
                .then(|| format!("{}{MASK}", &authority_text[..=colon]) + &authority_text[at..])
        });
        match masked {
            Some(masked) => out.push_str(&masked),
            None => out.push_str(authority_text),
        }
        rest = &after[authority..];
    }
    out.push_str(rest);
    out
}

/// Masks the value of each `password` setting: `password=value` (libpq key/value strings and
/// URL queries; a value in single quotes is masked inside them), `password: "value"` and
/// `password: Some("value")` (Rust's `Debug`), `"password": "value"` (JSON). The word alone
/// (`password authentication failed`) is left as it is.
fn mask_settings(text: &str) -> String {
    const KEY: &str = "password";
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let lower = text.to_ascii_lowercase();
    while let Some(found) = lower[at..].find(KEY) {
        let key_end = at + found + KEY.len();
        out.push_str(&text[at..key_end]);
        at = key_end;
        let Some(value) = setting_value(text, key_end) else {
            continue;
        };
        out.push_str(&text[at..value.start]);
        if value.start < value.end {
            out.push_str(MASK);
        }
        at = value.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Where the value of a setting whose key ends at `key_end` lies, if a value follows.
fn setting_value(text: &str, key_end: usize) -> Option<std::ops::Range<usize>> {
    let rest = &text[key_end..];
    let after_quote = rest.strip_prefix('"').unwrap_or(rest);
    let trimmed = after_quote.trim_start_matches(' ');
    let (separator, after_separator) = match trimmed.chars().next()? {
        c @ ('=' | ':') => (c, &trimmed[1..]),
        _ => return None,
    };
    let value = after_separator.trim_start_matches(' ');
    let value = value.strip_prefix("Some(").unwrap_or(value);
    let offset = text.len() - value.len();
    let quoted = |quote: char| {
        let inner = &value[1..];
        let mut escaped = false;
        let end = inner
            .char_indices()
            .find(|&(_, c)| {
                let ends = c == quote && !escaped;
                escaped = c == '\\' && !escaped;
                ends
            })
            .map_or(inner.len(), |(end, _)| end);
        offset + 1..offset + 1 + end
    };
    match value.chars().next() {
        Some(quote @ ('"' | '\'')) => Some(quoted(quote)),
        Some('[') => {
            let end = value.find(']').unwrap_or(value.len());
            Some(offset + 1..offset + end)
        }
        // `key: word` is prose; only `key=value` holds a bare value.
        Some(_) if separator == '=' => {
            let end = value
                .find(|c: char| c.is_whitespace() || matches!(c, '&' | '"' | '\''))
                .unwrap_or(value.len());
            Some(offset..offset + end)
        }
        _ => None,
    }
}

/// `user:password` → `user:***` where it stands alone (not inside a longer word).
fn mask_credentials(text: &str, user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = text[at..].find(&pair) {
        let start = at + found;
        let end = start + pair.len();
        let alone = !word(text[..start].chars().next_back()) && !word(text[end..].chars().next());
        out.push_str(&text[at..start]);
        if alone {
            out.push_str(user);
            out.push(':');
            out.push_str(MASK);
        } else {
            out.push_str(&pair);
        }
        at = end;
    }
    out.push_str(&text[at..]);
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
            // The user name is never masked, even when it is the password too.
            (
                "postgres://postgres:postgres@db/postgres",
                "postgres://postgres:***@db/postgres",
            ),
            // A password a parser would cut short is still masked whole.
            (
                "postgres://cdc:p@ss/w:rd@127.0.0.1:5432/shop",
                "postgres://cdc:***@127.0.0.1:5432/shop",
            ),
            (
                "mysql://root:pa:ss@db:3306/shop?application_name=me@laptop",
                "mysql://root:***@db:3306/shop?application_name=me@laptop",
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
    fn server_messages_are_never_garbled() {
        let messages = [
            r#"FATAL: password authentication failed for user "cdc""#,
            r#"FATAL: password authentication failed for user "postgres""#,
            r#"FATAL: database "postgres" does not exist"#,
            "connecting to 127.0.0.1:5432: Connection refused (os error 111)",
            "password must be URL encoded",
            "invalid configuration: password missing",
            "error: password: authentication failed",
        ];
        for url in [
            "postgres://cdc:o@127.0.0.1:5432/shop",
            "postgres://cdc:password@127.0.0.1:5432/shop",
            "postgres://postgres:postgres@127.0.0.1:5432/postgres",
            "postgres://cdc:cdc@127.0.0.1/shop",
            "mongodb://u:a@h/?replicaSet=rs0",
            "postgres://cdc:5432@127.0.0.1:5432/shop",
            "postgres://cdc:127.0.0.1@127.0.0.1:5432/shop",
        ] {
            let url = DatabaseUrl::new(url);
            for message in messages {
                assert_eq!(url.redact(message), message, "{url:?}");
            }
        }
    }

    #[test]
    fn redacts_the_password_where_drivers_put_it() {
        let url = DatabaseUrl::new("postgres://app:s3cret@db/shop");
        assert_eq!(
            url.redact("could not connect to postgres://app:s3cret@db/shop"),
            "could not connect to postgres://app:***@db/shop"
        );
        // Written percent-encoded, reported decoded or encoded another way.
        let url = DatabaseUrl::new("postgres://app:p%40ss%2Fw@db/shop?sslmode=require");
        assert_eq!(
            url.redact("auth failed for app:p@ss/w via postgres://app:p%40ss%2fw@db"),
            "auth failed for app:*** via postgres://app:***@db"
        );
        let url = DatabaseUrl::new("mongodb://app:p%40ss@db:27017/?replicaSet=rs0");
        assert_eq!(
            url.redact("rendered as mongodb://app:p%40ss@db:27017/?replicaSet=rs0, (app:p@ss)"),
            "rendered as mongodb://app:***@db:27017/?replicaSet=rs0, (app:***)"
        );
        // This URL's password in its own URL, even where it ends the authority too early.
        let url = DatabaseUrl::new("postgres://cdc:p@ss/w:rd@127.0.0.1:5432/shop");
        assert_eq!(
            url.redact("connecting to postgres://cdc:p@ss/w:rd@127.0.0.1:5432/shop failed"),
            "connecting to postgres://cdc:***@127.0.0.1:5432/shop failed"
        );
        // Any URL's password, not only this one's.
        assert_eq!(
            url.redact("'postgresql://other:x%23y@[::1]:5432/db' and mongodb://a:b@h1,h2/"),
            "'postgresql://other:***@[::1]:5432/db' and mongodb://a:***@h1,h2/"
        );
        // Settings: libpq key/value strings, quoted or not, URL queries, Debug and JSON.
        let url = DatabaseUrl::new("postgres://db/shop?user=a&password=hun%74er2");
        for (text, masked) in [
            (
                "host=db password=hunter2 user=a",
                "host=db password=*** user=a",
            ),
            (
                r"host=db password='hun ter\'2' user=a",
                r"host=db password='***' user=a",
            ),
            ("?user=a&password=hun%74er2&x=1", "?user=a&password=***&x=1"),
            (
                r#"Config { user: "a", password: "hunter2", host: "db" }"#,
                r#"Config { user: "a", password: "***", host: "db" }"#,
            ),
            (
                r#"Config { password: Some("hunter2") }"#,
                r#"Config { password: Some("***") }"#,
            ),
            (
                "Config { password: Some([104, 117]) }",
                "Config { password: Some([***]) }",
            ),
            (r#"{"password": "hunter2"}"#, r#"{"password": "***"}"#),
            (
                "Config { password: Some(_) }",
                "Config { password: Some(_) }",
            ),
            ("sslpassword=abc", "sslpassword=***"),
        ] {
            assert_eq!(url.redact(text), masked);
        }
        // The password alone, outside any place a password stands, is the text's own.
        let url = DatabaseUrl::new("postgres://cdc:failed@db/shop");
        assert_eq!(
            url.redact("password authentication failed for user \"cdc\""),
            "password authentication failed for user \"cdc\""
        );
        assert_eq!(percent_decode("a%2Fb%zz%4%+1"), "a/b%zz%4%+1");
    }

    #[test]
    fn userinfo_that_parses_as_written_passes() {
        for url in [
            "postgres://cdc:s3cret@127.0.0.1:5432/shop",
            "postgres://cdc:p%40ss%2Fw%3Ard@127.0.0.1:5432/shop",
            "postgres://cdc@127.0.0.1/shop?application_name=me@laptop",
            "postgres://127.0.0.1/shop",
            "postgresql://cdc:!$&'()*+,;=-._~@db/shop",
            "mongodb://u:p%23x@h1:27017,h2:27017/?replicaSet=rs0",
            "mysql://root:secret@db:3306/shop",
            "postgres://cdc:@db/shop",
        ] {
            assert_eq!(check_userinfo(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn userinfo_characters_to_encode_are_named_with_their_encoding() {
        let cases = [
            (
                "postgres://cdc:p@ss/w:rd@127.0.0.1:5432/shop",
                "the password contains '@', '/' and ':': write them as %40, %2F and %3A",
            ),
            (
                "mongodb://u:p@ss@h1,h2/?replicaSet=rs0",
                "the password contains '@': write it as %40",
            ),
            (
                "mysql://root:a#b@db:3306/shop",
                "the password contains '#': write it as %23",
            ),
            (
                "postgres://cdc:wh?t@db/shop",
                "the password contains '?': write it as %3F",
            ),
            (
                "postgres://cdc:100%@db/shop",
                "the password contains '%': write it as %25",
            ),
            (
                "postgres://cdc:a%+1b@db/shop",
                "the password contains '%': write it as %25",
            ),
            (
                "postgres://me@example.com:pw@db/shop",
                "the user name contains '@': write it as %40",
            ),
        ];
        for (url, expected) in cases {
            let error = check_userinfo(url).unwrap_err();
            assert!(error.starts_with(expected), "{url}: {error}");
        }
        // The error names characters, never the password.
        let error = check_userinfo("postgres://cdc:Zq7!sw@rd/f1sh@db/shop").unwrap_err();
        assert!(!error.contains("Zq7") && !error.contains("f1sh"), "{error}");
    }
}

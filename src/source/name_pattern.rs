//! Dotted name patterns of the SQL kinds (`schema.table`, `db.table`): each part a name or,
//! unquoted and holding `*`, a glob; a list of them separated by commas outside quotes. The
//! quote character and whether unquoted names fold to lower case are the kind's (PostgreSQL:
//! `"`, folded; MySQL: `` ` ``, kept).

use crate::source::glob::glob_matches;

/// How a kind quotes names.
pub struct Quoting {
    /// The quote character; inside quotes it is doubled to stand for itself.
    pub quote: char,
    /// Whether unquoted names fold to lower case.
    pub fold_case: bool,
    /// What to say about a space or quote in an unquoted name.
    pub advice: &'static str,
}

/// One part of a pattern: a name, or a glob over names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Exact(String),
    /// Unquoted (folded where the kind folds), `*` matching any run of characters.
    Glob(String),
}

impl Part {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Part::Exact(exact) => exact == name,
            Part::Glob(glob) => glob_matches(glob, name),
        }
    }

    /// Whether this is `*`, every name.
    pub fn is_all(&self) -> bool {
        matches!(self, Part::Glob(glob) if glob == "*")
    }
}

/// The dot-separated parts of `text`, however many; the caller says how many it takes.
pub fn parse_parts(text: &str, quoting: &Quoting) -> Result<Vec<Part>, String> {
    let quote = quoting.quote;
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let part = if chars.peek() == Some(&quote) {
            chars.next();
            let mut name = String::new();
            loop {
                match chars.next() {
                    Some(c) if c == quote && chars.peek() == Some(&quote) => {
                        chars.next();
                        name.push(quote);
                    }
                    Some(c) if c == quote => break,
                    Some(c) => name.push(c),
                    None => return Err(format!("{text:?}: a quoted name is not closed")),
                }
            }
            Part::Exact(name)
        } else {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == quote || c.is_whitespace() {
                    return Err(format!("{text:?}: {}", quoting.advice));
                }
                name.push(match quoting.fold_case {
                    true => c.to_ascii_lowercase(),
                    false => c,
                });
                chars.next();
            }
            if name.contains('*') {
                Part::Glob(name)
            } else {
                Part::Exact(name)
            }
        };
        if matches!(&part, Part::Exact(name) | Part::Glob(name) if name.is_empty()) {
            return Err(format!("{text:?}: an empty name"));
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(_) => return Err(format!("{text:?}: expected '.' after a quoted name")),
        }
    }
}

/// `a, "b,c".d` → `a`, `"b,c".d`: commas outside quotes separate; empty items are dropped.
pub fn split_list(text: &str, quote: char) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            c if c == quote => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    items.push(current);
    items
        .into_iter()
        .map(|item| item.trim().to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKTICKS: Quoting = Quoting {
        quote: '`',
        fold_case: false,
        advice: "quote it",
    };
    const DOUBLE_QUOTES: Quoting = Quoting {
        quote: '"',
        fold_case: true,
        advice: "quote it",
    };

    #[test]
    fn parts_follow_the_kinds_quoting() {
        assert_eq!(
            parse_parts("Shop.`Order Items`", &BACKTICKS).unwrap(),
            [
                Part::Exact("Shop".into()),
                Part::Exact("Order Items".into())
            ]
        );
        assert_eq!(
            parse_parts("Shop.\"A\"\"b\".x_*", &DOUBLE_QUOTES).unwrap(),
            [
                Part::Exact("shop".into()),
                Part::Exact("A\"b".into()),
                Part::Glob("x_*".into())
            ]
        );
        assert!(parse_parts("`a*`", &BACKTICKS).unwrap()[0] == Part::Exact("a*".into()));
        for bad in ["a b", "`a", "a..b", "`a`b"] {
            assert!(parse_parts(bad, &BACKTICKS).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_split_outside_quotes() {
        assert_eq!(split_list("a, `b,c`.d ,", '`'), ["a", "`b,c`.d"]);
        assert_eq!(split_list("\"x,y\".z,w", '"'), ["\"x,y\".z", "w"]);
    }
}

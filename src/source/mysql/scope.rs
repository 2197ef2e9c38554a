//! What a MySQL listener watches: `db.table` patterns (`shop.*`, `*.*`, `shop.order_*`, a
//! comma-separated list of them) less `exclude`d ones. Names are matched as written (MySQL
//! on Linux keeps table names' case); a part in backticks is taken literally, `*` included.

use crate::source::name_pattern::{Part, Quoting, parse_parts, split_list};

/// MySQL's quoting: backticks, names kept as written.
const QUOTING: Quoting = Quoting {
    quote: '`',
    fold_case: false,
    advice: "quote a name with spaces in backticks, as in `My Table`",
};

/// `db.table`, either part a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    database: Part,
    table: Part,
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, String> {
        let parts = parse_parts(text, &QUOTING)?;
        match <[Part; 2]>::try_from(parts) {
            Ok([database, table]) => Ok(Pattern { database, table }),
            Err(_) => Err(format!(
                "{text:?}: use db.table, or a pattern such as shop.* or *.*"
            )),
        }
    }

    fn matches(&self, database: &str, table: &str) -> bool {
        self.database.matches(database) && self.table.matches(table)
    }
}

/// The tables a listener watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

/// Databases no listener watches: the server's own.
const SYSTEM_DATABASES: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

impl Scope {
    /// `table` is one pattern or several separated by commas (outside backticks).
    pub fn parse(table: &str, exclude: &[String]) -> Result<Scope, String> {
        let include = split_list(table, QUOTING.quote)
            .iter()
            .map(|pattern| Pattern::parse(pattern))
            .collect::<Result<Vec<_>, _>>()?;
        if include.is_empty() {
            return Err("name a table (db.table) or a pattern such as shop.*".into());
        }
        let exclude = exclude
            .iter()
            .map(|pattern| Pattern::parse(pattern))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scope { include, exclude })
    }

    pub fn matches(&self, database: &str, table: &str) -> bool {
        !SYSTEM_DATABASES.contains(&database)
            && self.include.iter().any(|p| p.matches(database, table))
            && !self.exclude.iter().any(|p| p.matches(database, table))
    }

    /// The one table this scope names, if it is one name without a glob.
    pub fn exact(&self) -> Option<(String, String)> {
        match (self.include.as_slice(), self.exclude.is_empty()) {
            (
                [
                    Pattern {
                        database: Part::Exact(database),
                        table: Part::Exact(table),
                    },
                ],
                true,
            ) => Some((database.clone(), table.clone())),
            _ => None,
        }
    }
}

/// `db.table` as a user would type it: parts in backticks only where needed.
pub fn display_name(database: &str, table: &str) -> String {
    format!("{}.{}", display_part(database), display_part(table))
}

/// A name as a pattern part: in backticks when it holds what a pattern would read otherwise.
pub fn display_part(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '-');
    if plain {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_database_and_table() {
        let scope = Scope::parse("shop.*, crm.customers", &["shop.audit_*".into()]).unwrap();
        assert!(scope.matches("shop", "orders"));
        assert!(scope.matches("crm", "customers"));
        assert!(!scope.matches("crm", "leads"));
        assert!(!scope.matches("shop", "audit_log"));
        assert!(!scope.matches("Shop", "orders"), "names keep their case");
        let all = Scope::parse("*.*", &[]).unwrap();
        assert!(all.matches("anything", "t"));
        assert!(
            !all.matches("mysql", "user"),
            "the server's own databases are left out"
        );
        let quoted = Scope::parse("`my db`.`a*b`", &[]).unwrap();
        assert!(quoted.matches("my db", "a*b"));
        assert!(!quoted.matches("my db", "axb"));
        assert_eq!(quoted.exact(), Some(("my db".into(), "a*b".into())));
    }

    #[test]
    fn bad_patterns_say_how_to_write_them() {
        for bad in ["orders", "a.b.c", "`open", "my db.t", "a.", ""] {
            assert!(Scope::parse(bad, &[]).is_err(), "{bad:?} should be refused");
        }
        assert!(
            Scope::parse("orders", &[])
                .unwrap_err()
                .contains("db.table")
        );
    }

    #[test]
    fn names_display_as_patterns_read_them() {
        assert_eq!(display_name("shop", "orders"), "shop.orders");
        assert_eq!(display_name("my db", "a.b"), "`my db`.`a.b`");
    }
}

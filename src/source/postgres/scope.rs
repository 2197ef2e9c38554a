//! What a PostgreSQL listener watches: one table, or a scope of patterns with SQL's naming
//! rules (`public.*`, `*.*`, `"Shop".*`, `public.order_*`, a list of them) less `exclude`d
//! patterns. An unquoted part is folded to lower case and may hold `*`; a quoted part is taken
//! as written; a name without a schema is in `public`.

use std::fmt;

use tokio_postgres::Client;

use crate::secret::DatabaseUrl;
use crate::source::SourceError;
use crate::source::name_pattern::{Part, Quoting, parse_parts, split_list};
use crate::source::postgres::{TableName, classify};

/// SQL's quoting: double quotes, unquoted names folded to lower case.
const QUOTING: Quoting = Quoting {
    quote: '"',
    fold_case: true,
    advice: "quote a name with spaces or quotes, as in \"My Table\"",
};

/// `schema.table` with either part a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    schema: Part,
    table: Part,
}

impl TablePattern {
    pub fn parse(text: &str) -> Result<TablePattern, String> {
        let parts = parse_parts(text, &QUOTING)?;
        match <[Part; 2]>::try_from(parts) {
            Ok([schema, table]) => Ok(TablePattern { schema, table }),
            Err(parts) if parts.len() == 1 => Ok(TablePattern {
                schema: Part::Exact("public".into()),
                table: parts
                    .into_iter()
                    .next()
                    .unwrap_or(Part::Exact(String::new())),
            }),
            Err(_) => Err(format!(
                "{text:?}: use table or schema.table, or a pattern such as public.*"
            )),
        }
    }

    pub fn matches(&self, table: &TableName) -> bool {
        self.schema.matches(&table.schema) && self.table.matches(&table.name)
    }

    /// The one table this pattern names, if it has no glob.
    pub fn exact(&self) -> Option<TableName> {
        match (&self.schema, &self.table) {
            (Part::Exact(schema), Part::Exact(name)) => Some(TableName {
                schema: schema.clone(),
                name: name.clone(),
            }),
            _ => None,
        }
    }

    /// The schema whose every table this pattern takes (`s.*`).
    fn whole_schema(&self) -> Option<&str> {
        match (&self.schema, self.table.is_all()) {
            (Part::Exact(schema), true) => Some(schema),
            _ => None,
        }
    }
}

/// The tables a listener watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    include: Vec<TablePattern>,
    exclude: Vec<TablePattern>,
    /// As the listener's `table` gives it, for messages.
    text: String,
}

/// How a scope maps onto a publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// One table, named exactly.
    One(TableName),
    /// Every table of the database.
    All,
    /// Every table of these schemas.
    Schemas(Vec<String>),
    /// Patterns: the tables that match, listed.
    Listed,
}

impl Scope {
    /// `table` is one pattern or several separated by commas (outside quotes).
    pub fn parse(table: &str, exclude: &[String]) -> Result<Scope, String> {
        let include = split_list(table, QUOTING.quote)
            .iter()
            .map(|pattern| TablePattern::parse(pattern))
            .collect::<Result<Vec<_>, _>>()?;
        if include.is_empty() {
            return Err("name a table or a pattern such as public.*".into());
        }
        let exclude = exclude
            .iter()
            .map(|pattern| TablePattern::parse(pattern))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scope {
            include,
            exclude,
            text: table.to_string(),
        })
    }

    pub fn matches(&self, table: &TableName) -> bool {
        self.include.iter().any(|pattern| pattern.matches(table))
            && !self.exclude.iter().any(|pattern| pattern.matches(table))
    }

    pub fn shape(&self) -> Shape {
        if !self.exclude.is_empty() {
            return Shape::Listed;
        }
        if let [one] = self.include.as_slice()
            && let Some(table) = one.exact()
        {
            return Shape::One(table);
        }
        if self
            .include
            .iter()
            .any(|pattern| pattern.schema.is_all() && pattern.table.is_all())
        {
            return Shape::All;
        }
        let schemas: Option<Vec<String>> = self
            .include
            .iter()
            .map(|pattern| pattern.whole_schema().map(str::to_string))
            .collect();
        match schemas {
            Some(schemas) => Shape::Schemas(schemas),
            None => Shape::Listed,
        }
    }

    /// The tables of the database (that this user can see) in the scope, in name order.
    pub async fn tables(
        &self,
        client: &Client,
        url: &DatabaseUrl,
    ) -> Result<Vec<TableName>, SourceError> {
        let rows = client
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' \
                 ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(|error| classify(&error, url))?;
        Ok(rows
            .iter()
            .map(|row| TableName {
                schema: row.get(0),
                name: row.get(1),
            })
            .filter(|table| self.matches(table))
            .collect())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::glob::glob_matches;

    fn table(schema: &str, name: &str) -> TableName {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    #[test]
    fn patterns_follow_sql_naming_with_globs() {
        let scope =
            Scope::parse("public.order_*, \"Shop\".*", &["public.order_audit".into()]).unwrap();
        assert!(scope.matches(&table("public", "order_items")));
        assert!(scope.matches(&table("Shop", "Order Items")));
        assert!(
            !scope.matches(&table("shop", "orders")),
            "quoted: case kept"
        );
        assert!(!scope.matches(&table("public", "order_audit")), "excluded");
        assert!(!scope.matches(&table("public", "customers")));
        assert_eq!(scope.shape(), Shape::Listed);

        assert_eq!(
            Scope::parse("Orders", &[]).unwrap().shape(),
            Shape::One(table("public", "orders"))
        );
        assert_eq!(Scope::parse("*.*", &[]).unwrap().shape(), Shape::All);
        assert_eq!(
            Scope::parse("public.*, sales.*", &[]).unwrap().shape(),
            Shape::Schemas(vec!["public".into(), "sales".into()])
        );
        assert!(
            Scope::parse("*", &[])
                .unwrap()
                .matches(&table("public", "x"))
        );
        assert!(
            !Scope::parse("*", &[])
                .unwrap()
                .matches(&table("sales", "x"))
        );
        for bad in ["", "a.b.c", "\"open", "Order Items", "a.", ".a"] {
            assert!(Scope::parse(bad, &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn globs_match_runs_of_characters() {
        for (glob, name, expected) in [
            ("*", "", true),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a*c", "ac", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("ab*ba", "aba", false),
            ("order_*", "order", false),
        ] {
            assert_eq!(glob_matches(glob, name), expected, "{glob} ~ {name}");
        }
    }
}

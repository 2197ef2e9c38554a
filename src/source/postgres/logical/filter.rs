//! Filters that run in the server: a row filter (`where`) and a column list (`columns`) in the
//! publication cdc-tui creates (PostgreSQL 15+), so rows and columns outside them are never
//! decoded for cdc-tui, let alone sent.
//!
//! cdc-tui must never break the application's writes: on a publication that publishes UPDATE
//! and DELETE, PostgreSQL refuses those statements on a table whose row filter uses a column
//! outside its replica identity, or whose column list leaves a replica identity column out
//! (`ERROR: cannot update table "orders"`). Both are checked before the publication is made,
//! and such a filter is refused with the choices the user has.

use tokio_postgres::Client;

use crate::secret::DatabaseUrl;
use crate::source::SourceError;
use crate::source::postgres::{TableName, classify, quote_ident};

/// A logical listener's `where` and `columns`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowFilter {
    pub where_clause: Option<String>,
    pub columns: Option<Vec<String>>,
}

impl RowFilter {
    pub fn is_empty(&self) -> bool {
        self.where_clause.is_none() && self.columns.is_none()
    }

    /// The table as a publication names it, with this filter: `"s"."t" ("a", "b") WHERE (…)`.
    pub fn table_clause(&self, table: &TableName) -> String {
        let mut clause = table.quoted();
        if let Some(columns) = &self.columns {
            let quoted: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
            clause.push_str(&format!(" ({})", quoted.join(", ")));
        }
        if let Some(expression) = &self.where_clause {
            clause.push_str(&format!(" WHERE ({expression})"));
        }
        clause
    }

    /// Where the filter runs, for the listener's detail.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(expression) = &self.where_clause {
            parts.push(format!("rows WHERE {expression}"));
        }
        if let Some(columns) = &self.columns {
            parts.push(format!("columns {}", columns.join(", ")));
        }
        (!parts.is_empty())
            .then(|| format!("filtered in the server's publication: {}", parts.join("; ")))
    }

    /// Refuses a filter that would make PostgreSQL refuse the application's UPDATE or DELETE
    /// on `table`, or that this server cannot run.
    pub async fn check_safe(
        &self,
        client: &Client,
        table: &TableName,
        version_num: i32,
        url: &DatabaseUrl,
    ) -> Result<(), SourceError> {
        if self.is_empty() {
            return Ok(());
        }
        if version_num < 150_000 {
            return Err(SourceError::permanent(
                "where and columns need PostgreSQL 15 or later (row filters and column lists \
                 in publications); remove them to capture every row and column",
            ));
        }
        let identity = replica_identity(client, table, url).await?;
        let display = table.display_name();
        let choices = format!(
            "filter on the key columns ({}) only, run ALTER TABLE {display} REPLICA IDENTITY \
             FULL, or remove the filter and use the TUI's / filter after decoding",
            identity.columns.join(", ")
        );
        if let Some(columns) = &self.columns {
            if let Some(unknown) = columns.iter().find(|c| !identity.all.contains(c)) {
                return Err(SourceError::permanent(format!(
                    "columns: {display} has no column {unknown}"
                )));
            }
            let missing: Vec<&String> = (identity.columns.iter())
                .filter(|column| !columns.contains(column))
                .collect();
            if !missing.is_empty() {
                return Err(SourceError::permanent(format!(
                    "columns leaves out {} of {display}'s replica identity: with that column \
                     list in the publication PostgreSQL would refuse the application's UPDATE \
                     and DELETE on {display}; list them too, or {choices}",
                    list(&missing)
                )));
            }
        }
        if let Some(expression) = &self.where_clause {
            let outside: Vec<String> = referenced_columns(expression, &identity.all)
                .into_iter()
                .filter(|column| !identity.columns.contains(column))
                .collect();
            if !outside.is_empty() {
                return Err(SourceError::permanent(format!(
                    "where = {expression:?} uses {}, outside {display}'s replica identity: with \
                     that row filter in the publication PostgreSQL would refuse the \
                     application's UPDATE and DELETE on {display}; {choices}",
                    list(&outside.iter().collect::<Vec<_>>())
                )));
            }
        }
        Ok(())
    }
}

fn list(columns: &[&String]) -> String {
    columns
        .iter()
        .map(|column| column.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table's columns and those of its replica identity.
struct Identity {
    /// Every column, in order.
    all: Vec<String>,
    /// The replica identity's: the primary key (DEFAULT), the index's (USING INDEX), every
    /// column (FULL), none (NOTHING, or DEFAULT without a primary key).
    columns: Vec<String>,
}

async fn replica_identity(
    client: &Client,
    table: &TableName,
    url: &DatabaseUrl,
) -> Result<Identity, SourceError> {
    let row = client
        .query_opt(
            "SELECT c.relreplident::text, \
                    ARRAY(SELECT a.attname::text FROM pg_attribute a \
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                          ORDER BY a.attnum), \
                    ARRAY(SELECT a.attname::text FROM pg_index i \
                          CROSS JOIN LATERAL unnest(i.indkey::int2[]) AS k(attnum) \
                          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
                          WHERE i.indrelid = c.oid AND \
                                CASE c.relreplident WHEN 'i' THEN i.indisreplident \
                                                    ELSE i.indisprimary END) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|error| classify(&error, url))?
        .ok_or_else(|| {
            SourceError::permanent(format!(
                "table {} does not exist (or this user cannot see it)",
                table.display_name()
            ))
        })?;
    let identity: String = row.get(0);
    let all: Vec<String> = row.get(1);
    let columns = match identity.as_str() {
        "f" => all.clone(),
        "n" => Vec::new(),
        _ => row.get(2),
    };
    Ok(Identity { all, columns })
}

/// The table's columns an expression names: its identifiers (unquoted ones folded to lower
/// case, quoted ones as written) that are column names, outside string literals. Names a
/// function or a keyword shares with a column count too: wrongly refusing a safe filter is
/// better than breaking the application's writes.
fn referenced_columns(expression: &str, columns: &[String]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut keep = |name: String| {
        if columns.contains(&name) && !found.contains(&name) {
            found.push(name);
        }
    };
    let mut chars = expression.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                // A string literal ('' escapes a quote).
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '"' => {
                let mut name = String::new();
                while let Some(c) = chars.next() {
                    if c == '"' {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            name.push('"');
                        } else {
                            break;
                        }
                    } else {
                        name.push(c);
                    }
                }
                keep(name);
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut name = c.to_lowercase().collect::<String>();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '$' {
                        name.extend(c.to_lowercase());
                        chars.next();
                    } else {
                        break;
                    }
                }
                keep(name);
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_columns_skip_literals_and_fold_unquoted_names() {
        let columns: Vec<String> = ["id", "status", "Total", "note"].map(String::from).into();
        assert_eq!(
            referenced_columns("status <> 'draft' AND \"Total\" > 5", &columns),
            ["status", "Total"]
        );
        assert_eq!(
            referenced_columns("STATUS = 'note' OR id IN (1, 2)", &columns),
            ["status", "id"]
        );
        assert_eq!(
            referenced_columns("'it''s id' = 'x'", &columns),
            Vec::<String>::new()
        );
        assert_eq!(
            referenced_columns("total > 1", &columns),
            Vec::<String>::new(),
            "not \"Total\""
        );
    }

    #[test]
    fn the_table_clause_quotes_names_and_wraps_the_expression() {
        let filter = RowFilter {
            where_clause: Some("id > 10".into()),
            columns: Some(vec!["id".into(), "Total".into()]),
        };
        let table = TableName {
            schema: "public".into(),
            name: "orders".into(),
        };
        assert_eq!(
            filter.table_clause(&table),
            r#""public"."orders" ("id", "Total") WHERE (id > 10)"#
        );
        assert_eq!(
            RowFilter::default().table_clause(&table),
            r#""public"."orders""#
        );
    }
}

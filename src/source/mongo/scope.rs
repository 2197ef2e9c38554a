//! What a MongoDB listener watches: one collection (`shop.orders`), a database (`shop.*`), the
//! deployment (`*` or `*.*`), or a list of names and patterns (`shop.orders, shop.order_*`)
//! less `exclude`d ones. Names are `db.collection`, split at the first dot (a database name
//! has none), case-sensitive; `*` in either part matches any run of characters.
//!
//! The stream is opened as narrowly as the scope allows (a collection, one database, else the
//! deployment), and the scope's exact names go into the stream's `$match` on `ns`, so the
//! server sends only what is watched; patterns with a `*` inside a name are matched here.

use mongodb::bson::{Bson, Document, doc};

use crate::source::glob::glob_matches;
use crate::source::mongo::values::Namespace;

/// Events that say something happened to a collection or database, let through every filter:
/// the listener needs them to report drops and renames, and to reopen an invalidated stream.
pub const LIFECYCLE_EVENTS: [&str; 4] = ["drop", "rename", "dropDatabase", "invalidate"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Exact(String),
    Glob(String),
}

impl Part {
    fn parse(text: &str) -> Part {
        if text.contains('*') {
            Part::Glob(text.to_string())
        } else {
            Part::Exact(text.to_string())
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Part::Exact(exact) => exact == name,
            Part::Glob(glob) => glob_matches(glob, name),
        }
    }

    fn is_all(&self) -> bool {
        matches!(self, Part::Glob(glob) if glob == "*")
    }

    fn exact(&self) -> Option<&str> {
        match self {
            Part::Exact(exact) => Some(exact),
            Part::Glob(_) => None,
        }
    }
}

/// `db.collection`, either part a glob; `*` alone is `*.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    db: Part,
    coll: Part,
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(Pattern {
                db: Part::parse("*"),
                coll: Part::parse("*"),
            });
        }
        match text.split_once('.') {
            Some((db, coll)) if !db.is_empty() && !coll.is_empty() => Ok(Pattern {
                db: Part::parse(db),
                coll: Part::parse(coll),
            }),
            _ => Err(format!(
                "{text:?} is not \"database.collection\" as MongoDB needs (or a pattern: \
                 \"shop.*\" for a database, \"*\" for the deployment)"
            )),
        }
    }

    fn matches(&self, namespace: &Namespace) -> bool {
        self.db.matches(&namespace.db) && self.coll.matches(&namespace.coll)
    }

    /// The `$match` condition on a field holding `{db, coll}` (`ns`, or a rename's `to`),
    /// when the server can check this pattern without a regular expression.
    fn condition(&self, field: &str) -> Option<Document> {
        let db = self.db.exact()?;
        let mut condition = doc! { format!("{field}.db"): db };
        if !self.coll.is_all() {
            condition.insert(format!("{field}.coll"), self.coll.exact()?);
        }
        Some(condition)
    }
}

/// Where the stream is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `collection.watch()`: one collection, which ends the listener when it goes.
    Collection(Namespace),
    /// `db.watch()`.
    Database(String),
    /// `client.watch()`.
    Deployment,
}

/// The collections a listener watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

impl Scope {
    /// `table` is one name or pattern, or several separated by commas.
    pub fn parse(table: &str, exclude: &[String]) -> Result<Scope, String> {
        let include = split_list(table)
            .map(Pattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if include.is_empty() {
            return Err("name a collection (db.collection) or a pattern such as shop.*".into());
        }
        let exclude = exclude
            .iter()
            .flat_map(|text| split_list(text))
            .map(Pattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scope { include, exclude })
    }

    pub fn matches(&self, namespace: &Namespace) -> bool {
        self.include
            .iter()
            .any(|pattern| pattern.matches(namespace))
            && !self
                .exclude
                .iter()
                .any(|pattern| pattern.matches(namespace))
    }

    /// Whether collections of `db` may be in the scope (for a dropped database).
    pub fn covers_database(&self, db: &str) -> bool {
        self.include.iter().any(|pattern| pattern.db.matches(db))
            && !self
                .exclude
                .iter()
                .any(|pattern| pattern.db.matches(db) && pattern.coll.is_all())
    }

    pub fn target(&self) -> Target {
        if let ([one], []) = (self.include.as_slice(), self.exclude.as_slice())
            && let (Some(db), Some(coll)) = (one.db.exact(), one.coll.exact())
        {
            return Target::Collection(Namespace {
                db: db.to_string(),
                coll: coll.to_string(),
            });
        }
        let mut databases = self.include.iter().map(|pattern| pattern.db.exact());
        match databases.next().flatten() {
            Some(db) if databases.all(|other| other == Some(db)) => {
                Target::Database(db.to_string())
            }
            _ => Target::Deployment,
        }
    }

    /// The stream's `$match` on namespaces (None: the target is the scope), and whether it
    /// says all of the scope (else patterns are also matched here).
    pub fn server_match(&self) -> (Option<Document>, bool) {
        let mut conditions = Vec::new();
        let mut complete = true;
        let whole_target = match self.target() {
            Target::Collection(_) => return (None, true),
            Target::Database(_) => self.include.iter().any(|pattern| pattern.coll.is_all()),
            Target::Deployment => self
                .include
                .iter()
                .any(|pattern| pattern.db.is_all() && pattern.coll.is_all()),
        };
        if !whole_target {
            let mut includes: Vec<Bson> = LIFECYCLE_ALWAYS
                .iter()
                .map(|operation| doc! { "operationType": *operation }.into())
                .collect();
            for pattern in &self.include {
                // A collection renamed into the scope is shown joining it.
                match (pattern.condition("ns"), pattern.condition("to")) {
                    (Some(ns), Some(to)) => includes.extend([ns.into(), to.into()]),
                    _ => complete = false,
                }
            }
            if complete {
                conditions.push(doc! { "$or": includes });
            }
        }
        let mut excludes = Vec::new();
        for pattern in &self.exclude {
            match pattern.condition("ns") {
                Some(ns) => excludes.push(Bson::Document(ns)),
                None => complete = false,
            }
        }
        if !excludes.is_empty() {
            conditions.push(doc! { "$nor": excludes });
        }
        let filter = match conditions.len() {
            0 => None,
            1 => conditions.pop(),
            _ => Some(doc! { "$and": conditions }),
        };
        (filter, complete)
    }
}

/// Events without a collection that a scope's `$match` on names must still let through.
const LIFECYCLE_ALWAYS: [&str; 2] = ["dropDatabase", "invalidate"];

/// `a, b` → `a`, `b`.
fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(text: &str) -> Namespace {
        Namespace::parse(text).unwrap()
    }

    #[test]
    fn scopes_open_the_narrowest_stream() {
        let target = |table: &str, exclude: &[&str]| {
            let exclude: Vec<String> = exclude.iter().map(|e| e.to_string()).collect();
            Scope::parse(table, &exclude).unwrap().target()
        };
        assert_eq!(
            target("shop.orders", &[]),
            Target::Collection(ns("shop.orders"))
        );
        assert_eq!(target("shop.*", &[]), Target::Database("shop".into()));
        assert_eq!(
            target("shop.orders, shop.items", &[]),
            Target::Database("shop".into())
        );
        assert_eq!(
            target("shop.orders", &["shop.orders"]),
            Target::Database("shop".into())
        );
        assert_eq!(target("*", &[]), Target::Deployment);
        assert_eq!(target("*.*", &[]), Target::Deployment);
        assert_eq!(target("shop.*, crm.leads", &[]), Target::Deployment);
        assert_eq!(target("s*.orders", &[]), Target::Deployment);
        for bad in ["", "orders", ".orders", "shop."] {
            assert!(Scope::parse(bad, &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns_and_excludes_match_namespaces() {
        let scope = Scope::parse("shop.order_*, crm.*", &["crm.audit*".into()]).unwrap();
        assert!(scope.matches(&ns("shop.order_items")));
        assert!(!scope.matches(&ns("shop.orders")));
        assert!(scope.matches(&ns("crm.leads")));
        assert!(!scope.matches(&ns("crm.audit_log")));
        assert!(!scope.matches(&ns("Shop.order_items")), "case-sensitive");
        assert!(scope.covers_database("crm"));
        assert!(!scope.covers_database("other"));
        let all = Scope::parse("*", &["shop.*".into()]).unwrap();
        assert!(all.matches(&ns("crm.x.y")));
        assert!(!all.covers_database("shop"));
    }

    #[test]
    fn exact_names_go_into_the_servers_match() {
        let (filter, complete) = Scope::parse("shop.*", &[]).unwrap().server_match();
        assert_eq!((filter, complete), (None, true));
        let (filter, complete) = Scope::parse("shop.*", &["shop.audit".into()])
            .unwrap()
            .server_match();
        assert_eq!(
            filter,
            Some(doc! { "$nor": [{ "ns.db": "shop", "ns.coll": "audit" }] })
        );
        assert!(complete);
        let (filter, complete) = Scope::parse("shop.orders, crm.*", &[])
            .unwrap()
            .server_match();
        assert_eq!(
            filter,
            Some(doc! { "$or": [
                { "operationType": "dropDatabase" },
                { "operationType": "invalidate" },
                { "ns.db": "shop", "ns.coll": "orders" },
                { "to.db": "shop", "to.coll": "orders" },
                { "ns.db": "crm" },
                { "to.db": "crm" },
            ] })
        );
        assert!(complete);
        // A glob inside a name is matched here; the rest still goes to the server.
        let (filter, complete) = Scope::parse("shop.order_*", &["shop.order_audit".into()])
            .unwrap()
            .server_match();
        assert_eq!(
            filter,
            Some(doc! { "$nor": [{ "ns.db": "shop", "ns.coll": "order_audit" }] })
        );
        assert!(!complete);
    }
}

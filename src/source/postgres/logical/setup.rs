//! The SQL side of logical replication, on an ordinary connection: checking the server and the
//! table, creating (and dropping) the publication, looking up a persistent slot, and reading a
//! slot's retained WAL for the listener's detail.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::secret::DatabaseUrl;
use crate::source::SourceError;
use crate::source::postgres::logical::filter::RowFilter;
use crate::source::postgres::pgoutput::ReplicaIdentity;
use crate::source::postgres::scope::Scope;
use crate::source::postgres::{TableName, classify, quote_ident};
use crate::units;

/// What the stream needs to know about the server.
#[derive(Debug, Clone)]
pub struct Server {
    pub version_num: i32,
    /// `wal_sender_timeout`; `None` when disabled.
    pub wal_sender_timeout: Option<Duration>,
    pub user: String,
    pub database: String,
}

/// Checks that the server can do logical decoding, and reads what the stream needs.
pub async fn check_server(client: &Client, url: &DatabaseUrl) -> Result<Server, SourceError> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'), \
                    current_setting('server_version_num')::int4, \
                    (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_sender_timeout'), \
                    current_user::text, current_database()::text",
            &[],
        )
        .await
        .map_err(|error| classify(&error, url))?;
    let wal_level: String = row.get(0);
    if wal_level != "logical" {
        return Err(SourceError::permanent(format!(
            "the server runs with wal_level = {wal_level}, and logical replication needs \
             wal_level = logical: run `ALTER SYSTEM SET wal_level = logical` as a superuser and \
             restart the server (or use strategy = \"polling\")"
        )));
    }
    let timeout_ms: Option<i64> = row.get(2);
    Ok(Server {
        version_num: row.get(1),
        wal_sender_timeout: timeout_ms
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(ms.unsigned_abs())),
        user: row.get(3),
        database: row.get(4),
    })
}

/// The watched table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub oid: u32,
    pub identity: ReplicaIdentity,
    /// Primary key column names in key order; empty when there is none.
    pub primary_key: Vec<String>,
    /// The generated columns, in column order.
    pub generated: Vec<GeneratedColumn>,
}

/// A generated column (`GENERATED ALWAYS AS (…)`, PostgreSQL 12+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedColumn {
    pub name: String,
    /// `STORED`; else `VIRTUAL` (PostgreSQL 18+), which logical replication never sends.
    pub stored: bool,
}

pub async fn describe_table(
    client: &Client,
    table: &TableName,
    server: &Server,
    url: &DatabaseUrl,
) -> Result<TableInfo, SourceError> {
    // `attgenerated` exists from PostgreSQL 12, the first with generated columns.
    let generated = if server.version_num >= 120_000 {
        "ARRAY(SELECT a.attname::text FROM pg_attribute a \
               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 AND a.attgenerated <> '' ORDER BY a.attnum), \
         ARRAY(SELECT a.attgenerated = 's' FROM pg_attribute a \
               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 AND a.attgenerated <> '' ORDER BY a.attnum)"
    } else {
        "ARRAY[]::text[], ARRAY[]::bool[]"
    };
    let sql = format!(
        "SELECT c.oid, c.relreplident::text, c.relkind::text, \
                ARRAY(SELECT a.attname::text \
                      FROM pg_index i \
                      CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
                      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
                      WHERE i.indrelid = c.oid AND i.indisprimary \
                      ORDER BY k.n), \
                {generated} \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2"
    );
    let row = client
        .query_opt(&sql, &[&table.schema, &table.name])
        .await
        .map_err(|error| classify(&error, url))?;
    let Some(row) = row else {
        return Err(SourceError::permanent(format!(
            "table {} does not exist (or this user cannot see it)",
            table.display_name()
        )));
    };
    let kind: String = row.get(2);
    if kind != "r" && kind != "p" {
        return Err(SourceError::permanent(format!(
            "{} is not a table (relkind {kind}): only tables can be captured",
            table.display_name()
        )));
    }
    let identity: String = row.get(1);
    let identity = match identity.as_str() {
        "f" => ReplicaIdentity::Full,
        "n" => ReplicaIdentity::Nothing,
        "i" => ReplicaIdentity::Index,
        _ => ReplicaIdentity::Default,
    };
    let names: Vec<String> = row.get(4);
    let stored: Vec<bool> = row.get(5);
    Ok(TableInfo {
        oid: row.get(0),
        identity,
        primary_key: row.get(3),
        generated: (names.into_iter().zip(stored))
            .map(|(name, stored)| GeneratedColumn { name, stored })
            .collect(),
    })
}

/// The hint shown in the listener's detail for a table whose changes lack before images.
pub fn identity_hint(identity: ReplicaIdentity, table: &TableName) -> Option<String> {
    let name = match identity {
        ReplicaIdentity::Full => return None,
        ReplicaIdentity::Default => "DEFAULT",
        ReplicaIdentity::Index => "USING INDEX",
        ReplicaIdentity::Nothing => "NOTHING",
    };
    Some(format!(
        "REPLICA IDENTITY {name}: before images are null; ALTER TABLE {} REPLICA IDENTITY FULL \
         to get them",
        table.display_name()
    ))
}

/// Whether `publication` publishes stored generated columns: only PostgreSQL 18+ can
/// (`publish_generated_columns = stored`), and pgoutput sends them only then.
pub async fn publishes_stored_generated(
    client: &Client,
    publication: &str,
    server: &Server,
    url: &DatabaseUrl,
) -> Result<bool, SourceError> {
    if server.version_num < 180_000 {
        return Ok(false);
    }
    let row = client
        .query_opt(
            "SELECT pubgencols::text = 's' FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|error| classify(&error, url))?;
    Ok(row.is_some_and(|row| row.get(0)))
}

/// The note in the listener's detail for generated columns the changes lack: `missing` are
/// the table's generated columns that the stream does not send.
pub fn generated_hint(
    missing: &[&GeneratedColumn],
    version_num: i32,
    publication: &str,
) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let names = missing
        .iter()
        .map(|column| quote_ident(&column.name))
        .collect::<Vec<_>>()
        .join(", ");
    let (noun, verb) = if missing.len() == 1 {
        ("generated column", "is")
    } else {
        ("generated columns", "are")
    };
    let why = if version_num < 180_000 {
        "pgoutput sends no generated columns before PostgreSQL 18".to_string()
    } else if missing.iter().all(|column| !column.stored) {
        "logical replication never sends virtual generated columns".to_string()
    } else {
        format!(
            "ALTER PUBLICATION {} SET (publish_generated_columns = stored) publishes stored ones",
            quote_ident(publication)
        )
    };
    Some(format!(
        "{noun} {names} {verb} not in the changes: {why} (polling reads them)"
    ))
}

/// The publication used when none is configured: `cdc_tui_<identifier>`, folded into the
/// characters PostgreSQL needs no quotes for, at most 63 bytes.
pub fn default_publication(identifier: &str) -> String {
    let mut name = String::from("cdc_tui_");
    for c in identifier.chars() {
        let c = c.to_ascii_lowercase();
        name.push(if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        });
    }
    name.truncate(63);
    name
}

/// Makes sure `publication` publishes the table; creates it when absent. True when this call
/// created it.
pub async fn ensure_publication(
    client: &Client,
    publication: &str,
    table: &TableName,
    info: &TableInfo,
    filter: &RowFilter,
    server: &Server,
    url: &DatabaseUrl,
) -> Result<bool, SourceError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1), \
                    EXISTS (SELECT 1 FROM pg_publication_tables \
                            WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
            &[&publication, &table.schema, &table.name],
        )
        .await
        .map_err(|error| classify(&error, url))?;
    let (exists, publishes): (bool, bool) = (row.get(0), row.get(1));
    let display = table.display_name();
    if exists {
        return if publishes {
            Ok(false)
        } else {
            Err(SourceError::permanent(format!(
                "publication {publication} exists but does not publish {display}: run \
                 ALTER PUBLICATION {publication} ADD TABLE {display}, or configure another \
                 publication"
            )))
        };
    }
    // Without a replica identity, a table in a publication refuses UPDATE and DELETE: never
    // break the application's writes by publishing it.
    let no_identity = match info.identity {
        ReplicaIdentity::Nothing => true,
        ReplicaIdentity::Default => info.primary_key.is_empty(),
        _ => false,
    };
    if no_identity {
        return Err(SourceError::permanent(format!(
            "table {display} has no primary key or replica identity: once published, UPDATE \
             and DELETE on it would fail; run ALTER TABLE {display} REPLICA IDENTITY FULL (or add \
             a primary key) first"
        )));
    }
    filter
        .check_safe(client, table, server.version_num, url)
        .await?;
    let sql = create_publication_for_sql(
        publication,
        std::slice::from_ref(table),
        filter,
        server.version_num,
    );
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(true),
        // Created by someone else in the meantime: use it.
        Err(error) if error.code() == Some(&SqlState::DUPLICATE_OBJECT) => Ok(false),
        Err(error) if error.as_db_error().is_some() => {
            let reason = classify(&error, url).message;
            Err(SourceError::permanent(format!(
                "cannot create publication {publication} for {display} ({reason}): as the \
                 table's owner run CREATE PUBLICATION {publication} FOR TABLE {display} and set \
                 publication = \"{publication}\""
            )))
        }
        Err(error) => Err(classify(&error, url)),
    }
}

/// `CREATE PUBLICATION … FOR TABLE …` with the options this server version has.
/// `CREATE PUBLICATION … FOR TABLE a, b …` with the options this server version has.
fn create_publication_for_sql(
    publication: &str,
    tables: &[TableName],
    filter: &RowFilter,
    version_num: i32,
) -> String {
    let mut options = Vec::new();
    if version_num >= 130_000 {
        // Changes of partitions are published as changes of the watched (root) table.
        options.push("publish_via_partition_root = true");
    }
    if version_num >= 180_000 {
        // Stored generated columns are sent only when asked for (virtual ones never are).
        options.push("publish_generated_columns = stored");
    }
    let listed: Vec<String> = tables
        .iter()
        .map(|table| filter.table_clause(table))
        .collect();
    let mut sql = format!(
        "CREATE PUBLICATION {} FOR TABLE {}",
        quote_ident(publication),
        listed.join(", ")
    );
    if !options.is_empty() {
        sql.push_str(&format!(" WITH ({})", options.join(", ")));
    }
    sql
}

/// A table of a scope that cdc-tui leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub table: TableName,
    pub why: &'static str,
}

/// Why a table of a scope can or cannot be published by this user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    Yes,
    No(&'static str),
}

/// Which of `tables` this user may add to a publication without breaking anyone's writes.
pub async fn eligibility(
    client: &Client,
    tables: &[TableName],
    url: &DatabaseUrl,
) -> Result<Vec<Eligibility>, SourceError> {
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let rows = client
        .query(
            "SELECT pg_has_role(c.relowner, 'USAGE') OR \
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
                    c.relreplident = 'f' OR c.relreplident = 'i' OR \
                    (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i \
                     WHERE i.indrelid = c.oid AND i.indisprimary)) \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(s, n, at) \
             LEFT JOIN pg_namespace ns ON ns.nspname = t.s \
             LEFT JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = t.n \
             ORDER BY t.at",
            &[&schemas, &names],
        )
        .await
        .map_err(|error| classify(&error, url))?;
    Ok(rows
        .iter()
        .map(|row| match (row.get::<_, Option<bool>>(0), row.get(1)) {
            (None, _) | (_, None) => Eligibility::No("it is gone"),
            (Some(false), _) => Eligibility::No("not its owner"),
            // Published, it would refuse its UPDATE and DELETE.
            (Some(true), Some(false)) => Eligibility::No(
                "no primary key or replica identity: publishing it would make its UPDATE and \
                 DELETE fail",
            ),
            (Some(true), Some(true)) => Eligibility::Yes,
        })
        .collect())
}

/// The publication of a scope: created `FOR TABLE` the tables of the scope this user may
/// publish (never one without a replica identity, whose UPDATE and DELETE would then fail; a
/// table created later is added as it appears), or an existing one used as it is. Returns
/// whether it was created and what was left out.
pub async fn ensure_scope_publication(
    client: &Client,
    publication: &str,
    scope: &Scope,
    tables: &[TableName],
    filter: &RowFilter,
    server: &Server,
    url: &DatabaseUrl,
) -> Result<(bool, Vec<Skipped>), SourceError> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&publication],
        )
        .await
        .map_err(|error| classify(&error, url))?
        .get(0);
    if exists {
        return Ok((false, Vec::new()));
    }
    let eligible = eligibility(client, tables, url).await?;
    let mut publish = Vec::new();
    let mut skipped = Vec::new();
    for (table, eligibility) in tables.iter().zip(eligible) {
        match eligibility {
            Eligibility::Yes => publish.push(table.clone()),
            Eligibility::No(why) => skipped.push(Skipped {
                table: table.clone(),
                why,
            }),
        }
    }
    if publish.is_empty() && !skipped.is_empty() {
        let listed: Vec<String> = tables
            .iter()
            .map(|table| filter.table_clause(table))
            .collect();
        return Err(SourceError::permanent(format!(
            "no table of {scope} can be published by {}: {}; as the tables' owner run \
             CREATE PUBLICATION {publication} FOR TABLE {} and set publication = \"{publication}\"",
            server.user,
            describe_skipped(&skipped),
            listed.join(", ")
        )));
    }
    for table in &publish {
        filter
            .check_safe(client, table, server.version_num, url)
            .await?;
    }
    // An empty scope still gets its publication: tables made later are added to it.
    let sql = if publish.is_empty() {
        format!("CREATE PUBLICATION {}", quote_ident(publication))
    } else {
        create_publication_for_sql(publication, &publish, filter, server.version_num)
    };
    match client.batch_execute(&sql).await {
        Ok(()) => Ok((true, skipped)),
        Err(error) if error.code() == Some(&SqlState::DUPLICATE_OBJECT) => Ok((false, skipped)),
        Err(error) if error.as_db_error().is_some() => Err(SourceError::permanent(format!(
            "cannot create publication {publication} for {scope} ({}): as the tables' owner \
             run {sql} and set publication = \"{publication}\"",
            classify(&error, url).message
        ))),
        Err(error) => Err(classify(&error, url)),
    }
}

/// Adds a table that joined the scope to the publication; the reason when it cannot be.
pub async fn add_to_publication(
    client: &Client,
    publication: &str,
    table: &TableName,
    filter: &RowFilter,
    version_num: i32,
    url: &DatabaseUrl,
) -> Result<(), String> {
    match eligibility(client, std::slice::from_ref(table), url).await {
        Ok(eligible) if eligible.first() == Some(&Eligibility::Yes) => {}
        Ok(eligible) => {
            return Err(match eligible.first() {
                Some(Eligibility::No(why)) => why.to_string(),
                _ => "it is gone".to_string(),
            });
        }
        Err(error) => return Err(error.message),
    }
    filter
        .check_safe(client, table, version_num, url)
        .await
        .map_err(|error| error.message)?;
    let sql = format!(
        "ALTER PUBLICATION {} ADD TABLE {}",
        quote_ident(publication),
        filter.table_clause(table)
    );
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(()),
        Err(error) if error.code() == Some(&SqlState::DUPLICATE_OBJECT) => Ok(()),
        Err(error) => Err(classify(&error, url).message),
    }
}

/// What an existing publication filters (PostgreSQL 15+), for the listener's detail: a row
/// filter turns an update that crosses it into an insert or a delete.
pub async fn existing_filters(
    client: &Client,
    publication: &str,
    server: &Server,
) -> Option<String> {
    if server.version_num < 150_000 {
        return None;
    }
    let rows = client
        .query(
            "SELECT format('%I.%I', p.schemaname, p.tablename), p.rowfilter, \
                    cardinality(p.attnames) < (SELECT count(*) FROM pg_attribute a \
                        JOIN pg_class c ON c.oid = a.attrelid \
                        JOIN pg_namespace n ON n.oid = c.relnamespace \
                        WHERE n.nspname = p.schemaname AND c.relname = p.tablename \
                          AND a.attnum > 0 AND NOT a.attisdropped) \
             FROM pg_publication_tables p WHERE p.pubname = $1 \
               AND (p.rowfilter IS NOT NULL OR p.attnames IS NOT NULL)",
            &[&publication],
        )
        .await
        .ok()?;
    let filtered: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let table: String = row.get(0);
            let rows: Option<String> = row.get(1);
            let columns: Option<bool> = row.get(2);
            match (rows, columns.unwrap_or(false)) {
                (Some(filter), true) => Some(format!("{table}: rows WHERE {filter}, some columns")),
                (Some(filter), false) => Some(format!("{table}: rows WHERE {filter}")),
                (None, true) => Some(format!("{table}: some columns")),
                (None, false) => None,
            }
        })
        .collect();
    (!filtered.is_empty()).then(|| {
        format!(
            "publication {publication} filters {} (an update that crosses a row filter \
             arrives as an insert or a delete)",
            filtered.join("; ")
        )
    })
}

/// `public.logs (not its owner), public.t (no primary key …)`.
pub fn describe_skipped(skipped: &[Skipped]) -> String {
    skipped
        .iter()
        .map(|skipped| format!("{} ({})", skipped.table.display_name(), skipped.why))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Drops a publication this listener created; failures are logged (it is then left behind).
pub async fn drop_publication(client: &Client, publication: &str) {
    let sql = format!("DROP PUBLICATION IF EXISTS {}", quote_ident(publication));
    match tokio::time::timeout(Duration::from_secs(2), client.batch_execute(&sql)).await {
        Ok(Ok(())) => tracing::debug!("dropped publication {publication}"),
        Ok(Err(error)) => {
            tracing::warn!("could not drop publication {publication}: {error}");
        }
        Err(_) => tracing::warn!("could not drop publication {publication}: timed out"),
    }
}

/// A persistent slot that exists already.
#[derive(Debug, Clone)]
pub struct ExistingSlot {
    pub confirmed_flush: u64,
}

/// Looks up a persistent slot: `None` when absent; an error when it cannot be used.
pub async fn find_slot(
    client: &Client,
    slot: &str,
    server: &Server,
    url: &DatabaseUrl,
) -> Result<Option<ExistingSlot>, SourceError> {
    let row = client
        .query_opt(
            "SELECT slot_type::text, plugin::text, database::text, temporary, active, active_pid, \
                    confirmed_flush_lsn::text, wal_status \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|error| classify(&error, url))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let slot_type: String = row.get(0);
    let plugin: Option<String> = row.get(1);
    let database: Option<String> = row.get(2);
    if slot_type != "logical" {
        return Err(SourceError::permanent(format!(
            "replication slot {slot} is a {slot_type} slot: configure another slot name"
        )));
    }
    if plugin.as_deref() != Some("pgoutput") || database.as_deref() != Some(&server.database) {
        return Err(SourceError::permanent(format!(
            "replication slot {slot} belongs to plugin {} on database {}, not pgoutput on {}: \
             configure another slot name",
            plugin.as_deref().unwrap_or("?"),
            database.as_deref().unwrap_or("?"),
            server.database
        )));
    }
    if row.get::<_, bool>(4) {
        let pid: Option<i32> = row.get(5);
        return Err(slot_in_use(slot, pid));
    }
    let wal_status: Option<String> = row.get(7);
    if wal_status.as_deref() == Some("lost") {
        return Err(SourceError::permanent(format!(
            "replication slot {slot} is invalidated (wal_status lost: the WAL it needed was \
             removed, see max_slot_wal_keep_size), so changes since it was last read are lost: \
             drop it with SELECT pg_drop_replication_slot('{slot}') to start over"
        )));
    }
    let confirmed: Option<String> = row.get(6);
    Ok(Some(ExistingSlot {
        confirmed_flush: confirmed.as_deref().and_then(parse_lsn).unwrap_or(0),
    }))
}

pub fn slot_in_use(slot: &str, pid: Option<i32>) -> SourceError {
    let holder = pid.map_or_else(String::new, |pid| format!(" (PID {pid})"));
    SourceError::transient(format!(
        "replication slot {slot} is in use by another process{holder}: waiting for it to be \
         released; stop the other consumer or configure another slot"
    ))
}

/// A slot's cost: the WAL it keeps from being removed.
#[derive(Debug, Clone)]
pub struct SlotUsage {
    pub retained_bytes: Option<i64>,
    pub wal_status: Option<String>,
    /// WAL written past the slot's confirmed position: how far behind the listener is.
    pub unconfirmed_bytes: Option<i64>,
    pub safe_wal_size: Option<i64>,
}

impl SlotUsage {
    /// `24.1 KiB WAL held by temporary slot s`: the WAL first, since it is what a user watches
    /// (and what fills a disk) and a listener row shows only the start of its detail;
    /// `wal_status` only when it is not the normal `reserved`.
    pub fn describe(&self, kind: &str, slot: &str) -> String {
        let held = self
            .retained_bytes
            // The server's LSN difference; never below 0 while the slot has a restart LSN.
            .map_or_else(
                || "no".to_string(),
                |bytes| units::bytes(bytes.max(0) as u64),
            );
        let status = match self.wal_status.as_deref() {
            Some("reserved") => String::new(),
            Some(status) => format!(" (wal_status {status})"),
            None => " (wal_status unknown)".to_string(),
        };
        format!("{held} WAL held by {kind} slot {slot}{status}")
    }

    pub fn lag(&self) -> crate::registry::ServerLag {
        crate::registry::ServerLag {
            bytes: self.unconfirmed_bytes.map(|bytes| bytes.max(0) as u64),
            wal_status: self.wal_status.clone(),
            safe_wal_size: self.safe_wal_size,
        }
    }
}

pub async fn slot_usage(client: &Client, slot: &str) -> Result<Option<SlotUsage>, String> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&slot];
    let query = client.query_opt(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8, wal_status, \
         pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8, safe_wal_size \
         FROM pg_replication_slots WHERE slot_name = $1",
        &params,
    );
    match tokio::time::timeout(Duration::from_secs(5), query).await {
        Ok(Ok(row)) => Ok(row.map(|row| SlotUsage {
            retained_bytes: row.get(0),
            wal_status: row.get(1),
            unconfirmed_bytes: row.get(2),
            safe_wal_size: row.get(3),
        })),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

/// `16/B374D848` → its 64-bit value.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    (high <= u64::from(u32::MAX) && low <= u64::from(u32::MAX)).then_some(high << 32 | low)
}

/// An LSN as PostgreSQL prints it: `0/16B3748`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_usage_reads_as_the_wal_held_first() {
        let usage = |bytes, status: Option<&str>| SlotUsage {
            retained_bytes: bytes,
            wal_status: status.map(str::to_string),
            unconfirmed_bytes: None,
            safe_wal_size: None,
        };
        assert_eq!(
            usage(Some(24_678), Some("reserved")).describe("temporary", "cdc_tui_orders_1"),
            "24.1 KiB WAL held by temporary slot cdc_tui_orders_1"
        );
        assert_eq!(
            usage(None, Some("extended")).describe("persistent", "s"),
            "no WAL held by persistent slot s (wal_status extended)"
        );
        assert_eq!(
            usage(Some(10), None).describe("persistent", "s"),
            "10 B WAL held by persistent slot s (wal_status unknown)"
        );
    }

    #[test]
    fn lsns_round_trip_in_postgres_spelling() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B_3748));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(parse_lsn("1/100000000"), None);
    }

    #[test]
    fn default_publication_names_need_no_quotes() {
        assert_eq!(default_publication("orders"), "cdc_tui_orders");
        assert_eq!(default_publication("My Orders-2"), "cdc_tui_my_orders_2");
        assert_eq!(default_publication(&"x".repeat(100)).len(), 63);
    }

    #[test]
    fn publications_ask_for_what_the_server_version_has() {
        let table = TableName::parse("public.orders").unwrap();
        let create_publication_sql = |publication: &str, table: &TableName, version: i32| {
            create_publication_for_sql(
                publication,
                std::slice::from_ref(table),
                &RowFilter::default(),
                version,
            )
        };
        assert_eq!(
            create_publication_sql("p", &table, 120_000),
            r#"CREATE PUBLICATION "p" FOR TABLE "public"."orders""#
        );
        assert_eq!(
            create_publication_sql("p", &table, 150_004),
            r#"CREATE PUBLICATION "p" FOR TABLE "public"."orders" WITH (publish_via_partition_root = true)"#
        );
        assert_eq!(
            create_publication_sql("p", &table, 180_000),
            r#"CREATE PUBLICATION "p" FOR TABLE "public"."orders" WITH (publish_via_partition_root = true, publish_generated_columns = stored)"#
        );
    }

    #[test]
    fn generated_columns_the_changes_lack_are_named_with_the_reason() {
        let stored = GeneratedColumn {
            name: "total".into(),
            stored: true,
        };
        let virtual_ = GeneratedColumn {
            name: "Tax Rate".into(),
            stored: false,
        };
        assert_eq!(generated_hint(&[], 150_000, "p"), None);
        assert_eq!(
            generated_hint(&[&stored], 150_000, "p").unwrap(),
            "generated column \"total\" is not in the changes: pgoutput sends no generated \
             columns before PostgreSQL 18 (polling reads them)"
        );
        assert_eq!(
            generated_hint(&[&stored, &virtual_], 180_000, "p").unwrap(),
            "generated columns \"total\", \"Tax Rate\" are not in the changes: ALTER \
             PUBLICATION \"p\" SET (publish_generated_columns = stored) publishes stored ones \
             (polling reads them)"
        );
        assert_eq!(
            generated_hint(&[&virtual_], 180_000, "p").unwrap(),
            "generated column \"Tax Rate\" is not in the changes: logical replication never \
             sends virtual generated columns (polling reads them)"
        );
    }
}

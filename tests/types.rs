//! Every value exactly as PostgreSQL prints it: a table of many types captured by logical
//! replication and by polling (the real binary, headless), compared value by value with two
//! renderings nobody here wrote: psql's (`--csv`, the type's output function) and wal2json's
//! (`pg_recvlogical -P wal2json` on a slot of its own, the same WAL decoded independently).
//! The only differences allowed are README's mapping ("Values keep their types").
//!
//! Also: generated columns, which PostgreSQL 15's pgoutput does not send (the logical
//! listener's detail says so) and polling reads.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use cdc_tui::config::ListenerConfig;
use cdc_tui::registry::ListenerState;
use serde_json::Value;
use support::in_process::InProcess;
use support::{DEADLINE, Headless, TestDb, drop_slot, eventually, wait_until};

/// The table's columns: name, type, and the values its rows hold (as SQL expressions; row `n`
/// takes the `n`th value, NULL where a column has fewer, and the last row is NULL throughout).
const COLUMNS: &[(&str, &str, &[&str])] = &[
    ("i2", "int2", &["-32768", "32767", "0"]),
    ("i4", "int4", &["-2147483648", "2147483647", "-1"]),
    (
        "i8",
        "int8",
        &["-9223372036854775808", "9223372036854775807", "0"],
    ),
    ("o", "oid", &["4294967295", "0"]),
    (
        "f4",
        "float4",
        &[
            "'3.4028235e38'",
            "'-1.17549435e-38'",
            "'1e-45'",
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "'-0'",
            "'0.1'",
        ],
    ),
    (
        "f8",
        "float8",
        &[
            "'1.7976931348623157e308'",
            "'5e-324'",
            "'-0'",
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "'0.1'",
            "'1e100'",
        ],
    ),
    (
        "num",
        "numeric",
        &[
            // 400 digits.
            "(repeat('9', 200) || '.' || repeat('1', 199) || '7')::numeric",
            "'NaN'",
            "'-' || repeat('1', 400)",
            "'0.000000000000000000000000000001'",
            "'Infinity'",
            "'-Infinity'",
            "'-0'",
        ],
    ),
    ("num_scaled", "numeric(12,4)", &["1.5", "-0.00005"]),
    (
        "cash",
        "money",
        &["'-92233720368547758.08'", "'1234.5'", "'0'"],
    ),
    ("ch", "char(5)", &["'ab'", "''", "'é'", "'abcde'"]),
    ("vc", "varchar(10)", &["'ab  '", "''", "' x'"]),
    (
        "t",
        "text",
        &[
            r#"E'tab\there\nnew line\r\b\f\u0001\u001f\u007f "quoted" \\ back é 中文 \U0001F980 zwj\u200d'"#,
            "''",
            "'NULL'",
            "' padded '",
        ],
    ),
    ("nm", "name", &["'pg_class'", "'Mixed Case'"]),
    ("b", "bool", &["true", "false"]),
    (
        "by",
        "bytea",
        &[r"'\x00ff10'", r"'\x'", "decode(repeat('5c27', 50), 'hex')"],
    ),
    (
        "d",
        "date",
        &[
            "'4713-01-01 BC'",
            "'5874897-12-31'",
            "'infinity'",
            "'-infinity'",
            "'2024-02-29'",
        ],
    ),
    (
        "tm",
        "time",
        &["'00:00'", "'24:00:00'", "'13:14:15.123456'"],
    ),
    (
        "ttz",
        "timetz",
        &["'00:00:00+15:59'", "'24:00:00-15:59'", "'12:00+05:30'"],
    ),
    (
        "ts",
        "timestamp",
        &[
            "'4713-01-01 00:00:00 BC'",
            "'294276-12-31 23:59:59.999999'",
            "'infinity'",
            "'-infinity'",
            "'2024-05-01 12:34:56.789'",
        ],
    ),
    (
        "tstz",
        "timestamptz",
        &[
            "'4713-01-01 00:00:00+00 BC'",
            "'294276-12-31 23:59:59.999999+00'",
            "'infinity'",
            "'-infinity'",
            "'2024-05-01 12:34:56.789+02'",
        ],
    ),
    (
        "iv",
        "interval",
        &[
            "'1 year 2 mons -3 days 04:05:06.789'",
            "'-178000000 years'",
            "'0'",
            "'P1Y2M3DT4H5M6S'",
        ],
    ),
    (
        "u",
        "uuid",
        &[
            "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
            "'00000000-0000-0000-0000-000000000000'",
        ],
    ),
    (
        "j",
        "json",
        &[
            r#"'{"b": [1, 2.5, {"c": null}], "a": "é \ud83e\udd80", "esc": "q\"\\/\b\f\n\r\t"}'"#,
            "'[]'",
            r#"'"str"'"#,
            "'null'",
            r#"'  { "spaced" :  1 , "dup": 1, "dup": 2 }  '"#,
            "'12345678901234567890'",
            "'-0'",
        ],
    ),
    (
        "jb",
        "jsonb",
        &[
            r#"'{"b": [1, 2.5, {"c": null}], "a": "é \ud83e\udd80", "esc": "q\"\\/\b\f\n\r\t"}'"#,
            "'{}'",
            r#"'"str"'"#,
            "'null'",
            r#"'{"dup": 1, "dup": 2}'"#,
            "'1.5e3'",
            "'[true, false, null, -0.25]'",
        ],
    ),
    ("a1", "int[]", &["'{1,NULL,3}'", "'{}'", "'[0:1]={1,2}'"]),
    (
        "a2",
        "text[]",
        &[r#"'{{"a b","c\"d"},{NULL,"NULL"}}'"#, r#"'{"",",","\\"}'"#],
    ),
    (
        "ip",
        "inet",
        &[
            "'::ffff:1.2.3.4'",
            "'192.168.0.1/24'",
            "'10.0.0.1'",
            "'2001:db8::1/64'",
        ],
    ),
    (
        "net",
        "cidr",
        &["'10.0.0.0/8'", "'::ffff:1.2.3.0/120'", "'192.168.1'"],
    ),
    (
        "mac",
        "macaddr",
        &["'08:00:2B:01:02:03'", "'0800.2b01.0204'"],
    ),
    ("pt", "point", &["'(1.5,-2)'", "'(NaN,Infinity)'"]),
    (
        "tsv",
        "tsvector",
        &["'a fat cat:1A sat on a mat'", "''", r"$$'it''s' \\ x$$"],
    ),
    ("feeling", "mood", &["'happy'", r#"'it''s "fine"'"#]),
    ("dom", "positive", &["1", "2147483647"]),
    (
        "comp",
        "pair",
        &[r#"'("a ""b"" c",1)'"#, "'(,)'", "ROW('', NULL)"],
    ),
    // Over 1 MB of md5 hex, which does not compress: stored out of line (TOASTed).
    (
        "big",
        "text",
        &["(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 35000) g)"],
    ),
];

/// Generated columns: (name, definition). pgoutput does not send them before PostgreSQL 18.
const GENERATED: &[(&str, &str)] = &[("doubled", "int8 GENERATED ALWAYS AS (i2 * 2) STORED")];

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'happy', 'it''s "fine"');
CREATE DOMAIN positive AS int4 CHECK (VALUE > 0);
CREATE TYPE pair AS (label text, n int);
"#;

/// Rows: every value of [`COLUMNS`] once, and a row of NULLs.
fn rows() -> usize {
    COLUMNS
        .iter()
        .map(|(_, _, values)| values.len())
        .max()
        .unwrap_or(0)
        + 1
}

fn create_table_sql() -> String {
    let mut sql = String::from(SCHEMA);
    sql.push_str("CREATE TABLE types (id int PRIMARY KEY, seq bigint NOT NULL");
    for (name, kind, _) in COLUMNS {
        sql.push_str(&format!(", {name} {kind}"));
    }
    for (name, definition) in GENERATED {
        sql.push_str(&format!(", {name} {definition}"));
    }
    sql.push_str(");");
    sql
}

fn insert_sql() -> String {
    let mut sql = String::from("INSERT INTO types (id, seq");
    for (name, _, _) in COLUMNS {
        sql.push_str(&format!(", {name}"));
    }
    sql.push_str(") VALUES ");
    for row in 0..rows() {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("({id}, {id}", id = row + 1));
        for (_, kind, values) in COLUMNS {
            let value = values.get(row).copied().unwrap_or("NULL");
            sql.push_str(&format!(", ({value})::{kind}"));
        }
        sql.push(')');
    }
    sql
}

/// Type OIDs README's mapping tells apart (`pg_type.oid`).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const NUMERIC: u32 = 1700;
    pub const JSONB: u32 = 3802;
}

/// README's mapping ("Values keep their types") of what PostgreSQL printed for a value of type
/// `type_oid` (`None`: SQL NULL) to cdc-tui's JSON: does `ours` (as cdc-tui wrote it) follow
/// it?
fn check_documented(ours: &Raw, type_oid: u32, printed: Option<&str>) -> Result<(), String> {
    let Some(text) = printed else {
        return match ours {
            Raw::Null => Ok(()),
            _ => Err("NULL is not null".into()),
        };
    };
    let follows = match type_oid {
        // A JSON number of the digits PostgreSQL printed.
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => {
            matches!(ours, Raw::Number(digits) if digits == text)
        }
        // NaN and ±Infinity have no JSON number: strings as printed. Anything else is the
        // number PostgreSQL printed, in serde_json's spelling (100 is 100.0, -0 is -0.0): the
        // same float, sign of zero included (read with Rust's exact parser).
        oid::FLOAT4 | oid::FLOAT8 => match text {
            "NaN" | "Infinity" | "-Infinity" => ours.as_str() == Some(text),
            _ => matches!(ours, Raw::Number(number) if same_float(number, text)),
        },
        oid::BOOL => matches!(
            (text, ours),
            ("t", Raw::Bool(true)) | ("f", Raw::Bool(false))
        ),
        // Embedded JSON. Compared normalised (both parsed into serde_json values): exact json
        // numbers and duplicate keys are issue #13's point 1, not this test's; a json `null`
        // is `null` here as SQL NULL is.
        oid::JSON | oid::JSONB => {
            let theirs = serde_json::from_str::<Value>(text).expect("PostgreSQL's JSON");
            serde_json::from_str::<Value>(&ours.to_json()).ok() == Some(theirs)
        }
        // Everything else: the string PostgreSQL printed, byte for byte.
        _ => ours.as_str() == Some(text),
    };
    if follows {
        Ok(())
    } else {
        Err(format!("PostgreSQL printed {}", short(text)))
    }
}

/// wal2json's own rendering (format-version 2) of what PostgreSQL printed: numbers bare (NaN
/// and ±Infinity as null), booleans as JSON booleans, bytea as hex without `\x`, everything
/// else as a JSON string of the output text.
fn check_wal2json(theirs: &Raw, type_oid: u32, printed: Option<&str>) -> Result<(), String> {
    let number = matches!(
        type_oid,
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID | oid::FLOAT4 | oid::FLOAT8 | oid::NUMERIC
    );
    let agrees = match (printed, theirs) {
        (None, Raw::Null) => true,
        (Some("NaN" | "Infinity" | "-Infinity"), Raw::Null) => number,
        (Some(text), Raw::Number(raw)) => number && raw == text,
        (Some(text), Raw::Bool(value)) => {
            type_oid == oid::BOOL && text == ["f", "t"][*value as usize]
        }
        (Some(text), Raw::String(hex)) if type_oid == oid::BYTEA => format!("\\x{hex}") == text,
        (Some(text), Raw::String(string)) => !number && string == text,
        _ => false,
    };
    if agrees {
        Ok(())
    } else {
        Err(format!(
            "wal2json wrote {}, psql printed {}",
            short(&format!("{theirs:?}")),
            printed.map_or("NULL".into(), short)
        ))
    }
}

/// Two spellings of one float: the same bits.
fn same_float(ours: &str, printed: &str) -> bool {
    match (ours.parse::<f64>(), printed.parse::<f64>()) {
        (Ok(ours), Ok(printed)) => ours.to_bits() == printed.to_bits(),
        _ => false,
    }
}

/// A long value's start, for messages.
fn short(text: &str) -> String {
    if text.len() <= 200 {
        format!("{text:?}")
    } else {
        let end = (0..=200)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        format!("{:?}… ({} bytes)", &text[..end], text.len())
    }
}

/// The server's client programs (`psql`, `pg_recvlogical`): those next to the server the tests
/// run, so they are of its version.
fn client_program(name: &str) -> PathBuf {
    pgcluster::find_server_bindir()
        .expect("PostgreSQL's binaries")
        .join(name)
}

/// A client program with the environment that could change how values print taken away.
fn client_command(name: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(client_program(name));
    command
        .env("PGCLIENTENCODING", "UTF8")
        .env_remove("PGTZ")
        .env_remove("PGDATESTYLE")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn output_of(mut command: tokio::process::Command, what: &str) -> String {
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} within {DEADLINE:?}"))
        .unwrap_or_else(|error| panic!("run {what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// psql's rendering of the table: column names, and per id the printed values (None: NULL).
async fn psql_rows(url: &str) -> (Vec<String>, BTreeMap<i64, Vec<Option<String>>>) {
    let mut command = client_command("psql");
    command.args([
        "-X",
        "-q",
        "--csv",
        "-P",
        &format!("null={PSQL_NULL}"),
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        url,
        "-c",
        "SELECT * FROM types ORDER BY id",
    ]);
    let mut records = parse_csv(&output_of(command, "psql").await).into_iter();
    let header = records.next().expect("psql's header");
    let names: Vec<String> = header
        .into_iter()
        .map(|name| name.expect("a name"))
        .collect();
    let rows = records
        .map(|record| {
            assert_eq!(record.len(), names.len(), "a whole record");
            let id = record[0].as_deref().expect("id").parse().expect("an id");
            (id, record)
        })
        .collect();
    (names, rows)
}

/// What psql prints for NULL here (its `--csv` prints NULL and the empty string alike,
/// unless told otherwise); no value of the table is this.
const PSQL_NULL: &str = "\u{2400}NULL\u{2400}";

/// psql's `--csv` records: a field holding a comma, a quote or a line break is quoted (quotes
/// doubled); [`PSQL_NULL`] is NULL.
fn parse_csv(text: &str) -> Vec<Vec<Option<String>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let field = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next().expect("a closed quote") {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        value.push('"');
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
            Some(value)
        } else {
            let mut value = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' || c == '\n' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            (value != PSQL_NULL).then_some(value)
        };
        record.push(field);
        match chars.next() {
            Some(',') => {}
            Some('\n') | None => records.push(std::mem::take(&mut record)),
            Some(c) => panic!("{c:?} after a CSV field"),
        }
    }
    records
}

/// JSON as written, numbers kept as their text: wal2json writes the output text of number
/// types as bare JSON numbers (numeric's 400 digits too), which parsing into f64 would round.
#[derive(Debug, Clone, PartialEq)]
enum Raw {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Raw>),
    Object(Vec<(String, Raw)>),
}

impl Raw {
    fn parse(text: &str) -> Raw {
        let mut parser = RawParser { text, at: 0 };
        let value = parser.value();
        parser.skip_space();
        assert_eq!(parser.at, text.len(), "one JSON value: {}", short(text));
        value
    }

    fn get(&self, key: &str) -> Option<&Raw> {
        match self {
            Raw::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Raw::String(text) => Some(text),
            _ => None,
        }
    }

    /// The value as JSON text again, numbers as they were written.
    fn to_json(&self) -> String {
        let join = |items: Vec<String>| items.join(",");
        match self {
            Raw::Null => "null".into(),
            Raw::Bool(value) => value.to_string(),
            Raw::Number(number) => number.clone(),
            Raw::String(text) => Value::from(text.as_str()).to_string(),
            Raw::Array(items) => format!("[{}]", join(items.iter().map(Raw::to_json).collect())),
            Raw::Object(members) => format!(
                "{{{}}}",
                join(
                    (members.iter())
                        .map(|(key, value)| format!(
                            "{}:{}",
                            Value::from(key.as_str()),
                            value.to_json()
                        ))
                        .collect()
                )
            ),
        }
    }
}

struct RawParser<'a> {
    text: &'a str,
    at: usize,
}

impl RawParser<'_> {
    fn skip_space(&mut self) {
        while self.text[self.at..].starts_with([' ', '\t', '\n', '\r']) {
            self.at += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let found = self.text[self.at..].starts_with(token);
        if found {
            self.at += token.len();
        }
        found
    }

    fn value(&mut self) -> Raw {
        self.skip_space();
        let text = self.text;
        let rest = &text[self.at..];
        if self.eat("{") {
            let mut members = Vec::new();
            if !self.eat("}") {
                loop {
                    self.skip_space();
                    let Raw::String(key) = self.string() else {
                        unreachable!()
                    };
                    assert!(self.eat(":"), "a colon at {}", self.at);
                    members.push((key, self.value()));
                    if self.eat("}") {
                        break;
                    }
                    assert!(self.eat(","), "a comma at {}", self.at);
                }
            }
            Raw::Object(members)
        } else if self.eat("[") {
            let mut items = Vec::new();
            if !self.eat("]") {
                loop {
                    items.push(self.value());
                    if self.eat("]") {
                        break;
                    }
                    assert!(self.eat(","), "a comma at {}", self.at);
                }
            }
            Raw::Array(items)
        } else if rest.starts_with('"') {
            self.string()
        } else if self.eat("null") {
            Raw::Null
        } else if self.eat("true") {
            Raw::Bool(true)
        } else if self.eat("false") {
            Raw::Bool(false)
        } else {
            let len = rest
                .find(|c: char| !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E'))
                .unwrap_or(rest.len());
            assert!(len > 0, "a JSON value at {}: {}", self.at, short(rest));
            self.at += len;
            Raw::Number(rest[..len].to_string())
        }
    }

    /// A string token runs to the first quote that is not escaped; serde_json decodes it.
    fn string(&mut self) -> Raw {
        let text = self.text;
        let rest = &text[self.at..];
        let mut escaped = false;
        let end = (rest.char_indices().skip(1))
            .find(|&(_, c)| {
                let closes = !escaped && c == '"';
                escaped = !escaped && c == '\\';
                closes
            })
            .map(|(at, _)| at)
            .expect("a closed string");
        self.at += end + 1;
        Raw::String(serde_json::from_str(&rest[..=end]).expect("a JSON string"))
    }
}

/// One inserted row as wal2json decoded it: (name, type OID, value) per column.
type Wal2JsonRow = Vec<(String, u32, Raw)>;

/// The inserts into `types` that wal2json decodes from `slot` up to `end_lsn`, by id.
async fn wal2json_rows(url: &str, slot: &str, end_lsn: &str) -> BTreeMap<i64, Wal2JsonRow> {
    let mut command = client_command("pg_recvlogical");
    command.args(["-d", url, "--slot", slot, "--start", "--endpos", end_lsn]);
    command.args(["--no-loop", "-f", "-"]);
    for option in [
        "format-version=2",
        "include-type-oids=1",
        "include-transaction=0",
    ] {
        command.args(["-o", option]);
    }
    let output = output_of(command, "pg_recvlogical -P wal2json").await;
    let mut rows = BTreeMap::new();
    for line in output.lines().filter(|line| !line.is_empty()) {
        let change = Raw::parse(line);
        if change.get("action").and_then(Raw::as_str) != Some("I")
            || change.get("table").and_then(Raw::as_str) != Some("types")
        {
            continue;
        }
        let Some(Raw::Array(columns)) = change.get("columns") else {
            panic!("wal2json columns: {}", short(line));
        };
        let columns: Wal2JsonRow = columns
            .iter()
            .map(|column| {
                let name = column.get("name").and_then(Raw::as_str).expect("name");
                let Some(Raw::Number(type_oid)) = column.get("typeoid") else {
                    panic!("typeoid of {name}");
                };
                let value = column.get("value").expect("value").clone();
                (name.to_string(), type_oid.parse().expect("an oid"), value)
            })
            .collect();
        let Some((_, _, Raw::Number(id))) = columns.iter().find(|(name, _, _)| name == "id") else {
            panic!("no id in {}", short(line));
        };
        rows.insert(id.parse().expect("an id"), columns);
    }
    rows
}

/// The inserts `listener` printed so far.
fn inserts(seen: &[Value], listener: &str) -> usize {
    (seen.iter())
        .filter(|line| {
            line["type"] == "change" && line["listener"] == listener && line["op"] == "insert"
        })
        .count()
}

/// One row as cdc-tui wrote it: (column, value) in the order written.
type OurRow = Vec<(String, Raw)>;

/// The `after` of each insert of each listener in the jsonl sink's file (the same lines as
/// stdout, read here as written: [`Raw`] keeps each number's digits), by listener and id.
fn written_rows(path: &std::path::Path) -> BTreeMap<String, BTreeMap<i64, OurRow>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut rows: BTreeMap<String, BTreeMap<i64, OurRow>> = BTreeMap::new();
    // A line still being written has no newline yet.
    for line in text
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
    {
        let change = Raw::parse(line);
        if change.get("type").and_then(Raw::as_str) != Some("change")
            || change.get("op").and_then(Raw::as_str) != Some("insert")
        {
            continue;
        }
        let listener = change
            .get("listener")
            .and_then(Raw::as_str)
            .expect("listener");
        let Some(Raw::Object(key)) = change.get("key") else {
            panic!("a key: {}", short(line));
        };
        let [(name, Raw::Number(id))] = key.as_slice() else {
            panic!("the key is the id: {}", short(line));
        };
        assert_eq!(name, "id");
        let Some(Raw::Object(after)) = change.get("after") else {
            panic!("an after: {}", short(line));
        };
        rows.entry(listener.to_string())
            .or_default()
            .insert(id.parse().expect("an id"), after.clone());
    }
    rows
}

const LOGICAL: &str = "logical/public.types";
const POLLING: &str = "polling/public.types";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_prints_what_postgres_prints_by_logical_and_by_polling() {
    let db = TestDb::new("types_all").await;
    let client = db.client().await;
    client
        .batch_execute(&create_table_sql())
        .await
        .expect("create the table");
    // wal2json's own slot, made before the rows: it decodes the same WAL as cdc-tui.
    const SLOT: &str = "types_wal2json";
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'wal2json')",
            &[&SLOT],
        )
        .await
        .expect(
            "a wal2json slot: the server needs the wal2json plugin (Debian: apt-get install \
             postgresql-15-wal2json; .ci/run installs it)",
        );

    let config = format!(
        r#"
[pipeline]
chunk_size = 100
timeout_ms = 50

[sinks]
jsonl = "changes.jsonl"

[[database]]
name = "db"
kind = "postgres"
url = "{url}"

[[listener]]
identifier = "logical"
database = "db"
table = "public.types"
strategy = "logical"

[[listener]]
identifier = "polling"
database = "db"
table = "public.types"
strategy = "polling"
cursor_column = "seq"
interval_ms = 100
"#,
        url = db.url
    );
    let mut cdc = Headless::start(&config).await;
    cdc.wait_for_state(LOGICAL, "running").await;
    // Polling runs once its first poll fixed the baseline: the rows below are new to it.
    cdc.wait_for_state(POLLING, "running").await;

    // Committed synchronously (the cluster runs with synchronous_commit = off): the WAL is
    // flushed through the commit, so wal2json can be read up to the flush position.
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL synchronous_commit = on; {}; COMMIT;",
            insert_sql()
        ))
        .await
        .expect("insert");
    let end_lsn: String = client
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .expect("the WAL position")
        .get(0);
    let count = rows();
    cdc.wait_for(&format!("{count} inserts of each listener"), |seen| {
        inserts(seen, LOGICAL) >= count && inserts(seen, POLLING) >= count
    })
    .await;
    let file = cdc.path().join("changes.jsonl");
    let mut written = eventually("the inserts in the jsonl file", async || {
        let rows = written_rows(&file);
        let counts = [LOGICAL, POLLING].map(|listener| rows.get(listener).map_or(0, BTreeMap::len));
        if counts == [count, count] {
            Ok(rows)
        } else {
            Err(format!("{counts:?} inserts"))
        }
    })
    .await;
    let logical = written.remove(LOGICAL).expect("logical's rows");
    let polling = written.remove(POLLING).expect("polling's rows");

    let (names, printed) = psql_rows(&db.url).await;
    let decoded = wal2json_rows(&db.url, SLOT, &end_lsn).await;
    let ids: Vec<i64> = (1..=count as i64).collect();
    for (what, rows) in [
        ("psql", printed.keys().copied().collect::<Vec<_>>()),
        ("wal2json", decoded.keys().copied().collect()),
        ("logical", logical.keys().copied().collect()),
        ("polling", polling.keys().copied().collect()),
    ] {
        assert_eq!(rows, ids, "{what}'s rows");
    }
    let generated: Vec<&str> = GENERATED.iter().map(|(name, _)| *name).collect();

    let mut differences = Vec::new();
    let mut compared = 0;
    for id in &ids {
        let printed = &printed[id];
        let decoded = &decoded[id];
        let decoded_names: Vec<&str> = decoded.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(decoded_names, names, "wal2json's columns are psql's");
        // Polling reads every column; pgoutput (PostgreSQL 15) sends no generated ones.
        let polling_names: Vec<&str> = polling[id].iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(polling_names, names, "polling's columns, row {id}");
        let logical_names: Vec<&str> = logical[id].iter().map(|(name, _)| name.as_str()).collect();
        let sent: Vec<&String> = (names.iter())
            .filter(|name| !generated.contains(&name.as_str()))
            .collect();
        assert_eq!(logical_names, sent, "logical's columns, row {id}");

        for ((name, text), (_, type_oid, theirs)) in names.iter().zip(printed).zip(decoded) {
            let text = text.as_deref();
            let mut check = |source: &str, result: Result<(), String>| {
                compared += 1;
                if let Err(error) = result {
                    differences.push(format!("row {id} {name} ({source}): {error}"));
                }
            };
            check("wal2json", check_wal2json(theirs, *type_oid, text));
            for (source, rows) in [("polling", &polling), ("logical", &logical)] {
                let Some((_, ours)) = rows[id].iter().find(|(column, _)| column == name) else {
                    continue;
                };
                let result = check_documented(ours, *type_oid, text).map_err(|error| {
                    format!("cdc-tui printed {}; {error}", short(&ours.to_json()))
                });
                check(source, result);
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {compared} values differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    // The test covers what it says: the TOASTed value, char padding, inet without a mask, a
    // generated column, floats in JSON's spelling.
    let value = |rows: &BTreeMap<i64, OurRow>, id: i64, name: &str| {
        let (_, value) = (rows[&id].iter().find(|(column, _)| column == name))
            .unwrap_or_else(|| panic!("{name} in row {id}"));
        value.to_json()
    };
    assert!(value(&polling, 1, "big").len() > 1_000_000);
    for rows in [&polling, &logical] {
        assert_eq!(value(rows, 1, "ch"), r#""ab   ""#);
        assert_eq!(value(rows, 1, "ip"), r#""::ffff:1.2.3.4""#);
        assert_eq!(value(rows, 1, "f8"), "1.7976931348623157e+308");
        assert_eq!(value(rows, 3, "f8"), "-0.0");
        assert_eq!(value(rows, 4, "f8"), r#""NaN""#);
    }
    assert_eq!(value(&polling, 1, "doubled"), "-65536");

    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    drop_slot(&client, SLOT).await;
}

/// In-process, to read the listener's detail (headless prints no detail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logical_notes_the_generated_columns_its_changes_lack() {
    let db = TestDb::new("types_generated").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE priced (id int PRIMARY KEY, net numeric NOT NULL, \
                                  total numeric GENERATED ALWAYS AS (net * 2) STORED)",
        )
        .await
        .expect("create the table");
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .expect("the version")
        .get(0);

    let mut run = InProcess::new();
    let handle = run.start(
        ListenerConfig::new("priced", "db", "public.priced", "logical"),
        "postgres",
        &db.url,
    );
    wait_until("running", || handle.state() == ListenerState::Running).await;

    let note = "generated column \"total\" is not in the changes: pgoutput sends no generated \
                columns before PostgreSQL 18 (polling reads them)";
    let detail = || handle.snapshot().detail.unwrap_or_default();
    // PostgreSQL 18+ is asked for stored generated columns: there is nothing to note.
    let sent = version >= 180_000;
    assert_eq!(
        detail().contains(note),
        !sent,
        "before any change: {}",
        detail()
    );

    client
        .batch_execute("INSERT INTO priced VALUES (1, 2.5)")
        .await
        .expect("insert");
    let after = eventually("the insert", async || match run.lines().first() {
        Some(line) => Ok(line["after"].clone()),
        None => Err("no change yet"),
    })
    .await;
    let mut expected = serde_json::json!({"id": 1, "net": "2.5"});
    if sent {
        expected["total"] = "5.0".into();
    }
    assert_eq!(after, expected);
    // The Relation message has come, saying which columns the stream sends: the same note.
    assert_eq!(
        detail().contains(note),
        !sent,
        "after a change: {}",
        detail()
    );

    run.finish().await;
}

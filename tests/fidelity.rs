//! Values exactly as the database holds them, checked against PostgreSQL's own output
//! functions: json and jsonb embedded as written, and the old key of a key-changing update.

mod support;

use serde_json::{Value, json};
use support::{Headless, TestDb, eventually};

fn config(db: &TestDb, listeners: &str) -> String {
    format!(
        "[pipeline]\nchunk_size = 100\ntimeout_ms = 20\n\n[sinks]\njsonl = \"events.jsonl\"\n\n\
         [[database]]\nname = \"db\"\nkind = \"postgres\"\nurl = \"{}\"\n\n{listeners}",
        db.url
    )
}

fn logical(identifier: &str, table: &str) -> String {
    format!(
        "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"db\"\ntable = \"{table}\"\n\
         strategy = \"logical\"\n\n"
    )
}

/// The lines of the jsonl sink as written (not parsed: parsing would round the numbers this
/// file is about), once it holds `count` change lines.
async fn written_lines(cdc: &Headless, count: usize) -> Vec<String> {
    let path = cdc.path().join("events.jsonl");
    eventually("the jsonl sink's change lines", async || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // The sink also holds transaction lines: count the changes.
        let lines: Vec<String> = (text.lines())
            .filter(|line| line.starts_with(r#"{"type":"change""#))
            .map(str::to_string)
            .collect();
        if lines.len() >= count {
            Ok(lines)
        } else {
            Err(format!("{} of {count} lines", lines.len()))
        }
    })
    .await
}

#[tokio::test]
async fn json_and_jsonb_arrive_exactly_as_postgresql_prints_them() {
    let db = TestDb::new("fidelity_json").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE docs (id int PRIMARY KEY, j json, b jsonb, \
             at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        .await
        .unwrap();
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let values = [
        "123456789012345678901234567890".to_string(),
        "0.1000000000000000000001".to_string(),
        r#"{"a": 1, "a": 2, "z": 0, "b": 1}"#.to_string(),
        deep,
        r#"{"big": 1e400, "neg": -0.0, "text": "tab\there \u00e9"}"#.to_string(),
        "null".to_string(),
    ];
    let polling = "[[listener]]\nidentifier = \"polled\"\ndatabase = \"db\"\ntable = \"public.docs\"\n\
                   strategy = \"polling\"\ncursor_column = \"at\"\ninterval_ms = 50\n\n";
    let listeners = logical("docs", "public.docs") + polling;
    let mut cdc = Headless::start(&config(&db, &listeners)).await;
    cdc.wait_for_state("docs/public.docs", "running").await;
    cdc.wait_for_state("polled/public.docs", "running").await;
    for (id, value) in values.iter().enumerate() {
        client
            .execute(
                "INSERT INTO docs (id, j, b) VALUES ($1, $2::text::json, $2::text::jsonb)",
                &[&(id as i32), value],
            )
            .await
            .unwrap();
    }
    client
        .execute("INSERT INTO docs (id) VALUES (99)", &[])
        .await
        .unwrap();
    let lines = written_lines(&cdc, 2 * (values.len() + 1)).await;
    // PostgreSQL's own output functions (json_out keeps the input; jsonb_out normalizes).
    let printed = client
        .query("SELECT id, j::text, b::text FROM docs ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(printed.len(), values.len() + 1);
    let line_of = |listener: &str, id: i32| {
        lines
            .iter()
            .find(|line| {
                line.contains(&format!(r#""listener":"{listener}""#))
                    && line.contains(&format!(r#""after":{{"id":{id},"#))
            })
            .unwrap_or_else(|| panic!("no change line of {listener} for id {id}: {lines:#?}"))
    };
    for listener in ["docs/public.docs", "polled/public.docs"] {
        for row in &printed {
            let id: i32 = row.get(0);
            let (j, b): (Option<String>, Option<String>) = (row.get(1), row.get(2));
            let expected = format!(
                r#""after":{{"id":{id},"j":{},"b":{},"at":"#,
                j.as_deref().unwrap_or("null"),
                b.as_deref().unwrap_or("null")
            );
            let line = line_of(listener, id);
            assert!(
                line.contains(&expected),
                "{listener} id {id}: expected {expected} in {line}"
            );
        }
        // json keeps its duplicate keys and their order; jsonb keeps the last one, sorted.
        let line = line_of(listener, 2);
        assert!(
            line.contains(r#""j":{"a": 1, "a": 2, "z": 0, "b": 1}"#),
            "{line}"
        );
        assert!(line.contains(r#""b":{"a": 2, "b": 1, "z": 0}"#), "{line}");
    }
    // A json `null` and SQL NULL both print `null`, as README says.
    cdc.wait_for("every insert on stdout", |seen| {
        let printed = |kind: &str| seen.iter().filter(|line| line["type"] == kind).count();
        printed("change") + printed("beyond_serde_json") == 2 * (values.len() + 1)
    })
    .await;
    let nulls: Vec<&Value> = cdc
        .changes()
        .into_iter()
        .filter(|change| change["after"]["id"] == json!(5) || change["after"]["id"] == json!(99))
        .collect();
    assert_eq!(nulls.len(), 4);
    assert!(nulls.iter().all(|change| change["after"]["j"].is_null()));
}

#[tokio::test]
async fn a_key_changing_update_carries_the_old_key_under_default_and_full_identity() {
    let db = TestDb::new("fidelity_old_key").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE plain (id int PRIMARY KEY, note text);
             CREATE TABLE full_rows (id int PRIMARY KEY, note text);
             ALTER TABLE full_rows REPLICA IDENTITY FULL;",
        )
        .await
        .unwrap();
    let listeners = logical("plain", "public.plain") + &logical("full", "public.full_rows");
    let mut cdc = Headless::start(&config(&db, &listeners)).await;
    cdc.wait_for_state("plain/public.plain", "running").await;
    cdc.wait_for_state("full/public.full_rows", "running").await;
    for table in ["plain", "full_rows"] {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} VALUES (1, 'a');
                 UPDATE {table} SET id = 100 WHERE id = 1;
                 UPDATE {table} SET note = 'b' WHERE id = 100;"
            ))
            .await
            .unwrap();
    }
    cdc.wait_for_ops("both tables' updates", &[("update", 4)])
        .await;
    for listener in ["plain/public.plain", "full/public.full_rows"] {
        let updates: Vec<&Value> = cdc
            .changes()
            .into_iter()
            .filter(|change| change["listener"] == listener && change["op"] == "update")
            .collect();
        assert_eq!(updates.len(), 2, "{listener}: {updates:#?}");
        assert_eq!(updates[0]["key"], json!({"id": 100}), "{listener}");
        assert_eq!(updates[0]["old_key"], json!({"id": 1}), "{listener}");
        assert_eq!(
            updates[1].get("old_key"),
            None,
            "{listener}: the key did not change"
        );
    }
}

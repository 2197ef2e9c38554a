//! The `jsonl` kind's `follow` under the contract: the "database" is a JSON-lines file that
//! another capture writes (this harness writes its change lines, as `cdc-tui --headless` would
//! print them); a server that is down is a file not made yet.

use std::io::Write as _;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use super::recorded::{COMMIT_TIME, RecordedChanges, TABLE};
use super::{Harness, Server, Traits};

pub struct Follow {
    dir: tempfile::TempDir,
    path: PathBuf,
    /// The position written into the next line, as a capture numbers its changes.
    next_position: AtomicU64,
    recorded: RecordedChanges,
}

impl Follow {
    /// Appends change lines in one write, as a sink writes a batch.
    fn append(&self, changes: impl Iterator<Item = (&'static str, i64)>) {
        let mut text = String::new();
        for (op, id) in changes {
            let position = self.next_position.fetch_add(1, Ordering::Relaxed);
            let line = self.recorded.line(op, id, position.to_string());
            text.push_str(&line.to_string());
            text.push('\n');
            // A capture's other lines are passed over.
            text.push_str(r#"{"type":"flush","batch":1,"changes":1}"#);
            text.push('\n');
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .expect("append to the file");
    }
}

impl Harness for Follow {
    async fn start(test: &str, server: Server) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(format!("{test}.jsonl"));
        let follow = Follow {
            dir,
            path,
            next_position: AtomicU64::new(1),
            recorded: RecordedChanges::default(),
        };
        if server == Server::Up {
            std::fs::write(&follow.path, "").expect("create the file");
        }
        follow
    }

    async fn up(&mut self) {
        std::fs::write(&self.path, "").expect("create the file");
    }

    fn unreachable(&self) -> (String, &'static str) {
        (self.path.display().to_string(), "No such file")
    }

    fn config(&self, listeners: &[(&str, &str)]) -> String {
        let mut config = format!(
            "[[database]]\nname = \"file\"\nkind = \"jsonl\"\nurl = \"file://{}\"\n\n",
            self.path.display()
        );
        for (identifier, table) in listeners {
            config.push_str(&format!(
                "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"file\"\n\
                 table = \"{table}\"\nstrategy = \"follow\"\ninterval_ms = 20\n\n"
            ));
        }
        config
    }

    fn table(&self) -> String {
        TABLE.to_string()
    }

    fn bad_table(&self) -> Option<(String, &'static str)> {
        None
    }

    async fn insert(&self, ids: RangeInclusive<i64>) {
        self.append(ids.map(|id| ("insert", id)));
    }

    async fn update(&self, id: i64) {
        self.append(std::iter::once(("update", id)));
    }

    async fn delete(&self, id: i64) {
        self.append(std::iter::once(("delete", id)));
    }

    fn key(&self, id: i64) -> Value {
        super::recorded::key(id)
    }

    fn row(&self, id: i64, updated: bool) -> Value {
        super::recorded::row(id, updated)
    }

    fn traits(&self) -> Traits {
        Traits::default()
    }

    fn check_changes(&self, changes: &[&Value]) {
        for change in changes {
            assert_eq!(change["table"], TABLE, "{change}");
            assert!(
                change["position"]
                    .as_str()
                    .is_some_and(|position| position.parse::<u64>().is_ok()),
                "the recorded position: {change}"
            );
            assert_eq!(change["commit_time"], COMMIT_TIME, "{change}");
        }
    }

    async fn finish(self) {
        drop(self.dir);
    }
}

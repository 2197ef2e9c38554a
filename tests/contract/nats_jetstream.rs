//! NATS `jetstream` under the contract: the "database" is a JetStream stream on a server of
//! the harness's own, which this harness writes cdc-tui change lines to (as the nats sink
//! publishes them); each listener has a durable consumer (its persistent position), and a
//! server that is down is one not started yet.

use std::ops::RangeInclusive;

use serde_json::{Value, json};

use super::recorded::{COMMIT_TIME, RecordedChanges, TABLE};
use super::{Harness, Server, Traits};
use crate::support::nats::NatsServer;

pub struct JetStream {
    server: NatsServer,
    recorded: RecordedChanges,
}

// The recorded changes' table is also the subject they are published on and the listener's
// subject filter (so the listener's `table` is the changes' table).
const STREAM: &str = "CONTRACT";

impl JetStream {
    async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.server.url())
            .await
            .expect("connect to the harness's nats-server");
        async_nats::jetstream::new(client)
    }

    async fn create_stream(&self) {
        self.jetstream()
            .await
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: STREAM.to_string(),
                subjects: vec![TABLE.to_string()],
                ..Default::default()
            })
            .await
            .expect("the stream");
    }

    /// Publishes change lines, each acknowledged by JetStream, as the sink publishes a batch.
    async fn publish(&self, changes: impl Iterator<Item = (&'static str, i64)>) {
        let lines: Vec<String> = changes
            .map(|(op, id)| self.recorded.line(op, id, format!("0/{id:X}")).to_string())
            .collect();
        let jetstream = self.jetstream().await;
        let mut acks = Vec::new();
        for line in lines {
            acks.push(
                jetstream
                    .publish(TABLE, line.into())
                    .await
                    .expect("publish"),
            );
        }
        for ack in acks {
            ack.await.expect("acknowledged");
        }
    }
}

impl Harness for JetStream {
    async fn start(_test: &str, server: Server) -> Self {
        let harness = JetStream {
            server: match server {
                Server::Up => NatsServer::start().await,
                Server::Down => NatsServer::down(),
            },
            recorded: RecordedChanges::default(),
        };
        if server == Server::Up {
            harness.create_stream().await;
        }
        harness
    }

    async fn up(&mut self) {
        self.server.restart().await;
        self.create_stream().await;
    }

    fn unreachable(&self) -> (String, &'static str) {
        (format!("127.0.0.1:{}", self.server.port), "refused")
    }

    fn config(&self, listeners: &[(&str, &str)]) -> String {
        let mut config = format!(
            "[[database]]\nname = \"remote\"\nkind = \"nats\"\nurl = \"{}\"\n\n",
            self.server.url()
        );
        for (identifier, table) in listeners {
            config.push_str(&format!(
                "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"remote\"\n\
                 table = \"{table}\"\nstrategy = \"jetstream\"\nstream = \"{STREAM}\"\n\
                 deliver = \"all\"\nconsumer = \"{identifier}\"\n\n"
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
        self.publish(ids.map(|id| ("insert", id))).await;
    }

    async fn update(&self, id: i64) {
        self.publish(std::iter::once(("update", id))).await;
    }

    async fn delete(&self, id: i64) {
        self.publish(std::iter::once(("delete", id))).await;
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
        for (at, change) in changes.iter().enumerate() {
            assert_eq!(
                change["position"],
                (at + 1).to_string(),
                "the stream sequence: {change}"
            );
            let id = change["key"]["id"].as_i64().expect("an id");
            assert_eq!(
                change["origin"],
                json!({"listener": "shop/shop.orders", "position": format!("0/{id:X}")}),
                "where it came from: {change}"
            );
            assert_eq!(change["commit_time"], COMMIT_TIME);
        }
    }

    async fn finish(self) {
        drop(self.server);
    }
}

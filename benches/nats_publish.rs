//! Publish throughput of the nats sink against a raw async-nats JetStream publish loop on the
//! same throwaway `nats-server -js` (file storage), in one run: the same change lines, the same
//! `Nats-Msg-Id`s, in batches of the default chunk size, each batch's acks awaited before the
//! next (what the sink's delivery contract costs, and no more).
//!
//! Run: `cargo bench --bench nats_publish` (`-- --changes N`, default 50,000). BENCHMARKS.md has
//! the figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use cdc_tui::change::{Change, ChangeEvent, Op, Row};
use cdc_tui::config::ListenerConfig;
use cdc_tui::config::schema::NatsSinkConfig;
use cdc_tui::pipeline::sinks::nats::NatsSink;
use cdc_tui::pipeline::{Batch, Packet, Sink};
use cdc_tui::registry::Registry;
use cdc_tui::secret::DatabaseUrl;
use serde_json::json;

#[path = "common/nats_server.rs"]
mod nats_server;
use nats_server::NatsServer;

const CHUNK: usize = 100;
const ROUNDS: usize = 3;

/// The same lines, subjects and ids, published with async-nats alone, each batch's acks
/// awaited before the next.
async fn raw_loop(url: &str, round: usize, payloads: &[Vec<(String, bytes::Bytes)>]) -> Duration {
    let client = async_nats::connect(url).await.expect("connect");
    let jetstream = jetstream::new(client);
    jetstream
        .get_or_create_stream(jetstream::stream::Config {
            name: format!("RAW{round}"),
            subjects: vec![format!("raw{round}.>")],
            ..Default::default()
        })
        .await
        .expect("the stream");
    let subject = format!("raw{round}.shop.public.items");
    let started = Instant::now();
    for batch in payloads {
        let mut acks = Vec::with_capacity(batch.len());
        for (id, payload) in batch {
            acks.push(
                jetstream
                    .send_publish(
                        subject.clone(),
                        jetstream::message::PublishMessage::build()
                            .payload(payload.clone())
                            .message_id(id),
                    )
                    .await
                    .expect("publish"),
            );
        }
        for ack in acks {
            ack.await.expect("acked");
        }
    }
    started.elapsed()
}

fn main() {
    let changes: usize = std::env::args()
        .skip_while(|arg| arg != "--changes")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000);
    let server = NatsServer::start().expect("nats-server");
    let url = server.url.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let registry = Arc::new(Registry::new());
    let handle = registry
        .add(ListenerConfig::new(
            "shop",
            "shop",
            "public.items",
            "logical",
        ))
        .expect("a listener");
    let batches: Vec<Batch> = (0..changes.div_ceil(CHUNK))
        .map(|number| {
            let changes: Vec<Change> = (0..CHUNK)
                .map(|at| {
                    let id = (number * CHUNK + at) as u64;
                    Change {
                        listener: handle.identity_arc(),
                        seq: id + 1,
                        captured_at: chrono::Utc::now(),
                        event: ChangeEvent {
                            table: "public.items".into(),
                            op: Op::Insert,
                            key: Row::from_json(json!({"id": id})),
                            old_key: None,
                            before: None,
                            after: Row::from_json(
                                json!({"id": id, "n": id * 7, "note": "a short text column"}),
                            ),
                            extensions: Default::default(),
                            position: format!("0/{:X}", 0x1000 + id * 64).into(),
                            commit_time: Some(chrono::Utc::now()),
                            tx: None,
                        },
                    }
                })
                .collect();
            Batch {
                number: number as u64 + 1,
                packets: vec![Packet {
                    listener: handle.clone(),
                    table: "public.items".into(),
                    op: Op::Insert,
                    count: changes.len(),
                    last_seq: changes.last().map_or(0, |change| change.seq),
                }],
                changes,
                notes: Vec::new(),
                waited: Duration::ZERO,
            }
        })
        .collect();
    let total = batches.len() * CHUNK;

    let payloads: Vec<Vec<(String, bytes::Bytes)>> = batches
        .iter()
        .map(|batch| {
            batch
                .changes
                .iter()
                .map(|change| {
                    let mut line = Vec::new();
                    change.write_json_line(&mut line);
                    line.pop();
                    (
                        format!("{}|{}|{}", change.identity(), change.position, change.seq),
                        line.into(),
                    )
                })
                .collect()
        })
        .collect();
    let rate = |elapsed: Duration| total as f64 / elapsed.as_secs_f64();
    let (mut raw_times, mut sink_times) = (Vec::new(), Vec::new());
    // Alternating rounds, each into a stream of its own (the same ids into one stream would
    // be dropped as duplicates).
    for round in 1..=ROUNDS {
        let raw = runtime.block_on(raw_loop(&url, round, &payloads));
        let config = NatsSinkConfig {
            url: DatabaseUrl::new(url.clone()),
            stream: format!("CDC{round}"),
            subject: format!("cdc{round}.{{database}}.{{table}}"),
            replicas: 1,
        };
        let mut sink = runtime
            .block_on(async { NatsSink::new(&config, registry.clone()) })
            .expect("the sink");
        let started = Instant::now();
        for batch in &batches {
            sink.write_batch(batch).expect("published");
        }
        let through_sink = started.elapsed();
        println!(
            "round {round}: raw async-nats {:.0} changes/s ({:.2} s), nats sink {:.0} changes/s \
             ({:.2} s)",
            rate(raw),
            raw.as_secs_f64(),
            rate(through_sink),
            through_sink.as_secs_f64()
        );
        raw_times.push(raw);
        sink_times.push(through_sink);
    }
    raw_times.sort();
    sink_times.sort();
    let (raw, sink) = (raw_times[ROUNDS / 2], sink_times[ROUNDS / 2]);
    println!(
        "median of {ROUNDS}: {total} changes in batches of {CHUNK}: raw {:.0}/s, sink {:.0}/s: \
         the sink takes {:.2}x the raw loop's time",
        rate(raw),
        rate(sink),
        sink.as_secs_f64() / raw.as_secs_f64()
    );
    drop(server);
}

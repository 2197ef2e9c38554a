//! Micro-benchmarks of the per-change hot paths: pgoutput decoding, value conversion, JSON
//! encoding of a change, and chunk + collate + sink through the handler; and one TUI frame.
//! Run: `cargo bench --bench hot_paths`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use cdc_tui::change::{Change, ChangeEvent, Op, Row};
use cdc_tui::config::ListenerConfig;
use cdc_tui::pipeline::collate::collate;
use cdc_tui::pipeline::timings::BatchTiming;
use cdc_tui::pipeline::{
    Batch, Captured, FlushTimings, Handler, HandlerConfig, Item, LogRing, Sink, SinkError,
};
use cdc_tui::positions::PositionStore;
use cdc_tui::registry::{ListenerState, Registry};
use cdc_tui::runtime::Runtime;
use cdc_tui::source::postgres::{pgoutput, value};
use cdc_tui::tui::{FrameRenderer, UiContext};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use serde_json::json;

/// An Insert message for a (bigint, int, text) row, as pgoutput v1 sends it.
fn insert_message() -> Vec<u8> {
    let mut message = vec![b'I'];
    message.extend_from_slice(&16_384u32.to_be_bytes());
    message.push(b'N');
    message.extend_from_slice(&3i16.to_be_bytes());
    for text in ["1234567", "42", "a row of text that a benchmark decodes"] {
        message.push(b't');
        message.extend_from_slice(&(text.len() as i32).to_be_bytes());
        message.extend_from_slice(text.as_bytes());
    }
    message
}

fn sample_changes(count: u64) -> Vec<Captured> {
    let registry = Registry::new();
    let listeners: Vec<_> = ["orders", "items", "customers"]
        .iter()
        .map(|name| {
            registry
                .add(ListenerConfig::new(name, "shop", "public.t", "logical"))
                .expect("add listener")
        })
        .collect();
    (0..count)
        .map(|seq| {
            let listener = listeners[(seq % 3) as usize].clone();
            let change = Change {
                listener: listener.identity_arc(),
                seq,
                captured_at: chrono::Utc::now(),
                event: ChangeEvent {
                    table: "public.t".into(),
                    op: Op::ALL[(seq % 3) as usize],
                    key: Row::from_json(json!({"id": seq})),
                    old_key: None,
                    before: Row::from_json(json!({"id": seq, "qty": 1, "note": "before"})),
                    after: Row::from_json(json!({"id": seq, "qty": 2, "note": "a row of text"})),
                    extensions: Default::default(),
                    position: "0/16B3748".into(),
                    commit_time: Some(chrono::Utc::now()),
                    tx: None,
                },
            };
            Captured {
                listener,
                item: Item::Change(change),
            }
        })
        .collect()
}

/// The changes of captured items.
fn changes_of(captured: Vec<Captured>) -> Vec<Change> {
    captured
        .into_iter()
        .filter_map(|captured| match captured.item {
            Item::Change(change) => Some(change),
            Item::Note(_) => None,
        })
        .collect()
}

fn decoding(c: &mut Criterion) {
    let message = insert_message();
    let mut group = c.benchmark_group("pgoutput");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode insert (bigint, int, text)", |b| {
        b.iter(|| pgoutput::decode(black_box(&message)).expect("decodes"))
    });
    group.bench_function("text_to_json x3", |b| {
        b.iter(|| {
            (
                value::text_to_json(value::oid::INT8, black_box("1234567")),
                value::text_to_json(value::oid::INT4, black_box("42")),
                value::text_to_json(value::oid::TEXT, black_box("a row of text")),
            )
        })
    });
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let change = changes_of(sample_changes(1)).remove(0);
    let mut line = Vec::with_capacity(512);
    let mut group = c.benchmark_group("json");
    group.throughput(Throughput::Elements(1));
    group.bench_function("change line", |b| {
        b.iter(|| {
            line.clear();
            black_box(&change).write_json_line(&mut line);
        })
    });
    group.finish();
}

struct NullSink;

impl Sink for NullSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        black_box(batch.changes.len());
        Ok(())
    }
}

fn chunking(c: &mut Criterion) {
    let changes = sample_changes(100);
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(100));
    group.bench_function("collate 100 changes, 3 listeners x 3 ops", |b| {
        b.iter_batched(|| changes.clone(), collate, BatchSize::SmallInput)
    });
    const COUNT: u64 = 10_000;
    group.throughput(Throughput::Elements(COUNT));
    group.bench_function("handler: 10k changes through chunk + collate + sink", |b| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        b.iter_batched(
            || sample_changes(COUNT),
            |changes| {
                runtime.block_on(async {
                    let config = HandlerConfig {
                        chunk_size: 100,
                        timeout: Duration::from_millis(200),
                        log_capacity: 1000,
                    };
                    let (handler, sender) = Handler::new(config, vec![Box::new(NullSink)]);
                    let run = tokio::spawn(handler.run());
                    for change in changes {
                        sender.send(change).await.expect("handler runs");
                    }
                    drop(sender);
                    run.await.expect("joins").expect("flushes")
                })
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// One frame at 200x50 while changes pour in: 50 listeners with counts, a full log of 10,000
/// changes, flush timings; before each frame a batch of 100 changes is flushed (outside the
/// measurement), so the log scrolls and every count moves, as during a drain. The frame is
/// drawn into a crossterm backend writing to a sink: diffing and escape sequences included.
fn frame(c: &mut Criterion) {
    const LOG: usize = 10_000;
    let registry = Arc::new(Registry::new());
    let listeners: Vec<_> = (0..50)
        .map(|at| {
            let handle = registry
                .add(ListenerConfig::new(
                    &format!("listener{at:02}"),
                    "shop",
                    &format!("public.table{at:02}"),
                    "logical",
                ))
                .expect("add listener");
            handle.set_state(ListenerState::Running, None);
            handle.set_position("0/16B3748".into());
            handle
        })
        .collect();
    let timings = Arc::new(FlushTimings::new());
    for number in 1..=500 {
        timings.record(BatchTiming {
            number,
            changes: 100,
            waited: Duration::from_micros(number * 97 % 20_000),
            flush: Duration::from_micros(300 + number % 700),
        });
    }
    let log = Arc::new(LogRing::new(LOG));
    let changes = changes_of(sample_changes(LOG as u64));
    log.extend(changes.clone());
    let runtime = Arc::new(Runtime::new(
        registry,
        Vec::new(),
        PositionStore::new(std::env::temp_dir().join("cdc-tui-bench")),
        tokio::sync::mpsc::channel(1).0,
    ));
    let mut renderer = FrameRenderer::new(UiContext {
        runtime,
        timings,
        log: log.clone(),
        sinks: Vec::new(),
        log_file: None,
        config_path: "cdc.toml".into(),
    });
    let viewport = Viewport::Fixed(Rect::new(0, 0, 200, 50));
    let mut terminal = Terminal::with_options(
        CrosstermBackend::new(std::io::sink()),
        TerminalOptions { viewport },
    )
    .expect("terminal");
    let mut next = 0;
    let mut group = c.benchmark_group("tui");
    group.throughput(Throughput::Elements(1));
    group.bench_function("frame 200x50, 50 listeners, full 10k log", |b| {
        b.iter_batched(
            || {
                // A flushed batch: 100 changes in the ring, counts up.
                let batch: Vec<Change> = (0..100)
                    .map(|i| changes[(next + i) % LOG].clone())
                    .collect();
                next += 100;
                log.extend(batch);
                for (at, listener) in listeners.iter().enumerate() {
                    listener.count_flushed(Op::ALL[at % 3], 2);
                }
            },
            |()| renderer.draw(&mut terminal).expect("draws"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, decoding, encoding, chunking, frame);
criterion_main!(benches);

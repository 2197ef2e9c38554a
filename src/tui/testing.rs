//! Deterministic data for the UI's tests: listeners in every state, changes with fixed times,
//! flush timings, and a screen drawn on a test backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::{Value, json};

use crate::change::{Change, ChangeEvent, Note, NoteKind, Op, Row, TxRef};
use crate::config::ListenerConfig;
use crate::pipeline::sinks::nats::SinkStatus;
use crate::pipeline::timings::{BatchTiming, Percentiles};
use crate::pipeline::{LogRing, TimingsSnapshot};
use crate::positions::PositionStore;
use crate::registry::{ListenerHandle, ListenerSnapshot, ListenerState, Registry, ServerLag};
use crate::runtime::Runtime;
use crate::tui::add_dialog::DatabaseChoice;
use crate::tui::frame::{Feed, Info};
use crate::tui::state::UiState;
use crate::tui::theme::Theme;
use crate::tui::{FlushTimings, SinkWatch, draw_frame};

pub fn listener_config(identifier: &str) -> ListenerConfig {
    ListenerConfig::new(
        identifier,
        "shop",
        &format!("public.{identifier}"),
        "logical",
    )
}

pub fn listener_snapshots(count: usize) -> Vec<ListenerSnapshot> {
    let registry = Registry::new();
    for at in 0..count {
        registry
            .add(listener_config(&format!("listener{at}")))
            .unwrap();
    }
    registry.snapshot()
}

/// 2026-11-25T10:00:00Z plus `millis`.
pub fn at(millis: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .unwrap()
        .to_utc()
        + TimeDelta::milliseconds(millis)
}

/// A change captured by a throwaway listener, at a fixed time.
pub fn change(op: Op, table: &str, key: Value, after: Value) -> Change {
    let handle = Registry::new().add(listener_config("orders")).unwrap();
    change_of(&handle, op, table, key, Value::Null, after, 0)
}

pub fn change_of(
    listener: &Arc<ListenerHandle>,
    op: Op,
    table: &str,
    key: Value,
    before: Value,
    after: Value,
    millis: i64,
) -> Change {
    Change {
        listener: listener.identity_arc(),
        seq: millis as u64,
        captured_at: at(millis),
        event: ChangeEvent {
            table: table.into(),
            op,
            key: Row::from_json(key),
            old_key: None,
            before: Row::from_json(before),
            after: Row::from_json(after),
            extensions: Default::default(),
            position: format!("0/16B{:04X}", millis).into(),
            commit_time: Some(at(millis - 4)),
            tx: None,
        },
    }
}

/// The databases the add dialog offers: `catalog` (MongoDB) and `shop` (PostgreSQL).
/// `change` as the `index`th of transaction `id`.
pub fn in_tx(mut change: Change, id: &str, index: u32) -> Change {
    change.tx = Some(TxRef {
        id: id.into(),
        position: format!("0/1A2B{id}").into(),
        index,
    });
    change
}

pub fn database_choices() -> Vec<DatabaseChoice> {
    vec![
        DatabaseChoice {
            name: "catalog".into(),
            kind: &crate::source::mongo::Mongo,
        },
        DatabaseChoice {
            name: "shop".into(),
            kind: &crate::source::postgres::Postgres,
        },
    ]
}

/// The shop: listeners in every state, a log of changes, flush timings.
pub struct Shop {
    pub registry: Arc<Registry>,
    pub log: Arc<LogRing>,
    pub feed: Feed,
    pub info: Info,
    pub timings: TimingsSnapshot,
    pub start: Instant,
    handles: Vec<Arc<ListenerHandle>>,
}

impl Shop {
    /// No listeners yet, no changes, no batches.
    pub fn empty(log_capacity: usize) -> Shop {
        let registry = Arc::new(Registry::new());
        let log = Arc::new(LogRing::new(log_capacity));
        let runtime = Arc::new(Runtime::new(
            registry.clone(),
            Vec::new(),
            PositionStore::new(std::env::temp_dir().join("cdc-tui-ui-tests")),
            tokio::sync::mpsc::channel(1).0,
        ));
        let feed = Feed::new(runtime, Arc::new(FlushTimings::new()), log.clone());
        let info = Info {
            databases: database_choices(),
            log_file: Some("/home/ada/shop/.cdc-tui/cdc-tui.log".into()),
            config_path: "/home/ada/shop/cdc.toml".into(),
            log_capacity,
            state_dir: "/home/ada/shop/.cdc-tui".into(),
            theme: Theme::COLOR,
            zone: FixedOffset::east_opt(0).unwrap(),
            replay: None,
        };
        Shop {
            registry,
            log,
            feed,
            info,
            timings: TimingsSnapshot::default(),
            start: Instant::now(),
            handles: Vec::new(),
        }
    }

    /// Five listeners, one in each state but starting, twelve seconds of counts, flush timings.
    pub fn new(log_capacity: usize) -> Shop {
        let mut shop = Shop::empty(log_capacity);
        let add = |identifier: &str, table: &str, strategy: &str| {
            let mut config = ListenerConfig::new(identifier, "shop", table, strategy);
            if strategy == "change_stream" {
                config.database = "catalog".into();
            }
            if identifier == "orders" {
                config = config
                    .with_option("slot", "cdc_tui_orders")
                    .with_option("publication", "cdc_tui_orders");
            }
            let handle = shop.registry.add(config).unwrap();
            handle.set_config_source("/home/ada/shop/cdc.toml");
            handle
        };
        let orders = add("orders", "public.orders", "logical");
        let items = add("items", "public.items", "polling");
        let customers = add("customers", "public.customers", "logical");
        let carts = add("carts", "shop.carts", "change_stream");
        let audit = add("audit", "public.audit", "polling");
        orders.set_state(ListenerState::Running, None);
        orders.set_position("0/16B3748".into());
        orders.set_detail(Some(
            "1.2 MiB WAL held by persistent slot cdc_tui_orders".into(),
        ));
        items.set_state(ListenerState::Paused, None);
        items.set_position("2026-11-25 09:59:58.120".into());
        customers.set_state(
            ListenerState::Retrying,
            Some("connection refused (os error 111), retry in 4s".into()),
        );
        carts.set_state(
            ListenerState::Failed,
            Some("change streams need a replica set".into()),
        );
        audit.set_state(ListenerState::Stopped, None);
        orders.note_captured(&at(11_488), &at(11_500));
        orders.set_server_lag(ServerLag {
            bytes: Some(24_678),
            wal_status: Some("reserved".into()),
            safe_wal_size: None,
        });
        items.note_captured(&at(-170_000), &at(-169_990));
        shop.handles = vec![orders, items, customers, carts, audit];
        shop.timings = timings();
        shop.count_for(12);
        shop
    }

    /// Counts changes over `seconds` seconds, sampling the rates each second.
    fn count_for(&mut self, seconds: u64) {
        for second in 0..seconds {
            let wave = [3, 5, 8, 13, 21, 13, 8, 5][second as usize % 8];
            self.handles[0].count_flushed(Op::Insert, wave * 10);
            self.handles[0].count_flushed(Op::Update, wave * 3);
            self.handles[0].count_flushed(Op::Delete, second % 2);
            if second < 6 {
                self.handles[1].count_flushed(Op::Insert, 9);
                self.handles[1].count_flushed(Op::Update, 2);
            }
            if second == 3 {
                self.handles[2].count_flushed(Op::Truncate, 1);
            }
            self.refresh_at(Duration::from_secs(second));
        }
    }

    fn refresh_at(&mut self, since_start: Duration) {
        self.feed.refresh(self.start + since_start, "");
    }

    pub fn handle(&self, at: usize) -> &Arc<ListenerHandle> {
        &self.handles[at]
    }

    /// `count` changes of the orders listener, one every 137 ms.
    pub fn push_changes(&self, count: usize) {
        let orders = &self.handles[0];
        let changes = (0..count)
            .map(|i| {
                let id = 1000 + i as i64;
                let millis = i as i64 * 137;
                let row = |status: &str, qty: i64| {
                    json!({"id": id, "status": status, "qty": qty, "total": format!("{}.50", qty * 12)})
                };
                match i % 7 {
                    1 | 4 => change_of(
                        orders,
                        Op::Update,
                        "public.orders",
                        json!({"id": id}),
                        row("new", 1),
                        row("paid", 2),
                        millis,
                    ),
                    5 => change_of(
                        orders,
                        Op::Delete,
                        "public.orders",
                        json!({"id": id}),
                        row("paid", 2),
                        Value::Null,
                        millis,
                    ),
                    6 if i.is_multiple_of(2) => change_of(
                        orders,
                        Op::Truncate,
                        "public.order_lines",
                        Value::Null,
                        Value::Null,
                        Value::Null,
                        millis,
                    ),
                    _ => change_of(
                        orders,
                        Op::Insert,
                        if i % 3 == 0 { "public.items" } else { "public.orders" },
                        json!({"id": id}),
                        Value::Null,
                        row("new", 1),
                        millis,
                    ),
                }
            })
            .collect();
        self.log.extend(changes);
    }

    /// Transactions of the orders listener: a checkout (tx 812: an order, three items, the
    /// customer's update; labelled by its message, committed), a change without a
    /// transaction, and tx 813 still running (two changes, no transaction line yet).
    pub fn push_transactions(&self) {
        let orders = &self.handles[0];
        let item = |id: i64, millis: i64| {
            change_of(
                orders,
                Op::Insert,
                "public.order_items",
                json!({"id": id}),
                Value::Null,
                json!({"id": id, "order_id": 57, "sku": format!("sku-{id}"), "qty": 1}),
                millis,
            )
        };
        let checkout = vec![
            in_tx(
                change_of(
                    orders,
                    Op::Insert,
                    "public.orders",
                    json!({"id": 57}),
                    Value::Null,
                    json!({"id": 57, "status": "new", "total": "36.00"}),
                    1000,
                ),
                "812",
                1,
            ),
            in_tx(item(1, 1001), "812", 2),
            in_tx(item(2, 1002), "812", 3),
            in_tx(item(3, 1003), "812", 4),
            in_tx(
                change_of(
                    orders,
                    Op::Update,
                    "public.customers",
                    json!({"id": 3}),
                    json!({"id": 3, "name": "Ada", "orders": 4}),
                    json!({"id": 3, "name": "Ada", "orders": 5}),
                    1004,
                ),
                "812",
                5,
            ),
        ];
        let note = |kind| Note {
            listener: orders.identity_arc(),
            captured_at: at(1004),
            kind,
        };
        let message = note(NoteKind::Message {
            prefix: "cdc-tui".into(),
            content: "POST /checkout req=42".into(),
            transactional: true,
            tx: Some(TxRef {
                id: "812".into(),
                position: "0/1A2B812".into(),
                index: 1,
            }),
            position: "0/1A2B000".into(),
        });
        let committed = note(NoteKind::Transaction {
            id: "812".into(),
            position: "0/1A2B812".into(),
            commit_time: Some(at(1000)),
            changes: 5,
            tables: Vec::new(),
            discarded: 0,
        });
        self.log
            .extend_with_notes(checkout, vec![(0, message), (5, committed)]);
        let plain = change_of(
            orders,
            Op::Insert,
            "public.audit",
            json!({"id": 9}),
            Value::Null,
            json!({"id": 9, "what": "login"}),
            1500,
        );
        let running = (0..2)
            .map(|i| in_tx(item(10 + i, 2000 + i), "813", i as u32 + 1))
            .collect::<Vec<_>>();
        self.log
            .extend(std::iter::once(plain).chain(running).collect());
    }

    /// Notes among changes of the orders listener, as a scope and a stream give them: two
    /// inserts, `public.orders` gaining a column, an update, a message outside any
    /// transaction, a stream message that is no change event, and a delete.
    pub fn push_notes(&self) {
        let orders = &self.handles[0];
        let order = |op, id: i64, after: Value, millis| {
            let before = if op == Op::Insert {
                Value::Null
            } else {
                json!({"id": id, "status": "new"})
            };
            let after = if op == Op::Delete { Value::Null } else { after };
            change_of(
                orders,
                op,
                "public.orders",
                json!({"id": id}),
                before,
                after,
                millis,
            )
        };
        let note = |kind, millis| Note {
            listener: orders.identity_arc(),
            captured_at: at(millis),
            kind,
        };
        let changes = vec![
            order(Op::Insert, 1, json!({"id": 1, "status": "new"}), 100),
            order(Op::Insert, 2, json!({"id": 2, "status": "new"}), 200),
            order(
                Op::Update,
                1,
                json!({"id": 1, "status": "paid", "coupon": "XMAS"}),
                400,
            ),
            order(Op::Delete, 2, Value::Null, 700),
        ];
        let schema = note(
            NoteKind::Schema {
                table: "public.orders".into(),
                change: "columns",
                detail: "added coupon (text)".into(),
            },
            300,
        );
        let message = note(
            NoteKind::Message {
                prefix: "deploy".into(),
                content: "release 2026.11.25 rolled out".into(),
                transactional: false,
                tx: None,
                position: "0/16B0500".into(),
            },
            500,
        );
        let error = note(
            NoteKind::Error {
                message: "cdc.shop.orders #41: neither a cdc-tui change nor a Debezium event: \
                          expected value at line 1 column 1"
                    .into(),
            },
            600,
        );
        self.log
            .extend_with_notes(changes, vec![(2, schema), (3, message), (3, error)]);
    }

    /// A sink the UI shows the state of (as `[sinks.nats]` is), starting; its state is set
    /// through the sender.
    pub fn watch_sink(&mut self, name: &str) -> tokio::sync::watch::Sender<SinkStatus> {
        let (sender, status) = tokio::sync::watch::channel(SinkStatus {
            state: ListenerState::Starting,
            reason: None,
        });
        self.feed.watch_sinks(vec![SinkWatch {
            name: name.into(),
            status,
        }]);
        sender
    }

    /// Draws the screen, `width` x `height`, as the UI would with this state.
    pub fn draw(&mut self, state: &mut UiState, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        self.draw_on(&mut terminal, state);
        terminal
    }

    /// Draws on a terminal kept between frames, as the UI does.
    pub fn draw_on(&mut self, terminal: &mut Terminal<TestBackend>, state: &mut UiState) {
        // Between rate samples, so drawing does not take another.
        self.feed
            .refresh_view(self.start + Duration::from_millis(11_500), state);
        fix_times(&mut self.feed);
        terminal
            .draw(|frame| {
                draw_frame(frame, state, &self.feed, &self.info, &self.timings);
            })
            .unwrap();
    }
}

/// The registry stamps state changes with the wall clock: fixed times instead, each state
/// change a second and a half after the one before, the last ten seconds before "now".
fn fix_times(feed: &mut Feed) {
    feed.now = at(12_000);
    for listener in &mut feed.listeners {
        let count = listener.history.len() as i64;
        let history = Arc::make_mut(&mut listener.history);
        for (index, change) in history.iter_mut().enumerate() {
            change.at = at(2_000 - (count - 1 - index as i64) * 1_500);
        }
        listener.since = history.back().map_or(at(2_000), |change| change.at);
    }
}

fn timings() -> TimingsSnapshot {
    let recent = (1..=80u64)
        .map(|number| {
            let wave = [2, 5, 9, 14, 20, 14, 9, 5][number as usize % 8];
            BatchTiming {
                number: 1154 + number,
                changes: (wave * 5) as usize,
                waited: Duration::from_micros(wave * 9_000),
                flush: Duration::from_micros(80 + wave * 40),
            }
        })
        .collect();
    TimingsSnapshot {
        batches: 1234,
        changes: 98_765,
        waited_ms: Percentiles {
            p50: 12.5,
            p95: 180.2,
            p99: 199.0,
            max: 201.3,
        },
        flush_ms: Percentiles {
            p50: 0.08,
            p95: 0.95,
            p99: 3.4,
            max: 12.0,
        },
        batch_size: Percentiles {
            p50: 64.0,
            p95: 100.0,
            p99: 100.0,
            max: 100.0,
        },
        recent,
    }
}

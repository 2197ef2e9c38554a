//! Screens drawn on a test backend from deterministic data, compared with insta snapshots.

use ratatui::style::Color;
use serde_json::json;

use crate::change::{NoteKind, Op};
use crate::registry::ListenerState;
use crate::tui::effect::Effect;
use crate::tui::keys::Action;
use crate::tui::state::{Focus, Mode, Popup, UiState, View};
use crate::tui::testing::{Shop, change_of, in_tx};
use crate::tui::theme::Theme;
use crate::tui::transactions::TxView;

/// Applies actions as keys would, with the view the UI would give them.
fn press(shop: &Shop, state: &mut UiState, actions: &[Action]) -> Vec<Effect> {
    let mut effects = Vec::new();
    for &action in actions {
        let view = View {
            listeners: &shop.feed.listeners,
            log: shop.feed.index(),
            databases: &shop.info.databases,
            log_rows: 10,
            popup_rows: 10,
            export_path: shop.info.state_dir.join("events.jsonl"),
        };
        effects.extend(state.apply(action, &view));
    }
    effects
}

fn screen(shop: &mut Shop, state: &mut UiState, width: u16, height: u16) -> String {
    shop.draw(state, width, height).backend().to_string()
}

/// Opens what an effect asks for (a change's detail, a transaction's), as the event loop does.
fn open(shop: &Shop, state: &mut UiState, effect: &Effect) {
    match *effect {
        Effect::OpenDetail(number) => state.show_detail(number, shop.feed.entry(number).unwrap()),
        Effect::OpenTransaction(anchor) => {
            let (summary, changes) = shop.feed.transaction(anchor).unwrap();
            state.show_transaction(TxView::new(anchor, &summary, &changes, shop.info.zone));
        }
        _ => {}
    }
}

/// Twenty changes in the log and `filter` applied.
fn filtered(filter: &str) -> (Shop, UiState) {
    let shop = Shop::new(100);
    shop.push_changes(20);
    let state = UiState {
        filter: filter.into(),
        ..UiState::default()
    };
    (shop, state)
}

/// The shop's transactions grouped (`t`), the log focused, drawn once.
fn grouped_transactions() -> (Shop, UiState) {
    let mut shop = Shop::new(100);
    shop.push_transactions();
    let mut state = UiState::default();
    press(
        &shop,
        &mut state,
        &[Action::ToggleGrouping, Action::SwitchFocus],
    );
    shop.draw(&mut state, 120, 30);
    (shop, state)
}

#[test]
fn main_screen_wide() {
    let mut shop = Shop::new(10_000);
    shop.push_changes(40);
    insta::assert_snapshot!(screen(&mut shop, &mut UiState::default(), 140, 36));
}

#[test]
fn main_screen_80x24() {
    let mut shop = Shop::new(30);
    shop.push_changes(40);
    let mut state = UiState {
        selected_listener: 2,
        ..UiState::default()
    };
    insta::assert_snapshot!(screen(&mut shop, &mut state, 80, 24));
}

#[test]
fn main_screen_empty() {
    let mut shop = Shop::empty(100);
    insta::assert_snapshot!(screen(&mut shop, &mut UiState::default(), 80, 24));
}

#[test]
fn log_scrolled_up_with_the_focus() {
    let mut shop = Shop::new(1000);
    shop.push_changes(60);
    let mut state = UiState::default();
    shop.draw(&mut state, 100, 30);
    press(
        &shop,
        &mut state,
        &[Action::SwitchFocus, Action::PageUp, Action::Up],
    );
    let before = screen(&mut shop, &mut state, 100, 30);
    // New changes do not move a view the user scrolled.
    shop.push_changes(5);
    let after = screen(&mut shop, &mut state, 100, 30);
    let rows = |screen: &str| {
        screen
            .lines()
            .filter(|l| l.contains("public."))
            // Without the right border, where the scrollbar's thumb may round to another row.
            .map(|l| l.chars().take(l.chars().count() - 2).collect::<String>())
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&before), rows(&after));
    insta::assert_snapshot!(after);
}

#[test]
fn filter_being_typed() {
    let mut shop = Shop::new(1000);
    shop.push_changes(60);
    let mut state = UiState::default();
    press(&shop, &mut state, &[Action::StartFilter]);
    for c in "op:update 10".chars() {
        state.type_char(c);
    }
    insta::assert_snapshot!(screen(&mut shop, &mut state, 100, 30));
}

#[test]
fn help_screen() {
    let mut shop = Shop::new(100);
    let mut state = UiState::default();
    press(&shop, &mut state, &[Action::Help]);
    insta::assert_snapshot!(screen(&mut shop, &mut state, 100, 40));
}

#[test]
fn help_screen_80x24_scrolls() {
    let mut shop = Shop::new(100);
    let mut state = UiState::default();
    press(&shop, &mut state, &[Action::Help]);
    let top = screen(&mut shop, &mut state, 80, 24);
    assert!(top.contains("/home/ada/shop/.cdc-tui/cdc-tui.log"));
    assert!(top.contains("/home/ada/shop/cdc.toml"));
    press(&shop, &mut state, &[Action::End]);
    insta::assert_snapshot!(screen(&mut shop, &mut state, 80, 24));
}

#[test]
fn detail_of_an_update() {
    let mut shop = Shop::new(100);
    shop.push_changes(10);
    let mut state = UiState::default();
    shop.draw(&mut state, 120, 30);
    // The newest update: entry 8 (every seventh from the second is an update).
    press(&shop, &mut state, &[Action::SwitchFocus, Action::Up]);
    let effects = press(&shop, &mut state, &[Action::OpenDetail]);
    assert_eq!(effects, [Effect::OpenDetail(8)]);
    open(&shop, &mut state, &effects[0]);
    insta::assert_snapshot!(screen(&mut shop, &mut state, 120, 30));
}

#[test]
fn detail_of_a_mongodb_update_stacked_at_80x24() {
    let mut shop = Shop::new(100);
    let carts = shop.handle(3).clone();
    let mut update = change_of(
        &carts,
        Op::Update,
        "shop.carts",
        json!({"_id": {"$oid": "65f1c0ffee0000000000002a"}}),
        serde_json::Value::Null,
        json!({"_id": {"$oid": "65f1c0ffee0000000000002a"}, "items": 3, "total": 59.9}),
        5_000,
    );
    update.extensions.insert(
        "update",
        json!({"updated": {"items": 3, "total": 59.9}, "removed": ["coupon"]}),
    );
    update.position = "{\"_data\":\"8265F1C0FF000000012B0229296E04\"}".into();
    let mut state = UiState::default();
    state.show_detail(41, update);
    insta::assert_snapshot!(screen(&mut shop, &mut state, 80, 24));
}

/// Opens the add dialog and chooses the shop database (the second); returns the number of the
/// table list it asks for.
fn add_dialog_on_shop(shop: &Shop, state: &mut UiState) -> u64 {
    let effects = press(
        shop,
        state,
        &[Action::AddListener, Action::Down, Action::Confirm],
    );
    let [Effect::ListTables { request, database }] = effects.as_slice() else {
        panic!("expected a table list request, got {effects:?}");
    };
    assert_eq!(database, "shop");
    *request
}

#[test]
fn add_dialog_choosing_a_table() {
    let mut shop = Shop::new(100);
    let mut state = UiState::default();
    let request = add_dialog_on_shop(&shop, &mut state);
    let dialog = state.add_dialog().unwrap();
    dialog.tables_listed(
        request,
        Ok([
            "public.audit",
            "public.items",
            "public.order_lines",
            "public.orders",
        ]
        .map(String::from)
        .to_vec()),
    );
    for c in "ord".chars() {
        state.type_char(c);
    }
    press(&shop, &mut state, &[Action::Down]);
    insta::assert_snapshot!(screen(&mut shop, &mut state, 100, 30));
}

#[test]
fn the_add_dialog_shows_its_keys_over_an_older_note() {
    let mut shop = Shop::new(100);
    let mut state = UiState::default();
    state.notify(
        "stopping audit/public.audit",
        false,
        std::time::Instant::now(),
    );
    press(&shop, &mut state, &[Action::AddListener]);
    let screen = screen(&mut shop, &mut state, 100, 30);
    let footer = screen.lines().last().unwrap();
    assert!(
        footer.contains("Enter next") && footer.contains("Esc cancel"),
        "{footer}"
    );
    assert!(!footer.contains("stopping"), "{footer}");
}

#[test]
fn add_dialog_refused() {
    let mut shop = Shop::new(100);
    let mut state = UiState::default();
    let request = add_dialog_on_shop(&shop, &mut state);
    let dialog = state.add_dialog().unwrap();
    dialog.tables_listed(request, Err("connection refused (os error 111)".into()));
    for c in "public.orders".chars() {
        state.type_char(c);
    }
    let effects = press(
        &shop,
        &mut state,
        &[
            Action::Confirm,
            Action::Down,
            Action::Confirm,
            Action::Confirm,
        ],
    );
    assert_eq!(
        effects,
        [Effect::Add(crate::runtime::Command::Add {
            database: "shop".into(),
            table: "public.orders".into(),
            strategy: "polling".into(),
            options: vec!["updated_at".into()],
        })]
    );
    state
        .add_dialog()
        .unwrap()
        .refused("the listener shop/public.orders exists already".into());
    insta::assert_snapshot!(screen(&mut shop, &mut state, 100, 30));
}

#[test]
fn any_screen_size_draws_without_panicking() {
    let mut shop = Shop::new(100);
    shop.push_changes(30);
    shop.push_transactions();
    let modes: [&[Action]; 11] = [
        &[],
        &[Action::Help],
        &[Action::OpenDetail],
        &[Action::AddListener],
        &[Action::StartFilter],
        &[Action::Expand, Action::ToggleGrouping, Action::SwitchFocus],
        &[
            Action::ToggleGrouping,
            Action::SwitchFocus,
            Action::Up,
            Action::Expand,
        ],
        &[Action::ToggleGrouping, Action::Up, Action::OpenDetail],
        &[Action::ListenerDetail],
        &[Action::Stop],
        &[Action::Export],
    ];
    for actions in modes {
        let mut state = UiState::default();
        shop.draw(&mut state, 100, 30);
        for effect in press(&shop, &mut state, actions) {
            open(&shop, &mut state, &effect);
        }
        for (width, height) in [(1, 1), (12, 3), (30, 8), (50, 12), (79, 23), (250, 70)] {
            shop.draw(&mut state, width, height);
        }
    }
}

#[test]
fn no_color_means_no_colour_at_all() {
    let mut shop = Shop::new(100);
    shop.push_changes(30);
    shop.info.theme = Theme::NO_COLOR;
    let mut state = UiState {
        focus: Focus::Log,
        ..UiState::default()
    };
    for actions in [&[][..], &[Action::OpenDetail][..], &[Action::Help][..]] {
        for effect in press(&shop, &mut state, actions) {
            open(&shop, &mut state, &effect);
        }
        let terminal = shop.draw(&mut state, 120, 40);
        let buffer = terminal.backend().buffer();
        for cell in &buffer.content {
            assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
        }
    }
}

#[test]
fn grouped_by_transaction_collapsed_with_a_label_and_one_running() {
    let mut shop = Shop::new(100);
    shop.push_transactions();
    let mut state = UiState::default();
    press(&shop, &mut state, &[Action::ToggleGrouping]);
    let screen = screen(&mut shop, &mut state, 120, 30);
    assert!(
        screen.contains("tx 812 · 10:00:01.000 · 5 changes · orders +1, order_items +3, customers ~1 «POST /checkout req=42»"),
        "{screen}"
    );
    assert!(
        screen.contains("tx 813 · running · 2 changes so far · order_items +2"),
        "{screen}"
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn grouped_by_transaction_expanded() {
    let (mut shop, mut state) = grouped_transactions();
    // The cursor from the newest row (tx 813) up to the plain change, then tx 812.
    press(&shop, &mut state, &[Action::Up, Action::Up, Action::Expand]);
    let expanded = screen(&mut shop, &mut state, 120, 30);
    assert!(expanded.contains("▾ tx 812"), "{expanded}");
    assert_eq!(
        expanded.matches("  public.order_items").count(),
        3,
        "{expanded}"
    );
    // Collapsing from one of its changes folds it and selects the transaction.
    press(
        &shop,
        &mut state,
        &[Action::Down, Action::Down, Action::Collapse],
    );
    let folded = screen(&mut shop, &mut state, 120, 30);
    assert!(folded.contains("▶ ▸ tx 812"), "{folded}");
    insta::assert_snapshot!(expanded);
}

#[test]
fn a_whole_transaction_in_its_detail() {
    let (mut shop, mut state) = grouped_transactions();
    let effects = press(
        &shop,
        &mut state,
        &[Action::Up, Action::Up, Action::OpenDetail],
    );
    let [Effect::OpenTransaction(anchor)] = effects[..] else {
        panic!("{effects:?}");
    };
    open(&shop, &mut state, &effects[0]);
    let screen = screen(&mut shop, &mut state, 120, 50);
    assert!(screen.contains("orders: 4 → 5"), "{screen}");
    // y copies the whole transaction, from its popup as from its row.
    assert_eq!(
        press(&shop, &mut state, &[Action::Copy]),
        [Effect::CopyTransaction(anchor)]
    );
    state.popup = None;
    assert_eq!(
        press(&shop, &mut state, &[Action::Copy]),
        [Effect::CopyTransaction(anchor)]
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn a_filter_shows_the_transactions_holding_a_match() {
    let mut shop = Shop::new(100);
    shop.push_transactions();
    let mut state = UiState {
        grouped: true,
        filter: "table:customers".into(),
        ..UiState::default()
    };
    let screen = screen(&mut shop, &mut state, 120, 30);
    assert!(screen.contains("tx 812"), "{screen}");
    assert!(!screen.contains("tx 813"), "{screen}");
    assert!(!screen.contains("login"), "{screen}");
}

#[test]
fn a_scoped_listener_expanded_into_its_tables() {
    let mut shop = Shop::new(100);
    let orders = shop.handle(0).clone();
    orders.count_table(&"public.orders".into(), Op::Insert, 1_040);
    orders.count_table(&"public.orders".into(), Op::Update, 300);
    orders.count_table(&"public.order_items".into(), Op::Insert, 10);
    orders.count_table(&"public.order_items".into(), Op::Delete, 6);
    let mut state = UiState::default();
    press(&shop, &mut state, &[Action::Down, Action::Up]);
    shop.draw(&mut state, 140, 36);
    press(&shop, &mut state, &[Action::Expand]);
    let expanded = screen(&mut shop, &mut state, 140, 36);
    // The registry stamps the last change with the wall clock.
    let expanded: String = expanded
        .lines()
        .map(|line| match line.find("last change ") {
            Some(at) => {
                let start = at + "last change ".len();
                format!("{}HH:MM:SS.mmm{}", &line[..start], &line[start + 12..])
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(expanded.contains("└ public.order_items"), "{expanded}");
    let header = expanded.lines().next().unwrap().to_string();
    press(&shop, &mut state, &[Action::Collapse]);
    let folded = screen(&mut shop, &mut state, 140, 36);
    assert!(!folded.contains("└ public.orders"), "{folded}");
    assert_eq!(
        folded.lines().next().unwrap(),
        header,
        "the header's counters stay totals"
    );
    insta::assert_snapshot!(expanded);
}

/// What the wal_level = replica failure says: long, with the fix at its end.
const WAL_LEVEL_REASON: &str = "the server runs with wal_level = replica, and logical replication \
    needs wal_level = logical: run `ALTER SYSTEM SET wal_level = logical` as a superuser and \
    restart the server (or use strategy = \"polling\")";

#[test]
fn a_long_reason_wraps_whole_at_80x24() {
    let mut shop = Shop::new(30);
    shop.push_changes(40);
    shop.handle(2)
        .set_state(ListenerState::Failed, Some(WAL_LEVEL_REASON.into()));
    let mut state = UiState {
        selected_listener: 2,
        ..UiState::default()
    };
    let screen = screen(&mut shop, &mut state, 80, 24);
    let joined: String = screen
        .lines()
        .map(|line| line.trim_matches(|c| c == '"' || c == '┃' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        joined.contains("(or use strategy = \"polling\")"),
        "the fix at the end shows: {screen}"
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn listener_detail_popup() {
    let mut shop = Shop::new(100);
    let customers = shop.handle(2).clone();
    customers.set_state(ListenerState::Failed, Some(WAL_LEVEL_REASON.into()));
    let mut state = UiState {
        selected_listener: 0,
        ..UiState::default()
    };
    press(&shop, &mut state, &[Action::ListenerDetail]);
    assert_eq!(state.mode(), Mode::ListenerDetail);
    let orders = screen(&mut shop, &mut state, 100, 36);
    insta::assert_snapshot!("listener_detail_popup_orders", orders);
    press(
        &shop,
        &mut state,
        &[Action::Close, Action::Down, Action::Down],
    );
    // Enter opens it too while the listeners table has the focus.
    press(&shop, &mut state, &[Action::ListenerDetail]);
    let failed = screen(&mut shop, &mut state, 80, 24);
    assert!(failed.contains("wal_level = logical"), "{failed}");
    insta::assert_snapshot!("listener_detail_popup_failed_80x24", failed);
    let effects = press(&shop, &mut state, &[Action::Restart]);
    assert_eq!(effects, [Effect::Restart(customers.identity_arc())]);
}

#[test]
fn stopping_a_listener_with_a_persistent_slot_asks_first() {
    let mut shop = Shop::new(100);
    let mut state = UiState::default();
    assert_eq!(press(&shop, &mut state, &[Action::Stop]), []);
    assert_eq!(state.mode(), Mode::Confirm);
    insta::assert_snapshot!(screen(&mut shop, &mut state, 100, 30));
    // n leaves it running; y stops it.
    assert_eq!(press(&shop, &mut state, &[Action::Close]), []);
    assert!(state.popup.is_none());
    let orders = shop.handle(0).identity_arc();
    assert_eq!(
        press(&shop, &mut state, &[Action::Stop, Action::Confirm]),
        [Effect::Stop(orders)]
    );
    // The items listener (polling, no slot, no transaction) stops at once.
    assert_eq!(
        press(&shop, &mut state, &[Action::Down, Action::Stop]),
        [Effect::Stop(shop.handle(1).identity_arc())]
    );
    // In the middle of a transaction, it asks.
    shop.handle(1).set_in_transaction(true);
    shop.draw(&mut state, 100, 30);
    assert_eq!(press(&shop, &mut state, &[Action::Stop]), []);
    let Some(Popup::Confirm { question, .. }) = &state.popup else {
        panic!("a question");
    };
    assert!(question.contains("middle of a transaction"), "{question}");
    press(&shop, &mut state, &[Action::Close]);
    // Stopped and failed rows can be restarted and removed.
    let audit = shop.handle(4).identity_arc();
    state.selected_listener = 4;
    assert_eq!(
        press(&shop, &mut state, &[Action::Restart, Action::Remove]),
        [Effect::Restart(audit.clone()), Effect::Remove(audit)]
    );
}

#[test]
fn two_listeners_on_one_table_are_told_apart_in_the_log() {
    let mut shop = Shop::new(100);
    shop.push_changes(6);
    let audit = shop
        .registry
        .add(crate::config::ListenerConfig::new(
            "evpoll",
            "shop",
            "public.orders",
            "polling",
        ))
        .unwrap();
    let again = (0..3)
        .map(|i| {
            change_of(
                &audit,
                Op::Insert,
                "public.orders",
                json!({"id": 1000 + i}),
                serde_json::Value::Null,
                json!({"id": 1000 + i, "status": "new"}),
                900 + i * 100,
            )
        })
        .collect();
    shop.log.extend(again);
    let mut state = UiState::default();
    let screen = screen(&mut shop, &mut state, 100, 30);
    assert!(screen.contains("evpoll"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn a_filter_with_an_unknown_prefix_says_so() {
    let (mut shop, mut state) = filtered("colour:red");
    let screen = screen(&mut shop, &mut state, 100, 30);
    assert!(screen.contains("unknown filter field colour:"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn the_filter_finds_a_row_by_column_and_n_moves_between_matches() {
    let (mut shop, mut state) = filtered("id=1004");
    shop.draw(&mut state, 100, 30);
    assert_eq!(shop.feed.index().len(), 1);
    state.filter = "op:update".into();
    shop.draw(&mut state, 100, 30);
    // Updates are entries 1, 4, 8, 11, 15, 18.
    press(
        &shop,
        &mut state,
        &[Action::PreviousMatch, Action::PreviousMatch],
    );
    assert_eq!(state.mode(), Mode::Main(Focus::Log));
    let at = state.log.selected_position(shop.feed.index()).unwrap();
    assert_eq!(shop.feed.index().number_at(at), 11);
    press(&shop, &mut state, &[Action::NextMatch]);
    let at = state.log.selected_position(shop.feed.index()).unwrap();
    assert_eq!(shop.feed.index().number_at(at), 15);

    // What the filter matched is marked in the rows.
    state.filter = "paid".into();
    let terminal = shop.draw(&mut state, 100, 30);
    let buffer = terminal.backend().buffer();
    let marked: Vec<String> = (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| &buffer[(x, y)])
                .filter(|cell| cell.fg == Color::Yellow && cell.symbol() != " ")
                .map(|cell| cell.symbol().to_string())
                .collect()
        })
        .filter(|text: &String| text.contains("paid"))
        .collect();
    assert!(!marked.is_empty(), "paid is marked");
    // Yellow besides: the update op's own colour.
    assert!(
        marked
            .iter()
            .all(|text| text.trim_start_matches("update") == "paid"),
        "{marked:?}"
    );
}

#[test]
fn the_lag_column_warns_past_its_thresholds() {
    let mut shop = Shop::new(100);
    // customers: 2.5 s from commit to capture; items: 40 MiB of WAL behind.
    shop.handle(2).note_captured(
        &crate::tui::testing::at(9_000),
        &crate::tui::testing::at(11_500),
    );
    shop.handle(1).set_server_lag(crate::registry::ServerLag {
        bytes: Some(40 << 20),
        wal_status: Some("extended".into()),
        safe_wal_size: Some(200 << 20),
    });
    let mut state = UiState::default();
    let terminal = shop.draw(&mut state, 120, 30);
    let screen = terminal.backend().to_string();
    let cell_colour = |needle: &str| {
        let buffer = terminal.backend().buffer();
        let (row, line) = screen
            .lines()
            .enumerate()
            .find(|(_, line)| line.contains(needle))
            .unwrap();
        let column = line.find(needle).unwrap();
        let column = line[..column].chars().count() - 1;
        buffer[(column as u16, row as u16)].fg
    };
    assert_eq!(cell_colour("2.5s"), Color::Yellow);
    assert_eq!(cell_colour("40MB"), Color::Yellow);
    assert_eq!(cell_colour("12ms"), Color::Reset);
    insta::assert_snapshot!(screen);
}

#[test]
fn w_writes_what_the_filter_shows_as_headless_lines() {
    let (mut shop, mut state) = filtered("op:update");
    shop.draw(&mut state, 100, 30);
    let effects = press(&shop, &mut state, &[Action::Export]);
    assert_eq!(effects, []);
    assert_eq!(state.mode(), Mode::ExportPath);
    insta::assert_snapshot!(screen(&mut shop, &mut state, 100, 30));
    for _ in 0.."events.jsonl".len() {
        press(&shop, &mut state, &[Action::DeleteBack]);
    }
    for c in "updates.jsonl".chars() {
        state.type_char(c);
    }
    let effects = press(&shop, &mut state, &[Action::Confirm]);
    assert_eq!(
        effects,
        [Effect::Export(
            "/home/ada/shop/.cdc-tui/updates.jsonl".into()
        )]
    );
    let (lines, count) = shop.feed.json_lines();
    assert_eq!(count, 6);
    let expected: Vec<u8> = [1, 4, 8, 11, 15, 18]
        .into_iter()
        .flat_map(|number| {
            let mut line = Vec::new();
            shop.feed.entry(number).unwrap().write_json_line(&mut line);
            line
        })
        .collect();
    assert_eq!(lines, expected);
}

#[test]
fn the_plain_log_shows_schema_error_and_message_notes_in_place() {
    let mut shop = Shop::new(100);
    shop.push_notes();
    let mut state = UiState::default();
    let screen = screen(&mut shop, &mut state, 120, 30);
    let lines: Vec<&str> = screen.lines().collect();
    let row = |needle: &str| {
        lines
            .iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{screen}"))
    };
    // In place: after the two inserts, before the update they came before.
    let schema = row("schema   public.orders columns");
    assert!(lines[schema].contains("added coupon (text)"), "{screen}");
    assert!(row("id=2") < schema && schema < row("update"), "{screen}");
    let message = row("release 2026.11.25 rolled out");
    let error = row("neither a cdc-tui change nor a Debezium event");
    assert!(lines[error].contains("cdc.shop.orders #41"), "{screen}");
    assert!(row("update") < message && message < error && error < row("delete"));
    assert!(lines[message].contains("message  deploy"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn a_note_is_selectable_and_its_detail_shows_all_of_it() {
    let mut shop = Shop::new(100);
    shop.push_notes();
    let mut state = UiState {
        focus: Focus::Log,
        ..UiState::default()
    };
    shop.draw(&mut state, 120, 30);
    // From the newest row (the delete) up to the error.
    let effects = press(&shop, &mut state, &[Action::Up, Action::OpenDetail]);
    let [Effect::OpenDetail(row)] = effects[..] else {
        panic!("{effects:?}");
    };
    let number = crate::tui::log_index::note_of_row(row).expect("a note's row");
    let note = shop.feed.note(number).unwrap();
    assert!(matches!(note.kind, NoteKind::Error { .. }), "{note:?}");
    state.show_note(TxView::of_note(row, &note, shop.info.zone));
    let screen = screen(&mut shop, &mut state, 120, 30);
    assert!(
        screen.contains("expected value at line 1 column 1"),
        "the whole message: {screen}"
    );
    assert_eq!(
        press(&shop, &mut state, &[Action::Copy]),
        [Effect::Copy(row)]
    );
    // Previous: the message note before it.
    let effects = press(&shop, &mut state, &[Action::Previous]);
    let [Effect::OpenDetail(previous)] = effects[..] else {
        panic!("{effects:?}");
    };
    assert_eq!(
        crate::tui::log_index::note_of_row(previous),
        Some(number - 1)
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn a_filter_keeps_the_notes_it_is_about() {
    let mut shop = Shop::new(100);
    shop.push_notes();
    let shown = |shop: &mut Shop, filter: &str| {
        let mut state = UiState {
            filter: filter.into(),
            ..UiState::default()
        };
        screen(shop, &mut state, 120, 30)
    };
    let table = shown(&mut shop, "table:orders");
    assert!(table.contains("added coupon (text)"), "{table}");
    assert!(
        !table.contains("rolled out") && !table.contains("Debezium"),
        "{table}"
    );
    assert!(
        table.contains("5 matches"),
        "four changes, the schema note: {table}"
    );
    let errors = shown(&mut shop, "op:error");
    assert!(
        errors.contains("Debezium") && !errors.contains("insert"),
        "{errors}"
    );
    let keys = shown(&mut shop, "key:1");
    assert!(
        !keys.contains("schema") && !keys.contains("error"),
        "{keys}"
    );
    let word = shown(&mut shop, "release");
    assert!(
        word.contains("rolled out") && !word.contains("update"),
        "{word}"
    );
    let other = shown(&mut shop, "table:items");
    assert!(other.contains("no event matches the filter"), "{other}");
}

#[test]
fn a_streamed_transaction_running_and_one_rolled_back_are_pinned_under_the_log() {
    use crate::registry::RunningTransaction;
    let mut shop = Shop::new(100);
    shop.push_transactions();
    let orders = shop.handle(0).clone();
    orders.set_running_transactions(vec![RunningTransaction {
        id: "901".into(),
        changes: 180_000,
        discarded: 0,
        tables: vec!["public.events".into()],
    }]);
    orders.note_rolled_back(RunningTransaction {
        id: "902".into(),
        changes: 1_200,
        discarded: 0,
        tables: vec!["public.events".into(), "public.audit".into()],
    });
    let mut state = UiState::default();
    press(&shop, &mut state, &[Action::ToggleGrouping]);
    let grouped = screen(&mut shop, &mut state, 120, 30);
    let running = "⏵ tx 901 · running · 180,000 changes so far · public.events";
    let rolled_back =
        "⏵ tx 902 · rolled back · 1,200 changes discarded · public.events, public.audit";
    assert!(grouped.contains(running), "{grouped}");
    assert!(grouped.contains(rolled_back), "{grouped}");
    // Under the newest row, which still shows: the window has room for the pinned rows.
    let lines: Vec<&str> = grouped.lines().collect();
    let newest = lines.iter().position(|l| l.contains("tx 813")).unwrap();
    let pinned = lines.iter().position(|l| l.contains(running)).unwrap();
    assert!(newest < pinned, "{grouped}");
    insta::assert_snapshot!(grouped);

    // The plain view pins them too.
    press(&shop, &mut state, &[Action::ToggleGrouping]);
    let plain = screen(&mut shop, &mut state, 120, 30);
    assert!(plain.contains(running), "{plain}");

    // It grows; once it is gone from the listener's counters (committed), it stays pinned
    // until its changes reach the log.
    orders.set_running_transactions(vec![RunningTransaction {
        id: "901".into(),
        changes: 250_000,
        discarded: 0,
        tables: vec!["public.events".into()],
    }]);
    let plain = screen(&mut shop, &mut state, 120, 30);
    assert!(
        plain.contains("tx 901 · running · 250,000 changes so far"),
        "{plain}"
    );
    orders.set_running_transactions(Vec::new());
    let plain = screen(&mut shop, &mut state, 120, 30);
    assert!(
        plain.contains("tx 901 · running · 250,000 changes so far"),
        "{plain}"
    );
    let change = change_of(
        &orders,
        Op::Insert,
        "public.events",
        json!({"id": 1}),
        serde_json::Value::Null,
        json!({"id": 1}),
        3000,
    );
    shop.log.extend(vec![in_tx(change, "901", 1)]);
    let plain = screen(&mut shop, &mut state, 120, 30);
    assert!(!plain.contains("⏵ tx 901"), "{plain}");
}

#[test]
fn a_streamed_transaction_shows_the_changes_of_its_rolled_back_savepoint_as_discarded() {
    use crate::change::Note;
    use crate::registry::RunningTransaction;
    let mut shop = Shop::new(100);
    let orders = shop.handle(0).clone();
    orders.set_running_transactions(vec![RunningTransaction {
        id: "901".into(),
        changes: 2,
        discarded: 120,
        tables: vec!["public.events".into()],
    }]);
    let mut state = UiState::default();
    press(&shop, &mut state, &[Action::ToggleGrouping]);
    let running = screen(&mut shop, &mut state, 120, 30);
    assert!(
        running.contains(
            "⏵ tx 901 · running · 2 changes so far · 120 discarded (rolled-back savepoint) · \
             public.events"
        ),
        "{running}"
    );
    insta::assert_snapshot!("savepoint_discarded_running", running);

    // It commits: its two changes and its transaction line, which counts what was left out.
    orders.set_running_transactions(Vec::new());
    let changes: Vec<_> = (1..=2)
        .map(|index| {
            let change = change_of(
                &orders,
                Op::Insert,
                "public.events",
                json!({"id": index}),
                serde_json::Value::Null,
                json!({"id": index}),
                3000 + i64::from(index),
            );
            in_tx(change, "901", index)
        })
        .collect();
    let committed = Note {
        listener: orders.identity_arc(),
        captured_at: crate::tui::testing::at(3002),
        kind: NoteKind::Transaction {
            id: "901".into(),
            position: "0/1A2B901".into(),
            commit_time: Some(crate::tui::testing::at(3000)),
            changes: 2,
            tables: vec!["public.events".into()],
            discarded: 120,
        },
    };
    shop.log.extend_with_notes(changes, vec![(2, committed)]);
    let grouped = screen(&mut shop, &mut state, 120, 30);
    assert!(
        grouped.contains(
            "tx 901 · 10:00:03.000 · 2 changes · 120 discarded (rolled-back savepoint) · \
             events +2"
        ),
        "{grouped}"
    );
    assert!(!grouped.contains("⏵ tx 901"), "no longer pinned: {grouped}");
    insta::assert_snapshot!(grouped);

    // Its detail says so too.
    press(&shop, &mut state, &[Action::SwitchFocus]);
    let effects = press(&shop, &mut state, &[Action::OpenDetail]);
    assert!(
        matches!(effects[..], [Effect::OpenTransaction(_)]),
        "{effects:?}"
    );
    open(&shop, &mut state, &effects[0]);
    let detail = screen(&mut shop, &mut state, 120, 30);
    assert!(
        detail.contains("discarded  120 (rolled-back savepoint)"),
        "{detail}"
    );
}

#[test]
fn the_header_shows_each_sinks_state_running_then_retrying_with_the_reason() {
    use crate::pipeline::sinks::nats::SinkStatus;
    let mut shop = Shop::new(100);
    shop.push_changes(10);
    let nats = shop.watch_sink("nats");
    let mut state = UiState::default();
    let starting = screen(&mut shop, &mut state, 140, 36);
    assert!(starting.contains("nats: starting"), "{starting}");
    nats.send_replace(SinkStatus {
        state: ListenerState::Running,
        reason: None,
    });
    let running = screen(&mut shop, &mut state, 140, 36);
    assert!(
        running.lines().next().unwrap().contains("· nats: running"),
        "{running}"
    );
    insta::assert_snapshot!("sink_running", running);
    nats.send_replace(SinkStatus {
        state: ListenerState::Retrying,
        reason: Some(
            "cannot connect to nats://ada:hunter2@127.0.0.1:4222: connection refused".into(),
        ),
    });
    let retrying = screen(&mut shop, &mut state, 140, 36);
    let header = retrying.lines().next().unwrap();
    assert!(
        header.contains("nats: retrying — cannot connect to nats://ada:***@127.0.0.1:4222"),
        "the reason, its password masked: {header}"
    );
    assert!(!retrying.contains("hunter2"));
    insta::assert_snapshot!("sink_retrying", retrying);
    // At 80 columns the sink's state still shows, the databases give way.
    let narrow = screen(&mut shop, &mut state, 80, 24);
    assert!(
        narrow.lines().next().unwrap().contains("nats: retrying"),
        "{narrow}"
    );
}

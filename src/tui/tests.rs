//! Screens drawn on a test backend from deterministic data, compared with insta snapshots.

use ratatui::style::Color;
use serde_json::json;

use crate::change::Op;
use crate::tui::effect::Effect;
use crate::tui::keys::Action;
use crate::tui::state::{Focus, UiState, View};
use crate::tui::testing::{Shop, change_of};
use crate::tui::theme::Theme;

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
        };
        effects.extend(state.apply(action, &view));
    }
    effects
}

fn screen(shop: &mut Shop, state: &mut UiState, width: u16, height: u16) -> String {
    shop.draw(state, width, height).backend().to_string()
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
            .map(str::to_string)
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
    let change = shop.feed.entry(8).unwrap();
    state.show_detail(8, change);
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
    let modes: [&[Action]; 8] = [
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
    ];
    for actions in modes {
        let mut state = UiState::default();
        shop.draw(&mut state, 100, 30);
        for effect in press(&shop, &mut state, actions) {
            match effect {
                Effect::OpenDetail(number) => {
                    state.show_detail(number, shop.feed.entry(number).unwrap());
                }
                Effect::OpenTransaction(anchor) => {
                    let (summary, changes) = shop.feed.transaction(anchor).unwrap();
                    state.show_transaction(crate::tui::transactions::TxView::new(
                        &summary,
                        &changes,
                        shop.info.zone,
                    ));
                }
                _ => {}
            }
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
            if let Effect::OpenDetail(number) = effect {
                state.show_detail(number, shop.feed.entry(number).unwrap());
            }
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
    let mut shop = Shop::new(100);
    shop.push_transactions();
    let mut state = UiState::default();
    press(
        &shop,
        &mut state,
        &[Action::ToggleGrouping, Action::SwitchFocus],
    );
    shop.draw(&mut state, 120, 30);
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
    let mut shop = Shop::new(100);
    shop.push_transactions();
    let mut state = UiState::default();
    press(
        &shop,
        &mut state,
        &[Action::ToggleGrouping, Action::SwitchFocus],
    );
    shop.draw(&mut state, 120, 30);
    let effects = press(
        &shop,
        &mut state,
        &[Action::Up, Action::Up, Action::OpenDetail],
    );
    let [Effect::OpenTransaction(anchor)] = effects[..] else {
        panic!("{effects:?}");
    };
    let (summary, changes) = shop.feed.transaction(anchor).unwrap();
    state.show_transaction(crate::tui::transactions::TxView::new(
        &summary,
        &changes,
        shop.info.zone,
    ));
    let screen = screen(&mut shop, &mut state, 120, 50);
    assert!(screen.contains("orders: 4 → 5"), "{screen}");
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

//! The contract suite: every scenario of `tests/contract/mod.rs` for every source and
//! strategy, as `<source>::<scenario>` (`logical::exact_changes_in_order`). A new source
//! implements `contract::Harness` in a file of its own under `tests/contract/` and gets a line
//! in `suite!` below.

mod support;

#[path = "contract/mod.rs"]
mod contract;

/// One test per scenario, in a module named for the harness.
macro_rules! suite {
    ($($source:ident => $harness:ty;)*) => {$(
        mod $source {
            scenarios!($harness:
                exact_changes_in_order,
                pause_then_resume_catches_up,
                stop_and_restart_resume_from_the_saved_position,
                a_database_down_at_start_is_retried_then_captured,
                kill_9_loses_nothing,
                a_bad_table_fails_naming_it,
            );
        }
    )*};
}

macro_rules! scenarios {
    ($harness:ty: $($scenario:ident,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $scenario() {
            crate::contract::$scenario::<$harness>().await;
        }
    )*};
}

suite! {
    logical => crate::contract::postgres_logical::Logical;
    polling => crate::contract::postgres_polling::Polling;
    change_stream => crate::contract::mongo_change_stream::ChangeStream;
    follow => crate::contract::jsonl_follow::Follow;
    binlog => crate::contract::mysql_binlog::Binlog;
    mysql_polling => crate::contract::mysql_polling::Polling;
    jetstream => crate::contract::nats_jetstream::JetStream;
}

//! PostgreSQL `polling` under the contract: `updated_at` is the cursor, polled every 100 ms.
//! Polling has no `before` and no commit time, and after a restart it cannot tell inserts
//! from updates (it reports `update`) and reads the saved cursor's rows again.

use serde_json::Value;

use super::postgres::{Postgres, Strategy};
use super::{Before, Traits};

pub type Polling = Postgres<PollingStrategy>;

pub struct PollingStrategy;

impl Strategy for PollingStrategy {
    const NAME: &'static str = "polling";

    fn listener_keys(_slot: &str) -> String {
        "cursor_column = \"updated_at\"\ninterval_ms = 100".to_string()
    }

    fn traits() -> Traits {
        Traits {
            before: Before::Null,
            op_after_restart: "update",
            repeats_saved: true,
            pause_holds: true,
        }
    }

    fn check_changes(changes: &[&Value]) {
        for change in changes {
            if change["op"] != "delete" {
                assert_eq!(
                    change["position"], change["after"]["updated_at"],
                    "the position is the cursor: {change}"
                );
            }
            assert!(change["commit_time"].is_null(), "{change}");
        }
    }
}

//! What every polling strategy (PostgreSQL's, MySQL's) shares under the contract:
//! `updated_at` is the cursor, polled every 100 ms. Polling has no `before` and no commit
//! time, and after a restart it cannot tell inserts from updates (it reports `update`) and
//! reads the saved cursor's rows again.

use serde_json::Value;

use super::{Before, Traits};

/// The listener keys.
pub fn listener_keys() -> String {
    "cursor_column = \"updated_at\"\ninterval_ms = 100".to_string()
}

pub fn traits() -> Traits {
    Traits {
        before: Before::Null,
        op_after_restart: "update",
        repeats_saved: true,
        pause_holds: true,
    }
}

/// The position is the cursor; there is no commit time.
pub fn check_changes(changes: &[&Value]) {
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

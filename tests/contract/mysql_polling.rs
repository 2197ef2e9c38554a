//! MySQL `polling` under the contract: `updated_at` (TIMESTAMP(6), set on every write) is the
//! cursor, polled every 100 ms. Polling has no `before` and no commit time, and after a
//! restart it cannot tell inserts from updates and reads the saved cursor's rows again.

use serde_json::Value;

use super::mysql::{Mysql, Strategy};
use super::{Before, Traits};

pub type Polling = Mysql<PollingStrategy>;

pub struct PollingStrategy;

impl Strategy for PollingStrategy {
    const NAME: &'static str = "polling";

    fn listener_keys() -> String {
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

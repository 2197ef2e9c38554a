//! PostgreSQL `logical` under the contract: a persistent slot per listener, the table under
//! REPLICA IDENTITY FULL (so updates and deletes carry `before`), positions that are commit
//! LSNs.

use serde_json::Value;

use super::postgres::{Postgres, Strategy};
use super::{Before, Traits};
use crate::support::lsn;

pub type Logical = Postgres<LogicalStrategy>;

pub struct LogicalStrategy;

impl Strategy for LogicalStrategy {
    const NAME: &'static str = "logical";

    fn listener_keys(slot: &str) -> String {
        format!("slot = \"{slot}\"")
    }

    fn traits() -> Traits {
        Traits {
            before: Before::Image,
            ..Traits::default()
        }
    }

    fn check_changes(changes: &[&Value]) {
        let positions: Vec<u64> = changes
            .iter()
            .map(|change| lsn(change["position"].as_str().expect("an LSN")))
            .collect();
        assert!(
            positions.windows(2).all(|pair| pair[0] <= pair[1]),
            "commit LSNs never go back: {positions:?}"
        );
        assert!(
            changes.iter().all(|change| change["commit_time"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))),
            "every change has its commit time"
        );
    }
}

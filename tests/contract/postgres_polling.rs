//! PostgreSQL `polling` under the contract, as every polling strategy ([`super::polling`]).

use serde_json::Value;

use super::Traits;
use super::polling;
use super::postgres::{Postgres, Strategy};

pub type Polling = Postgres<PollingStrategy>;

pub struct PollingStrategy;

impl Strategy for PollingStrategy {
    const NAME: &'static str = "polling";

    fn listener_keys(_slot: &str) -> String {
        polling::listener_keys()
    }

    fn traits() -> Traits {
        polling::traits()
    }

    fn check_changes(changes: &[&Value]) {
        polling::check_changes(changes);
    }
}

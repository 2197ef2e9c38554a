//! MySQL `polling` under the contract, as every polling strategy ([`super::polling`]):
//! `updated_at` is a TIMESTAMP(6) set on every write.

use serde_json::Value;

use super::Traits;
use super::mysql::{Mysql, Strategy};
use super::polling;

pub type Polling = Mysql<PollingStrategy>;

pub struct PollingStrategy;

impl Strategy for PollingStrategy {
    const NAME: &'static str = "polling";

    fn listener_keys() -> String {
        polling::listener_keys()
    }

    fn traits() -> Traits {
        polling::traits()
    }

    fn check_changes(changes: &[&Value]) {
        polling::check_changes(changes);
    }
}

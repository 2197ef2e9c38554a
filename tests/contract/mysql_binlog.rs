//! MySQL `binlog` under the contract, on MariaDB: a replica of the listener's own, row images
//! before and after, positions that are MariaDB GTIDs (`domain-server-sequence`).

use serde_json::Value;

use super::mysql::{Mysql, Strategy};
use super::{Before, Traits};

pub type Binlog = Mysql<BinlogStrategy>;

pub struct BinlogStrategy;

/// The sequence number of a GTID `0-1-42`.
fn sequence(gtid: &str) -> u64 {
    let parts: Vec<&str> = gtid.split('-').collect();
    assert_eq!(parts.len(), 3, "a MariaDB GTID: {gtid}");
    parts[2].parse().expect("a sequence number")
}

impl Strategy for BinlogStrategy {
    const NAME: &'static str = "binlog";

    fn listener_keys() -> String {
        String::new()
    }

    fn traits() -> Traits {
        Traits {
            before: Before::Image,
            ..Traits::default()
        }
    }

    fn check_changes(changes: &[&Value]) {
        let sequences: Vec<u64> = changes
            .iter()
            .map(|change| sequence(change["position"].as_str().expect("a GTID")))
            .collect();
        assert!(
            sequences.windows(2).all(|pair| pair[0] <= pair[1]),
            "GTIDs never go back: {sequences:?}"
        );
        for change in changes {
            assert_eq!(change["tx"]["id"], change["position"], "{change}");
            assert!(
                change["commit_time"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z')),
                "every change has its commit time: {change}"
            );
        }
    }
}

//! MySQL `binlog` under the contract, on MariaDB (or the server of `CDC_TEST_MYSQL_URL`): a
//! replica of the listener's own, row images before and after, positions that are MariaDB
//! GTIDs (`domain-server-sequence`), MySQL GTIDs (`uuid:n`) or `file:pos`.

use serde_json::Value;

use super::mysql::{Mysql, Strategy};
use super::{Before, Traits};

pub type Binlog = Mysql<BinlogStrategy>;

pub struct BinlogStrategy;

/// What orders a change's position: the sequence number of a MariaDB GTID `0-1-42`; the
/// transaction number of a MySQL GTID `uuid:42` (one source server here); the file and
/// offset of `binlog.000003:1234`.
fn sequence(position: &str) -> (String, u64) {
    let parts: Vec<&str> = position.split('-').collect();
    if parts.len() == 3 {
        return (String::new(), parts[2].parse().expect("a sequence number"));
    }
    let (before, number) = position.rsplit_once(':').expect("a GTID or file:pos");
    let number = number.parse().expect("a number after ':'");
    match before.len() == 36 && before.matches('-').count() == 4 {
        true => (String::new(), number),
        false => (before.to_string(), number),
    }
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
        let sequences: Vec<(String, u64)> = changes
            .iter()
            .map(|change| sequence(change["position"].as_str().expect("a position")))
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

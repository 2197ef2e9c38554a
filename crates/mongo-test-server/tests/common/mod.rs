//! What the test binaries of this crate share: a deadline for every wait, and a legacy
//! handshake written by hand.
#![allow(dead_code)] // each test binary uses a different part

use std::future::IntoFuture;
use std::time::Duration;

use mongodb::bson::doc;

/// Generous: the machine is small and debug builds are slow, but nothing
/// here should take more than a couple of seconds.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub async fn within<T>(what: &str, fut: impl IntoFuture<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A legacy OP_QUERY `isMaster` on `admin.$cmd`, the first message old drivers send.
pub fn op_query_is_master(request_id: i32) -> Vec<u8> {
    let mut query = Vec::new();
    doc! { "isMaster": 1, "helloOk": true, "client": { "driver": { "name": "hand", "version": "0" } } }
        .to_writer(&mut query)
        .unwrap();
    let mut msg = Vec::new();
    msg.extend_from_slice(&0i32.to_le_bytes()); // length, patched below
    msg.extend_from_slice(&request_id.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes()); // responseTo
    msg.extend_from_slice(&2004i32.to_le_bytes()); // OP_QUERY
    msg.extend_from_slice(&0i32.to_le_bytes()); // flags
    msg.extend_from_slice(b"admin.$cmd\0");
    msg.extend_from_slice(&0i32.to_le_bytes()); // numberToSkip
    msg.extend_from_slice(&(-1i32).to_le_bytes()); // numberToReturn
    msg.extend_from_slice(&query);
    let len = msg.len() as i32;
    msg[..4].copy_from_slice(&len.to_le_bytes());
    msg
}

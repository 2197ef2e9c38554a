//! A MongoDB wire-protocol test server that behaves as a replica-set primary:
//! `cargo run --release --example mongo_test_server -- --port 27017` serves on 127.0.0.1 until
//! killed.

fn main() -> std::io::Result<()> {
    mongo_test_server::run_cli(std::env::args().skip(1))
}

//! Fuzzes `mongo_test_server::wire::parse_message` on arbitrary wire messages.
//! The properties live in `tests/fuzz_regressions/checks.rs`, shared with the regression tests.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz_regressions/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::mongo_wire(data));

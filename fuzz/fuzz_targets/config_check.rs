//! Fuzzes `cdc_tui::config::check_text` (parse, then validate) on arbitrary config text.
//! The properties live in `tests/fuzz_regressions/checks.rs`, shared with the regression tests.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz_regressions/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config_check(data));

//! What the fuzz targets (`fuzz/fuzz_targets/`) check for each input, shared with
//! `tests/fuzz_regressions.rs`, which replays the kept inputs through the same checks.
//! Each check panics on a broken property; returning means the input passed.

use std::path::Path;

use cdc_tui::config;
use cdc_tui::source::postgres::pgoutput;
use mongo_test_server::wire;

/// The pgoutput decoder, outside and inside a stream: no panic, and an error points inside
/// the payload.
pub fn pgoutput_decode(data: &[u8]) {
    for in_stream in [false, true] {
        if let Err(error) = pgoutput::decode_in(data, in_stream) {
            assert!(
                error.offset <= data.len(),
                "offset {} past the end of a {}-byte payload: {error}",
                error.offset,
                data.len()
            );
            assert!(!error.to_string().is_empty());
        }
    }
}

/// The config loader (parse, then validate, with and without `--demo`): no panic, and an
/// error names a line of the text and starts with `file:line: `.
pub fn config_check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("cdc.toml");
    let lines = text.matches('\n').count() + 1;
    for demo in [false, true] {
        if let Err(error) = config::check_text(path, text, demo) {
            assert!(
                (1..=lines).contains(&error.line),
                "line {} is not a line of the {lines}-line text: {error}",
                error.line
            );
            let shown = error.to_string();
            let prefix = format!("cdc.toml:{}: ", error.line);
            assert!(shown.starts_with(&prefix), "{shown:?} lacks {prefix:?}");
        }
    }
}

/// The MongoDB test server's message parser: no panic, on the input as given and on the input
/// with its length field set to its real length (random bytes seldom agree with their own
/// length field, which would keep the fuzzer from ever reaching the sections).
pub fn mongo_wire(data: &[u8]) {
    wire_message(data);
    if data.len() >= 4 {
        let mut framed = data.to_vec();
        let len = i32::try_from(data.len()).unwrap_or(i32::MAX);
        framed[..4].copy_from_slice(&len.to_le_bytes());
        wire_message(&framed);
    }
}

fn wire_message(bytes: &[u8]) {
    match wire::parse_message(bytes) {
        Ok(message) => {
            assert_eq!(
                usize::try_from(message.header.message_length).ok(),
                Some(bytes.len())
            );
            if let wire::Body::Msg(msg) = message.body {
                let _command = msg.into_command();
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

//! Inputs kept from fuzzing (`fuzz/run.sh`): findings once fixed, and a few seeds that reach
//! deep into each parser. Each file under `tests/fuzz_regressions/<target>/` goes through the
//! same checks as the fuzz target of that name.

#[path = "fuzz_regressions/checks.rs"]
mod checks;

use std::path::PathBuf;

/// Runs every kept input of `target` through `check`; panics name the file.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("read a kept input");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} failed its check", file.display());
    }
}

#[test]
fn pgoutput_decode() {
    replay("pgoutput_decode", checks::pgoutput_decode);
}

#[test]
fn config_check() {
    replay("config_check", checks::config_check);
}

#[test]
fn mongo_wire() {
    replay("mongo_wire", checks::mongo_wire);
}

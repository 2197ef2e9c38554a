//! The command line of the real binary: --check-config, exit codes, usage errors.

use std::process::Command;

fn cdc_tui(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cdc-tui"))
        .args(args)
        .current_dir(dir)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run cdc-tui")
}

#[test]
fn check_config_names_file_line_and_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = "\
[pipeline]
chunk_size = 100
timeout_ms = 200

[[database]]
name = \"shop\"
kind = \"postgres\"
passwrd = \"oops\"
url = \"postgres://app:secret@127.0.0.1:5432/shop\"
";
    std::fs::write(dir.path().join("cdc.toml"), config).unwrap();
    let output = cdc_tui(&["--check-config"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cdc.toml:8: passwrd: unknown field `passwrd`"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn check_config_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("elsewhere.toml");
    std::fs::write(
        &path,
        "[[database]]\nname = \"shop\"\nkind = \"postgres\"\nurl = \"postgres://app:secret@h/shop\"\n",
    )
    .unwrap();
    let output = cdc_tui(
        &["--check-config", "-c", path.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ok (1 database, 0 listeners)"), "{stdout}");
}

#[test]
fn a_missing_config_and_a_bad_flag_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let output = cdc_tui(&["--headless"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no config file"));

    let output = cdc_tui(&["--frobnicate"], dir.path());
    assert_eq!(output.status.code(), Some(2));

    let output = cdc_tui(&["--version"], dir.path());
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("cdc-tui "));
}

#[test]
fn replay_of_a_file_that_is_not_a_recording_says_which_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "\nhello, not a record\n").unwrap();
    let output = cdc_tui(&["--replay", "notes.txt"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("notes.txt line 2: not a JSON-lines record"),
        "{stderr}"
    );
    let output = cdc_tui(&["--replay", "absent.jsonl"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read absent.jsonl"));
    let output = cdc_tui(&["--replay-speed", "2"], dir.path());
    assert_eq!(
        output.status.code(),
        Some(2),
        "--replay-speed needs --replay"
    );
}

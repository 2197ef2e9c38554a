//! Load and soak: 10 logical listeners on 10 tables at a combined 5,000 changes/s for 60 s,
//! against a throwaway cluster. Nothing may be lost or repeated (counted per table), and the
//! binary's memory must stay flat (VmRSS sampled every 5 s).
//!
//! Not part of the ordinary run:
//! `cargo test --release --test soak -- --ignored --nocapture`

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::{Instant, MissedTickBehavior};

const TABLES: usize = 10;
const RATE: usize = 5_000;
const SECONDS: usize = 60;
const TICK: Duration = Duration::from_millis(100);
const ROWS_PER_TABLE: usize = RATE * SECONDS / TABLES;
/// Rows per table per tick.
const PER_TICK: usize = RATE / TABLES / 10;

/// What the reader saw: per table, how often each id arrived.
struct Tally {
    seen: Vec<Vec<u8>>,
    changes: usize,
    flushes: usize,
    statuses: Vec<String>,
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: cargo test --release --test soak -- --ignored --nocapture"]
async fn ten_listeners_at_5000_changes_per_second_for_a_minute() {
    let db = support::TestDb::new("soak").await;
    let client = db.client().await;
    let mut config = format!(
        "[[database]]\nname = \"db\"\nkind = \"postgres\"\nurl = \"{}\"\n\n",
        db.url
    );
    for table in 0..TABLES {
        client
            .batch_execute(&format!(
                "CREATE TABLE t{table} (id int PRIMARY KEY, qty int, note text)"
            ))
            .await
            .expect("table");
        config.push_str(&format!(
            "[[listener]]\nidentifier = \"l{table}\"\ndatabase = \"db\"\ntable = \"t{table}\"\n\
             strategy = \"logical\"\n\n"
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("cdc.toml"), config).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cdc-tui"))
        .args(["--headless", "--config", "cdc.toml"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cdc-tui");
    let pid = child.id().expect("pid");
    let tally = Arc::new(Mutex::new(Tally {
        seen: vec![vec![0; ROWS_PER_TABLE + 1]; TABLES],
        changes: 0,
        flushes: 0,
        statuses: Vec::new(),
    }));
    let reader = {
        let tally = tally.clone();
        let stdout = child.stdout.take().expect("stdout");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let value: Value = serde_json::from_str(&line).expect("a JSON line");
                let mut tally = tally.lock().expect("tally");
                match value["type"].as_str() {
                    Some("change") => {
                        let table: usize = value["table"].as_str().expect("table")[1..]
                            .parse()
                            .expect("tN");
                        let id = value["key"]["id"].as_u64().expect("id") as usize;
                        tally.seen[table][id] = tally.seen[table][id].saturating_add(1);
                        tally.changes += 1;
                    }
                    Some("flush") => tally.flushes += 1,
                    Some("status") => tally.statuses.push(format!(
                        "{} {}",
                        value["listener"].as_str().unwrap_or_default(),
                        value["state"].as_str().unwrap_or_default()
                    )),
                    _ => {}
                }
            }
        })
    };
    support::wait_until("every listener running", || {
        let tally = tally.lock().expect("tally");
        tally
            .statuses
            .iter()
            .filter(|s| s.ends_with(" running"))
            .count()
            == TABLES
    })
    .await;

    let mut samples = vec![(0.0, vm_rss_kib(pid))];
    let started = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut next_sample = started + Duration::from_secs(5);
    let mut behind_max = Duration::ZERO;
    for tick in 0..(SECONDS * 10) {
        let due = ticks.tick().await;
        behind_max = behind_max.max(due.elapsed());
        let from = (tick * PER_TICK + 1) as i32;
        let to = ((tick + 1) * PER_TICK) as i32;
        for table in 0..TABLES {
            client
                .execute(
                    &format!(
                        "INSERT INTO t{table} SELECT g, g % 7, 'soak row ' || g \
                         FROM generate_series($1::int, $2::int) g"
                    ),
                    &[&from, &to],
                )
                .await
                .expect("insert");
        }
        if Instant::now() >= next_sample {
            samples.push((started.elapsed().as_secs_f64(), vm_rss_kib(pid)));
            next_sample += Duration::from_secs(5);
        }
    }
    let written_in = started.elapsed();
    let total = ROWS_PER_TABLE * TABLES;
    support::eventually_within(
        Duration::from_secs(120),
        "every change",
        async || match tally.lock().expect("tally").changes {
            changes if changes >= total => Ok(()),
            changes => Err(format!("only {changes} of {total} changes arrived")),
        },
    )
    .await;
    let drained_in = started.elapsed();
    samples.push((drained_in.as_secs_f64(), vm_rss_kib(pid)));

    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("wait");
    reader.await.expect("reader");
    assert_eq!(exit.code(), Some(0));

    let tally = tally.lock().expect("tally");
    let mut report = String::new();
    for (table, seen) in tally.seen.iter().enumerate() {
        let once = seen[1..].iter().filter(|&&n| n == 1).count();
        let missing = seen[1..].iter().filter(|&&n| n == 0).count();
        let repeated = seen[1..].iter().filter(|&&n| n > 1).count();
        report.push_str(&format!(
            "t{table}: {once} once, {missing} missing, {repeated} repeated\n"
        ));
        assert_eq!(
            (once, missing, repeated),
            (ROWS_PER_TABLE, 0, 0),
            "t{table}: every row exactly once"
        );
    }
    let kib: Vec<u64> = samples.iter().map(|(_, kib)| *kib).collect();
    let (first, last) = (kib[0], *kib.last().expect("a sample"));
    let max = *kib.iter().max().expect("a sample");
    let after_warmup = kib[1.min(kib.len() - 1)];
    eprintln!(
        "soak: {total} changes ({RATE}/s target) in {:.1} s of writing ({:.0}/s), all \
         delivered {:.1} s after the start ({:.2} s after the last write), {} batches; \
         the writer was at most {behind_max:?} behind its schedule",
        written_in.as_secs_f64(),
        total as f64 / written_in.as_secs_f64(),
        drained_in.as_secs_f64(),
        (drained_in - written_in).as_secs_f64(),
        tally.flushes
    );
    eprint!("{report}");
    eprintln!(
        "VmRSS KiB: first {first}, last {last}, max {max}; samples (s, KiB): {:?}",
        samples
            .iter()
            .map(|(at, kib)| (at.round() as u64, *kib))
            .collect::<Vec<_>>()
    );
    // Flat: once warmed up, the binary holds bounded queues and nothing that grows with the
    // number of changes.
    assert!(
        last <= after_warmup + 32 * 1024 && max <= after_warmup + 64 * 1024,
        "memory grows: {kib:?}"
    );
}

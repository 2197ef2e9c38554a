//! End-to-end benchmarks of the logical replication listener on a throwaway PostgreSQL cluster,
//! measured against the server's own client, `pg_recvlogical`.
//!
//! * **drain**: slots created before a workload of 175,000 changes (100,000 inserts in
//!   1,000-row transactions, 50,000 updates, 25,000 deletes; `REPLICA IDENTITY FULL`; columns
//!   bigint, int, text), one slot per contender and round. Each contender drains its own slot;
//!   it is done when the slot's `confirmed_flush_lsn` reaches the end of the workload (polled
//!   every 20 ms). Contenders: `pg_recvlogical` with `pgoutput` (the reference) and with
//!   `wal2json` (when the plugin is installed), cdc-tui headless (stdout to /dev/null) and
//!   cdc-tui with the TUI drawing in a 200x50 tmux pane. A verification run counts cdc-tui's
//!   change lines, and the TUI's counters are read off its screen.
//! * **scopes**: 20 tables of 5,000 inserts each (100,000 changes in 1,000-row transactions),
//!   watched two ways by one cdc-tui: 20 single-table logical listeners (20 slots), and one
//!   `public.s_*` scope listener (one slot); `pg_recvlogical -P pgoutput` on one slot for all
//!   20 tables is the server's reference. Reported: drain time, the WAL senders' CPU seconds,
//!   slots.
//! * **latency**: a steady 2,000 changes/s; commit-to-flush time per change, from its
//!   `commit_time` to the moment its batch's `flush` line appears on headless stdout, with the
//!   default pipeline settings and with `timeout_ms = 0`.
//! * **memory**: peak RSS (`VmHWM`) of cdc-tui headless and TUI while draining 1,000,000
//!   changes with `log_capacity = 10000`, read at 250k, 500k and 1M changes.
//! * **streamed**: one transaction of 1,000,000 inserts with `logical_decoding_work_mem =
//!   64kB`, so the server streams it while it runs: cdc-tui headless's in-progress counter
//!   (the `running` of its `status` answers, asked every 100 ms) before the COMMIT, the time
//!   from the COMMIT returning to the last change on stdout, and peak RSS (`VmHWM`).
//!
//! * **mysql**, **mysql-memory**: the drain and memory benchmarks on a throwaway MariaDB
//!   against `mariadb-binlog` ([`mysql`]).
//!
//! Run: `cargo bench --bench drain`; options after `--`:
//! `--only drain,scopes,latency,memory,streamed,mysql,mysql-memory`, `--rounds N` (3),
//! `--latency-seconds N` (20), `--memory-changes N` (1,000,000), `--streamed-rows N`
//! (1,000,000). `CDC_BENCH_WRAP` runs the headless contenders under a profiler.
//! `CDC_BENCH_BASELINE=<path of another cdc-tui binary>` adds that binary as one more headless
//! contender of the drain, for a before/after comparison within one run. BENCHMARKS.md has the
//! figures and how to read them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use cdc_tui::source::postgres::logical::{format_lsn, parse_lsn};
use chrono::{DateTime, Utc};
use pgcluster::{ClusterOptions, PgCluster, find_server_bindir};
use tokio_postgres::Client;

#[path = "drain/mysql.rs"]
mod mysql;
#[path = "common/nats_server.rs"]
mod nats_server;
use nats_server::NatsServer;
#[path = "../tests/support/mod.rs"]
mod support;

/// The release binary, built by `cargo bench` with the bench profile.
const CDC_TUI: &str = env!("CARGO_BIN_EXE_cdc-tui");
const DATABASE: &str = "bench";
/// How often the slots are polled.
const POLL: Duration = Duration::from_millis(20);
/// No single drain may take longer.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);
/// Rows per workload transaction.
const TX_ROWS: u64 = 1_000;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("drain: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("drain: {error:#}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    drain: bool,
    scopes: bool,
    latency: bool,
    memory: bool,
    streamed: bool,
    mysql: bool,
    mysql_memory: bool,
    rounds: usize,
    latency_seconds: u64,
    memory_changes: u64,
    streamed_rows: u64,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
        let mut options = Options {
            drain: true,
            scopes: true,
            latency: true,
            memory: true,
            streamed: true,
            mysql: true,
            mysql_memory: true,
            rounds: 3,
            latency_seconds: 20,
            memory_changes: 1_000_000,
            streamed_rows: 1_000_000,
        };
        while let Some(arg) = args.next() {
            let mut value =
                |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                // Passed by `cargo bench`.
                "--bench" => {}
                "--only" => {
                    let parts = value("--only")?;
                    options.drain = false;
                    options.scopes = false;
                    options.latency = false;
                    options.memory = false;
                    options.streamed = false;
                    options.mysql = false;
                    options.mysql_memory = false;
                    for part in parts.split(',') {
                        match part.trim() {
                            "drain" => options.drain = true,
                            "scopes" => options.scopes = true,
                            "latency" => options.latency = true,
                            "memory" => options.memory = true,
                            "streamed" => options.streamed = true,
                            "mysql" => options.mysql = true,
                            "mysql-memory" => options.mysql_memory = true,
                            other => bail!(
                                "--only takes drain, scopes, latency, memory, streamed, mysql, \
                                 mysql-memory; not {other:?}"
                            ),
                        }
                    }
                }
                "--rounds" => options.rounds = value("--rounds")?.parse()?,
                "--latency-seconds" => {
                    options.latency_seconds = value("--latency-seconds")?.parse()?
                }
                "--streamed-rows" => options.streamed_rows = value("--streamed-rows")?.parse()?,
                "--memory-changes" => {
                    options.memory_changes = value("--memory-changes")?.parse()?
                }
                other => bail!(
                    "unknown argument {other:?} (options: --only \
                     drain,scopes,latency,memory,streamed,mysql,mysql-memory, --rounds N, \
                     --latency-seconds N, --memory-changes N, --streamed-rows N)"
                ),
            }
        }
        options.rounds = options.rounds.max(1);
        Ok(options)
    }
}

async fn run(options: Options) -> anyhow::Result<()> {
    println!("{}", machine());
    if options.drain || options.scopes || options.latency || options.memory || options.streamed {
        let bench = Bench::start().await?;
        if options.drain {
            bench.drain(options.rounds).await?;
        }
        if options.scopes {
            bench.scopes().await?;
        }
        if options.latency {
            bench.latency(options.latency_seconds).await?;
        }
        if options.memory {
            bench.memory(options.memory_changes).await?;
        }
        if options.streamed {
            bench.streamed(options.streamed_rows).await?;
        }
        bench.cluster.stop().await?;
    }
    if options.mysql || options.mysql_memory {
        let bench = mysql::MysqlBench::start().await?;
        if options.mysql {
            bench.drain(options.rounds).await?;
        }
        if options.mysql_memory {
            bench.memory(options.memory_changes).await?;
        }
        bench.stop().await;
    }
    Ok(())
}

/// The CPU, its cores and the memory, for the record.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU", |(_, model)| model.trim());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kb = status_kb(&meminfo, "MemTotal:").unwrap_or(0);
    format!(
        "machine: {model}, {} cores, {:.1} GiB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_kb as f64 / 1024.0 / 1024.0
    )
}

struct Bench {
    cluster: PgCluster,
    client: Client,
    recvlogical: PathBuf,
    work: tempfile::TempDir,
}

/// One table of the benchmark, with its publication.
struct Table {
    name: &'static str,
    publication: String,
}

impl Table {
    fn new(name: &'static str) -> Table {
        Table {
            name,
            publication: format!("{name}_pub"),
        }
    }
}

/// Numbers of changes, each a multiple of `TX_ROWS`: inserts of ids 1.., then updates of the
/// first ids, then deletes of the ids after those; or, `interleaved`, the same mix all along.
#[derive(Clone, Copy)]
struct Workload {
    inserts: u64,
    updates: u64,
    deletes: u64,
    interleaved: bool,
}

impl Workload {
    fn total(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }

    /// `total` changes in blocks of 4 insert, 2 update and 1 delete transactions (the
    /// drain's 4:2:1), so every stretch of the stream holds the same mix.
    fn interleaved(total: u64) -> Workload {
        let mut workload = Workload {
            inserts: 0,
            updates: 0,
            deletes: 0,
            interleaved: true,
        };
        for at in 0..total / TX_ROWS {
            match at % 7 {
                0..=3 => workload.inserts += TX_ROWS,
                4 | 5 => workload.updates += TX_ROWS,
                _ => workload.deletes += TX_ROWS,
            }
        }
        workload
    }

    /// The workload's transactions, in order: each a step on the `TX_ROWS` ids from the
    /// one given.
    fn transactions(&self) -> Vec<(Step, u64)> {
        let steps = |count: u64| (0..count / TX_ROWS).map(|at| 1 + at * TX_ROWS);
        if !self.interleaved {
            return (steps(self.inserts).map(|first| (Step::Insert, first)))
                .chain(steps(self.updates).map(|first| (Step::Update, first)))
                .chain(steps(self.deletes).map(|first| (Step::Delete, self.updates + first)))
                .collect();
        }
        // Block k inserts ids 4000k+1 ..= 4000k+4000, updates the first 2000 of them and
        // deletes the next 1000.
        let transactions = (self.inserts + self.updates + self.deletes) / TX_ROWS;
        (0..transactions)
            .map(|at| {
                let base = at / 7 * 4 * TX_ROWS + 1;
                match at % 7 {
                    step @ 0..=3 => (Step::Insert, base + step * TX_ROWS),
                    step @ (4 | 5) => (Step::Update, base + (step - 4) * TX_ROWS),
                    _ => (Step::Delete, base + 2 * TX_ROWS),
                }
            })
            .collect()
    }

    /// The workload's transactions in PostgreSQL's SQL.
    fn statements(&self, name: &str) -> Vec<String> {
        (self.transactions().into_iter())
            .map(|(step, first)| {
                let last = first + TX_ROWS - 1;
                match step {
                    Step::Insert => format!(
                        "INSERT INTO {name} SELECT g, g % 1000, 'row ' || g || ' of the drain \
                         benchmark' FROM generate_series({first}, {last}) g"
                    ),
                    Step::Update => format!(
                        "UPDATE {name} SET n = n + 1, note = note || ' (updated)' \
                         WHERE id BETWEEN {first} AND {last}"
                    ),
                    Step::Delete => {
                        format!("DELETE FROM {name} WHERE id BETWEEN {first} AND {last}")
                    }
                }
            })
            .collect()
    }
}

/// What a workload transaction does to its `TX_ROWS` ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Insert,
    Update,
    Delete,
}

/// The end of a workload: the WAL position after each transaction, with the changes so far.
struct Written {
    /// (changes so far, WAL insert position right after that transaction's commit)
    marks: Vec<(u64, u64)>,
    seconds: f64,
}

impl Written {
    fn end(&self) -> u64 {
        self.marks.last().map_or(0, |&(_, lsn)| lsn)
    }

    /// The position after which at least `changes` changes were committed.
    fn lsn_after(&self, changes: u64) -> u64 {
        self.marks
            .iter()
            .find(|&&(count, _)| count >= changes)
            .map_or_else(|| self.end(), |&(_, lsn)| lsn)
    }
}

impl Bench {
    async fn start() -> anyhow::Result<Bench> {
        let bindir = find_server_bindir()?;
        let recvlogical = bindir.join("pg_recvlogical");
        anyhow::ensure!(
            recvlogical.exists(),
            "{} is missing (apt-get install postgresql)",
            recvlogical.display()
        );
        let cluster = PgCluster::start(
            ClusterOptions::default()
                .setting("max_replication_slots", "40")
                .setting("max_wal_senders", "40")
                // Only the workload writes WAL: no vacuum between its last commit and the
                // position read after it.
                .setting("autovacuum", "off")
                .setting("max_wal_size", "4GB"),
        )
        .await?;
        cluster.create_database(DATABASE).await?;
        let client = cluster.connect(DATABASE).await?;
        // Commits are flushed before they return, so the walsender sees them at once and the
        // position read after a commit is past it.
        client.batch_execute("SET synchronous_commit = on").await?;
        Ok(Bench {
            cluster,
            client,
            recvlogical,
            work: tempfile::Builder::new().prefix("cdc-drain-").tempdir()?,
        })
    }

    fn url(&self) -> String {
        self.cluster.url(DATABASE)
    }

    async fn create_table(&self, table: &Table) -> anyhow::Result<()> {
        self.client
            .batch_execute(&format!(
                "CREATE TABLE {name} (id bigint PRIMARY KEY, n int NOT NULL, note text NOT NULL);
                 ALTER TABLE {name} REPLICA IDENTITY FULL;
                 CREATE PUBLICATION {publication} FOR TABLE {name};",
                name = table.name,
                publication = table.publication
            ))
            .await?;
        Ok(())
    }

    async fn create_slot(&self, slot: &str, plugin: &str) -> anyhow::Result<()> {
        self.client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, $2)",
                &[&slot, &plugin],
            )
            .await
            .with_context(|| format!("creating slot {slot} ({plugin})"))?;
        Ok(())
    }

    async fn drop_slot(&self, slot: &str) {
        let _ = self
            .client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await;
    }

    /// Whether the wal2json output plugin is installed: a slot can be created with it.
    async fn has_wal2json(&self) -> bool {
        let probe = "drain_wal2json_probe";
        let created = self.create_slot(probe, "wal2json").await.is_ok();
        if created {
            self.drop_slot(probe).await;
        }
        created
    }

    async fn wal_insert_lsn(&self) -> anyhow::Result<u64> {
        let row = self
            .client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await?;
        let text: String = row.get(0);
        parse_lsn(&text).with_context(|| format!("not an LSN: {text}"))
    }

    /// Runs the workload in `TX_ROWS`-row transactions.
    async fn write(&self, table: &Table, workload: Workload) -> anyhow::Result<Written> {
        let started = Instant::now();
        let mut marks = Vec::new();
        let mut changes = 0;
        let statements = workload.statements(table.name);
        for statement in statements {
            self.client.batch_execute(&statement).await?;
            changes += TX_ROWS;
            marks.push((changes, self.wal_insert_lsn().await?));
        }
        Ok(Written {
            marks,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The slot's confirmed flush position and the process id of the walsender streaming it.
    async fn slot_state(&self, slot: &str) -> anyhow::Result<(u64, Option<u32>)> {
        let row = self
            .client
            .query_opt(
                "SELECT confirmed_flush_lsn::text, active_pid FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .with_context(|| format!("slot {slot} is gone"))?;
        let text: Option<String> = row.get(0);
        let pid: Option<i32> = row.get(1);
        Ok((
            text.as_deref().and_then(parse_lsn).unwrap_or(0),
            pid.and_then(|pid| u32::try_from(pid).ok()),
        ))
    }

    /// A cdc.toml for one logical listener `identifier` on `table` through `slot`.
    fn config(
        &self,
        url: &str,
        dir: &Path,
        identifier: &str,
        table: &Table,
        slot: Option<&str>,
        pipeline: &str,
    ) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let slot = slot.map_or_else(String::new, |slot| format!("slot = \"{slot}\"\n"));
        let text = format!(
            "[pipeline]\n{pipeline}\n\n[state]\ndir = \"state\"\n\n\
             [[database]]\nname = \"bench\"\nkind = \"postgres\"\nurl = \"{url}\"\n\n\
             [[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"bench\"\n\
             table = \"public.{table}\"\nstrategy = \"logical\"\n{slot}publication = \"{publication}\"\n",
            table = table.name,
            publication = table.publication,
        );
        let path = dir.join("cdc.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn stderr_file(&self, name: &str) -> anyhow::Result<(PathBuf, std::fs::File)> {
        let path = self.work.path().join(format!("{name}.stderr"));
        let file = std::fs::File::create(&path)?;
        Ok((path, file))
    }

    /// Starts one contender on `slot`.
    fn spawn(
        &self,
        contender: Contender,
        slot: &str,
        table: &Table,
        end: u64,
        pipeline: &str,
    ) -> anyhow::Result<Running> {
        let (stderr_path, stderr) = self.stderr_file(slot)?;
        let port = self.cluster.port().to_string();
        let recvlogical = |plugin_args: &[&str]| -> anyhow::Result<Running> {
            let end = format_lsn(end);
            let mut command = Command::new(&self.recvlogical);
            command
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-d",
                    DATABASE,
                ])
                .args(["-S", slot, "--start", "--no-loop", "-f", "/dev/null"])
                // Status every second, the written position counted as flushed at once, and
                // a last flushed position sent the moment the end is reached: its slot shows
                // the end as soon as it got there.
                .args(["-s", "1", "-F", "0", "-E", &end])
                .args(plugin_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr.try_clone()?);
            Ok(Running::Process {
                child: command.spawn().context("starting pg_recvlogical")?,
                stderr: stderr_path.clone(),
            })
        };
        match contender {
            Contender::RecvPgoutput => {
                let publications = format!("publication_names={}", table.publication);
                recvlogical(&[
                    "-P",
                    "pgoutput",
                    "-o",
                    "proto_version=1",
                    "-o",
                    &publications,
                ])
            }
            Contender::RecvWal2json => recvlogical(&["-P", "wal2json"]),
            Contender::Headless | Contender::HeadlessCounted | Contender::HeadlessBaseline => {
                let dir = self.work.path().join(slot);
                let config = self.config(&self.url(), &dir, slot, table, Some(slot), pipeline)?;
                let stdout = if contender == Contender::HeadlessCounted {
                    Stdio::piped()
                } else {
                    Stdio::from(std::fs::File::create("/dev/null")?)
                };
                let program = match contender {
                    Contender::HeadlessBaseline => {
                        baseline_binary().context("CDC_BENCH_BASELINE")?
                    }
                    _ => CDC_TUI.to_string(),
                };
                let child = wrapped(&program)
                    .arg("--headless")
                    .arg("--config")
                    .arg(&config)
                    .current_dir(&dir)
                    .stdin(Stdio::null())
                    .stdout(stdout)
                    .stderr(stderr)
                    .spawn()
                    .context("starting cdc-tui --headless")?;
                Ok(Running::Process {
                    child,
                    stderr: stderr_path,
                })
            }
            Contender::Tui => {
                let dir = self.work.path().join(slot);
                let config = self.config(&self.url(), &dir, slot, table, Some(slot), pipeline)?;
                let tmux = Tmux::start(&dir, &config, slot)?;
                Ok(Running::Tui { tmux, dir })
            }
        }
    }

    /// Waits until `slot` is confirmed at `end`, sampling the process's memory on the way.
    async fn wait_drained(
        &self,
        running: &mut Running,
        slot: &str,
        end: u64,
        marks: &[u64],
        started: Instant,
    ) -> anyhow::Result<Drained> {
        let mut memory = Vec::new();
        let mut pending_marks = marks.iter().copied().peekable();
        let pid = running.pid()?;
        let terminal = running.terminal_pid();
        let mut peak_kb = 0;
        let mut cpu = Cpu::default();
        let mut streaming_after = None;
        loop {
            let (confirmed, walsender) = self.slot_state(slot).await?;
            if walsender.is_some() && streaming_after.is_none() {
                streaming_after = Some(started.elapsed());
            }
            peak_kb = read_status_kb(pid, "VmHWM:").unwrap_or(peak_kb);
            cpu.client = cpu_seconds(pid).unwrap_or(cpu.client);
            if let Some(walsender) = walsender {
                cpu.walsender = cpu_seconds(walsender).unwrap_or(cpu.walsender);
            }
            if let Some(terminal) = terminal {
                cpu.terminal = cpu_seconds(terminal).unwrap_or(cpu.terminal);
            }
            while let Some(&mark) = pending_marks.peek() {
                if confirmed < mark {
                    break;
                }
                memory.push(peak_kb);
                pending_marks.next();
            }
            if confirmed >= end {
                return Ok(Drained {
                    elapsed: started.elapsed(),
                    memory,
                    peak_kb,
                    cpu,
                    streaming_after: streaming_after.unwrap_or_default(),
                });
            }
            running.check_alive()?;
            if started.elapsed() > DRAIN_LIMIT {
                bail!(
                    "{slot} was not drained in {DRAIN_LIMIT:?}: confirmed {}, end {}",
                    format_lsn(confirmed),
                    format_lsn(end)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One scope against a listener per table: drain time and the server's cost.
    async fn scopes(&self) -> anyhow::Result<()> {
        const TABLES: usize = 20;
        const ROWS: u64 = 5_000;
        let names: Vec<String> = (1..=TABLES).map(|n| format!("s_t{n:02}")).collect();
        for name in &names {
            self.client
                .batch_execute(&format!(
                    "CREATE TABLE {name} (id bigint PRIMARY KEY, n int NOT NULL, note text NOT NULL);
                     CREATE PUBLICATION pub_{name} FOR TABLE {name};"
                ))
                .await?;
        }
        self.client
            .batch_execute(&format!(
                "CREATE PUBLICATION pub_scope FOR TABLE {}",
                names.join(", ")
            ))
            .await?;
        // Slots and publications exist before the workload, so each holds all of it.
        for name in &names {
            self.create_slot(&format!("per_{name}"), "pgoutput").await?;
        }
        self.create_slot("scope_all", "pgoutput").await?;
        self.create_slot("recv_all", "pgoutput").await?;
        let started = Instant::now();
        for name in &names {
            for first in (0..ROWS).step_by(TX_ROWS as usize) {
                self.client
                    .batch_execute(&format!(
                        "INSERT INTO {name} SELECT g, g % 100, 'row ' || g \
                         FROM generate_series({}, {}) g",
                        first + 1,
                        (first + TX_ROWS).min(ROWS)
                    ))
                    .await?;
            }
        }
        let end: String = self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?
            .get(0);
        let end = parse_lsn(&end).context("the end LSN")?;
        println!(
            "\n== scopes: {TABLES} tables x {ROWS} inserts = {} changes in {TX_ROWS}-row \
             transactions, written in {:.1} s, end {}",
            TABLES as u64 * ROWS,
            started.elapsed().as_secs_f64(),
            format_lsn(end)
        );

        let per_table: Vec<(String, String, String)> = names
            .iter()
            .map(|name| {
                (
                    format!("per_{name}"),
                    format!("public.{name}"),
                    format!("pub_{name}"),
                )
            })
            .collect();
        let scope = [(
            "scope_all".to_string(),
            "public.s_*".to_string(),
            "pub_scope".to_string(),
        )];
        println!("| way | slots | drain s | WAL senders' CPU s | cdc-tui CPU s |");
        println!("|---|---:|---:|---:|---:|");
        for (way, listeners) in [
            ("20 single-table listeners", per_table.as_slice()),
            ("one public.s_* scope listener", scope.as_slice()),
        ] {
            let dir = self.work.path().join(listeners[0].0.as_str());
            std::fs::create_dir_all(&dir)?;
            let mut text = format!(
                "[state]\ndir = \"state\"\n\n[[database]]\nname = \"bench\"\nkind = \"postgres\"\n\
                 url = \"{}\"\n\n",
                self.url()
            );
            for (slot, table, publication) in listeners {
                text.push_str(&format!(
                    "[[listener]]\nidentifier = \"{slot}\"\ndatabase = \"bench\"\n\
                     table = \"{table}\"\nstrategy = \"logical\"\nslot = \"{slot}\"\n\
                     publication = \"{publication}\"\n\n"
                ));
            }
            let config = dir.join("cdc.toml");
            std::fs::write(&config, text)?;
            let (_, stderr) = self.stderr_file(&listeners[0].0)?;
            let started = Instant::now();
            let mut child = wrapped(CDC_TUI)
                .arg("--headless")
                .arg("--config")
                .arg(&config)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(std::fs::File::create("/dev/null")?))
                .stderr(stderr)
                .spawn()
                .context("starting cdc-tui --headless")?;
            let (drained, walsenders) = self.drained_all(listeners, end, started).await?;
            let client_cpu = cpu_seconds(child.id()).unwrap_or(0.0);
            terminate(&child)?;
            child.wait()?;
            println!(
                "| cdc-tui, {way} | {} | {:.2} | {walsenders:.2} | {client_cpu:.2} |",
                listeners.len(),
                drained.as_secs_f64()
            );
        }
        let table = Table {
            name: "s_t01",
            publication: "pub_scope".to_string(),
        };
        let started = Instant::now();
        let mut running = self.spawn(Contender::RecvPgoutput, "recv_all", &table, end, "")?;
        let drained = self
            .wait_drained(&mut running, "recv_all", end, &[], started)
            .await?;
        running.stop().await?;
        println!(
            "| pg_recvlogical -P pgoutput, one slot for the 20 tables | 1 | {:.2} | {:.2} | {:.2} |",
            drained.elapsed.as_secs_f64(),
            drained.cpu.walsender,
            drained.cpu.client
        );
        Ok(())
    }

    /// Waits until every listener's slot is confirmed at `end`; the time it took and the CPU
    /// seconds of the WAL senders that streamed them.
    async fn drained_all(
        &self,
        listeners: &[(String, String, String)],
        end: u64,
        started: Instant,
    ) -> anyhow::Result<(Duration, f64)> {
        let mut cpu: std::collections::HashMap<String, f64> = Default::default();
        loop {
            let mut done = 0;
            for (slot, _, _) in listeners {
                let (confirmed, walsender) = self.slot_state(slot).await?;
                if let Some(walsender) = walsender
                    && let Some(seconds) = cpu_seconds(walsender)
                {
                    cpu.insert(slot.clone(), seconds);
                }
                if confirmed >= end {
                    done += 1;
                }
            }
            if done == listeners.len() {
                return Ok((started.elapsed(), cpu.values().sum()));
            }
            if started.elapsed() > DRAIN_LIMIT {
                bail!(
                    "{done} of {} slots drained in {DRAIN_LIMIT:?}",
                    listeners.len()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn drain(&self, rounds: usize) -> anyhow::Result<()> {
        let table = Table::new("drain");
        self.create_table(&table).await?;
        let wal2json = self.has_wal2json().await;
        let mut contenders = vec![Contender::RecvPgoutput];
        if wal2json {
            contenders.push(Contender::RecvWal2json);
        }
        contenders.push(Contender::Headless);
        if baseline_binary().is_some() {
            contenders.push(Contender::HeadlessBaseline);
        }
        contenders.push(Contender::Tui);
        let slot_name =
            |round: usize, contender: Contender| format!("r{round}_{}", contender.slug());
        // Every slot exists before the workload, so each holds all of it.
        for round in 0..rounds {
            for &contender in &contenders {
                self.create_slot(&slot_name(round, contender), contender.plugin())
                    .await?;
            }
        }
        let verify_slot = "verify_headless";
        self.create_slot(verify_slot, "pgoutput").await?;
        let workload = Workload {
            inserts: 100_000,
            updates: 50_000,
            deletes: 25_000,
            interleaved: false,
        };
        let written = self.write(&table, workload).await?;
        let end = written.end();
        let total = workload.total();
        println!(
            "\n== drain: {total} changes ({} inserts in {TX_ROWS}-row transactions, {} updates, {} \
             deletes; REPLICA IDENTITY FULL; bigint, int, text), written in {:.1} s, end {}",
            workload.inserts,
            workload.updates,
            workload.deletes,
            written.seconds,
            format_lsn(end)
        );
        if !wal2json {
            println!(
                "   pg_recvlogical -P wal2json: skipped, the wal2json plugin is not installed (apt-get install postgresql-15-wal2json)"
            );
        }

        let mut times: Vec<(Contender, Vec<f64>)> =
            contenders.iter().map(|&c| (c, Vec::new())).collect();
        for round in 0..rounds {
            // A different order each round, so no contender always runs first.
            let mut order = contenders.clone();
            order.rotate_left(round % contenders.len());
            for contender in order {
                let slot = slot_name(round, contender);
                let started = Instant::now();
                let mut running = self.spawn(contender, &slot, &table, end, "")?;
                let drained = self
                    .wait_drained(&mut running, &slot, end, &[], started)
                    .await?;
                if contender == Contender::Tui {
                    let counts = running.tui_counts(&slot).await?;
                    anyhow::ensure!(
                        counts == [workload.inserts, workload.updates, workload.deletes],
                        "the TUI counted {counts:?} (ins, upd, del) on {slot}"
                    );
                }
                running.stop().await?;
                self.drop_slot(&slot).await;
                println!(
                    "   round {} {:<32} {:>7.3} s   streaming after {:>3} ms, {}",
                    round + 1,
                    contender.label(),
                    drained.elapsed.as_secs_f64(),
                    drained.streaming_after.as_millis(),
                    drained.cpu.show()
                );
                times
                    .iter_mut()
                    .find(|(c, _)| *c == contender)
                    .expect("listed")
                    .1
                    .push(drained.elapsed.as_secs_f64());
            }
        }

        // The verification run: every change line counted.
        let started = Instant::now();
        let mut running = self.spawn(Contender::HeadlessCounted, verify_slot, &table, end, "")?;
        let counter = running.count_lines()?;
        let drained = self
            .wait_drained(&mut running, verify_slot, end, &[], started)
            .await?;
        running.stop().await?;
        let counted = counter
            .join()
            .map_err(|_| anyhow!("the line counter panicked"))??;
        self.drop_slot(verify_slot).await;
        anyhow::ensure!(
            counted.ops == [workload.inserts, workload.updates, workload.deletes]
                && counted.flushed == total,
            "cdc-tui headless printed {:?} change lines (ins, upd, del) and flush lines for {} changes",
            counted.ops,
            counted.flushed
        );
        println!(
            "   verified: cdc-tui headless printed {} insert, {} update, {} delete lines and flush lines for {} changes ({:.3} s with the benchmark reading stdout); the TUI counted the same",
            counted.ops[0],
            counted.ops[1],
            counted.ops[2],
            counted.flushed,
            drained.elapsed.as_secs_f64()
        );

        let reference = median(&times[0].1);
        println!(
            "\n   {:<34} {:>9} {:>12} {:>7}   rounds",
            "contender", "median s", "changes/s", "ratio"
        );
        for (contender, seconds) in &times {
            let time = median(seconds);
            let rounds: Vec<String> = seconds.iter().map(|s| format!("{s:.3}")).collect();
            println!(
                "   {:<34} {:>9.3} {:>12} {:>7.2}   {}",
                contender.label(),
                time,
                thousands((total as f64 / time) as u64),
                time / reference,
                rounds.join(" ")
            );
        }
        let ratio = |contender: Contender| {
            times
                .iter()
                .find(|(c, _)| *c == contender)
                .map(|(_, s)| median(s) / reference)
        };
        let headless = ratio(Contender::Headless).unwrap_or(f64::NAN);
        let tui = ratio(Contender::Tui).unwrap_or(f64::NAN);
        println!(
            "   target: headless within 1.10x of pg_recvlogical pgoutput: {headless:.2}x {}",
            verdict(headless <= 1.10)
        );
        if let Some(wal2json) = ratio(Contender::RecvWal2json) {
            println!(
                "   target: headless ahead of wal2json ({wal2json:.2}x): {}",
                verdict(headless < wal2json)
            );
        }
        println!(
            "   target: TUI within 1.20x: {tui:.2}x {}",
            verdict(tui <= 1.20)
        );
        Ok(())
    }

    async fn latency(&self, seconds: u64) -> anyhow::Result<()> {
        let table = Table::new("latency");
        self.create_table(&table).await?;
        println!(
            "\n== latency: 2,000 changes/s (a transaction of 10 inserts and 10 updates every 10 ms) for {seconds} s, after 2 s of warm-up; commit_time to the flush line on stdout"
        );
        // Direct: the capture's own stdout. Relayed: the capture publishes to JetStream
        // ([sinks.nats]) and a second cdc-tui, a `kind = "nats"` viewer, prints what it reads;
        // its flush lines are the moment a remote viewer has the change.
        let nats = match NatsServer::start() {
            Ok(server) => Some(server),
            Err(error) => {
                println!("   (no nats-server: {error}; the relayed rows are left out)");
                None
            }
        };
        let settings = [
            ("defaults (chunk_size 100, timeout_ms 200)", ""),
            ("timeout_ms = 0", "timeout_ms = 0"),
        ];
        let relays =
            std::iter::once(None).chain(nats.as_ref().map(|server| Some(server.url.as_str())));
        for relay in relays {
            for (label, pipeline) in settings {
                let stats = self.latency_run(&table, pipeline, seconds, relay).await?;
                let route = if relay.is_some() {
                    "db → capture → JetStream → viewer"
                } else {
                    "db → capture"
                };
                println!(
                    "   {route:<34} {label:<44} p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  ({} changes, {} batches)",
                    stats.p50, stats.p99, stats.max, stats.changes, stats.batches
                );
            }
        }
        println!(
            "   (commit_time has millisecond precision: figures include up to 1 ms of truncation)"
        );
        Ok(())
    }

    async fn latency_run(
        &self,
        table: &Table,
        pipeline: &str,
        seconds: u64,
        relay: Option<&str>,
    ) -> anyhow::Result<LatencyStats> {
        let tag = match (pipeline.is_empty(), relay.is_some()) {
            (true, false) => "latency_default",
            (false, false) => "latency_zero",
            (true, true) => "latency_relay_default",
            (false, true) => "latency_relay_zero",
        };
        let dir = self.work.path().join(tag);
        let config = self.config(&self.url(), &dir, tag, table, None, pipeline)?;
        let headless = |config: &Path, name: &str| -> anyhow::Result<ChildGuard> {
            let (_, stderr) = self.stderr_file(name)?;
            Ok(ChildGuard(
                Command::new(CDC_TUI)
                    .arg("--headless")
                    .arg("--config")
                    .arg(config)
                    .current_dir(&dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(stderr)
                    .spawn()?,
            ))
        };
        let (running_tx, running_rx) = std::sync::mpsc::channel();
        let measure_from = std::sync::Arc::new(std::sync::Mutex::new(None::<DateTime<Utc>>));
        let from = measure_from.clone();
        // Relayed: the capture's stdout only says when it runs; the viewer's is measured.
        let mut viewer = None;
        if let Some(url) = relay {
            let sink = format!(
                "\n[sinks.nats]\nurl = \"{url}\"\nstream = \"{stream}\"\nsubject = \"{tag}.{{database}}.{{table}}\"\n",
                stream = tag.to_uppercase()
            );
            std::fs::write(&config, std::fs::read_to_string(&config)? + &sink)?;
            // The sink creates its stream with its first batch; made here, the viewer's
            // consumer is running before the first write, as a deployed viewer's is.
            async_nats::jetstream::new(async_nats::connect(url).await?)
                .get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: tag.to_uppercase(),
                    subjects: vec![format!("{tag}.>")],
                    storage: async_nats::jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|error| anyhow!("the stream: {error}"))?;
            let viewer_config = dir.join("viewer.toml");
            std::fs::write(
                &viewer_config,
                format!(
                    "[pipeline]\n{pipeline}\n\n[[database]]\nname = \"relay\"\nkind = \"nats\"\nurl = \"{url}\"\n\n\
                     [[listener]]\nidentifier = \"viewer\"\ndatabase = \"relay\"\ntable = \"{tag}.>\"\nstrategy = \"jetstream\"\n"
                ),
            )?;
            viewer = Some(headless(&viewer_config, &format!("{tag}_viewer"))?);
        }
        let mut capture = headless(&config, tag)?;
        let capture_out = capture.0.stdout.take().context("stdout")?;
        let measured = match viewer.as_mut() {
            None => capture_out,
            Some(viewer) => {
                let capture_running = running_tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(capture_out).lines().map_while(Result::ok) {
                        if line.contains(r#""type":"status""#)
                            && line.contains(r#""state":"running""#)
                        {
                            let _ = capture_running.send(());
                        }
                    }
                });
                viewer.0.stdout.take().context("stdout")?
            }
        };
        let reader = std::thread::spawn(move || read_latencies(measured, running_tx, from));
        // Running once the slot exists and streaming started (and, relayed, the viewer's
        // consumer too).
        let listeners = 1 + usize::from(relay.is_some());
        tokio::task::spawn_blocking(move || {
            (0..listeners).try_for_each(|_| running_rx.recv_timeout(Duration::from_secs(60)))
        })
        .await?
        .context("a listener did not report running")?;

        let writer = self.cluster.connect(DATABASE).await?;
        writer.batch_execute("SET synchronous_commit = on").await?;
        let base = {
            let row = writer
                .query_one(
                    &format!("SELECT coalesce(max(id), 0) FROM {}", table.name),
                    &[],
                )
                .await?;
            row.get::<_, i64>(0) as u64
        };
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let warmup = 200; // ticks: 2 s
        let ticks = warmup + seconds * 100;
        for at in 0..ticks {
            tick.tick().await;
            if at == warmup {
                *measure_from.lock().expect("not poisoned") = Some(Utc::now());
            }
            let first = base + at * 10 + 1;
            let sql = format!(
                "BEGIN; INSERT INTO {name} SELECT g, 0, 'latency row ' || g FROM generate_series({first}, {last}) g; \
                 UPDATE {name} SET n = n + 1 WHERE id BETWEEN {updated} AND {updated_last}; COMMIT",
                name = table.name,
                last = first + 9,
                updated = first.saturating_sub(10).max(1),
                updated_last = first.saturating_sub(1).max(1),
            );
            writer.batch_execute(&sql).await?;
        }
        // Everything flushed: at most a timeout later.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        terminate(&capture.0)?;
        capture.0.wait()?;
        let measured = viewer.as_mut().unwrap_or(&mut capture);
        if relay.is_some() {
            terminate(&measured.0)?;
        }
        let stats = tokio::task::spawn_blocking(move || reader.join())
            .await?
            .map_err(|_| anyhow!("the reader panicked"))?;
        measured.0.wait()?;
        stats
    }

    async fn memory(&self, changes: u64) -> anyhow::Result<()> {
        let table = Table::new("memory");
        self.create_table(&table).await?;
        let workload = Workload::interleaved(changes);
        let total = workload.total();
        let contenders = [Contender::Headless, Contender::Tui];
        for contender in contenders {
            self.create_slot(&format!("mem_{}", contender.slug()), "pgoutput")
                .await?;
        }
        let written = self.write(&table, workload).await?;
        let end = written.end();
        let checkpoints: Vec<u64> = [total / 4, total / 2, total].to_vec();
        let marks: Vec<u64> = checkpoints.iter().map(|&c| written.lsn_after(c)).collect();
        println!(
            "\n== memory: {total} changes ({} inserts, {} updates, {} deletes, mixed all along), log_capacity = 10000, written in {:.1} s; peak RSS (VmHWM) when the slot was confirmed past",
            workload.inserts, workload.updates, workload.deletes, written.seconds
        );
        let heading: Vec<String> = checkpoints
            .iter()
            .map(|c| format!("{:>10}", thousands(*c)))
            .collect();
        println!(
            "   {:<22} {} {:>10}",
            "contender",
            heading.join(" "),
            "drain s"
        );
        for contender in contenders {
            let slot = format!("mem_{}", contender.slug());
            let started = Instant::now();
            let mut running = self.spawn(contender, &slot, &table, end, "log_capacity = 10000")?;
            let drained = self
                .wait_drained(&mut running, &slot, end, &marks, started)
                .await?;
            if contender == Contender::Tui {
                let counts = running.tui_counts(&slot).await?;
                anyhow::ensure!(
                    counts == [workload.inserts, workload.updates, workload.deletes],
                    "the TUI counted {counts:?} (ins, upd, del) on {slot}"
                );
            }
            running.stop().await?;
            self.drop_slot(&slot).await;
            let cells: Vec<String> = drained
                .memory
                .iter()
                .map(|kb| format!("{:>7.1} MB", *kb as f64 / 1024.0))
                .collect();
            println!(
                "   {:<22} {} {:>10.2}   peak {:.1} MB",
                contender.label_short(),
                cells.join(" "),
                drained.elapsed.as_secs_f64(),
                drained.peak_kb as f64 / 1024.0
            );
        }
        Ok(())
    }

    /// One transaction of `rows` inserts that the server streams while it runs
    /// (`logical_decoding_work_mem = 64kB` on the replication session): cdc-tui headless's
    /// in-progress counter (`status` answers' `running`) before the commit, the time from the
    /// COMMIT returning to its last change on stdout, and peak RSS.
    async fn streamed(&self, rows: u64) -> anyhow::Result<()> {
        let table = Table::new("streamed");
        self.create_table(&table).await?;
        // Outside the publication: written after the rows, it takes the server's memory for
        // the transaction past the limit once more, so the rows it still held go out too.
        self.client
            .batch_execute("CREATE TABLE streamed_padding (note text NOT NULL)")
            .await?;
        let slot = "streamed_headless";
        self.create_slot(slot, "pgoutput").await?;
        let url = format!(
            "{}?options=-c%20logical_decoding_work_mem%3D64kB",
            self.url()
        );
        let dir = self.work.path().join(slot);
        let config = self.config(&url, &dir, slot, &table, Some(slot), "")?;
        let (_, stderr) = self.stderr_file(slot)?;
        let mut child = ChildGuard(
            wrapped(CDC_TUI)
                .arg("--headless")
                .arg("--config")
                .arg(&config)
                .current_dir(&dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .spawn()
                .context("starting cdc-tui --headless")?,
        );
        let pid = child.0.id();
        let stdout = child.0.stdout.take().context("stdout")?;
        let mut stdin = child.0.stdin.take().context("stdin")?;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Streamed::default()));
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || read_streamed(stdout, &seen))
        };
        wait_seen(&seen, "the listener's running status", |seen| {
            seen.running.then_some(())
        })
        .await?;

        // Asks for the listener's status every 100 ms while the transaction runs.
        let asking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let asker = {
            let asking = asking.clone();
            let command = format!("status {slot}/public.{}\n", table.name);
            std::thread::spawn(move || {
                use std::io::Write;
                while asking.load(std::sync::atomic::Ordering::Relaxed) {
                    if stdin.write_all(command.as_bytes()).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                stdin
            })
        };
        let started = Instant::now();
        self.client
            .batch_execute(&format!(
                "BEGIN; INSERT INTO {name} SELECT g, 0, 'streamed row ' || g FROM \
                 generate_series(1, {rows}) g; INSERT INTO streamed_padding SELECT repeat('p', \
                 1000) FROM generate_series(1, 200)",
                name = table.name
            ))
            .await?;
        let written = started.elapsed();
        let counted_all = wait_seen(&seen, "the running counter at every row", |seen| {
            seen.running_max_at.filter(|_| seen.running_max >= rows)
        })
        .await?;
        let (counter_before_commit, printed_before_commit, peak_running_kb) = {
            let seen = seen.lock().expect("not poisoned");
            (
                seen.running_max,
                seen.changes,
                read_status_kb(pid, "VmHWM:"),
            )
        };
        let spooled = dir_bytes(&dir.join("state").join("streaming"));
        self.client.batch_execute("COMMIT").await?;
        let committed = Instant::now();
        asking.store(false, std::sync::atomic::Ordering::Relaxed);
        let stdin = asker
            .join()
            .map_err(|_| anyhow!("the status asker panicked"))?;
        let last_change = wait_seen(&seen, "the transaction's last change", |seen| {
            seen.last_change_at.filter(|_| seen.changes >= rows)
        })
        .await?;
        let peak_kb = read_status_kb(pid, "VmHWM:").unwrap_or(0);
        drop(stdin);
        terminate(&child.0)?;
        let _ = child.0.wait();
        reader
            .join()
            .map_err(|_| anyhow!("the stdout reader panicked"))??;
        self.drop_slot(slot).await;
        let seen = seen.lock().expect("not poisoned");
        anyhow::ensure!(
            seen.changes == rows && seen.transactions == 1 && printed_before_commit == 0,
            "printed {} change lines ({printed_before_commit} before the commit) and {} \
             transaction lines for {rows} rows",
            seen.changes,
            seen.transactions
        );
        let mb = |kb: Option<u64>| kb.unwrap_or(0) as f64 / 1024.0;
        println!(
            "\n== streamed: one transaction of {} inserts (logical_decoding_work_mem = 64kB), \
             written in {:.1} s",
            thousands(rows),
            written.as_secs_f64()
        );
        println!(
            "   running counter: {} before the COMMIT, {} reached {:.2} s after the transaction \
             began ({:.2} s after its inserts returned); no change printed before the commit",
            thousands(counter_before_commit),
            thousands(rows),
            counted_all.duration_since(started).as_secs_f64(),
            counted_all
                .saturating_duration_since(started + written)
                .as_secs_f64(),
        );
        println!(
            "   COMMIT returned -> last change on stdout: {:.2} s ({} change lines, one \
             transaction line)",
            last_change
                .saturating_duration_since(committed)
                .as_secs_f64(),
            thousands(seen.changes)
        );
        println!(
            "   peak RSS (VmHWM): {:.1} MB while it ran, {:.1} MB in all; spool files before \
             the COMMIT: {:.1} MB",
            mb(peak_running_kb),
            peak_kb as f64 / 1024.0,
            spooled as f64 / 1e6
        );
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    RecvPgoutput,
    RecvWal2json,
    Headless,
    /// Headless with its stdout read by the benchmark, to count what it printed.
    HeadlessCounted,
    /// Headless, the binary named by `CDC_BENCH_BASELINE`.
    HeadlessBaseline,
    Tui,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Contender::RecvPgoutput => "pg_recvlogical -P pgoutput",
            Contender::RecvWal2json => "pg_recvlogical -P wal2json",
            Contender::Headless => "cdc-tui --headless > /dev/null",
            Contender::HeadlessBaseline => "baseline --headless > /dev/null",
            Contender::HeadlessCounted => "cdc-tui --headless | counted",
            Contender::Tui => "cdc-tui TUI, 200x50 tmux pane",
        }
    }

    fn label_short(self) -> &'static str {
        match self {
            Contender::Headless | Contender::HeadlessCounted => "cdc-tui headless",
            Contender::HeadlessBaseline => "baseline headless",
            Contender::Tui => "cdc-tui TUI (200x50)",
            other => other.label(),
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Contender::RecvPgoutput => "recv_pgoutput",
            Contender::RecvWal2json => "recv_wal2json",
            Contender::Headless => "headless",
            Contender::HeadlessBaseline => "baseline",
            Contender::HeadlessCounted => "headless_counted",
            Contender::Tui => "tui",
        }
    }

    fn plugin(self) -> &'static str {
        match self {
            Contender::RecvWal2json => "wal2json",
            _ => "pgoutput",
        }
    }
}

/// CPU seconds used while draining, as last seen (sampled with the slot).
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    client: f64,
    walsender: f64,
    /// tmux, for the TUI.
    terminal: f64,
}

impl Cpu {
    fn show(&self) -> String {
        let mut text = format!(
            "cpu: client {:.2} s, walsender {:.2} s",
            self.client, self.walsender
        );
        if self.terminal > 0.0 {
            text.push_str(&format!(", tmux {:.2} s", self.terminal));
        }
        text
    }
}

struct Drained {
    elapsed: Duration,
    cpu: Cpu,
    /// When the slot was first seen active (polled every 20 ms): the start-up.
    streaming_after: Duration,
    /// Peak RSS in kB when each mark was passed.
    memory: Vec<u64>,
    peak_kb: u64,
}

/// A contender while it drains.
enum Running {
    Process { child: Child, stderr: PathBuf },
    Tui { tmux: Tmux, dir: PathBuf },
}

impl Running {
    fn pid(&self) -> anyhow::Result<u32> {
        match self {
            Running::Process { child, .. } => Ok(child.id()),
            Running::Tui { tmux, .. } => tmux.pane_pid(),
        }
    }

    /// The tmux server drawing the TUI's pane.
    fn terminal_pid(&self) -> Option<u32> {
        match self {
            Running::Process { .. } => None,
            Running::Tui { tmux, .. } => tmux
                .run(&["display-message", "-p", "-t", "cdc", "#{pid}"])
                .trim()
                .parse()
                .ok(),
        }
    }

    /// Fails when the contender ended before draining its slot.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self {
            Running::Process { child, stderr } => {
                if let Some(status) = child.try_wait()? {
                    let text = std::fs::read_to_string(stderr).unwrap_or_default();
                    bail!("the contender exited ({status}) before its slot was drained:\n{text}");
                }
            }
            Running::Tui { tmux, dir } => {
                if tmux.pane_dead() {
                    let log =
                        std::fs::read_to_string(dir.join("state/cdc-tui.log")).unwrap_or_default();
                    bail!(
                        "the TUI exited before its slot was drained:\n{}\n{log}",
                        tmux.screen()
                    );
                }
            }
        }
        Ok(())
    }

    /// The TUI's insert, update and delete counters of the listener on `slot`, once they stop
    /// moving (a frame is drawn every 33 ms).
    async fn tui_counts(&self, slot: &str) -> anyhow::Result<[u64; 3]> {
        let Running::Tui { tmux, .. } = self else {
            bail!("not a TUI");
        };
        let identity = format!("{slot}/public.");
        let mut last = None;
        for _ in 0..50 {
            let screen = tmux.screen();
            let counts = screen
                .lines()
                .find(|line| line.contains(&identity))
                .and_then(listener_counts);
            if let Some(counts) = counts
                && last == Some(counts)
            {
                return Ok(counts);
            }
            last = counts;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last.with_context(|| {
            format!(
                "no counters for {identity} on the screen:\n{}",
                tmux.screen()
            )
        })
    }

    /// Reads the piped stdout on a thread, counting change lines per op and flushed changes.
    fn count_lines(&mut self) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<Counted>>> {
        let Running::Process { child, .. } = self else {
            bail!("not a process");
        };
        let stdout = child.stdout.take().context("stdout is not piped")?;
        Ok(std::thread::spawn(move || {
            let mut counted = Counted::default();
            for line in BufReader::with_capacity(1 << 20, stdout).lines() {
                let line = line?;
                if line.starts_with(r#"{"type":"change""#) {
                    let op = [
                        "\"op\":\"insert\"",
                        "\"op\":\"update\"",
                        "\"op\":\"delete\"",
                    ]
                    .iter()
                    .position(|op| line.contains(op))
                    .context("a change line without a known op")?;
                    counted.ops[op] += 1;
                } else if let Some(rest) = line.strip_prefix(r#"{"type":"flush","batch":"#) {
                    let changes = rest
                        .split_once(r#""changes":"#)
                        .and_then(|(_, rest)| rest.split(',').next())
                        .and_then(|n| n.parse::<u64>().ok())
                        .context("a flush line without changes")?;
                    counted.flushed += changes;
                }
            }
            Ok(counted)
        }))
    }

    /// Ends the contender: SIGTERM for processes (pg_recvlogical may have ended already at
    /// its end position), `q` for the TUI.
    async fn stop(&mut self) -> anyhow::Result<()> {
        match self {
            Running::Process { child, .. } => {
                if child.try_wait()?.is_none() {
                    terminate(child)?;
                }
                let deadline = Instant::now() + Duration::from_secs(30);
                while child.try_wait()?.is_none() {
                    if Instant::now() > deadline {
                        child.kill()?;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Running::Tui { tmux, .. } => {
                tmux.keys("q");
                let deadline = Instant::now() + Duration::from_secs(30);
                while !tmux.pane_dead() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Running::Process { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug, Default)]
struct Counted {
    ops: [u64; 3],
    flushed: u64,
}

/// `ins upd del trunc` of a listener row: the four numbers after the state.
fn listener_counts(row: &str) -> Option<[u64; 3]> {
    let words: Vec<&str> = row.split_whitespace().collect();
    let state = words.iter().position(|w| {
        [
            "running", "paused", "retrying", "stopped", "failed", "starting",
        ]
        .contains(w)
    })?;
    let number = |at: usize| words.get(at)?.replace(',', "").parse::<u64>().ok();
    Some([number(state + 1)?, number(state + 2)?, number(state + 3)?])
}

/// A tmux server of its own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(dir: &Path, config: &Path, name: &str) -> anyhow::Result<Tmux> {
        let tmux = Tmux {
            socket: format!("cdc-drain-{}-{name}", std::process::id()),
        };
        let command = format!("exec {CDC_TUI} --config {}", config.display());
        let output = Command::new("tmux")
            .args([
                "-L",
                &tmux.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "cdc",
                "-x",
                "200",
                "-y",
                "50",
                "-c",
            ])
            .arg(dir)
            .arg(&command)
            .output()
            .context("tmux runs (apt-get install tmux)")?;
        anyhow::ensure!(
            output.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tmux.run(&["set-option", "-t", "cdc", "remain-on-exit", "on"]);
        Ok(tmux)
    }

    fn run(&self, args: &[&str]) -> String {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default()
    }

    fn pane_pid(&self) -> anyhow::Result<u32> {
        let text = self.run(&["display-message", "-p", "-t", "cdc", "#{pane_pid}"]);
        text.trim()
            .parse()
            .with_context(|| format!("no pane pid: {text:?}"))
    }

    fn pane_dead(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "cdc", "#{pane_dead}"])
            .trim()
            != "0"
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "cdc"])
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "cdc", keys]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// A command for `program`, run under the profiler named by `CDC_BENCH_WRAP` when set (e.g.
/// `CDC_BENCH_WRAP="perf record -g -o /tmp/perf.data --"`; headless contenders only).
fn wrapped(program: &str) -> Command {
    let wrap = std::env::var("CDC_BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    match words.next() {
        Some(first) => {
            let mut command = Command::new(first);
            command.args(words).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// What cdc-tui headless printed in the streamed benchmark.
#[derive(Default)]
struct Streamed {
    running: bool,
    /// The largest in-progress count a `status` answer showed, and when it was read.
    running_max: u64,
    running_max_at: Option<Instant>,
    changes: u64,
    last_change_at: Option<Instant>,
    transactions: u64,
    /// An `error` line: a command was refused.
    error: Option<String>,
}

/// The bytes of the files under `dir`, subfolders included (0 when it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Waits until `found` finds something in what was seen.
async fn wait_seen<T>(
    seen: &std::sync::Mutex<Streamed>,
    what: &str,
    found: impl Fn(&Streamed) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        {
            let seen = seen.lock().expect("not poisoned");
            if let Some(found) = found(&seen) {
                return Ok(found);
            }
            if let Some(error) = &seen.error {
                bail!("{what}: cdc-tui answered {error}");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{what}: not seen in {DRAIN_LIMIT:?} (running counter {}, {} changes printed)",
                seen.running_max,
                seen.changes
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Reads headless stdout for the streamed benchmark until it ends.
fn read_streamed(
    stdout: std::process::ChildStdout,
    seen: &std::sync::Mutex<Streamed>,
) -> anyhow::Result<()> {
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let now = Instant::now();
        // Change lines are counted by their start, not parsed: a million of them.
        if line.starts_with(r#"{"type":"change""#) {
            let mut seen = seen.lock().expect("not poisoned");
            seen.changes += 1;
            seen.last_change_at = Some(now);
        } else if line.starts_with(r#"{"type":"error""#) {
            seen.lock().expect("not poisoned").error = Some(line);
        } else if line.starts_with(r#"{"type":"transaction""#) {
            seen.lock().expect("not poisoned").transactions += 1;
        } else if line.starts_with(r#"{"type":"status""#) {
            let status: serde_json::Value = serde_json::from_str(&line)?;
            let mut seen = seen.lock().expect("not poisoned");
            seen.running |= status["state"] == "running";
            let counted = status["running"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|tx| tx["changes"].as_u64())
                .max()
                .unwrap_or(0);
            if counted > seen.running_max {
                seen.running_max = counted;
                seen.running_max_at = Some(now);
            }
        }
    }
    Ok(())
}

/// The cdc-tui binary to compare with, from `CDC_BENCH_BASELINE`.
fn baseline_binary() -> Option<String> {
    std::env::var("CDC_BENCH_BASELINE")
        .ok()
        .filter(|path| !path.is_empty())
}

/// Kills the child on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn terminate(child: &Child) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM {} failed", child.id());
    Ok(())
}

struct LatencyStats {
    p50: f64,
    p99: f64,
    max: f64,
    changes: usize,
    batches: usize,
}

/// Reads headless stdout: notes each change's commit time and, when its batch's flush line
/// appears, how long after the commit that was. Changes committed before `from` is set (the
/// warm-up) are not counted.
fn read_latencies(
    stdout: std::process::ChildStdout,
    running: std::sync::mpsc::Sender<()>,
    from: std::sync::Arc<std::sync::Mutex<Option<DateTime<Utc>>>>,
) -> anyhow::Result<LatencyStats> {
    let mut pending: Vec<DateTime<Utc>> = Vec::new();
    let mut latencies: Vec<f64> = Vec::new();
    let mut batches = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let seen = Utc::now();
        let value: serde_json::Value = serde_json::from_str(&line)?;
        match value["type"].as_str() {
            Some("status") if value["state"] == "running" => {
                let _ = running.send(());
            }
            Some("change") => {
                let commit = value["commit_time"]
                    .as_str()
                    .context("a change without commit_time")?;
                pending.push(DateTime::parse_from_rfc3339(commit)?.to_utc());
            }
            Some("flush") => {
                let from = *from.lock().expect("not poisoned");
                let mut counted = false;
                for commit in pending.drain(..) {
                    if from.is_some_and(|from| commit >= from) {
                        latencies.push(
                            (seen - commit).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0,
                        );
                        counted = true;
                    }
                }
                batches += usize::from(counted);
            }
            _ => {}
        }
    }
    anyhow::ensure!(!latencies.is_empty(), "no change was flushed");
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    Ok(LatencyStats {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
        changes: latencies.len(),
        batches,
    })
}

/// User and system CPU seconds of a process so far (`/proc/<pid>/stat`, in clock ticks of
/// 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it start with the state (field 3).
    let (_, fields) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = fields.split_whitespace().collect();
    let ticks = |at: usize| fields.get(at)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

fn read_status_kb(pid: u32, key: &str) -> Option<u64> {
    status_kb(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        key,
    )
}

/// `VmHWM:     12345 kB` → 12345.
fn status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (at, digit) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

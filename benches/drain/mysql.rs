//! The drain and memory benchmarks on a throwaway MariaDB (`tests/support/mariadb.rs`):
//! cdc-tui's binlog listener against the server's own client, `mariadb-binlog`.
//!
//! * **mysql**: the PostgreSQL drain's 175,000 changes (100,000 inserts in 1,000-row
//!   transactions, 50,000 updates, 25,000 deletes; `bigint, int, text`; the binlog's full row
//!   images carry the old row) on a binlog reset right before the workload, so it holds the
//!   workload and nothing else. Contenders, each reading the whole binlog from its start:
//!   `mariadb-binlog --read-from-remote-server` copying it (`--raw`) and decoding every row
//!   (`--base64-output=DECODE-ROWS --verbose`, to /dev/null), and cdc-tui headless
//!   (`start = "beginning"`, stdout to /dev/null). Without `--stop-never`, `mariadb-binlog`
//!   asks for the binlog without blocking and exits at its end: its time is its run. cdc-tui is
//!   done when its saved position (written only after the batch holding the last change was
//!   flushed) is the GTID of the last transaction; polled every 20 ms. A verification run
//!   counts what cdc-tui prints.
//! * **mysql-memory**: peak RSS of cdc-tui headless while draining 1,000,000 changes (the
//!   PostgreSQL memory benchmark's mix) with `log_capacity = 10000`, at 250k, 500k and 1M.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use mysql_async::prelude::Queryable;

use super::support::mariadb::{self, MariaDb, PASSWORD, USER};
use super::{
    CDC_TUI, Counted, DRAIN_LIMIT, POLL, Running, Step, TX_ROWS, Workload, cpu_seconds, median,
    read_status_kb, thousands, verdict, wrapped,
};

const DATABASE: &str = "bench";

pub struct MysqlBench {
    server: MariaDb,
    work: tempfile::TempDir,
}

/// A workload as written: the GTID sequence number after each transaction.
struct Written {
    /// (changes so far, sequence number of its transaction's GTID)
    marks: Vec<(u64, u64)>,
    /// The binlog's first file.
    file: String,
    seconds: f64,
}

impl Written {
    fn end(&self) -> u64 {
        self.marks.last().map_or(0, |&(_, sequence)| sequence)
    }

    fn sequence_after(&self, changes: u64) -> u64 {
        (self.marks.iter())
            .find(|&&(count, _)| count >= changes)
            .map_or_else(|| self.end(), |&(_, sequence)| sequence)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    BinlogRaw,
    BinlogDecoded,
    Headless,
    HeadlessCounted,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Contender::BinlogRaw => "mariadb-binlog --raw",
            Contender::BinlogDecoded => "mariadb-binlog -v DECODE-ROWS",
            Contender::Headless => "cdc-tui headless",
            Contender::HeadlessCounted => "cdc-tui headless (counted)",
        }
    }
}

impl MysqlBench {
    pub async fn start() -> anyhow::Result<MysqlBench> {
        anyhow::ensure!(
            mariadb::installed(),
            "MariaDB's server is not installed (apt-get install mariadb-server mariadb-client)"
        );
        let server = MariaDb::start(&[]).await;
        let mut root = server.root().await;
        root.query_drop(format!("CREATE DATABASE {DATABASE}"))
            .await?;
        root.disconnect().await?;
        Ok(MysqlBench {
            server,
            work: tempfile::Builder::new()
                .prefix("cdc-drain-mysql-")
                .tempdir()?,
        })
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }

    /// Creates `table`, empties the binlog, and writes `workload` into it.
    async fn write(&self, table: &str, workload: &Workload) -> anyhow::Result<Written> {
        let mut conn = self.server.connect(DATABASE).await;
        conn.query_drop(format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, n INT NOT NULL, note TEXT NOT NULL)"
        ))
        .await?;
        let mut root = self.server.root().await;
        root.query_drop("RESET MASTER").await?;
        root.disconnect().await?;
        let started = Instant::now();
        let mut marks = Vec::new();
        let mut changes = 0;
        for (step, first) in workload.transactions() {
            let last = first + TX_ROWS - 1;
            let sql = match step {
                Step::Insert => format!(
                    "INSERT INTO {table} SELECT seq, seq % 1000, \
                     CONCAT('row ', seq, ' of the drain benchmark') FROM seq_{first}_to_{last}"
                ),
                Step::Update => format!(
                    "UPDATE {table} SET n = n + 1, note = CONCAT(note, ' (updated)') \
                     WHERE id BETWEEN {first} AND {last}"
                ),
                Step::Delete => format!("DELETE FROM {table} WHERE id BETWEEN {first} AND {last}"),
            };
            conn.query_drop(&sql).await?;
            anyhow::ensure!(
                conn.affected_rows() == TX_ROWS,
                "{sql} changed too few rows"
            );
            changes += TX_ROWS;
            let position: String = conn
                .query_first("SELECT @@gtid_binlog_pos")
                .await?
                .context("no GTID position")?;
            marks.push((changes, sequence(&position)?));
        }
        let file: String = conn
            .query_first("SHOW BINARY LOGS")
            .await?
            .map(|row: mysql_async::Row| row.get(0).unwrap_or_default())
            .context("no binlog")?;
        conn.disconnect().await?;
        Ok(Written {
            marks,
            file,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn spawn(
        &self,
        contender: Contender,
        name: &str,
        table: &str,
        written: &Written,
        pipeline: &str,
    ) -> anyhow::Result<Running> {
        let dir = self.work.path().join(name);
        std::fs::create_dir_all(&dir)?;
        let stderr_path = dir.join("stderr");
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut command = match contender {
            Contender::BinlogRaw | Contender::BinlogDecoded => {
                let mut command = Command::new("mariadb-binlog");
                command
                    .arg("--no-defaults")
                    .arg("--read-from-remote-server")
                    .args(["--host", "127.0.0.1"])
                    .arg(format!("--port={}", self.server.port()))
                    .arg(format!("--user={USER}"))
                    .arg(format!("--password={PASSWORD}"))
                    .arg("--to-last-log");
                if contender == Contender::BinlogRaw {
                    command
                        .arg("--raw")
                        .arg(format!("--result-file={}/", dir.display()));
                } else {
                    command.args(["--base64-output=DECODE-ROWS", "--verbose"]);
                }
                command
                    .arg(&written.file)
                    .stdout(std::fs::File::create("/dev/null")?);
                command
            }
            Contender::Headless | Contender::HeadlessCounted => {
                let config = dir.join("cdc.toml");
                std::fs::write(
                    &config,
                    format!(
                        "[pipeline]\n{pipeline}\n\n[state]\ndir = \"state\"\n\n\
                         [[database]]\nname = \"bench\"\nkind = \"mysql\"\nurl = \"{url}\"\n\n\
                         [[listener]]\nidentifier = \"{name}\"\ndatabase = \"bench\"\n\
                         table = \"{DATABASE}.{table}\"\nstrategy = \"binlog\"\n\
                         start = \"beginning\"\n",
                        url = self.server.url(DATABASE),
                    ),
                )?;
                let mut command = wrapped(CDC_TUI);
                command.arg("--headless").arg("--config").arg(&config);
                if contender == Contender::Headless {
                    command.stdout(std::fs::File::create("/dev/null")?);
                } else {
                    command.stdout(Stdio::piped());
                }
                command
            }
        };
        let child = command
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", contender.label()))?;
        Ok(Running::Process {
            child,
            stderr: stderr_path,
        })
    }

    /// Waits for the contender to finish: `mariadb-binlog` by exiting, cdc-tui by saving the
    /// position of the workload's last transaction. Peak RSS is noted at each of `marks`
    /// (GTID sequence numbers) on the way.
    async fn wait_done(
        &self,
        contender: Contender,
        running: &mut Running,
        dir: &Path,
        end: u64,
        marks: &[u64],
        started: Instant,
    ) -> anyhow::Result<Done> {
        let Running::Process { child, stderr } = running else {
            bail!("not a process");
        };
        let pid = child.id();
        let mut done = Done::default();
        let mut marks = marks.iter().copied().peekable();
        loop {
            done.peak_kb = read_status_kb(pid, "VmHWM:").unwrap_or(done.peak_kb);
            done.cpu = cpu_seconds(pid).unwrap_or(done.cpu);
            let exited = child.try_wait()?;
            let reached = match contender {
                Contender::BinlogRaw | Contender::BinlogDecoded => match exited {
                    Some(status) if status.success() => end,
                    Some(status) => {
                        let text = std::fs::read_to_string(&*stderr).unwrap_or_default();
                        bail!("{} exited ({status}):\n{text}", contender.label());
                    }
                    None => 0,
                },
                Contender::Headless | Contender::HeadlessCounted => {
                    if let Some(status) = exited {
                        let text = std::fs::read_to_string(&*stderr).unwrap_or_default();
                        bail!("cdc-tui exited ({status}) before the end:\n{text}");
                    }
                    saved_sequence(&dir.join("state"))
                }
            };
            while let Some(&mark) = marks.peek() {
                if reached < mark {
                    break;
                }
                done.memory.push(done.peak_kb);
                marks.next();
            }
            if reached >= end {
                done.elapsed = started.elapsed().as_secs_f64();
                return Ok(done);
            }
            if started.elapsed() > DRAIN_LIMIT {
                bail!(
                    "{} did not finish in {DRAIN_LIMIT:?}: at sequence {reached} of {end}",
                    contender.label()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn drain(&self, rounds: usize) -> anyhow::Result<()> {
        let workload = Workload {
            inserts: 100_000,
            updates: 50_000,
            deletes: 25_000,
            interleaved: false,
        };
        let total = workload.total();
        let written = self.write("drain", &workload).await?;
        let end = written.end();
        let binlog_bytes = binlog_size(&self.server.dir().join("data"), &written.file);
        println!(
            "\n== mysql drain (MariaDB): {total} changes ({} inserts in {TX_ROWS}-row \
             transactions, {} updates, {} deletes; bigint, int, text; binlog_row_image = FULL), \
             written in {:.1} s; binlog {} ({:.1} MB), last GTID 0-1-{end}",
            workload.inserts,
            workload.updates,
            workload.deletes,
            written.seconds,
            written.file,
            binlog_bytes as f64 / 1e6
        );
        let contenders = [
            Contender::BinlogRaw,
            Contender::BinlogDecoded,
            Contender::Headless,
        ];
        let mut times: Vec<(Contender, Vec<f64>)> =
            contenders.iter().map(|&c| (c, Vec::new())).collect();
        for round in 0..rounds {
            let mut order = contenders.to_vec();
            order.rotate_left(round % contenders.len());
            for contender in order {
                let name = format!("r{round}_{}", contender.label().replace([' ', '-'], "_"));
                let started = Instant::now();
                let mut running = self.spawn(contender, &name, "drain", &written, "")?;
                let done = self
                    .wait_done(
                        contender,
                        &mut running,
                        &self.work.path().join(&name),
                        end,
                        &[],
                        started,
                    )
                    .await?;
                running.stop().await?;
                if contender == Contender::BinlogRaw {
                    let copied = binlog_size(&self.work.path().join(&name), &written.file);
                    anyhow::ensure!(
                        copied == binlog_bytes,
                        "mariadb-binlog --raw copied {copied} of {binlog_bytes} bytes"
                    );
                }
                println!(
                    "   round {} {:<32} {:>7.3} s   cpu {:.2} s, peak RSS {:.1} MB",
                    round + 1,
                    contender.label(),
                    done.elapsed,
                    done.cpu,
                    done.peak_kb as f64 / 1024.0
                );
                (times.iter_mut())
                    .find(|(c, _)| *c == contender)
                    .expect("listed")
                    .1
                    .push(done.elapsed);
            }
        }

        // The verification run: every change line counted.
        let name = "verify";
        let started = Instant::now();
        let mut running = self.spawn(Contender::HeadlessCounted, name, "drain", &written, "")?;
        let counter = running.count_lines()?;
        let done = self
            .wait_done(
                Contender::HeadlessCounted,
                &mut running,
                &self.work.path().join(name),
                end,
                &[],
                started,
            )
            .await?;
        running.stop().await?;
        let counted: Counted = counter
            .join()
            .map_err(|_| anyhow!("the line counter panicked"))??;
        anyhow::ensure!(
            counted.ops == [workload.inserts, workload.updates, workload.deletes]
                && counted.flushed == total,
            "cdc-tui headless printed {:?} change lines (ins, upd, del) and flush lines for {} \
             changes",
            counted.ops,
            counted.flushed
        );
        println!(
            "   verified: cdc-tui headless printed {} insert, {} update, {} delete lines and \
             flush lines for {} changes ({:.3} s with the benchmark reading stdout)",
            counted.ops[0], counted.ops[1], counted.ops[2], counted.flushed, done.elapsed
        );

        let reference = |contender: Contender| {
            (times.iter())
                .find(|(c, _)| *c == contender)
                .map_or(f64::NAN, |(_, s)| median(s))
        };
        let decoded = reference(Contender::BinlogDecoded);
        println!(
            "\n   {:<34} {:>9} {:>12} {:>9} {:>9}   rounds",
            "contender", "median s", "changes/s", "/ decoded", "/ raw"
        );
        for (contender, seconds) in &times {
            let time = median(seconds);
            let rounds: Vec<String> = seconds.iter().map(|s| format!("{s:.3}")).collect();
            println!(
                "   {:<34} {:>9.3} {:>12} {:>9.2} {:>9.2}   {}",
                contender.label(),
                time,
                thousands((total as f64 / time) as u64),
                time / decoded,
                time / reference(Contender::BinlogRaw),
                rounds.join(" ")
            );
        }
        let headless = reference(Contender::Headless) / decoded;
        println!(
            "   target: headless within 1.20x of mariadb-binlog decoding the rows: {headless:.2}x \
             {}",
            verdict(headless <= 1.20)
        );
        Ok(())
    }

    pub async fn memory(&self, changes: u64) -> anyhow::Result<()> {
        let workload = Workload::interleaved(changes);
        let total = workload.total();
        let written = self.write("memory", &workload).await?;
        let checkpoints = [total / 4, total / 2, total];
        let marks: Vec<u64> = (checkpoints.iter())
            .map(|&c| written.sequence_after(c))
            .collect();
        println!(
            "\n== mysql memory (MariaDB): {total} changes ({} inserts, {} updates, {} deletes, \
             mixed all along), log_capacity = 10000, written in {:.1} s; peak RSS (VmHWM) of \
             cdc-tui headless when its saved position passed",
            workload.inserts, workload.updates, workload.deletes, written.seconds
        );
        let name = "memory";
        let started = Instant::now();
        let mut running = self.spawn(
            Contender::Headless,
            name,
            "memory",
            &written,
            "log_capacity = 10000",
        )?;
        let done = self
            .wait_done(
                Contender::Headless,
                &mut running,
                &self.work.path().join(name),
                written.end(),
                &marks,
                started,
            )
            .await?;
        running.stop().await?;
        let cells: Vec<String> = (checkpoints.iter().zip(&done.memory))
            .map(|(changes, kb)| format!("{}: {:.1} MB", thousands(*changes), *kb as f64 / 1024.0))
            .collect();
        println!(
            "   cdc-tui headless   {}   drain {:.2} s, cpu {:.2} s",
            cells.join("   "),
            done.elapsed,
            done.cpu
        );
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Done {
    elapsed: f64,
    cpu: f64,
    peak_kb: u64,
    /// Peak RSS in kB when each mark was passed.
    memory: Vec<u64>,
}

/// The sequence number of a single-domain MariaDB GTID position `0-1-42`.
fn sequence(position: &str) -> anyhow::Result<u64> {
    position
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{position:?} is no GTID position of one domain"))
}

/// The sequence number in the one listener's saved position under `state`, 0 before any.
fn saved_sequence(state: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(state) else {
        return 0;
    };
    (entries.filter_map(Result::ok))
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
        .filter_map(|entry| std::fs::read(entry.path()).ok())
        .filter_map(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .filter_map(|saved| sequence(saved["position"].as_str()?).ok())
        .max()
        .unwrap_or(0)
}

fn binlog_size(dir: &Path, file: &str) -> u64 {
    let path: PathBuf = dir.join(file);
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}

//! Wires the parts together: config, logging, the handler, the runtime, and the front end
//! (TUI or headless), and turns outcomes into exit codes (SPEC: 0 clean, 2 usage or config,
//! 1 any other fatal error).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::Cli;
use crate::config::{self, LoadedConfig};
use crate::demo::{Demo, DemoError};
use crate::pipeline::sinks::JsonLinesSink;
use crate::pipeline::sinks::nats::{NatsSink, SinkStatus};
use crate::pipeline::{Handler, HandlerConfig, Sink};
use crate::positions::PositionStore;
use crate::registry::Registry;
use crate::runtime::{Database, Runtime};
use crate::secret::DatabaseUrl;
use crate::{headless, signals, tui};

/// The repo's cdc.toml: the demo's listeners when no config file exists.
const DEMO_CONFIG: &str = include_str!("../cdc.toml");

pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_FATAL: u8 = 1;

pub fn main(cli: Cli) -> ExitCode {
    if let Some(file) = cli.replay {
        return crate::replay::main(file, cli.replay_speed);
    }
    let loaded = match load_config(&cli) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("cdc-tui: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check_config {
        let config = &loaded.config;
        println!(
            "{}: ok ({}, {}{})",
            loaded.path.display(),
            counted(config.databases.len(), "database"),
            counted(config.listeners.len(), "listener"),
            if config.demo.enabled { ", demo" } else { "" }
        );
        return ExitCode::SUCCESS;
    }
    let log_file = match init_logging(&cli, &loaded) {
        Ok(log_file) => log_file,
        Err(error) => {
            eprintln!("cdc-tui: {error:#}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    // One worker thread runs capture: a change is handed from the replication connection's
    // task to its listener and on to the handler, and on separate workers each hand-off is a
    // thread wake-up (futex, eventfd, context switch) costing more than the work itself (the
    // drain benchmark: 1.2 s of CPU for 175,000 changes on two workers, 0.5 s on one). The TUI
    // draws on the main thread (`block_on`) beside it, and sinks write on the blocking pool.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cdc-tui: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    let demo = if loaded.config.demo.enabled {
        if !cli.headless {
            // Its cluster takes a few seconds to start; say so rather than show nothing.
            eprintln!(
                "cdc-tui: starting the demo database{}…",
                if loaded.config.demo.mysql { "s" } else { "" }
            );
        }
        let demo = &loaded.config.demo;
        match runtime.block_on(Demo::start(demo.rate, demo.mysql)) {
            Ok(demo) => Some(demo),
            Err(error) => {
                eprintln!("cdc-tui: {error}");
                let code = match error {
                    DemoError::NoServer(_) | DemoError::NoMariaDb(_) => EXIT_CONFIG,
                    _ => EXIT_FATAL,
                };
                return ExitCode::from(code);
            }
        }
    } else {
        None
    };
    let extra_databases: Vec<Database> = demo.iter().flat_map(Demo::databases).collect();
    let outcome = runtime.block_on(run(loaded, cli.headless, log_file, extra_databases));
    if cli.url.is_some() {
        // Nothing left behind: a URL run's state dir is its own.
        let _ = std::fs::remove_dir_all(url_state_dir());
    }
    if let Some(demo) = demo
        && let Err(error) = runtime.block_on(demo.stop())
    {
        tracing::warn!("stopping the demo database: {error}");
    }

    // Everything that matters was awaited above (listeners stopped, last batch flushed, demo
    // cluster stopped); what is left, such as the blocked stdin reader, must not hold the exit.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("cdc-tui: {error:#}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

fn load_config(cli: &Cli) -> Result<LoadedConfig, String> {
    if let Some(url) = &cli.url {
        return url_config(url, &cli.tables, cli.demo);
    }
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    if cli.config.is_none() && !path.exists() {
        if cli.demo {
            // No config file: the demo runs with the listeners of the repo's own cdc.toml.
            let text = DEMO_CONFIG;
            // Named as what it is (the help screen shows it); relative paths in it are taken
            // from the working directory, as for a cdc.toml there.
            let path = PathBuf::from("(built-in demo config)");
            let config =
                config::check_text(&path, text, true).map_err(|error| error.to_string())?;
            return Ok(LoadedConfig { config, path });
        }
        return Err(format!(
            "no config file: create {} (cdc-tui --help shows a minimal one), pass --config PATH, \
             or run with --demo",
            path.display()
        ));
    }
    config::load(&path, cli.demo).map_err(|error| error.to_string())
}

/// `1 database`, `2 databases`.
fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// `cdc-tui URL`: a config of one database and one listener on its whole scope (or the
/// `--table` patterns), its state (nothing a temporary slot needs) in a directory of its own
/// that is removed on exit.
fn url_config(url: &str, tables: &[String], demo: bool) -> Result<LoadedConfig, String> {
    let database = DatabaseUrl::new(url.to_string());
    let kind = crate::source::KINDS
        .iter()
        .find(|kind| {
            kind.url_schemes()
                .iter()
                .any(|scheme| url.starts_with(scheme))
        })
        .ok_or_else(|| {
            let schemes: Vec<&str> = crate::source::KINDS
                .iter()
                .flat_map(|kind| kind.url_schemes().iter().copied())
                .collect();
            format!(
                "{}: a URL to watch starts with {}",
                database.masked(),
                crate::source::either(&schemes)
            )
        })?;
    let name = url_database_name(url).unwrap_or_else(|| kind.name().to_string());
    let table = if tables.is_empty() {
        kind.whole_scope(&database)
    } else {
        tables.join(", ")
    };
    let quote = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
    let state = url_state_dir();
    let text = format!(
        "[state]\ndir = {}\n\n[[database]]\nname = {}\nkind = {}\nurl = {}\n\n\
         [[listener]]\nidentifier = {}\ndatabase = {}\ntable = {}\nstrategy = {}\n",
        quote(&state.display().to_string()),
        quote(&name),
        quote(kind.name()),
        quote(url),
        quote(&name),
        quote(&name),
        quote(&table),
        quote(
            kind.strategies()
                .first()
                .map_or("", |strategy| strategy.name())
        ),
    );
    let path = PathBuf::from("(URL on the command line)");
    let config = config::check_text(&path, &text, demo).map_err(|error| {
        // The generated text names no line the user wrote: say what was wrong with the URL.
        format!("{}: {}{}", database.masked(), error.key, error.message)
    })?;
    Ok(LoadedConfig { config, path })
}

/// The database a URL names (its path), for the listener's name.
fn url_database_name(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let name = path.split(['?', '#']).next()?;
    (!name.is_empty()).then(|| crate::secret::percent_decode(name))
}

/// Where a URL run keeps its state: a directory of this process's, removed on exit.
pub fn url_state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("cdc-tui-{}", std::process::id()))
}

/// Logs go to stderr in headless mode and to a file in TUI mode; never to stdout.
fn init_logging(cli: &Cli, loaded: &LoadedConfig) -> anyhow::Result<Option<PathBuf>> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CDC_TUI_LOG").unwrap_or_else(|_| {
        EnvFilter::new("cdc_tui=info,pgcluster=info,mariadb_cluster=info,warn")
    });
    if cli.headless {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
        return Ok(None);
    }
    let dir = loaded.state_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the state dir {}", dir.display()))?;
    let path = dir.join("cdc-tui.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open the log file {}", path.display()))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Arc::new(file))
        .init();
    Ok(Some(path))
}

async fn run(
    loaded: LoadedConfig,
    headless: bool,
    log_file: Option<PathBuf>,
    extra_databases: Vec<Database>,
) -> anyhow::Result<()> {
    let pipeline = HandlerConfig::from_pipeline(&loaded.config.pipeline);
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if headless {
        sinks.push(Box::new(JsonLinesSink::new(
            "stdout",
            std::io::stdout(),
            true,
        )));
    }
    if let Some(path) = loaded.jsonl_path() {
        sinks.push(Box::new(open_jsonl(&path)?));
    }
    let registry = Arc::new(Registry::new());
    let mut sink_status_printer = None;
    let mut give_up_on_nats = None;
    let mut sink_watches = Vec::new();
    if let Some(nats) = &loaded.config.sinks.nats {
        let sink = NatsSink::new(nats, registry.clone()).map_err(anyhow::Error::msg)?;
        tokio::spawn(sink.warm_up());
        give_up_on_nats = Some(sink.give_up_handle());
        sink_watches.push(tui::SinkWatch {
            name: "nats".into(),
            status: sink.subscribe_status(),
        });
        sink_status_printer = Some(tokio::spawn(report_sink_status(
            sink.subscribe_status(),
            headless,
        )));
        sinks.push(Box::new(sink));
    }
    let (handler, changes) = Handler::new(pipeline, sinks);
    let timings = handler.timings();
    let log = handler.log();

    let status_events = registry.subscribe();
    let runtime = Arc::new(Runtime::new(
        registry.clone(),
        Runtime::databases_of(&loaded)
            .into_iter()
            .chain(extra_databases)
            .collect(),
        PositionStore::new(loaded.state_dir()),
        changes,
    ));
    let handler_task = tokio::spawn(handler.run());
    let (printer_done, printer_stop) = tokio::sync::oneshot::channel();
    let status_printer =
        headless.then(|| tokio::spawn(headless::print_status_events(status_events, printer_stop)));

    let config_source = loaded.path.display().to_string();
    for listener in loaded.config.listeners.clone() {
        match runtime.start(listener) {
            Ok(handle) => handle.set_config_source(&config_source),
            Err(message) => tracing::error!("{message}"),
        }
    }

    let ui_result = if headless {
        // A signal, or stdin at its end with no listener left that can progress.
        tokio::select! {
            () = signals::terminated() => Ok(()),
            served = headless::serve(runtime.clone()) => served,
        }
    } else {
        let ui = tui::UiContext {
            runtime: runtime.clone(),
            timings,
            log,
            sinks: sink_watches,
            log_file,
            config_path: loaded.path.clone(),
        };
        tui::run(ui).await
    };
    // However the UI ended: stop the listeners once, then let the handler flush what it holds.
    runtime.shutdown().await;
    if let Some(give_up) = give_up_on_nats {
        give_up.send_replace(true);
    }
    drop(runtime);
    drop(registry);
    let flushed = match handler_task.await {
        Ok(flushed) => flushed.map(drop).context("writing changes failed"),
        Err(error) => Err(anyhow::Error::new(error).context("the handler task panicked")),
    };
    if let Some(printer) = status_printer {
        let _ = printer_done.send(());
        let _ = printer.await;
    }
    if let Some(printer) = sink_status_printer {
        printer.abort();
    }
    match (ui_result, flushed) {
        (Err(ui_error), Err(flush_error)) => {
            tracing::error!("{flush_error:#}");
            Err(ui_error)
        }
        (Err(error), Ok(())) | (Ok(()), Err(error)) => Err(error),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// Reports the NATS sink's state as it changes: a status line in headless mode (with `sink`
/// where a listener's has `listener`), the log in both modes.
async fn report_sink_status(mut status: tokio::sync::watch::Receiver<SinkStatus>, headless: bool) {
    while status.changed().await.is_ok() {
        let current = status.borrow_and_update().clone();
        match &current.reason {
            Some(reason) => tracing::warn!("nats sink {}: {reason}", current.state),
            None => tracing::info!("nats sink {}", current.state),
        }
        if headless {
            headless::print_line(&crate::pipeline::sinks::nats::status_line(&current));
        }
    }
}

fn open_jsonl(path: &Path) -> anyhow::Result<JsonLinesSink<std::io::BufWriter<std::fs::File>>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the jsonl sink {}", path.display()))?;
    Ok(JsonLinesSink::new(
        "jsonl",
        std::io::BufWriter::new(file),
        false,
    ))
}

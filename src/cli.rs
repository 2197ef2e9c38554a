//! The command line (SPEC: "Command line").

use std::path::PathBuf;

use clap::Parser;

/// Shown by --help, since an installed binary comes without the README.
const MINIMAL_CONFIG: &str = "A minimal cdc.toml:
  [[database]]
  name = \"shop\"
  kind = \"postgres\"
  url = \"postgres://app@localhost/shop\"

  [[listener]]
  identifier = \"orders\"
  database = \"shop\"
  table = \"public.orders\"
  strategy = \"logical\"";

#[derive(Debug, Parser)]
#[command(
    name = "cdc-tui",
    version,
    about = crate::source::about(),
    after_help = MINIMAL_CONFIG
)]
pub struct Cli {
    /// Watch this database with no config file: every table (or collection) the URL's user
    /// can read, one listener, a temporary slot where one is needed (postgres://…, mongodb://…)
    #[arg(value_name = "URL")]
    pub url: Option<String>,
    /// With URL: watch only these (repeatable): public.orders, public.*, shop.*
    #[arg(short, long = "table", value_name = "PATTERN", requires = "url")]
    pub tables: Vec<String>,
    /// Config file; default ./cdc.toml, else $XDG_CONFIG_HOME/cdc-tui/cdc.toml
    #[arg(short, long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// No TUI: JSON lines on stdout, control commands on stdin
    #[arg(long)]
    pub headless: bool,
    /// Run the embedded demo (same as [demo] enabled = true)
    #[arg(long)]
    pub demo: bool,
    /// Open a recorded JSON-lines file (headless output or the jsonl sink) in the TUI, with no
    /// database: listeners, counters, log, detail, filter, transactions, flush timings
    #[arg(long, value_name = "FILE", conflicts_with_all = ["url", "headless", "demo", "check_config"])]
    pub replay: Option<PathBuf>,
    /// With --replay: play the recorded times at this speed (1 = as recorded, 10 = ten times
    /// as fast); default: as fast as the file reads. Space pauses
    #[arg(long, value_name = "SPEED", requires = "replay", value_parser = positive_speed)]
    pub replay_speed: Option<f64>,
    /// Validate the config, print what is wrong, exit
    #[arg(long)]
    pub check_config: bool,
}

fn positive_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(speed),
        _ => Err("a number above 0, such as 1 or 0.5".to_string()),
    }
}

//! The command line (SPEC: "Command line").

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "cdc-tui",
    version,
    about = crate::source::about()
)]
pub struct Cli {
    /// Config file; default ./cdc.toml, else $XDG_CONFIG_HOME/cdc-tui/cdc.toml
    #[arg(short, long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// No TUI: JSON lines on stdout, control commands on stdin
    #[arg(long)]
    pub headless: bool,
    /// Run the embedded demo (same as [demo] enabled = true)
    #[arg(long)]
    pub demo: bool,
    /// Validate the config, print what is wrong, exit
    #[arg(long)]
    pub check_config: bool,
}

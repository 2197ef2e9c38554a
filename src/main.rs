use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cdc_tui::app::main(cdc_tui::cli::Cli::parse())
}

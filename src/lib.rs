//! cdc-tui: watch database change data capture live.
//!
//! Sources (`source/`) capture changes into one chunking handler (`pipeline/`); the listener
//! registry (`registry`) is where the capture runtime and the UI (`tui/`, or `headless`) meet.

pub mod app;
pub mod change;
pub mod cli;
pub mod config;
pub mod demo;
pub mod headless;
pub mod pipeline;
pub mod positions;
pub mod registry;
pub mod replay;
pub mod runtime;
pub mod secret;
pub mod signals;
pub mod source;
pub mod tui;
pub mod units;

//! The terminal UI.

use std::path::PathBuf;
use std::sync::Arc;

use crate::pipeline::{FlushTimings, LogRing};
use crate::runtime::Runtime;

/// What the UI reads: the runtime (registry snapshot, commands), the handler's log ring and
/// flush timings, and where logs go.
pub struct UiContext {
    pub runtime: Arc<Runtime>,
    pub timings: Arc<FlushTimings>,
    pub log: Arc<LogRing>,
    pub log_file: Option<PathBuf>,
    pub config_path: PathBuf,
}

pub async fn run(_ui: UiContext) -> anyhow::Result<()> {
    anyhow::bail!("the TUI is not built yet: run with --headless")
}

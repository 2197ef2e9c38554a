//! What the UI's state asks of the runtime, carried out by the event loop.

use std::path::PathBuf;
use std::sync::Arc;

use crate::runtime::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Quit,
    TogglePause(Arc<str>),
    Stop(Arc<str>),
    /// Read the tables of a database for the add dialog; the answer carries `request`.
    ListTables {
        request: u64,
        database: String,
    },
    Add(Command),
    /// Copy entry `number` out of the log and show it.
    OpenDetail(u64),
    /// Show the transaction whose first change is entry `anchor`, with its changes.
    OpenTransaction(u64),
    /// Put the changes of the transaction whose first change is entry `anchor` on the
    /// clipboard, as JSON lines.
    CopyTransaction(u64),
    /// Pause or resume the replay.
    PauseReplay,
    Restart(Arc<str>),
    /// Take a stopped or failed listener out of the table.
    Remove(Arc<str>),
    /// Put entry `number` on the clipboard as JSON.
    Copy(u64),
    /// Write the entries the filter shows to this file, as JSON lines.
    Export(PathBuf),
}

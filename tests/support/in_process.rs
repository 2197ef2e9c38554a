//! Listeners run inside the test, for what headless output does not show (a listener's detail):
//! a handler whose one sink keeps every change line, a registry, a state dir, and the
//! listeners' tasks, all stopped and awaited by `finish`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdc_tui::config::ListenerConfig;
use cdc_tui::pipeline::{Batch, ChangeSender, Handler, HandlerConfig, Sink, SinkError};
use cdc_tui::positions::PositionStore;
use cdc_tui::registry::{ListenerHandle, Registry};
use cdc_tui::secret::DatabaseUrl;
use cdc_tui::source::{SourceContext, run_listener};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::DEADLINE;

/// Takes the change lines of every batch.
struct Lines(Arc<Mutex<Vec<Value>>>);

impl Sink for Lines {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let mut lines = self.0.lock().expect("lines");
        for change in &batch.changes {
            let mut line = Vec::new();
            change.write_json_line(&mut line);
            lines.push(serde_json::from_slice(&line).expect("a JSON line"));
        }
        Ok(())
    }
}

pub struct InProcess {
    pub registry: Registry,
    lines: Arc<Mutex<Vec<Value>>>,
    changes: Option<ChangeSender>,
    handler: JoinHandle<Result<u64, SinkError>>,
    listeners: Vec<JoinHandle<()>>,
    handles: Vec<Arc<ListenerHandle>>,
    state_dir: tempfile::TempDir,
}

impl InProcess {
    pub fn new() -> InProcess {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (handler, changes) = Handler::new(
            HandlerConfig {
                chunk_size: 100,
                timeout: Duration::from_millis(20),
                log_capacity: 100,
            },
            vec![Box::new(Lines(Arc::clone(&lines)))],
        );
        InProcess {
            registry: Registry::new(),
            lines,
            changes: Some(changes),
            handler: tokio::spawn(handler.run()),
            listeners: Vec::new(),
            handles: Vec::new(),
            state_dir: tempfile::tempdir().expect("state dir"),
        }
    }

    /// Adds the listener and runs it on `url` with its kind's strategy.
    pub fn start(&mut self, config: ListenerConfig, kind: &str, url: &str) -> Arc<ListenerHandle> {
        let strategy = cdc_tui::source::strategy(kind, &config.strategy).expect("registered");
        let handle = self.registry.add(config).expect("add");
        let ctx = SourceContext::new(
            handle.clone(),
            DatabaseUrl::new(url.to_string()),
            PositionStore::new(self.state_dir.path()),
            self.changes.clone().expect("not finished"),
        );
        self.listeners
            .push(tokio::spawn(run_listener(ctx, strategy)));
        self.handles.push(handle.clone());
        handle
    }

    /// The change lines flushed so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().expect("lines").clone()
    }

    /// Stops every listener, then waits for the listeners and the handler to end.
    pub async fn finish(mut self) {
        for handle in &self.handles {
            self.registry.stop(handle.identity()).expect("stop");
        }
        for listener in self.listeners.drain(..) {
            tokio::time::timeout(DEADLINE, listener)
                .await
                .expect("the listener stops")
                .expect("listener task");
        }
        self.changes = None;
        drop(self.registry);
        drop(self.handles);
        tokio::time::timeout(DEADLINE, self.handler)
            .await
            .expect("the handler ends")
            .expect("handler task")
            .expect("flushes");
    }
}

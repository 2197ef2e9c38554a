//! The supervisor: every listener runs as one task under [`run_listener`], which turns a
//! strategy's errors into states (`retrying` with capped exponential backoff, or `failed`) so
//! a failing listener never stops the others and no error is printed and forgotten.

use std::time::Duration;

use crate::registry::ListenerState;
use crate::source::context::wait_for_stop;
use crate::source::{ErrorKind, SourceContext, SourceError, Strategy};

/// How long a stopped source may take to drain and save before it is cancelled.
pub const STOP_GRACE: Duration = Duration::from_secs(12);

/// Capped exponential backoff: 0.5 s, 1 s, 2 s, … up to 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}

/// Runs one listener with `strategy` until it stops or fails, retrying transient errors with
/// backoff. The listener shows `starting` once per run: a retry stays `retrying` until the
/// strategy reports `running` again.
pub async fn run_listener(mut ctx: SourceContext, strategy: &'static dyn Strategy) {
    let mut backoff = Backoff::default();
    loop {
        ctx.connected = false;
        let mut stop_requested = ctx.subscribe_control();
        let result = {
            let run = strategy.run(&mut ctx);
            tokio::pin!(run);
            // A source notices a stop itself, drains and saves its position; one stuck in a
            // connect that never answers is given up on after a grace period.
            tokio::select! {
                result = &mut run => result,
                () = wait_for_stop(&mut stop_requested) => {
                    tokio::time::timeout(STOP_GRACE, &mut run)
                        .await
                        .unwrap_or_else(|_| Err(SourceError::stopped()))
                }
            }
        };
        let error = match result {
            Ok(()) => SourceError::stopped(),
            Err(error) => error,
        };
        match error.kind {
            ErrorKind::Stopped => {
                ctx.set_state(ListenerState::Stopped, None);
                return;
            }
            ErrorKind::Permanent => {
                tracing::error!(listener = ctx.identity(), "failed: {}", error.message);
                ctx.set_state(ListenerState::Failed, Some(error.message));
                return;
            }
            ErrorKind::Transient => {
                if ctx.connected {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(
                    listener = ctx.identity(),
                    "retrying in {delay:?}: {}",
                    error.message
                );
                ctx.set_state(
                    ListenerState::Retrying,
                    Some(format!(
                        "{} (next try in {:.1} s)",
                        error.message,
                        delay.as_secs_f64()
                    )),
                );
                let mut stop_requested = ctx.subscribe_control();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = wait_for_stop(&mut stop_requested) => {
                        ctx.set_state(ListenerState::Stopped, None);
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::future::BoxFuture;
    use tokio::time::Instant;

    use super::*;
    use crate::config::schema::ListenerConfig;
    use crate::positions::PositionStore;
    use crate::registry::{ListenerHandle, Registry, StatusEvent};
    use crate::secret::DatabaseUrl;
    use crate::source::OptionError;

    /// What the fake strategy does on each run, in order; once the script is done it waits
    /// for the stop (or, `Hang`, ignores it).
    #[derive(Debug, Clone)]
    enum Step {
        /// Fails at once with this error.
        Fail(SourceError),
        /// Reports running, then fails transiently.
        RunThenDrop,
        /// Never returns, not even on a stop (a connect that never answers).
        Hang,
    }

    struct Scripted {
        steps: Mutex<Vec<Step>>,
        runs: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn leak(steps: Vec<Step>) -> &'static Scripted {
            Box::leak(Box::new(Scripted {
                steps: Mutex::new(steps.into_iter().rev().collect()),
                runs: Mutex::new(Vec::new()),
            }))
        }

        /// The gaps between the starts of successive runs.
        fn gaps(&self) -> Vec<Duration> {
            let runs = self.runs.lock().unwrap();
            runs.windows(2).map(|pair| pair[1] - pair[0]).collect()
        }
    }

    impl Strategy for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn note(&self) -> &'static str {
            "a scripted fake"
        }
        fn option_keys(&self) -> &'static [&'static str] {
            &[]
        }
        fn check_options(&self, _: &toml::Table) -> Result<(), OptionError> {
            Ok(())
        }
        fn run<'a>(&'a self, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), SourceError>> {
            Box::pin(async move {
                self.runs.lock().unwrap().push(Instant::now());
                let step = self.steps.lock().unwrap().pop();
                match step {
                    Some(Step::Fail(error)) => Err(error),
                    Some(Step::RunThenDrop) => {
                        ctx.set_running();
                        Err(SourceError::transient("dropped"))
                    }
                    Some(Step::Hang) => std::future::pending().await,
                    None => {
                        ctx.set_running();
                        ctx.unless_stopped(std::future::pending::<()>()).await
                    }
                }
            })
        }
    }

    struct Run {
        handle: Arc<ListenerHandle>,
        events: tokio::sync::broadcast::Receiver<StatusEvent>,
        task: tokio::task::JoinHandle<()>,
        registry: Registry,
        _dir: tempfile::TempDir,
    }

    fn start(strategy: &'static Scripted) -> Run {
        let registry = Registry::new();
        let events = registry.subscribe();
        let handle = registry
            .add(ListenerConfig::new("fake", "db", "t", "scripted"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (changes, _receiver) = tokio::sync::mpsc::channel(1);
        let ctx = SourceContext::new(
            handle.clone(),
            DatabaseUrl::new("fake://".to_string()),
            PositionStore::new(dir.path()),
            changes,
        );
        Run {
            handle,
            events,
            task: tokio::spawn(run_listener(ctx, strategy)),
            registry,
            _dir: dir,
        }
    }

    impl Run {
        fn stop(&self) {
            self.registry.stop(self.handle.identity()).unwrap();
        }

        /// Every state announced so far, with its reason.
        fn states(&mut self) -> Vec<(ListenerState, Option<String>)> {
            std::iter::from_fn(|| self.events.try_recv().ok())
                .map(|event| (event.state, event.reason))
                .collect()
        }

        async fn wait_for(&self, state: ListenerState) {
            while self.handle.state() != state {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..9).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), BACKOFF_FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_with_growing_waits_and_show_retrying_until_running() {
        let down = || Step::Fail(SourceError::transient("connection refused"));
        let strategy = Scripted::leak(vec![down(), down(), down()]);
        let mut run = start(strategy);
        run.wait_for(ListenerState::Running).await;
        assert_eq!(
            strategy.gaps(),
            [500, 1000, 2000].map(Duration::from_millis),
            "each wait doubles"
        );
        let states = run.states();
        assert_eq!(
            states,
            vec![
                (ListenerState::Starting, None),
                (
                    ListenerState::Retrying,
                    Some("connection refused (next try in 0.5 s)".into())
                ),
                (
                    ListenerState::Retrying,
                    Some("connection refused (next try in 1.0 s)".into())
                ),
                (
                    ListenerState::Retrying,
                    Some("connection refused (next try in 2.0 s)".into())
                ),
                (ListenerState::Running, None),
            ],
            "starting once, then retrying until running"
        );
        run.stop();
        run.task.await.unwrap();
        assert_eq!(run.handle.state(), ListenerState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn reaching_running_starts_the_backoff_over() {
        let down = || Step::Fail(SourceError::transient("refused"));
        let strategy = Scripted::leak(vec![down(), down(), Step::RunThenDrop, down()]);
        let run = start(strategy);
        run.wait_for(ListenerState::Running).await;
        // Runs: fail, +0.5 s fail, +1 s run-then-drop, +0.5 s (reset) fail, +1 s running.
        while strategy.runs.lock().unwrap().len() < 5 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            strategy.gaps(),
            [500, 1000, 500, 1000].map(Duration::from_millis)
        );
        run.stop();
        run.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_fails_at_once_with_its_reason() {
        let strategy = Scripted::leak(vec![Step::Fail(SourceError::permanent("no such table"))]);
        let mut run = start(strategy);
        (&mut run.task).await.unwrap();
        assert_eq!(strategy.runs.lock().unwrap().len(), 1, "never retried");
        assert_eq!(
            run.states().last(),
            Some(&(ListenerState::Failed, Some("no such table".into())))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_the_backoff_ends_it_at_once() {
        let strategy = Scripted::leak(vec![Step::Fail(SourceError::transient("refused"))]);
        let run = start(strategy);
        run.wait_for(ListenerState::Retrying).await;
        let stopped_at = Instant::now();
        run.stop();
        run.task.await.unwrap();
        assert_eq!(run.handle.state(), ListenerState::Stopped);
        assert_eq!(
            stopped_at.elapsed(),
            Duration::ZERO,
            "no wait for the backoff"
        );
        assert_eq!(strategy.runs.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_that_ignores_the_stop_is_given_up_on_after_the_grace() {
        let strategy = Scripted::leak(vec![Step::Hang]);
        let run = start(strategy);
        while strategy.runs.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let stopped_at = Instant::now();
        run.stop();
        run.task.await.unwrap();
        assert_eq!(run.handle.state(), ListenerState::Stopped);
        assert_eq!(stopped_at.elapsed(), STOP_GRACE);
    }
}

//! Stopping a workload from outside: drain (SIGTERM) or kill (SIGKILL).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A stop request for one workload; clone it freely (all clones are the same signal).
///
/// * [`StopSignal::drain`]: an HTTP server stops accepting, lets in-flight requests finish for
///   up to `grace`, then cancels what is left; a command keeps running for up to `grace`
///   (WASI has no signals to deliver), then is killed.
/// * [`StopSignal::kill`]: everything stops now. Also valid after `drain`, to cut a grace short.
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    drain: CancellationToken,
    kill: CancellationToken,
    grace: Mutex<Duration>,
}

impl StopSignal {
    /// A signal nobody has raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask for a graceful stop with this grace period. The first call's grace counts.
    pub fn drain(&self, grace: Duration) {
        if !self.inner.drain.is_cancelled() {
            if let Ok(mut g) = self.inner.grace.lock() {
                *g = grace;
            }
            self.inner.drain.cancel();
        }
    }

    /// Stop at once.
    pub fn kill(&self) {
        self.inner.drain.cancel();
        self.inner.kill.cancel();
    }

    /// Whether `kill` was called.
    pub fn is_killed(&self) -> bool {
        self.inner.kill.is_cancelled()
    }

    /// Whether `drain` or `kill` was called.
    pub fn is_stopping(&self) -> bool {
        self.inner.drain.is_cancelled()
    }

    /// Resolves when `drain` (or `kill`) is called; yields the grace period.
    pub(crate) async fn drained(&self) -> Duration {
        self.inner.drain.cancelled().await;
        if self.is_killed() {
            return Duration::ZERO;
        }
        self.inner.grace.lock().map(|g| *g).unwrap_or_default()
    }

    /// Resolves when `kill` is called.
    pub(crate) async fn killed(&self) {
        self.inner.kill.cancelled().await
    }

    /// Resolves when the workload must end now: killed, or drained and the grace is over.
    pub(crate) async fn must_end(&self) {
        let grace_over = async {
            let grace = self.drained().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            _ = self.killed() => {}
            _ = grace_over => {}
        }
    }
}

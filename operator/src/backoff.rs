//! Per-app exponential backoff for failed reconciles: 1 s, 2 s, 4 s … capped at 5 min, reset
//! by the first successful reconcile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;

use crate::WasmApp;

/// First retry delay.
pub const BASE_DELAY: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// Consecutive failures per app.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<ObjectRef<WasmApp>, u32>>,
}

impl Backoff {
    /// Record one more failure of `app` and return how long to wait before retrying it.
    pub fn next_delay(&self, app: &WasmApp) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(ObjectRef::from_obj(app)).or_insert(0);
        let delay = BASE_DELAY
            .checked_mul(1u32.checked_shl(*count).unwrap_or(u32::MAX))
            .unwrap_or(MAX_DELAY)
            .min(MAX_DELAY);
        *count = count.saturating_add(1);
        delay
    }

    /// Forget the failures of `app` after it reconciled cleanly.
    pub fn reset(&self, app: &WasmApp) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&ObjectRef::from_obj(app));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WasmAppSpec;

    fn app(name: &str) -> WasmApp {
        let mut app = WasmApp::new(name, WasmAppSpec::default());
        app.metadata.namespace = Some("ns".into());
        app
    }

    #[test]
    fn delays_double_per_failure_up_to_the_cap_and_reset_on_success() {
        let backoff = Backoff::default();
        let a = app("a");
        let delays: Vec<u64> = (0..12).map(|_| backoff.next_delay(&a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        // Another app has its own count.
        assert_eq!(backoff.next_delay(&app("b")), BASE_DELAY);
        backoff.reset(&a);
        assert_eq!(backoff.next_delay(&a), BASE_DELAY);
    }
}

//! What the operator remembers between reconciles, in memory only (a restart forgets it and
//! costs at most one redundant write): the status this operator last wrote for an app, until
//! the watch has brought it to the cache. Without it, a reconcile that runs before the app's
//! watch event arrives compares with the old status and writes the same status again, with a
//! duplicate Event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use crate::{WasmApp, WasmAppStatus};

/// How long a written status stands in for the cached one at most (the watch delivers it long
/// before that; if someone else changes the status meanwhile, the next reconcile after this
/// sees it).
pub const RECENT_STATUS_TTL: Duration = Duration::from_secs(30);

/// A status this operator wrote: when, the app's resourceVersion the write produced, and the
/// status.
#[derive(Debug)]
struct Written {
    at: Instant,
    resource_version: Option<String>,
    status: WasmAppStatus,
}

/// The statuses this operator wrote recently.
#[derive(Debug, Default)]
pub struct RecentStatuses(Mutex<HashMap<ObjectRef<WasmApp>, Written>>);

impl RecentStatuses {
    /// Remember that `status` was written to `app`, which then had `resource_version`.
    pub fn written(&self, app: &WasmApp, resource_version: Option<String>, status: WasmAppStatus) {
        let mut recent = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        recent.retain(|_, written| now.duration_since(written.at) < RECENT_STATUS_TTL);
        recent.insert(
            ObjectRef::from_obj(app),
            Written {
                at: now,
                resource_version,
                status,
            },
        );
    }

    /// The status to take as stored for `app`: the one this operator wrote last, while the
    /// cached app does not show that write yet (its resourceVersion is another) and the write
    /// is recent; else the cached one.
    pub fn stored(&self, app: &WasmApp) -> Option<WasmAppStatus> {
        let mut recent = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = ObjectRef::from_obj(app);
        let fresh = recent.get(&key).filter(|written| {
            written.at.elapsed() < RECENT_STATUS_TTL
                && written.resource_version != app.metadata.resource_version
        });
        match fresh {
            Some(written) => Some(written.status.clone()),
            None => {
                recent.remove(&key);
                app.status.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WasmAppSpec;

    fn app(resource_version: &str, status: Option<WasmAppStatus>) -> WasmApp {
        let mut app = WasmApp::new("hello", WasmAppSpec::default());
        app.metadata.namespace = Some("demo".into());
        app.metadata.resource_version = Some(resource_version.into());
        app.status = status;
        app
    }

    fn status(generation: i64) -> WasmAppStatus {
        WasmAppStatus {
            observed_generation: Some(generation),
            ..WasmAppStatus::default()
        }
    }

    #[test]
    fn a_written_status_stands_in_until_the_cache_shows_the_write() {
        let recent = RecentStatuses::default();
        let stale = app("10", Some(status(1)));
        assert_eq!(recent.stored(&stale), Some(status(1)));
        recent.written(&stale, Some("11".into()), status(2));
        // The watch has not delivered resourceVersion 11 yet: the written status counts.
        assert_eq!(recent.stored(&stale), Some(status(2)));
        // It has: the cache is the truth again (and the record is dropped).
        let caught_up = app("11", Some(status(2)));
        assert_eq!(recent.stored(&caught_up), Some(status(2)));
        assert_eq!(recent.stored(&stale), Some(status(1)));
    }
}

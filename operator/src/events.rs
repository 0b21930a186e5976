//! Events about apps, published in the background: a reconcile does not wait for its Event (it
//! is informational and best-effort), so the reconcile's slot goes to the next app at once. A
//! few Events are in flight at a time, so a burst of apps cannot open a connection per Event.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};
use tokio::sync::Semaphore;
use tracing::{Instrument, warn};

/// Most Events being sent at once.
pub const EVENTS_IN_FLIGHT: usize = 8;

/// Sends Events without making the caller wait.
#[derive(Clone)]
pub struct Publisher {
    recorder: Recorder,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher reporting as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            recorder: Recorder::new(client, reporter),
            in_flight: Arc::new(Semaphore::new(EVENTS_IN_FLIGHT)),
        }
    }

    /// Queue `event` about `reference`; a failure is logged, never returned.
    pub fn publish(&self, event: Event, reference: ObjectReference) {
        let recorder = self.recorder.clone();
        let in_flight = self.in_flight.clone();
        tokio::spawn(
            async move {
                // The semaphore is never closed, so a permit always comes.
                let _permit = in_flight.acquire_owned().await;
                if let Err(error) = recorder.publish(&event, &reference).await {
                    warn!(%error, reason = %event.reason, "could not publish event");
                }
            }
            .in_current_span(),
        );
    }
}

//! The controller loop: watches WasmApps and the children they own, runs [`reconcile`] and
//! retries failures with per-app exponential backoff.

use std::future::Future;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::builders::LABEL_MANAGED_BY;
use crate::events::Publisher;
use crate::metrics::Metrics;
use crate::reconcile::{Children, Context, reconcile};
use crate::types::CRD_NAME;
use crate::{Error, FIELD_MANAGER, WasmApp};

/// Where the controller looks for apps, and how many it reconciles at once.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Watch only this namespace; `None` watches all of them.
    pub namespace: Option<String>,
    /// Most reconciles in flight at once (0: no limit). Each one holds an API connection, so
    /// a burst of thousands of apps must not open thousands of connections.
    pub concurrency: u16,
}

impl Scope {
    fn api<K>(&self, client: Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(client, namespace),
            None => Api::all(client),
        }
    }
}

/// Requeue a failed app after its next backoff delay.
pub fn error_policy(app: Arc<WasmApp>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error);
    let delay = ctx.backoff.next_delay(&app);
    warn!(
        namespace = app.namespace().unwrap_or_default(),
        name = app.name_any(),
        %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Fail with a message that says what to do when the WasmApp CRD is not installed (or the
/// operator may not list WasmApps).
pub async fn check_crd_installed(client: &Client, scope: &Scope) -> anyhow::Result<()> {
    let apps: Api<WasmApp> = scope.api(client.clone());
    match apps.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(anyhow::anyhow!(
            "the CustomResourceDefinition {CRD_NAME} is not installed in this cluster: \
             install it with `kubectl apply -f crds/{CRD_NAME}.yaml` (or the Helm chart) and start the operator again"
        )),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(anyhow::anyhow!(
            "the operator may not list WasmApps ({}): grant list/watch on wasmapps.feather.dev",
            status.message
        )),
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "listing WasmApps to check that {CRD_NAME} is installed"
        ))),
    }
}

/// A controller ready to run, with its cache of apps exposed for metrics.
pub struct Running {
    /// The controller's cache of WasmApps.
    pub store: Store<WasmApp>,
    controller: Controller<WasmApp>,
    context: Arc<Context>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

/// A watch of `api` whose events land in the returned cache before the stream yields them,
/// so a reconcile triggered by a change already reads the changed object. `managedFields` are
/// dropped from the cache (nothing reads them; they are most of an object's size).
fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(writer);
    (reader, stream)
}

/// Build the controller: WasmApps plus owned Deployments, Services and HPAs (only those with
/// the operator's managed-by label, so the caches stay small). The children's watches fill the
/// caches reconciles read them from; a change to a child reconciles its app.
pub fn build(client: Client, scope: &Scope, metrics: Arc<Metrics>, instance: String) -> Running {
    let labelled =
        watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    let (deployments, deployment_events) =
        cached(scope.api::<Deployment>(client.clone()), labelled.clone());
    let (services, service_events) = cached(scope.api::<Service>(client.clone()), labelled.clone());
    let (hpas, hpa_events) = cached(
        scope.api::<HorizontalPodAutoscaler>(client.clone()),
        labelled,
    );
    let (apps, app_events) = cached(
        scope.api::<WasmApp>(client.clone()),
        watcher::Config::default(),
    );
    // Every change of an app reconciles it, its status too: when the cached app lags behind a
    // status this operator wrote, the next look corrects it, and a reconcile that finds
    // nothing to do costs no request. Deleted apps need nothing (garbage collection), but a
    // deleted child reconciles its app, which recreates it.
    let controller = Controller::for_stream(app_events.applied_objects(), apps)
        .with_config(kube::runtime::controller::Config::default().concurrency(scope.concurrency))
        .owns_stream(deployment_events.touched_objects())
        .owns_stream(service_events.touched_objects())
        .owns_stream(hpa_events.touched_objects());
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_string(),
        instance: Some(instance),
    };
    let context = Arc::new(Context {
        events: Publisher::new(client.clone(), reporter),
        client,
        metrics,
        backoff: Backoff::default(),
        children: Children {
            deployments,
            services,
            hpas,
        },
        recent: Default::default(),
    });
    Running {
        store: controller.store(),
        controller,
        context,
    }
}

impl Running {
    /// Run until `shutdown` resolves; in-flight reconciles finish first.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
        info!("controller started");
        self.controller
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, self.context)
            .for_each(|result| async move {
                if let Err(error) = result {
                    // Reconcile failures are already logged by error_policy; these are the
                    // watch and queue errors.
                    match error {
                        kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                        other => warn!(error = %other, "controller stream error"),
                    }
                }
            })
            .await;
        info!("controller stopped");
    }
}

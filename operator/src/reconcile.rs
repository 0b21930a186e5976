//! One reconcile of one WasmApp: apply the children that changed, then write the status if it
//! changed, publishing an Event for every change. An unchanged app costs two or three GETs and
//! makes no write at all.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Span, debug, field, info, instrument, warn};

use crate::backoff::Backoff;
use crate::builders::{self, ANNOTATION_AUTOSCALED, required_name, required_namespace, spec_hash};
use crate::metrics::Metrics;
use crate::status::{self, CONDITION_DEGRADED, CONDITION_READY, ConditionState};
use crate::types::{GROUP, VERSION};
use crate::{Error, FIELD_MANAGER, Result, WasmApp, WasmAppStatus};

/// How often an app that is fine is looked at again without any watch event.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(600);

/// What every reconcile shares.
pub struct Context {
    /// Client to the API server.
    pub client: Client,
    /// Publishes Events about apps.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Per-app retry delays after failures.
    pub backoff: Backoff,
}

impl Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

/// Bring the children and the status of `app` to what its spec asks for.
#[instrument(skip_all, fields(namespace = field::Empty, name = field::Empty, generation = field::Empty))]
pub async fn reconcile(app: Arc<WasmApp>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    let namespace = required_namespace(&app)?;
    let name = required_name(&app)?;
    let span = Span::current();
    span.record("namespace", namespace.as_str());
    span.record("name", name.as_str());
    span.record("generation", app.metadata.generation.unwrap_or(0));

    let now = Time(Timestamp::now());
    let mut changes = Vec::new();
    let applied = apply_children(&app, &ctx, &namespace, &name, &mut changes).await;
    if !changes.is_empty() {
        // One event per reconcile that changed children, listing what changed.
        publish(&ctx, &app, EventType::Normal, "Applied", changes.join("; ")).await;
    }
    match applied {
        Ok(deployment) => {
            let desired = status::desired_status(&app, Some(&deployment), None, &now);
            write_status(&app, &ctx, &namespace, &name, desired).await?;
            ctx.backoff.reset(&app);
            Ok(Action::requeue(RESYNC_INTERVAL))
        }
        Err(error) => {
            // Tell the user on the app itself; the original error is what the controller
            // retries on, so a failure to write this status is only logged.
            let degraded = ConditionState {
                status: true,
                reason: "ApplyFailed",
                message: error.to_string(),
            };
            let desired = status::degraded_status(&app, degraded, &now);
            if let Err(status_error) = write_status(&app, &ctx, &namespace, &name, desired).await {
                warn!(error = %status_error, "could not record the failure in the status");
            }
            Err(error)
        }
    }
}

/// Apply the Deployment, the Service and the HPA where they differ from the desired ones;
/// return the Deployment as the API server has it.
async fn apply_children(
    app: &WasmApp,
    ctx: &Context,
    namespace: &str,
    name: &str,
    changes: &mut Vec<String>,
) -> Result<Deployment> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let observed = get_opt(&deployments, "Deployment", namespace, name).await?;
    ensure_owned(observed.as_ref(), app, "Deployment")?;
    let was_autoscaled = observed
        .as_ref()
        .and_then(|d| d.metadata.annotations.as_ref())
        .and_then(|a| a.get(ANNOTATION_AUTOSCALED))
        .is_some_and(|v| v == "true");
    let deployment = apply_if_changed(
        &deployments,
        app,
        "Deployment",
        observed,
        builders::deployment(app)?,
        changes,
    )
    .await?;

    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    let observed = get_opt(&services, "Service", namespace, name).await?;
    ensure_owned(observed.as_ref(), app, "Service")?;
    let desired = builders::service(app)?;
    apply_if_changed(&services, app, "Service", observed, desired, changes).await?;

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), namespace);
    match builders::horizontal_pod_autoscaler(app)? {
        Some(desired) => {
            let kind = "HorizontalPodAutoscaler";
            let observed = get_opt(&hpas, kind, namespace, name).await?;
            ensure_owned(observed.as_ref(), app, kind)?;
            apply_if_changed(&hpas, app, kind, observed, desired, changes).await?;
        }
        None if was_autoscaled => delete_hpa(&hpas, namespace, name, changes).await?,
        None => {}
    }
    Ok(deployment)
}

/// GET that maps 404 to `None` and other failures to an error naming the object.
async fn get_opt<K>(
    api: &Api<K>,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.get_opt(name).await.map_err(|source| Error::Kube {
        action: "get",
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
        source: Box::new(source),
    })
}

/// Refuse to take over an object of the app's name that some other owner controls.
fn ensure_owned<K: Resource>(
    observed: Option<&K>,
    app: &WasmApp,
    kind: &'static str,
) -> Result<()> {
    let Some(observed) = observed else {
        return Ok(());
    };
    let app_uid = app.metadata.uid.as_deref();
    let owned = observed
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && Some(owner.uid.as_str()) == app_uid);
    if owned {
        Ok(())
    } else {
        Err(Error::NotOwned {
            kind,
            namespace: app.namespace().unwrap_or_default(),
            name: app.name_any(),
        })
    }
}

/// Server-side apply `desired` unless `observed` already carries the same spec hash.
async fn apply_if_changed<K>(
    api: &Api<K>,
    app: &WasmApp,
    kind: &'static str,
    observed: Option<K>,
    desired: K,
    changes: &mut Vec<String>,
) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    if let Some(observed) = observed.as_ref()
        && spec_hash(observed).is_some()
        && spec_hash(observed) == spec_hash(&desired)
    {
        debug!(kind, "unchanged; not applied");
        return Ok(observed.clone());
    }
    let name = desired.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(&name, &params, &Patch::Apply(&desired))
        .await
        .map_err(|source| Error::Kube {
            action: "apply",
            kind,
            namespace: app.namespace().unwrap_or_default(),
            name: name.clone(),
            source: Box::new(source),
        })?;
    let verb = if observed.is_some() {
        "updated"
    } else {
        "created"
    };
    info!(kind, verb, "applied");
    changes.push(format!("{verb} {kind} {name}"));
    Ok(applied)
}

/// Remove the HPA of an app whose autoscaling was turned off.
async fn delete_hpa(
    api: &Api<HorizontalPodAutoscaler>,
    namespace: &str,
    name: &str,
    changes: &mut Vec<String>,
) -> Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            info!("autoscaling turned off; HorizontalPodAutoscaler deleted");
            changes.push(format!("deleted HorizontalPodAutoscaler {name}"));
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Kube {
            action: "delete",
            kind: "HorizontalPodAutoscaler",
            namespace: namespace.to_string(),
            name: name.to_string(),
            source: Box::new(source),
        }),
    }
}

/// Write `desired` to the status subresource with server-side apply, unless it equals the
/// stored status; publish an Event for every condition whose status or reason changed.
async fn write_status(
    app: &WasmApp,
    ctx: &Context,
    namespace: &str,
    name: &str,
    desired: WasmAppStatus,
) -> Result<()> {
    if app.status.as_ref() == Some(&desired) {
        return Ok(());
    }
    let api: Api<WasmApp> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "WasmApp",
        "status": desired,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Kube {
        action: "patch status",
        kind: "WasmApp",
        namespace: namespace.to_string(),
        name: name.to_string(),
        source: Box::new(source),
    })?;

    // One event per status write that changed a condition's status or reason, so a burst of
    // apps does not cost a burst of events per condition.
    let mut notes = Vec::new();
    let mut headline: Option<(&str, bool)> = None;
    for new in &desired.conditions {
        let old = status::condition(app.status.as_ref(), &new.type_);
        let changed = match old {
            Some(old) => old.status != new.status || old.reason != new.reason,
            // A first status: Ready is news either way, Degraded only when true; the
            // initial Progressing=True is implied by the "Applied" event.
            None => {
                new.type_ == CONDITION_READY
                    || (new.type_ == CONDITION_DEGRADED && new.status == "True")
            }
        };
        if !changed {
            continue;
        }
        let bad = (new.type_ == CONDITION_READY && new.status == "False" && old.is_some())
            || (new.type_ == CONDITION_DEGRADED && new.status == "True");
        // The event's reason is the first bad change, else the first change.
        if headline.is_none_or(|(_, headline_bad)| bad && !headline_bad) {
            headline = Some((new.reason.as_str(), bad));
        }
        notes.push(format!("{} is {}: {}", new.type_, new.status, new.message));
    }
    if let Some((reason, bad)) = headline {
        let type_ = if bad {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, app, type_, reason, notes.join("; ")).await;
    }
    Ok(())
}

/// Publish an Event about `app`. Failing to publish is logged, never fatal: the state change
/// itself is already recorded in the object.
async fn publish(ctx: &Context, app: &WasmApp, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        // The Events API caps the note at 1 kB.
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &app.object_ref(&())).await {
        warn!(%error, reason, "could not publish event");
    }
}

//! One reconcile of one WasmApp: apply the children that changed or drifted, then write the
//! status if it changed, and publish one Event for what changed.
//!
//! Children are read from the controller's caches (the watches it keeps on Deployments,
//! Services and HPAs), so an unchanged app costs no API request at all. Only a child the cache
//! does not have is read with a GET before the first apply: the cache holds only objects with
//! the operator's label, and a same-named object without it may belong to someone else.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, GetParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Span, debug, field, info, instrument, warn};

use crate::backoff::Backoff;
use crate::builders::{self, ANNOTATION_AUTOSCALED, required_name, required_namespace};
use crate::drift::{self, ApplyReason};
use crate::events::Publisher;
use crate::memo::RecentStatuses;
use crate::metrics::{ApiCall, Metrics};
use crate::status::{self, CONDITION_DEGRADED, CONDITION_READY, ConditionState};
use crate::types::{GROUP, VERSION};
use crate::{Error, FIELD_MANAGER, Result, WasmApp, WasmAppStatus};

/// How often an app that is fine is looked at again without any watch event.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(600);

/// The controller's caches of the children it owns, filled by its watches.
#[derive(Clone)]
pub struct Children {
    /// Deployments with the operator's label.
    pub deployments: Store<Deployment>,
    /// Services with the operator's label.
    pub services: Store<Service>,
    /// HPAs with the operator's label.
    pub hpas: Store<HorizontalPodAutoscaler>,
}

impl Children {
    /// Caches with nothing in them (every child is then read with a GET).
    pub fn empty() -> Self {
        Self {
            deployments: reflector::store().0,
            services: reflector::store().0,
            hpas: reflector::store().0,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// Client to the API server.
    pub client: Client,
    /// Publishes Events about apps (in the background).
    pub events: Publisher,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Per-app retry delays after failures.
    pub backoff: Backoff,
    /// Cached children.
    pub children: Children,
    /// Statuses written but maybe not in the cached apps yet.
    pub recent: Arc<RecentStatuses>,
}

impl Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

/// What a status write changed, for the reconcile's Event.
struct StatusNews {
    /// Reason of the headline change (the first bad one, else the first).
    reason: String,
    /// Whether the headline change is bad news (Warning).
    bad: bool,
    /// One line per changed condition.
    notes: Vec<String>,
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
    // The status as last written, when the cached app does not show that write yet.
    let stored = ctx.recent.stored(&app);
    let app = if stored == app.status {
        app
    } else {
        let mut fresher = (*app).clone();
        fresher.status = stored;
        Arc::new(fresher)
    };

    let now = Time(Timestamp::now());
    let (children, changes) = apply_children(&app, &ctx, &namespace, &name).await;
    let (desired, failure) = match children {
        Ok(deployment) => (
            status::desired_status(&app, Some(&deployment), None, &now),
            None,
        ),
        Err(error) => {
            // Tell the user on the app itself; the original error is what the controller
            // retries on.
            let degraded = ConditionState {
                status: true,
                reason: "ApplyFailed",
                message: error.to_string(),
            };
            (status::degraded_status(&app, degraded, &now), Some(error))
        }
    };
    let news = match write_status(&app, &ctx, &namespace, &name, &desired).await {
        Ok(news) => news,
        Err(status_error) => {
            publish(&ctx, &app, changes, None);
            return Err(match failure {
                Some(error) => {
                    warn!(error = %status_error, "could not record the failure in the status");
                    error
                }
                None => status_error,
            });
        }
    };
    publish(&ctx, &app, changes, news);
    match failure {
        None => {
            ctx.backoff.reset(&app);
            Ok(Action::requeue(RESYNC_INTERVAL))
        }
        Some(error) => Err(error),
    }
}

/// Apply the Deployment, the Service and the HPA where they differ from the desired ones
/// (the three at once); return the Deployment as the API server has it, and a note per child
/// written (also when another one failed).
async fn apply_children(
    app: &WasmApp,
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> (Result<Arc<Deployment>>, Vec<String>) {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let observed = match observe(
        &ctx.children.deployments,
        &deployments,
        ctx,
        "Deployment",
        namespace,
        name,
    )
    .await
    {
        Ok(observed) => observed,
        Err(error) => return (Err(error), Vec::new()),
    };
    let was_autoscaled = observed
        .as_ref()
        .and_then(|d| d.metadata.annotations.as_ref())
        .and_then(|a| a.get(ANNOTATION_AUTOSCALED))
        .is_some_and(|v| v == "true");

    let deployment = async {
        ensure_owned(observed.as_deref(), app, "Deployment")?;
        let desired = builders::deployment(app)?;
        apply_if_needed(
            &deployments,
            ctx,
            app,
            "Deployment",
            observed.clone(),
            desired,
        )
        .await
    };
    let service = async {
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
        let kind = "Service";
        let observed = observe(
            &ctx.children.services,
            &services,
            ctx,
            kind,
            namespace,
            name,
        )
        .await?;
        ensure_owned(observed.as_deref(), app, kind)?;
        let desired = builders::service(app)?;
        apply_if_needed(&services, ctx, app, kind, observed, desired)
            .await
            .map(|(_, change)| change)
    };
    let hpa = async {
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), namespace);
        let kind = "HorizontalPodAutoscaler";
        match builders::horizontal_pod_autoscaler(app)? {
            Some(desired) => {
                let observed =
                    observe(&ctx.children.hpas, &hpas, ctx, kind, namespace, name).await?;
                ensure_owned(observed.as_deref(), app, kind)?;
                apply_if_needed(&hpas, ctx, app, kind, observed, desired)
                    .await
                    .map(|(_, change)| change)
            }
            None if was_autoscaled || ctx.children.hpas.get(&key(namespace, name)).is_some() => {
                delete_hpa(&hpas, ctx, namespace, name).await
            }
            None => Ok(None),
        }
    };
    let (deployment, service, hpa) = futures::join!(deployment, service, hpa);

    let mut changes = Vec::new();
    let mut result = deployment.map(|(deployment, change)| {
        changes.extend(change);
        deployment
    });
    for other in [service, hpa] {
        match other {
            Ok(change) => changes.extend(change),
            Err(error) if result.is_ok() => result = Err(error),
            Err(error) => warn!(%error, "a second child failed in the same reconcile"),
        }
    }
    (result, changes)
}

fn key<K>(namespace: &str, name: &str) -> ObjectRef<K>
where
    K: Resource<DynamicType = ()>,
{
    ObjectRef::new(name).within(namespace)
}

/// The child as the controller's cache has it; on a miss, as a GET finds it (404 → `None`).
async fn observe<K>(
    cache: &Store<K>,
    api: &Api<K>,
    ctx: &Context,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<K>>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    if let Some(cached) = cache.get(&key(namespace, name)) {
        return Ok(Some(cached));
    }
    ctx.metrics.api_call(ApiCall::Get);
    // `resourceVersion=0`: the API server answers from its watch cache instead of a quorum
    // read of etcd, which matters in a burst of new apps (every child is a miss once). The
    // answer may lag by milliseconds; an object created in that window by someone else is the
    // only thing it could miss.
    match api.get_with(name, &GetParams::any()).await {
        Ok(found) => Ok(Some(Arc::new(found))),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(None),
        Err(source) => Err(source),
    }
    .map_err(|source| Error::Kube {
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

/// Server-side apply `desired` unless `observed` already has it ([`drift::apply_reason`]);
/// return the child as it now is and, when written, a note saying what was done.
async fn apply_if_needed<K>(
    api: &Api<K>,
    ctx: &Context,
    app: &WasmApp,
    kind: &'static str,
    observed: Option<Arc<K>>,
    desired: K,
) -> Result<(Arc<K>, Option<String>)>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let verb = match observed {
        None => "created",
        Some(observed) => match drift::apply_reason(observed.as_ref(), &desired) {
            None => {
                debug!(kind, "unchanged; not applied");
                return Ok((observed, None));
            }
            Some(ApplyReason::Changed) => "updated",
            Some(ApplyReason::Drifted) => "reverted edits to",
        },
    };
    let name = desired.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    ctx.metrics.api_call(ApiCall::Apply);
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
    info!(kind, verb, "applied");
    Ok((Arc::new(applied), Some(format!("{verb} {kind} {name}"))))
}

/// Remove the HPA of an app whose autoscaling was turned off.
async fn delete_hpa(
    api: &Api<HorizontalPodAutoscaler>,
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<String>> {
    ctx.metrics.api_call(ApiCall::Delete);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            info!("autoscaling turned off; HorizontalPodAutoscaler deleted");
            Ok(Some(format!("deleted HorizontalPodAutoscaler {name}")))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
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
/// stored status; say which conditions changed their status or reason.
async fn write_status(
    app: &WasmApp,
    ctx: &Context,
    namespace: &str,
    name: &str,
    desired: &WasmAppStatus,
) -> Result<Option<StatusNews>> {
    if app.status.as_ref() == Some(desired) {
        return Ok(None);
    }
    let api: Api<WasmApp> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "WasmApp",
        "status": desired,
    });
    ctx.metrics.api_call(ApiCall::Status);
    let written = api
        .patch_status(
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
    ctx.recent
        .written(app, written.metadata.resource_version, desired.clone());
    Ok(status_news(app.status.as_ref(), desired))
}

/// The conditions whose status or reason changed from `old` to `new`, headed by the first bad
/// change (else the first change); `None` when nothing worth an Event changed.
fn status_news(old: Option<&WasmAppStatus>, new: &WasmAppStatus) -> Option<StatusNews> {
    let mut notes = Vec::new();
    let mut headline: Option<(&str, bool)> = None;
    for new in &new.conditions {
        let before = status::condition(old, &new.type_);
        let changed = match before {
            Some(before) => before.status != new.status || before.reason != new.reason,
            // A first status: Ready is news either way, Degraded only when true; the
            // initial Progressing=True is implied by the "Applied" note.
            None => {
                new.type_ == CONDITION_READY
                    || (new.type_ == CONDITION_DEGRADED && new.status == "True")
            }
        };
        if !changed {
            continue;
        }
        let bad = (new.type_ == CONDITION_READY && new.status == "False" && before.is_some())
            || (new.type_ == CONDITION_DEGRADED && new.status == "True");
        if headline.is_none_or(|(_, headline_bad)| bad && !headline_bad) {
            headline = Some((new.reason.as_str(), bad));
        }
        notes.push(format!("{} is {}: {}", new.type_, new.status, new.message));
    }
    headline.map(|(reason, bad)| StatusNews {
        reason: reason.to_string(),
        bad,
        notes,
    })
}

/// Publish one Event about `app` for this reconcile: the children written and the conditions
/// that changed. Its reason is the bad status change if there is one (a Warning), else
/// "Applied" when children were written, else the status change. Sent in the background;
/// failing to publish is logged, never fatal: the state itself is recorded in the objects.
fn publish(ctx: &Context, app: &WasmApp, changes: Vec<String>, news: Option<StatusNews>) {
    let (type_, reason, mut notes) = match news {
        Some(news) if news.bad => (EventType::Warning, news.reason, news.notes),
        Some(news) if changes.is_empty() => (EventType::Normal, news.reason, news.notes),
        Some(news) => (EventType::Normal, "Applied".to_string(), news.notes),
        None if changes.is_empty() => return,
        None => (EventType::Normal, "Applied".to_string(), Vec::new()),
    };
    let mut all = changes;
    all.append(&mut notes);
    let note: String = all.join("; ");
    let event = Event {
        type_,
        reason,
        // The Events API caps the note at 1 kB.
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    ctx.metrics.api_call(ApiCall::Event);
    ctx.events.publish(event, app.object_ref(&()));
}

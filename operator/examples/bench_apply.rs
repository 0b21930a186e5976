//! Operator benchmark (`make bench-operator`): apply N WasmApps (default 1,000) against a real
//! kube-apiserver and measure the time until every Deployment exists, reconciles per second,
//! the API requests the operator made and its peak RSS and CPU time, printed beside the goals
//! (10 s, 64 MB) and beside two baselines measured first on the same cluster:
//!
//! - **apply only**: the same N WasmApp applies with no operator running (what the benchmark's
//!   own client costs; the operator cannot finish before its input exists);
//! - **raw output**: from this one tight client, the writes the operator cannot avoid per app,
//!   each kind in turn: N WasmApps (its input), then N server-side applies of the Deployments
//!   the operator would build, of its Services, and of a status per app (the API server's and
//!   etcd's floor for the output; the Service applies also cost the API server a ClusterIP).
//!
//! Each phase runs in its own namespace, deleted (and waited for) before the next one starts.
#![forbid(unsafe_code)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

const GOAL_SECONDS: f64 = 10.0;
const GOAL_RSS_MB: f64 = 64.0;
const HEALTH_ADDR: &str = "127.0.0.1:18090";
const PHASE_LIMIT: Duration = Duration::from_secs(600);
const IMAGE: &str = "registry.local:5000/hello:1.0";

#[derive(Debug, Parser)]
struct Args {
    /// The feather-operator binary to measure (a release build).
    #[arg(long)]
    operator: PathBuf,
    /// How many WasmApps to apply.
    #[arg(long, default_value_t = 1000)]
    apps: usize,
    /// The benchmark's applies in flight at once (every phase).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The operator's --concurrency (reconciles in flight); its own default when unset.
    #[arg(long)]
    operator_concurrency: Option<u16>,
    /// More arguments for the operator (repeatable), e.g. --operator-arg=--log-format=json.
    #[arg(long, allow_hyphen_values = true)]
    operator_arg: Vec<String>,
    /// Stop once every Deployment and Service exists (do not wait for every app to be
    /// Ready, which the controller-manager's Deployment controller paces).
    #[arg(long)]
    skip_ready: bool,
    /// Measure only the operator, not the two baselines.
    #[arg(long)]
    skip_baselines: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let cluster = match support::cluster() {
        Ok(cluster) => cluster,
        Err(reason) => {
            support::skip("bench-operator", &reason);
            support::test_finished(1);
            return Ok(());
        }
    };
    let result = bench(&args, &cluster.kubeconfig).await;
    support::test_finished(1);
    result
}

/// What the operator phase measured.
struct OperatorRun {
    milestones: Milestones,
    /// The operator's /metrics at the end (every app Ready, or every Service there).
    metrics: String,
    peak_rss_kb: Option<u64>,
    cpu_seconds: Option<f64>,
    /// Writes the API server served during the phase (all clients), by resource and verb.
    writes: BTreeMap<String, f64>,
}

async fn bench(args: &Args, kubeconfig: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &Default::default(),
    )
    .await?;
    let client = Client::try_from(config)?;
    let prefix = format!("feather-bench-{}", std::process::id());
    println!(
        "operator benchmark: {} apps, {} applies in flight; load average at start: {}",
        args.apps,
        args.concurrency,
        load_average()
    );

    if let Some(other) = other_operator(&client).await {
        println!(
            "  WARNING: another feather-operator runs in this cluster ({other}); it reconciles the \
             benchmark's apps too, so the figures measure both. Point FEATHER_TEST_KUBECONFIG at \
             a control plane of your own."
        );
    }

    let mut baselines = None;
    if !args.skip_baselines {
        let namespace = format!("{prefix}-apply");
        create_namespace(&client, &namespace).await?;
        let apply_only = apply_apps(&client, &namespace, args).await;
        delete_namespace(&client, kubeconfig, &namespace).await?;
        let apply_only = apply_only?;
        println!(
            "  baseline apply only: {:.2}s (load {})",
            apply_only.as_secs_f64(),
            load_average()
        );

        let namespace = format!("{prefix}-raw");
        create_namespace(&client, &namespace).await?;
        let raw = apply_raw_output(&client, &namespace, args).await;
        delete_namespace(&client, kubeconfig, &namespace).await?;
        let raw = raw?;
        println!(
            "  baseline raw output: Deployments {:.2}s, Services {:.2}s, statuses {:.2}s (load {})",
            raw.deployments.as_secs_f64(),
            raw.services.as_secs_f64(),
            raw.statuses.as_secs_f64(),
            load_average()
        );
        baselines = Some((apply_only, raw));
    }

    let namespace = format!("{prefix}-operator");
    create_namespace(&client, &namespace).await?;
    let dir = tempfile::tempdir()?;
    let concurrency = args.operator_concurrency.map(|c| c.to_string());
    let mut operator_args = vec![
        "--namespace",
        &namespace,
        "--leader-elect=false",
        "--health-addr",
        HEALTH_ADDR,
    ];
    if let Some(concurrency) = &concurrency {
        operator_args.extend(["--concurrency", concurrency]);
    }
    operator_args.extend(args.operator_arg.iter().map(String::as_str));
    let mut operator = support::Operator::start(
        &args.operator,
        kubeconfig,
        &operator_args,
        dir.path(),
        "bench",
    );
    let writes_before = apiserver_writes(&client).await;
    let outcome = run_operator(args, &client, &namespace, &operator).await;
    let writes_after = apiserver_writes(&client).await;
    let metrics = http_get("/metrics").await.unwrap_or_default();
    let peak_rss_kb = peak_rss_kb(operator.pid());
    let cpu_seconds = cpu_seconds(operator.pid());
    operator.stop();
    if outcome.is_err() {
        eprintln!("operator log:\n{}", operator.log_text());
    }
    let load_after = load_average();
    delete_namespace(&client, kubeconfig, &namespace).await?;
    report(
        args,
        &OperatorRun {
            milestones: outcome?,
            metrics,
            peak_rss_kb,
            cpu_seconds,
            writes: difference(&writes_after, &writes_before),
        },
        baselines,
        &load_after,
    );
    Ok(())
}

fn report(args: &Args, run: &OperatorRun, baselines: Option<(Duration, RawOutput)>, load: &str) {
    let times = &run.milestones;
    let seconds = times.all_deployments.as_secs_f64();
    // The write figures cover the run up to all Ready, else up to all Services.
    let end_seconds = times.all_ready.unwrap_or(times.all_services).as_secs_f64();
    let metric = |name: &str| metric_value(&run.metrics, name);
    let reconciles = metric_value(
        &times.metrics_at_deployments,
        "feather_operator_reconciles_total",
    )
    .unwrap_or(0.0);
    let per_app = |call: &str| {
        metric(&format!(
            "feather_operator_api_requests_total{{call=\"{call}\"}}"
        ))
        .map_or_else(
            || "-".to_string(),
            |n| format!("{n:.0} ({:.2}/app)", n / args.apps as f64),
        )
    };
    let row = |figure: &str, measured: String, goal: &str| {
        println!("  {figure:<44} {measured:>20} {goal:>8}");
    };
    println!(
        "\noperator benchmark: {} WasmApps, {} applies in flight, operator --concurrency {} {}, \
         release build; load average after: {load}",
        args.apps,
        args.concurrency,
        args.operator_concurrency
            .map_or_else(|| "default".to_string(), |c| c.to_string()),
        args.operator_arg.join(" "),
    );
    row("figure", "measured".into(), "goal");
    row(
        "time until all Deployments exist",
        format!("{seconds:.2}s"),
        &format!("{GOAL_SECONDS:.0}s"),
    );
    row(
        "  of which applying the WasmApps",
        format!("{:.2}s", times.applies_done.as_secs_f64()),
        "-",
    );
    if let Some((apply_only, raw)) = baselines {
        row(
            "baseline: WasmApp applies alone (no operator)",
            format!("{:.2}s", apply_only.as_secs_f64()),
            "-",
        );
        let floor = raw.deployments + raw.services + raw.statuses;
        row(
            "baseline: raw output, one tight client (floor)",
            format!("{:.2}s", (apply_only + floor).as_secs_f64()),
            "-",
        );
        row(
            "  WasmApps / Deployments / Services / statuses",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1}",
                apply_only.as_secs_f64(),
                raw.deployments.as_secs_f64(),
                raw.services.as_secs_f64(),
                raw.statuses.as_secs_f64()
            ),
            "-",
        );
        row(
            "operator's time / floor",
            format!("{:.1}x", seconds / (apply_only + floor).as_secs_f64()),
            "-",
        );
    }
    let quantiles = |times: &[Duration]| {
        [0.1, 0.5, 0.9]
            .map(|q| {
                let index = ((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1));
                times
                    .get(index)
                    .map_or_else(|| "-".to_string(), |t| format!("{:.1}", t.as_secs_f64()))
            })
            .join(" / ")
    };
    row(
        "  10% / 50% / 90% of Deployments by (s)",
        quantiles(&times.deployment_times),
        "-",
    );
    row(
        "  10% / 50% / 90% of Services by (s)",
        quantiles(&times.service_times),
        "-",
    );
    row(
        "time until all Services exist",
        format!("{:.2}s", times.all_services.as_secs_f64()),
        "-",
    );
    row(
        "time until all apps are Ready",
        times.all_ready.map_or_else(
            || "not waited".to_string(),
            |t| format!("{:.2}s", t.as_secs_f64()),
        ),
        "-",
    );
    row(
        "reconciles per second (to all Deployments)",
        format!("{:.0}", reconciles / seconds),
        "-",
    );
    row(
        "reconciles to all Deployments / the end",
        format!(
            "{reconciles:.0} / {:.0}",
            metric("feather_operator_reconciles_total").unwrap_or(0.0)
        ),
        "-",
    );
    for call in ["get", "apply", "status", "event", "delete"] {
        row(
            &format!("operator requests to the end: {call}"),
            per_app(call),
            "-",
        );
    }
    match run.cpu_seconds {
        Some(cpu) => row("operator CPU time", format!("{cpu:.2}s"), "-"),
        None => row("operator CPU time", "unknown".into(), "-"),
    }
    let rss_mb = run.peak_rss_kb.map(|kb| kb as f64 / 1024.0);
    match rss_mb {
        Some(mb) => row(
            "operator peak RSS (VmHWM)",
            format!("{mb:.1}MB"),
            &format!("{GOAL_RSS_MB:.0}MB"),
        ),
        None => row(
            "operator peak RSS (VmHWM)",
            "unknown".into(),
            &format!("{GOAL_RSS_MB:.0}MB"),
        ),
    }
    if !run.writes.is_empty() {
        let total: f64 = run.writes.values().sum();
        println!(
            "  writes the API server served to the end (every client): {total:.0} \
             ({:.1}/app, {:.0}/s)",
            total / args.apps as f64,
            total / end_seconds
        );
        let mut by_count: Vec<(&String, &f64)> = run.writes.iter().collect();
        by_count.sort_by(|a, b| b.1.total_cmp(a.1));
        for (key, count) in by_count.into_iter().take(14) {
            println!(
                "    {key:<54} {count:>7.0} {:>6.2}/app",
                count / args.apps as f64
            );
        }
    }
    let time_ok = seconds <= GOAL_SECONDS;
    let rss_ok = rss_mb.is_some_and(|mb| mb <= GOAL_RSS_MB);
    println!(
        "  goals: time {} , memory {}",
        if time_ok { "met" } else { "MISSED" },
        if rss_ok { "met" } else { "MISSED" }
    );
}

/// A pod running a feather-operator image (the chart's), as `namespace/name`.
async fn other_operator(client: &Client) -> Option<String> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods.list(&Default::default()).await.ok()?;
    list.items.into_iter().find_map(|pod| {
        let runs_operator = pod.spec.as_ref()?.containers.iter().any(|c| {
            c.image
                .as_deref()
                .is_some_and(|image| image.contains("feather-operator"))
        });
        runs_operator.then(|| format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()))
    })
}

async fn create_namespace(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {
                "name": namespace, "labels": {"feather.dev/bench": "true"}}}))?,
        )
        .await
        .with_context(|| format!("creating the bench namespace {namespace}"))?;
    Ok(())
}

/// Delete `namespace` and wait until it is gone, so its cleanup does not load the next phase.
async fn delete_namespace(
    client: &Client,
    kubeconfig: &std::path::Path,
    namespace: &str,
) -> anyhow::Result<()> {
    let _ = support::kubectl(
        kubeconfig,
        &["delete", "namespace", namespace, "--wait=false"],
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let start = Instant::now();
    while namespaces.get_opt(namespace).await?.is_some() {
        anyhow::ensure!(
            start.elapsed() < PHASE_LIMIT,
            "namespace {namespace} still exists 10 minutes after its deletion"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

fn wasmapp(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "feather.dev/v1alpha1",
        "kind": "WasmApp",
        "metadata": {"name": name},
        // Zero replicas: the figure is the operator's, and a shared cluster must not get a
        // thousand pods to schedule.
        "spec": {"image": IMAGE, "replicas": 0},
    })
}

fn app_name(index: usize) -> String {
    format!("app-{index:04}")
}

/// Server-side apply `objects` with `concurrency` in flight; returns the time taken.
async fn apply_all<K>(
    api: Api<K>,
    objects: Vec<(String, serde_json::Value)>,
    concurrency: usize,
) -> anyhow::Result<Duration>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + 'static,
{
    apply_each(api, objects, concurrency, Subresource::None).await
}

/// Which part of an object an apply writes.
#[derive(Clone, Copy)]
enum Subresource {
    None,
    Status,
}

/// [`apply_all`], to `subresource` of each object.
async fn apply_each<K>(
    api: Api<K>,
    objects: Vec<(String, serde_json::Value)>,
    concurrency: usize,
    subresource: Subresource,
) -> anyhow::Result<Duration>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + 'static,
{
    let params = PatchParams::apply("feather-bench").force();
    let start = Instant::now();
    futures::stream::iter(objects)
        .map(|(name, manifest)| {
            let api = api.clone();
            let params = params.clone();
            async move {
                let patch = Patch::Apply(&manifest);
                match subresource {
                    Subresource::None => api.patch(&name, &params, &patch).await,
                    Subresource::Status => api.patch_status(&name, &params, &patch).await,
                }
                .with_context(|| format!("applying {name}"))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(start.elapsed())
}

async fn apply_apps(client: &Client, namespace: &str, args: &Args) -> anyhow::Result<Duration> {
    let apps: Api<feather_operator::WasmApp> = Api::namespaced(client.clone(), namespace);
    let objects = (0..args.apps)
        .map(|i| (app_name(i), wasmapp(&app_name(i))))
        .collect();
    apply_all(apps, objects, args.concurrency).await
}

/// How long the tight client took for each kind of the operator's output.
struct RawOutput {
    deployments: Duration,
    services: Duration,
    statuses: Duration,
}

/// What the operator writes for the bench's apps (Deployments, Services, a status each),
/// written by this client, one kind after the other. The children carry no owner reference
/// (there is no app to own them here); the statuses go to WasmApps this function applies
/// first (not timed: the apply-only baseline measures those).
async fn apply_raw_output(
    client: &Client,
    namespace: &str,
    args: &Args,
) -> anyhow::Result<RawOutput> {
    apply_apps(client, namespace, args).await?;
    let apps_api: Api<feather_operator::WasmApp> = Api::namespaced(client.clone(), namespace);
    let mut deployments = Vec::with_capacity(args.apps);
    let mut services = Vec::with_capacity(args.apps);
    let mut statuses = Vec::with_capacity(args.apps);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    for index in 0..args.apps {
        let name = app_name(index);
        let mut app: feather_operator::WasmApp =
            serde_json::from_value(wasmapp(&name)).context("bench WasmApp")?;
        app.metadata.namespace = Some(namespace.to_string());
        app.metadata.uid = Some(format!("00000000-0000-4000-8000-{index:012}"));
        let mut deployment = feather_operator::builders::deployment(&app)?;
        deployment.metadata.owner_references = None;
        deployments.push((name.clone(), serde_json::to_value(deployment)?));
        let mut service = feather_operator::builders::service(&app)?;
        service.metadata.owner_references = None;
        services.push((name.clone(), serde_json::to_value(service)?));
        let status = feather_operator::status::desired_status(&app, None, None, &now);
        statuses.push((
            name,
            json!({
                "apiVersion": "feather.dev/v1alpha1",
                "kind": "WasmApp",
                "status": status,
            }),
        ));
    }
    let deployments_api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let services_api: Api<Service> = Api::namespaced(client.clone(), namespace);
    Ok(RawOutput {
        deployments: apply_all(deployments_api, deployments, args.concurrency).await?,
        services: apply_all(services_api, services, args.concurrency).await?,
        statuses: apply_each(apps_api, statuses, args.concurrency, Subresource::Status).await?,
    })
}

/// What one of the benchmark's watches saw.
enum Seen {
    Deployment(String),
    Service(String),
    /// An app, and whether its Ready condition is True.
    App(String, bool),
}

/// When each milestone was reached, from the first apply.
struct Milestones {
    all_deployments: Duration,
    all_services: Duration,
    /// None with --skip-ready.
    all_ready: Option<Duration>,
    applies_done: Duration,
    /// The operator's /metrics when the last Deployment appeared.
    metrics_at_deployments: String,
    /// When each Deployment and each Service was first seen, in order.
    deployment_times: Vec<Duration>,
    service_times: Vec<Duration>,
}

/// Apply the apps with the operator running and watch until every Deployment and Service
/// exists and every app is Ready.
async fn run_operator(
    args: &Args,
    client: &Client,
    namespace: &str,
    operator: &support::Operator,
) -> anyhow::Result<Milestones> {
    support::eventually(
        "the operator's /readyz",
        Duration::from_secs(60),
        || async {
            http_get("/readyz")
                .await
                .filter(|body| body.starts_with("ok"))
        },
    )
    .await;
    // Let the controller's initial (empty) lists finish before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Watches, not polls (a poll that lists 1,000 objects ten times a second would itself
    // load the API server). Each starts with a list, so objects made before its first poll
    // still count.
    let labelled =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=feather-operator");
    let deployments: Api<PartialObjectMeta<Deployment>> =
        Api::namespaced(client.clone(), namespace);
    let services: Api<PartialObjectMeta<Service>> = Api::namespaced(client.clone(), namespace);
    let apps: Api<feather_operator::WasmApp> = Api::namespaced(client.clone(), namespace);
    let seen = futures::stream::select_all([
        watcher(deployments, labelled.clone())
            .touched_objects()
            .map_ok(|d| Seen::Deployment(d.name_any()))
            .boxed(),
        watcher(services, labelled)
            .touched_objects()
            .map_ok(|s| Seen::Service(s.name_any()))
            .boxed(),
        watcher(apps.clone(), watcher::Config::default())
            .touched_objects()
            .map_ok(|app| {
                let ready = feather_operator::status::is_true(
                    app.status.as_ref(),
                    feather_operator::status::CONDITION_READY,
                );
                Seen::App(app.name_any(), ready)
            })
            .boxed(),
    ]);
    let mut seen = std::pin::pin!(seen);
    let start = Instant::now();
    let objects = (0..args.apps)
        .map(|i| (app_name(i), wasmapp(&app_name(i))))
        .collect();
    let mut applying = tokio::spawn(apply_all(apps, objects, args.concurrency));
    let mut applies_done = None;
    let (mut deployment_names, mut service_names, mut ready_names) =
        (HashSet::new(), HashSet::new(), HashSet::new());
    let (mut all_deployments, mut all_services, mut all_ready) = (None, None, None);
    let mut metrics_at_deployments = String::new();
    let (mut deployment_times, mut service_times) = (Vec::new(), Vec::new());
    while all_deployments.is_none()
        || all_services.is_none()
        || (all_ready.is_none() && !args.skip_ready)
    {
        tokio::select! {
            done = &mut applying, if applies_done.is_none() => {
                done??;
                applies_done = Some(start.elapsed());
            }
            event = tokio::time::timeout(PHASE_LIMIT, seen.next()) => {
                let event = event
                    .map_err(|_| anyhow::anyhow!(
                        "after {PHASE_LIMIT:?}: {} Deployments, {} Services, {} apps Ready of {}; \
                         see the operator log {}",
                        deployment_names.len(), service_names.len(), ready_names.len(),
                        args.apps, operator.log.display()))?
                    .context("a watch ended")??;
                match event {
                    Seen::Deployment(name) => {
                        if deployment_names.insert(name) {
                            deployment_times.push(start.elapsed());
                        }
                    }
                    Seen::Service(name) => {
                        if service_names.insert(name) {
                            service_times.push(start.elapsed());
                        }
                    }
                    Seen::App(name, true) => { ready_names.insert(name); }
                    Seen::App(name, false) => { ready_names.remove(&name); }
                }
                if all_deployments.is_none() && deployment_names.len() >= args.apps {
                    all_deployments = Some(start.elapsed());
                    metrics_at_deployments = http_get("/metrics").await.unwrap_or_default();
                }
                if all_services.is_none() && service_names.len() >= args.apps {
                    all_services = Some(start.elapsed());
                }
                if all_ready.is_none() && ready_names.len() >= args.apps {
                    all_ready = Some(start.elapsed());
                }
            }
        }
    }
    let applies_done = match applies_done {
        Some(done) => done,
        None => {
            applying.await??;
            start.elapsed()
        }
    };
    let elapsed = start.elapsed();
    Ok(Milestones {
        all_deployments: all_deployments.unwrap_or(elapsed),
        all_services: all_services.unwrap_or(elapsed),
        all_ready,
        applies_done,
        metrics_at_deployments,
        deployment_times,
        service_times,
    })
}

/// The API server's count of mutating requests so far, by `group/resource[/subresource] VERB
/// code` (from its /metrics; empty when it cannot be read).
async fn apiserver_writes(client: &Client) -> BTreeMap<String, f64> {
    let mut writes = BTreeMap::new();
    let Ok(request) = http::Request::get("/metrics").body(Vec::new()) else {
        return writes;
    };
    let Ok(text) = client.request_text(request).await else {
        return writes;
    };
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix("=\""))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let verb = label("verb");
        if matches!(verb.as_str(), "GET" | "LIST" | "WATCH" | "CONNECT") {
            continue;
        }
        let mut resource = format!("{}/{}", label("group"), label("resource"));
        let subresource = label("subresource");
        if !subresource.is_empty() {
            resource = format!("{resource}/{subresource}");
        }
        let key = format!("{resource} {verb} {}", label("code"));
        let count: f64 = value.trim().parse().unwrap_or(0.0);
        *writes.entry(key).or_insert(0.0) += count;
    }
    writes
}

fn difference(
    after: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(key, count)| (key.clone(), count - before.get(key).copied().unwrap_or(0.0)))
        .filter(|(_, count)| *count > 0.0)
        .collect()
}

fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Peak resident set size of `pid` in kB (VmHWM from /proc).
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds of `pid` (from /proc/<pid>/stat, in USER_HZ = 100 ticks).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_string())
}

async fn http_get(path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(HEALTH_ADDR).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.to_string())
}

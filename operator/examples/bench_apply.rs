//! Operator benchmark (`make bench-operator`): apply N WasmApps (default 1,000) against a real
//! kube-apiserver and measure the time until every Deployment exists, reconciles per second,
//! the API requests the operator made and its peak RSS and CPU time, printed beside the goals
//! (10 s, 64 MB) and beside two baselines measured first on the same cluster:
//!
//! - **apply only**: the same N WasmApp applies with no operator running (what the benchmark's
//!   own client costs; the operator cannot finish before its input exists);
//! - **raw Deployments**: N server-side applies of the Deployments the operator would build,
//!   from this one tight client (the API server's and etcd's floor for the output).
//!
//! Each phase runs in its own namespace, deleted (and waited for) before the next one starts.
#![forbid(unsafe_code)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
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
    all_deployments: Duration,
    applies_done: Duration,
    metrics: String,
    peak_rss_kb: Option<u64>,
    cpu_seconds: Option<f64>,
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
        let raw = apply_raw_deployments(&client, &namespace, args).await;
        delete_namespace(&client, kubeconfig, &namespace).await?;
        let raw = raw?;
        println!(
            "  baseline raw Deployment applies: {:.2}s (load {})",
            raw.as_secs_f64(),
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
    let mut operator = support::Operator::start(
        &args.operator,
        kubeconfig,
        &operator_args,
        dir.path(),
        "bench",
    );
    let outcome = run_operator(args, &client, &namespace, &operator).await;
    let peak_rss_kb = peak_rss_kb(operator.pid());
    let cpu_seconds = cpu_seconds(operator.pid());
    operator.stop();
    if outcome.is_err() {
        eprintln!("operator log:\n{}", operator.log_text());
    }
    let load_after = load_average();
    delete_namespace(&client, kubeconfig, &namespace).await?;
    let (all_deployments, applies_done, metrics) = outcome?;
    report(
        args,
        &OperatorRun {
            all_deployments,
            applies_done,
            metrics,
            peak_rss_kb,
            cpu_seconds,
        },
        baselines,
        &load_after,
    );
    Ok(())
}

fn report(args: &Args, run: &OperatorRun, baselines: Option<(Duration, Duration)>, load: &str) {
    let seconds = run.all_deployments.as_secs_f64();
    let metric = |name: &str| metric_value(&run.metrics, name);
    let reconciles = metric("feather_operator_reconciles_total").unwrap_or(0.0);
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
        "\noperator benchmark: {} WasmApps, {} applies in flight, operator --concurrency {}, \
         release build; load average after: {load}",
        args.apps,
        args.concurrency,
        args.operator_concurrency
            .map_or_else(|| "default".to_string(), |c| c.to_string()),
    );
    row("figure", "measured".into(), "goal");
    row(
        "time until all Deployments exist",
        format!("{seconds:.2}s"),
        &format!("{GOAL_SECONDS:.0}s"),
    );
    row(
        "  of which applying the WasmApps",
        format!("{:.2}s", run.applies_done.as_secs_f64()),
        "-",
    );
    if let Some((apply_only, raw)) = baselines {
        row(
            "baseline: WasmApp applies alone (no operator)",
            format!("{:.2}s", apply_only.as_secs_f64()),
            "-",
        );
        row(
            "baseline: raw Deployment applies (floor)",
            format!("{:.2}s", raw.as_secs_f64()),
            "-",
        );
    }
    row(
        "reconciles per second",
        format!("{:.0}", reconciles / seconds),
        "-",
    );
    row("reconciles in that time", format!("{reconciles:.0}"), "-");
    for call in ["get", "apply", "status", "event", "delete"] {
        row(&format!("API requests: {call}"), per_app(call), "-");
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

/// Server-side apply `objects` with `args.concurrency` in flight; returns the time taken.
async fn apply_all<K>(
    api: Api<K>,
    objects: Vec<(String, serde_json::Value)>,
    concurrency: usize,
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
                api.patch(&name, &params, &Patch::Apply(&manifest))
                    .await
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

/// The Deployments the operator would build for the bench's apps, without the owner
/// reference (there is no app to own them here).
async fn apply_raw_deployments(
    client: &Client,
    namespace: &str,
    args: &Args,
) -> anyhow::Result<Duration> {
    let mut objects = Vec::with_capacity(args.apps);
    for index in 0..args.apps {
        let name = app_name(index);
        let mut app: feather_operator::WasmApp =
            serde_json::from_value(wasmapp(&name)).context("bench WasmApp")?;
        app.metadata.namespace = Some(namespace.to_string());
        app.metadata.uid = Some(format!("00000000-0000-4000-8000-{index:012}"));
        let mut deployment = feather_operator::builders::deployment(&app)?;
        deployment.metadata.owner_references = None;
        objects.push((name, serde_json::to_value(deployment)?));
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    apply_all(deployments, objects, args.concurrency).await
}

/// Apply the apps with the operator running and watch until every Deployment exists; returns
/// (time to all Deployments, time the applies took, the operator's metrics at that moment).
async fn run_operator(
    args: &Args,
    client: &Client,
    namespace: &str,
    operator: &support::Operator,
) -> anyhow::Result<(Duration, Duration, String)> {
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

    // Count Deployments from a watch (a poll that lists 1,000 objects ten times a second
    // would itself load the API server).
    let deployments: Api<PartialObjectMeta<Deployment>> =
        Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=feather-operator");
    let mut seen = HashSet::new();
    let mut events = std::pin::pin!(watcher(deployments, config).touched_objects());
    // The watch starts with a list, so Deployments made before its first poll still count.
    let start = Instant::now();
    let apps: Api<feather_operator::WasmApp> = Api::namespaced(client.clone(), namespace);
    let objects = (0..args.apps)
        .map(|i| (app_name(i), wasmapp(&app_name(i))))
        .collect();
    let concurrency = args.concurrency;
    let mut applying = tokio::spawn(apply_all(apps, objects, concurrency));
    let mut applies_done = None;
    let all_deployments = loop {
        tokio::select! {
            done = &mut applying, if applies_done.is_none() => {
                done??;
                applies_done = Some(start.elapsed());
            }
            event = tokio::time::timeout(PHASE_LIMIT, events.next()) => {
                let object = event
                    .map_err(|_| anyhow::anyhow!(
                        "only {} of {} Deployments after {PHASE_LIMIT:?}; see the operator log {}",
                        seen.len(), args.apps, operator.log.display()))?
                    .context("the Deployment watch ended")??;
                seen.insert(object.name_any());
                if seen.len() >= args.apps {
                    break start.elapsed();
                }
            }
        }
    };
    let applies_done = match applies_done {
        Some(done) => done,
        None => {
            applying.await??;
            start.elapsed()
        }
    };
    let metrics = http_get("/metrics").await.unwrap_or_default();
    Ok((all_deployments, applies_done, metrics))
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

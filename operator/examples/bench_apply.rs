//! Operator benchmark (`make bench-operator`): apply N WasmApps (default 1,000) against a real
//! kube-apiserver and measure the time until every Deployment exists, reconciles per second
//! and the operator's peak RSS, printed beside the goals (10 s, 64 MB).
#![forbid(unsafe_code)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde_json::json;

const GOAL_SECONDS: f64 = 10.0;
const GOAL_RSS_MB: f64 = 64.0;
const HEALTH_ADDR: &str = "127.0.0.1:18090";

#[derive(Debug, Parser)]
struct Args {
    /// The feather-operator binary to measure (a release build).
    #[arg(long)]
    operator: PathBuf,
    /// How many WasmApps to apply.
    #[arg(long, default_value_t = 1000)]
    apps: usize,
    /// Applies in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
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

async fn bench(args: &Args, kubeconfig: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &Default::default(),
    )
    .await?;
    let client = Client::try_from(config)?;
    let namespace = format!("feather-bench-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
        )
        .await
        .context("creating the bench namespace")?;

    let dir = tempfile::tempdir()?;
    let mut operator = support::Operator::start(
        &args.operator,
        kubeconfig,
        &[
            "--namespace",
            &namespace,
            "--leader-elect=false",
            "--health-addr",
            HEALTH_ADDR,
        ],
        dir.path(),
        "bench",
    );
    let outcome = run(args, &client, &namespace, &operator).await;
    let peak_rss_kb = peak_rss_kb(operator.pid());
    operator.stop();
    if outcome.is_err() {
        eprintln!("operator log:\n{}", operator.log_text());
    }
    let _ = support::kubectl(
        kubeconfig,
        &["delete", "namespace", &namespace, "--wait=false"],
    );
    let (all_deployments, reconciles, apply_done) = outcome?;

    let seconds = all_deployments.as_secs_f64();
    let rss_mb = peak_rss_kb.map(|kb| kb as f64 / 1024.0);
    println!(
        "\noperator benchmark: {} WasmApps, {} applies in flight, release build",
        args.apps, args.concurrency
    );
    println!("  {:<38} {:>10} {:>12}", "figure", "measured", "goal");
    println!(
        "  {:<38} {:>9.2}s {:>11.1}s",
        "time until all Deployments exist", seconds, GOAL_SECONDS
    );
    println!(
        "  {:<38} {:>9.2}s {:>12}",
        "  (of which applying the WasmApps)",
        apply_done.as_secs_f64(),
        "-"
    );
    println!(
        "  {:<38} {:>10.0} {:>12}",
        "reconciles per second",
        reconciles as f64 / seconds,
        "-"
    );
    println!(
        "  {:<38} {:>10} {:>12}",
        "reconciles in that time", reconciles, "-"
    );
    match rss_mb {
        Some(mb) => println!(
            "  {:<38} {:>8.1}MB {:>10.0}MB",
            "operator peak RSS (VmHWM)", mb, GOAL_RSS_MB
        ),
        None => println!(
            "  {:<38} {:>10} {:>10.0}MB",
            "operator peak RSS (VmHWM)", "unknown", GOAL_RSS_MB
        ),
    }
    let time_ok = seconds <= GOAL_SECONDS;
    let rss_ok = rss_mb.is_some_and(|mb| mb <= GOAL_RSS_MB);
    println!(
        "  goals: time {} , memory {}",
        if time_ok { "met" } else { "MISSED" },
        if rss_ok { "met" } else { "MISSED" }
    );
    Ok(())
}

/// Apply the apps and wait for every Deployment; returns (time to all Deployments,
/// reconciles counted by then, time the applies took).
async fn run(
    args: &Args,
    client: &Client,
    namespace: &str,
    operator: &support::Operator,
) -> anyhow::Result<(Duration, u64, Duration)> {
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
    // Let the controller's initial (empty) list finish before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let apps: Api<feather_operator::WasmApp> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply("feather-bench").force();
    let start = Instant::now();
    let (apps_for_apply, params_for_apply) = (apps.clone(), params.clone());
    let applying = futures::stream::iter(0..args.apps)
        .map(move |index| {
            let apps = apps_for_apply.clone();
            let params = params_for_apply.clone();
            async move {
                let name = format!("app-{index:04}");
                let manifest = json!({
                    "apiVersion": "feather.dev/v1alpha1",
                    "kind": "WasmApp",
                    "metadata": {"name": name},
                    // Zero replicas: the figure is the operator's, and a shared cluster
                    // must not get a thousand pods to schedule.
                    "spec": {"image": "registry.local:5000/hello:1.0", "replicas": 0},
                });
                apps.patch(&name, &params, &Patch::Apply(&manifest))
                    .await
                    .with_context(|| format!("applying WasmApp {name}"))
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>();
    let applied = tokio::spawn(applying);

    let selector = ListParams::default().labels("app.kubernetes.io/managed-by=feather-operator");
    let mut apply_done = None;
    let mut applied = Some(applied);
    loop {
        if let Some(handle) = applied.as_ref()
            && handle.is_finished()
        {
            let handle = applied.take().context("apply task")?;
            handle.await??;
            apply_done = Some(start.elapsed());
        }
        let count = deployments.list_metadata(&selector).await?.items.len();
        if count >= args.apps {
            let elapsed = start.elapsed();
            if let Some(handle) = applied.take() {
                handle.await??;
            }
            let reconciles = reconciles_total().await.unwrap_or(0);
            return Ok((elapsed, reconciles, apply_done.unwrap_or(elapsed)));
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "only {count} of {} Deployments after 10 minutes; see the operator log {}",
            args.apps,
            operator.log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn reconciles_total() -> Option<u64> {
    let body = http_get("/metrics").await?;
    body.lines()
        .find_map(|line| line.strip_prefix("feather_operator_reconciles_total "))
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

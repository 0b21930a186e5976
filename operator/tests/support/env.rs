//! One real-apiserver test's environment: its own namespace, a client, the operator
//! processes it starts; on drop it stops them, dumps the namespace when the test failed and
//! deletes it. Used by the integration tests only (not the benchmark).

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, PostParams};
use kube::{Client, Config};
use serde_json::json;

use super::{Cluster, Operator, kubectl, kubectl_stdin};

/// One test's namespace, client and operator processes; cleans up (and dumps on failure) when
/// dropped.
pub struct TestEnv {
    name: &'static str,
    /// Tests in this binary: the last to finish stops a control plane the run started.
    tests: usize,
    cluster: &'static Cluster,
    pub namespace: String,
    pub client: Client,
    dir: tempfile::TempDir,
    pub operators: Vec<Operator>,
}

impl TestEnv {
    /// The environment, or None after printing SKIP.
    pub async fn start(name: &'static str, tests: usize) -> Option<Self> {
        let cluster = match super::cluster() {
            Ok(cluster) => cluster,
            Err(reason) => {
                super::skip(name, &reason);
                super::test_finished(tests);
                return None;
            }
        };
        // Installed once per process for the kube client (the operator binary installs its own).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&cluster.kubeconfig).expect("read kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("kube config");
        let client = Client::try_from(config).expect("kube client");
        let suffix = format!(
            "{:x}",
            std::process::id()
                ^ (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0))
        );
        let namespace = format!(
            "feather-{}-{}",
            name.replace('_', "-").chars().take(30).collect::<String>(),
            suffix
        );
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": namespace}})).expect("ns"),
            )
            .await
            .expect("create test namespace");
        Some(Self {
            name,
            tests,
            cluster,
            namespace,
            client,
            dir: tempfile::tempdir().expect("temp dir"),
            operators: Vec::new(),
        })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.cluster.kubeconfig
    }

    /// Start an operator watching only this namespace.
    pub fn start_operator(&mut self, extra: &[&str], tag: &str) -> usize {
        let mut args = vec!["--namespace", self.namespace.as_str()];
        if !extra.contains(&"--health-addr") {
            args.extend(["--health-addr", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        let operator = Operator::start(
            Path::new(env!("CARGO_BIN_EXE_feather-operator")),
            self.kubeconfig(),
            &args,
            self.dir.path(),
            tag,
        );
        self.operators.push(operator);
        self.operators.len() - 1
    }

    pub fn apply(&self, manifest: &serde_json::Value) -> (bool, String, String) {
        kubectl_stdin(
            self.kubeconfig(),
            &["apply", "-n", &self.namespace, "-f", "-"],
            Some(&manifest.to_string()),
        )
    }

    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for operator in &mut self.operators {
            operator.stop();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} failed; state of namespace {} ----",
                self.name, self.namespace
            );
            let (_, out, err) = kubectl(
                self.kubeconfig(),
                &[
                    "get",
                    "wasmapps,deployments,services,hpa,leases,events",
                    "-n",
                    &self.namespace,
                    "-o",
                    "yaml",
                ],
            );
            eprintln!("{out}{err}");
            for operator in &self.operators {
                eprintln!(
                    "---- operator log {} ----\n{}",
                    operator.log.display(),
                    operator.log_text()
                );
            }
        }
        let _ = kubectl(
            self.kubeconfig(),
            &["delete", "namespace", &self.namespace, "--wait=false"],
        );
        super::test_finished(self.tests);
    }
}

pub fn wasmapp(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "feather.dev/v1alpha1", "kind": "WasmApp", "metadata": {"name": name}, "spec": spec})
}

/// Minimal HTTP/1.0 GET returning the body of a 200 answer.
pub async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

//! Entry point of `containerd-shim-feather-v1`: dispatches containerd's actions.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;

use containerd_shim_feather::{RUNTIME_TYPE, bootstrap, serve};
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::types::introspection::RuntimeInfo;

fn main() {
    // One rustls crypto backend for the process (outbound HTTP from guests uses rustls).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(flags) => flags,
        Err(e) => fail(&format!("arguments: {e}")),
    };
    if flags.version {
        println!(
            "{RUNTIME_TYPE} containerd-shim-feather-v1 {}",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    if flags.info {
        // containerd 2.x asks `-info` before anything else; name only, no feature claims.
        let info = RuntimeInfo {
            name: RUNTIME_TYPE.to_string(),
            ..Default::default()
        };
        match info.write_to_bytes() {
            Ok(bytes) => write_stdout(&bytes),
            Err(e) => fail(&format!("encode runtime info: {e}")),
        }
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("feather-shim")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => fail(&format!("tokio runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match flags.action.as_str() {
            "start" => bootstrap::start(&flags).await.map(|out| write_stdout(&out)),
            "delete" => bootstrap::delete(&flags)
                .await
                .map(|out| write_stdout(&out)),
            "" if !flags.socket.is_empty() => {
                init_logging(&flags);
                let config = serve::ServeConfig {
                    namespace: flags.namespace.clone(),
                    containerd_address: flags.address.clone(),
                    ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
                    socket: flags.socket.clone(),
                };
                serve::serve(config)
                    .await
                    .inspect_err(|e| tracing::error!("{e}"))
            }
            other => Err(format!(
                "unknown action {other:?}: expected start, delete, -info, or -socket to serve"
            )),
        }
    });
    if let Err(e) = result {
        fail(&e);
    }
}

fn write_stdout(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        fail(&format!("write stdout: {e}"));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("{RUNTIME_TYPE}: {message}");
    std::process::exit(1);
}

/// The server's log: `FEATHER_SHIM_LOG` or `<socket>.log` (its stdio is detached), filtered by
/// `RUST_LOG` (default info, debug with `-debug`).
fn init_logging(flags: &containerd_shim::Flags) {
    let path = std::env::var("FEATHER_SHIM_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let mut path = serve::socket_path(&flags.socket).into_os_string();
            path.push(".log");
            PathBuf::from(path)
        });
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    else {
        return;
    };
    let default = if flags.debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

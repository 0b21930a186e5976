//! `feather-node-installer install ...` (the DaemonSet's container) and `check-ready` (its
//! readiness probe: the image has no shell, so the probe is this binary).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use feather_node_installer::containerd_config::ConfigVersion;
use feather_node_installer::install::{self, InstallPlan};

#[derive(Parser, Debug)]
#[command(name = "feather-node-installer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install the shim and register the runtime, write the ready file, then wait for SIGTERM.
    Install {
        /// The shim binary inside this image.
        #[arg(long, default_value = "/containerd-shim-feather-v1")]
        shim_source: PathBuf,
        /// The host's shim directory as mounted in this container.
        #[arg(long)]
        shim_dir: PathBuf,
        /// The same directory as the host sees it; written as `runtime_path` in the config.
        #[arg(long)]
        host_shim_dir: Option<PathBuf>,
        /// containerd's config file as mounted in this container.
        #[arg(long)]
        containerd_config: PathBuf,
        /// Format for a config that does not exist yet: 2 (containerd 1.x), 3 or 4 (2.x).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i64).range(2..=4))]
        config_version: i64,
        /// Command that restarts containerd, split on whitespace; run only when the config
        /// changed. Empty: never restart.
        #[arg(
            long,
            default_value = "nsenter -t 1 -m -u -i -n -p -- systemctl restart containerd"
        )]
        restart_command: String,
        /// Written once the handler is verified; the readiness probe looks for it.
        #[arg(long)]
        ready_file: PathBuf,
    },
    /// Exit 0 if the ready file exists (the DaemonSet's readiness probe).
    CheckReady {
        #[arg(long)]
        ready_file: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Pod logs are not a terminal: no colour codes in `kubectl logs`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckReady { ready_file } => {
            if ready_file.exists() {
                return ExitCode::SUCCESS;
            }
            eprintln!("not ready: {} does not exist yet", ready_file.display());
            return ExitCode::FAILURE;
        }
        Command::Install {
            shim_source,
            shim_dir,
            host_shim_dir,
            containerd_config,
            config_version,
            restart_command,
            ready_file,
        } => ConfigVersion::from_number(config_version)
            .context("--config-version must be 2, 3 or 4")
            .and_then(|version_for_new_config| {
                let plan = InstallPlan {
                    shim_source,
                    shim_dir,
                    host_shim_dir,
                    containerd_config,
                    version_for_new_config,
                    restart_command: restart_command
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                };
                install_and_wait(&plan, &ready_file)
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn install_and_wait(plan: &InstallPlan, ready_file: &std::path::Path) -> Result<()> {
    // The ready file lives in an emptyDir that survives container restarts: a stale one must
    // not make a failing pass look ready.
    match std::fs::remove_file(ready_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", ready_file.display())),
    }
    let report = install::run(plan)?;
    tracing::info!(?report, "runtime `feather` verified");
    if let Some(dir) = ready_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(
        ready_file,
        format!("{}\n{}\n", report.config_version, report.shim_version),
    )
    .with_context(|| format!("writing {}", ready_file.display()))?;

    // Stay up so the DaemonSet shows the node as done; exit promptly on SIGTERM (we are PID 1,
    // which ignores SIGTERM without a handler).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: exiting"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: exiting"),
        }
        Ok(())
    })
}

//! `feather`: package wasm apps and static binaries as OCI artifacts and push them.
//!
//! - `feather push app.wasm REF` pushes a wasm module or component as a wasm OCI artifact.
//! - `feather image push REF --file SRC:DEST ... --entrypoint /bin` pushes a container image
//!   built from static binaries (how the operator and node-installer images are made here,
//!   with no container engine).
#![forbid(unsafe_code)]

mod artifact;
mod image;
mod registry;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};

#[derive(Parser, Debug)]
#[command(name = "feather", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Push a .wasm module or component as an OCI wasm artifact.
    Push {
        /// The .wasm file.
        wasm: PathBuf,
        /// Where to push, e.g. 127.0.0.1:5000/featherweight/examples/hello:v1
        reference: String,
        /// Use plain HTTP even for a non-loopback registry.
        #[arg(long)]
        plain_http: bool,
    },
    /// Container images from static binaries.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Build a one-layer image from files and push it.
    Push {
        /// Where to push, e.g. 127.0.0.1:5000/featherweight/feather-operator:0.1.0
        reference: String,
        /// SRC:DEST[:MODE] (octal, default 755); repeat for several files.
        #[arg(long = "file", required = true)]
        files: Vec<image::ImageFile>,
        /// The image entrypoint (repeat for arguments).
        #[arg(long, required = true)]
        entrypoint: Vec<String>,
        /// User the image runs as by default (e.g. 65532).
        #[arg(long)]
        user: Option<String>,
        /// Use plain HTTP even for a non-loopback registry.
        #[arg(long)]
        plain_http: bool,
        /// Also write the pushed manifest's digest (`sha256:...`) to this file, e.g. for a
        /// chart's `image.digest` value.
        #[arg(long)]
        digest_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // One rustls backend for the process (ring); oci-client is built without its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("feather: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("feather: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Push {
            wasm,
            reference,
            plain_http,
        } => {
            let reference = registry::parse_reference(&reference)?;
            let bytes =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let artifact = artifact::build(&wasm.display().to_string(), bytes)?;
            let pushed = registry::push(
                &reference,
                plain_http,
                ImageLayer::new(
                    artifact.layer,
                    artifact::WASM_LAYER_MEDIA_TYPE.to_string(),
                    None,
                ),
                Config::new(
                    artifact.config_json,
                    artifact::WASM_CONFIG_MEDIA_TYPE.to_string(),
                    None,
                ),
            )
            .await?;
            println!(
                "pushed {} ({:?}, layer {}) to {} ({})",
                wasm.display(),
                artifact.kind,
                artifact.layer_digest,
                pushed.manifest_url,
                pushed.digest
            );
        }
        Command::Image(ImageCommand::Push {
            reference,
            files,
            entrypoint,
            user,
            plain_http,
            digest_file,
        }) => {
            let reference = registry::parse_reference(&reference)?;
            let built = image::build(&files, &entrypoint, user.as_deref())?;
            let size = built.layer_tar.len();
            let pushed = registry::push(
                &reference,
                plain_http,
                ImageLayer::new(built.layer_tar, IMAGE_LAYER_MEDIA_TYPE.to_string(), None),
                Config::new(built.config_json, IMAGE_CONFIG_MEDIA_TYPE.to_string(), None),
            )
            .await?;
            if let Some(path) = digest_file {
                std::fs::write(&path, format!("{}\n", pushed.digest)).with_context(|| {
                    format!("writing the digest of {reference} to {}", path.display())
                })?;
            }
            println!(
                "pushed image ({size} byte layer) to {} ({})",
                pushed.manifest_url, pushed.digest
            );
        }
    }
    Ok(())
}

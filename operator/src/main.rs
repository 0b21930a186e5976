//! `feather-operator`: see the crate docs of `feather_operator`.
#![forbid(unsafe_code)]

use clap::Parser;
use feather_operator::cli::{Args, init_logging, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One rustls crypto backend for the whole binary (ring), installed before any client
    // exists; a second backend would make rustls panic at the first TLS connection.
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let args = Args::parse();
    init_logging(args.log_format);
    if let Err(error) = run(args).await {
        tracing::error!("{error:#}");
        return Err(error);
    }
    Ok(())
}

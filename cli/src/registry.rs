//! Pushing to an OCI registry with oci-client (anonymous; plain HTTP for loopback registries).

use anyhow::{Context, Result};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// Registries on the loopback interface (like the harness's 127.0.0.1:5000) speak plain HTTP;
/// everything else must use TLS unless `plain_http` says otherwise.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

pub fn parse_reference(reference: &str) -> Result<Reference> {
    reference
        .parse::<Reference>()
        .with_context(|| format!("image reference {reference:?}"))
}

pub fn client_for(reference: &Reference, plain_http: bool) -> Client {
    let registry = reference.resolve_registry().to_string();
    let protocol = if plain_http || is_loopback(&registry) {
        ClientProtocol::HttpsExcept(vec![registry])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        ..Default::default()
    })
}

/// Where a push went: the manifest URL, and the manifest's digest as the registry reports it
/// (what `repository@digest` pins).
#[derive(Debug)]
pub struct Pushed {
    pub manifest_url: String,
    pub digest: String,
}

/// Pushes one layer and its config, then asks the registry for the manifest's digest.
pub async fn push(
    reference: &Reference,
    plain_http: bool,
    layer: ImageLayer,
    config: Config,
) -> Result<Pushed> {
    let client = client_for(reference, plain_http);
    let response = client
        .push(reference, &[layer], config, &RegistryAuth::Anonymous, None)
        .await
        .with_context(|| format!("pushing {reference}"))?;
    // The registry's answer, not a digest computed here: it is what a pull by digest resolves.
    let digest = client
        .fetch_manifest_digest(reference, &RegistryAuth::Anonymous)
        .await
        .with_context(|| format!("reading the digest of {reference} after the push"))?;
    Ok(Pushed {
        manifest_url: response.manifest_url,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for r in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "127.0.0.2",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "ghcr.io",
            "registry.example:5000",
            "10.0.0.1:5000",
            "localhost.example",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn references_keep_the_local_registry_and_tag() {
        let r = parse_reference("127.0.0.1:5000/featherweight/examples/hello:v1").expect("ref");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "featherweight/examples/hello");
        assert_eq!(r.tag(), Some("v1"));
        assert!(parse_reference("UPPER/case:bad tag").is_err());
    }
}

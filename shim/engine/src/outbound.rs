//! Outbound HTTP policy: the guest may call only the hosts on its allowlist.

use std::sync::Arc;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// One allowlist entry, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any host.
    Any,
    /// `host` (any port) or `host:port`.
    Exact { host: String, port: Option<u16> },
    /// `*.suffix`: any subdomain of `suffix` (not `suffix` itself).
    Subdomains { suffix: String, port: Option<u16> },
}

/// The allowlist of one workload; shared by all its instances.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutboundPolicy {
    patterns: Arc<[HostPattern]>,
}

impl OutboundPolicy {
    /// Parse entries like `api.example.com`, `api.example.com:8443`, `*.example.com`, `*`.
    /// An entry that cannot be parsed is an error naming it (a typo must not silently deny or
    /// allow traffic).
    pub(crate) fn parse(entries: &[String]) -> Result<Self, crate::EngineError> {
        let mut patterns = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry_lc = entry.trim().to_ascii_lowercase();
            if entry_lc == "*" {
                patterns.push(HostPattern::Any);
                continue;
            }
            let (host, port) = match entry_lc.rsplit_once(':') {
                Some((host, port)) => {
                    let port = port.parse::<u16>().map_err(|_| {
                        crate::EngineError::Config(format!(
                            "allowed_outbound_hosts entry {entry:?}: port {port:?} is not a number"
                        ))
                    })?;
                    (host.to_string(), Some(port))
                }
                None => (entry_lc.clone(), None),
            };
            let valid = |h: &str| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            };
            let pattern = match host.strip_prefix("*.") {
                Some(suffix) if valid(suffix) => HostPattern::Subdomains {
                    suffix: suffix.to_string(),
                    port,
                },
                None if valid(&host) => HostPattern::Exact { host, port },
                _ => {
                    return Err(crate::EngineError::Config(format!(
                        "allowed_outbound_hosts entry {entry:?}: expected host, host:port, \
                         *.domain or *"
                    )));
                }
            };
            patterns.push(pattern);
        }
        Ok(OutboundPolicy {
            patterns: patterns.into(),
        })
    }

    /// Whether a request to `host` on `port` is allowed.
    pub(crate) fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        self.patterns.iter().any(|p| match p {
            HostPattern::Any => true,
            HostPattern::Exact { host: h, port: p } => *h == host && port_ok(p),
            HostPattern::Subdomains { suffix, port: p } => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                    && port_ok(p)
            }
        })
    }
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.allows(&host, port) {
            tracing::info!(%host, port, "outbound HTTP refused: host not on the allowlist");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        tracing::debug!(%host, port, "outbound HTTP allowed");
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        OutboundPolicy::parse(&entries).expect("valid allowlist")
    }

    #[test]
    fn empty_allowlist_denies_everything() {
        assert!(!policy(&[]).allows("example.com", 80));
    }

    #[test]
    fn exact_host_with_and_without_port() {
        let p = policy(&["API.example.com", "db.local:5984"]);
        assert!(p.allows("api.example.com", 443));
        assert!(p.allows("Api.Example.Com.", 80));
        assert!(p.allows("db.local", 5984));
        assert!(!p.allows("db.local", 80));
        assert!(!p.allows("example.com", 80));
        assert!(!p.allows("api.example.com.evil.net", 80));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = policy(&["*.example.com"]);
        assert!(p.allows("a.example.com", 80));
        assert!(p.allows("a.b.example.com", 80));
        assert!(!p.allows("example.com", 80));
        assert!(!p.allows("badexample.com", 80));
        assert!(policy(&["*"]).allows("anything.at.all", 1));
    }

    #[test]
    fn malformed_entries_are_refused_by_name() {
        for bad in ["", "exa mple.com", "host:port", "*.", "http://x"] {
            let err = OutboundPolicy::parse(&[bad.to_string()])
                .map(|_| ())
                .expect_err(bad)
                .to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}

//! Binding a TCP listener inside a pod's network namespace.
//!
//! `setns` changes the namespace of the calling thread only, so it is done on a short-lived
//! dedicated thread: the runtime's worker threads never leave the shim's own namespace. A socket
//! keeps the namespace it was created in, so the listener is then served from the shared runtime.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// Binds `0.0.0.0:port` in the network namespace at `netns` (or in the shim's own namespace when
/// `None`), non-blocking, ready to hand to tokio.
pub fn bind_in_netns(netns: Option<&Path>, port: u16) -> Result<TcpListener, String> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let Some(netns) = netns else {
        return bind(addr, "the shim's network namespace");
    };
    let netns: PathBuf = netns.to_path_buf();
    std::thread::Builder::new()
        .name("feather-netns-bind".into())
        .spawn(move || {
            let ns = File::open(&netns)
                .map_err(|e| format!("open network namespace {}: {e}", netns.display()))?;
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns into {}: {e}", netns.display()))?;
            bind(addr, &format!("network namespace {}", netns.display()))
            // The thread ends here, and with it its membership of the pod's namespace.
        })
        .map_err(|e| format!("spawn the netns bind thread: {e}"))?
        .join()
        .map_err(|_| "the netns bind thread panicked".to_string())?
}

fn bind(addr: SocketAddr, where_: &str) -> Result<TcpListener, String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr} in {where_}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("set {addr} non-blocking: {e}"))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_in_own_namespace_without_a_path() {
        let listener = bind_in_netns(None, 0).expect("binds");
        assert!(listener.local_addr().expect("addr").port() > 0);
    }

    #[test]
    fn missing_namespace_is_reported_with_its_path() {
        let err = bind_in_netns(Some(Path::new("/nonexistent/netns")), 0).expect_err("must fail");
        assert!(err.contains("/nonexistent/netns"), "{err}");
    }
}

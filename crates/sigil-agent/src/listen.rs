//! Binding the local API: a loopback TCP address, or a Unix socket created with mode 0600 (the
//! socket's permissions are its access control).

use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::sync::Arc;

use crate::config::Listen;
use crate::proxy::Proxy;

/// A bound local API, ready to serve.
pub enum Bound {
    /// On TCP (loopback).
    Tcp(tokio::net::TcpListener),
    /// On a Unix socket, removed when the agent stops.
    Unix(tokio::net::UnixListener, std::path::PathBuf),
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Tcp(l) => write!(f, "tcp {:?}", l.local_addr().ok()),
            Bound::Unix(_, p) => write!(f, "unix {}", p.display()),
        }
    }
}

/// Binds `listen`. A Unix socket is created under a umask of 0177, so that it is never
/// reachable by others, not even between its creation and a `chmod`; a stale socket at the
/// path is replaced, any other file is not.
pub async fn bind(listen: &Listen) -> Result<Bound, String> {
    match listen {
        Listen::Tcp(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map(Bound::Tcp)
            .map_err(|e| format!("cannot listen on {addr}: {e}")),
        Listen::Unix(path) => {
            remove_stale_socket(path)?;
            let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
            let bound = tokio::net::UnixListener::bind(path);
            rustix::process::umask(old);
            let listener =
                bound.map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
            Ok(Bound::Unix(listener, path.clone()))
        }
    }
}

fn remove_stale_socket(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .map_err(|e| format!("cannot replace the old socket {}: {e}", path.display())),
        Ok(_) => Err(format!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        )),
        Err(_) => Ok(()),
    }
}

impl Bound {
    /// Where it listens, for the log.
    pub fn describe(&self) -> String {
        match self {
            Bound::Tcp(l) => l
                .local_addr()
                .map(|a| format!("http://{a}"))
                .unwrap_or_default(),
            Bound::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }

    /// Serves the local API until `shutdown` completes.
    pub async fn serve(
        self,
        proxy: Arc<Proxy>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let app = proxy.router();
        match self {
            Bound::Tcp(l) => axum::serve(l, app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(|e| e.to_string()),
            Bound::Unix(l, path) => {
                let served = axum::serve(l, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .map_err(|e| e.to_string());
                let _ = std::fs::remove_file(path);
                served
            }
        }
    }
}

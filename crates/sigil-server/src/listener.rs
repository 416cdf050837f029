//! Binding the listener and serving TLS connections to the API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sigil_core::Node;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::api::{AppState, router};
use crate::audit_trail::{PeerCerts, RemoteAddr};
use crate::connections::{Activity, Connections, FIRST_REQUEST, IDLE, Refused};
use crate::limits::{Limits, RateLimits};
use crate::reload::{ReloadError, ReloadReport, ReloadSource};
use crate::replay::ReplayCache;
use crate::tls::TlsIdentity;

/// How long a client may take to send one request's headers once it began (HTTP/1.1); the
/// whole connection's deadlines are in connections.rs.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection being closed for its deadline may take to finish what it was doing.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Largest request head accepted (431 above).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What a server needs: where to listen, its node (transient or over persistent storage) and
/// its TLS identity.
#[derive(Debug)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The seal state machine and core.
    pub node: Node,
    /// The TLS identity.
    pub tls: TlsIdentity,
    /// The names clients address this server by at its listen port (`@target-uri`); requests
    /// to any other name or port are refused.
    pub hosts: Vec<String>,
    /// Further `(host, port)` clients address it by: the `api_addr` of a load balancer.
    pub api_authority: Option<(String, u16)>,
    /// Rate limits.
    pub limits: RateLimits,
    /// A plain-HTTP listener for Prometheus (`GET /metrics`), off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Where a reload (SIGHUP, `sys/reload`) reads the settings that may change; `None`: a
    /// reload only reopens the audit devices.
    pub reload: Option<Arc<dyn ReloadSource>>,
    /// The cluster, when the storage is raft: requests are forwarded to its leader.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Scheduled snapshots (`[[snapshot]]`), taken by the active node.
    pub snapshots: Vec<crate::snapshots::SnapshotSchedule>,
    /// Where a streamed operator backup spools the snapshot's entries before it sends them
    /// (an unnamed file, gone when the backup ends): the data directory. `None` (a transient
    /// server): in memory.
    pub spool_dir: Option<std::path::PathBuf>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the random number generator failed")]
    Random,
}

/// A bound, ready server.
pub struct Running {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    state: Arc<AppState>,
    snapshots: Vec<crate::snapshots::SnapshotSchedule>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// What a running server's owner may ask of it besides serving: reload, close.
pub struct Control(Arc<AppState>);

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

impl Control {
    /// The end of a clean shutdown: a final signed checkpoint on every audit device, and the
    /// storage checkpointed and closed. Blocking.
    pub fn close(&self) {
        self.0.node.close();
    }

    /// Reloads (SIGHUP): the TLS identity and limits from the reload source, then reopens
    /// the audit devices. Blocking (file I/O); a source that fails changes nothing.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.0.reload()
    }
}

/// A server that has stopped accepting, finishing the requests it has.
#[derive(Debug)]
pub struct Draining {
    connections: Arc<Connections>,
    /// Kept open while draining: a connection sees "closing" as a value, never as a
    /// closed channel.
    _closing: tokio::sync::watch::Sender<bool>,
}

impl Draining {
    /// Waits until every connection has closed (each finishes the requests in flight, then
    /// closes), or `grace` has passed; returns how many were still open.
    pub async fn wait(self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let open = self.connections.open();
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How often expired wraps are purged and due transit keys rotated.
const WRAP_SWEEP: Duration = Duration::from_secs(5);
/// How often expired leases are looked for (revocation is due within about this much of the
/// expiry).
const LEASE_SWEEP: Duration = Duration::from_secs(1);

/// Binds the listener. Call [`Running::serve`] to accept connections.
pub async fn start(config: ServerConfig) -> Result<Running, StartError> {
    crate::telemetry::install();
    let metrics = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?,
        ),
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    // A transient server keeps no nonces across restarts (docs/protocol.md).
    let not_before = if config.node.storage_kind() == "memory" {
        sigil_engine::timefmt::unix_now()
    } else {
        i64::MIN
    };
    Ok(Running {
        addr,
        listener,
        metrics,
        snapshots: config.snapshots,
        state: Arc::new(AppState {
            tls: std::sync::RwLock::new(Arc::new(config.tls)),
            tls_cache: std::sync::Mutex::new(None),
            connections: Connections::new(config.limits.connections_per_address),
            reload_source: config.reload,
            reloading: std::sync::Mutex::new(()),
            cluster: config.cluster,
            spool_dir: config.spool_dir,
            node: config.node,
            fresh: crate::auth::Freshness {
                hosts: crate::auth::Hosts::new(
                    &config.hosts,
                    addr.port(),
                    config.api_authority.as_slice(),
                ),
                replay: ReplayCache::new().map_err(|_| StartError::Random)?,
                not_before,
            },
            signatures: Default::default(),
            limits: Limits::new(config.limits),
            channels: crate::channels::Channels::default(),
        }),
    })
}

impl Running {
    /// A handle to reload the server and to close its audit devices at the end.
    pub fn control(&self) -> Control {
        Control(Arc::clone(&self.state))
    }

    /// Whether the node is sealed (a node that joined a cluster starts unsealed).
    pub fn sealed(&self) -> bool {
        self.state.node.core().is_none()
    }

    /// The server's public identity, if initialized.
    pub fn server_key(&self) -> Option<sigil_crypto::PublicIdentity> {
        self.state.node.server_key()
    }

    /// The metrics listener's address, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Accepts connections (and serves the metrics listener) until `stop` completes; then
    /// stops accepting and asks every connection to close once its requests in flight are
    /// answered (HTTP/2: GOAWAY). Wait for that with [`Draining::wait`].
    pub async fn serve_until(self, stop: impl Future<Output = ()>) -> Draining {
        if let Some(listener) = self.metrics {
            serve_metrics(listener, Arc::clone(&self.state));
        }
        spawn_wrap_sweeper(Arc::clone(&self.state));
        spawn_lease_sweeper(Arc::clone(&self.state));
        let active = Arc::clone(&self.state);
        crate::snapshots::spawn(self.snapshots, move || active.active_core());
        if let Some(cluster) = &self.state.cluster {
            spawn_cluster_watcher(Arc::clone(&self.state));
            spawn_autopilot(Arc::clone(cluster));
            cluster
                .raft()
                .serve_also(crate::api::forwarded::router(Arc::clone(&self.state)));
        }
        let state = Arc::clone(&self.state);
        let table = Arc::clone(&state.connections);
        let app = router(self.state);
        let (closing, _) = tokio::sync::watch::channel(false);
        tokio::pin!(stop);
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = &mut stop => break,
            };
            let (tcp, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let slot = match table.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(Refused::Address) => {
                    tracing::debug!(%peer, "this address holds its share of connections; closing");
                    continue;
                }
                Err(Refused::Full) => {
                    tracing::warn!(%peer, "connection table full; closing");
                    continue;
                }
            };
            // Answers are small and written whole: Nagle's algorithm would only hold the last
            // segment back for the peer's delayed ACK (40 ms on Linux).
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
            let accepted = Accepted {
                tcp,
                peer,
                slot,
                closing: closing.subscribe(),
            };
            tokio::spawn(serve_connection(Arc::clone(&state), app.clone(), accepted));
        }
        // Stop accepting; every connection finishes what it is doing, then closes.
        drop(self.listener);
        closing.send_replace(true);
        Draining {
            connections: table,
            _closing: closing,
        }
    }
}

/// `/metrics` in plain text on its own listener (`--metrics-listen`).
fn serve_metrics(listener: tokio::net::TcpListener, state: Arc<AppState>) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = Arc::clone(&state);
            async move { crate::telemetry::render(&state.node) }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    });
}

/// Expired wraps lose their envelopes on time, even if nobody asks about them, and the
/// keyring gains a term once the newest has encrypted as much as it safely may.
/// Watches leadership and replication: an uninitialized node finds the seal configuration
/// once it arrives, a node that starts leading starts its core afresh.
fn spawn_cluster_watcher(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let state = Arc::clone(&state);
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = state.node.refresh() {
                    tracing::warn!(error = %e, "reading the replicated seal configuration failed");
                }
                state.activate();
            })
            .await;
        }
    });
}

/// Autopilot's dead-server cleanup, every second, on the active leader.
fn spawn_autopilot(cluster: Arc<crate::cluster::Cluster>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(since) = cluster.leading_since().filter(|_| cluster.is_active()) else {
                continue;
            };
            let cluster = Arc::clone(&cluster);
            let _ = tokio::task::spawn_blocking(move || cluster.cleanup_dead_servers(since)).await;
        }
    });
}

fn spawn_wrap_sweeper(sweeper: Arc<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WRAP_SWEEP);
        loop {
            tick.tick().await;
            sweeper.channels.sweep();
            let Some(core) = sweeper.active_core() else {
                continue;
            };
            let swept = tokio::task::spawn_blocking(move || {
                if let Err(e) = core.purge_replay_marks(sigil_engine::timefmt::unix_now()) {
                    tracing::warn!(error = %e, "purging old replay marks failed");
                }
                (core.purge_wraps(), core.rotate_due_keys())
            })
            .await;
            match swept {
                Ok((wraps, keys)) => {
                    match wraps {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(purged = n, "expired wraps purged"),
                        Err(e) => tracing::warn!(error = %e, "purging expired wraps failed"),
                    }
                    if let Err(e) = keys {
                        tracing::warn!(error = %e, "rotating the keyring failed");
                    }
                }
                Err(_) => tracing::warn!("the sweeper panicked"),
            }
        }
    });
}

/// Expired leases are revoked and engines do their periodic work (due transit keys, static
/// database roles), every second.
fn spawn_lease_sweeper(sweeper: Arc<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LEASE_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(core) = sweeper.active_core() else {
                continue;
            };
            let swept = tokio::task::spawn_blocking(move || {
                (core.revoke_due_leases(), core.engine_periodic())
            })
            .await;
            match swept {
                Ok((0, 0)) => {}
                Ok((revoked, rotated)) => {
                    tracing::info!(
                        revoked,
                        rotated,
                        "expired leases revoked, engines' due keys and passwords rotated"
                    );
                }
                Err(_) => tracing::warn!("the lease sweeper panicked"),
            }
        }
    });
}

/// HTTP/1.1 and HTTP/2 (detected per connection) with the header limits and timeouts.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(MAX_HEADER_BYTES)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

/// An accepted TCP connection, holding its slot in the connection table.
struct Accepted {
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: crate::connections::Slot,
    /// Turns true when the server shuts down.
    closing: tokio::sync::watch::Receiver<bool>,
}

/// One connection: the TLS handshake (the configuration is picked per connection: it asks
/// for client certificates once certificate roles exist, and follows them as they change),
/// then HTTP/1.1 or HTTP/2 until the peer closes, the connection is silent or idle too long,
/// or the server shuts down.
async fn serve_connection(state: Arc<AppState>, app: axum::Router, accepted: Accepted) {
    let Accepted {
        tcp,
        peer,
        slot,
        mut closing,
    } = accepted;
    let _slot = slot;
    let activity = Activity::new();
    let handshake = async {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        start.into_stream(state.tls_config()).await
    };
    let tls = match tokio::time::timeout(FIRST_REQUEST, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    if *closing.borrow() {
        return;
    }
    let certs = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| Arc::new(PeerCerts::new(c.iter().map(|d| d.to_vec()).collect())));
    let requests = Arc::clone(&activity);
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let in_flight = requests.begin();
            req.extensions_mut().insert(RemoteAddr(peer));
            if let Some(c) = &certs {
                req.extensions_mut().insert(Arc::clone(c));
            }
            let answer = app.clone().oneshot(req.map(axum::body::Body::new));
            async move {
                let answer = answer.await;
                drop(in_flight);
                answer
            }
        });
    let builder = http_builder();
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    // Closed when silent from accept, or idle, for too long (connections.rs): on
    // every protocol, protocol detection included.
    loop {
        let wake = activity
            .deadline()
            .unwrap_or_else(|| tokio::time::Instant::now() + IDLE);
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            Ok(()) = closing.changed() => {
                // Shutting down: answer what is in flight, then close.
                conn.as_mut().graceful_shutdown();
                if let Err(e) = conn.as_mut().await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                if activity.deadline().is_some_and(|d| d <= tokio::time::Instant::now()) {
                    tracing::debug!(%peer, "closing a silent or idle connection");
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
                    return;
                }
            }
        }
    }
}

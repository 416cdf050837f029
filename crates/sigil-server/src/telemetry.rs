//! Prometheus metrics: requests and latency by route and status, authentication failures by
//! reason, seal state, audit queue depth, storage commit latency. No label ever carries a
//! secret, an identity or a full path (routes are the documented endpoint templates).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sigil_core::Node;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Seconds, for every latency histogram.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Batches per storage commit group, signatures per verified batch (counts, not times).
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Installs the process-wide recorder (once).
pub(crate) fn install() {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .ok()?
            .set_buckets_for_metric(
                Matcher::Full("sigil_storage_commit_batches".to_owned()),
                GROUP_BUCKETS,
            )
            .ok()?
            .set_buckets_for_metric(
                Matcher::Full("sigil_signature_batch_size".to_owned()),
                GROUP_BUCKETS,
            )
            .ok()?;
        let handle = builder.install_recorder().ok()?;
        // Histograms keep every sample until upkeep folds them into their buckets; without it
        // a server nobody scrapes grows by every request's latency sample, forever.
        // The recorder is installed either way, so the handle is kept either way: a scrape
        // drains the samples too.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("sigil-metrics".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no metrics upkeep thread: latency samples are kept until /metrics is scraped");
        }
        Some(handle)
    });
}

/// Signatures verified together ([`crate::signatures`]).
pub(crate) fn signature_batch(size: usize) {
    metrics::histogram!("sigil_signature_batch_size").record(size as f64);
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The label of one of the server's own endpoints (`sys/health`), or `other`: a path the core
/// routes gets its label from the request's plan (`secret/data/{path}`), so labels stay few
/// and never carry a secret's name.
pub(crate) fn server_route(raw_path: &str) -> String {
    let path = raw_path.trim_end_matches('/');
    crate::openapi::SERVER_ENDPOINTS
        .iter()
        .find(|e| e.path == path)
        .map_or_else(|| "other".to_owned(), |e| e.path.to_owned())
}

/// One finished request.
pub(crate) fn request(route: String, method: &str, status: u16, took: Duration) {
    let method = match method {
        "GET" | "LIST" | "POST" | "PUT" | "PATCH" | "DELETE" => method.to_owned(),
        _ => "other".to_owned(),
    };
    metrics::counter!("sigil_requests_total", "route" => route.clone(), "method" => method, "status" => status.to_string())
        .increment(1);
    metrics::histogram!("sigil_request_duration_seconds", "route" => route)
        .record(took.as_secs_f64());
}

/// A refused authentication, by reason.
pub(crate) fn auth_failure(message: &str) {
    let reason = [
        ("tokens", "token"),
        ("not signed", "missing_signature"),
        ("replayed", "replay"),
        ("unknown or disabled key", "unknown_key"),
        ("expired or not yet valid", "stale"),
        ("exceeds 300", "too_long"),
        ("does not verify", "bad_signature"),
        ("content-digest", "digest"),
        ("not a name of this server", "wrong_host"),
    ]
    .iter()
    .find(|(needle, _)| message.contains(needle))
    .map_or("malformed", |(_, r)| r);
    metrics::counter!("sigil_auth_failures_total", "reason" => reason).increment(1);
}

/// The metrics text (Prometheus exposition format), with the current seal state and audit
/// queue depths.
pub(crate) fn render(node: &Node) -> String {
    let status = node.status();
    metrics::gauge!("sigil_initialized").set(f64::from(u8::from(status.initialized)));
    metrics::gauge!("sigil_sealed").set(f64::from(u8::from(status.sealed)));
    metrics::gauge!("sigil_storage_failed")
        .set(f64::from(u8::from(status.storage_error.is_some())));
    if let Some(core) = node.core() {
        for (device, depth) in core.audit().queue_depths() {
            metrics::gauge!("sigil_audit_queue_depth", "device" => device).set(depth as f64);
        }
    }
    HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

//! Prometheus metrics, served by the admin API at `GET /metrics`.
//!
//! On the request path everything is pre-resolved: a request adds to one counter picked by index and
//! one histogram, never a label lookup. Cache and function figures are read when scraped (the store's
//! counters; each loaded function's own atomics, `verge_hooks::stats`).

use std::fmt::Write as _;
use std::sync::{LazyLock, OnceLock};

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use verge_config::model::EventType;

use crate::cache::storage::ObjectStore;
use crate::edge::outcome::ResultType;
use crate::snapshot::Snapshot;

struct Metrics {
    registry: Registry,
    /// By result type and status class: `result.index() * STATUS_CLASSES.len() + class`.
    requests: Vec<IntCounter>,
    request_seconds: Histogram,
    /// The statuses CloudFront reports error rates for, one counter each (`ERROR_STATUSES`).
    error_statuses: Vec<IntCounter>,
    /// CloudFront's BytesDownloaded (GET, HEAD, OPTIONS: bytes sent) and BytesUploaded (POST, PUT:
    /// bytes received).
    bytes_downloaded: IntCounter,
    bytes_uploaded: IntCounter,
    /// CloudFront's OriginLatency: the origin's first byte, on requests it served.
    origin_latency: Histogram,
    /// Responses compressed at the edge, by encoding; bytes saved (in minus out).
    compressed: IntCounterVec,
    compression_saved: IntCounter,
    reloads: IntCounter,
    reloads_refused: IntCounter,
    connections_refused: IntCounter,
    pass_exchanges: IntCounter,
    /// By reason: `tls` (handshake failed or timed out), `proxy_protocol` (no valid PROXY header).
    connections_failed: IntCounterVec,
    /// Idle viewer connections waiting in a listener's lot (`server/parking.rs`).
    connections_parked: IntGauge,
    generation: IntGauge,
}

/// `status_class` values: no response was sent (the viewer hung up), then 1xx–5xx.
const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];
/// The statuses with a CloudFront error-rate metric of their own.
const ERROR_STATUSES: [u16; 6] = [401, 403, 404, 502, 503, 504];

/// The distribution id every series is labelled with (`distribution_id`, CloudFront's DistributionId
/// dimension): the one the process started with.
static DISTRIBUTION_ID: OnceLock<String> = OnceLock::new();

/// Names the distribution for the metrics; call before the first request (later calls change nothing).
pub fn init(distribution_id: &str) {
    let _ = DISTRIBUTION_ID.set(distribution_id.to_string());
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let id = DISTRIBUTION_ID.get().cloned().unwrap_or_else(|| "EVERGEDEFAULT".to_string());
    let registry = Registry::new_custom(None, Some([("distribution_id".to_string(), id)].into_iter().collect()))
        .expect("valid registry");
    let requests_vec = IntCounterVec::new(
        Opts::new("verge_requests_total", "Viewer requests answered, by result type and status class."),
        &["result", "status_class"],
    )
    .expect("valid metric");
    let requests = ResultType::ALL
        .iter()
        .flat_map(|r| STATUS_CLASSES.iter().map(|c| requests_vec.with_label_values(&[r.as_str(), c])))
        .collect();
    let statuses_vec = IntCounterVec::new(
        Opts::new("verge_error_responses_total", "Responses with 401, 403, 404, 502, 503 or 504, by status."),
        &["status"],
    )
    .expect("valid metric");
    let error_statuses = ERROR_STATUSES.iter().map(|s| statuses_vec.with_label_values(&[&s.to_string()])).collect();
    let bytes_downloaded = IntCounter::new(
        "verge_bytes_downloaded_total",
        "Bytes sent to viewers for GET, HEAD and OPTIONS requests (headers included): BytesDownloaded.",
    )
    .expect("valid metric");
    let bytes_uploaded = IntCounter::new(
        "verge_bytes_uploaded_total",
        "Bytes received from viewers in POST and PUT bodies: BytesUploaded.",
    )
    .expect("valid metric");
    let origin_latency = Histogram::with_opts(
        HistogramOpts::new(
            "verge_origin_latency_seconds",
            "Time to the origin's first byte on requests the origin served: OriginLatency.",
        )
        .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
    )
    .expect("valid metric");
    let buckets =
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let request_seconds = Histogram::with_opts(
        HistogramOpts::new("verge_request_duration_seconds", "Time from request to the end of the response.")
            .buckets(buckets),
    )
    .expect("valid metric");
    let reloads = IntCounter::new("verge_reloads_total", "Distribution reloads applied.").expect("valid metric");
    let reloads_refused =
        IntCounter::new("verge_reloads_refused_total", "Distribution reloads refused (the running one kept).")
            .expect("valid metric");
    let generation =
        IntGauge::new("verge_distribution_generation", "Generation of the distribution serving (1 at start).")
            .expect("valid metric");
    generation.set(1);
    let connections_refused = IntCounter::new(
        "verge_connections_refused_total",
        "Viewer connections answered 503 and closed because server.max_connections were open.",
    )
    .expect("valid metric");
    let pass_exchanges = IntCounter::new(
        "verge_origin_pass_exchanges_total",
        "Pass misses verge exchanged with the origin itself over a kept-alive connection (the rest go through pingora's proxy).",
    )
    .expect("valid metric");
    let connections_failed = IntCounterVec::new(
        Opts::new(
            "verge_connections_failed_total",
            "Viewer connections closed before their first request: a failed TLS handshake or PROXY header.",
        ),
        &["reason"],
    )
    .expect("valid metric");
    let connections_parked = IntGauge::new(
        "verge_viewer_connections_parked",
        "Idle kept-alive viewer connections parked off their tasks, waiting for their next request.",
    )
    .expect("valid metric");
    // Both reasons exist from the start (at 0), so the family is exported before the first failure.
    for reason in ["tls", "proxy_protocol"] {
        connections_failed.with_label_values(&[reason]);
    }
    let compressed = IntCounterVec::new(
        Opts::new(
            "verge_compressed_responses_total",
            "Origin responses compressed at the edge (then stored), by encoding.",
        ),
        &["encoding"],
    )
    .expect("valid metric");
    for encoding in ["br", "gzip", "zstd"] {
        compressed.with_label_values(&[encoding]);
    }
    let compression_saved = IntCounter::new(
        "verge_compression_saved_bytes_total",
        "Bytes compression at the edge took off origin responses (before the cache: every hit saves them again).",
    )
    .expect("valid metric");
    for collector in [
        Box::new(requests_vec) as Box<dyn prometheus::core::Collector>,
        Box::new(compressed.clone()),
        Box::new(compression_saved.clone()),
        Box::new(statuses_vec),
        Box::new(bytes_downloaded.clone()),
        Box::new(bytes_uploaded.clone()),
        Box::new(origin_latency.clone()),
        Box::new(request_seconds.clone()),
        Box::new(reloads.clone()),
        Box::new(reloads_refused.clone()),
        Box::new(generation.clone()),
        Box::new(connections_refused.clone()),
        Box::new(pass_exchanges.clone()),
        Box::new(connections_failed.clone()),
        Box::new(connections_parked.clone()),
    ] {
        registry.register(collector).expect("metric registered once");
    }
    Metrics {
        registry,
        requests,
        request_seconds,
        error_statuses,
        bytes_downloaded,
        bytes_uploaded,
        origin_latency,
        compressed,
        compression_saved,
        reloads,
        reloads_refused,
        connections_refused,
        pass_exchanges,
        connections_failed,
        connections_parked,
        generation,
    }
});

/// One answered request, as the metrics count it.
pub struct Counted {
    pub result: ResultType,
    /// The status sent; 0 when none was.
    pub status: u16,
    pub seconds: f64,
    pub method: http::Method,
    /// Bytes sent (head and body) and body bytes received.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The origin's first byte, when the origin served the request.
    pub origin_seconds: Option<f64>,
}

/// Counts one answered request.
pub fn request(r: &Counted) {
    let metrics = &*METRICS;
    let class = if r.status >= 100 && r.status < 600 { (r.status / 100) as usize } else { 0 };
    metrics.requests[r.result.index() * STATUS_CLASSES.len() + class].inc();
    metrics.request_seconds.observe(r.seconds);
    if let Some(i) = ERROR_STATUSES.iter().position(|s| *s == r.status) {
        metrics.error_statuses[i].inc();
    }
    match r.method {
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => metrics.bytes_downloaded.inc_by(r.bytes_sent),
        http::Method::POST | http::Method::PUT => metrics.bytes_uploaded.inc_by(r.bytes_received),
        _ => {}
    }
    if let Some(seconds) = r.origin_seconds {
        metrics.origin_latency.observe(seconds);
    }
}

/// Counts a response compressed at the edge: `bytes_in` from the origin became `bytes_out`.
pub fn compressed(encoding: &'static str, bytes_in: u64, bytes_out: u64) {
    METRICS.compressed.with_label_values(&[encoding]).inc();
    METRICS.compression_saved.inc_by(bytes_in.saturating_sub(bytes_out));
}

/// Counts a viewer connection refused at `server.max_connections`.
pub fn connection_refused() {
    METRICS.connections_refused.inc();
}

/// Counts a pass miss exchanged with the origin by verge itself (pass_through.rs).
pub fn pass_exchange() {
    METRICS.pass_exchanges.inc();
}

/// Connections parked (`delta` > 0) or leaving a lot.
pub fn connections_parked(delta: i64) {
    METRICS.connections_parked.add(delta);
}

/// Counts a viewer connection lost before its first request (`reason`: `tls` or `proxy_protocol`).
pub fn connection_failed(reason: &'static str) {
    METRICS.connections_failed.with_label_values(&[reason]).inc();
}

/// Counts a reload attempt.
pub fn reload(applied: Option<u64>) {
    match applied {
        Some(generation) => {
            METRICS.reloads.inc();
            METRICS.generation.set(generation as i64);
        }
        None => METRICS.reloads_refused.inc(),
    }
}

/// The whole exposition (Prometheus text format 0.0.4).
pub fn render(store: &ObjectStore, snapshot: &Snapshot) -> String {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&METRICS.registry.gather(), &mut out);
    let mut text = String::from_utf8(out).unwrap_or_default();
    cache(&mut text, store);
    functions(&mut text, snapshot);
    text
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn cache(out: &mut String, store: &ObjectStore) {
    let s = store.stats();
    let figures = [
        ("verge_cache_objects", "gauge", "Objects in the cache.", s.objects),
        ("verge_cache_bytes", "gauge", "Bytes held by the cache (bodies and headers).", s.bytes),
        ("verge_cache_capacity_bytes", "gauge", "The cache's bound (cache.memory_mb).", s.capacity_bytes),
        ("verge_cache_evictions_total", "counter", "Objects evicted to stay within the bound.", s.evicted_objects),
        (
            "verge_cache_rejected_too_large_total",
            "counter",
            "Objects not stored: over cache.max_object_mb.",
            s.rejected_too_large,
        ),
    ];
    for (name, kind, help, value) in figures {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Per function version and trigger: invocations, failures by class, seconds spent.
fn functions(out: &mut String, snapshot: &Snapshot) {
    let loaded = snapshot.functions.versions();
    if loaded.is_empty() {
        return;
    }
    let triggers =
        [EventType::ViewerRequest, EventType::OriginRequest, EventType::OriginResponse, EventType::ViewerResponse];
    let rows: Vec<_> = loaded
        .iter()
        .flat_map(|f| triggers.iter().map(move |t| (f, *t, f.stats.trigger(t.index()))))
        .filter(|(_, _, s)| s.calls > 0)
        .collect();
    family(out, "verge_function_invocations_total", "counter", "Function invocations by version and trigger.");
    for (f, t, s) in &rows {
        let _ = writeln!(
            out,
            "verge_function_invocations_total{{arn=\"{}\",event_type=\"{}\"}} {}",
            f.arn,
            t.as_str(),
            s.calls
        );
    }
    family(out, "verge_function_failures_total", "counter", "Failed invocations by version, trigger and error class.");
    for (f, t, s) in &rows {
        for (class, count) in verge_hooks::stats::FAILURE_CLASSES.iter().zip(s.failures) {
            let name = verge_hooks::HookError { kind: *class, reason: String::new() }.result_type();
            let _ = writeln!(
                out,
                "verge_function_failures_total{{arn=\"{}\",event_type=\"{}\",error=\"{name}\"}} {count}",
                f.arn,
                t.as_str()
            );
        }
    }
    family(out, "verge_function_seconds_total", "counter", "Time spent in invocations by version and trigger.");
    for (f, t, s) in &rows {
        let _ = writeln!(
            out,
            "verge_function_seconds_total{{arn=\"{}\",event_type=\"{}\"}} {}",
            f.arn,
            t.as_str(),
            s.micros as f64 / 1e6
        );
    }
}

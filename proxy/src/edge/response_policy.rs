//! Response headers policies applied (CloudFront's ResponseHeadersPolicy): on every response of a behavior
//! that has one (hits, misses, verge's own pages), after viewer-response, never stored in the cache. Order,
//! as CloudFront: remove headers first, then set security and custom headers (an origin's value is kept
//! unless the header says `override`), then CORS for a request with `Origin`, then Server-Timing.
//! A CORS preflight on a behavior that does not send OPTIONS to the origin is answered here (204).

use std::cell::Cell;
use std::sync::Arc;

use http::HeaderValue;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use verge_config::response_headers::ResponseHeadersPolicy;

use super::outcome::{Outcome, ResultType};

/// What the policy needs from the request, kept from `request_filter` (only on behaviors with a policy).
pub struct PolicyRequest {
    pub policy: Arc<ResponseHeadersPolicy>,
    /// The request's `Origin`, when the policy has CORS.
    origin: Option<HeaderValue>,
    /// A CORS preflight: OPTIONS with `Origin` and `Access-Control-Request-Method`.
    pub preflight: bool,
    /// Server-Timing goes on this response (sampled, or asked for with `Pragma: server-timing`).
    server_timing: bool,
}

impl PolicyRequest {
    pub fn new(policy: &Arc<ResponseHeadersPolicy>, req: &RequestHeader) -> Self {
        let origin = policy.cors.as_ref().and_then(|_| req.headers.get(http::header::ORIGIN).cloned());
        let preflight = origin.is_some()
            && req.method == http::Method::OPTIONS
            && req.headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        let server_timing = policy.server_timing.is_some_and(|rate| {
            let asked = req.headers.get_all(http::header::PRAGMA).iter().any(|v| {
                v.to_str().is_ok_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("server-timing")))
            });
            asked || sample(rate)
        });
        Self { policy: policy.clone(), origin, preflight, server_timing }
    }
}

/// A draw against `rate` (0.0–1.0).
fn sample(rate: f64) -> bool {
    rate > 0.0 && draw() < rate
}

/// A uniform draw in [0, 1) (xorshift per thread: no lock, no syscall), for sampling.
pub fn draw() -> f64 {
    thread_local!(static STATE: Cell<u64> = Cell::new(seed()));
    let draw = STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    (nanos ^ (std::process::id() as u64).rotate_left(32)) | 1
}

/// Whether the policy's effect on a hit sent from its rendered head (`fresh_hit.rs`) is only fields to
/// append to it: it removes nothing the stored header has, sets no field the stored header has with
/// `override`, adds no CORS (no `Origin`) and no Server-Timing, and names none of the fields each hit
/// sets itself (`per_hit`).
pub fn appends_only(
    request: &PolicyRequest,
    stored: &ResponseHeader,
    per_hit: impl Fn(&http::HeaderName) -> bool,
) -> bool {
    let policy = &request.policy;
    !request.server_timing
        && (policy.cors.is_none() || request.origin.is_none())
        && policy.remove.iter().all(|name| !per_hit(name) && !stored.headers.contains_key(name))
        && policy.set.iter().all(|h| !(per_hit(&h.name) || h.r#override && stored.headers.contains_key(&h.name)))
}

/// The fields `apply` would add to `stored`, as header lines (when `appends_only` said so): those the
/// stored header does not have (it keeps its own value of the others).
pub fn append_lines(request: &PolicyRequest, stored: &ResponseHeader, head: &mut bytes::BytesMut) {
    use bytes::BufMut;
    for header in &request.policy.set {
        if !stored.headers.contains_key(&header.name) {
            head.put_slice(&header.wire_name);
            head.put_slice(b": ");
            head.put_slice(header.value.as_bytes());
            head.put_slice(b"\r\n");
        }
    }
}

/// Applies the policy to a response about to be sent; `origin_millis` is the origin's first-byte latency
/// on a miss.
pub fn apply(
    resp: &mut ResponseHeader,
    request: &PolicyRequest,
    outcome: Outcome,
    request_id: &str,
    origin_millis: Option<u64>,
    shield_hit: bool,
) -> Result<()> {
    let policy = &request.policy;
    for name in &policy.remove {
        resp.remove_header(name);
    }
    for header in &policy.set {
        if header.r#override || !resp.headers.contains_key(&header.name) {
            // The shared wire name and prebuilt value: no parse, no copy (edge/header_names.rs says why).
            resp.insert_header(header.wire_name.clone(), header.value.clone())?;
        }
    }
    if let (Some(cors), Some(origin)) = (&policy.cors, &request.origin) {
        let origin_text = origin.to_str().unwrap_or("");
        let origin_has_it = resp.headers.contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN);
        if cors.allows(origin_text) && (cors.origin_override || !origin_has_it) {
            if cors.answers_any_origin() {
                resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")?;
            } else {
                resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())?;
                resp.append_header(http::header::VARY, "Origin")?;
            }
            if cors.allow_credentials {
                resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true")?;
            }
            if !cors.expose_headers.is_empty() && !request.preflight {
                resp.insert_header(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, cors.expose_headers.as_str())?;
            }
            if request.preflight {
                if !cors.allow_methods.is_empty() {
                    resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_METHODS, cors.allow_methods.as_str())?;
                }
                if !cors.allow_headers.is_empty() {
                    resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_HEADERS, cors.allow_headers.as_str())?;
                }
                if let Some(age) = cors.max_age_sec {
                    resp.insert_header(http::header::ACCESS_CONTROL_MAX_AGE, age.to_string())?;
                }
            }
        }
    }
    if request.server_timing {
        let from_shield = shield_hit && outcome == Outcome::Miss;
        let cache = match outcome.result_type() {
            ResultType::Hit => "cdn-cache-hit",
            ResultType::RefreshHit => "cdn-cache-refresh",
            _ if from_shield => "cdn-cache-hit",
            _ => "cdn-cache-miss",
        };
        let mut value = format!("{cache},cdn-pop;desc=\"verge\",cdn-rid;desc=\"{request_id}\"");
        if matches!(outcome, Outcome::Hit | Outcome::RefreshHit) {
            value.push_str(",cdn-hit-layer;desc=\"EDGE\"");
        } else if from_shield {
            // The edge missed and the fleet's shield had it (CloudFront's layer name).
            value.push_str(",cdn-hit-layer;desc=\"Origin Shield\"");
        }
        if let Some(ms) = origin_millis {
            value.push_str(&format!(",cdn-upstream-fbl;dur={ms}"));
        }
        // Merged with the origin's own Server-Timing (one header, its metrics first).
        let merged = match resp.headers.get("server-timing").and_then(|v| v.to_str().ok()) {
            Some(origin) if !origin.is_empty() => format!("{origin},{value}"),
            _ => value,
        };
        resp.insert_header("server-timing", merged)?;
    }
    Ok(())
}

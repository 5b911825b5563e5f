//! Fresh hits served from the head rendered when the object was stored (cache/rendered_head.rs): the
//! stored bytes plus `Age`, the edge headers and `Connection`, with no header map copied, filled and
//! serialised per hit and none of pingora's cache machinery (lookup boxes, `CacheMeta`, hit handler).
//!
//! Taken only where pingora's hit path would send the same response: an HTTP/1 viewer request (not a
//! custom error page's subrequest) for a method the behavior caches, no viewer-response function and
//! no response headers policy (both rewrite the head), no `Range` and no conditional (those make a
//! `206`/`304` out of the stored `200`), and a fresh `200` stored without variance. Everything else —
//! misses, stale objects, revalidations, variants, HTTP/2 — goes through pingora as before.

use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use pingora_cache::key::HashBinary;
use pingora_core::protocols::http::v1::server::RENDERED_INLINE_BODY;
use pingora_error::Result;
use pingora_proxy::Session;
use verge_config::model::EventType;

use crate::cache::key::{key_hash, primary_key};
use crate::cache::rendered_head::put_decimal;
use crate::cache::storage::{FreshHit, ObjectStore};
use crate::edge::context::RequestContext;
use crate::edge::outcome::Outcome;

/// A hit sent from its rendered head: the logs read the stored header and the head's size from it.
pub struct ServedHit {
    pub hit: FreshHit,
    /// The response head's bytes on the wire without `Connection` (CloudFront's sc-bytes count it).
    pub head_bytes: usize,
}

/// The request's cache key, worked out here for the lookup and kept for pingora's (`cache_key_callback`)
/// when the object is not served from here.
pub struct KeyedRequest {
    pub primary: String,
    pub hash: HashBinary,
}

/// Fields that make pingora's hit path answer something other than the stored `200`.
const CONDITIONAL_OR_RANGE: [http::header::HeaderName; 6] = [
    http::header::RANGE,
    http::header::IF_RANGE,
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
];

/// One pass over the request's names, each compared only if it could be one (cheaper than six hashed
/// lookups).
fn conditional_or_range(name: &http::header::HeaderName) -> bool {
    let name_str = name.as_str();
    (name_str.starts_with("if-") || name_str == "range") && CONDITIONAL_OR_RANGE.contains(name)
}

/// Serves the request from a fresh stored object's rendered head when it can (see the module's
/// conditions); `Ok(true)` when the response was sent.
pub async fn serve(session: &mut Session, ctx: &mut RequestContext, store: &ObjectStore) -> Result<bool> {
    let req = session.req_header();
    let http1 = matches!(req.version, http::Version::HTTP_11 | http::Version::HTTP_10);
    let head_only = req.method == http::Method::HEAD;
    if !http1
        || !(head_only || req.method == http::Method::GET)
        || session.subrequest_ctx.is_some()
        || ctx.response_policy.is_some()
    {
        return Ok(false);
    }
    let snapshot = &ctx.snapshot;
    let behavior = snapshot.behavior(ctx.route.behavior);
    let policy = &behavior.cache_policy;
    if !behavior.cached_methods.contains(req.method.as_str())
        || policy.max_ttl == 0
        || snapshot.functions.get(ctx.route.behavior, EventType::ViewerResponse).is_some()
        || req.headers.keys().any(conditional_or_range)
    {
        return Ok(false);
    }
    let primary = primary_key(&snapshot.dist.domain_name, req, policy);
    let hash = key_hash(&primary);
    let now = SystemTime::now();
    let Some(hit) = store.fresh_hit(&hash, now) else {
        ctx.cache_key = Some(Box::new(KeyedRequest { primary, hash }));
        return Ok(false);
    };

    let rendered = hit.head();
    let via = &snapshot.via_value;
    // Room for the per-hit fields, `Connection` and, when pingora sends it in the same buffer, the body.
    let body_room = if head_only || hit.body().len() > RENDERED_INLINE_BODY { 0 } else { hit.body().len() };
    let mut head = BytesMut::with_capacity(rendered.bytes().len() + via.len() + 160 + body_room);
    head.put_slice(rendered.bytes());
    head.put_slice(b"Age: ");
    put_decimal(&mut head, hit.age_secs(now));
    head.put_slice(b"\r\nX-Cache: ");
    head.put_slice(Outcome::Hit.result_type().x_cache().as_bytes());
    head.put_slice(b"\r\nVia: ");
    head.put_slice(via.as_bytes());
    head.put_slice(b"\r\nX-Amz-Cf-Id: ");
    head.put_slice(ctx.request_id.as_str().as_bytes());
    head.put_slice(b"\r\n");
    let head_bytes = head.len();
    let add_date = !rendered.has_date();

    ctx.outcome = Some(Outcome::Hit);
    ctx.response_started = Some(ctx.started.elapsed());
    let served = ctx.served_hit.insert(ServedHit { hit, head_bytes });
    session
        .as_mut()
        .write_rendered_response(http::StatusCode::OK, head, served.hit.body(), add_date)
        .await
        .map_err(|e| e.into_down())?;
    Ok(true)
}

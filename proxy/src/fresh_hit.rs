//! Fresh hits served without pingora's cache machinery (lookup boxes, `CacheMeta`, hit handler, header
//! copy per hit): looked up in the store by the request's key from `request_filter`, and sent either
//! from the head rendered when the object was stored (cache/rendered_head.rs: the stored bytes plus
//! `Age`, the edge headers and `Connection`, no header map at all; a response headers policy's or a
//! viewer-response function's fields appended when all they do is add fields the stored head lacks) or,
//! where the head is rewritten otherwise (a function that reads the response headers or replaces a
//! stored field, a policy that removes or overrides one, CORS, Server-Timing, both a function and a
//! policy) or the viewer speaks HTTP/2, from a copy of the stored header that gets what pingora's hit
//! path and `response_filter` give it.
//!
//! Taken only where pingora's hit path would send the same response: a GET or HEAD the behavior caches
//! (not a custom error page's subrequest), no `Range` and no conditional (those make a `206`/`304` out
//! of the stored `200`), and a fresh `200`: the one in the primary slot, or the variant the request's
//! `Vary` values name (found as pingora finds it, edge/variance.rs). Everything else — misses, stale
//! objects, revalidations, ranges — goes through pingora as before.

use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use pingora_core::protocols::http::v1::server::RENDERED_INLINE_BODY;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use verge_config::model::EventType;
use verge_hooks::{Call, HeaderOp, InPlace};

use crate::cache::key::KeyedRequest;
use crate::cache::key::{key_hash, primary_key};
use crate::cache::rendered_head::put_decimal;
use crate::cache::storage::{FreshHit, ObjectStore};
use crate::edge::context::{RequestContext, ServedHit};
use crate::edge::header_names::wire_name;
use crate::edge::outcome::{ErrorCause, Outcome};
use crate::edge::respond;
use crate::edge::response_policy;
use crate::edge::variance::request_variance;
use crate::triggers;
use crate::triggers::call::replay_response;

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

/// Serves the request from a fresh stored object when it can (see the module's conditions); `Ok(true)`
/// when the response was sent.
pub async fn serve(session: &mut Session, ctx: &mut RequestContext, store: &ObjectStore) -> Result<bool> {
    let req = session.req_header();
    let head_only = req.method == http::Method::HEAD;
    if !(head_only || req.method == http::Method::GET) || session.subrequest_ctx.is_some() {
        return Ok(false);
    }
    let snapshot = &ctx.snapshot;
    let behavior = snapshot.behavior(ctx.route.behavior);
    let policy = &behavior.cache_policy;
    if !behavior.cached_methods.contains(req.method.as_str())
        || policy.max_ttl == 0
        || req.headers.keys().any(conditional_or_range)
    {
        return Ok(false);
    }
    let primary = primary_key(&snapshot.dist.domain_name, req, policy);
    let hash = key_hash(&primary);
    let now = SystemTime::now();
    let Some(hit) = store.fresh_hit(&hash, now, |stored| request_variance(stored, behavior, req)) else {
        ctx.cache_key = Some(Box::new(KeyedRequest { primary, hash }));
        return Ok(false);
    };
    let http1 = matches!(req.version, http::Version::HTTP_11 | http::Version::HTTP_10);
    let function = snapshot.functions.get(ctx.route.behavior, EventType::ViewerResponse);
    let policy_appends =
        ctx.response_policy.as_ref().map(|policy| response_policy::appends_only(policy, hit.header(), is_set_per_hit));
    // A function that reads the response's headers sees them as pingora's hit path built them; a
    // function and a policy together, or a policy that changes stored fields, take the header copy.
    if !http1
        || function.is_some_and(|f| f.reads.headers)
        || (function.is_some() && policy_appends.is_some())
        || policy_appends == Some(false)
    {
        send_header(session, ctx, hit, now, head_only).await?;
        return Ok(true);
    }
    // A function that cannot read them runs on the stored header; changes that only add fields the head
    // lacks are appended to it (the security-headers kind) where the call is (in the function's warm
    // instance when it runs inline: no `Call` of our own), others take the header copy.
    let has_function = function.is_some();
    let function = if has_function { triggers::viewer_response_function(session, hit.header(), ctx) } else { None };
    let head = match function {
        None => render_head(ctx, &hit, now, head_only, &[]),
        Some(function) => {
            let result = {
                let fill = triggers::viewer_response_fill(session, hit.header(), ctx, &function);
                let shown = &*ctx;
                let finish = |call: &mut Call| {
                    if appendable(call, &hit) {
                        Ok(render_head(shown, &hit, now, head_only, &call.response_ops))
                    } else {
                        Err(call.take_response_changes())
                    }
                };
                // Inline (the common case) nothing is awaited: only a function that must wait builds a
                // future.
                match function.invoke_in_place(EventType::ViewerResponse, &fill, &shown.request_id, finish) {
                    InPlace::Done(result) => result,
                    InPlace::Waits(finish) => {
                        let waits = function.invoke_with(EventType::ViewerResponse, fill, &shown.request_id, finish);
                        Box::pin(waits).await
                    }
                }
            };
            match result.map_err(|e| triggers::hook_failed(ctx, e))? {
                Ok(head) => head,
                Err(changes) => {
                    Box::pin(send_changed_header(session, ctx, hit, now, head_only, changes)).await?;
                    return Ok(true);
                }
            }
        }
    };
    // Written out here rather than in a function of its own: an awaited future is built, then moved into
    // this one's state (two ~1 KiB copies a hit, measured).
    let add_date = !hit.head().has_date();
    ctx.outcome = Some(Outcome::Hit);
    ctx.mark_response_started();
    let body = hit.body().clone();
    let head_bytes = session
        .as_mut()
        .write_rendered_response(http::StatusCode::OK, head, &body, add_date)
        .await
        .map_err(|e| e.into_down())?;
    // Only a head that went out is counted (the logs' sc-bytes), as pingora counts `response_written`.
    ctx.served_hit = Some(ServedHit { hit, head_bytes });
    Ok(true)
}

/// Fields a hit sets itself, or whose change a rendered head cannot take by appending a line. One
/// `match` on the text (a switch on the length, then a compare) beats comparing `HeaderName`s.
fn is_set_per_hit(name: &http::header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "age"
            | "accept-ranges"
            | "connection"
            | "date"
            | "via"
            | "content-length"
            | "transfer-encoding"
            | "x-cache"
            | "x-amz-cf-id"
    )
}

/// Whether a change is about `name`.
fn mentions(op: &HeaderOp, name: &http::header::HeaderName) -> bool {
    match op {
        HeaderOp::SetBlock(block) => block.fields().iter().any(|(n, _)| n == name),
        op => op.name() == Some(name),
    }
}

/// Whether a viewer-response call's changes can be appended to the stored head as lines: the status
/// stays, and each change adds a field the stored header lacks (a `Set` not after another change to
/// the same name, no `Remove`). A header block found to add only fresh fields is remembered by the
/// stored object (`FreshHit::remember_appendable`): the next hits with it look no name up.
fn appendable(call: &Call, hit: &FreshHit) -> bool {
    if call.response_status.is_some_and(|s| s != 200) {
        return false;
    }
    let ops = &call.response_ops;
    // The security-headers kind: one block, already found to add only fresh fields to this object.
    if let [HeaderOp::SetBlock(block)] = ops.as_slice() {
        if hit.appendable_block(block.id()) {
            return true;
        }
    }
    let stored = hit.header();
    let fresh = |name: &http::header::HeaderName| !stored.headers.contains_key(name) && !is_set_per_hit(name);
    ops.iter().enumerate().all(|(i, op)| match op {
        HeaderOp::Add(name, _) => fresh(name),
        HeaderOp::Set(name, _) => fresh(name) && !ops[..i].iter().any(|earlier| mentions(earlier, name)),
        HeaderOp::Remove(_) => false,
        HeaderOp::SetBlock(block) => {
            let adds_fresh_fields = hit.appendable_block(block.id()) || {
                let fresh_fields = block.distinct() && block.fields().iter().all(|(name, _)| fresh(name));
                if fresh_fields {
                    hit.remember_appendable(block.id());
                }
                fresh_fields
            };
            adds_fresh_fields
                && block.fields().iter().all(|(name, _)| !ops[..i].iter().any(|earlier| mentions(earlier, name)))
        }
    })
}

/// The stored bytes with the per-hit fields and `added` (a viewer-response function's changes, all
/// appendable) appended: no header map at all.
fn render_head(ctx: &RequestContext, hit: &FreshHit, now: SystemTime, head_only: bool, added: &[HeaderOp]) -> BytesMut {
    let rendered = hit.head();
    let via = &ctx.snapshot.via_value;
    // Room for the per-hit fields, `Connection` and, when pingora sends it in the same buffer, the body.
    let body_room = if head_only || hit.body().len() > RENDERED_INLINE_BODY { 0 } else { hit.body().len() };
    let added_room: usize = added.iter().map(op_room).sum();
    let policy_room: usize = ctx
        .response_policy
        .as_ref()
        .map_or(0, |p| p.policy.set.iter().map(|h| h.wire_name.len() + h.value.len() + 4).sum());
    let mut head =
        BytesMut::with_capacity(rendered.bytes().len() + via.len() + 160 + body_room + added_room + policy_room);
    head.put_slice(rendered.bytes());
    for op in added {
        match op {
            HeaderOp::Set(name, value) | HeaderOp::Add(name, value) => {
                head.put_slice(wire_name(name));
                head.put_slice(b": ");
                head.put_slice(value.as_bytes());
                head.put_slice(b"\r\n");
            }
            HeaderOp::SetBlock(block) => head.put_slice(block.wire()),
            HeaderOp::Remove(_) => {}
        }
    }
    if let Some(policy) = &ctx.response_policy {
        response_policy::append_lines(policy, hit.header(), &mut head);
    }
    head.put_slice(b"Age: ");
    put_decimal(&mut head, hit.age_secs(now));
    head.put_slice(b"\r\nX-Cache: ");
    head.put_slice(Outcome::Hit.result_type().x_cache().as_bytes());
    head.put_slice(b"\r\nVia: ");
    head.put_slice(via.as_bytes());
    head.put_slice(b"\r\nX-Amz-Cf-Id: ");
    head.put_slice(ctx.request_id.as_bytes());
    head.put_slice(b"\r\n");
    head
}

/// A copy of the stored header with what pingora's hit path adds (`Age`, `Accept-Ranges`), then what
/// `response_filter` does to any response (viewer-response, the edge headers and the response headers
/// policy), written by pingora: for HTTP/2 viewers and for behaviors that rewrite the head. Skips
/// pingora's cache machinery (lookup, `CacheMeta`, hit handler) all the same. A viewer-response function
/// that fails ends as on a miss: `fail_to_proxy` sends its CloudFront error.
async fn send_header(
    session: &mut Session,
    ctx: &mut RequestContext,
    hit: FreshHit,
    now: SystemTime,
    head_only: bool,
) -> Result<()> {
    let mut resp = hit_header(&hit, now)?;
    triggers::viewer_response(session, &mut resp, ctx).await?;
    send_response(session, ctx, resp, hit, head_only).await
}

/// `send_header` for a viewer-response call already run on the stored header: its changes replayed on
/// the copy.
async fn send_changed_header(
    session: &mut Session,
    ctx: &mut RequestContext,
    hit: FreshHit,
    now: SystemTime,
    head_only: bool,
    mut changes: Box<Call>,
) -> Result<()> {
    let mut resp = hit_header(&hit, now)?;
    replay_response(&mut resp, &mut changes)?;
    send_response(session, ctx, resp, hit, head_only).await
}

/// The stored header with what pingora's hit path adds to it.
fn hit_header(hit: &FreshHit, now: SystemTime) -> Result<ResponseHeader> {
    let mut resp = hit.header().clone();
    resp.insert_header(http::header::AGE, hit.age_secs(now))?;
    resp.insert_header(http::header::ACCEPT_RANGES, http::HeaderValue::from_static("bytes"))?;
    resp.set_version(http::Version::HTTP_11);
    Ok(resp)
}

/// The outcome, the edge headers (and policy), then the head and body through pingora.
async fn send_response(
    session: &mut Session,
    ctx: &mut RequestContext,
    mut resp: ResponseHeader,
    hit: FreshHit,
    head_only: bool,
) -> Result<()> {
    // A function may have made an error of it (no custom error page: CloudFront does not replace a
    // function's response).
    let outcome = if resp.status.as_u16() >= 400 { Outcome::Error(ErrorCause::OriginStatus) } else { Outcome::Hit };
    ctx.outcome = Some(outcome);
    ctx.mark_response_started();
    respond::edge_headers(&mut resp, outcome, ctx)?;
    session.write_response_header(Box::new(resp), head_only).await.map_err(|e| e.into_down())?;
    if !head_only {
        session.write_response_body(Some(hit.body().clone()), true).await.map_err(|e| e.into_down())?;
    }
    Ok(())
}

/// The bytes a change appended to a rendered head takes.
fn op_room(op: &HeaderOp) -> usize {
    match op {
        HeaderOp::Set(n, v) | HeaderOp::Add(n, v) => n.as_str().len() + 4 + v.len(),
        HeaderOp::SetBlock(block) => block.wire().len(),
        HeaderOp::Remove(_) => 0,
    }
}

//! The four Lambda@Edge trigger points, each written once for every ABI (docs/phases.md):
//! viewer-request in `request_filter`, origin-request in `upstream_peer` (once per origin tried),
//! origin-response in `upstream_response_filter` (before the cache stores the response), viewer-response
//! in `response_filter` (hits included, never stored). A trigger builds a `Call`, `Function::invoke`
//! runs it on whichever ABI the module speaks, and the trigger replays the changes.

pub mod call;

use std::sync::Arc;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use verge_config::model::EventType;
use verge_hooks::{Call, Function, HookError};

use crate::edge::context::{Ending, OriginRequestState, RequestContext};
use crate::edge::forward;
use crate::edge::generated::GeneratedOrigin;
use crate::edge::include_body;
use crate::edge::respond::{self, EdgeResponse};
use crate::snapshot::peer_for;

/// Raised when a function failed inside a pingora phase; `fail_to_proxy` sends its error page.
pub const HOOK_FAILED: ErrorType = ErrorType::Custom("verge-function-failed");

pub(crate) fn hook_failed(ctx: &mut RequestContext, error: HookError) -> Box<Error> {
    let mut e = Error::explain(HOOK_FAILED, error.to_string());
    e.set_retry(false);
    ctx.ending = Ending::FunctionFailed(error);
    e
}

/// viewer-request: may rewrite the request (the cache key follows) or answer it (never cached, no other
/// trigger runs). `Ok(true)`: a response was written.
pub async fn viewer_request(session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
    let Some(function) = ctx.snapshot.functions.get(ctx.route.behavior, EventType::ViewerRequest).cloned() else {
        return Ok(false);
    };
    if function.reads.fields {
        ctx.ensure_client_ip(session);
    }
    let mut call = call::new_call(
        &ctx.snapshot.event_distribution,
        &function,
        EventType::ViewerRequest,
        &ctx.request_id,
        &ctx.client_ip,
        session.req_header(),
        None,
    );
    if include_body::wanted(ctx, EventType::ViewerRequest) {
        call::expose_body(&mut call, include_body::read(session, ctx).await?, EventType::ViewerRequest);
    }
    ctx.functions_ran.push(EventType::ViewerRequest);
    match function.invoke(call, &ctx.request_id).await {
        Ok(call) if call.generated_status.is_some() => {
            let (header, body) = call::generated_response(&call)?;
            respond::send(session, ctx, EdgeResponse::Generated { header, body }).await?;
            Ok(true)
        }
        Ok(mut call) => {
            if let Some(body) = call.body.take() {
                ctx.bodies.forward = Some(body.into());
            }
            call::replay_request(session.req_header_mut(), &call, "")?;
            Ok(false)
        }
        Err(error) => {
            respond::send(session, ctx, EdgeResponse::FunctionError(&error)).await?;
            Ok(true)
        }
    }
}

/// origin-request: runs when the origin is about to be contacted, once per origin tried. It may
/// rewrite the request, re-target the origin, or answer (the answer is cached).
pub async fn origin_request(session: &mut Session, ctx: &mut RequestContext) -> Result<()> {
    match ctx.origin_request {
        OriginRequestState::Generated(_) => return Ok(()),
        OriginRequestState::Ran { origin, .. } if origin == ctx.route.origin => return Ok(()),
        _ => {}
    }
    let Some(function) = ctx.snapshot.functions.get(ctx.route.behavior, EventType::OriginRequest).cloned() else {
        return Ok(());
    };
    if function.reads.fields {
        ctx.ensure_client_ip(session);
    }
    ctx.origin_request = OriginRequestState::Ran { origin: ctx.route.origin, changes: None };
    let snapshot = ctx.snapshot.clone();
    let origin = &snapshot.dist.origins[ctx.route.origin];
    // The function sees the request as it will go to the origin; the origin path is in `origin`.
    let mut preview = session.req_header().clone();
    let behavior = snapshot.behavior(ctx.route.behavior);
    let tls = crate::snapshot::origin_tls(origin, ctx.route.viewer_https);
    let host = snapshot.peers[ctx.route.origin].host(tls);
    let target = forward::OriginTarget { origin, path: "", host };
    let xff = ctx.xff_peer.as_deref().unwrap_or(&ctx.client_ip);
    forward::origin_request(&mut preview, behavior, target, Some(xff), &snapshot.via_value, &ctx.request_id)?;
    let mut call = call::new_call(
        &snapshot.event_distribution,
        &function,
        EventType::OriginRequest,
        &ctx.request_id,
        &ctx.client_ip,
        &preview,
        None,
    );
    // The origin is only visible to (and changeable by) a function that can read or set the uri.
    if function.reads.uri {
        call.origin = Some(call::call_origin(origin, crate::snapshot::origin_tls(origin, ctx.route.viewer_https)));
    }
    if include_body::wanted(ctx, EventType::OriginRequest) {
        call::expose_body(&mut call, include_body::read(session, ctx).await?, EventType::OriginRequest);
    }
    ctx.functions_ran.push(EventType::OriginRequest);
    let mut call = function.invoke(call, &ctx.request_id).await.map_err(|e| hook_failed(ctx, e))?;
    if call.generated_status.is_some() {
        let (header, body) = call::generated_response(&call)?;
        ctx.origin_request = OriginRequestState::Generated(GeneratedOrigin::new(&header, &body));
        return Ok(());
    }
    ctx.route.origin_override = None;
    if let Some(changed) = call.origin.as_ref().filter(|_| call.origin_changed) {
        let tls = changed.protocol == "https";
        let target = resolve_origin(&changed.domain_name, changed.port, tls, changed.path.clone(), origin).await;
        ctx.route.origin_override = Some(Box::new(target.map_err(|e| hook_failed(ctx, e))?));
    }
    if let Some(body) = call.body.take() {
        ctx.bodies.forward = Some(body.into());
    }
    ctx.origin_request = OriginRequestState::Ran { origin: ctx.route.origin, changes: Some(call) };
    Ok(())
}

/// The peer for this attempt: an origin-request answer replayed from memory, a re-targeted origin, or
/// the configured one.
pub fn peer(ctx: &RequestContext) -> HttpPeer {
    if let OriginRequestState::Generated(generated) = &ctx.origin_request {
        return generated.peer();
    }
    match ctx.route.origin_override.as_deref() {
        Some((peer, _)) => peer.clone(),
        None => ctx.snapshot.peers[ctx.route.origin].peer(ctx.route.viewer_https, ctx.route.attempts as usize),
    }
}

/// Builds the origin request (forwarding rules, then what origin-request changed).
pub fn prepare_origin_request(req: &mut RequestHeader, ctx: &mut RequestContext) -> Result<()> {
    if ctx.is_generated_by_origin_request() {
        // The answer is replayed from memory; the viewer's body is not sent anywhere.
        req.remove_header(&http::header::TRANSFER_ENCODING);
        req.insert_header(http::header::CONTENT_LENGTH, "0")?;
        ctx.bodies.forward = Some(bytes::Bytes::new());
        ctx.bodies.forward_sent = false;
        return Ok(());
    }
    let snapshot = ctx.snapshot.clone();
    let origin = &snapshot.dist.origins[ctx.route.origin];
    let behavior = snapshot.behavior(ctx.route.behavior);
    let tls = crate::snapshot::origin_tls(origin, ctx.route.viewer_https);
    forward::origin_request(
        req,
        behavior,
        forward::OriginTarget { origin, path: &origin.origin_path, host: snapshot.peers[ctx.route.origin].host(tls) },
        Some(ctx.xff_peer.as_deref().unwrap_or(&ctx.client_ip)),
        &snapshot.via_value,
        &ctx.request_id,
    )?;
    if let OriginRequestState::Ran { changes: Some(call), .. } = &ctx.origin_request {
        let prefix =
            ctx.route.origin_override.as_deref().map_or(origin.origin_path.as_str(), |(_, path)| path.as_str());
        call::replay_request(req, call, prefix)?;
    }
    if let Some(body) = &ctx.bodies.forward {
        req.remove_header(&http::header::TRANSFER_ENCODING);
        req.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    }
    ctx.bodies.forward_sent = false;
    if snapshot.functions.get(ctx.route.behavior, EventType::OriginResponse).is_some() {
        ctx.sent_request = Some(Box::new(req.clone()));
    }
    Ok(())
}

/// origin-response: after the origin answered (4xx/5xx too), before the cache stores the result. Not for
/// an origin-request answer.
pub async fn origin_response(resp: &mut ResponseHeader, ctx: &mut RequestContext) -> Result<()> {
    if ctx.is_generated_by_origin_request() {
        return Ok(());
    }
    let Some(function) = ctx.snapshot.functions.get(ctx.route.behavior, EventType::OriginResponse).cloned() else {
        return Ok(());
    };
    let sent = ctx
        .sent_request
        .take()
        .map(|r| *r)
        .unwrap_or_else(|| RequestHeader::build("GET", b"/", None).expect("static request"));
    let call = call::new_call(
        &ctx.snapshot.event_distribution,
        &function,
        EventType::OriginResponse,
        &ctx.request_id,
        &ctx.client_ip,
        &sent,
        Some(resp),
    );
    ctx.functions_ran.push(EventType::OriginResponse);
    let mut call = function.invoke(call, &ctx.request_id).await.map_err(|e| hook_failed(ctx, e))?;
    call::replay_response(resp, &mut call)?;
    if let Some(body) = call.body {
        resp.remove_header(&http::header::TRANSFER_ENCODING);
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        ctx.bodies.origin_replacement = Some(body.into());
    }
    Ok(())
}

/// viewer-response on `resp`: runs the behavior's function (not for an error status) and replays its
/// changes.
pub async fn viewer_response(session: &Session, resp: &mut ResponseHeader, ctx: &mut RequestContext) -> Result<()> {
    let Some(function) = viewer_response_function(session, resp, ctx) else { return Ok(()) };
    let call = call::new_call(
        &ctx.snapshot.event_distribution,
        &function,
        EventType::ViewerResponse,
        &ctx.request_id,
        &ctx.client_ip,
        session.req_header(),
        Some(resp),
    );
    let mut call = function.invoke(call, &ctx.request_id).await.map_err(|e| hook_failed(ctx, e))?;
    call::replay_response(resp, &mut call)
}

/// What a viewer-response function is shown of `resp` and the viewer's request, for
/// `Function::invoke_in_place` (`fresh_hit.rs`: the changes are read, and appended to a rendered head,
/// where the call is).
pub fn viewer_response_fill<'a>(
    session: &'a Session,
    resp: &'a ResponseHeader,
    ctx: &'a RequestContext,
    function: &'a Function,
) -> impl Fn(&mut Call) + 'a {
    move |call: &mut Call| {
        let (distribution, id, ip) = (&ctx.snapshot.event_distribution, &ctx.request_id, &ctx.client_ip);
        call::fill_call(call, distribution, function, id, ip, session.req_header(), Some(resp));
    }
}

/// The viewer-response function to run on `resp` (none for an error status), counted as run.
pub fn viewer_response_function(
    session: &Session,
    resp: &ResponseHeader,
    ctx: &mut RequestContext,
) -> Option<Arc<Function>> {
    if resp.status.as_u16() >= 400 {
        return None;
    }
    let function = ctx.snapshot.functions.get(ctx.route.behavior, EventType::ViewerResponse)?.clone();
    if function.reads.fields {
        ctx.ensure_client_ip(session);
    }
    ctx.functions_ran.push(EventType::ViewerResponse);
    Some(function)
}

/// The peer for an origin a function chose (its other settings come from the configured origin).
async fn resolve_origin(
    domain: &str,
    port: u16,
    tls: bool,
    path: String,
    configured: &verge_config::model::Origin,
) -> std::result::Result<(HttpPeer, String), HookError> {
    let addr = tokio::net::lookup_host((domain, port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| HookError::validation(format!("origin.custom.domainName `{domain}` does not resolve")))?;
    // Over TLS, the configured origin's CA bundle does not apply to another host: system roots.
    Ok((peer_for(addr, domain, configured, tls, None), path))
}

//! The four Lambda@Edge triggers at their pingora phases (docs/phases.md): viewer-request in
//! `request_filter`, origin-request in `upstream_peer` (once per origin tried), origin-response in
//! `upstream_response_filter` (before the cache stores the response), viewer-response in
//! `response_filter` (hits included, never stored).

use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use verge_config::model::EventType;
use verge_hooks::{Call, Function, HookError};

use crate::context::RequestContext;
use crate::error_page;
use crate::forward;
use crate::generated::PATH_PREFIX;
use crate::http_server::OriginResponse;
use crate::include_body;
use crate::lambda;
use crate::proxy::VergeProxy;
use crate::snapshot::peer_for;

/// Raised when a function failed; `fail_to_proxy` turns it into the function error page.
pub const HOOK_FAILED: ErrorType = ErrorType::Custom("verge-function-failed");

fn hook_failed(ctx: &mut RequestContext, error: verge_hooks::HookError) -> Box<Error> {
    let mut e = Error::explain(HOOK_FAILED, error.to_string());
    e.set_retry(false);
    ctx.hook_error = Some(error);
    e
}

/// Runs `function` on `call`. (Every ABI behind one call: `Function::invoke` counts and logs it.)
async fn invoke(function: &Function, call: Box<Call>, request_id: &str) -> std::result::Result<Box<Call>, HookError> {
    function.invoke(call, request_id).await
}

impl VergeProxy {
    /// viewer-request: may rewrite the request (the cache key follows) or answer it (never cached, no
    /// other trigger runs). `Ok(true)`: a response was written.
    pub(crate) async fn viewer_request(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
        let Some(function) = ctx.snapshot.functions.get(ctx.behavior, EventType::ViewerRequest).cloned() else {
            return Ok(false);
        };
        if function.reads.fields {
            ctx.ensure_client_ip(session);
        }
        let mut call = lambda::new_call(
            &ctx.snapshot,
            &function,
            EventType::ViewerRequest,
            &ctx.request_id,
            &ctx.client_ip,
            session.req_header(),
            None,
        );
        if include_body::wanted(ctx, EventType::ViewerRequest) {
            lambda::expose_body(&mut call, include_body::read(session, ctx).await?, EventType::ViewerRequest);
        }
        match invoke(&function, call, &ctx.request_id).await {
            Ok(call) if call.generated_status.is_some() => self.write_generated(session, ctx, &call).await,
            Ok(mut call) => {
                if let Some(body) = call.body.take() {
                    ctx.forward_body = Some(body.into());
                }
                lambda::replay_request(session.req_header_mut(), &call, "")?;
                Ok(false)
            }
            Err(error) => {
                error_page::write_function_error(session, &error, &ctx.snapshot.via, &ctx.request_id).await?;
                ctx.hook_error = Some(error);
                Ok(true)
            }
        }
    }

    /// Sends a viewer-request answer: never cached, no other trigger runs.
    async fn write_generated(&self, session: &mut Session, ctx: &mut RequestContext, generated: &Call) -> Result<bool> {
        let (mut resp, body) = lambda::generated_response(generated)?;
        resp.insert_header("x-cache", "LambdaGeneratedResponse from verge")?;
        resp.insert_header("via", ctx.snapshot.via.as_str())?;
        resp.insert_header("x-amz-cf-id", ctx.request_id.as_str())?;
        ctx.generated_by = Some(EventType::ViewerRequest);
        let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
        session.write_response_header(Box::new(resp), head_only).await?;
        if !head_only {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(true)
    }

    /// origin-request: runs when the origin is about to be contacted, once per origin tried. It may
    /// rewrite the request, re-target the origin, or answer (the answer is cached).
    pub(crate) async fn origin_request(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<()> {
        if ctx.generated_token.is_some() || ctx.origin_request_ran_for == Some(ctx.origin) {
            return Ok(());
        }
        let Some(function) = ctx.snapshot.functions.get(ctx.behavior, EventType::OriginRequest).cloned() else {
            return Ok(());
        };
        if function.reads.fields {
            ctx.ensure_client_ip(session);
        }
        ctx.origin_request_ran_for = Some(ctx.origin);
        let snapshot = ctx.snapshot.clone();
        let origin = &snapshot.dist.origins[ctx.origin];
        // The event shows the request as it will go to the origin; the origin path is in `origin`.
        let mut preview = session.req_header().clone();
        let behavior = snapshot.behavior(ctx.behavior);
        forward::origin_request(
            &mut preview,
            behavior,
            origin,
            "",
            Some(&ctx.client_ip),
            &snapshot.via,
            &ctx.request_id,
        )?;
        let mut call = lambda::new_call(
            &snapshot,
            &function,
            EventType::OriginRequest,
            &ctx.request_id,
            &ctx.client_ip,
            &preview,
            None,
        );
        // The origin is only visible to (and changeable by) a function that can read or set the uri.
        if function.reads.uri {
            call.origin = Some(lambda::call_origin(origin));
        }
        if include_body::wanted(ctx, EventType::OriginRequest) {
            lambda::expose_body(&mut call, include_body::read(session, ctx).await?, EventType::OriginRequest);
        }
        let mut call = invoke(&function, call, &ctx.request_id).await.map_err(|e| hook_failed(ctx, e))?;
        if call.generated_status.is_some() {
            self.stash_generated(ctx, &call);
            return Ok(());
        }
        ctx.origin_override = None;
        if let Some(changed) = call.origin.as_ref().filter(|_| call.origin_changed) {
            let target = resolve_origin(&changed.domain_name, changed.port, changed.path.clone(), origin).await;
            ctx.origin_override = Some(target.map_err(|e| hook_failed(ctx, e))?);
        }
        if let Some(body) = call.body.take() {
            ctx.forward_body = Some(body.into());
        }
        ctx.origin_request = Some(call);
        Ok(())
    }

    /// Hands an origin-request answer to the generator, which pingora then fetches and caches.
    fn stash_generated(&self, ctx: &mut RequestContext, generated: &Call) {
        let body = generated.body.clone().unwrap_or_default();
        let mut response = OriginResponse::new(generated.generated_status.unwrap_or(200), body);
        for (name, value) in &generated.response_headers {
            response = response.header(name.as_str(), &String::from_utf8_lossy(value.as_bytes()));
        }
        ctx.generated_token = Some(self.generator.stash(response));
        ctx.generated_by = Some(EventType::OriginRequest);
    }

    /// The peer for this attempt: the generator for an origin-request answer, a re-targeted origin, or
    /// the configured one.
    pub(crate) fn peer(&self, ctx: &RequestContext) -> HttpPeer {
        if ctx.generated_token.is_some() {
            return HttpPeer::new(self.generator.addr, false, "verge-generator".to_string());
        }
        match &ctx.origin_override {
            Some((peer, _)) => peer.clone(),
            None => ctx.snapshot.peers[ctx.origin].clone(),
        }
    }

    /// Builds the origin request (forwarding rules, then what origin-request returned).
    pub(crate) fn prepare_origin_request(&self, req: &mut RequestHeader, ctx: &mut RequestContext) -> Result<()> {
        if let Some(token) = ctx.generated_token {
            let uri = format!("{PATH_PREFIX}{token}");
            req.set_uri(uri.parse().map_err(|e| Error::because(ErrorType::InternalError, "generator uri", e))?);
            // The generator does not want the viewer's body (a large one would stall the fetch).
            req.remove_header(&http::header::TRANSFER_ENCODING);
            req.insert_header(http::header::CONTENT_LENGTH, "0")?;
            ctx.forward_body = Some(Bytes::new());
            ctx.forward_body_sent = false;
            return Ok(());
        }
        let snapshot = ctx.snapshot.clone();
        let origin = &snapshot.dist.origins[ctx.origin];
        let behavior = snapshot.behavior(ctx.behavior);
        forward::origin_request(
            req,
            behavior,
            origin,
            &origin.origin_path,
            Some(&ctx.client_ip),
            &snapshot.via,
            &ctx.request_id,
        )?;
        if let Some(call) = &ctx.origin_request {
            let prefix = ctx.origin_override.as_ref().map_or(origin.origin_path.as_str(), |(_, path)| path.as_str());
            lambda::replay_request(req, call, prefix)?;
        }
        if let Some(body) = &ctx.forward_body {
            req.remove_header(&http::header::TRANSFER_ENCODING);
            req.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        ctx.forward_body_sent = false;
        if snapshot.functions.get(ctx.behavior, EventType::OriginResponse).is_some() {
            ctx.sent_request = Some(req.clone());
        }
        Ok(())
    }

    /// origin-response: after the origin answered (4xx/5xx too), before the cache stores the result.
    pub(crate) async fn origin_response(&self, resp: &mut ResponseHeader, ctx: &mut RequestContext) -> Result<()> {
        if ctx.generated_token.is_some() {
            return Ok(());
        }
        let Some(function) = ctx.snapshot.functions.get(ctx.behavior, EventType::OriginResponse).cloned() else {
            return Ok(());
        };
        let sent =
            ctx.sent_request.take().unwrap_or_else(|| RequestHeader::build("GET", b"/", None).expect("static request"));
        let call = lambda::new_call(
            &ctx.snapshot,
            &function,
            EventType::OriginResponse,
            &ctx.request_id,
            &ctx.client_ip,
            &sent,
            Some(resp),
        );
        let mut call = invoke(&function, call, &ctx.request_id).await.map_err(|e| hook_failed(ctx, e))?;
        lambda::replay_response(resp, &mut call)?;
        if let Some(body) = call.body {
            resp.remove_header(&http::header::TRANSFER_ENCODING);
            resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
            ctx.replacement_body = Some(body.into());
        }
        Ok(())
    }

    /// viewer-response: every response below 400, hits included; its changes are never cached.
    pub(crate) async fn viewer_response(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        if resp.status.as_u16() >= 400 || ctx.generated_by == Some(EventType::ViewerRequest) {
            return Ok(());
        }
        let Some(function) = ctx.snapshot.functions.get(ctx.behavior, EventType::ViewerResponse).cloned() else {
            return Ok(());
        };
        if function.reads.fields {
            ctx.ensure_client_ip(session);
        }
        let call = lambda::new_call(
            &ctx.snapshot,
            &function,
            EventType::ViewerResponse,
            &ctx.request_id,
            &ctx.client_ip,
            session.req_header(),
            Some(resp),
        );
        let mut call = invoke(&function, call, &ctx.request_id).await.map_err(|e| hook_failed(ctx, e))?;
        lambda::replay_response(resp, &mut call)
    }
}

/// The peer for an origin a function chose (its other settings come from the configured origin).
async fn resolve_origin(
    domain: &str,
    port: u16,
    path: String,
    configured: &verge_config::model::Origin,
) -> std::result::Result<(HttpPeer, String), verge_hooks::HookError> {
    use verge_hooks::HookError;
    let addr = tokio::net::lookup_host((domain, port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| HookError::validation(format!("origin.custom.domainName `{domain}` does not resolve")))?;
    Ok((peer_for(addr, domain, configured), path))
}

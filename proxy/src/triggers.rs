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
use verge_hooks::event::{EventRequest, HookOutput};
use verge_hooks::Abi;

use crate::context::RequestContext;
use crate::error_page;
use crate::forward;
use crate::generated::PATH_PREFIX;
use crate::http_server::OriginResponse;
use crate::include_body;
use crate::lambda::{self, Invocation};
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
        if function.abi == Abi::Fast {
            let mut call = lambda::fast_call(
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
            return match lambda::run_fast(&function, EventType::ViewerRequest, &ctx.request_id, call).await {
                Ok(mut call) => match lambda::fast_generated(&call) {
                    Some(generated) => self.write_generated(session, ctx, &generated).await,
                    None => {
                        if let Some(body) = call.body.take() {
                            ctx.forward_body = Some(body.into());
                        }
                        lambda::replay_request(session.req_header_mut(), &call, "")?;
                        Ok(false)
                    }
                },
                Err(error) => {
                    error_page::write_function_error(session, &error, &ctx.snapshot.via, &ctx.request_id).await?;
                    ctx.hook_error = Some(error);
                    Ok(true)
                }
            };
        }
        let mut request = lambda::event_request(session.req_header(), &ctx.client_ip);
        if include_body::wanted(ctx, EventType::ViewerRequest) {
            let body = include_body::read(session, ctx).await?;
            request.body = Some(lambda::event_body(&body, EventType::ViewerRequest));
        }
        let config = ctx.snapshot.event_config(EventType::ViewerRequest, &ctx.request_id);
        let invocation = Invocation { function: &function, event: EventType::ViewerRequest, config: &config };
        match invocation.run(&request, None).await {
            Ok(HookOutput::Request(result)) => {
                if let Some(body) = lambda::replaced_body(&result.body) {
                    ctx.forward_body = Some(body.into());
                }
                lambda::apply_request(session.req_header_mut(), &result, "")?;
                Ok(false)
            }
            Ok(HookOutput::Response(generated)) => self.write_generated(session, ctx, &generated).await,
            Err(error) => {
                error_page::write_function_error(session, &error, &ctx.snapshot.via, &ctx.request_id).await?;
                ctx.hook_error = Some(error);
                Ok(true)
            }
        }
    }

    /// Sends a viewer-request answer: never cached, no other trigger runs.
    async fn write_generated(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        generated: &verge_hooks::event::HookResponse,
    ) -> Result<bool> {
        let (mut resp, body) = lambda::generated(generated)?;
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
        if function.abi == Abi::Fast {
            let mut call = lambda::fast_call(
                &snapshot,
                &function,
                EventType::OriginRequest,
                &ctx.request_id,
                &ctx.client_ip,
                &preview,
                None,
            );
            // The origin is only visible to (and changeable by) a function that imports get or set.
            if function.reads.uri {
                call.origin = Some(verge_hooks::fast::FastOrigin {
                    domain_name: origin.domain_name.clone(),
                    port: origin.http_port,
                    path: origin.origin_path.clone(),
                });
            }
            if include_body::wanted(ctx, EventType::OriginRequest) {
                lambda::expose_body(&mut call, include_body::read(session, ctx).await?, EventType::OriginRequest);
            }
            let mut call = lambda::run_fast(&function, EventType::OriginRequest, &ctx.request_id, call)
                .await
                .map_err(|e| hook_failed(ctx, e))?;
            if let Some(generated) = lambda::fast_generated(&call) {
                self.stash_generated(ctx, &generated);
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
            ctx.origin_request_fast = Some(call);
            return Ok(());
        }
        let mut request = lambda::event_request(&preview, &ctx.client_ip);
        request.origin = Some(lambda::event_origin(origin));
        if include_body::wanted(ctx, EventType::OriginRequest) {
            let body = include_body::read(session, ctx).await?;
            request.body = Some(lambda::event_body(&body, EventType::OriginRequest));
        }
        let config = snapshot.event_config(EventType::OriginRequest, &ctx.request_id);
        let invocation = Invocation { function: &function, event: EventType::OriginRequest, config: &config };
        match invocation.run(&request, None).await {
            Ok(HookOutput::Request(result)) => {
                ctx.origin_override = None;
                if result.origin != request.origin {
                    ctx.origin_override = Some(retarget(&result, origin).await.map_err(|e| hook_failed(ctx, e))?);
                }
                if let Some(body) = lambda::replaced_body(&result.body) {
                    ctx.forward_body = Some(body.into());
                }
                ctx.origin_request_result = Some(result);
                Ok(())
            }
            Ok(HookOutput::Response(generated)) => {
                self.stash_generated(ctx, &generated);
                Ok(())
            }
            Err(error) => Err(hook_failed(ctx, error)),
        }
    }

    /// Hands an origin-request answer to the generator, which pingora then fetches and caches.
    fn stash_generated(&self, ctx: &mut RequestContext, generated: &verge_hooks::event::HookResponse) {
        let mut response = OriginResponse::new(generated.status, generated.body.clone().unwrap_or_default());
        for (name, entries) in &generated.headers {
            for entry in entries {
                response = response.header(name, &entry.value);
            }
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
        if let Some(result) = &ctx.origin_request_result {
            let prefix = ctx.origin_override.as_ref().map_or(origin.origin_path.as_str(), |(_, path)| path.as_str());
            lambda::apply_request(req, result, prefix)?;
        }
        if let Some(call) = &ctx.origin_request_fast {
            let prefix = ctx.origin_override.as_ref().map_or(origin.origin_path.as_str(), |(_, path)| path.as_str());
            lambda::replay_request(req, call, prefix)?;
        }
        if let Some(body) = &ctx.forward_body {
            req.remove_header(&http::header::TRANSFER_ENCODING);
            req.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        ctx.forward_body_sent = false;
        if let Some(function) = snapshot.functions.get(ctx.behavior, EventType::OriginResponse) {
            if function.abi == Abi::Fast {
                ctx.sent_header = Some(req.clone());
            } else {
                let mut sent = lambda::event_request(req, &ctx.client_ip);
                sent.origin = Some(lambda::event_origin(origin));
                ctx.sent_request = Some(sent);
            }
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
        if function.abi == Abi::Fast {
            let sent = ctx
                .sent_header
                .clone()
                .unwrap_or_else(|| RequestHeader::build("GET", b"/", None).expect("static request"));
            let call = lambda::fast_call(
                &ctx.snapshot,
                &function,
                EventType::OriginResponse,
                &ctx.request_id,
                &ctx.client_ip,
                &sent,
                Some(resp),
            );
            let mut call = lambda::run_fast(&function, EventType::OriginResponse, &ctx.request_id, call)
                .await
                .map_err(|e| hook_failed(ctx, e))?;
            lambda::replay_response(resp, &mut call)?;
            if let Some(body) = call.body {
                resp.remove_header(&http::header::TRANSFER_ENCODING);
                resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
                ctx.replacement_body = Some(body.into());
            }
            return Ok(());
        }
        let request: EventRequest = ctx.sent_request.clone().unwrap_or_default();
        let response = lambda::event_response(resp);
        let config = ctx.snapshot.event_config(EventType::OriginResponse, &ctx.request_id);
        let invocation = Invocation { function: &function, event: EventType::OriginResponse, config: &config };
        match invocation.run(&request, Some(&response)).await {
            Ok(HookOutput::Response(result)) => {
                lambda::apply_response(resp, &result)?;
                if let Some(body) = result.body {
                    resp.remove_header(&http::header::TRANSFER_ENCODING);
                    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
                    ctx.replacement_body = Some(body.into());
                }
                Ok(())
            }
            Ok(HookOutput::Request(_)) => unreachable!("parse_output returns responses for response triggers"),
            Err(error) => Err(hook_failed(ctx, error)),
        }
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
        if function.abi == Abi::Fast {
            let call = lambda::fast_call(
                &ctx.snapshot,
                &function,
                EventType::ViewerResponse,
                &ctx.request_id,
                &ctx.client_ip,
                session.req_header(),
                Some(resp),
            );
            let mut call = lambda::run_fast(&function, EventType::ViewerResponse, &ctx.request_id, call)
                .await
                .map_err(|e| hook_failed(ctx, e))?;
            return lambda::replay_response(resp, &mut call);
        }
        let request = lambda::event_request(session.req_header(), &ctx.client_ip);
        let response = lambda::event_response(resp);
        let config = ctx.snapshot.event_config(EventType::ViewerResponse, &ctx.request_id);
        let invocation = Invocation { function: &function, event: EventType::ViewerResponse, config: &config };
        match invocation.run(&request, Some(&response)).await {
            Ok(HookOutput::Response(result)) => lambda::apply_response(resp, &result),
            Ok(HookOutput::Request(_)) => unreachable!("parse_output returns responses for response triggers"),
            Err(error) => Err(hook_failed(ctx, error)),
        }
    }
}

/// The peer and origin path an origin-request function asked for with `origin.custom`.
async fn retarget(
    result: &EventRequest,
    configured: &verge_config::model::Origin,
) -> std::result::Result<(HttpPeer, String), verge_hooks::HookError> {
    use verge_hooks::HookError;
    let custom =
        result.origin.as_ref().and_then(|o| o.get("custom")).ok_or_else(|| {
            HookError::validation("origin must have a `custom` object (s3 origins are not supported)")
        })?;
    let domain = custom
        .get("domainName")
        .and_then(|d| d.as_str())
        .filter(|d| !d.is_empty() && d.len() <= 253 && !d.contains(':'))
        .ok_or_else(|| HookError::validation("origin.custom.domainName must be a host name"))?;
    let port = custom.get("port").and_then(|p| p.as_u64()).unwrap_or(80);
    if !(port == 80 || port == 443 || (1024..=65535).contains(&port)) {
        return Err(HookError::validation(format!("origin.custom.port {port} is not 80, 443 or 1024-65535")));
    }
    let path = custom.get("path").and_then(|p| p.as_str()).unwrap_or("").to_string();
    if !path.is_empty() && (!path.starts_with('/') || path.ends_with('/')) {
        return Err(HookError::validation("origin.custom.path must start with / and not end with /"));
    }
    if custom.get("protocol").and_then(|p| p.as_str()).is_some_and(|p| p != "http") {
        return Err(HookError::validation("only http origins are supported"));
    }
    resolve_origin(domain, port as u16, path, configured).await
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

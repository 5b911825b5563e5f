//! verge's `ProxyHttp`: the pingora phase callbacks, each doing its CloudFront step (docs/phases.md).

use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use pingora_cache::key::HashBinary;
use pingora_cache::lock::CacheKeyLockImpl;
use pingora_cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, CachePhase, NoCacheReason, RespCacheable, VarianceBuilder,
};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use verge_config::model::{Selection, ViewerProtocolPolicy};

use crate::cache::freshness::freshness;
use crate::cache::key::primary_key;
use crate::cache::storage::ObjectStore;
use crate::cache::ttl::{self, Decision, TtlPolicy};
use crate::context::RequestContext;
use crate::error_page::{self, EdgeError};
use crate::request_id::new_request_id;
use crate::snapshot::SharedSnapshot;

/// The error type verge raises to make pingora retry against the secondary origin of a group.
const FAILOVER: ErrorType = ErrorType::Custom("verge-origin-failover");
/// Raised for an origin error without a body that has a custom error response (see
/// `upstream_response_filter`).
const CUSTOM_ERROR_PAGE: ErrorType = ErrorType::Custom("verge-custom-error-page");

/// Process-wide cache parts pingora wants as `&'static` (leaked once at start).
pub struct CacheParts {
    pub store: &'static ObjectStore,
    pub lock: &'static CacheKeyLockImpl,
}

pub struct VergeProxy {
    pub snapshot: SharedSnapshot,
    pub cache: CacheParts,
    /// verge's own first listener: custom error pages are fetched through it.
    pub self_addr: std::net::SocketAddr,
    /// Serves origin-request answers back to pingora so they are cached like origin responses.
    pub generator: crate::generated::Generator,
}

fn x_cache(session: &Session, status: u16) -> &'static str {
    if status >= 400 {
        return "Error from verge";
    }
    match session.cache.phase() {
        CachePhase::Hit => "Hit from verge",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "RefreshHit from verge",
        CachePhase::Stale | CachePhase::StaleUpdating => "RefreshHit from verge",
        _ => "Miss from verge",
    }
}

/// verge's own fetch of a custom error page (never replaced by another error page).
fn is_error_page_fetch(session: &Session) -> bool {
    session.req_header().headers.contains_key(crate::error_pages::INTERNAL_HEADER)
}

impl VergeProxy {
    /// The custom error page for `status`, fetched through verge (its behavior, its cache), as the header
    /// and body to send: its `response_code`, or the page fetch's own status when the page is missing
    /// (SPEC §10.9). `None` when no custom error response is configured for `status`.
    async fn custom_error_page(&self, ctx: &RequestContext, status: u16) -> Option<(ResponseHeader, bytes::Bytes)> {
        let (path, response_code) = ctx.snapshot.custom_error_page(status)?;
        let timeout = Duration::from_secs(ctx.snapshot.dist.origins[ctx.origin].read_timeout_secs + 5);
        let page = crate::error_pages::fetch(self.self_addr, &ctx.snapshot.dist.domain_name, path, timeout).await;
        let (code, content_type, body) = match page {
            Some(p) if p.status < 400 => (response_code, p.content_type, p.body),
            Some(p) => (p.status, p.content_type, p.body),
            None => (502, Some("text/plain".to_string()), bytes::Bytes::from_static(b"error page unavailable\n")),
        };
        let build = || {
            let mut resp = ResponseHeader::build(code, Some(6))?;
            if let Some(ct) = content_type {
                resp.insert_header("content-type", ct)?;
            }
            resp.insert_header("content-length", body.len().to_string())?;
            resp.insert_header("x-cache", "Error from verge")?;
            resp.insert_header("via", ctx.snapshot.via.as_str())?;
            resp.insert_header("x-amz-cf-id", ctx.request_id.as_str())?;
            Ok::<_, Box<Error>>(resp)
        };
        match build() {
            Ok(resp) => Some((resp, body)),
            Err(e) => {
                tracing::warn!(error = %e, status, "custom error page has an unusable header");
                None
            }
        }
    }

    /// Sends the custom error page for one of verge's own errors (502, 504, ...).
    async fn write_custom_error_page(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        status: u16,
    ) -> FailToProxy {
        let Some((resp, body)) = self.custom_error_page(ctx, status).await else {
            return FailToProxy { error_code: status, can_reuse_downstream: false };
        };
        let code = resp.status.as_u16();
        let written = async {
            let head_only = session.req_header().method == http::Method::HEAD;
            session.write_response_header(Box::new(resp), head_only).await?;
            if !head_only {
                session.write_response_body(Some(body), true).await?;
            }
            Ok::<_, Box<Error>>(())
        };
        if let Err(e) = written.await {
            tracing::debug!(error = %e, "could not send custom error page");
        }
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    /// Writes an edge error page and records it for the access log.
    async fn reject(&self, session: &mut Session, ctx: &mut RequestContext, error: EdgeError) -> Result<bool> {
        ctx.edge_error = Some(error);
        error_page::write(session, error, &ctx.snapshot.via, &ctx.request_id).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for VergeProxy {
    type CTX = RequestContext;

    fn new_ctx(&self) -> RequestContext {
        let snapshot = self.snapshot.load_full();
        RequestContext {
            snapshot,
            request_id: new_request_id(),
            started: Instant::now(),
            behavior: 0,
            origin: 0,
            on_secondary: false,
            attempts: 0,
            edge_error: None,
            custom_error_status: None,
            error_page_body: None,
            error_page_replacing: false,
            client_ip: String::new(),
            hook_error: None,
            origin_request_ran_for: None,
            origin_request: None,
            generated_token: None,
            sent_request: None,
            replacement_body: None,
            request_body: None,
            forward_body: None,
            origin_override: None,
            generated_by: None,
            forward_body_sent: false,
        }
    }

    /// Distribution checks, behavior selection, viewer protocol policy, methods, default root object.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
        let snapshot = ctx.snapshot.clone();
        if !snapshot.dist.enabled {
            return self.reject(session, ctx, EdgeError::DistributionDisabled).await;
        }
        let req = session.req_header();
        let host =
            req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri.host()).unwrap_or("");
        if !snapshot.serves_host(host) {
            return self.reject(session, ctx, EdgeError::HostNotServed).await;
        }
        ctx.behavior = snapshot.behavior_for(req.uri.path());
        let behavior = snapshot.behavior(ctx.behavior);
        match behavior.viewer_protocol_policy {
            ViewerProtocolPolicy::AllowAll => {}
            ViewerProtocolPolicy::HttpsOnly => return self.reject(session, ctx, EdgeError::HttpsRequired).await,
            ViewerProtocolPolicy::RedirectToHttps => {
                let pq = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
                let location = format!("https://{host}{pq}");
                let status = if matches!(req.method, http::Method::GET | http::Method::HEAD) { 301 } else { 307 };
                error_page::write_https_redirect(session, status, &location, &snapshot.via, &ctx.request_id).await?;
                return Ok(true);
            }
        }
        if !behavior.allowed_methods.contains(req.method.as_str()) {
            return self.reject(session, ctx, EdgeError::MethodNotAllowed).await;
        }
        if let Some(root) = &snapshot.dist.default_root_object {
            if req.uri.path() == "/" {
                let uri = match req.uri.query() {
                    Some(q) => format!("/{root}?{q}"),
                    None => format!("/{root}"),
                };
                if let Ok(uri) = uri.parse() {
                    session.req_header_mut().set_uri(uri);
                }
            }
        }
        ctx.origin = snapshot.primary_origin(behavior.target);
        self.viewer_request(session, ctx).await
    }

    /// Enables the cache for the behavior's cached methods unless the policy never caches.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<()> {
        let behavior = ctx.snapshot.behavior(ctx.behavior);
        let method = session.req_header().method.as_str();
        let cached = behavior.cached_methods.contains(method);
        if !cached || behavior.cache_policy.max_ttl == 0 {
            return Ok(());
        }
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(Duration::from_secs(ctx.snapshot.dist.origins[ctx.origin].read_timeout_secs + 5));
        // CloudFront does not collapse requests whose cookies reach the origin (SPEC §10.14).
        let forwards_cookies = behavior.cache_policy.cookies != Selection::None
            || behavior.origin_request_policy.as_ref().is_some_and(|p| p.cookies != Selection::None);
        let lock = if forwards_cookies { None } else { Some(self.cache.lock) };
        session.cache.enable(self.cache.store, None, None, lock, Some(overrides));
        let max = ctx.snapshot.dist.cache.max_object_bytes;
        session.cache.set_max_file_size_bytes(usize::try_from(max).unwrap_or(usize::MAX));
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestContext) -> Result<CacheKey> {
        let snapshot = &ctx.snapshot;
        let policy = &snapshot.behavior(ctx.behavior).cache_policy;
        Ok(CacheKey::new(primary_key(&snapshot.dist.domain_name, session.req_header(), policy), ""))
    }

    /// Honours the origin's `Vary` (each variant stored under its own secondary key).
    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut RequestContext,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        let mut variance = VarianceBuilder::new();
        let mut any = false;
        for value in meta.headers().get_all(http::header::VARY) {
            for name in value.to_str().unwrap_or("").split(',') {
                let name = name.trim().to_ascii_lowercase();
                if name.is_empty() || name == "*" {
                    continue;
                }
                let v = req.headers.get(name.as_str()).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
                variance.add_owned_name_value(name, v);
                any = true;
            }
        }
        if any {
            variance.finalize()
        } else {
            None
        }
    }

    /// origin-request runs here: once per origin tried (failover calls this again), before connecting.
    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<Box<HttpPeer>> {
        self.origin_request(session, ctx).await?;
        Ok(Box::new(self.peer(ctx)))
    }

    /// Sends a body verge already read (IncludeBody), or the one a function put in its place.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        if let Some(forward) = &ctx.forward_body {
            *body = if ctx.forward_body_sent { None } else { Some(forward.clone()) };
            ctx.forward_body_sent = true;
        }
        Ok(())
    }

    /// Replaces the origin's body with the one an origin-response function returned.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestContext,
    ) -> Result<Option<Duration>> {
        if ctx.replacement_body.is_some() {
            *body = if end_of_stream { ctx.replacement_body.take() } else { None };
        }
        Ok(None)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        ctx.ensure_client_ip(session);
        self.prepare_origin_request(req, ctx)
    }

    /// Origin-group failover on the configured status codes (before anything is cached or sent).
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        if ctx.generated_token.is_some() {
            return Ok(());
        }
        // origin-response runs for every origin answer, the primary's too when it then fails over.
        let origin_status = resp.status.as_u16();
        self.origin_response(resp, ctx).await?;
        if ctx.failover_codes().contains(&origin_status) && ctx.try_failover(&session.req_header().method) {
            ctx.replacement_body = None;
            let mut e = Error::explain(FAILOVER, format!("primary origin answered {origin_status}"));
            e.set_retry(true);
            return Err(e);
        }
        // An error with a custom error response is cached as it is (ErrorCachingMinTTL applies) and
        // replaced by its page on the way to the viewer, in `response_filter` and
        // `response_body_filter`, hits included. An error without a body gives pingora no body to
        // filter, so that one is answered here, uncached, as before.
        let status = resp.status.as_u16();
        let bodiless = resp.headers.get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0");
        if bodiless && !is_error_page_fetch(session) && ctx.snapshot.custom_error_page(status).is_some() {
            ctx.custom_error_status = Some(status);
            let mut e = Error::explain(CUSTOM_ERROR_PAGE, format!("origin answered {status}"));
            e.set_retry(false);
            return Err(e);
        }
        Ok(())
    }

    fn response_cache_filter(
        &self,
        _session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<RespCacheable> {
        let policy = &ctx.snapshot.behavior(ctx.behavior).cache_policy;
        let status = resp.status.as_u16();
        let ttl_policy = TtlPolicy {
            min_ttl: policy.min_ttl,
            default_ttl: policy.default_ttl,
            max_ttl: policy.max_ttl,
            cookies_in_key: policy.cookies != Selection::None,
            error_caching_min_ttl: ctx.snapshot.error_caching_min_ttl(status),
        };
        Ok(match ttl::decide(&freshness(resp), &ttl_policy) {
            Decision::DoNotStore(reason) => RespCacheable::Uncacheable(NoCacheReason::Custom(reason)),
            Decision::Store { fresh_secs, stale_while_revalidate, stale_if_error } => {
                let now = SystemTime::now();
                let clamp = |s: u64| u32::try_from(s).unwrap_or(u32::MAX);
                RespCacheable::Cacheable(CacheMeta::new(
                    now + Duration::from_secs(fresh_secs),
                    now,
                    clamp(stale_while_revalidate),
                    clamp(stale_if_error),
                    resp.clone(),
                ))
            }
        })
    }

    /// Serve stale: inside a stale-while-revalidate window (`None`: pingora already checked the window),
    /// or when the origin failed (5xx, unreachable, timeout) and the object is within its stale-if-error
    /// window. After an origin failure the stale object is made fresh for `error_caching_min_ttl`.
    fn should_serve_stale(&self, session: &mut Session, ctx: &mut RequestContext, error: Option<&Error>) -> bool {
        let Some(error) = error else { return true };
        let origin_failed = error.esource() == &pingora_error::ErrorSource::Upstream
            || matches!(error.etype(), ErrorType::HTTPStatus(code) if *code >= 500);
        if origin_failed {
            let status = match error.etype() {
                ErrorType::HTTPStatus(code) => *code,
                ErrorType::ReadTimedout | ErrorType::ConnectTimedout => 504,
                _ => 502,
            };
            let window = Duration::from_secs(ctx.snapshot.error_caching_min_ttl(status));
            if !window.is_zero() {
                self.cache.store.extend_freshness(session.cache.cache_key(), window);
            }
        }
        origin_failed
    }

    /// Viewer-facing headers on every response, hits included (never stored).
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        if status >= 400 && !is_error_page_fetch(session) && ctx.snapshot.custom_error_page(status).is_some() {
            if let Some((page, body)) = self.custom_error_page(ctx, status).await {
                // The page has its own X-Cache, Via and request id; viewer-response does not run for it.
                *resp = page;
                ctx.error_page_body = Some(body);
                ctx.error_page_replacing = true;
                return Ok(());
            }
        }
        self.viewer_response(session, resp, ctx).await?;
        // RFC 9111 §4.4: a successful unsafe method invalidates what is stored for its URL.
        let method = &session.req_header().method;
        let unsafe_method =
            matches!(*method, http::Method::POST | http::Method::PUT | http::Method::DELETE | http::Method::PATCH);
        if unsafe_method && status < 400 {
            self.cache.store.invalidate_url_path(session.req_header().uri.path());
        }
        let generated = ctx.generated_by.is_some() && session.cache.phase() != CachePhase::Hit;
        let x_cache = if generated { "LambdaGeneratedResponse from verge" } else { x_cache(session, status) };
        // Static names (pingora copies a HeaderName on each insert) and the prebuilt Via value: this runs
        // on every response.
        resp.insert_header("x-cache", http::HeaderValue::from_static(x_cache))?;
        resp.insert_header("via", ctx.snapshot.via_value.clone())?;
        resp.insert_header("x-amz-cf-id", ctx.request_id.as_str())?;
        Ok(())
    }

    /// Sends a custom error page's body in place of the error's own (first chunk: the page; the rest
    /// of the error's body: dropped).
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestContext,
    ) -> Result<Option<Duration>> {
        if ctx.error_page_replacing {
            *body = ctx.error_page_body.take();
        }
        Ok(None)
    }

    /// Connection attempts per origin, then failover to a group's secondary.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestContext,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.attempts += 1;
        let allowed = ctx.snapshot.dist.origins[ctx.origin].connection_attempts;
        let retry = ctx.attempts < allowed || ctx.try_failover(&session.req_header().method);
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestContext,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if e.etype() == &FAILOVER {
            e.set_retry(true);
            return e;
        }
        if e.etype() == &CUSTOM_ERROR_PAGE || e.etype() == &crate::triggers::HOOK_FAILED {
            e.set_retry(false);
            return e;
        }
        let timed_out = matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout);
        if timed_out && ctx.try_failover(&session.req_header().method) {
            e.set_retry(true);
            return e;
        }
        // Once the viewer has received part of a response, retrying would splice two bodies together.
        let response_started = session.response_written().is_some();
        if !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
            || timed_out
            || response_started
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    /// The one place proxy failures become responses: 502 for an unreachable origin, 504 for timeouts.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestContext) -> FailToProxy {
        if let Some(token) = ctx.generated_token.take() {
            self.generator.discard(token);
        }
        if let Some(error) = ctx.hook_error.clone() {
            if session.response_written().is_none() {
                let written =
                    error_page::write_function_error(session, &error, &ctx.snapshot.via, &ctx.request_id).await;
                if let Err(e) = written {
                    tracing::debug!(error = %e, "could not send the function error page");
                }
            }
            return FailToProxy { error_code: error.status(), can_reuse_downstream: false };
        }
        if let Some(status) = ctx.custom_error_status {
            return self.write_custom_error_page(session, ctx, status).await;
        }
        let error = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout => EdgeError::OriginTimeout,
            ErrorType::HTTPStatus(413) => EdgeError::BodyTooLarge,
            _ => match e.esource() {
                pingora_error::ErrorSource::Upstream => EdgeError::OriginUnreachable,
                pingora_error::ErrorSource::Downstream => {
                    return FailToProxy { error_code: 0, can_reuse_downstream: false };
                }
                _ => EdgeError::Internal,
            },
        };
        ctx.edge_error = Some(error);
        if session.response_written().is_some() {
            // The viewer already has a header (and maybe part of a body): the only honest signal left
            // is closing the connection, so the response is visibly incomplete.
            return FailToProxy { error_code: error.status(), can_reuse_downstream: false };
        }
        if !is_error_page_fetch(session) && ctx.snapshot.custom_error_page(error.status()).is_some() {
            return self.write_custom_error_page(session, ctx, error.status()).await;
        }
        if let Err(write_error) = error_page::write(session, error, &ctx.snapshot.via, &ctx.request_id).await {
            tracing::debug!(%write_error, "could not send error page");
        }
        FailToProxy { error_code: error.status(), can_reuse_downstream: false }
    }

    /// One access-log line per request.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestContext) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let result = match ctx.edge_error {
            _ if ctx.hook_error.is_some() => ctx.hook_error.as_ref().map_or("Error", |e| e.result_type()),
            _ if ctx.generated_by == Some(verge_config::model::EventType::ViewerRequest) => "LambdaGeneratedResponse",
            Some(_) => "Error",
            None if status >= 400 => "Error",
            None if session.cache.enabled() || session.cache.bypassing() => match session.cache.phase() {
                CachePhase::Hit => "Hit",
                CachePhase::Revalidated | CachePhase::Stale | CachePhase::StaleUpdating => "RefreshHit",
                _ => "Miss",
            },
            None => "Miss",
        };
        let elapsed = ctx.started.elapsed();
        crate::metrics::request(result, elapsed.as_secs_f64());
        if !crate::access_log::enabled() {
            return;
        }
        crate::access_log::write(&crate::access_log::AccessLine {
            request_id: &ctx.request_id,
            method: req.method.as_str(),
            uri: &req.uri,
            status,
            result,
            behavior: ctx.behavior,
            origin: ctx.snapshot.dist.origins.get(ctx.origin).map_or("", |o| o.id.as_str()),
            millis: elapsed.as_millis() as u64,
            error: e,
        });
    }
}

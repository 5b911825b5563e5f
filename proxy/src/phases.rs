//! verge's `ProxyHttp`: the pingora phase callbacks in the order a request meets them, each doing its
//! CloudFront step and handing the trigger points to `triggers` (docs/phases.md).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora_cache::key::HashBinary;
use pingora_cache::lock::CacheKeyLockImpl;
use pingora_cache::{CacheKey, CacheMeta, CacheOptionOverrides, CachePhase, NoCacheReason, RespCacheable};
use pingora_core::connectors::IdleConnections;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use verge_config::model::{Selection, ViewerProtocolPolicy};

use crate::cache::freshness::freshness;
use crate::cache::key::{normalised_accept_encoding, primary_key};
use crate::cache::storage::ObjectStore;
use crate::cache::stored_header;
use crate::cache::ttl::{self, Decision, TtlPolicy};
use crate::edge::compress;
use crate::edge::connection;
use crate::edge::context::{Ending, RequestContext};
use crate::edge::error_pages;
use crate::edge::outcome::{ErrorCause, LoggedResult, Outcome};
use crate::edge::request_id::new_request_id;
use crate::edge::respond::{self, EdgeError, EdgeResponse};
use crate::edge::response_policy::PolicyRequest;
use crate::edge::variance::request_variance;
use crate::fleet::shield;
use crate::fresh_hit;
use crate::observe::{access_log, metrics};
use crate::observe::{cloudfront_log, realtime_log};
use crate::pass_through;
use crate::snapshot::SharedSnapshot;
use crate::triggers;
use verge_wire::path as normalize;

/// The error type verge raises to make pingora retry against the secondary origin of a group.
const FAILOVER: ErrorType = ErrorType::Custom("verge-origin-failover");
/// Raised for an origin error without a body that has a custom error response (see
/// `upstream_response_filter`).
const CUSTOM_ERROR_PAGE: ErrorType = ErrorType::Custom("verge-custom-error-page");

/// Process-wide cache parts pingora wants as `&'static` (leaked once at start).
pub struct CacheParts {
    pub store: &'static ObjectStore,
    pub lock: &'static CacheKeyLockImpl,
    /// Objects larger than this are not stored (`server.cache.max_object_mb`).
    pub max_object_bytes: u64,
}

pub struct VergeProxy {
    pub snapshot: SharedSnapshot,
    pub cache: CacheParts,
    /// `server.viewer_idle_timeout`: the longest a kept-alive viewer connection waits for its next request.
    pub viewer_idle_timeout_secs: u64,
    /// `server.trusted_proxies`: peers whose `X-Forwarded-Proto` says the viewer's scheme.
    pub trusted_proxies: Vec<verge_config::cidr::Cidr>,
    /// The port of verge's first TLS listener: where `redirect-to-https` sends viewers.
    pub https_port: Option<u16>,
    /// The idle origin connections pingora's proxy keeps, for verge's own pass exchange
    /// (pass_through.rs); set once the proxy exists.
    pub origin_connections: Arc<OnceLock<IdleConnections>>,
}

impl VergeProxy {
    /// Whether the viewer reached verge over HTTPS: on a TLS listener, or through a trusted proxy (a TLS
    /// terminator in front of verge) that says so with `X-Forwarded-Proto: https`; from anyone else the
    /// header is not believed.
    fn viewer_used_https(&self, session: &Session) -> bool {
        if crate::edge::connection::is_tls(session) {
            return true;
        }
        let trusted = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .is_some_and(|a| self.trusted_proxies.iter().any(|c| c.contains(a.ip())));
        trusted
            && session
                .req_header()
                .headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
    }
}

impl VergeProxy {
    /// The viewer's address as verge believes it: the connection's peer (the PROXY protocol's client on
    /// such a listener); behind a trusted proxy, the rightmost `X-Forwarded-For` entry that is not itself
    /// a trusted proxy (its port is unknown: 0). `None` when the peer is not a trusted proxy.
    fn forwarded_client(&self, session: &Session) -> Option<std::net::SocketAddr> {
        if self.trusted_proxies.is_empty() {
            return None;
        }
        let peer = session.client_addr().and_then(|a| a.as_inet())?;
        let trusted = |ip: std::net::IpAddr| self.trusted_proxies.iter().any(|c| c.contains(ip));
        if !trusted(peer.ip()) {
            return None;
        }
        let xff = session.req_header().headers.get_all("x-forwarded-for");
        let mut entries: Vec<&str> = Vec::new();
        for value in xff.iter() {
            entries.extend(value.to_str().ok()?.split(',').map(str::trim));
        }
        entries
            .iter()
            .rev()
            .filter_map(|e| e.parse::<std::net::IpAddr>().ok())
            .find(|ip| !trusted(*ip))
            .map(|ip| std::net::SocketAddr::new(ip, 0))
    }
}

/// CloudFront's standard log line (`observe/cloudfront_log.rs`) and real-time record
/// (`observe/realtime_log.rs`) for this request, to whichever is on and sampled it.
fn write_log_records(
    standard: Option<&cloudfront_log::CloudFrontLog>,
    realtime: Option<&realtime_log::RealtimeLog>,
    session: &Session,
    ctx: &RequestContext,
    status: u16,
    result: LoggedResult,
    elapsed: Duration,
) {
    let req = session.req_header();
    let resp = response_sent(session, ctx);
    let passed = ctx.served_pass.as_ref().and_then(|p| p.head.as_deref());
    let header = |name: http::header::HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
    let resp_header = |name: http::header::HeaderName| match passed {
        Some(head) => crate::edge::origin_head::sent_field(head, name.as_str()),
        None => resp.and_then(|r| r.headers.get(name)).and_then(|v| v.to_str().ok()),
    };
    // The response head as sent: status line and headers (CloudFront counts them in sc-bytes).
    let head_bytes = response_head_bytes(session, ctx);
    let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
    let tls_names =
        tls.map(|t| (connection::protocol_name(&t.version), connection::cipher_name(&t.cipher).to_string()));
    let range = resp_header(http::header::CONTENT_RANGE).and_then(|r| {
        let (start, end) = r.strip_prefix("bytes ")?.split('/').next()?.split_once('-')?;
        Some((start.parse().ok()?, end.parse().ok()?))
    });
    let port = session.client_addr().and_then(|a| a.as_inet()).map_or(0, |a| a.port());
    let entry = cloudfront_log::Entry {
        finished: std::time::SystemTime::now(),
        sc_bytes: (head_bytes + session.body_bytes_sent()) as u64,
        client_ip: &ctx.client_ip,
        client_port: port,
        method: req.method.as_str(),
        distribution: &ctx.snapshot.dist.domain_name,
        uri_stem: req.uri.path(),
        query: req.uri.query(),
        status,
        referer: header(http::header::REFERER),
        user_agent: header(http::header::USER_AGENT),
        // The standard log has cookies only when asked; a real-time record has them when its fields do.
        cookie: if standard.is_none_or(|log| log.include_cookies()) { header(http::header::COOKIE) } else { None },
        result_type: result.result.as_str(),
        request_id: &ctx.request_id,
        host: header(http::header::HOST),
        https: ctx.route.viewer_https,
        cs_bytes: (header_bytes(req) + session.body_bytes_read()) as u64,
        time_taken: elapsed,
        forwarded_for: header(http::header::HeaderName::from_static("x-forwarded-for")),
        tls: tls_names.as_ref().map(|(p, c)| (p.as_str(), c.as_str())),
        response_result_type: result.response_result.as_str(),
        http_version: http_version_name(req.version),
        time_to_first_byte: ctx.response_started,
        detailed_result_type: result.detailed,
        content_type: resp_header(http::header::CONTENT_TYPE),
        content_length: resp_header(http::header::CONTENT_LENGTH),
        range,
        edge_location: standard.map_or("VRG1", |log| log.edge_location()),
        accept_encoding: header(http::header::ACCEPT_ENCODING),
        accept: header(http::header::ACCEPT),
        path_pattern: ctx.snapshot.behavior(ctx.route.behavior).path_pattern.as_ref().map_or("*", |p| p.as_str()),
        distribution_id: &ctx.snapshot.dist.id,
        origin_first_byte: ctx.origin_millis.map(Duration::from_millis),
    };
    if let Some(log) = standard {
        log.write(&entry);
    }
    if let Some(log) = realtime {
        log.write(&entry);
    }
}

/// The encoding to compress this origin response with, if CloudFront would compress it: the behavior
/// says `compress`, its cache policy caches and normalises `Accept-Encoding` (gzip and/or brotli), the
/// viewer accepts one, the request is not HTTP/1.0, no origin-response function replaced the body, and
/// the response qualifies (`edge/compress.rs`).
fn compression_for(session: &Session, ctx: &RequestContext, resp: &ResponseHeader) -> Option<compress::Encoding> {
    let behavior = ctx.snapshot.behavior(ctx.route.behavior);
    let policy = &behavior.cache_policy;
    let req = session.req_header();
    if !behavior.compress
        || !(policy.accept_encoding_gzip || policy.accept_encoding_brotli || policy.accept_encoding_zstd)
        || policy.max_ttl == 0
        || req.version == http::Version::HTTP_10
        || ctx.bodies.origin_replacement.is_some()
    {
        return None;
    }
    let encoding = compress::Encoding::for_request(normalised_accept_encoding(req, policy)?)?;
    compress::compressible(resp).then_some(encoding)
}

/// The response head as sent: status line and headers (CloudFront counts them in sc-bytes and
/// BytesDownloaded).
fn response_head_bytes(session: &Session, ctx: &RequestContext) -> usize {
    if let Some(served) = &ctx.served_hit {
        return served.head_bytes;
    }
    if let Some(passed) = &ctx.served_pass {
        return passed.head_bytes;
    }
    session
        .response_written()
        .map_or(0, |r| 17 + r.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>())
}

/// The response head sent: the stored header of a hit sent from its rendered head, else pingora's.
fn response_sent<'a>(session: &'a Session, ctx: &'a RequestContext) -> Option<&'a ResponseHeader> {
    match &ctx.served_hit {
        Some(served) => Some(served.hit.header()),
        None => session.response_written(),
    }
}

/// `HTTP/1.1`, as the log's `cs-protocol-version` writes it.
fn http_version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The outcome of a response verge passes on (from the cache or the origin).
/// CloudFront's bound on the request line and headers together.
pub(crate) const MAX_REQUEST_HEADER_BYTES: usize = 20_480;

/// The size of the request line and headers as sent (near enough: separators counted as on the wire).
fn header_bytes(req: &RequestHeader) -> usize {
    let target = req.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    let line = req.method.as_str().len() + target + 12;
    line + req.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>()
}

/// Whether the request's head can be over CloudFront's bound: an HTTP/1 head read within it cannot (its
/// fields take fewer bytes than the head did), so only a longer one, or another session's, is measured
/// field by field (~230 instructions a request saved).
fn head_may_exceed(session: &Session) -> bool {
    match session.as_ref() {
        pingora_core::protocols::http::ServerSession::H1(h1) => h1.request_head_len() > MAX_REQUEST_HEADER_BYTES,
        _ => true,
    }
}

/// Whether a request announces a body (a non-zero length, or any transfer coding).
fn has_body(req: &RequestHeader) -> bool {
    let length = req.headers.get(http::header::CONTENT_LENGTH);
    length.is_some_and(|v| v.as_bytes() != b"0") || req.headers.contains_key(http::header::TRANSFER_ENCODING)
}

/// The future a `ProxyHttp` method written out (not through `async_trait`) returns.
type PhaseFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A future ready at once with what `make` returns. Zero-sized when `make` captures nothing, so its box
/// allocates nothing (an `async {}` block is one byte: its state).
struct ReadyWith<F>(F);

impl<T, F: Fn() -> T + Unpin> std::future::Future for ReadyWith<F> {
    type Output = T;

    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        std::task::Poll::Ready((self.0)())
    }
}

/// An origin-request answer is a generated response the first time (later requests for it are hits);
/// otherwise an error status is an Error, and the cache phase says Hit, RefreshHit or Miss.
fn proxied_outcome(session: &Session, ctx: &RequestContext, status: u16) -> Outcome {
    let phase = session.cache.phase();
    if ctx.is_generated_by_origin_request() && phase != CachePhase::Hit {
        return Outcome::Generated;
    }
    if status >= 400 {
        return Outcome::Error(ErrorCause::OriginStatus);
    }
    match phase {
        CachePhase::Hit => Outcome::Hit,
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) | CachePhase::Stale | CachePhase::StaleUpdating => {
            Outcome::RefreshHit
        }
        _ => Outcome::Miss,
    }
}

/// Errors pingora raises for a request it cannot take (rather than for a viewer that went away).
fn is_malformed_request(e: &Error) -> bool {
    match e.etype() {
        ErrorType::InvalidHTTPHeader => true,
        ErrorType::Custom(name) => *name == "InvalidChunk",
        _ => false,
    }
}

/// The shield a miss goes through: an edge node's miss (not a shield's, not a request a shield already
/// failed), cacheable, for an origin with `origin_shield`, when the fleet has shields.
fn shield_for(session: &Session, ctx: &RequestContext) -> Option<std::net::SocketAddr> {
    if ctx.from_edge || ctx.route.shield_skipped || !session.cache.enabled() {
        return None;
    }
    if !ctx.snapshot.dist.origins[ctx.route.origin].origin_shield {
        return None;
    }
    let ring = shield::ring()?;
    // By the key's text, the same on every node (the stored hash is keyed per process).
    ring.owner(session.cache.cache_key().primary_key())
}

impl VergeProxy {
    /// A request from an edge node of the fleet (its hop header carries the fleet's secret): marks the
    /// context and gives the viewer (address, came over HTTPS) the edge names. The hop headers are
    /// removed from every request, believed or not: they never reach an origin or a function.
    fn shield_hop(&self, session: &mut Session, ctx: &mut RequestContext) -> Option<(std::net::IpAddr, bool)> {
        let req = session.req_header();
        let hop = req.headers.get(&shield::HOP_NAME)?;
        ctx.from_edge = shield::is_hop(Some(hop));
        let viewer = req.headers.get(&shield::VIEWER_NAME).and_then(|v| v.to_str().ok()).and_then(|v| {
            let (ip, scheme) = v.split_once(' ')?;
            Some((ip.parse().ok()?, scheme == "https"))
        });
        let req = session.req_header_mut();
        req.remove_header(&shield::HOP_NAME);
        req.remove_header(&shield::VIEWER_NAME);
        viewer.filter(|_| ctx.from_edge)
    }

    /// Sends a custom error page in place of an error verge raised (or a body-less origin error).
    async fn send_custom_error_page(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        status: u16,
    ) -> FailToProxy {
        let Some((header, body)) = error_pages::fetch(session, ctx, status).await else {
            return FailToProxy { error_code: status, can_reuse_downstream: false };
        };
        let cause = match ctx.outcome {
            Some(Outcome::Error(cause)) => cause,
            _ => ErrorCause::OriginStatus,
        };
        match respond::send(session, ctx, EdgeResponse::ErrorPage { header, body, cause }).await {
            Ok(code) => FailToProxy { error_code: code, can_reuse_downstream: false },
            Err(e) => {
                tracing::debug!(error = %e, "could not send custom error page");
                FailToProxy { error_code: status, can_reuse_downstream: false }
            }
        }
    }

    /// Refuses the request with one of verge's error pages.
    async fn reject(&self, session: &mut Session, ctx: &mut RequestContext, error: EdgeError) -> Result<bool> {
        // CloudFront's custom error responses cover its geo restriction's 403 (docs/cloudfront.md).
        if error == EdgeError::GeoBlocked && ctx.snapshot.custom_error_page(error.status()).is_some() {
            ctx.outcome = Some(error.outcome());
            self.send_custom_error_page(session, ctx, error.status()).await;
            return Ok(true);
        }
        respond::send(session, ctx, EdgeResponse::Error(error)).await?;
        Ok(true)
    }

    /// `request_filter`'s work (see there).
    async fn request_filter_inline(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
        // pingora keeps an HTTP/1.1 connection open forever by default once a request was read (or as
        // long as the viewer's `Keep-Alive: timeout` asks): bound it by the idle timeout.
        match session.get_keepalive() {
            Some(secs) if secs == 0 || secs > self.viewer_idle_timeout_secs => {
                session.set_keepalive(Some(self.viewer_idle_timeout_secs));
            }
            _ => {}
        }
        let http2 = session.req_header().version == http::Version::HTTP_2;
        if head_may_exceed(session) && header_bytes(session.req_header()) > MAX_REQUEST_HEADER_BYTES {
            return self.reject(session, ctx, EdgeError::HeadersTooLarge).await;
        }
        // HTTP/2 names the host in `:authority`; verge (the Host check, aliases, policies, events, custom
        // error page fetches) reads `Host`, as CloudFront shows functions a `host` header on HTTP/2 too.
        if http2 {
            connection::host_from_authority(session.req_header_mut());
        }
        // One path for matching, keying and forwarding.
        match normalize::normalize(session.req_header().uri.path()) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(path)) => {
                let uri = match session.req_header().uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                };
                match uri.parse() {
                    Ok(uri) => session.req_header_mut().set_uri(uri),
                    Err(_) => return self.reject(session, ctx, EdgeError::AmbiguousPath).await,
                }
            }
            Err(_) => return self.reject(session, ctx, EdgeError::AmbiguousPath).await,
        }
        let edge_viewer = self.shield_hop(session, ctx);
        let snapshot = ctx.snapshot.clone();
        if !snapshot.dist.enabled {
            return self.reject(session, ctx, EdgeError::DistributionDisabled).await;
        }
        let req = session.req_header();
        let host_field = req.headers.get(http::header::HOST);
        if req.version == http::Version::HTTP_11 && host_field.is_none() {
            return self.reject(session, ctx, EdgeError::MissingHost).await;
        }
        // An HTTP/1 head without framing fields has no body: no lookups (pingora noted them as it read).
        let may_have_body = session.framing_fields_read().is_none_or(|read| read.frames_a_body());
        if matches!(req.method, http::Method::GET | http::Method::HEAD) && may_have_body && has_body(req) {
            return self.reject(session, ctx, EdgeError::BodyOnGet).await;
        }
        let host = host_field.and_then(|h| h.to_str().ok()).or_else(|| req.uri.host()).unwrap_or("");
        if !snapshot.serves_host(host) {
            return self.reject(session, ctx, EdgeError::HostNotServed).await;
        }
        ctx.route.behavior = snapshot.behavior_for(req.uri.path());
        let behavior = snapshot.behavior(ctx.route.behavior);
        if ctx.from_edge {
            // The edge node that sent this miss did the viewer-facing part already.
            ctx.route.viewer_https = edge_viewer.is_some_and(|(_, https)| https);
            if let Some((viewer, _)) = edge_viewer {
                ctx.client_ip = viewer.to_string();
            }
            if !behavior.allowed_methods.contains(req.method.as_str()) {
                return self.reject(session, ctx, EdgeError::MethodNotAllowed).await;
            }
            ctx.route.origin = snapshot.primary_origin(behavior.target);
            return Ok(false);
        }
        if let Some(policy) = &behavior.response_headers_policy {
            ctx.response_policy = Some(PolicyRequest::new(policy, session.req_header()));
        }
        ctx.route.viewer_https = self.viewer_used_https(session);
        let forwarded_client = self.forwarded_client(session);
        // CloudFront's geo restriction, before anything else runs for the request (docs/cloudfront.md).
        // (A custom error page fetch is verge's own request: never refused.)
        let restriction = snapshot.dist.geo_restriction.as_ref().filter(|_| !error_pages::is_page_fetch(session));
        if let (Some(restriction), Some(geo)) = (restriction, &snapshot.geo) {
            let viewer = forwarded_client.or_else(|| session.client_addr().and_then(|a| a.as_inet()).copied());
            if restriction.blocks(viewer.and_then(|v| geo.country(v.ip()))) {
                return self.reject(session, ctx, EdgeError::GeoBlocked).await;
            }
        }
        if let Some(client) = forwarded_client {
            // Believed from a trusted proxy: functions, logs and CloudFront-Viewer-Address see it; the
            // origin's X-Forwarded-For still gets the connection's peer appended.
            ctx.client_ip = crate::edge::context::ip_text(client.ip());
            ctx.xff_peer =
                session.client_addr().and_then(|a| a.as_inet()).map(|a| crate::edge::context::ip_text(a.ip()));
        }
        match behavior.viewer_protocol_policy {
            ViewerProtocolPolicy::AllowAll => {}
            _ if ctx.route.viewer_https => {}
            ViewerProtocolPolicy::HttpsOnly => return self.reject(session, ctx, EdgeError::HttpsRequired).await,
            ViewerProtocolPolicy::RedirectToHttps => {
                let pq = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
                // To verge's HTTPS listener (no port when it is 443); without one (behind a TLS
                // terminator) to the standard port.
                let bare_host = host
                    .rsplit_once(':')
                    .filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(host, |(h, _)| h);
                let location = match self.https_port {
                    Some(port) if port != 443 => format!("https://{bare_host}:{port}{pq}"),
                    _ => format!("https://{bare_host}{pq}"),
                };
                let status = if matches!(req.method, http::Method::GET | http::Method::HEAD) { 301 } else { 307 };
                respond::send(session, ctx, EdgeResponse::Redirect { status, location }).await?;
                return Ok(true);
            }
        }
        // A CORS preflight the origin is not sent (OPTIONS is not an allowed method) is answered here.
        if ctx.response_policy.as_ref().is_some_and(|p| p.preflight) && !behavior.allowed_methods.contains("OPTIONS") {
            respond::send(session, ctx, EdgeResponse::Preflight).await?;
            return Ok(true);
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
        ctx.route.origin = snapshot.primary_origin(behavior.target);
        connection::strip_viewer_cloudfront_headers(session.req_header_mut());
        let answered = triggers::viewer_request(session, ctx).await?;
        if !answered {
            let https = ctx.route.viewer_https;
            let wanted = ctx.snapshot.edge_headers[ctx.route.behavior];
            connection::add_cloudfront_headers(session, wanted, https, forwarded_client, ctx.snapshot.geo.as_deref());
            if fresh_hit::serve(session, ctx, self.cache.store).await? {
                return Ok(true);
            }
            return match self.origin_connections.get() {
                // Boxed: its state (the origin's stream, the peer, the read buffer) would otherwise
                // sit in every request's future, hits' included, and be moved with it.
                Some(idle) => pingora_proxy::box_in_place(|| pass_through::serve(session, ctx, idle)).await,
                None => Ok(false),
            };
        }
        Ok(answered)
    }
}

#[async_trait]
impl ProxyHttp for VergeProxy {
    type CTX = RequestContext;

    /// verge compresses at the edge itself (`edge/compress.rs`): pingora's downstream compression
    /// module, which by default is added disabled and still runs (and allocates) on every request,
    /// is left out.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> RequestContext {
        RequestContext::new(self.snapshot.load_full(), new_request_id())
    }

    /// Custom error pages are fetched as subrequests; a page fetch never fetches another page.
    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &RequestContext) -> bool {
        session.subrequest_ctx.is_none()
    }

    /// A custom error page fetch asks for its page, not for what the viewer asked. Written out: nothing
    /// here waits, and a zero-sized future is boxed without an allocation (`async_trait` boxes its
    /// future, an allocation per request).
    fn early_request_filter<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        session: &'life1 mut Session,
        _ctx: &'life2 mut RequestContext,
    ) -> PhaseFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        if session.subrequest_ctx.is_some() {
            error_pages::rewrite_page_fetch(session);
        }
        Box::pin(ReadyWith(|| Ok(())))
    }

    /// Distribution checks, behavior selection, viewer protocol policy, methods, default root object,
    /// then viewer-request (`request_filter_inline`), its future written straight into its box
    /// (`async_trait` builds it on the stack and copies it in whole: ~3.5 KB a request).
    fn request_filter<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        session: &'life1 mut Session,
        ctx: &'life2 mut RequestContext,
    ) -> PhaseFuture<'async_trait, Result<bool>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        pingora_proxy::box_in_place(move || self.request_filter_inline(session, ctx))
    }

    /// Enables the cache for the behavior's cached methods unless the policy never caches.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<()> {
        let behavior = ctx.snapshot.behavior(ctx.route.behavior);
        let method = session.req_header().method.as_str();
        let cached = behavior.cached_methods.contains(method);
        if !cached || behavior.cache_policy.max_ttl == 0 {
            return Ok(());
        }
        let mut overrides = CacheOptionOverrides::default();
        let read_timeout = ctx.snapshot.dist.origins[ctx.route.origin].read_timeout_secs;
        overrides.wait_timeout = Some(Duration::from_secs(read_timeout + 5));
        // CloudFront does not collapse requests whose cookies reach the origin (docs/cloudfront.md).
        let forwards_cookies = behavior.cache_policy.cookies != Selection::None
            || behavior.origin_request_policy.as_ref().is_some_and(|p| p.cookies != Selection::None);
        let lock = if forwards_cookies { None } else { Some(self.cache.lock) };
        session.cache.enable(self.cache.store, None, None, lock, Some(overrides));
        let max = usize::try_from(self.cache.max_object_bytes).unwrap_or(usize::MAX);
        session.cache.set_max_file_size_bytes(max);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestContext) -> Result<CacheKey> {
        let snapshot = &ctx.snapshot;
        let policy = &snapshot.behavior(ctx.route.behavior).cache_policy;
        // Worked out already when `fresh_hit` looked for the object.
        let (primary, hash) = match ctx.cache_key.take() {
            Some(keyed) => (keyed.primary, keyed.hash),
            None => {
                let primary = primary_key(&snapshot.dist.domain_name, session.req_header(), policy);
                let hash = crate::cache::key::key_hash(&primary);
                (primary, hash)
            }
        };
        let mut key = CacheKey::new(primary, "");
        key.set_primary_bin_override(hash);
        Ok(key)
    }

    /// Honours the origin's `Vary` as CloudFront does: only for headers the request to the origin
    /// carried (a header the origin never saw cannot have shaped its answer; varying on it would only
    /// split the cache), `Accept-Encoding` as it was sent (normalised when the policy normalises it).
    /// Each variant is stored under its own secondary key.
    fn cache_vary_filter(&self, meta: &CacheMeta, ctx: &mut RequestContext, req: &RequestHeader) -> Option<HashBinary> {
        request_variance(meta.response_header(), ctx.snapshot.behavior(ctx.route.behavior), req)
    }

    /// origin-request runs here: once per origin tried (failover calls this again), before connecting.
    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<Box<HttpPeer>> {
        // A shielded origin's miss goes to the shield that owns its key; origin-request runs there.
        if let Some(shield) = shield_for(session, ctx) {
            ctx.route.shield = Some(shield);
            let origin = &ctx.snapshot.dist.origins[ctx.route.origin];
            let mut peer = HttpPeer::new(shield, false, String::new());
            peer.options.connection_timeout = Some(Duration::from_secs(2));
            peer.options.read_timeout = Some(Duration::from_secs(origin.read_timeout_secs + 5));
            return Ok(Box::new(peer));
        }
        triggers::origin_request(session, ctx).await?;
        Ok(Box::new(triggers::peer(ctx)))
    }

    /// Sends a body verge already read (IncludeBody), or the one a function put in its place.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        if let Some(forward) = &ctx.bodies.forward {
            *body = if ctx.bodies.forward_sent { None } else { Some(forward.clone()) };
            ctx.bodies.forward_sent = true;
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        ctx.ensure_client_ip(session);
        if ctx.route.shield.is_some() {
            // To the shield: the viewer's request as viewer-request left it, marked as the fleet's hop.
            let secret = shield::secret()
                .ok_or_else(|| Error::explain(pingora_error::ErrorType::InternalError, "no fleet secret"))?;
            req.insert_header(shield::HOP_HEADER, secret.as_str())?;
            let scheme = if ctx.route.viewer_https { "https" } else { "http" };
            req.insert_header(shield::VIEWER_HEADER, format!("{} {scheme}", ctx.client_ip))?;
            return Ok(());
        }
        triggers::prepare_origin_request(req, ctx)
    }

    /// origin-response, then origin-group failover on the configured status codes (before anything is
    /// cached or sent).
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        if ctx.is_generated_by_origin_request() {
            return Ok(());
        }
        // The viewer gets verge's HTTP version, not the origin's: an HTTP/1.0 origin's status line passed
        // on to an HTTP/1.1 viewer would take its keep-alive away (and it would be stored that way).
        if resp.version != http::Version::HTTP_11 {
            resp.set_version(http::Version::HTTP_11);
        }
        ctx.origin_millis = Some(ctx.started.elapsed().as_millis() as u64);
        if ctx.route.shield.is_some() {
            // origin-response ran at the shield; its X-Cache says whether it had the object.
            ctx.shield_hit = resp.headers.get("x-cache").is_some_and(|v| v.as_bytes().starts_with(b"Hit"));
            return Ok(());
        }
        // origin-response runs for every origin answer, the primary's too when it then fails over.
        let origin_status = resp.status.as_u16();
        triggers::origin_response(resp, ctx).await?;
        if ctx.failover_codes().contains(&origin_status) && ctx.try_failover(&session.req_header().method) {
            ctx.bodies.origin_replacement = None;
            let mut e = Error::explain(FAILOVER, format!("primary origin answered {origin_status}"));
            e.set_retry(true);
            return Err(e);
        }
        // An error with a custom error response is cached as it is (ErrorCachingMinTTL applies) and
        // replaced by its page on the way to the viewer, in `response_filter` and
        // `response_body_filter`, hits included. An error without a body gives pingora no body to
        // filter, so that one is answered here, uncached.
        let status = resp.status.as_u16();
        let bodiless = resp.headers.get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0");
        if bodiless && !error_pages::is_page_fetch(session) && ctx.snapshot.custom_error_page(status).is_some() {
            ctx.ending = Ending::CustomErrorPage { status };
            let mut e = Error::explain(CUSTOM_ERROR_PAGE, format!("origin answered {status}"));
            e.set_retry(false);
            return Err(e);
        }
        // Compressed before the cache stores it: hits of this key are served compressed, for free.
        ctx.compressor = None;
        if let Some(encoding) = compression_for(session, ctx, resp) {
            if let Some(compressor) = compress::Compressor::new(encoding) {
                compress::compressed_head(resp, encoding)?;
                ctx.compressor = Some(Box::new(compressor));
            }
        }
        if status == 304 && session.cache.maybe_cache_meta().is_some() {
            ctx.not_modified = Some(Box::new(resp.clone()));
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
        if ctx.bodies.origin_replacement.is_some() {
            *body = if end_of_stream { ctx.bodies.origin_replacement.take() } else { None };
        }
        if let Some(compressor) = ctx.compressor.as_mut() {
            let mut out = body.as_deref().map(|chunk| compressor.feed(chunk)).unwrap_or_default();
            if end_of_stream {
                if let Some(compressor) = ctx.compressor.take() {
                    let tail = compressor.finish();
                    out = if out.is_empty() { tail } else { [out, tail].concat().into() };
                }
            }
            *body = (!out.is_empty() || end_of_stream).then_some(out);
        }
        Ok(None)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<RespCacheable> {
        let policy = &ctx.snapshot.behavior(ctx.route.behavior).cache_policy;
        let status = resp.status.as_u16();
        let ttl_policy = TtlPolicy {
            min_ttl: policy.min_ttl,
            default_ttl: policy.default_ttl,
            max_ttl: policy.max_ttl,
            cookies_in_key: policy.cookies != Selection::None,
            error_caching_min_ttl: ctx.snapshot.error_caching_min_ttl(status),
        };
        // A revalidation's 304 updates the stored header before anything is read from it.
        let mut stored = resp.clone();
        if let (Some(not_modified), Some(meta)) = (ctx.not_modified.take(), session.cache.maybe_cache_meta()) {
            stored_header::merge_not_modified(&mut stored, &not_modified, meta.response_header());
        }
        let origin = freshness(&stored);
        Ok(match ttl::decide(&origin, &ttl_policy) {
            Decision::DoNotStore(reason) => RespCacheable::Uncacheable(NoCacheReason::Custom(reason)),
            Decision::Store { fresh_secs, stale_while_revalidate, stale_if_error } => {
                let now = SystemTime::now();
                let clamp = |s: u64| u32::try_from(s).unwrap_or(u32::MAX);
                stored_header::strip_unstorable(&mut stored);
                // Created when the origin made it: the `Age` a hit sends counts the origin's too (RFC
                // 9111 §4.2.3), and an `Age` that cannot be read counts as stale (freshness.rs).
                let created = now.checked_sub(Duration::from_secs(origin.age)).unwrap_or(now);
                RespCacheable::Cacheable(CacheMeta::new(
                    now + Duration::from_secs(fresh_secs),
                    created,
                    clamp(stale_while_revalidate),
                    clamp(stale_if_error),
                    stored,
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

    /// Viewer-facing: a custom error page in place of an error, viewer-response, and the edge headers, on
    /// every response, hits included (never stored).
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        if ctx.from_edge {
            // The edge runs viewer-response and error pages for its viewer.
            let outcome = proxied_outcome(session, ctx, status);
            ctx.outcome = Some(outcome);
            ctx.mark_response_started();
            return respond::edge_headers(resp, outcome, ctx);
        }
        if status >= 400 && !error_pages::is_page_fetch(session) && ctx.snapshot.custom_error_page(status).is_some() {
            if let Some((page, body)) = error_pages::fetch(session, ctx, status).await {
                // The page replaces the error; viewer-response does not run for it.
                *resp = page;
                ctx.ending = Ending::ReplacingBody(Some(body));
                let outcome = Outcome::Error(ErrorCause::OriginStatus);
                ctx.outcome = Some(outcome);
                return respond::edge_headers(resp, outcome, ctx);
            }
        }
        triggers::viewer_response(session, resp, ctx).await?;
        // RFC 9111 §4.4: a successful unsafe method invalidates what is stored for its URL.
        let method = &session.req_header().method;
        let unsafe_method =
            matches!(*method, http::Method::POST | http::Method::PUT | http::Method::DELETE | http::Method::PATCH);
        if unsafe_method && status < 400 {
            let req = session.req_header();
            self.cache.store.invalidate_url_path(req.uri.path());
            // And the URLs its Location and Content-Location name on the same host (RFC 9111 §4.4;
            // another host's are left alone, or a response could evict a neighbour's objects).
            let host = req.headers.get(http::header::HOST).map(|h| h.as_bytes());
            for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
                if let Some(path) =
                    resp.headers.get(name).and_then(|v| stored_header::same_host_path(v.as_bytes(), host))
                {
                    self.cache.store.invalidate_url_path(path);
                }
            }
        }
        let outcome = proxied_outcome(session, ctx, resp.status.as_u16());
        ctx.outcome = Some(outcome);
        ctx.mark_response_started();
        respond::edge_headers(resp, outcome, ctx)
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
        if let Ending::ReplacingBody(page) = &mut ctx.ending {
            *body = page.take();
        }
        Ok(None)
    }

    /// Connection attempts per origin, then failover to a group's secondary.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestContext,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(shield) = ctx.route.shield.take() {
            // A shield that cannot be reached is skipped: the request goes to the origin itself.
            tracing::warn!(target: "verge::fleet", %shield, request_id = %ctx.request_id, "shield unreachable, going to the origin: {e}");
            ctx.route.shield_skipped = true;
            e.set_retry(true);
            return e;
        }
        ctx.route.attempts += 1;
        let origin = &ctx.snapshot.dist.origins[ctx.route.origin];
        // Names the origin and the reason (refused, timed out, a TLS handshake or certificate failure).
        tracing::warn!(
            target: "verge::origin",
            origin = %origin.id,
            address = %peer._address,
            attempt = ctx.route.attempts,
            request_id = %ctx.request_id,
            "cannot connect to the origin: {e}"
        );
        let allowed = origin.connection_attempts;
        let retry = ctx.route.attempts < allowed || ctx.try_failover(&session.req_header().method);
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
        if e.etype() == &CUSTOM_ERROR_PAGE || e.etype() == &triggers::HOOK_FAILED {
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

    /// The one place proxy failures become responses: a function's error page, a custom error page, 502
    /// for an unreachable origin, 504 for timeouts.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestContext) -> FailToProxy {
        let ending = std::mem::replace(&mut ctx.ending, Ending::Proxied);
        if let Ending::FunctionFailed(error) = ending {
            ctx.outcome = Some(Outcome::FunctionFailed(error.kind));
            if session.response_written().is_none() {
                if let Err(e) = respond::send(session, ctx, EdgeResponse::FunctionError(&error)).await {
                    tracing::debug!(error = %e, "could not send the function error page");
                }
            }
            return FailToProxy { error_code: error.status(), can_reuse_downstream: false };
        }
        if let Ending::CustomErrorPage { status } = ending {
            ctx.outcome = Some(Outcome::Error(ErrorCause::OriginStatus));
            return self.send_custom_error_page(session, ctx, status).await;
        }
        let error = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout => EdgeError::OriginTimeout,
            ErrorType::HTTPStatus(413) => EdgeError::BodyTooLarge,
            _ => match e.esource() {
                pingora_error::ErrorSource::Upstream => EdgeError::OriginUnreachable,
                // A request pingora refused while reading it gets a 400 (not a silent close), when nothing
                // was sent yet.
                pingora_error::ErrorSource::Downstream if is_malformed_request(e) => EdgeError::MalformedRequest,
                pingora_error::ErrorSource::Downstream => {
                    return FailToProxy { error_code: 0, can_reuse_downstream: false };
                }
                _ => EdgeError::Internal,
            },
        };
        ctx.outcome = Some(error.outcome());
        if session.response_written().is_some() {
            // The viewer already has a header (and maybe part of a body): the only honest signal left
            // is closing the connection, so the response is visibly incomplete.
            return FailToProxy { error_code: error.status(), can_reuse_downstream: false };
        }
        if !error_pages::is_page_fetch(session) && ctx.snapshot.custom_error_page(error.status()).is_some() {
            return self.send_custom_error_page(session, ctx, error.status()).await;
        }
        // The connection is not reused after this: say so, rather than advertise keep-alive and close.
        session.set_keepalive(None);
        if let Err(write_error) = respond::send(session, ctx, EdgeResponse::Error(error)).await {
            tracing::debug!(%write_error, "could not send error page");
        }
        FailToProxy { error_code: error.status(), can_reuse_downstream: false }
    }

    /// One access-log line and the metrics, per viewer request (page fetches are part of theirs).
    /// Written out: nothing here waits (see `early_request_filter`).
    fn logging<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        session: &'life1 mut Session,
        e: Option<&'life2 Error>,
        ctx: &'life3 mut RequestContext,
    ) -> PhaseFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        log_request(session, e, ctx);
        Box::pin(ReadyWith(|| ()))
    }
}

/// `ProxyHttp::logging`'s work (see there).
fn log_request(session: &mut Session, e: Option<&Error>, ctx: &mut RequestContext) {
    if session.subrequest_ctx.is_some() {
        return;
    }
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let hung_up = e.is_some_and(|e| e.esource() == &pingora_error::ErrorSource::Downstream);
    let outcome = ctx.outcome.unwrap_or(Outcome::Error(ErrorCause::Internal));
    let mut result = LoggedResult::of(outcome, hung_up);
    if ctx.shield_hit && outcome == Outcome::Miss && !hung_up {
        // CloudFront's name for a miss the shield tier had.
        result.detailed = "OriginShieldHit";
    }
    let elapsed = ctx.started.elapsed();
    let req = session.req_header();
    metrics::request(&metrics::Counted {
        result: result.result,
        status,
        seconds: elapsed.as_secs_f64(),
        method: req.method.clone(),
        bytes_sent: (response_head_bytes(session, ctx) + session.body_bytes_sent()) as u64,
        bytes_received: session.body_bytes_read() as u64,
        origin_seconds: ctx.origin_millis.map(|ms| ms as f64 / 1000.0),
    });
    let standard = cloudfront_log::get().filter(|log| log.sampled());
    let realtime = realtime_log::get().filter(|log| log.sampled());
    if standard.is_some() || realtime.is_some() {
        ctx.ensure_client_ip(session);
        write_log_records(standard, realtime, session, ctx, status, result, elapsed);
    }
    if !access_log::enabled() {
        return;
    }
    let req = session.req_header();
    ctx.ensure_client_ip(session);
    access_log::write(&access_log::AccessLine {
        request_id: &ctx.request_id,
        client: &ctx.client_ip,
        method: req.method.as_str(),
        uri: &req.uri,
        status,
        result,
        behavior: ctx.route.behavior,
        origin: ctx.snapshot.dist.origins.get(ctx.route.origin).map_or("", |o| o.id.as_str()),
        functions: ctx.functions_ran,
        millis: elapsed.as_millis() as u64,
        error: e,
    });
}

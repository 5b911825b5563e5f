//! The admin API on its own listener, served by pingora's HTTP stack (`ServeHttp`): CloudFront-style
//! invalidations, reloads, cache statistics and the Prometheus exposition. Answers are JSON built with
//! serde_json; request bodies are bounded and never echoed back.
//!
//! `POST /invalidations` with one path per line (`/a.jpg`, `/images/*`, `/*`) answers
//! `{"paths":N,"removed":M}`; `POST /reload` reloads the distribution file; `GET /metrics` is the
//! Prometheus exposition; `GET /stats` the store's counters; `GET /healthz` answers `ok`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

use crate::cache::invalidation::InvalidationPath;
use crate::cache::storage::ObjectStore;
use crate::server::reload::Reloader;
use crate::snapshot::SharedSnapshot;

/// The largest request body the admin API reads (an invalidation batch of a few thousand paths).
const MAX_BODY: usize = 1 << 20;
/// How long a request may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AdminApp {
    pub store: &'static ObjectStore,
    pub snapshot: SharedSnapshot,
    pub reloader: Arc<Reloader>,
    /// The bearer token every route but `/healthz` needs (`None`: unauthenticated, on loopback only).
    pub token: Option<String>,
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

impl AdminApp {
    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.token else { return true };
        let header = session.req_header().headers.get(http::header::AUTHORIZATION);
        let given = header.and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")).unwrap_or(b"");
        same_secret(given, token.as_bytes())
    }
}

/// On a fleet node an invalidation is the fleet's: published for every node (this one included, through
/// its own consumer), answered with its id while InProgress (`verge invalidations list` follows it).
async fn fleet_invalidation(body: &str) -> Response<Vec<u8>> {
    let Some(link) = crate::fleet::link() else { unreachable!("checked by the caller") };
    let paths: Vec<String> = body.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    let published = async {
        let client = crate::fleet::connect(&link.url, std::time::Duration::from_secs(5)).await?;
        let buckets = crate::fleet::Buckets::open(client).await?;
        crate::fleet::invalidations::publish(&buckets, &link.distribution, &paths).await
    };
    match published.await {
        Ok(record) => json_answer(
            StatusCode::ACCEPTED,
            json!({ "id": record.id, "status": record.status(), "paths": record.paths.len(), "fleet": true }),
        ),
        Err(reason) if reason.starts_with("cannot connect") => json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": format!("{reason}: nothing was invalidated (a fleet's invalidations go to every node)") }),
        ),
        Err(reason) => json_answer(StatusCode::BAD_REQUEST, json!({ "error": reason })),
    }
}

/// Validates every path first: a batch with one bad path removes nothing.
pub(crate) fn invalidate(store: &ObjectStore, body: &str) -> Result<(usize, usize), String> {
    let paths: Vec<InvalidationPath> =
        body.lines().map(str::trim).filter(|l| !l.is_empty()).map(InvalidationPath::parse).collect::<Result<_, _>>()?;
    if paths.is_empty() {
        return Err("no paths given".to_string());
    }
    let removed = paths.iter().map(|p| store.invalidate(p)).sum();
    Ok((paths.len(), removed))
}

fn answer(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let length = http::HeaderValue::from(body.len());
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    headers.insert(http::header::CONTENT_LENGTH, length);
    response
}

fn json_answer(status: StatusCode, value: serde_json::Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec(&value).unwrap_or_default();
    body.push(b'\n');
    answer(status, "application/json", body)
}

/// The request body, up to `MAX_BODY` bytes within `BODY_TIMEOUT`.
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let declared = session.req_header().headers.get(http::header::CONTENT_LENGTH);
    if declared.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()).is_some_and(|n| n > MAX_BODY) {
        return Err(json_answer(StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": "request body too large" })));
    }
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_request_body().await.map_err(|_| "the request body could not be read")? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err("request body too large");
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.to_vec())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(reason)) => Err(json_answer(StatusCode::BAD_REQUEST, json!({ "error": reason }))),
        Err(_) => Err(json_answer(StatusCode::REQUEST_TIMEOUT, json!({ "error": "request body timed out" }))),
    }
}

impl AdminApp {
    async fn reload(&self) -> Response<Vec<u8>> {
        let reloader = self.reloader.clone();
        // Compiling functions blocks: off the async workers.
        match tokio::task::spawn_blocking(move || reloader.reload()).await {
            Ok(Ok(reloaded)) => json_answer(
                StatusCode::OK,
                json!({
                    "reloaded": true,
                    "generation": reloaded.generation,
                    "millis": reloaded.millis as u64,
                    "needs_restart": reloaded.ignored,
                }),
            ),
            Ok(Err(reason)) => json_answer(StatusCode::BAD_REQUEST, json!({ "reloaded": false, "error": reason })),
            Err(e) => {
                json_answer(StatusCode::INTERNAL_SERVER_ERROR, json!({ "reloaded": false, "error": e.to_string() }))
            }
        }
    }

    fn stats(&self) -> Response<Vec<u8>> {
        let s = self.store.stats();
        json_answer(
            StatusCode::OK,
            json!({
                "objects": s.objects,
                "bytes": s.bytes,
                "capacity_bytes": s.capacity_bytes,
                "evicted_objects": s.evicted_objects,
                "rejected_too_large": s.rejected_too_large,
            }),
        )
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let health = session.req_header().uri.path() == "/healthz";
        if !health && !self.authorized(session) {
            // Refused before the body is read; the connection is not kept for another try.
            session.set_keepalive(None);
            let mut refused =
                json_answer(StatusCode::UNAUTHORIZED, json!({ "error": "a valid bearer token is needed" }));
            refused.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            return refused;
        }
        let body = match read_body(session).await {
            Ok(body) => body,
            Err(refusal) => {
                session.set_keepalive(None);
                return refusal;
            }
        };
        let method = session.req_header().method.clone();
        match (method.as_str(), session.req_header().uri.path()) {
            ("GET", "/metrics") => answer(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                crate::observe::metrics::render(self.store, &self.snapshot.load()).into_bytes(),
            ),
            ("POST", "/reload") => self.reload().await,
            ("POST", "/invalidations") if crate::fleet::link().is_some() => {
                fleet_invalidation(&String::from_utf8_lossy(&body)).await
            }
            ("POST", "/invalidations") => match invalidate(self.store, &String::from_utf8_lossy(&body)) {
                Ok((paths, removed)) => {
                    tracing::info!(paths, removed, "invalidation");
                    json_answer(StatusCode::OK, json!({ "paths": paths, "removed": removed }))
                }
                Err(reason) => json_answer(StatusCode::BAD_REQUEST, json!({ "error": reason })),
            },
            ("GET", "/stats") => self.stats(),
            ("GET", "/healthz") => answer(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            _ => json_answer(
                StatusCode::NOT_FOUND,
                json!({ "error": "POST /invalidations, POST /reload, GET /metrics, GET /stats, GET /healthz" }),
            ),
        }
    }
}

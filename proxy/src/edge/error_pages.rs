//! Custom error responses: the page at `response_page_path` is fetched through verge itself, in process,
//! as a pingora subrequest: it goes through the behavior matching that path, its functions and its cache
//! (a hit once stored), and is sent with `response_code`. No socket, and no header a viewer could send
//! to pass for such a fetch: the subrequest carries its marker in its own context.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora_core::protocols::http::HttpTask;
use pingora_http::ResponseHeader;
use pingora_proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora_proxy::Session;

use crate::edge::context::RequestContext;

/// The largest page kept (a page is a small HTML file; anything larger is not used).
const MAX_PAGE_BYTES: usize = 1 << 20;

/// The marker of verge's own page fetch, carried in the subrequest's context.
struct PageFetch {
    path: String,
}

/// The path a page fetch asks for, when `session` is one (its request is rewritten to it).
pub fn page_fetch_path(session: &Session) -> Option<&str> {
    let user = session.subrequest_ctx.as_ref()?.user_ctx()?;
    user.downcast_ref::<PageFetch>().map(|p| p.path.as_str())
}

/// Whether `session` is verge's own page fetch (a missing page never triggers another fetch).
pub fn is_page_fetch(session: &Session) -> bool {
    page_fetch_path(session).is_some()
}

/// Turns a page fetch's copy of the viewer's request into `GET <page path>`, without the headers that
/// would make it conditional or partial.
pub fn rewrite_page_fetch(session: &mut Session) {
    let Some(path) = page_fetch_path(session).map(str::to_string) else { return };
    let req = session.req_header_mut();
    req.set_method(http::Method::GET);
    if let Ok(uri) = path.parse() {
        req.set_uri(uri);
    }
    for name in ["range", "if-range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since"] {
        req.remove_header(name);
    }
}

/// The custom error page for `status` as the head and body to send: its `response_code`, or the page
/// fetch's own status when the page could not be had. `None` when no custom error response is
/// configured for `status`, or when the page is the very thing being requested.
pub async fn fetch(session: &mut Session, ctx: &RequestContext, status: u16) -> Option<(ResponseHeader, Bytes)> {
    let (path, response_code) = ctx.snapshot.custom_error_page(status)?;
    // The request holds the cache lock of its own key: fetching that same object would wait on itself.
    if session.req_header().uri.path() == path {
        return None;
    }
    let timeout = Duration::from_secs(ctx.snapshot.dist.origins[ctx.route.origin].read_timeout_secs + 5);
    let page = tokio::time::timeout(timeout, subrequest(session, path)).await.ok().flatten();
    let (code, content_type, body) = match page {
        Some((head, body)) if head.status.as_u16() < 400 => (response_code, content_type(&head), body),
        Some((head, body)) => (head.status.as_u16(), content_type(&head), body),
        None => {
            (502, Some(http::HeaderValue::from_static("text/plain")), Bytes::from_static(b"error page unavailable\n"))
        }
    };
    let build = || {
        let mut resp = ResponseHeader::build(code, Some(6))?;
        if let Some(ct) = content_type {
            resp.insert_header(http::header::CONTENT_TYPE, ct)?;
        }
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        Ok::<_, Box<pingora_error::Error>>(resp)
    };
    match build() {
        Ok(resp) => Some((resp, body)),
        Err(e) => {
            tracing::warn!(error = %e, status, "custom error page has an unusable header");
            None
        }
    }
}

fn content_type(head: &ResponseHeader) -> Option<http::HeaderValue> {
    head.headers.get(http::header::CONTENT_TYPE).cloned()
}

/// Runs `GET path` through verge's own pipeline and collects its response.
async fn subrequest(session: &mut Session, path: &str) -> Option<(ResponseHeader, Bytes)> {
    session.subrequest_spawner.as_ref()?;
    let marker = SubrequestCtx::builder()
        .body_mode(BodyMode::NoBody)
        .user_ctx(Box::new(PageFetch { path: path.to_string() }))
        .build();
    // pingora hands the subrequest the viewer's request as HTTP/1 text, which it parses again: an HTTP/2
    // request would come out as `HTTP/2.0`, which the HTTP/1 parser refuses. The copy is made as HTTP/1.1
    // (the page fetch is verge's own, whatever protocol the viewer spoke).
    let version = session.req_header().version;
    session.req_header_mut().set_version(http::Version::HTTP_11);
    let created = session.subrequest_spawner.as_ref().map(|s| s.create_subrequest(session.as_downstream(), marker));
    session.req_header_mut().set_version(version);
    let (prepared, handle) = created?;
    // The sender stays alive until the page is read: dropping it ends the subrequest early.
    let (_input, mut output) = (handle.tx, handle.rx);
    let running = tokio::spawn(prepared.run());
    let mut head = None;
    let mut body = BytesMut::new();
    while let Some(task) = output.recv().await {
        match task {
            HttpTask::Header(h, end) => {
                head = Some(*h);
                if end {
                    break;
                }
            }
            HttpTask::Body(chunk, end) => {
                if let Some(chunk) = chunk {
                    if body.len() + chunk.len() > MAX_PAGE_BYTES {
                        running.abort();
                        return None;
                    }
                    body.extend_from_slice(&chunk);
                }
                if end {
                    break;
                }
            }
            HttpTask::Failed(_) => return None,
            HttpTask::Done | HttpTask::Trailer(_) => break,
            HttpTask::UpgradedBody(..) => {}
        }
    }
    drop(output);
    let _ = running.await;
    head.map(|h| (h, body.freeze()))
}

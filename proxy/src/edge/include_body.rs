//! IncludeBody: the viewer's body, read once for a request trigger and handed back to pingora for the
//! origin.
//!
//! pingora sends a request body it has already read only from its retry buffer, which holds 64 KiB:
//! when that buffer is empty or overflowed, the origin gets the headers and then waits for a body that
//! never comes. So verge turns retry buffering on only for the last 64 KiB of a body of known length;
//! pingora then "replays" that tail through `request_body_filter`, where verge sends the whole body
//! (or the function's replacement) instead. A chunked body of unknown length can only be buffered
//! whole if it fits the retry buffer; a larger one is refused with 413 rather than left hanging.

use bytes::{Bytes, BytesMut};
use pingora_error::{Error, ErrorType, Result};
use pingora_proxy::Session;
use verge_config::model::EventType;

use crate::edge::context::RequestContext;

/// The most request body verge buffers for IncludeBody (the function sees at most 40 KB / 1 MB of it).
const MAX_BUFFERED_BODY: usize = 16 << 20;
/// pingora's retry buffer (`BODY_BUF_LIMIT`, not exported).
const RETRY_BUFFER: usize = 64 << 10;

/// Whether the behavior's association for `event` asks for the body.
pub fn wanted(ctx: &RequestContext, event: EventType) -> bool {
    ctx.snapshot.behavior(ctx.route.behavior).functions[event.index()].as_ref().is_some_and(|a| a.include_body)
}

/// Reads the whole viewer body once; it is then sent to the origin from memory (`ctx.forward_body`).
pub async fn read(session: &mut Session, ctx: &mut RequestContext) -> Result<Bytes> {
    if let Some(body) = &ctx.bodies.request {
        return Ok(body.clone());
    }
    let too_large = |what: &'static str| Error::e_explain(ErrorType::HTTPStatus(413), what);
    let declared = session.req_header().headers.get(http::header::CONTENT_LENGTH);
    let length = declared.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if length.is_some_and(|n| n > MAX_BUFFERED_BODY) {
        return too_large("request body too large for IncludeBody");
    }
    let mut buffer = BytesMut::with_capacity(length.unwrap_or(0));
    let mut buffering = false;
    loop {
        let remaining = length.map_or(0, |n| n.saturating_sub(buffer.len()));
        if !buffering && remaining <= RETRY_BUFFER {
            session.as_mut().enable_retry_buffering();
            buffering = true;
        }
        let Some(chunk) = session.read_request_body().await? else { break };
        if buffer.len() + chunk.len() > MAX_BUFFERED_BODY {
            return too_large("request body too large for IncludeBody");
        }
        buffer.extend_from_slice(&chunk);
    }
    if !buffer.is_empty() && session.as_ref().get_retry_buffer().is_none() {
        return too_large("a chunked request body over 64 KiB cannot be buffered for IncludeBody");
    }
    let body = buffer.freeze();
    ctx.bodies.request = Some(body.clone());
    ctx.bodies.forward = Some(body.clone());
    Ok(body)
}

//! Pass misses exchanged with the origin by verge itself: a request its behavior never caches, sent
//! over a kept-alive origin connection as bytes rendered from the viewer's request
//! (`forward::render_origin_request`), the origin's response head read in place (`origin_head.rs`) and
//! passed on as bytes with the edge's fields appended, its body relayed as it comes. No header map is
//! built for either message and none of pingora's proxy machinery runs (the upstream task pair, the
//! request and response copies, the phase callbacks), which is most of what a miss cost
//! (docs/performance.md, "Pass misses without pingora's proxy").
//!
//! Taken only where pingora's path would send the same request and response and nothing can go wrong
//! that only it knows how to handle: an HTTP/1.x GET or HEAD with no body, upgrade, `Expect`, or
//! `Connection` options but `keep-alive` and `close`, in origin form, under a behavior that caches nothing and
//! runs no origin-request, origin-response or viewer-response function and no response headers
//! policy, to a single origin (not a group, whose failover pingora runs), with no custom error page
//! that an origin status could call for, and only when a kept-alive connection to the origin is idle
//! in the pool it shares with pingora (`IdleConnections`) for the address the origin's peer was built
//! with: a new connection, with its attempts, timeouts and failover, or another address of the origin's
//! name, is pingora's to make. A pooled connection that turns out closed before any
//! byte of the answer sends the request back to pingora's path (as pingora retries a reused
//! connection); errors after that end the request as pingora's would, through `fail_to_proxy`.

use std::pin::Pin;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use http::header;
use pingora_core::connectors::IdleConnections;
use pingora_core::protocols::http::v1::body::BodyReader;
use pingora_core::protocols::http::v1::server::{RenderedBody, RENDERED_INLINE_BODY};
use pingora_core::protocols::Stream;
use pingora_core::upstreams::peer::Peer;
use pingora_error::{Error, ErrorType, OrErr, Result};
use pingora_proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Sleep;
use verge_config::model::{Distribution, EventType, Target};

use crate::edge::context::{RequestContext, ServedPass};
use crate::edge::forward;
use crate::edge::origin_head::{self, Framing, HeadParse, OriginHead};
use crate::edge::outcome::{ErrorCause, Outcome};
use crate::snapshot::functions::LoadedFunctions;
use crate::wait_timer::{self, within};

/// What the first read of an origin's answer reserves (a head and a small body fit).
const READ_BUFFER: usize = 4096;
/// How long the origin's head is awaited before the viewer is watched for a hang-up too. Most origins
/// answer sooner, and watching costs a poll of the viewer's socket on every wake-up; a viewer that
/// leaves is noticed this much later at most.
const WATCH_VIEWER_AFTER: Duration = Duration::from_millis(20);

/// Per behavior of `dist`: whether its requests can qualify at all (the conditions that do not depend
/// on the request), worked out once per snapshot.
pub fn behaviors_eligible(dist: &Distribution, functions: &LoadedFunctions) -> Vec<bool> {
    let error_pages = dist.custom_error_responses.iter().any(|e| e.response_page_path.is_some());
    dist.behaviors
        .iter()
        .enumerate()
        .map(|(i, behavior)| {
            behavior.cache_policy.max_ttl == 0
                && !matches!(behavior.target, Target::Group(_))
                && behavior.response_headers_policy.is_none()
                && !error_pages
                && [EventType::OriginRequest, EventType::OriginResponse, EventType::ViewerResponse]
                    .iter()
                    .all(|event| functions.get(i, *event).is_none())
        })
        .collect()
}

/// Whether the request qualifies (see the module's conditions), before anything is sent.
fn eligible(session: &Session, ctx: &RequestContext) -> bool {
    let req = session.req_header();
    if !ctx.snapshot.pass_exchange[ctx.route.behavior]
        || !matches!(req.version, http::Version::HTTP_11 | http::Version::HTTP_10)
        || !matches!(req.method, http::Method::GET | http::Method::HEAD)
        || session.subrequest_ctx.is_some()
        || ctx.from_edge
        || ctx.route.origin_override.is_some()
        || ctx.bodies.forward.is_some()
        || !req.raw_path().starts_with(b"/")
    {
        return false;
    }
    // One pass over the names for those that take pingora's path: a body's framing, an upgrade, an
    // expectation, `Connection` options (pingora removes the fields they nominate), a `Host` that
    // pingora's authority check would refuse.
    // Names compared as `HeaderName`s: a standard one is a tag, so most fields cost a few compares.
    req.headers.iter().all(|(name, value)| {
        if name == header::HOST {
            value.as_bytes().iter().all(|b| is_authority_byte(*b))
        } else if name == header::CONNECTION {
            value.as_bytes().split(|b| *b == b',').all(|t| {
                let t = t.trim_ascii();
                t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close")
            })
        } else {
            !(name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
                || name == header::UPGRADE
                || name == header::EXPECT
                || refused_extension_field(name.as_str()))
        }
    })
}

/// `HTTP2-Settings` (an h2c upgrade), or `close` (a field `Connection: close` would nominate).
fn refused_extension_field(name: &str) -> bool {
    matches!(name.len(), 5 | 14) && (name == "close" || name == "http2-settings")
}

/// Bytes a `Host` value may carry (RFC 3986 authority: reg-name, IP literal, port).
fn is_authority_byte(b: u8) -> bool {
    AUTHORITY_BYTES[usize::from(b)]
}

/// `is_authority_byte` as a table: one load a byte (a search of the punctuation was ~20 instructions
/// for each `.` and `:` of a host).
const AUTHORITY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric();
        b += 1;
    }
    let punctuation = b"-._~%!$&'()*+,;=:[]";
    let mut i = 0;
    while i < punctuation.len() {
        table[punctuation[i] as usize] = true;
        i += 1;
    }
    table
};

/// Passes the request to the origin and its answer to the viewer when it qualifies; `Ok(true)` when
/// the response was sent, `Ok(false)` to let pingora proxy it (nothing was sent to the viewer).
pub async fn serve(session: &mut Session, ctx: &mut RequestContext, idle: &IdleConnections) -> Result<bool> {
    if !eligible(session, ctx) {
        return Ok(false);
    }
    let snapshot = ctx.snapshot.clone();
    let Some((peer, key)) =
        snapshot.peers[ctx.route.origin].template_for(ctx.route.viewer_https, ctx.route.attempts as usize)
    else {
        return Ok(false);
    };
    let Some(mut stream) = idle.take_keyed(key, peer) else {
        return Ok(false);
    };
    ctx.ensure_client_ip(session);
    let origin = &snapshot.dist.origins[ctx.route.origin];
    let behavior = snapshot.behavior(ctx.route.behavior);
    let tls = crate::snapshot::origin_tls(origin, ctx.route.viewer_https);
    let mut request = BytesMut::with_capacity(1024);
    forward::render_origin_request(
        session.req_header(),
        behavior,
        forward::OriginTarget { origin, path: &origin.origin_path, host: snapshot.peers[ctx.route.origin].host(tls) },
        Some(ctx.xff_peer.as_deref().unwrap_or(&ctx.client_ip)),
        &snapshot.via_value,
        &ctx.request_id,
        &mut request,
    );
    let options = peer.get_peer_options();
    let read_timeout = options.and_then(|o| o.read_timeout);
    let write_timeout = options.and_then(|o| o.write_timeout);
    // The connection's own timer for the exchange's waits, put back with it (`wait_timer.rs`).
    let mut timer = wait_timer::kept_timer(&mut stream).and_then(Option::take).unwrap_or_else(wait_timer::new_timer);
    if send_request(&mut stream, timer.as_mut(), &request, write_timeout).await.is_err() {
        // The pooled connection was closed under us: pingora's path tries again, as it retries a
        // reused connection.
        return Ok(false);
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    let mut answer = BytesMut::with_capacity(READ_BUFFER);
    // Room in the viewer's head for the edge's fields.
    let room = 160 + snapshot.via_value.len();
    let head = match read_head(session, &mut stream, timer.as_mut(), &mut answer, head_only, room, read_timeout).await {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(false),
        Err(e) => {
            crate::observe::metrics::pass_exchange();
            return Err(e);
        }
    };
    ctx.origin_millis = Some(ctx.started.elapsed().as_millis() as u64);
    crate::observe::metrics::pass_exchange();
    let idle_timeout = options.and_then(|o| o.idle_timeout);
    let reusable = relay(session, ctx, &mut stream, timer.as_mut(), answer, head, read_timeout).await?;
    if reusable {
        if let Some(kept) = wait_timer::kept_timer(&mut stream) {
            *kept = Some(timer);
        }
        idle.keep(stream, key, idle_timeout);
    }
    Ok(true)
}

/// Writes the rendered request (one write; the stream flushes what it buffered).
async fn send_request(
    stream: &mut Stream,
    timer: Pin<&mut Sleep>,
    request: &[u8],
    write_timeout: Option<Duration>,
) -> Result<()> {
    let write = async {
        stream.write_all(request).await?;
        stream.flush().await
    };
    match write_timeout {
        Some(t) => within(timer, t, write)
            .await
            .ok_or_else(|| Error::explain(ErrorType::WriteTimedout, "writing origin request"))?,
        None => write.await,
    }
    .or_err(ErrorType::WriteError, "writing origin request")
}

/// Reads the origin's final response head into `buf` (skipping informational ones), watching the viewer
/// meanwhile. `Ok(None)`: the connection ended before any byte of an answer (a pooled connection the
/// origin had closed), so pingora's path can try again.
async fn read_head(
    session: &mut Session,
    stream: &mut Stream,
    mut timer: Pin<&mut Sleep>,
    buf: &mut BytesMut,
    head_only: bool,
    room: usize,
    read_timeout: Option<Duration>,
) -> Result<Option<OriginHead>> {
    let mut answered = false;
    let mut watch = Watch::Later;
    // The read timeout runs per read, as pingora's: what is left of it for this one.
    let mut timeout = read_timeout;
    loop {
        if !buf.is_empty() {
            answered = true;
            match origin_head::parse(buf, head_only, room)? {
                HeadParse::Final(head) => return Ok(Some(head)),
                HeadParse::Informational(length) => {
                    // 100 Continue, 103 Early Hints: not passed on (pingora's path passes 103).
                    let _ = buf.split_to(length);
                    continue;
                }
                HeadParse::Partial => {}
            }
        }
        if buf.len() > origin_head::MAX_HEAD {
            return Err(Error::explain(ErrorType::InvalidHTTPHeader, "origin response head too large").into_up());
        }
        buf.reserve(READ_BUFFER);
        let read = match watch {
            Watch::Later => {
                let quiet = timeout.map_or(WATCH_VIEWER_AFTER, |t| t.min(WATCH_VIEWER_AFTER));
                match within(timer.as_mut(), quiet, stream.read_buf(buf)).await {
                    Some(read) => read,
                    None => {
                        // The origin takes its time: from now on the viewer is watched too.
                        timeout = timeout.map(|t| t.saturating_sub(quiet));
                        if timeout == Some(Duration::ZERO) {
                            return Err(head_timed_out());
                        }
                        watch = Watch::On;
                        continue;
                    }
                }
            }
            Watch::On => tokio::select! {
                read = read_within(stream, timer.as_mut(), buf, timeout) => read?,
                viewer = session.as_mut().read_body_or_idle(true) => {
                    // Ok: bytes of a pipelined request, kept for the next one; the viewer has nothing
                    // more to say about this one. An error: the viewer hung up.
                    viewer.map_err(|e| e.into_down())?;
                    watch = Watch::Done;
                    continue;
                }
            },
            Watch::Done => read_within(stream, timer.as_mut(), buf, timeout).await?,
        };
        timeout = read_timeout;
        match read {
            Ok(0) | Err(_) if !answered && buf.is_empty() => return Ok(None),
            Ok(0) => {
                let e = Error::explain(ErrorType::ConnectionClosed, "while reading response headers");
                return Err(e.into_up());
            }
            Ok(_) => {}
            Err(e) => return Err(Error::because(ErrorType::ReadError, "while reading response headers", e).into_up()),
        }
    }
}

/// Whether the viewer is watched for a hang-up while the origin's head is awaited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Not yet: only once the origin has taken `WATCH_VIEWER_AFTER`.
    Later,
    On,
    /// No more: the viewer sent its next request's bytes (kept for it).
    Done,
}

/// One read into `buf` within `timeout` (a timeout is an error; the read's own result is inside).
async fn read_within(
    stream: &mut Stream,
    timer: Pin<&mut Sleep>,
    buf: &mut BytesMut,
    timeout: Option<Duration>,
) -> Result<std::io::Result<usize>> {
    match timeout {
        Some(t) => within(timer, t, stream.read_buf(buf)).await.ok_or_else(head_timed_out),
        None => Ok(stream.read_buf(buf).await),
    }
}

fn head_timed_out() -> Box<Error> {
    Error::explain(ErrorType::ReadTimedout, "while reading response headers").into_up()
}

/// Sends the viewer the head (and the body, read as it comes); returns whether the origin connection
/// can be kept (its body read to the end, nothing more sent, the origin keeping it alive).
async fn relay(
    session: &mut Session,
    ctx: &mut RequestContext,
    stream: &mut Stream,
    mut timer: Pin<&mut Sleep>,
    mut answer: BytesMut,
    mut head: OriginHead,
    read_timeout: Option<Duration>,
) -> Result<bool> {
    let status = head.status;
    let outcome = if status.as_u16() >= 400 { Outcome::Error(ErrorCause::OriginStatus) } else { Outcome::Miss };
    let mut rendered = head.take_rendered();
    rendered.put_slice(b"X-Cache: ");
    rendered.put_slice(outcome.result_type().x_cache().as_bytes());
    rendered.put_slice(b"\r\nVia: ");
    rendered.put_slice(ctx.snapshot.via_value.as_bytes());
    rendered.put_slice(b"\r\nX-Amz-Cf-Id: ");
    rendered.put_slice(ctx.request_id.as_bytes());
    rendered.put_slice(b"\r\n");
    let add_date = !head.has_date;
    ctx.outcome = Some(outcome);

    // A small body known by its length is read whole first: head and body go out in one write.
    if let Framing::Length(length) = head.framing {
        if length <= RENDERED_INLINE_BODY {
            let end = head.length + length;
            while answer.len() < end {
                answer.reserve(end - answer.len());
                match read_more(stream, timer.as_mut(), &mut answer, read_timeout).await? {
                    0 => return Err(premature_end(length, answer.len() - head.length)),
                    _ => continue,
                }
            }
            ctx.mark_response_started();
            let head_bytes = session
                .as_mut()
                .write_rendered_response(status, rendered, &answer[head.length..end], add_date)
                .await
                .map_err(|e| e.into_down())?;
            let overread = answer.len() > end;
            ctx.served_pass = Some(ServedPass { head: logged_head(&mut answer, head.length), head_bytes });
            return Ok(head.keepalive && !overread);
        }
    }
    let (mut reader, body) = body_reader(&head, &answer[head.length..]);
    ctx.mark_response_started();
    let head_bytes =
        session.as_mut().write_rendered_head(status, rendered, add_date, body).await.map_err(|e| e.into_down())?;
    ctx.served_pass = Some(ServedPass { head: logged_head(&mut answer, head.length), head_bytes });
    drop(answer);
    loop {
        let read = match read_timeout {
            Some(t) => match within(timer.as_mut(), t, reader.read_body(stream)).await {
                Some(read) => read,
                None => Err(Error::explain(ErrorType::ReadTimedout, "while reading response body")),
            },
            None => reader.read_body(stream).await,
        };
        match read.map_err(|e| e.into_up())? {
            Some(part) => {
                let data = reader.get_body(&part);
                session.as_mut().write_body_slice(data).await.map_err(|e| e.into_down())?;
            }
            None => break,
        }
    }
    session.as_mut().finish_body().await.map_err(|e| e.into_down())?;
    Ok(head.keepalive && head.framing != Framing::UntilClose && reader.body_done() && !reader.has_bytes_overread())
}

/// The origin's head, split off the read buffer, for a log that may read its fields; none when no such
/// log is on (the split makes the buffer shared: an allocation per request for nothing).
fn logged_head(answer: &mut BytesMut, length: usize) -> Option<bytes::Bytes> {
    crate::observe::first_byte_logged().then(|| answer.split_to(length).freeze())
}

/// The origin body's reader, given what was read past the head, and the viewer's framing.
fn body_reader(head: &OriginHead, preread: &[u8]) -> (BodyReader, RenderedBody) {
    let mut reader = BodyReader::new(true);
    let body = match head.framing {
        Framing::None => {
            reader.init_content_length(0, preread);
            RenderedBody::Length(0)
        }
        Framing::Length(length) => {
            reader.init_content_length(length, preread);
            RenderedBody::Length(length)
        }
        Framing::Chunked => {
            reader.init_chunked(preread);
            RenderedBody::Chunked
        }
        Framing::UntilClose => {
            reader.init_close_delimited(preread);
            RenderedBody::UntilClose
        }
    };
    (reader, body)
}

/// One more read from the origin into `buf`, within the read timeout.
async fn read_more(
    stream: &mut Stream,
    timer: Pin<&mut Sleep>,
    buf: &mut BytesMut,
    read_timeout: Option<Duration>,
) -> Result<usize> {
    let read = match read_timeout {
        Some(t) => within(timer, t, stream.read_buf(buf))
            .await
            .ok_or_else(|| Error::explain(ErrorType::ReadTimedout, "while reading response body").into_up())?,
        None => stream.read_buf(buf).await,
    };
    read.map_err(|e| Error::because(ErrorType::ReadError, "while reading response body", e).into_up())
}

/// The origin closed before the body its `Content-Length` announced.
fn premature_end(expected: usize, got: usize) -> Box<Error> {
    Error::explain(
        pingora_core::protocols::http::v1::body::PREMATURE_BODY_END,
        format!("Content-Length: {expected}, the origin closed after {got} bytes"),
    )
    .into_up()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_table_holds_exactly_the_authority_bytes() {
        for b in 0..=u8::MAX {
            let expected = b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b);
            assert_eq!(is_authority_byte(b), expected, "byte {b:#04x}");
        }
    }
}

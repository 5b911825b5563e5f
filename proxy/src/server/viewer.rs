//! One viewer connection, from accept to close: the connection limit, the PROXY protocol header, the
//! TLS handshake, then HTTP/2 (ALPN `h2`, or h2c with prior knowledge) through pingora's HTTP/2 server,
//! or HTTP/1 through verge's own loop (idle timeout, pipelining).

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, ServerApp};
use pingora_core::protocols::http::v1::server::HttpSession as Http1Session;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::{ParkedTcp, Stream as L4Stream};
use pingora_core::protocols::tls::TlsStream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Ssl, Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use verge_config::model::{HttpVersion, Listener};
use verge_wire::proxy_protocol;

use super::parking::{ConnectionSlot, Idle, Lot, Resume, PARK_AFTER};
use super::tls::ViewerTls;
use crate::phases::VergeProxy;
use crate::snapshot::SharedSnapshot;

/// HTTP/2's connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The answer to a connection over `server.max_connections`: plain, immediate, and closed.
const TOO_MANY_CONNECTIONS: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n";

/// What every listener's connections share.
pub(super) struct Connections {
    pub proxy: Arc<HttpProxy<VergeProxy>>,
    pub snapshot: SharedSnapshot,
    pub in_flight: Arc<AtomicUsize>,
    pub idle_timeout_secs: u64,
    /// `server.viewer_header_timeout`: a request head's first byte to its last.
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub tls: Option<Arc<ViewerTls>>,
    /// `server.h2c`: plain listeners look for HTTP/2's preface.
    pub h2c: bool,
}

/// The app of one listener.
pub(super) struct ViewerApp {
    pub shared: Arc<Connections>,
    pub listener: Listener,
    /// Where its idle connections wait once quiet for `PARK_AFTER` (started with the first).
    pub lot: OnceLock<Lot>,
}

#[async_trait]
impl ServerApp for ViewerApp {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let shared = &self.shared;
        let Some(slot) = ConnectionSlot::take(&shared.in_flight, shared.max_connections) else {
            crate::observe::metrics::connection_refused();
            // Boxed: its read buffer would otherwise size every connection's future (4 KB).
            Box::pin(refuse(stream)).await;
            return None;
        };
        // Boxed: the TLS handshake's state (7 KB) is freed once it is done, instead of sizing this
        // connection's future for its whole life.
        if let Some((stream, http2)) = Box::pin(self.open(stream)).await {
            if http2 {
                // pingora's HTTP/2 server: one spawned task per stream, each through the same proxy phases.
                ServerApp::process_new(&shared.proxy, stream, shutdown).await;
            } else {
                let connection = Http1Connection { stream, persistent: None, first: true, arrived: false, slot };
                self.serve_http1(connection, shutdown).await;
            }
        }
        None
    }
}

/// Where an HTTP/1 connection's loop starts: a new connection, or a parked one whose viewer sent its
/// next request.
struct Http1Connection {
    stream: Stream,
    persistent: Option<HttpPersistentSettings>,
    /// No request served yet.
    first: bool,
    /// The next request's bytes are known to have arrived (a resumed connection).
    arrived: bool,
    slot: ConnectionSlot,
}

impl Resume for ViewerApp {
    fn resume(self: &Arc<Self>, idle: Idle, shutdown: &ShutdownWatch) {
        let (app, shutdown) = (self.clone(), shutdown.clone());
        tokio::spawn(async move {
            // The write buffer a resumed connection's response goes out through (unparked, it has none).
            let stream = with_write_buffer(Box::new(L4Stream::unpark(idle.tcp)), WRITE_BUFFER);
            let connection = Http1Connection {
                stream,
                persistent: idle.persistent,
                first: idle.first,
                arrived: true,
                slot: idle.slot,
            };
            app.serve_http1(connection, &shutdown).await;
        });
    }
}

impl ViewerApp {
    /// The PROXY header and the TLS handshake, each within the idle timeout, and whether the connection
    /// speaks HTTP/2; `None` closes the connection.
    async fn open(&self, stream: Stream) -> Option<(Stream, bool)> {
        let listener = self.listener;
        let h2c = !listener.tls && self.shared.h2c && self.http2_allowed();
        if !listener.tls && !listener.proxy_protocol && !h2c {
            return Some((stream, false));
        }
        // pingora's listener hands over its own TCP stream type: the one with `rewind` and a settable
        // socket digest.
        let mut l4: Box<L4Stream> = stream.into_any().downcast().ok()?;
        let deadline = Duration::from_secs(self.shared.idle_timeout_secs.max(1));
        if listener.proxy_protocol {
            match tokio::time::timeout(deadline, read_proxy_header(&mut l4)).await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    tracing::debug!(target: "verge::connection", listener = %listener.addr, "closed: {reason}");
                    crate::observe::metrics::connection_failed("proxy_protocol");
                    return None;
                }
                Err(_) => {
                    crate::observe::metrics::connection_failed("proxy_protocol");
                    return None;
                }
            }
        }
        if !listener.tls {
            // pingora's HTTP/2 server looks for the preface again itself (`h2c` is on in its options).
            // A viewer that sends nothing is closed after the idle timeout, as on the HTTP/1 path.
            let http2 = h2c && tokio::time::timeout(deadline, starts_with_h2_preface(&mut l4)).await.ok()??;
            return Some((l4, http2));
        }
        let acceptor = self.shared.tls.as_ref()?.acceptor();
        match tokio::time::timeout(deadline, acceptor.tls_handshake(*l4)).await {
            Ok(Ok(tls)) => {
                let http2 = matches!(tls.selected_alpn_proto(), Some(ALPN::H2));
                Some((Box::new(tls), http2))
            }
            Ok(Err(e)) => {
                tracing::debug!(target: "verge::connection", listener = %listener.addr, "TLS handshake failed: {e}");
                crate::observe::metrics::connection_failed("tls");
                None
            }
            Err(_) => {
                crate::observe::metrics::connection_failed("tls");
                None
            }
        }
    }

    /// An HTTP/1 session with the request-head bounds: CloudFront's 20,480 bytes (pingora's own bound is
    /// 1 MiB, read before verge sees the request: 2,000 viewers parked on unfinished heads held 2.5 GB)
    /// and `server.viewer_header_timeout` from the head's first byte (the per-read timeout alone let a
    /// byte a second keep a connection forever). Over the size: 431; out of time: 408; both close.
    /// Request header names are read without their case (origins get them in lower case).
    /// Made in its box: the session (~1 KB) is not moved again on its way into the request's future.
    fn http1_session(&self, stream: Stream) -> Box<ServerSession> {
        let mut boxed = Box::new(ServerSession::H1(Http1Session::new(stream)));
        if let ServerSession::H1(session) = &mut *boxed {
            session.set_request_head_limits(crate::phases::MAX_REQUEST_HEADER_BYTES, Some(self.shared.header_timeout));
            // One map per request, as HTTP/2 requests have: the case map doubled every header's insert
            // and drop on every request, for a case HTTP says nothing about (docs/performance.md).
            session.set_keep_request_header_case(false);
        }
        boxed
    }

    /// The session for a connection's next request: the settings the previous one left, or the first
    /// request's.
    fn next_session(
        &self,
        stream: Stream,
        persistent: Option<HttpPersistentSettings>,
        first: bool,
        shutting_down: bool,
    ) -> Box<ServerSession> {
        let mut session = self.http1_session(stream);
        match persistent {
            Some(persistent) => persistent.apply_to_session(&mut session),
            None if first => {
                // A service shutting down does not keep connections for another request.
                let keepalive = if shutting_down { None } else { Some(self.shared.idle_timeout_secs) };
                session.set_keepalive(keepalive);
                // RFC 9112 §9.3.2: pipelined requests are answered in order (pingora's default drops the
                // second one and closes, after an answer that said keep-alive). Carried to later sessions
                // by pingora.
                session.set_pipelining_enabled(true);
            }
            None => {}
        }
        if shutting_down {
            session.set_keepalive(None);
        }
        session
    }

    fn http2_allowed(&self) -> bool {
        self.shared.snapshot.load().dist.http_version == HttpVersion::Http2
    }

    async fn serve_http1(self: &Arc<Self>, connection: Http1Connection, shutdown: &ShutdownWatch) {
        let Http1Connection { mut stream, mut persistent, mut first, mut arrived, slot } = connection;
        let proxy = &self.shared.proxy;
        let idle = Duration::from_secs(self.shared.idle_timeout_secs.max(1));
        // A connection waits `PARK_AFTER` in this task, then in the lot for the rest of the idle timeout.
        let (wait, parks) = if idle > PARK_AFTER { (PARK_AFTER, true) } else { (idle, false) };
        // One receiver per connection (each wait borrows it mutably to learn of a shutdown).
        let mut shutdown_changes = shutdown.clone();
        // The kept-alive wait's timer, one per connection instead of one registered and removed per
        // request (`wait_timer.rs`).
        let mut quiet = std::pin::pin!(tokio::time::sleep(wait));
        loop {
            // An idle connection waits here, holding its stream only: each request's state (pingora's
            // request future, its head buffer) is built, in its own box, once the viewer sends something,
            // and freed when the request ends; quiet for `PARK_AFTER`, the connection leaves this task
            // for its listener's lot (docs/performance.md, "Idle connections").
            let pipelined = persistent.as_ref().is_some_and(HttpPersistentSettings::has_pipelined_prefix);
            if !std::mem::take(&mut arrived) && !pipelined {
                stream = with_write_buffer(stream, 0);
                match next_request_arrives(&mut stream, quiet.as_mut(), wait, &mut shutdown_changes).await {
                    Arrival::Request => {}
                    Arrival::Closed => break,
                    Arrival::Quiet if !parks => break,
                    Arrival::Quiet => match park(stream) {
                        Ok(tcp) => {
                            let since = Instant::now().checked_sub(PARK_AFTER).unwrap_or_else(Instant::now);
                            let lot = self.lot.get_or_init(|| Lot::start(self.clone(), idle, shutdown.clone()));
                            lot.park(Idle::new(tcp, persistent, first, slot, since));
                            return;
                        }
                        // Not a stream that parks: it waits out the idle timeout here.
                        Err(kept) => {
                            stream = kept;
                            let rest = idle - PARK_AFTER;
                            if next_request_arrives(&mut stream, quiet.as_mut(), rest, &mut shutdown_changes).await
                                != Arrival::Request
                            {
                                break;
                            }
                        }
                    },
                }
                stream = with_write_buffer(stream, WRITE_BUFFER);
            }
            // Built outside this future: a session borrowed here would keep its space in the connection's
            // future for the connection's whole life, moved out or not.
            let session = self.next_session(stream, persistent.take(), first, *shutdown.borrow());
            first = false;
            // The request future is built in its box (no copy of it), around the boxed session.
            let reused = proxy.process_new_http_boxed(session, shutdown).await;
            let Some((next, settings)) = reused.map(|r| r.consume()) else { break };
            stream = next;
            persistent = settings;
        }
        drop(slot);
    }
}

/// The viewer write buffer: pingora's default is one MSS (1,460 bytes), and a small response whose
/// headers do not fit beside its body then goes out in two sends. 4 KiB holds a small response whole;
/// larger bodies bypass the buffer. An idle connection holds none (`with_write_buffer`).
pub const WRITE_BUFFER: usize = 4 * 1024;

/// A plain-TCP or TLS stream whose socket has a write buffer of `capacity` (when its buffer is empty, as
/// between requests); other streams as they are.
fn with_write_buffer(mut stream: Stream, capacity: usize) -> Stream {
    let any = stream.as_any_mut();
    if let Some(l4) = any.downcast_mut::<L4Stream>() {
        l4.set_write_capacity(capacity);
    } else if let Some(socket) = any.downcast_mut::<TlsStream<L4Stream>>().and_then(TlsStream::socket_mut) {
        socket.set_write_capacity(capacity);
    }
    stream
}

/// How a kept-alive connection's wait for its next request ended.
#[derive(Debug, PartialEq, Eq)]
enum Arrival {
    /// The viewer sent something (bytes or its end, which pingora then reads).
    Request,
    /// Nothing within the wait.
    Quiet,
    /// The service is shutting down.
    Closed,
}

/// Waits up to `wait` for the viewer's next request on a kept-alive connection, plain TCP or TLS (the
/// TLS session's socket: records arriving end the wait; any plaintext rustls holds already means there
/// is nothing to wait for). A record that carries no request (a TLS alert, a key update) sends the
/// connection on to pingora, which then waits inside the request, as it does for streams of other kinds.
async fn next_request_arrives(
    stream: &mut Stream,
    quiet: std::pin::Pin<&mut tokio::time::Sleep>,
    wait: Duration,
    shutdown: &mut ShutdownWatch,
) -> Arrival {
    if *shutdown.borrow() {
        return Arrival::Closed;
    }
    let socket = if let Some(l4) = stream.as_any().downcast_ref::<L4Stream>() {
        Socket::Tcp(l4)
    } else if stream.as_any().is::<TlsStream<L4Stream>>() {
        if has_buffered_plaintext(stream) {
            return Arrival::Request;
        }
        match stream.as_any().downcast_ref::<TlsStream<L4Stream>>() {
            Some(tls) => Socket::Tls(tls),
            None => return Arrival::Request,
        }
    } else {
        return Arrival::Request;
    };
    // Every poll peeks: the socket's readiness may be stale (pingora item 11; an event for bytes the
    // request already read can be delivered after the wait began), and a stale one taken for a request
    // would wait inside pingora's request, out of the lot's reach. Peeking only the first poll left one
    // connection in ~1,000 unparked under load. Polled, not awaited through an `async fn`: the waker
    // sits in the socket's own read slot instead of a waiter node in this future (which an idle
    // connection holds for as long as it is idle).
    let readable = std::future::poll_fn(move |cx| socket.poll_readable(cx, true));
    // The socket first, as a timeout polls its future first: a request already there is taken.
    tokio::select! {
        biased;
        ready = crate::wait_timer::within(quiet, wait, readable) => match ready {
            Some(Ok(())) => Arrival::Request,
            Some(Err(_)) => Arrival::Closed,
            None => Arrival::Quiet,
        },
        _ = shutdown.changed() => Arrival::Closed,
    }
}

/// The socket a kept-alive connection waits on.
enum Socket<'a> {
    Tcp(&'a L4Stream),
    Tls(&'a TlsStream<L4Stream>),
}

impl Socket<'_> {
    fn poll_readable(&self, cx: &mut std::task::Context<'_>, peek: bool) -> std::task::Poll<std::io::Result<()>> {
        match self {
            Socket::Tcp(l4) => l4.poll_readable(cx, peek),
            Socket::Tls(tls) => tls.poll_readable(cx, peek),
        }
    }
}

/// Whether a TLS stream holds decrypted plaintext not read yet (or its peer closed it).
fn has_buffered_plaintext(stream: &mut Stream) -> bool {
    stream.as_any_mut().downcast_mut::<TlsStream<L4Stream>>().is_none_or(TlsStream::has_buffered_plaintext)
}

/// The socket of a plain-TCP stream with nothing buffered, taken out to wait in a lot; any other
/// stream back as it was.
fn park(stream: Stream) -> Result<ParkedTcp, Stream> {
    if stream.as_any().downcast_ref::<L4Stream>().is_none() {
        return Err(stream);
    }
    match stream.into_any().downcast::<L4Stream>() {
        Ok(l4) => (*l4).park().map_err(|l4| Box::new(l4) as Stream),
        // Checked just above; a stream is never lost.
        Err(_) => unreachable!("downcast after a successful type check"),
    }
}

/// Answers a connection over `server.max_connections` and closes it.
async fn refuse(mut stream: Stream) {
    let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
    let _ = stream.flush().await;
    // Read what the viewer sent before closing (briefly, and a little): closing with its request unread
    // would reset the connection and could destroy the 503 before the viewer reads it.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut sink)).await;
}

/// Reads the PROXY header and makes its client address the connection's peer address.
async fn read_proxy_header(l4: &mut L4Stream) -> Result<(), String> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    let (header, length) = loop {
        let n = l4.read(&mut chunk).await.map_err(|e| format!("reading the PROXY header: {e}"))?;
        if n == 0 {
            return Err("closed before a PROXY header".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match proxy_protocol::parse(&buf) {
            Ok(Some(done)) => break done,
            Ok(None) if buf.len() < proxy_protocol::MAX_HEADER => continue,
            Ok(None) => return Err("PROXY header too long".into()),
            Err(reason) => return Err(reason.into()),
        }
    };
    // Bytes after the header are the start of TLS or HTTP: given back to the stream.
    l4.rewind(&buf[length..]);
    if let proxy_protocol::Header::Proxied { source, destination } = header {
        use std::os::fd::AsRawFd;
        let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
        let _ = digest.peer_addr.set(Some(source.into()));
        let _ = digest.local_addr.set(Some(destination.into()));
        l4.set_socket_digest(digest);
    }
    Ok(())
}

/// Whether a plain connection opens with HTTP/2's preface; what was read is given back. Reads only as
/// far as the bytes still match, so a short HTTP/1 request is not held waiting for 24 bytes.
async fn starts_with_h2_preface(l4: &mut L4Stream) -> Option<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let matches = loop {
        let n = l4.read(&mut buf[filled..]).await.ok()?;
        if n == 0 {
            l4.rewind(&buf[..filled]);
            return None;
        }
        filled += n;
        if buf[..filled] != H2_PREFACE[..filled] {
            break false;
        }
        if filled == H2_PREFACE.len() {
            break true;
        }
    };
    l4.rewind(&buf[..filled]);
    Some(matches)
}

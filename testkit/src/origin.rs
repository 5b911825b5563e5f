//! A small programmable HTTP/1.1 origin on tokio for tests and the demo: keep-alive, Content-Length
//! bodies, an optional per-response delay and a truncated transfer (to provoke origin faults), over
//! plain TCP or TLS.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the origin saw it.
#[derive(Debug, Clone)]
pub struct OriginRequest {
    pub method: String,
    /// Path and query, exactly as received.
    pub target: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which connection it came on (numbered from 0 per origin), to see connection reuse.
    pub connection: usize,
}

impl OriginRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

#[derive(Debug, Clone)]
pub struct OriginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait this long before answering (to provoke read timeouts).
    pub delay: Option<Duration>,
    /// Send only this many body bytes, then close (a broken origin transfer).
    pub truncate_to: Option<usize>,
}

impl OriginResponse {
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self { status, headers: Vec::new(), body: body.into(), delay: None, truncate_to: None }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn truncate_to(mut self, bytes: usize) -> Self {
        self.truncate_to = Some(bytes);
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

pub type Handler = Arc<dyn Fn(&OriginRequest) -> OriginResponse + Send + Sync>;

/// Accepts connections until the listener's task is dropped. A failed accept (out of file descriptors)
/// waits a moment before the next try instead of spinning a core.
pub async fn serve(listener: TcpListener, handler: Handler) {
    serve_maybe_tls(listener, handler, None).await
}

/// `serve` over TLS: every connection starts with a handshake with `config`.
pub async fn serve_tls(listener: TcpListener, handler: Handler, config: Arc<rustls::ServerConfig>) {
    serve_maybe_tls(listener, handler, Some(tokio_rustls::TlsAcceptor::from(config))).await
}

async fn serve_maybe_tls(listener: TcpListener, handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) {
    let mut connections = 0;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let tls = tls.clone();
        let id = connections;
        connections += 1;
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = connection(stream, handler, id).await;
                    }
                }
                None => {
                    let _ = connection(stream, handler, id).await;
                }
            }
        });
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: Handler,
    id: usize,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        // Read until the end of the header block.
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        if parsed.parse(&buf[..header_end]).is_err() {
            stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
            return Ok(());
        }
        let mut request = OriginRequest {
            method: parsed.method.unwrap_or("").to_string(),
            target: parsed.path.unwrap_or("").to_string(),
            headers: parsed
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                .collect(),
            body: Vec::new(),
            connection: id,
        };
        let length: usize = request.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        buf.drain(..header_end);
        while buf.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        request.body = buf.drain(..length).collect();
        let close = request.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));

        let response = handler(&request);
        if let Some(delay) = response.delay {
            tokio::time::sleep(delay).await;
        }
        let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
        for (name, value) in &response.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", response.body.len()));
        stream.write_all(head.as_bytes()).await?;
        if let Some(cut) = response.truncate_to {
            stream.write_all(&response.body[..cut.min(response.body.len())]).await?;
            return Ok(());
        }
        if request.method != "HEAD" {
            stream.write_all(&response.body).await?;
        }
        if close {
            return Ok(());
        }
    }
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Status")
}

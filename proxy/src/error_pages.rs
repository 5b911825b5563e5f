//! Custom error responses (SPEC §10.9): the page at `response_page_path` is fetched through verge itself,
//! so it goes through the behavior matching that path (and its cache), and is sent with `response_code`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Marks verge's own page fetches, so a missing page never triggers another page fetch.
pub const INTERNAL_HEADER: &str = "x-verge-error-page";

/// A fetched page: its status, content type and body.
pub struct Page {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// GET `path` from verge's own listener with the distribution's Host; `None` if it cannot be fetched.
pub async fn fetch(listener: SocketAddr, host: &str, path: &str, timeout: Duration) -> Option<Page> {
    tokio::time::timeout(timeout, fetch_inner(listener, host, path)).await.ok()?.ok()
}

async fn fetch_inner(listener: SocketAddr, host: &str, path: &str) -> std::io::Result<Page> {
    let mut stream = TcpStream::connect(listener).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{INTERNAL_HEADER}: 1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse(&raw).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad error page response"))
}

fn parse(raw: &[u8]) -> Option<Page> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(&raw[..end]).ok()?;
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let body = if chunked { dechunk(&raw[end..])? } else { raw[end..].to_vec() };
    Some(Page { status: response.code?, content_type: header("content-type"), body: Bytes::from(body) })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = data.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_plain_and_chunked_pages() {
        let plain = super::parse(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 2\r\n\r\nhi").unwrap();
        assert_eq!(
            (plain.status, plain.content_type.as_deref(), &plain.body[..]),
            (200, Some("text/html"), &b"hi"[..])
        );
        let chunked =
            super::parse(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!((chunked.status, &chunked.body[..]), (404, &b"abc"[..]));
    }
}

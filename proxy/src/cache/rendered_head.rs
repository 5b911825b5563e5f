//! A stored `200`'s response head rendered once, when it is stored: the bytes a fresh hit sends as they
//! are, with only the per-hit fields (`Age`, the edge headers, `Connection`) appended (edge/fresh_hit.rs).

use bytes::{BufMut, Bytes, BytesMut};
use pingora_http::{HeaderNameVariant, ResponseHeader};

/// Fields a hit never sends from the stored header: connection-scoped ones, and the ones every hit
/// sets itself (pingora's hit path inserts `Age` and `Accept-Ranges`; verge's edge headers replace an
/// origin's `X-Cache`, `Via` and `X-Amz-Cf-Id`). Compared without case.
const SET_PER_HIT: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "age",
    "accept-ranges",
    "x-cache",
    "via",
    "x-amz-cf-id",
];

/// The status line and stored fields of a `200` as a fresh hit sends them (the names in the origin's
/// case), ending with `Accept-Ranges: bytes` and no blank line.
#[derive(Clone)]
pub struct RenderedHead {
    bytes: Bytes,
    /// The stored header has a `Date` (the hit keeps it; without one the hit gets the current date).
    has_date: bool,
}

/// What `render` makes before the body's length is known: `finish` checks or adds `Content-Length`.
#[derive(Clone)]
pub struct PartialHead {
    bytes: BytesMut,
    has_date: bool,
    /// The stored `Content-Length`: `None` when absent, `Some(None)` when it is not one number.
    content_length: Option<Option<usize>>,
}

/// Renders `header` if a fresh hit can be served from bytes: a `200` (a variant's too: `Vary` goes out
/// as stored) framed by its length (a stored `Transfer-Encoding` beside a
/// `Content-Length` would frame pingora's hits as chunked: those keep pingora's path).
pub fn render(header: &ResponseHeader) -> Option<PartialHead> {
    let has = |name| header.headers.contains_key(name);
    if header.status != http::StatusCode::OK
        || (has(http::header::TRANSFER_ENCODING) && has(http::header::CONTENT_LENGTH))
    {
        return None;
    }
    let content_length = header.headers.get(http::header::CONTENT_LENGTH).map(|v| {
        std::str::from_utf8(v.as_bytes())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
    });
    let mut bytes = BytesMut::with_capacity(256);
    // `OK` whatever the origin's reason phrase: the stored header keeps none (storage.rs), so pingora's
    // hits say `OK` too.
    bytes.put_slice(b"HTTP/1.1 200 OK\r\n");
    header
        .map(|name, value| {
            let name = match name {
                HeaderNameVariant::Case(name) => name.as_slice(),
                HeaderNameVariant::Titled(name) => name.as_bytes(),
            };
            if !SET_PER_HIT.iter().any(|skip| skip.as_bytes().eq_ignore_ascii_case(name)) {
                bytes.put_slice(name);
                bytes.put_slice(b": ");
                bytes.put_slice(value.as_bytes());
                bytes.put_slice(b"\r\n");
            }
            Ok(())
        })
        .ok()?;
    Some(PartialHead { bytes, has_date: header.headers.contains_key(http::header::DATE), content_length })
}

impl PartialHead {
    /// The head for a body of `body_len` bytes: a stored `Content-Length` must say exactly that (else
    /// hits take pingora's path, which frames by the header); a missing one is added.
    pub fn finish(mut self, body_len: usize) -> Option<RenderedHead> {
        match self.content_length {
            Some(Some(len)) if len == body_len => {}
            Some(_) => return None,
            None => {
                self.bytes.put_slice(b"Content-Length: ");
                put_decimal(&mut self.bytes, body_len as u64);
                self.bytes.put_slice(b"\r\n");
            }
        }
        self.bytes.put_slice(b"Accept-Ranges: bytes\r\n");
        Some(RenderedHead { bytes: self.bytes.freeze(), has_date: self.has_date })
    }
}

impl RenderedHead {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn has_date(&self) -> bool {
        self.has_date
    }
}

/// `n` in decimal, without the formatting machinery (this runs per hit for `Age`).
pub fn put_decimal(buf: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(status: u16, fields: &[(&str, &str)]) -> ResponseHeader {
        let mut h = ResponseHeader::build(status, None).unwrap();
        for (n, v) in fields {
            h.append_header(n.to_string(), *v).unwrap();
        }
        h
    }

    fn text(head: &RenderedHead) -> String {
        String::from_utf8(head.bytes().to_vec()).unwrap()
    }

    #[test]
    fn keeps_the_origin_case_and_drops_what_each_hit_sets() {
        let h = header(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Connection", "close"),
                ("ETag", "\"a\""),
                ("Age", "5"),
                ("X-Cache", "Hit from elsewhere"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("Content-Length", "3"),
            ],
        );
        let head = render(&h).unwrap().finish(3).unwrap();
        assert_eq!(
            text(&head),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"a\"\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
             Content-Length: 3\r\nAccept-Ranges: bytes\r\n"
        );
        assert!(!head.has_date());
    }

    #[test]
    fn the_status_line_says_ok_as_pingoras_hits_do() {
        let mut h = header(200, &[("Content-Length", "0")]);
        h.set_reason_phrase(Some("Just Fine")).unwrap();
        assert!(text(&render(&h).unwrap().finish(0).unwrap()).starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn a_missing_length_is_added_and_a_wrong_one_refuses() {
        let h = header(200, &[("Date", "Sat, 28 Nov 2026 01:31:28 GMT")]);
        let head = render(&h).unwrap().finish(1024).unwrap();
        assert!(text(&head).ends_with("Content-Length: 1024\r\nAccept-Ranges: bytes\r\n"));
        assert!(head.has_date());
        let wrong = header(200, &[("Content-Length", "10")]);
        assert!(render(&wrong).unwrap().finish(11).is_none());
        let garbled = header(200, &[("Content-Length", "+10")]);
        assert!(render(&garbled).unwrap().finish(10).is_none());
    }

    #[test]
    fn only_200s_framed_by_their_length_render() {
        assert!(render(&header(404, &[])).is_none());
        let varied = render(&header(200, &[("Vary", "Accept-Encoding")])).unwrap().finish(1).unwrap();
        assert!(text(&varied).contains("\r\nVary: Accept-Encoding\r\n"), "a variant's head keeps its Vary");
        assert!(render(&header(200, &[("Transfer-Encoding", "chunked"), ("Content-Length", "1")])).is_none());
        // Stored from a chunked origin response: the store gives it a length (storage.rs).
        let chunked = render(&header(200, &[("Transfer-Encoding", "chunked")])).unwrap().finish(2).unwrap();
        assert!(!text(&chunked).contains("Transfer-Encoding"));
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            let mut b = BytesMut::new();
            put_decimal(&mut b, n);
            assert_eq!(b, n.to_string().as_bytes());
        }
    }
}

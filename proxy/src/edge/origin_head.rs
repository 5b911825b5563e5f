//! An origin's HTTP/1 response head read in place, for verge's pass exchange (pass_through.rs): parsed
//! with the parser settings pingora's client uses, its framing and keep-alive worked out by pingora's
//! rules (RFC 9112 §6.3: `Transfer-Encoding` over `Content-Length`, identical duplicate lengths
//! accepted, conflicting ones refused; HEAD, 204 and 304 without a body; no length means until close;
//! an HTTP/1.1 connection kept unless `Connection: close`), and rendered for the viewer as pingora's
//! path would send it: the status line as `HTTP/1.1` with the origin's reason, the origin's fields in
//! its order and case, less `Connection` (the viewer's own is added when the head is written), the
//! edge's `X-Cache`, `Via` and `X-Amz-Cf-Id` (added after it), and a `Content-Length` that a
//! `Transfer-Encoding` overrides. No header map is built.

use std::mem::MaybeUninit;

use bytes::{BufMut, BytesMut};
use pingora_core::protocols::http::v1::server::RENDERED_INLINE_BODY;
use pingora_error::{Error, ErrorType, Result};

use super::head_scan::{self, Scanned};

/// The largest head read from an origin (pingora's client bound).
pub const MAX_HEAD: usize = 1_048_575;
/// Fields a head may have (pingora's client bound).
pub(super) const MAX_FIELDS: usize = 256;

/// How the body after the head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// None at all: a HEAD request's answer, 204, 304.
    None,
    Length(usize),
    Chunked,
    /// Until the origin closes the connection.
    UntilClose,
}

/// A final response head at the front of the read buffer.
#[derive(Debug)]
pub struct OriginHead {
    pub status: http::StatusCode,
    /// The head's bytes, blank line included (the body starts there).
    pub length: usize,
    pub framing: Framing,
    /// Whether the origin keeps the connection open after this response (its body read whole).
    pub keepalive: bool,
    /// Whether the origin sent a `Date` (the viewer gets it; otherwise now).
    pub has_date: bool,
    /// The head as the viewer gets it, less the edge's fields and `Connection`.
    rendered: BytesMut,
}

/// What the front of the read buffer holds.
#[derive(Debug)]
pub enum HeadParse {
    /// Not a whole head yet.
    Partial,
    /// A 1xx head of this many bytes: dropped, the final one follows.
    Informational(usize),
    Final(OriginHead),
}

/// The fields of a head that decide its framing and connection.
#[derive(Debug, Default)]
pub(super) struct Framed<'a> {
    pub(super) transfer_encoding: Option<&'a [u8]>,
    /// The reconciled `Content-Length`; `Err` when the values conflict or do not parse.
    pub(super) content_length: Option<std::result::Result<u64, ()>>,
    connection: Option<&'a [u8]>,
    pub(super) has_date: bool,
}

/// Parses the head at the front of `buf` (a response to a HEAD request when `head_only`), rendering
/// the viewer's copy with `room` bytes to spare. A head written the usual way is taken by one scan
/// (`head_scan.rs`); any other goes through httparse with pingora's client settings.
pub fn parse(buf: &[u8], head_only: bool, room: usize) -> Result<HeadParse> {
    if let Some(scanned) = head_scan::scan(buf) {
        return finish_scanned(buf, head_only, room, scanned);
    }
    parse_with_httparse(buf, head_only, room)
}

/// `parse` for any head httparse takes.
fn parse_with_httparse(buf: &[u8], head_only: bool, room: usize) -> Result<HeadParse> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let mut config = httparse::ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    config.allow_obsolete_multiline_headers_in_responses(true);
    let length = match config.parse_response_with_uninit_headers(&mut response, buf, &mut fields) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(HeadParse::Partial),
        Err(e) => return Err(Error::because(ErrorType::InvalidHTTPHeader, "origin response head", e).into_up()),
    };
    let head = Parts {
        code: response.code.unwrap_or(0),
        http10: response.version == Some(0),
        reason: response.reason.unwrap_or("").as_bytes(),
        length,
    };
    head.finish(buf, head_only, room, response.headers.iter().map(|f| (f.name.as_bytes(), f.value)))
}

/// A head's status line and length, from either parser.
struct Parts<'a> {
    code: u16,
    http10: bool,
    reason: &'a [u8],
    length: usize,
}

impl Parts<'_> {
    /// Works out the head's framing and keep-alive from its fields (slices of `buf`) and renders the
    /// viewer's copy.
    fn finish<'a>(
        self,
        buf: &'a [u8],
        head_only: bool,
        room: usize,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    ) -> Result<HeadParse> {
        let Parts { code, http10, reason, length } = self;
        let Some(status) = final_status(code)? else { return Ok(HeadParse::Informational(length)) };
        let mut framed = Framed::default();
        for (name, value) in fields.clone() {
            read_field(&mut framed, classify(name), value);
        }
        let (framing, keepalive) = framing(code, http10, head_only, &framed)?;
        let mut rendered = start_rendered(length, room, framing);
        rendered.put_slice(b"HTTP/1.1 ");
        rendered.put_slice(status.as_str().as_bytes());
        rendered.put_u8(b' ');
        rendered.put_slice(reason);
        rendered.put_slice(b"\r\n");
        render_fields(buf, fields, framed.transfer_encoding.is_some(), &mut rendered);
        Ok(HeadParse::Final(OriginHead { status, length, framing, keepalive, has_date: framed.has_date, rendered }))
    }
}

/// The viewer's copy of a head the one-pass scan took: the head's own bytes from the status code on,
/// less the lines it dropped.
fn finish_scanned(buf: &[u8], head_only: bool, room: usize, scanned: Scanned<'_>) -> Result<HeadParse> {
    let length = scanned.length;
    let Some(status) = final_status(scanned.code)? else { return Ok(HeadParse::Informational(length)) };
    let (framing, keepalive) = framing(scanned.code, scanned.http10, head_only, &scanned.framed)?;
    let mut rendered = start_rendered(length, room, framing);
    rendered.put_slice(b"HTTP/1.1 ");
    rendered.put_slice(scanned.status_rest);
    let mut from = scanned.fields_at;
    for (drop_from, drop_to) in scanned.drops() {
        rendered.put_slice(&buf[from..drop_from]);
        from = drop_to;
    }
    rendered.put_slice(&buf[from..length - 2]);
    Ok(HeadParse::Final(OriginHead { status, length, framing, keepalive, has_date: scanned.framed.has_date, rendered }))
}

/// The status of a final head; `None` for an informational one (dropped: the final one follows), an
/// error for a code out of range or a 101 (no upgrade was asked for).
fn final_status(code: u16) -> Result<Option<http::StatusCode>> {
    let status = http::StatusCode::from_u16(code)
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "origin response status", e).into_up())?;
    if status.is_informational() {
        if code == 101 {
            return Err(Error::explain(ErrorType::InvalidHTTPHeader, "101 without an upgrade").into_up());
        }
        return Ok(None);
    }
    Ok(Some(status))
}

/// How the body is delimited and whether the connection is kept after it, by pingora's rules.
fn framing(code: u16, http10: bool, head_only: bool, framed: &Framed<'_>) -> Result<(Framing, bool)> {
    let framing = if head_only || matches!(code, 204 | 304) {
        // Validated all the same, as pingora does before it looks at the request's method.
        if framed.transfer_encoding.is_none() && framed.content_length == Some(Err(())) {
            return Err(invalid_length());
        }
        Framing::None
    } else if let Some(te) = framed.transfer_encoding {
        if last_token(te).eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match framed.content_length {
            Some(Ok(n)) => Framing::Length(usize::try_from(n).map_err(|_| invalid_length())?),
            Some(Err(())) => return Err(invalid_length()),
            None => Framing::UntilClose,
        }
    };
    let keepalive = framing != Framing::UntilClose
        && !(http10 && framed.transfer_encoding.is_some())
        && match framed.connection.and_then(connection_keepalive) {
            Some(keep) => keep,
            None => !http10,
        };
    Ok((framing, keepalive))
}

/// The viewer's head buffer, with room for the edge's fields and, when it is small enough to go out
/// with the head, the body.
fn start_rendered(length: usize, room: usize, framing: Framing) -> BytesMut {
    let inline_body = match framing {
        Framing::Length(n) if n <= RENDERED_INLINE_BODY => n,
        _ => 0,
    };
    BytesMut::with_capacity(length + room + inline_body)
}

impl OriginHead {
    /// The viewer's copy of the head so far (the caller appends the edge's fields), taken out.
    pub fn take_rendered(&mut self) -> BytesMut {
        std::mem::take(&mut self.rendered)
    }
}

/// Appends the fields that pass to the viewer. Runs of lines already written as `name: value` go in one
/// copy each; a line written otherwise (space before the colon, none after it, trailing space,
/// folded) is rewritten in that form, as pingora writes a field it parsed.
fn render_fields<'a>(
    buf: &[u8],
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    drop_length: bool,
    out: &mut BytesMut,
) {
    let base = buf.as_ptr() as usize;
    // The run of verbatim lines not yet copied: `buf[run.0..run.1]`.
    let mut run = (0, 0);
    for (name, value) in fields {
        let name_at = name.as_ptr() as usize - base;
        let value_at = value.as_ptr() as usize - base;
        let name_end = name_at + name.len();
        let value_end = value_at + value.len();
        if !passes_to_viewer(classify(name), drop_length) {
            continue;
        }
        let verbatim = value_at == name_end + 2
            && buf.get(name_end..value_at) == Some(b": ")
            && buf.get(value_end..value_end + 2) == Some(b"\r\n");
        if verbatim && run.1 == name_at && run.1 > run.0 {
            run.1 = value_end + 2;
            continue;
        }
        out.put_slice(&buf[run.0..run.1]);
        run = (0, 0);
        if verbatim {
            run = (name_at, value_end + 2);
        } else {
            out.put_slice(name);
            out.put_slice(b": ");
            out.put_slice(value);
            out.put_slice(b"\r\n");
        }
    }
    out.put_slice(&buf[run.0..run.1]);
}

/// A field's value in an origin head as the viewer got it (the first of its name; a `Content-Length`
/// that a `Transfer-Encoding` overrode is not), for the logs: a line scan, run only for a logged request.
pub fn sent_field<'h>(head: &'h [u8], name: &str) -> Option<&'h str> {
    let field = |wanted: &str| {
        head.split(|b| *b == b'\n').skip(1).find_map(|line| {
            let (n, v) = line.split_at(line.iter().position(|b| *b == b':')?);
            n.trim_ascii()
                .eq_ignore_ascii_case(wanted.as_bytes())
                .then(|| std::str::from_utf8(v[1..].trim_ascii()).ok())?
        })
    };
    if name.eq_ignore_ascii_case("content-length") && field("transfer-encoding").is_some() {
        return None;
    }
    field(name)
}

/// The fields a head's framing, its connection and the viewer's copy depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Named {
    Date,
    Connection,
    ContentLength,
    TransferEncoding,
    /// The edge's own: `Via`, `X-Cache`, `X-Amz-Cf-Id` (set after the origin's fields).
    Edge,
    Other,
}

/// Which field a name (header-name bytes) is, case aside.
pub(super) fn classify(name: &[u8]) -> Named {
    match name.len() {
        3 if same_name(name, b"via") => Named::Edge,
        4 if same_name(name, b"date") => Named::Date,
        7 if same_name(name, b"x-cache") => Named::Edge,
        10 if same_name(name, b"connection") => Named::Connection,
        11 if same_name(name, b"x-amz-cf-id") => Named::Edge,
        14 if same_name(name, b"content-length") => Named::ContentLength,
        17 if same_name(name, b"transfer-encoding") => Named::TransferEncoding,
        _ => Named::Other,
    }
}

/// `name` (header-name bytes, RFC 9110 tchar) is `lower` (lower case, the same length) but for case.
/// `| 0x20` folds case exactly here: among tchars only letters change, and no other tchar lands on a
/// letter, digit or dash. Eight bytes at a time: a field name check runs for every field.
fn same_name(name: &[u8], lower: &[u8]) -> bool {
    let fold = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or_default()) | 0x2020_2020_2020_2020;
    let word = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or_default());
    let len = name.len();
    if len < 8 {
        return name.iter().zip(lower).all(|(n, l)| n | 0x20 == *l);
    }
    fold(&name[..8]) == word(&lower[..8]) && fold(&name[len - 8..]) == word(&lower[len - 8..])
}

/// Notes what a field says about framing and the connection.
pub(super) fn read_field<'a>(framed: &mut Framed<'a>, named: Named, value: &'a [u8]) {
    match named {
        Named::Date => framed.has_date = true,
        // The first one counts, as pingora reads it.
        Named::Connection => framed.connection = framed.connection.or(Some(value)),
        Named::ContentLength => {
            // Identical values (repeated or listed) reconcile to one; anything else is refused.
            let mut current = match framed.content_length {
                Some(Err(())) => return,
                Some(Ok(n)) => Some(n),
                None => None,
            };
            for token in value.split(|b| *b == b',') {
                match digits(token.trim_ascii()) {
                    Some(n) if current.is_none_or(|c| c == n) => current = Some(n),
                    _ => {
                        framed.content_length = Some(Err(()));
                        return;
                    }
                }
            }
            framed.content_length = current.map(Ok);
        }
        // The last one counts.
        Named::TransferEncoding => framed.transfer_encoding = Some(value),
        Named::Edge | Named::Other => {}
    }
}

/// Whether an origin field goes to the viewer: not `Connection` (the viewer's own is written), not the
/// edge's fields (set after), not a `Content-Length` a `Transfer-Encoding` overrides.
fn passes_to_viewer(named: Named, drop_length: bool) -> bool {
    match named {
        Named::Connection | Named::Edge => false,
        Named::ContentLength => !drop_length,
        _ => true,
    }
}

/// `Connection`'s say on keep-alive, as pingora reads it: exactly `keep-alive` or `close`, or a list
/// with `close` in it; anything else says nothing (the version decides).
fn connection_keepalive(value: &[u8]) -> Option<bool> {
    if value.eq_ignore_ascii_case(b"close") {
        return Some(false);
    }
    if value.eq_ignore_ascii_case(b"keep-alive") {
        return Some(true);
    }
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close")).then_some(false)
}

/// The last comma-separated token of a `Transfer-Encoding` value.
fn last_token(value: &[u8]) -> &[u8] {
    value.rsplit(|b| *b == b',').next().unwrap_or(value).trim_ascii()
}

/// A decimal length with nothing else (no sign, no space).
fn digits(token: &[u8]) -> Option<u64> {
    if token.is_empty() {
        return None;
    }
    token.iter().try_fold(0u64, |n, b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

fn invalid_length() -> Box<Error> {
    Error::explain(ErrorType::InvalidHTTPHeader, "invalid Content-Length from the origin").into_up()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_head(bytes: &[u8], head_only: bool) -> OriginHead {
        match parse(bytes, head_only, 0).unwrap() {
            HeadParse::Final(head) => head,
            other => panic!("not a final head: {other:?}"),
        }
    }

    #[test]
    fn frames_bodies_as_pingora_does() {
        let cases: &[(&str, bool, Framing, bool)] = &[
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, Framing::Length(5), true),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n", false, Framing::Length(5), true),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, Framing::Chunked, true),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, Framing::UntilClose, false),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::UntilClose, false),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", false, Framing::Length(5), false),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: x, Close\r\n\r\n", false, Framing::Length(5), false),
            ("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false, Framing::Length(5), false),
            ("HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive\r\n\r\n", false, Framing::Length(5), true),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, Framing::None, true),
            ("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, Framing::None, true),
            ("HTTP/1.1 204 No Content\r\n\r\n", false, Framing::None, true),
        ];
        for (head, head_only, framing, keepalive) in cases {
            let parsed = final_head(head.as_bytes(), *head_only);
            assert_eq!((parsed.framing, parsed.keepalive), (*framing, *keepalive), "{head:?}");
            assert_eq!(parsed.length, head.len());
        }
    }

    #[test]
    fn refuses_lengths_that_conflict_or_do_not_parse() {
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n",
        ] {
            let e = parse(head.as_bytes(), false, 0).unwrap_err();
            assert_eq!(e.etype(), &ErrorType::InvalidHTTPHeader, "{head:?}");
            assert_eq!(e.esource(), &pingora_error::ErrorSource::Upstream);
        }
    }

    #[test]
    fn renders_the_origin_fields_less_connection_and_the_edges() {
        let head = "HTTP/1.0 404 Gone Fishing\r\nServer: o\r\nconnection: keep-alive\r\nX-Cache: Hit\r\nVia: 1.1 x\r\n\
                    X-Amz-Cf-Id: abc\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nDate: today\r\nX-Foo : bar\r\n\r\nbody";
        let mut parsed = final_head(head.as_bytes(), false);
        assert!(parsed.has_date);
        assert_eq!(parsed.length, head.len() - 4);
        assert_eq!(
            std::str::from_utf8(&parsed.take_rendered()).unwrap(),
            "HTTP/1.1 404 Gone Fishing\r\nServer: o\r\nTransfer-Encoding: chunked\r\nDate: today\r\nX-Foo: bar\r\n"
        );
    }

    #[test]
    fn logs_read_the_fields_the_viewer_got() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type:  text/html \r\ncontent-length: 5\r\n\r\n";
        assert_eq!(sent_field(head, "content-type"), Some("text/html"));
        assert_eq!(sent_field(head, "Content-Length"), Some("5"));
        assert_eq!(sent_field(head, "content-range"), None);
        let chunked = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(sent_field(chunked, "content-length"), None);
    }

    /// A head the one-pass scan takes gets the same framing, keep-alive and viewer copy as through
    /// httparse.
    #[test]
    fn the_scan_and_httparse_give_the_same_head() {
        let heads = [
            &b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 28 Nov 2026 20:41:36 GMT\r\nContent-Length: 4\r\n\
               Connection: keep-alive\r\nETag: \"5f\"\r\nX-Empty: \r\n\r\nbody"[..],
            b"HTTP/1.0 404 Not Found\r\nVia: 1.1 a\r\nContent-Length: 3\r\nX-Cache: Hit\r\nTransfer-Encoding: chunked\r\n\
               x-amz-cf-id: q\r\nContent-Length: 3\r\nConnection: Keep-Alive\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
            b"HTTP/1.1 200 \r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
        ];
        for head in heads {
            assert!(head_scan::scan(head).is_some(), "{:?}", String::from_utf8_lossy(head));
            for head_only in [false, true] {
                let (scanned, parsed) =
                    (parse(head, head_only, 8).unwrap(), parse_with_httparse(head, head_only, 8).unwrap());
                match (scanned, parsed) {
                    (HeadParse::Final(mut a), HeadParse::Final(mut b)) => {
                        assert_eq!(
                            (a.status, a.length, a.framing, a.keepalive, a.has_date),
                            (b.status, b.length, b.framing, b.keepalive, b.has_date)
                        );
                        assert_eq!(a.take_rendered(), b.take_rendered());
                    }
                    (HeadParse::Informational(a), HeadParse::Informational(b)) => assert_eq!(a, b),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn names_are_told_apart_by_case_folding_alone() {
        for (name, named) in [
            (&b"CONTENT-length"[..], Named::ContentLength),
            (b"Transfer-Encoding", Named::TransferEncoding),
            (b"X-Amz-Cf-Id", Named::Edge),
            (b"vIa", Named::Edge),
            (b"DATE", Named::Date),
            (b"content_length", Named::Other),
            (b"Content-Lengti", Named::Other),
            (b"Xontent-Length", Named::Other),
            (b"connectioN", Named::Connection),
            (b"connectio~", Named::Other),
            (b"dat`", Named::Other),
        ] {
            assert_eq!(classify(name), named, "{:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn informational_heads_and_partial_ones() {
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nContent-Le", false, 0).unwrap(), HeadParse::Partial));
        let early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n";
        assert!(matches!(parse(early, false, 0).unwrap(), HeadParse::Informational(40)));
        assert!(parse(b"HTTP/1.1 101 Switching\r\n\r\n", false, 0).is_err());
        assert!(parse(b"HTTP/1.1 2000 OK\r\n\r\n", false, 0).is_err());
        assert!(parse(b"garbage\r\n\r\n", false, 0).is_err());
    }
}

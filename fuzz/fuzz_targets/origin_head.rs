//! Any bytes an origin sends where a response head is expected (verge's pass exchange reads them,
//! `edge/origin_head.rs`): parsing never panics; a final head's viewer copy is itself a well-formed head
//! with the same status, no `Connection` field (the viewer's own is added when it is written) and no
//! `Content-Length` beside a `Transfer-Encoding`; its framing is one the bytes allow; and wherever the
//! one-pass scan (`edge/head_scan.rs`) takes a head, httparse reads it the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verge::fuzzing::{origin_head_scan_agrees_with_httparse, parse_origin_head, Framing, HeadParse};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else { return };
    let head_only = flags & 1 == 1;
    assert!(origin_head_scan_agrees_with_httparse(bytes), "the scan and httparse differ");
    let Ok(parsed) = parse_origin_head(bytes, head_only, 64) else { return };
    let mut head = match parsed {
        HeadParse::Partial => return,
        HeadParse::Informational(length) => {
            assert!(length <= bytes.len());
            return;
        }
        HeadParse::Final(head) => head,
    };
    assert!(head.length <= bytes.len());
    if head_only {
        assert_eq!(head.framing, Framing::None);
    }
    if head.framing == Framing::UntilClose {
        assert!(!head.keepalive, "a body until close cannot keep the connection");
    }
    let mut rendered = head.take_rendered().to_vec();
    rendered.extend_from_slice(b"\r\n");
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut again = httparse::Response::new(&mut fields);
    let mut config = httparse::ParserConfig::default();
    config.allow_obsolete_multiline_headers_in_responses(true);
    let status = config.parse_response(&mut again, &rendered);
    assert!(
        matches!(status, Ok(httparse::Status::Complete(n)) if n == rendered.len()),
        "the viewer's copy is not a head: {status:?} {:?}",
        String::from_utf8_lossy(&rendered)
    );
    assert_eq!(again.code, Some(head.status.as_u16()));
    assert_eq!(again.version, Some(1));
    let has = |name: &str| again.headers.iter().any(|f| f.name.eq_ignore_ascii_case(name));
    assert!(!has("connection"));
    if has("transfer-encoding") {
        assert!(!has("content-length"));
    }
});

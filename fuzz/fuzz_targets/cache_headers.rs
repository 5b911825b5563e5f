//! Any origin response header block (status byte, then `name: value` lines): reading its freshness
//! (Cache-Control, Expires, Date, Age), the TTL decision under three policies, what the stored copy
//! keeps, and a 304's update of it never panic; a decision never keeps an object longer than the
//! policy allows, and an `Age` that is not one field of digits never leaves the object fresh. A stored
//! `200`'s rendered head (what fresh hits send, `cache/rendered_head.rs`) parses back into exactly the
//! stored fields, less those each hit sets, plus `Accept-Ranges` and the body's `Content-Length`.
//! verge's `Cache-Control` reading (`cache/cache_control.rs`) reads exactly what pingora-cache's parser,
//! which it replaced, reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pingora_cache::cache_control::CacheControl;
use pingora_http::ResponseHeader;
use verge::fuzzing::{
    cache_directives, decide, freshness, merge_not_modified, render, strip_unstorable, CacheDirectives, Decision,
    TtlPolicy,
};

/// pingora-cache's reading of the same fields.
fn pingora_directives(resp: &ResponseHeader) -> CacheDirectives {
    let Some(cc) = CacheControl::from_resp_headers(resp) else { return CacheDirectives::default() };
    CacheDirectives {
        no_store: cc.no_store(),
        no_cache: cc.no_cache(),
        private: cc.private(),
        must_revalidate: cc.must_revalidate(),
        proxy_revalidate: cc.proxy_revalidate(),
        max_age: cc.max_age().ok().flatten(),
        s_maxage: cc.s_maxage().ok().flatten(),
        stale_while_revalidate: cc.stale_while_revalidate().ok().flatten(),
        stale_if_error: cc.stale_if_error().ok().flatten(),
    }
}

fn header_block(status: u16, text: &str) -> Option<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, None).ok()?;
    for line in text.split('\n') {
        let Some((name, value)) = line.split_once(':') else { continue };
        let _ = resp.append_header(name.trim().to_string(), value.trim());
    }
    Some(resp)
}

const POLICIES: [TtlPolicy; 3] = [
    // CachingOptimized, UseOriginCacheControlHeaders, a clamping custom policy.
    TtlPolicy {
        min_ttl: 1,
        default_ttl: 86_400,
        max_ttl: 31_536_000,
        cookies_in_key: false,
        error_caching_min_ttl: 10,
    },
    TtlPolicy { min_ttl: 0, default_ttl: 0, max_ttl: 31_536_000, cookies_in_key: true, error_caching_min_ttl: 0 },
    TtlPolicy { min_ttl: 60, default_ttl: 120, max_ttl: 600, cookies_in_key: false, error_caching_min_ttl: 5 },
];

fuzz_target!(|data: &[u8]| {
    let Some((&status_byte, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (first, second) = text.split_once("\n\n").unwrap_or((text, ""));
    let statuses = [200, 203, 204, 206, 301, 304, 400, 403, 404, 410, 500, 502, 503, 504, 599];
    let status = statuses[status_byte as usize % statuses.len()];
    let Some(resp) = header_block(status, first) else { return };
    assert_eq!(cache_directives(&resp), pingora_directives(&resp), "Cache-Control read differently: {text:?}");
    let origin = freshness(&resp);
    for policy in &POLICIES {
        if let Decision::Store { fresh_secs, .. } = decide(&origin, policy) {
            let longest = policy.max_ttl.max(policy.min_ttl).max(policy.error_caching_min_ttl);
            assert!(fresh_secs <= longest, "{fresh_secs} s fresh under {policy:?} for {text:?}");
            // An unreadable Age counts as older than any lifetime the origin gave.
            let explicit = origin.max_age.is_some() || origin.s_maxage.is_some() || origin.expires_in.is_some();
            let overridden = origin.no_store || origin.private || origin.no_cache;
            if origin.age == u64::MAX && explicit && !overridden {
                assert_eq!(fresh_secs, 0, "an unreadable Age left the object fresh: {text:?}");
            }
        }
    }
    let mut stored = resp.clone();
    strip_unstorable(&mut stored);
    check_rendered_head(&stored, status_byte as usize);
    if let Some(not_modified) = header_block(304, second) {
        let mut merged = stored.clone();
        merge_not_modified(&mut merged, &not_modified, &resp);
        assert_eq!(
            merged.headers.get_all("etag").iter().collect::<Vec<_>>(),
            resp.headers.get_all("etag").iter().collect::<Vec<_>>(),
            "a 304 never changes the stored validator"
        );
        assert_eq!(merged.headers.get("content-length"), stored.headers.get("content-length"));
    }
});

/// Fields a rendered head leaves out (each hit sets them, or they are connection-scoped).
const SET_PER_HIT: [&str; 12] = [
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

fn check_rendered_head(stored: &ResponseHeader, body_len: usize) {
    let Some(partial) = render(stored) else { return };
    let stored_length = stored.headers.get("content-length");
    let Some(head) = partial.finish(body_len) else {
        assert!(stored_length.is_some(), "only a stored length that disagrees refuses: {stored:?}");
        return;
    };
    let mut wire = head.bytes().to_vec();
    wire.extend_from_slice(b"\r\n");
    let mut fields = vec![httparse::EMPTY_HEADER; stored.headers.len() + 2];
    let mut parsed = httparse::Response::new(&mut fields);
    assert!(
        matches!(parsed.parse(&wire), Ok(httparse::Status::Complete(n)) if n == wire.len()),
        "the rendered head parses whole: {:?}",
        String::from_utf8_lossy(&wire)
    );
    assert_eq!(parsed.code, Some(200));
    let mut got: Vec<(String, Vec<u8>)> =
        parsed.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect();
    let mut want: Vec<(String, Vec<u8>)> = stored
        .headers
        .iter()
        .filter(|(n, _)| !SET_PER_HIT.contains(&n.as_str()))
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    want.push(("accept-ranges".to_string(), b"bytes".to_vec()));
    if stored_length.is_none() {
        want.push(("content-length".to_string(), body_len.to_string().into_bytes()));
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "the rendered head says what was stored");
}

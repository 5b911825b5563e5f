//! Any origin response header block (status byte, then `name: value` lines): reading its freshness
//! (Cache-Control, Expires, Date, Age), the TTL decision under three policies, what the stored copy
//! keeps, and a 304's update of it never panic; a decision never keeps an object longer than the
//! policy allows, and an `Age` that is not one field of digits never leaves the object fresh.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pingora_http::ResponseHeader;
use verge::fuzzing::{decide, freshness, merge_not_modified, strip_unstorable, Decision, TtlPolicy};

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

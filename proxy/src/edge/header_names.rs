//! Header names for pingora's `insert_header`/`append_header` without a copy or a parse per call.
//!
//! Given a `HeaderName`, pingora allocates a title-case copy of it on every insert (only a dozen
//! names are pre-titled). Handing it the name with a static wire case skips the allocation, and
//! the pair (through the vendored pingora-http's `into_header_names`) skips parsing the name
//! again: this runs for every header a hook sets on every response.

use std::sync::LazyLock;

use http::{HeaderMap, HeaderName};
use pingora_http::CaseHeaderName;

/// The standard names `http` knows (lower case, as they go on the wire from a case-less header).
const STANDARD: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "access-control-max-age",
    "access-control-request-headers",
    "access-control-request-method",
    "age",
    "allow",
    "alt-svc",
    "authorization",
    "cache-control",
    "cache-status",
    "cdn-cache-control",
    "connection",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-security-policy",
    "content-security-policy-report-only",
    "content-type",
    "cookie",
    "dnt",
    "date",
    "etag",
    "expect",
    "expires",
    "forwarded",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "origin",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "public-key-pins",
    "public-key-pins-report-only",
    "range",
    "referer",
    "referrer-policy",
    "refresh",
    "retry-after",
    "sec-websocket-accept",
    "sec-websocket-extensions",
    "sec-websocket-key",
    "sec-websocket-protocol",
    "sec-websocket-version",
    "server",
    "set-cookie",
    "strict-transport-security",
    "te",
    "trailer",
    "transfer-encoding",
    "user-agent",
    "upgrade",
    "upgrade-insecure-requests",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "x-content-type-options",
    "x-dns-prefetch-control",
    "x-frame-options",
    "x-xss-protection",
];

/// `HeaderMap` hashes standard names by their index: a lookup costs less than the copy it saves.
static NAMES: LazyLock<HeaderMap<CaseHeaderName>> = LazyLock::new(|| {
    STANDARD.iter().map(|name| (HeaderName::from_static(name), CaseHeaderName::from_static(name))).collect()
});

/// The name as pingora takes it, with its wire case: static for standard names, one copy for others
/// (as pingora would make).
pub fn case_name(name: &HeaderName) -> (HeaderName, CaseHeaderName) {
    let case = match NAMES.get(name) {
        Some(static_name) => static_name.clone(),
        None => CaseHeaderName::from_slice(name.as_str().as_bytes()),
    };
    (name.clone(), case)
}

/// The name's wire case, borrowed: what `case_name` sends, for writing straight into a head. Every
/// name in `STANDARD` is sent as `http` spells it (lower case), so no lookup is needed (it cost ~100
/// instructions per field a hook adds to a hit).
pub fn wire_name(name: &HeaderName) -> &[u8] {
    name.as_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_standard_name_is_static_and_others_are_copied() {
        assert_eq!(NAMES.len(), STANDARD.len(), "no name listed twice");
        for name in STANDARD {
            let (parsed, case) = case_name(&HeaderName::from_static(name));
            assert_eq!((parsed.as_str(), case.as_slice()), (*name, name.as_bytes()));
        }
        for name in STANDARD {
            let name = HeaderName::from_static(name);
            assert_eq!(wire_name(&name), case_name(&name).1.as_slice(), "wire_name sends what case_name does");
        }
        assert_eq!(wire_name(&HeaderName::from_static("x-custom")), b"x-custom");
        let (parsed, case) = case_name(&HeaderName::from_static("x-custom"));
        assert_eq!((parsed.as_str(), case.as_slice()), ("x-custom", &b"x-custom"[..]));
    }
}

//! Reads the freshness facts of an origin response (Cache-Control, Expires, Date, Age, validators)
//! into the plain input of the TTL algorithm.

use std::time::SystemTime;

use pingora_http::ResponseHeader;

use crate::cache::cache_control::cache_directives;
use crate::cache::ttl::OriginFreshness;

pub fn freshness(resp: &ResponseHeader) -> OriginFreshness {
    let cc = cache_directives(resp);
    let header = |name: http::header::HeaderName| resp.headers.get(name).and_then(|v| v.to_str().ok());
    let date = |name| header(name).and_then(httpdate_secs);
    let expires_in = match (date(http::header::EXPIRES), header(http::header::EXPIRES)) {
        (Some(exp), _) => {
            let base = date(http::header::DATE).unwrap_or_else(unix_now);
            Some(exp as i64 - base as i64)
        }
        // An invalid Expires means "already expired" (RFC 9111 §5.3).
        (None, Some(_)) => Some(0),
        (None, None) => None,
    };
    OriginFreshness {
        status: resp.status.as_u16(),
        no_store: cc.no_store,
        no_cache: cc.no_cache,
        private: cc.private,
        s_maxage: cc.s_maxage.map(u64::from),
        max_age: cc.max_age.map(u64::from),
        expires_in,
        age: age_secs(resp),
        stale_while_revalidate: cc.stale_while_revalidate.map(u64::from),
        stale_if_error: cc.stale_if_error.map(u64::from),
        must_revalidate: cc.must_revalidate || cc.proxy_revalidate,
        has_validators: resp.headers.contains_key(http::header::ETAG)
            || resp.headers.contains_key(http::header::LAST_MODIFIED),
        sets_cookie: resp.headers.contains_key(http::header::SET_COOKIE),
        vary_star: resp
            .headers
            .get_all(http::header::VARY)
            .iter()
            .any(|v| v.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii() == b"*")),
    }
}

/// The origin's `Age`: one field of digits (RFC 9111 §5.1). Anything else (a list, a second field, a sign,
/// a fraction, a parameter) cannot be trusted to be small, so it counts as older than any lifetime.
fn age_secs(resp: &ResponseHeader) -> u64 {
    let mut fields = resp.headers.get_all(http::header::AGE).iter();
    match (fields.next(), fields.next()) {
        (None, _) => 0,
        (Some(v), None) => {
            let digits = v.as_bytes().trim_ascii();
            if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
                std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).unwrap_or(u64::MAX)
            } else {
                u64::MAX
            }
        }
        _ => u64::MAX,
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn httpdate_secs(v: &str) -> Option<u64> {
    httpdate::parse_http_date(v).ok()?.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

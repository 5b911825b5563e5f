//! Which variant of a stored object a request asks for: the origin's `Vary` names read as CloudFront
//! does (only headers the request to the origin carried; `Accept-Encoding` normalised when the policy
//! normalises it), hashed into pingora's variance key. One function for pingora's lookup
//! (`cache_vary_filter`) and verge's fresh hits (fresh_hit.rs), so both find the same variant.

use std::borrow::Cow;

use pingora_cache::key::HashBinary;
use pingora_cache::VarianceBuilder;
use pingora_http::{RequestHeader, ResponseHeader};
use verge_config::model::Behavior;

use crate::cache::key::normalised_accept_encoding;
use crate::edge::forward;

/// The variance of `req` against the `Vary` of `stored`, or `None` when nothing it names splits the
/// cache. Borrows what it can: a fresh hit on a compressed object computes this on every request.
pub fn request_variance<'a>(
    stored: &'a ResponseHeader,
    behavior: &Behavior,
    req: &'a RequestHeader,
) -> Option<HashBinary> {
    let policy = &behavior.cache_policy;
    let normalises = policy.accept_encoding_gzip || policy.accept_encoding_brotli;
    let mut variance = VarianceBuilder::new();
    for value in stored.headers.get_all(http::header::VARY) {
        for name in value.to_str().unwrap_or("").split(',') {
            let name = name.trim();
            if name.is_empty() || name == "*" {
                continue;
            }
            let name: Cow<'a, str> = if name.eq_ignore_ascii_case("accept-encoding") {
                Cow::Borrowed("accept-encoding")
            } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(name.to_ascii_lowercase())
            } else {
                Cow::Borrowed(name)
            };
            let value: &'a [u8] = if name == "accept-encoding" && normalises {
                normalised_accept_encoding(req, policy).unwrap_or("identity").as_bytes()
            } else if name == "accept-encoding" || forward::forwards(behavior, &name) {
                req.headers.get(name.as_ref()).map_or(&[], |v| v.as_bytes())
            } else {
                continue;
            };
            match name {
                Cow::Borrowed(name) => variance.add_value(name, value),
                Cow::Owned(name) => variance.add_owned_name_value(name, value.to_vec()),
            }
        }
    }
    variance.finalize()
}

//! Cache keys per cache policy (docs/cloudfront.md, "Cache keys and policies"): path, selected query strings, headers and cookies, and the
//! normalised Accept-Encoding.
//!
//! The primary key starts with the invalidation path (`/p` or `/p?kept=query`) followed by a NUL, so
//! the store can match CloudFront invalidation paths against it. Components are NUL-separated and header
//! and cookie values are length-prefixed so no two different requests frame to the same key.

use std::fmt::Write as _;
use std::sync::OnceLock;

use pingora_http::RequestHeader;
use siphasher::sip128::{Hasher128, SipHasher13};
use verge_config::model::{CachePolicy, Selection};

/// A request's primary key and its hash, worked out once: by `fresh_hit` for its lookup, kept for
/// pingora's (`cache_key_callback`) when the object is not served from there.
pub struct KeyedRequest {
    pub primary: String,
    pub hash: [u8; 16],
}

/// The 128-bit hash a primary key is stored under (pingora's `primary_bin`, set as its override so pingora
/// never hashes the key itself). SipHash-1-3 with 128-bit output and a key drawn at random per process:
/// a keyed PRF, so a viewer who cannot see the key cannot aim two requests at one hash, and 128 bits keep
/// accidental collisions at the birthday bound of 2^64 objects. A key collision would serve one object for
/// another, which is why this is neither shorter nor unkeyed; pingora's default (blake2b-128, unkeyed)
/// costs about ten times as many instructions per hit. The cache lives in memory, so the key need not
/// survive a restart.
pub fn key_hash(primary: &str) -> [u8; 16] {
    static KEYS: OnceLock<(u64, u64)> = OnceLock::new();
    let (k0, k1) = *KEYS.get_or_init(random_keys);
    let mut hasher = SipHasher13::new_with_keys(k0, k1);
    std::hash::Hasher::write(&mut hasher, primary.as_bytes());
    u128::from(hasher.finish128()).to_be_bytes()
}

/// Two random words from the OS (`RandomState` is seeded from it), without another dependency.
fn random_keys() -> (u64, u64) {
    use std::hash::{BuildHasher, Hasher};
    let word = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.finish()
    };
    (word(0x6b65_7930), word(0x6b65_7931))
}

/// `Accept-Encoding` normalised as CloudFront does: `br,gzip`, `gzip`, `br`, or none; with the policy's
/// zstd setting (verge's own), `zstd` first when the viewer accepts it.
pub fn normalised_accept_encoding(req: &RequestHeader, policy: &CachePolicy) -> Option<&'static str> {
    if !policy.accept_encoding_gzip && !policy.accept_encoding_brotli && !policy.accept_encoding_zstd {
        return None;
    }
    let (mut gzip, mut br, mut zstd) = (false, false, false);
    for value in req.headers.get_all(http::header::ACCEPT_ENCODING) {
        for token in value.to_str().unwrap_or("").split(',') {
            let mut parts = token.split(';');
            let coding = parts.next().unwrap_or("").trim();
            // `gzip;q=0` means "not gzip".
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            if refused {
                continue;
            }
            gzip |= coding.eq_ignore_ascii_case("gzip");
            br |= coding.eq_ignore_ascii_case("br");
            zstd |= coding.eq_ignore_ascii_case("zstd");
        }
    }
    let (br, gzip, zstd) =
        (br && policy.accept_encoding_brotli, gzip && policy.accept_encoding_gzip, zstd && policy.accept_encoding_zstd);
    match (zstd, br, gzip) {
        (false, true, true) => Some("br,gzip"),
        (false, true, false) => Some("br"),
        (false, false, true) => Some("gzip"),
        (false, false, false) => None,
        (true, true, true) => Some("zstd,br,gzip"),
        (true, true, false) => Some("zstd,br"),
        (true, false, true) => Some("zstd,gzip"),
        (true, false, false) => Some("zstd"),
    }
}

/// Query parameters (`&`-separated, order kept) that `selection` picks, joined with `&`.
pub fn select_query(query: &str, selection: &Selection) -> String {
    match selection {
        Selection::None => String::new(),
        Selection::All => query.to_string(),
        _ => {
            let mut out = String::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let name = pair.split('=').next().unwrap_or("");
                if selection.selects(name, false) {
                    if !out.is_empty() {
                        out.push('&');
                    }
                    out.push_str(pair);
                }
            }
            out
        }
    }
}

/// `name=value` cookies of the request, in order.
pub fn cookies(req: &RequestHeader) -> impl Iterator<Item = (&str, &str)> {
    req.headers
        .get_all(http::header::COOKIE)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            let (n, v) = c.trim().split_once('=')?;
            Some((n.trim(), v.trim()))
        })
}

/// The primary cache key string for this request under `policy`.
pub fn primary_key(domain: &str, req: &RequestHeader, policy: &CachePolicy) -> String {
    let path = req.uri.path();
    let query = select_query(req.uri.query().unwrap_or(""), &policy.query_strings);
    let mut key = String::with_capacity(path.len() + query.len() + domain.len() + 16);
    key.push_str(path);
    if !query.is_empty() {
        key.push('?');
        key.push_str(&query);
    }
    key.push('\0');
    key.push_str(domain);
    key.push('\0');
    if req.method == http::Method::OPTIONS {
        key.push_str("OPTIONS");
    }
    if let Selection::Whitelist(names) = &policy.headers {
        for name in names {
            key.push('\0');
            key.push_str(name);
            for v in req.headers.get_all(name.as_str()) {
                let _ = write!(key, "={}:", v.len());
                key.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
        }
    }
    if policy.cookies != Selection::None {
        key.push_str("\0c");
        for (name, value) in cookies(req).filter(|(n, _)| policy.cookies.selects(n, false)) {
            let _ = write!(key, "{}:{name}{}:{value}", name.len(), value.len());
        }
    }
    if let Some(ae) = normalised_accept_encoding(req, policy) {
        key.push_str("\0ae=");
        key.push_str(ae);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_are_stable_in_a_process_and_tell_keys_apart() {
        assert_eq!(key_hash("/a\0d"), key_hash("/a\0d"));
        assert_ne!(key_hash("/a\0d"), key_hash("/b\0d"));
        assert_ne!(key_hash(""), [0u8; 16]);
    }

    fn policy() -> CachePolicy {
        verge_config::managed::cache_policy("CachingOptimized").unwrap()
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn accept_encoding_normalised() {
        let p = policy();
        let ae = |v: &str| normalised_accept_encoding(&req("/", &[("accept-encoding", v)]), &p);
        assert_eq!(ae("gzip, deflate, br"), Some("br,gzip"));
        assert_eq!(ae("gzip"), Some("gzip"));
        assert_eq!(ae("br;q=1, gzip;q=0"), Some("br"));
        assert_eq!(ae("deflate"), None);
    }

    #[test]
    fn query_selection_keeps_order() {
        let w = Selection::Whitelist(vec!["w".into(), "q".into()]);
        assert_eq!(select_query("q=1&x=2&w=3", &w), "q=1&w=3");
        assert_eq!(select_query("a=1&b=2", &Selection::AllExcept(vec!["a".into()])), "b=2");
        assert_eq!(select_query("b=2&a=1", &Selection::All), "b=2&a=1");
    }

    #[test]
    fn key_starts_with_invalidation_path() {
        let mut p = policy();
        p.query_strings = Selection::Whitelist(vec!["w".into()]);
        let k = primary_key("d.example", &req("/img/a.jpg?x=1&w=3", &[]), &p);
        assert!(k.starts_with("/img/a.jpg?w=3\0"), "{k:?}");
        let a = primary_key("d", &req("/a?w=1", &[("accept-encoding", "gzip")]), &p);
        let b = primary_key("d", &req("/a?w=1", &[("accept-encoding", "br")]), &p);
        assert_ne!(a, b);
    }
}

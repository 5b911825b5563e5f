//! CloudFront's TTL algorithm (docs/cloudfront.md, "TTL", "Error caching and custom error pages") as a pure function of what the origin said.
//!
//! The cache policy decides where CloudFront and RFC 9111 differ: `default_ttl` applies only when the
//! origin gives no freshness, `min_ttl > 0` overrides no-cache/no-store/private, and a policy with
//! `min_ttl: 0, default_ttl: 0` behaves like a plain RFC 9111 shared cache.

/// Freshness facts read from one origin response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginFreshness {
    pub status: u16,
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub s_maxage: Option<u64>,
    pub max_age: Option<u64>,
    /// `Expires - Date` in seconds (negative: already expired); `None` when absent or invalid.
    pub expires_in: Option<i64>,
    /// The origin's `Age` header.
    pub age: u64,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// must-revalidate / proxy-revalidate: no stale serving.
    pub must_revalidate: bool,
    /// ETag or Last-Modified present (a zero-TTL object is still worth storing for revalidation).
    pub has_validators: bool,
    pub sets_cookie: bool,
    pub vary_star: bool,
}

/// The policy knobs the algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    pub min_ttl: u64,
    pub default_ttl: u64,
    pub max_ttl: u64,
    /// Whether cookies are in the cache key (then `Set-Cookie` responses may be cached).
    pub cookies_in_key: bool,
    /// `error_caching_min_ttl` of the custom error response for this status, else 10.
    pub error_caching_min_ttl: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Store { fresh_secs: u64, stale_while_revalidate: u64, stale_if_error: u64 },
    DoNotStore(&'static str),
}

/// Statuses cached like successes (RFC 9111 heuristically cacheable ones plus redirects, docs/cloudfront.md, "TTL").
const SUCCESS: &[u16] = &[200, 203, 204, 206, 300, 301, 302, 307, 308, 410];
/// Errors always cached, for `error_caching_min_ttl` or the origin's longer max-age (docs/cloudfront.md, "Error caching and custom error pages").
const ALWAYS_CACHED_ERRORS: &[u16] = &[404, 414, 500, 501, 502, 503, 504];
/// Errors cached only when the origin sent an explicit max-age / s-maxage / Expires.
const EXPLICIT_ONLY_ERRORS: &[u16] = &[400, 403, 405, 412, 415];

pub fn decide(o: &OriginFreshness, p: &TtlPolicy) -> Decision {
    if o.vary_star {
        return Decision::DoNotStore("vary-star");
    }
    if o.sets_cookie && !p.cookies_in_key {
        return Decision::DoNotStore("set-cookie");
    }
    let header_ttl = o.s_maxage.or(o.max_age).or(o.expires_in.map(|e| e.max(0) as u64));
    // Without an explicit stale-if-error, a stale copy stays usable when the origin fails (docs/cloudfront.md, "Error caching and custom error pages";
    // §10.12) for as long as the policy would keep any object: max_ttl past its expiry.
    let sie = o.stale_if_error.unwrap_or(p.max_ttl);
    let swr = if o.s_maxage.is_some() && o.stale_while_revalidate.is_none() {
        0
    } else {
        o.stale_while_revalidate.unwrap_or(0)
    };
    let store = |ttl: u64| Decision::Store {
        fresh_secs: ttl,
        stale_while_revalidate: if o.must_revalidate { 0 } else { swr },
        stale_if_error: if o.must_revalidate { 0 } else { sie },
    };

    let is_always_error = ALWAYS_CACHED_ERRORS.contains(&o.status);
    if is_always_error || EXPLICIT_ONLY_ERRORS.contains(&o.status) {
        let explicit = header_ttl.map(|v| v.min(p.max_ttl));
        let ttl = match explicit {
            Some(v) => v.max(p.error_caching_min_ttl).saturating_sub(o.age),
            None if is_always_error => p.error_caching_min_ttl,
            None => return Decision::DoNotStore("error-status-without-max-age"),
        };
        // A stale error is never worth keeping: it would only be served in place of a fresh answer
        // (with `error_caching_min_ttl: 0`, an error the origin says is stale is not stored).
        return if ttl == 0 { Decision::DoNotStore("stale-error") } else { store(ttl) };
    }
    if !SUCCESS.contains(&o.status) {
        return Decision::DoNotStore("status");
    }

    let ttl = if o.no_store || o.private || o.no_cache {
        if p.min_ttl == 0 {
            if o.no_cache && !o.no_store && !o.private && o.has_validators {
                // Stored, but stale at once: every use revalidates with the origin (RFC 9111 §5.2.2.4).
                return store(0);
            }
            return Decision::DoNotStore(if o.no_store {
                "no-store"
            } else if o.private {
                "private"
            } else {
                "no-cache"
            });
        }
        p.min_ttl
    } else {
        match header_ttl {
            None => p.default_ttl.max(p.min_ttl),
            Some(v) => v.clamp(p.min_ttl, p.max_ttl.max(p.min_ttl)).saturating_sub(o.age),
        }
    };
    if ttl == 0 && !o.has_validators && swr == 0 {
        return Decision::DoNotStore("zero-ttl");
    }
    store(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIMIZED: TtlPolicy = TtlPolicy {
        min_ttl: 1,
        default_ttl: 86_400,
        max_ttl: 31_536_000,
        cookies_in_key: false,
        error_caching_min_ttl: 10,
    };
    const RFC: TtlPolicy =
        TtlPolicy { min_ttl: 0, default_ttl: 0, max_ttl: 31_536_000, cookies_in_key: false, error_caching_min_ttl: 10 };
    const CLAMPED: TtlPolicy =
        TtlPolicy { min_ttl: 60, default_ttl: 300, max_ttl: 600, cookies_in_key: false, error_caching_min_ttl: 10 };

    fn ok() -> OriginFreshness {
        OriginFreshness { status: 200, ..Default::default() }
    }

    fn fresh(d: Decision) -> Option<u64> {
        match d {
            Decision::Store { fresh_secs, .. } => Some(fresh_secs),
            Decision::DoNotStore(_) => None,
        }
    }

    #[test]
    fn ttl_table() {
        let cases: Vec<(&str, OriginFreshness, TtlPolicy, Option<u64>)> = vec![
            ("nothing -> default", ok(), OPTIMIZED, Some(86_400)),
            ("nothing, rfc policy -> not stored", ok(), RFC, None),
            ("max-age wins over default", OriginFreshness { max_age: Some(120), ..ok() }, OPTIMIZED, Some(120)),
            (
                "s-maxage over max-age",
                OriginFreshness { max_age: Some(120), s_maxage: Some(30), ..ok() },
                OPTIMIZED,
                Some(30),
            ),
            (
                "max-age over expires",
                OriginFreshness { max_age: Some(120), expires_in: Some(9_999), ..ok() },
                OPTIMIZED,
                Some(120),
            ),
            ("expires alone", OriginFreshness { expires_in: Some(500), ..ok() }, OPTIMIZED, Some(500)),
            ("clamped up to min", OriginFreshness { max_age: Some(5), ..ok() }, CLAMPED, Some(60)),
            ("clamped down to max", OriginFreshness { max_age: Some(5_000), ..ok() }, CLAMPED, Some(600)),
            ("no header -> max(default, min)", ok(), CLAMPED, Some(300)),
            ("age counted", OriginFreshness { max_age: Some(100), age: 30, ..ok() }, OPTIMIZED, Some(70)),
            ("no-store honoured at min 0", OriginFreshness { no_store: true, ..ok() }, RFC, None),
            ("private honoured at min 0", OriginFreshness { private: true, ..ok() }, RFC, None),
            (
                "no-cache with validator: stored stale",
                OriginFreshness { no_cache: true, has_validators: true, ..ok() },
                RFC,
                Some(0),
            ),
            ("no-store overridden by min_ttl", OriginFreshness { no_store: true, ..ok() }, CLAMPED, Some(60)),
            ("private overridden by min_ttl", OriginFreshness { private: true, ..ok() }, OPTIMIZED, Some(1)),
            (
                "set-cookie not cached",
                OriginFreshness { sets_cookie: true, max_age: Some(60), ..ok() },
                OPTIMIZED,
                None,
            ),
            (
                "set-cookie cached when cookies in key",
                OriginFreshness { sets_cookie: true, max_age: Some(60), ..ok() },
                TtlPolicy { cookies_in_key: true, ..OPTIMIZED },
                Some(60),
            ),
            ("vary star never", OriginFreshness { vary_star: true, max_age: Some(60), ..ok() }, OPTIMIZED, None),
            ("404 for error min ttl", OriginFreshness { status: 404, ..ok() }, OPTIMIZED, Some(10)),
            (
                "503 with longer max-age",
                OriginFreshness { status: 503, max_age: Some(30), ..ok() },
                OPTIMIZED,
                Some(30),
            ),
            (
                "500 with no-store still error min ttl",
                OriginFreshness { status: 500, no_store: true, ..ok() },
                OPTIMIZED,
                Some(10),
            ),
            ("403 without max-age", OriginFreshness { status: 403, ..ok() }, OPTIMIZED, None),
            ("403 with max-age", OriginFreshness { status: 403, max_age: Some(20), ..ok() }, OPTIMIZED, Some(20)),
            ("416 never", OriginFreshness { status: 416, max_age: Some(20), ..ok() }, OPTIMIZED, None),
            ("401 never", OriginFreshness { status: 401, max_age: Some(20), ..ok() }, OPTIMIZED, None),
            ("301 cached", OriginFreshness { status: 301, ..ok() }, OPTIMIZED, Some(86_400)),
            ("max-age=0, rfc -> not stored", OriginFreshness { max_age: Some(0), ..ok() }, RFC, None),
        ];
        for (name, origin, policy, expected) in cases {
            assert_eq!(fresh(decide(&origin, &policy)), expected, "{name}");
        }
    }

    #[test]
    fn stale_windows() {
        let o =
            OriginFreshness { max_age: Some(10), stale_while_revalidate: Some(30), stale_if_error: Some(60), ..ok() };
        assert_eq!(
            decide(&o, &OPTIMIZED),
            Decision::Store { fresh_secs: 10, stale_while_revalidate: 30, stale_if_error: 60 }
        );
        let strict = OriginFreshness { must_revalidate: true, ..o };
        assert_eq!(
            decide(&strict, &OPTIMIZED),
            Decision::Store { fresh_secs: 10, stale_while_revalidate: 0, stale_if_error: 0 }
        );
    }
}

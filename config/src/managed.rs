//! CloudFront's managed cache and origin request policies, referable by name or by ID (docs/cloudfront.md, "Cache keys and policies").

use crate::model::{CachePolicy, HeaderForwarding, OriginRequestPolicy, Selection};

fn names(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

struct ManagedCache {
    name: &'static str,
    id: &'static str,
    ttl: (u64, u64, u64),
    headers: &'static [&'static str],
    cookies_all: bool,
    query: Option<&'static [&'static str]>,
    query_all: bool,
    gzip: bool,
    brotli: bool,
}

const MANAGED_CACHE: &[ManagedCache] = &[
    ManagedCache {
        name: "CachingOptimized",
        id: "658327ea-f89d-4fab-a63d-7e88639e58f6",
        ttl: (1, 86_400, 31_536_000),
        headers: &[],
        cookies_all: false,
        query: None,
        query_all: false,
        gzip: true,
        brotli: true,
    },
    ManagedCache {
        name: "CachingOptimizedForUncompressedObjects",
        id: "b2884449-e4de-46a7-ac36-70bc7f1ddd6d",
        ttl: (1, 86_400, 31_536_000),
        headers: &[],
        cookies_all: false,
        query: None,
        query_all: false,
        gzip: false,
        brotli: false,
    },
    ManagedCache {
        name: "CachingDisabled",
        id: "4135ea2d-6df8-44a3-9df3-4b5a84be39ad",
        ttl: (0, 0, 0),
        headers: &[],
        cookies_all: false,
        query: None,
        query_all: false,
        gzip: false,
        brotli: false,
    },
    ManagedCache {
        name: "UseOriginCacheControlHeaders",
        id: "83da9c7e-98b4-4e11-a168-04f0df8e2c65",
        ttl: (0, 0, 31_536_000),
        headers: &["host", "origin", "x-http-method-override", "x-http-method", "x-method-override"],
        cookies_all: true,
        query: None,
        query_all: false,
        gzip: true,
        brotli: true,
    },
    ManagedCache {
        name: "UseOriginCacheControlHeaders-QueryStrings",
        id: "4cc15a8a-d715-48a4-82b8-cc0b614638fe",
        ttl: (0, 0, 31_536_000),
        headers: &["host", "origin", "x-http-method-override", "x-http-method", "x-method-override"],
        cookies_all: true,
        query: None,
        query_all: true,
        gzip: true,
        brotli: true,
    },
    ManagedCache {
        name: "Elemental-MediaPackage",
        id: "08627262-05a9-4f76-9ded-b50ca2e3a84f",
        ttl: (0, 86_400, 31_536_000),
        headers: &["origin"],
        cookies_all: false,
        query: Some(&["aws.manifestfilter", "start", "end", "m"]),
        query_all: false,
        gzip: true,
        brotli: false,
    },
    ManagedCache {
        name: "Amplify",
        id: "2e54312d-136d-493c-8eb9-b001f22f67d2",
        ttl: (2, 2, 600),
        headers: &["authorization", "cloudfront-viewer-country", "host"],
        cookies_all: true,
        query: None,
        query_all: true,
        gzip: true,
        brotli: true,
    },
];

/// The managed cache policy called `name_or_id`, if there is one.
pub fn cache_policy(name_or_id: &str) -> Option<CachePolicy> {
    let m = MANAGED_CACHE.iter().find(|m| m.name == name_or_id || m.id == name_or_id)?;
    let headers = if m.headers.is_empty() { Selection::None } else { Selection::Whitelist(names(m.headers)) };
    let query_strings = match (m.query_all, m.query) {
        (true, _) => Selection::All,
        (false, Some(items)) => Selection::Whitelist(names(items)),
        (false, None) => Selection::None,
    };
    Some(CachePolicy {
        name: m.name.to_string(),
        min_ttl: m.ttl.0,
        default_ttl: m.ttl.1,
        max_ttl: m.ttl.2,
        headers,
        cookies: if m.cookies_all { Selection::All } else { Selection::None },
        query_strings,
        accept_encoding_gzip: m.gzip,
        accept_encoding_brotli: m.brotli,
        accept_encoding_zstd: false,
    })
}

/// The managed origin request policy called `name_or_id`, if there is one.
pub fn origin_request_policy(name_or_id: &str) -> Option<OriginRequestPolicy> {
    let (name, headers, cookies, query_strings) = match name_or_id {
        "AllViewer" | "216adef6-5c7f-47e4-b989-5492eafa07d3" => {
            ("AllViewer", HeaderForwarding::AllViewer, Selection::All, Selection::All)
        }
        "AllViewerAndCloudFrontHeaders-2022-06" | "33f36d7e-f396-46d9-90e0-52428a34d9dc" => (
            "AllViewerAndCloudFrontHeaders-2022-06",
            // CloudFront's list for this policy; verge fills the connection-level ones (the device and
            // geo ones are not made yet, so they are not added).
            HeaderForwarding::AllViewerAndWhitelistCloudFront(names(&[
                "cloudfront-forwarded-proto",
                "cloudfront-is-android-viewer",
                "cloudfront-is-desktop-viewer",
                "cloudfront-is-ios-viewer",
                "cloudfront-is-mobile-viewer",
                "cloudfront-is-smarttv-viewer",
                "cloudfront-is-tablet-viewer",
                "cloudfront-viewer-address",
                "cloudfront-viewer-asn",
                "cloudfront-viewer-city",
                "cloudfront-viewer-country",
                "cloudfront-viewer-country-name",
                "cloudfront-viewer-country-region",
                "cloudfront-viewer-country-region-name",
                "cloudfront-viewer-http-version",
                "cloudfront-viewer-latitude",
                "cloudfront-viewer-longitude",
                "cloudfront-viewer-metro-code",
                "cloudfront-viewer-postal-code",
                "cloudfront-viewer-time-zone",
                "cloudfront-viewer-tls",
            ])),
            Selection::All,
            Selection::All,
        ),
        "AllViewerExceptHostHeader" | "b689b0a8-53d0-40ab-baf2-68738e2966ac" => (
            "AllViewerExceptHostHeader",
            HeaderForwarding::Select(Selection::AllExcept(names(&["host"]))),
            Selection::All,
            Selection::All,
        ),
        "CORS-CustomOrigin" | "59781a5b-3903-41f3-afcb-af62929ccde1" => (
            "CORS-CustomOrigin",
            HeaderForwarding::Select(Selection::Whitelist(names(&["origin"]))),
            Selection::None,
            Selection::None,
        ),
        "CORS-S3Origin" | "88a5eaf4-2fd4-4709-b370-b4c650ea3fcf" => (
            "CORS-S3Origin",
            HeaderForwarding::Select(Selection::Whitelist(names(&[
                "origin",
                "access-control-request-headers",
                "access-control-request-method",
            ]))),
            Selection::None,
            Selection::None,
        ),
        "UserAgentRefererHeaders" | "acba4595-bd28-49b8-b9fe-13317c0390fa" => (
            "UserAgentRefererHeaders",
            HeaderForwarding::Select(Selection::Whitelist(names(&["user-agent", "referer"]))),
            Selection::None,
            Selection::None,
        ),
        "Elemental-MediaTailor-PersonalizedManifests" | "775133bc-15f2-49f9-abea-afb2e0bf67d2" => (
            "Elemental-MediaTailor-PersonalizedManifests",
            HeaderForwarding::Select(Selection::Whitelist(names(&[
                "origin",
                "access-control-request-headers",
                "x-forwarded-for",
                "access-control-request-method",
                "user-agent",
            ]))),
            Selection::None,
            Selection::All,
        ),
        _ => return None,
    };
    Some(OriginRequestPolicy { name: name.to_string(), headers, cookies, query_strings })
}

/// Names of every managed cache policy (for error messages and docs).
pub fn cache_policy_names() -> impl Iterator<Item = &'static str> {
    MANAGED_CACHE.iter().map(|m| m.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_cache_policies_by_name_and_id() {
        let ttl = |n: &str| cache_policy(n).map(|p| (p.min_ttl, p.default_ttl, p.max_ttl));
        assert_eq!(ttl("CachingOptimized"), Some((1, 86_400, 31_536_000)));
        assert_eq!(ttl("658327ea-f89d-4fab-a63d-7e88639e58f6"), ttl("CachingOptimized"));
        assert_eq!(ttl("CachingOptimizedForUncompressedObjects"), Some((1, 86_400, 31_536_000)));
        assert_eq!(ttl("CachingDisabled"), Some((0, 0, 0)));
        assert_eq!(ttl("UseOriginCacheControlHeaders"), Some((0, 0, 31_536_000)));
        assert_eq!(ttl("UseOriginCacheControlHeaders-QueryStrings"), Some((0, 0, 31_536_000)));
        assert_eq!(ttl("Elemental-MediaPackage"), Some((0, 86_400, 31_536_000)));
        assert_eq!(ttl("Amplify"), Some((2, 2, 600)));
        assert_eq!(ttl("cachingoptimized"), None, "names are case-sensitive");
        let optimized = cache_policy("CachingOptimized").unwrap();
        assert!(optimized.accept_encoding_gzip && optimized.accept_encoding_brotli);
        assert_eq!(optimized.query_strings, Selection::None);
        assert!(!cache_policy("CachingOptimizedForUncompressedObjects").unwrap().accept_encoding_gzip);
        assert_eq!(cache_policy("UseOriginCacheControlHeaders-QueryStrings").unwrap().query_strings, Selection::All);
        assert_eq!(cache_policy("Amplify").unwrap().cookies, Selection::All);
    }

    #[test]
    fn managed_origin_request_policies() {
        let all = origin_request_policy("AllViewer").unwrap();
        assert!(all.forwards_header("Host") && all.forwards_header("x-anything"));
        let except_host = origin_request_policy("AllViewerExceptHostHeader").unwrap();
        assert!(!except_host.forwards_header("host") && except_host.forwards_header("accept"));
        let cors = origin_request_policy("59781a5b-3903-41f3-afcb-af62929ccde1").unwrap();
        assert_eq!(cors.name, "CORS-CustomOrigin");
        assert!(cors.forwards_header("Origin") && !cors.forwards_header("cookie"));
        assert!(origin_request_policy("Nope").is_none());
    }
}

//! What verge knows of the viewer's connection (scheme, address, HTTP version, TLS) and CloudFront's
//! connection-level headers made from it (`CloudFront-Forwarded-Proto`, `CloudFront-Viewer-Address`,
//! `CloudFront-Viewer-HTTP-Version`, `CloudFront-Viewer-TLS`) and the device headers
//! (`CloudFront-Is-*-Viewer`, from the User-Agent: `device.rs`) and location (`CloudFront-Viewer-Country`
//! and the rest, from MaxMind databases: `geo.rs`): added to the request after
//! viewer-request when the behavior's cache or origin request policy names them, so the cache key,
//! origin-facing functions and the origin see them. `CloudFront-*` headers a viewer sends are removed
//! before viewer-request: they are the edge's to set.

use pingora_http::RequestHeader;
use pingora_proxy::Session;
use verge_config::model::{Behavior, HeaderForwarding, Selection};

/// The `CloudFront-*` headers verge can make (connection, device, then location: `geo.rs`), lower case;
/// a behavior's `EdgeHeaders` mask has bit i for `CLOUDFRONT_HEADERS[i]`.
pub const CLOUDFRONT_HEADERS: [&str; 21] = [
    "cloudfront-forwarded-proto",
    "cloudfront-viewer-address",
    "cloudfront-viewer-http-version",
    "cloudfront-viewer-tls",
    "cloudfront-is-desktop-viewer",
    "cloudfront-is-mobile-viewer",
    "cloudfront-is-tablet-viewer",
    "cloudfront-is-smarttv-viewer",
    "cloudfront-is-ios-viewer",
    "cloudfront-is-android-viewer",
    "cloudfront-viewer-country",
    "cloudfront-viewer-country-name",
    "cloudfront-viewer-country-region",
    "cloudfront-viewer-country-region-name",
    "cloudfront-viewer-city",
    "cloudfront-viewer-postal-code",
    "cloudfront-viewer-time-zone",
    "cloudfront-viewer-latitude",
    "cloudfront-viewer-longitude",
    "cloudfront-viewer-metro-code",
    "cloudfront-viewer-asn",
];

/// Where the location headers start in `CLOUDFRONT_HEADERS`.
pub const GEO_FIRST: usize = 10;

/// Which `CloudFront-*` headers a behavior's policies ask for, worked out once per distribution load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdgeHeaders(u32);

impl EdgeHeaders {
    pub fn of(behavior: &Behavior) -> Self {
        let mut mask = 0;
        for (i, header) in CLOUDFRONT_HEADERS.iter().enumerate() {
            if asked_for(behavior, header) {
                mask |= 1 << i;
            }
        }
        Self(mask)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether a location header (`CloudFront-Viewer-Country`, …) is asked for.
    pub fn wants_location(self) -> bool {
        self.geo() != 0
    }

    fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    /// The location headers asked for, as bits from `GEO_FIRST` on.
    fn geo(self) -> u16 {
        (self.0 >> GEO_FIRST) as u16
    }
}

/// Whether the viewer's connection to verge is TLS.
pub fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// Sets `Host` from the request's `:authority` when there is no `Host` (HTTP/2).
pub fn host_from_authority(req: &mut RequestHeader) {
    if req.headers.contains_key(http::header::HOST) {
        return;
    }
    if let Some(authority) = req.uri.authority().map(|a| a.as_str().to_owned()) {
        let _ = req.insert_header(http::header::HOST, authority);
    }
}

/// Removes every `CloudFront-*` header the viewer sent (no allocation when there is none).
pub fn strip_viewer_cloudfront_headers(req: &mut RequestHeader) {
    let is_edge = |name: &str| name.len() > 11 && name.as_bytes()[..11].eq_ignore_ascii_case(b"cloudfront-");
    if !req.headers.keys().any(|n| is_edge(n.as_str())) {
        return;
    }
    let names: Vec<http::HeaderName> = req.headers.keys().filter(|n| is_edge(n.as_str())).cloned().collect();
    for name in names {
        req.remove_header(&name);
    }
}

/// Whether a policy of the behavior names `header` (lower case) explicitly: CloudFront adds its headers
/// only when asked by name (a whitelist, or the CloudFront list of `allViewerAndWhitelistCloudFront`).
fn asked_for(behavior: &Behavior, header: &str) -> bool {
    let listed = |items: &[String]| items.iter().any(|i| i.eq_ignore_ascii_case(header));
    if let Selection::Whitelist(items) = &behavior.cache_policy.headers {
        if listed(items) {
            return true;
        }
    }
    match behavior.origin_request_policy.as_ref().map(|p| &p.headers) {
        Some(HeaderForwarding::Select(Selection::Whitelist(items)))
        | Some(HeaderForwarding::AllViewerAndWhitelistCloudFront(items)) => listed(items),
        _ => false,
    }
}

/// Adds the `CloudFront-*` headers the behavior asks for (`wanted`); `https` is the viewer's scheme as
/// verge believes it (a TLS listener, or a trusted proxy's word), `forwarded_client` the client a
/// trusted proxy named in `X-Forwarded-For` (else the connection's peer is the viewer), `geo` the
/// location databases (no location headers without them).
pub fn add_cloudfront_headers(
    session: &mut Session,
    wanted: EdgeHeaders,
    https: bool,
    forwarded_client: Option<std::net::SocketAddr>,
    geo: Option<&super::geo::GeoDatabases>,
) {
    if wanted.is_empty() {
        return;
    }
    let viewer = forwarded_client.or_else(|| session.client_addr().and_then(|a| a.as_inet()).copied());
    let mut values: Vec<(&'static str, http::HeaderValue)> = Vec::with_capacity(4);
    let mut device = None;
    let flag = |on: bool| http::HeaderValue::from_static(if on { "true" } else { "false" });
    for (i, header) in CLOUDFRONT_HEADERS[..GEO_FIRST].iter().enumerate() {
        if !wanted.has(i) {
            continue;
        }
        let value = match *header {
            "cloudfront-forwarded-proto" => Some(http::HeaderValue::from_static(if https { "https" } else { "http" })),
            "cloudfront-viewer-address" => {
                viewer.and_then(|a| http::HeaderValue::from_str(&format!("{}:{}", a.ip(), a.port())).ok())
            }
            "cloudfront-viewer-http-version" => {
                Some(http::HeaderValue::from_static(http_version(session.req_header().version)))
            }
            h if h.starts_with("cloudfront-is-") => {
                let d = *device.get_or_insert_with(|| {
                    let ua = session.req_header().headers.get(http::header::USER_AGENT);
                    super::device::classify(ua.and_then(|v| v.to_str().ok()).unwrap_or(""))
                });
                Some(flag(match h {
                    "cloudfront-is-desktop-viewer" => d.desktop,
                    "cloudfront-is-mobile-viewer" => d.mobile,
                    "cloudfront-is-tablet-viewer" => d.tablet,
                    "cloudfront-is-smarttv-viewer" => d.smarttv,
                    "cloudfront-is-ios-viewer" => d.ios,
                    _ => d.android,
                }))
            }
            _ => session.digest().and_then(|d| d.ssl_digest.as_ref()).and_then(|tls| {
                // verge cannot see whether rustls resumed the session (pingora does not expose it).
                let text = format!("{}:{}:fullHandshake", protocol_name(&tls.version), cipher_name(&tls.cipher));
                http::HeaderValue::from_str(&text).ok()
            }),
        };
        if let Some(value) = value {
            values.push((header, value));
        }
    }
    if let (Some(geo), Some(viewer)) = (geo, viewer) {
        if wanted.geo() != 0 {
            values.extend(geo.headers(viewer.ip(), wanted.geo()));
        }
    }
    let req = session.req_header_mut();
    for (name, value) in values {
        let _ = req.insert_header(name, value);
    }
}

/// CloudFront's spelling of the viewer's HTTP version.
fn http_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2.0",
        http::Version::HTTP_3 => "3.0",
        _ => "1.1",
    }
}

/// `TLSv1_3` (rustls) as `TLSv1.3` (CloudFront, OpenSSL).
pub fn protocol_name(rustls: &str) -> String {
    rustls.replace('_', ".")
}

/// rustls' IANA suite names as the OpenSSL names CloudFront logs.
pub fn cipher_name(iana: &str) -> &str {
    match iana {
        "TLS13_AES_128_GCM_SHA256" => "TLS_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384" => "TLS_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256" => "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => "ECDHE-ECDSA-CHACHA20-POLY1305",
        other => other,
    }
}

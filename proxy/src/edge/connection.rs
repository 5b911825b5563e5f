//! What verge knows of the viewer's connection (scheme, address, HTTP version, TLS) and CloudFront's
//! connection-level headers made from it (`CloudFront-Forwarded-Proto`, `CloudFront-Viewer-Address`,
//! `CloudFront-Viewer-HTTP-Version`, `CloudFront-Viewer-TLS`) and the device headers
//! (`CloudFront-Is-*-Viewer`, from the User-Agent: `device.rs`): added to the request after
//! viewer-request when the behavior's cache or origin request policy names them, so the cache key,
//! origin-facing functions and the origin see them. `CloudFront-*` headers a viewer sends are removed
//! before viewer-request: they are the edge's to set.

use pingora_http::RequestHeader;
use pingora_proxy::Session;
use verge_config::model::{Behavior, HeaderForwarding, Selection};

/// The `CloudFront-*` headers verge can make (connection and device), lower case.
pub const CONNECTION_HEADERS: [&str; 10] = [
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
];

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

/// Adds the connection-level headers the behavior asks for; `https` is the viewer's scheme as verge
/// believes it (a TLS listener, or a trusted proxy's word), `forwarded_client` the client a trusted
/// proxy named in `X-Forwarded-For` (else the connection's peer is the viewer).
pub fn add_cloudfront_headers(
    session: &mut Session,
    behavior: &Behavior,
    https: bool,
    forwarded_client: Option<std::net::SocketAddr>,
) {
    if !CONNECTION_HEADERS.iter().any(|h| asked_for(behavior, h)) {
        return;
    }
    let mut values: Vec<(&'static str, String)> = Vec::with_capacity(4);
    let mut device = None;
    let flag = |on: bool| if on { "true" } else { "false" }.to_string();
    for header in CONNECTION_HEADERS {
        if !asked_for(behavior, header) {
            continue;
        }
        let value = match header {
            "cloudfront-forwarded-proto" => Some(if https { "https" } else { "http" }.to_string()),
            "cloudfront-viewer-address" => forwarded_client
                .or_else(|| session.client_addr().and_then(|a| a.as_inet()).copied())
                .map(|a| format!("{}:{}", a.ip(), a.port())),
            "cloudfront-viewer-http-version" => Some(http_version(session.req_header().version).to_string()),
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
            _ => session.digest().and_then(|d| d.ssl_digest.as_ref()).map(|tls| {
                // verge cannot see whether rustls resumed the session (pingora does not expose it).
                format!("{}:{}:fullHandshake", protocol_name(&tls.version), cipher_name(&tls.cipher))
            }),
        };
        if let Some(value) = value {
            values.push((header, value));
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

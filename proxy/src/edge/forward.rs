//! Builds the request verge sends to an origin (docs/cloudfront.md, "Headers verge adds"): origin path, forwarding per cache and
//! origin request policy, custom headers, X-Forwarded-For, Via, request id, hop-by-hop headers removed.
//! Two forms from one set of rules: a header map pingora sends (`origin_request`), or the request's
//! bytes for verge's own pass exchange (`render_origin_request`, pass_through.rs).

use http::header::{self, HeaderName};
use pingora_error::Result;
use pingora_http::{CaseHeaderName, RequestHeader};
use verge_config::model::{Behavior, Origin, Selection};

use crate::cache::key::{cookies, normalised_accept_encoding};

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus proxy-only ones; never forwarded.
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "upgrade"];

/// Names verge sets on every origin request, parsed once, with the case CloudFront sends them in.
static X_FORWARDED_FOR: (HeaderName, CaseHeaderName) =
    (HeaderName::from_static("x-forwarded-for"), CaseHeaderName::from_static("X-Forwarded-For"));
static X_AMZ_CF_ID: (HeaderName, CaseHeaderName) =
    (HeaderName::from_static("x-amz-cf-id"), CaseHeaderName::from_static("X-Amz-Cf-Id"));

/// Headers forwarded whatever the policies say: message framing and request semantics.
const ALWAYS_FORWARDED: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "cache-control",
    "pragma",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
    "date",
    "from",
    "max-forwards",
    "warning",
    "expect",
];

/// Whether the viewer header `name` (lower-case) reaches the origin under the behavior's policies.
pub fn forwards(behavior: &Behavior, name: &str) -> bool {
    if ALWAYS_FORWARDED.contains(&name) {
        return true;
    }
    if behavior.cache_policy.headers.selects(name, true) {
        return true;
    }
    behavior.origin_request_policy.as_ref().is_some_and(|p| p.forwards_header(name))
}

/// Union of the cache key's and the origin request policy's selection for query strings / cookies.
fn selected(key: &Selection, request: Option<&Selection>, name: &str) -> bool {
    key.selects(name, false) || request.is_some_and(|r| r.selects(name, false))
}

/// Where an origin request goes.
pub struct OriginTarget<'a> {
    pub origin: &'a Origin,
    /// The origin path to prefix; "" for the origin-request event, which shows it in `origin.custom.path`.
    pub path: &'a str,
    /// `host_header(origin, tls)` for the connection's TLS or not (built with the snapshot).
    pub host: &'a http::HeaderValue,
}

/// The target the origin is sent, when it is not the viewer's own: the viewer's URI stands when it is
/// in origin form (`/path?query`, not a viewer's absolute form), there is no origin path to prefix and
/// its query goes whole (every query string forwarded, or none to filter); otherwise it is rebuilt.
fn rebuilt_target(req: &RequestHeader, behavior: &Behavior, origin_path: &str) -> Option<String> {
    let orp = behavior.origin_request_policy.as_deref();
    let policy = &behavior.cache_policy;
    let query = req.uri.query().unwrap_or("");
    let whole_query = matches!(
        (&policy.query_strings, orp.map(|p| &p.query_strings)),
        (Selection::All, _) | (_, Some(Selection::All))
    );
    // pingora keeps only the path in the URI of an absolute-form target and writes the target's raw
    // bytes (`raw_path`) upstream until the URI is set again.
    let origin_form = req.raw_path().starts_with(b"/");
    if origin_form && origin_path.is_empty() && (whole_query || query.is_empty()) {
        return None;
    }
    let mut forwarded_query = String::new();
    if whole_query {
        forwarded_query.push_str(query);
    } else {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let name = pair.split('=').next().unwrap_or("");
            if selected(&policy.query_strings, orp.map(|p| &p.query_strings), name) {
                if !forwarded_query.is_empty() {
                    forwarded_query.push('&');
                }
                forwarded_query.push_str(pair);
            }
        }
    }
    let mut uri = String::with_capacity(origin_path.len() + req.uri.path().len() + forwarded_query.len() + 1);
    uri.push_str(origin_path);
    uri.push_str(req.uri.path());
    if !forwarded_query.is_empty() {
        uri.push('?');
        uri.push_str(&forwarded_query);
    }
    Some(uri)
}

/// The viewer's cookies the cache key or the origin request policy selects, as one `Cookie` value.
fn kept_cookies(req: &RequestHeader, behavior: &Behavior) -> Option<String> {
    let orp = behavior.origin_request_policy.as_deref();
    let policy = &behavior.cache_policy;
    if !req.headers.contains_key(header::COOKIE) {
        return None;
    }
    let cookie_selected = |name: &str| selected(&policy.cookies, orp.map(|p| &p.cookies), name);
    let kept: Vec<String> = cookies(req).filter(|(n, _)| cookie_selected(n)).map(|(n, v)| format!("{n}={v}")).collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// The `Accept-Encoding` the origin is sent: the normalised one when the cache policy normalises it
/// (computed from the viewer's, which is never forwarded as it is).
fn origin_accept_encoding(req: &RequestHeader, behavior: &Behavior) -> Option<&'static str> {
    let policy = &behavior.cache_policy;
    (policy.accept_encoding_gzip || policy.accept_encoding_brotli)
        .then(|| normalised_accept_encoding(req, policy).unwrap_or("identity"))
}

/// Whether the viewer's field `name` (lower case) goes to the origin as it is. `X-Edge-*` and
/// `X-Amz-Cf-*` are the edge's; a viewer's `CloudFront-*` headers were removed before viewer-request
/// (edge/connection.rs), so those left are verge's own, forwarded when a policy names them.
fn passes_on(behavior: &Behavior, name: &str, forward_host: bool) -> bool {
    !HOP_BY_HOP.contains(&name)
        && name != "cookie"
        && (name != "host" || forward_host)
        && name != "accept-encoding"
        && forwards(behavior, name)
        && !name.starts_with("x-edge-")
        && !name.starts_with("x-amz-cf-")
}

/// The viewer's `X-Forwarded-For` with the client appended.
fn forwarded_for(previous: Option<&str>, ip: &str) -> String {
    match previous {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.to_owned(),
    }
}

/// The fields `origin_request` may add besides the origin's custom headers: `Cookie`,
/// `Accept-Encoding`, `Host`, `User-Agent`, `X-Forwarded-For`, `Via`, `X-Amz-Cf-Id`.
const ADDED_FIELDS: usize = 7;

/// Rewrites `req` (a copy of the viewer request) into the origin request.
pub fn origin_request(
    req: &mut RequestHeader,
    behavior: &Behavior,
    target: OriginTarget<'_>,
    client_ip: Option<&str>,
    via: &http::HeaderValue,
    request_id: &str,
) -> Result<()> {
    let OriginTarget { origin, path: origin_path, host } = target;
    if let Some(uri) = rebuilt_target(req, behavior, origin_path) {
        req.set_uri(uri.parse().map_err(|e| {
            pingora_error::Error::because(pingora_error::ErrorType::InvalidHTTPHeader, "origin uri", e)
        })?);
    }
    let kept_cookies = kept_cookies(req, behavior);
    // Computed before the viewer's Accept-Encoding is dropped below.
    let accept_encoding = origin_accept_encoding(req, behavior);

    // Headers: drop what the policies do not forward. The viewer's X-Forwarded-For is always extended.
    let forward_host = forwards(behavior, "host");
    let previous_xff = req.headers.get(&X_FORWARDED_FOR.0).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let dropped: Vec<HeaderName> =
        req.headers.keys().filter(|name| !passes_on(behavior, name.as_str(), forward_host)).cloned().collect();
    for name in &dropped {
        req.remove_header(name);
    }
    // Room for the fields added below in one step (pingora's copy of the viewer's request has none:
    // its map grew two or three times over these inserts).
    req.reserve_headers(ADDED_FIELDS + origin.custom_headers.len());
    if let Some(cookies) = kept_cookies {
        req.insert_header(header::COOKIE, cookies)?;
    }
    if let Some(ae) = accept_encoding {
        req.insert_header(header::ACCEPT_ENCODING, ae)?;
    }
    // Values built once (the snapshot's) or borrowed where they can be: no formatting per miss.
    if !forward_host {
        req.insert_header(header::HOST, host.clone())?;
    }
    if !forwards(behavior, "user-agent") {
        req.insert_header(header::USER_AGENT, http::HeaderValue::from_static("verge"))?;
    }
    if let Some(ip) = client_ip.filter(|ip| !ip.is_empty()) {
        match previous_xff {
            Some(prev) => req.insert_header(X_FORWARDED_FOR.clone(), forwarded_for(Some(&prev), ip))?,
            None => req.insert_header(X_FORWARDED_FOR.clone(), ip)?,
        }
    }
    match req.headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            let chained = format!("{prev}, {}", via.to_str().unwrap_or_default());
            req.insert_header(header::VIA, chained)?
        }
        None => req.insert_header(header::VIA, via.clone())?,
    }
    req.insert_header(X_AMZ_CF_ID.clone(), request_id)?;
    for (name, value) in &origin.custom_headers {
        req.insert_header(name.clone(), value.as_str())?;
    }
    Ok(())
}

/// The origin request `origin_request` makes of `req`, rendered as HTTP/1.1 bytes into `out` (request
/// line, fields, blank line) without copying the viewer's header map: for a request with no body,
/// upgrade, `Connection` options or absolute-form target (pass_through.rs checks). The same fields,
/// values and request line as pingora would send from `origin_request`'s map; only their order and
/// the names' case may differ (`pass_through` tests compare the two).
pub fn render_origin_request(
    req: &RequestHeader,
    behavior: &Behavior,
    target: OriginTarget<'_>,
    client_ip: Option<&str>,
    via: &http::HeaderValue,
    request_id: &str,
    out: &mut bytes::BytesMut,
) {
    use bytes::BufMut;
    let OriginTarget { origin, path: origin_path, host } = target;
    out.put_slice(req.method.as_str().as_bytes());
    out.put_u8(b' ');
    match rebuilt_target(req, behavior, origin_path) {
        Some(uri) => out.put_slice(uri.as_bytes()),
        None => out.put_slice(req.raw_path()),
    }
    out.put_slice(b" HTTP/1.1\r\n");
    let forward_host = forwards(behavior, "host");
    let mut previous_xff = None;
    let mut previous_via = None;
    // Whether there are cookies to choose from, seen on the way (not a lookup of its own).
    let mut has_cookie = false;
    let replaced = |name: &str| origin.custom_headers.iter().any(|(custom, _)| custom.eq_ignore_ascii_case(name));
    for (name, value) in req.headers.iter() {
        has_cookie |= *name == header::COOKIE;
        if *name == X_FORWARDED_FOR.0 {
            previous_xff = previous_xff.or(Some(value));
            continue;
        }
        let n = name.as_str();
        if !passes_on(behavior, n, forward_host) {
            continue;
        }
        if *name == header::VIA {
            previous_via = previous_via.or(Some(value));
            continue;
        }
        if !origin.custom_headers.is_empty() && replaced(n) {
            continue;
        }
        put_field(out, n.as_bytes(), value.as_bytes());
    }
    if let Some(cookies) = has_cookie.then(|| kept_cookies(req, behavior)).flatten() {
        put_line(out, b"Cookie: ", cookies.as_bytes());
    }
    if let Some(ae) = origin_accept_encoding(req, behavior) {
        put_line(out, b"Accept-Encoding: ", ae.as_bytes());
    }
    if !forward_host {
        put_line(out, b"Host: ", host.as_bytes());
    }
    if !forwards(behavior, "user-agent") {
        put_line(out, b"User-Agent: ", b"verge");
    }
    if let Some(ip) = client_ip.filter(|ip| !ip.is_empty()) {
        match previous_xff.and_then(|v| v.to_str().ok()) {
            Some(prev) => put_line(out, b"X-Forwarded-For: ", forwarded_for(Some(prev), ip).as_bytes()),
            None => put_line(out, b"X-Forwarded-For: ", ip.as_bytes()),
        }
    }
    match previous_via.and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            out.put_slice(b"Via: ");
            out.put_slice(prev.as_bytes());
            out.put_slice(b", ");
            out.put_slice(via.as_bytes());
            out.put_slice(b"\r\n");
        }
        None => put_line(out, b"Via: ", via.as_bytes()),
    }
    put_line(out, b"X-Amz-Cf-Id: ", request_id.as_bytes());
    for (name, value) in &origin.custom_headers {
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// A field whose name comes with its `: ` (one copy fewer than `put_field`).
fn put_line(out: &mut bytes::BytesMut, name_colon: &[u8], value: &[u8]) {
    use bytes::BufMut;
    out.put_slice(name_colon);
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// `name: value` and its line end.
fn put_field(out: &mut bytes::BytesMut, name: &[u8], value: &[u8]) {
    use bytes::BufMut;
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// The origin's `Host`: its domain name (an IPv6 address in brackets), with the port unless it is the
/// scheme's default.
pub(crate) fn host_header(origin: &Origin, tls: bool) -> String {
    let (port, default) = if tls { (origin.https_port, 443) } else { (origin.http_port, 80) };
    let name =
        if origin.domain_name.contains(':') { format!("[{}]", origin.domain_name) } else { origin.domain_name.clone() };
    if port == default {
        name
    } else {
        format!("{name}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(domain_name: &str, http_port: u16, https_port: u16) -> Origin {
        Origin {
            id: "o".into(),
            domain_name: domain_name.into(),
            http_port,
            https_port,
            protocol_policy: verge_config::model::ProtocolPolicy::HttpOnly,
            ca_bundle_file: None,
            origin_shield: false,
            origin_path: String::new(),
            custom_headers: Vec::new(),
            connection_attempts: 1,
            connection_timeout_secs: 1,
            read_timeout_secs: 1,
            keepalive_timeout_secs: 1,
        }
    }

    #[test]
    fn host_names_the_port_only_when_it_is_not_the_schemes_default() {
        assert_eq!(host_header(&origin("example.com", 80, 443), false), "example.com");
        assert_eq!(host_header(&origin("example.com", 80, 443), true), "example.com");
        assert_eq!(host_header(&origin("example.com", 8080, 8443), true), "example.com:8443");
        assert_eq!(host_header(&origin("example.com", 8080, 443), false), "example.com:8080");
        assert_eq!(host_header(&origin("2001:db8::1", 80, 8443), false), "[2001:db8::1]");
        assert_eq!(host_header(&origin("2001:db8::1", 80, 8443), true), "[2001:db8::1]:8443");
    }
}

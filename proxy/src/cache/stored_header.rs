//! What a stored response's header keeps: fields a cache must not store (RFC 9111 §3.1), and the update a
//! `304` brings to the stored header on revalidation (RFC 9111 §3.2, §4.3.4).

use http::header::{self, HeaderValue};
use pingora_http::ResponseHeader;

/// Fields a `304` never changes in the stored header: the stored body's own description (its length,
/// coding, digest and range) and its validator (the suite at cache-tests.fyi, which verge follows here).
const NOT_UPDATED_BY_304: &[&str] = &["content-length", "content-encoding", "content-range", "content-md5", "etag"];

/// Connection-scoped fields: never stored, never taken from a `304`.
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "trailer"];

/// Connection-scoped fields the stored copy drops outright (`Connection` itself is replaced on every
/// response, `Transfer-Encoding` is the store's to settle when the body's length is known). Parsed once:
/// most responses have none of them, and a lookup by a parsed name is a fraction of a removal by text.
static CONNECTION_SCOPED: [header::HeaderName; 5] = [
    header::HeaderName::from_static("keep-alive"),
    header::HeaderName::from_static("proxy-connection"),
    header::TE,
    header::UPGRADE,
    header::TRAILER,
];

/// Removes what a shared cache must not store: connection-scoped fields and the fields a `Connection`
/// header names (RFC 9110 §7.6.1), and the fields a qualified `no-cache="..."` or `private="..."` names
/// (RFC 9111 §5.2.2.4, §5.2.2.7: a stored response is reused without them). Every hit, however it is
/// served, then sends the same fields.
pub fn strip_unstorable(stored: &mut ResponseHeader) {
    for name in &CONNECTION_SCOPED {
        if stored.headers.contains_key(name) {
            stored.remove_header(name);
        }
    }
    let mut names: Vec<String> = Vec::new();
    for value in stored.headers.get_all(header::CONNECTION) {
        if let Ok(v) = value.to_str() {
            // `close` and `keep-alive` (the usual values) name no field.
            let named = v
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("close") && !n.eq_ignore_ascii_case("keep-alive"));
            names.extend(named.map(str::to_ascii_lowercase));
        }
    }
    for value in stored.headers.get_all(header::CACHE_CONTROL) {
        if let Ok(v) = value.to_str() {
            names.extend(qualified_field_names(v));
        }
    }
    for name in names {
        if name != "close" && name != "keep-alive" {
            stored.remove_header(&name);
        }
    }
}

/// The field names listed by `no-cache="a, b"` and `private="c"` in one `Cache-Control` value.
fn qualified_field_names(cache_control: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = cache_control;
    while let Some(eq) = rest.find('=') {
        let after = &rest[eq + 1..];
        if let Some(quoted) = after.strip_prefix('"') {
            // The directive's name only matters for a quoted value (no copy of it: `max-age=N` is the
            // usual field, read on every stored miss).
            let directive = rest[..eq].rsplit(',').next().unwrap_or("").trim();
            let Some(end) = quoted.find('"') else { break };
            if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("private") {
                names.extend(quoted[..end].split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()));
            }
            rest = &quoted[end + 1..];
        } else {
            rest = after;
        }
    }
    names
}

/// Brings a `304`'s fields into the stored header pingora merged (it copies only the freshness fields
/// and `ETag`): every other field the `304` carries replaces the stored one, except the body's own
/// description and the validator, which stay as stored.
pub fn merge_not_modified(merged: &mut ResponseHeader, not_modified: &ResponseHeader, stored: &ResponseHeader) {
    for name in not_modified.headers.keys() {
        if NOT_UPDATED_BY_304.contains(&name.as_str()) || HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        let values: Vec<HeaderValue> = not_modified.headers.get_all(name).iter().cloned().collect();
        merged.remove_header(name);
        for value in values {
            let _ = merged.append_header(name.clone(), value);
        }
    }
    // pingora's merge took the 304's ETag; the stored one describes the stored body.
    merged.remove_header(&header::ETAG);
    for value in stored.headers.get_all(header::ETAG) {
        let _ = merged.append_header(header::ETAG, value.clone());
    }
}

/// The path of a `Location` / `Content-Location` value that names a URL on `host`: a path-absolute
/// reference, or an absolute `http(s)` URL whose authority is `host`. Query and fragment dropped.
pub fn same_host_path<'a>(value: &'a [u8], host: Option<&[u8]>) -> Option<&'a str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let path = if value.starts_with('/') && !value.starts_with("//") {
        value
    } else {
        let rest = value.strip_prefix("http://").or_else(|| value.strip_prefix("https://"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !host.is_some_and(|h| h.eq_ignore_ascii_case(authority.as_bytes())) {
            return None;
        }
        if path.is_empty() {
            "/"
        } else {
            path
        }
    };
    Some(&path[..path.find(['?', '#']).unwrap_or(path.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn connection_listed_and_qualified_no_cache_fields_are_not_stored() {
        let mut r = response(&[
            ("Connection", "a, close"),
            ("A", "1"),
            ("B", "2"),
            ("C", "3"),
            ("Cache-Control", "max-age=60, no-cache=\"b\", private=\"c, x\""),
            ("Keep", "yes"),
            ("Keep-Alive", "timeout=5, max=100"),
            ("Upgrade", "h2c"),
        ]);
        strip_unstorable(&mut r);
        for gone in ["a", "b", "c", "keep-alive", "upgrade"] {
            assert!(r.headers.get(gone).is_none(), "{gone}");
        }
        assert_eq!(r.headers.get("keep").unwrap(), "yes");
        assert_eq!(qualified_field_names("no-cache=\"a\""), vec!["a"]);
        assert!(qualified_field_names("max-age=5, no-cache").is_empty());
    }

    #[test]
    fn only_same_host_locations_name_a_path() {
        let host = Some(&b"edge.test"[..]);
        assert_eq!(same_host_path(b"/a/b?x=1", host), Some("/a/b"));
        assert_eq!(same_host_path(b"http://EDGE.test/c#f", host), Some("/c"));
        assert_eq!(same_host_path(b"https://edge.test", host), Some("/"));
        assert_eq!(same_host_path(b"http://other.test/c", host), None);
        assert_eq!(same_host_path(b"//edge.test/c", host), None);
        assert_eq!(same_host_path(b"relative", host), None);
    }

    #[test]
    fn a_304_updates_every_field_but_the_body_description_and_the_validator() {
        let stored =
            response(&[("ETag", "\"one\""), ("Content-Type", "text/plain"), ("X-Old", "1"), ("Content-Length", "5")]);
        let mut merged =
            response(&[("ETag", "\"two\""), ("Content-Type", "text/plain"), ("X-Old", "1"), ("Content-Length", "5")]);
        let not_modified = response(&[
            ("ETag", "\"two\""),
            ("Content-Type", "text/plain;charset=utf-8"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Content-Length", "10"),
            ("Connection", "close"),
        ]);
        merge_not_modified(&mut merged, &not_modified, &stored);
        assert_eq!(merged.headers.get("content-type").unwrap(), "text/plain;charset=utf-8");
        assert_eq!(merged.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(merged.headers.get("etag").unwrap(), "\"one\"");
        assert_eq!(merged.headers.get("content-length").unwrap(), "5");
        assert_eq!(merged.headers.get("x-old").unwrap(), "1");
        assert!(merged.headers.get("connection").is_none());
    }
}

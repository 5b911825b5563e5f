//! A/B test hook. viewer-request: the group comes from the `ab_test` cookie, or is drawn 50/50, and the
//! uri is rewritten to `/version-A…` or `/version-B…`. viewer-response: `Set-Cookie: ab_test=<group>`
//! so the viewer keeps its group. The cookie is the deciding input, so the cache key must include it.

use verge_hook_sdk::cookies::{self, SetCookie};
use verge_hook_sdk::{handler, Event, Headers, Outcome};

const COOKIE: &str = "ab_test";

fn draw() -> &'static str {
    let mut byte = [0u8; 1];
    // WASI random is available to hooks; fall back to A if it is not.
    if getrandom(&mut byte).is_err() {
        return "A";
    }
    if byte[0] & 1 == 0 { "A" } else { "B" }
}

fn getrandom(buf: &mut [u8]) -> Result<(), ()> {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // std seeds RandomState from WASI random_get.
    let mut h = RandomState::new().build_hasher();
    h.write_u8(0);
    buf[0] = h.finish() as u8;
    Ok(())
}

fn group_of(headers: &Headers) -> Option<&'static str> {
    match cookies::get(headers, COOKIE) {
        Some("A") => Some("A"),
        Some("B") => Some("B"),
        _ => None,
    }
}

fn handle(event: Event) -> Result<Outcome, String> {
    match event.config.event_type.as_str() {
        "viewer-request" => {
            let group = group_of(&event.request.headers).unwrap_or_else(draw);
            let mut request = event.request;
            request.uri = format!("/version-{group}{}", request.uri);
            Ok(Outcome::Request(request))
        }
        "viewer-response" => {
            // The request here is the one viewer-request produced: its uri names the group.
            let request = &event.request;
            let group = group_of(&request.headers).or_else(|| match request.uri.get(..10) {
                Some("/version-A") => Some("A"),
                Some("/version-B") => Some("B"),
                _ => None,
            });
            let mut response = event.response.ok_or("viewer-response without a response")?;
            if let Some(group) = group {
                let cookie = SetCookie::new(COOKIE, group).path("/").max_age(2_592_000).secure().http_only();
                response.headers.add("set-cookie", cookie.build());
            }
            Ok(Outcome::Response(response))
        }
        other => Err(format!("ab-test does not handle {other}")),
    }
}

handler!(handle);

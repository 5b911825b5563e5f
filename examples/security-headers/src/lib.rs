//! Security headers hook (viewer-response): adds HSTS, X-Content-Type-Options, X-Frame-Options,
//! X-XSS-Protection and a Content-Security-Policy to every response, hits included.

use verge_hook_sdk::{handler, Event, Outcome};

fn handle(event: Event) -> Result<Outcome, String> {
    let mut response = event.response.ok_or("security-headers runs on viewer-response")?;
    let h = &mut response.headers;
    h.set("strict-transport-security", "max-age=63072000; includeSubDomains; preload");
    h.set("x-content-type-options", "nosniff");
    h.set("x-frame-options", "DENY");
    h.set("x-xss-protection", "1; mode=block");
    h.set("content-security-policy", "default-src 'self'; img-src 'self' data:; object-src 'none'");
    Ok(Outcome::Response(response))
}

handler!(handle);

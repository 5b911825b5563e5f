//! Benchmark fixture: the security-headers hook built as a WASI command (event on stdin, result on
//! stdout) instead of through the SDK ABI, to measure what the command ABI costs.

use verge_hook_sdk::{command, Event, Outcome};

fn handle(event: Event) -> Result<Outcome, String> {
    let mut response = event.response.ok_or("runs on viewer-response")?;
    let h = &mut response.headers;
    h.set("strict-transport-security", "max-age=63072000; includeSubDomains; preload");
    h.set("x-content-type-options", "nosniff");
    h.set("x-frame-options", "DENY");
    h.set("x-xss-protection", "1; mode=block");
    h.set("content-security-policy", "default-src 'self'; img-src 'self' data:; object-src 'none'");
    Ok(Outcome::Response(response))
}

command!(handle);

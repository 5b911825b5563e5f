//! Security headers hook (viewer-response): adds HSTS, X-Content-Type-Options, X-Frame-Options,
//! X-XSS-Protection and a Content-Security-Policy to every response, hits included. Fast ABI: the five
//! fields are one constant header block, registered with verge once per instance and then set by its
//! number in one host call; no event to parse.

use verge_hook_sdk::fast::{Ctx, HeaderBlock};
use verge_hook_sdk::{fast_handler, header_block};

/// Built at compile time; verge parses and checks it when the instance registers it and, on a cache hit,
/// appends its rendered lines to the stored head as they are.
static SECURITY_HEADERS: HeaderBlock = HeaderBlock::new(header_block![
    "strict-transport-security" => "max-age=63072000; includeSubDomains; preload",
    "x-content-type-options" => "nosniff",
    "x-frame-options" => "DENY",
    "x-xss-protection" => "1; mode=block",
    "content-security-policy" => "default-src 'self'; img-src 'self' data:; object-src 'none'",
]);

fn handle(ctx: &mut Ctx) -> Result<(), String> {
    ctx.set_response_block(&SECURITY_HEADERS);
    Ok(())
}

fast_handler!(handle);

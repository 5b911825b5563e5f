//! A/B test hook. viewer-request: the group comes from the `ab_test` cookie, or is drawn 50/50 (WASI
//! random), and the uri is rewritten to `/version-A…`/`/version-B…`. viewer-response: `Set-Cookie:
//! ab_test=<group>` so the viewer keeps its group. The rewritten uri is the cache key, so each version is
//! cached on its own.

use verge_hook_sdk::fast::{Ctx, Trigger};
use verge_hook_sdk::fast_handler;

const COOKIE: &str = "ab_test";

fn draw() -> &'static str {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // std seeds RandomState from WASI random_get.
    let mut h = RandomState::new().build_hasher();
    h.write_u8(0);
    if h.finish() & 1 == 0 { "A" } else { "B" }
}

fn cookie_group(ctx: &Ctx) -> Option<&'static str> {
    match ctx.cookie(COOKIE).as_deref() {
        Some("A") => Some("A"),
        Some("B") => Some("B"),
        _ => None,
    }
}

fn handle(ctx: &mut Ctx) -> Result<(), String> {
    match ctx.trigger() {
        Trigger::ViewerRequest => {
            let group = cookie_group(ctx).unwrap_or_else(draw);
            let uri = ctx.uri();
            ctx.set_uri(&format!("/version-{group}{uri}"));
            Ok(())
        }
        Trigger::ViewerResponse => {
            // The request here is the one viewer-request produced: its uri names the group.
            let uri = ctx.uri();
            let group = cookie_group(ctx).or(match uri.get(..10) {
                Some("/version-A") => Some("A"),
                Some("/version-B") => Some("B"),
                _ => None,
            });
            if let Some(group) = group {
                let cookie = format!("{COOKIE}={group}; Path=/; Max-Age=2592000; Secure; HttpOnly");
                ctx.add_response_header("set-cookie", &cookie);
            }
            Ok(())
        }
        other => Err(format!("ab-test does not handle {other:?}")),
    }
}

fast_handler!(handle);

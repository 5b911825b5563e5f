//! WebP hook (origin-request): for viewers that accept `image/webp`, `.jpg/.jpeg/.png` requests go to
//! the `.webp` object and carry `x-original-format`. The decision reads `Accept`, so the distribution
//! puts `Accept` in the cache key: a viewer without webp support never gets webp bytes from the cache.

use verge_hook_sdk::fast::Ctx;
use verge_hook_sdk::fast_handler;

fn handle(ctx: &mut Ctx) -> Result<(), String> {
    let accepts_webp = ctx.request_header_all("accept").iter().any(|v| v.contains("image/webp"));
    if !accepts_webp {
        return Ok(());
    }
    let uri = ctx.uri();
    let lower = uri.to_ascii_lowercase();
    if let Some(ext) = [".jpg", ".jpeg", ".png"].into_iter().find(|e| lower.ends_with(e)) {
        let stem = &uri[..uri.len() - ext.len()];
        ctx.set_request_header("x-original-format", ext.trim_start_matches('.'));
        ctx.set_uri(&format!("{stem}.webp"));
    }
    Ok(())
}

fast_handler!(handle);

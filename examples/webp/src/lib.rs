//! WebP hook (origin-request): for viewers that accept `image/webp`, `.jpg/.jpeg/.png` requests go to
//! the `.webp` object and carry `x-original-format`. The decision reads `Accept`, so the distribution
//! puts `Accept` in the cache key: a viewer without webp support never gets webp bytes from the cache.

use verge_hook_sdk::{handler, Event, Outcome};

fn handle(event: Event) -> Result<Outcome, String> {
    let mut request = event.request;
    let accepts_webp = request.headers.get_all("accept").any(|v| v.contains("image/webp"));
    if accepts_webp {
        let lower = request.uri.to_ascii_lowercase();
        let ext = [".jpg", ".jpeg", ".png"].into_iter().find(|e| lower.ends_with(e));
        if let Some(ext) = ext {
            let stem = request.uri[..request.uri.len() - ext.len()].to_string();
            request.headers.set("x-original-format", ext.trim_start_matches('.'));
            request.uri = format!("{stem}.webp");
        }
    }
    Ok(Outcome::Request(request))
}

handler!(handle);

//! Test fixture hook on the fast ABI, chosen by the last path segment: `/body` answers with what
//! IncludeBody exposed, `/replace-body` replaces the body sent to the origin, `/retarget` sends the
//! request to the port in `x-target-port` under the origin path `/moved`, `/bad-port` asks for port 1;
//! anything else continues unchanged.

use verge_hook_sdk::fast::Ctx;
use verge_hook_sdk::fast_handler;

fn handle(ctx: &mut Ctx) -> Result<(), String> {
    let uri = ctx.uri();
    match uri.rsplit('/').next().unwrap_or("") {
        "body" => {
            let body = ctx.body().ok_or("no body: include_body is off")?;
            ctx.respond(200);
            ctx.set_response_header("content-type", "text/plain");
            ctx.set_body(format!("truncated={} len={}", ctx.body_truncated(), body.len()).as_bytes());
        }
        "replace-body" => ctx.set_body(b"replaced by the fast hook"),
        "retarget" => {
            let port = ctx.request_header("x-target-port").and_then(|p| p.parse().ok()).ok_or("no x-target-port")?;
            let configured = ctx.origin_domain_name().ok_or("no origin in origin-request")?;
            ctx.set_origin_domain_name(&configured);
            ctx.set_origin_port(port);
            ctx.set_origin_path("/moved");
        }
        "bad-port" => ctx.set_origin_port(1),
        _ => {}
    }
    Ok(())
}

fast_handler!(handle);

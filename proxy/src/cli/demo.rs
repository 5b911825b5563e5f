//! The newcomer's demo: an embedded distribution in front of a built-in origin on loopback.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use verge_config::Distribution;

use crate::http_server::{self, OriginRequest, OriginResponse};

/// The embedded demo distribution (the same file as `examples/demo.yaml`).
pub const DEMO_YAML: &str = include_str!("../../../examples/demo.yaml");
/// Origins with this id are pointed at the built-in demo origin.
pub const DEMO_ORIGIN_ID: &str = "demo";

fn demo_origin(req: &OriginRequest) -> OriginResponse {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match req.path() {
        "/index.html" => OriginResponse::new(
            200,
            "<!doctype html><title>verge demo</title><h1>Hello from the verge demo origin</h1>\n",
        )
        .header("content-type", "text/html")
        .header("cache-control", "max-age=60"),
        "/api/time" => OriginResponse::new(200, format!("{{\"now\":{now}}}\n"))
            .header("content-type", "application/json")
            .header("cache-control", "no-store"),
        p if p.starts_with("/images/") && p.ends_with(".webp") => {
            OriginResponse::new(200, format!("WEBP bytes of {p} (was {:?})\n", req.header("x-original-format")))
                .header("content-type", "image/webp")
                .header("cache-control", "max-age=3600")
        }
        p if p.starts_with("/images/") => OriginResponse::new(200, format!("JPEG bytes of {p}\n"))
            .header("content-type", "image/jpeg")
            .header("cache-control", "max-age=3600"),
        p if p.starts_with("/version-A/") || p.starts_with("/version-B/") => {
            OriginResponse::new(200, format!("You are in group {} ({p})\n", &p[9..10]))
                .header("content-type", "text/plain")
                .header("cache-control", "max-age=60")
        }
        p if p.starts_with("/error/") => {
            let code = p.trim_start_matches("/error/").parse().unwrap_or(500);
            OriginResponse::new(code, format!("origin error {code}\n")).header("content-type", "text/plain")
        }
        _ => OriginResponse::new(404, "not found\n").header("content-type", "text/plain"),
    }
}

/// The example hooks the demo associates: (function name, module file stem).
const DEMO_FUNCTIONS: [(&str, &str); 3] =
    [("security-headers", "security_headers"), ("ab-test", "ab_test"), ("webp", "webp")];

/// Publishes the example hooks from `modules` (built guests) into a fresh temporary store and points
/// the distribution at it; without `modules`, drops the demo's hooks.
pub fn prepare_functions(dist: &mut Distribution, modules: Option<&std::path::Path>) -> Result<bool, String> {
    let Some(modules) = modules else {
        for behavior in &mut dist.behaviors {
            behavior.functions = Default::default();
        }
        return Ok(false);
    };
    let store_dir = std::env::temp_dir().join(format!("verge-demo-{}", std::process::id())).join("functions");
    let _ = std::fs::remove_dir_all(&store_dir);
    let store = verge_hooks::FunctionStore::new(&store_dir);
    for (name, stem) in DEMO_FUNCTIONS {
        store.publish(name, &modules.join(format!("{stem}.wasm")))?;
    }
    dist.functions.store = Some(store_dir.display().to_string());
    Ok(true)
}

/// Starts the demo origin on an ephemeral loopback port and points the demo origins at it.
pub async fn start_origin(dist: &mut Distribution) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(http_server::serve(listener, Arc::new(demo_origin)));
    for origin in dist.origins.iter_mut().filter(|o| o.id == DEMO_ORIGIN_ID) {
        origin.domain_name = addr.ip().to_string();
        origin.http_port = addr.port();
    }
    Ok(addr)
}

//! The newcomer's demo: an embedded distribution in front of a built-in origin on loopback.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use verge_config::Distribution;

use crate::http_server::{self, OriginRequest, OriginResponse};

/// The embedded demo distribution (the same file as `examples/demo.yaml`).
pub const DEMO_YAML: &str = include_str!("../../examples/demo.yaml");
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
        p if p.starts_with("/images/") => OriginResponse::new(200, vec![b'x'; 1024])
            .header("content-type", "image/jpeg")
            .header("cache-control", "max-age=3600"),
        p if p.starts_with("/error/") => {
            let code = p.trim_start_matches("/error/").parse().unwrap_or(500);
            OriginResponse::new(code, format!("origin error {code}\n")).header("content-type", "text/plain")
        }
        _ => OriginResponse::new(404, "not found\n").header("content-type", "text/plain"),
    }
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

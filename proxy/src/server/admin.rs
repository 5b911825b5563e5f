//! The admin API on its own listener: CloudFront-style invalidations and cache statistics.
//!
//! `POST /invalidations` with one path per line (`/a.jpg`, `/images/*`, `/*`) answers
//! `{"paths":N,"removed":M}`; `POST /reload` reloads the distribution file (see `reload`); `GET /metrics`
//! is the Prometheus exposition (see `metrics`); `GET /stats` answers the store's counters as JSON.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::cache::invalidation::InvalidationPath;
use crate::cache::storage::ObjectStore;
use crate::http_server::{self, OriginRequest as Request, OriginResponse as Response};
use crate::server::reload::Reloader;
use crate::snapshot::SharedSnapshot;

fn json(status: u16, body: String) -> Response {
    Response::new(status, body).header("content-type", "application/json")
}

/// Validates every path first: a batch with one bad path removes nothing.
pub fn invalidate(store: &ObjectStore, body: &str) -> Result<(usize, usize), String> {
    let paths: Vec<InvalidationPath> =
        body.lines().map(str::trim).filter(|l| !l.is_empty()).map(InvalidationPath::parse).collect::<Result<_, _>>()?;
    if paths.is_empty() {
        return Err("no paths given".to_string());
    }
    let removed = paths.iter().map(|p| store.invalidate(p)).sum();
    Ok((paths.len(), removed))
}

fn handle(store: &ObjectStore, snapshot: &SharedSnapshot, reloader: Option<&Reloader>, req: &Request) -> Response {
    match (req.method.as_str(), req.path()) {
        ("GET", "/metrics") => Response::new(200, crate::observe::metrics::render(store, &snapshot.load()))
            .header("content-type", "text/plain; version=0.0.4"),
        ("POST", "/reload") => match reloader {
            // Compiling functions blocks: take this worker out of the async pool while it runs.
            Some(reloader) => match tokio::task::block_in_place(|| reloader.reload()) {
                Ok(reloaded) => json(200, reloaded.to_json()),
                Err(reason) => json(400, format!("{{\"reloaded\":false,\"error\":{reason:?}}}\n")),
            },
            None => json(409, "{\"error\":\"the embedded demo has no distribution file to reload\"}\n".to_string()),
        },
        ("POST", "/invalidations") => match invalidate(store, &String::from_utf8_lossy(&req.body)) {
            Ok((paths, removed)) => {
                tracing::info!(paths, removed, "invalidation");
                json(200, format!("{{\"paths\":{paths},\"removed\":{removed}}}\n"))
            }
            Err(reason) => json(400, format!("{{\"error\":{reason:?}}}\n")),
        },
        ("GET", "/stats") => {
            let s = store.stats();
            json(
                200,
                format!(
                    "{{\"objects\":{},\"bytes\":{},\"capacity_bytes\":{},\"evicted_objects\":{},\"rejected_too_large\":{}}}\n",
                    s.objects, s.bytes, s.capacity_bytes, s.evicted_objects, s.rejected_too_large
                ),
            )
        }
        ("GET", "/healthz") => Response::new(200, "ok\n"),
        _ => json(
            404,
            "{\"error\":\"POST /invalidations, POST /reload, GET /metrics, GET /stats, GET /healthz\"}\n".to_string(),
        ),
    }
}

/// Serves the admin API on `listener` until the runtime stops.
pub fn spawn(
    listener: TcpListener,
    store: &'static ObjectStore,
    snapshot: SharedSnapshot,
    reloader: Option<Arc<Reloader>>,
) {
    let handler = move |req: &Request| handle(store, &snapshot, reloader.as_deref(), req);
    tokio::spawn(http_server::serve(listener, Arc::new(handler)));
}

//! Runs the viewer service: binds the listeners itself (port 0 allowed: the bound address is reported),
//! hands the bound sockets to pingora's listening service (so connections get pingora's buffered
//! streams and socket setup), and shuts down gracefully on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Fds;
use pingora_core::services::listening::Service as ListeningService;
use pingora_core::services::Service as _;
use tokio::sync::watch;

use crate::cache::storage::ObjectStore;
use crate::phases::{CacheParts, VergeProxy};
use crate::snapshot::{SharedSnapshot, Snapshot};
use admin::AdminApp;
use pingora_core::apps::http_app::HttpServer;
use reload::{Reloader, Source};
use verge_config::ServerSettings;

pub(crate) mod admin;
mod parking;
pub mod reload;
pub mod tls;
mod viewer;

use viewer::{Connections, ViewerApp};

/// How long a cache-lock writer may hold a key before waiting readers go to the origin themselves;
/// above the longest origin read timeout (120 s), so a slow fill is never duplicated.
const CACHE_LOCK_AGE: Duration = Duration::from_secs(130);
/// How long in-flight requests get to finish after a shutdown signal.
const GRACE: Duration = Duration::from_secs(10);

/// A started verge: its bound addresses, and what a reload and a shutdown need.
pub struct Started {
    /// The viewer listeners as bound (port 0 replaced by the real port).
    pub listeners: Vec<verge_config::model::Listener>,
    pub admin_addr: Option<SocketAddr>,
    /// Reloads the distribution file (none for the embedded demo).
    pub reloader: Arc<Reloader>,
    /// The cache (a fleet node's invalidations go straight to it).
    pub store: &'static ObjectStore,
    shutdown: watch::Sender<bool>,
    /// Requests being processed (drained on shutdown).
    in_flight: Arc<AtomicUsize>,
}

impl Started {
    /// Stops accepting; keep-alive connections close after their current request.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Binds `addr` (port 0 picks a free port) and hands the socket to pingora by its bound address.
fn bind(addr: SocketAddr, fds: &mut Fds, what: &str) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}")))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    fds.add(bound.to_string(), listener.into_raw_fd());
    Ok(bound)
}

/// Binds every listener and starts serving on the current tokio runtime. SIGHUP and `POST /reload`
/// reload `source` (the distribution file; `engine` is the hook engine already started for it).
pub async fn start(
    settings: &ServerSettings,
    snapshot: Snapshot,
    source: Source,
    engine: Option<verge_hooks::HookEngine>,
    admin_token: Option<String>,
) -> std::io::Result<Started> {
    let cache = settings.cache;
    let store: &'static ObjectStore = Box::leak(Box::new(ObjectStore::new(cache.memory_bytes, cache.max_object_bytes)));
    let lock = Box::leak(pingora_cache::lock::CacheLock::new_boxed(CACHE_LOCK_AGE));

    // Bind here so port 0 works and the real address is known; pingora adopts the sockets by address.
    let mut fds = Fds::new();
    let mut listeners = Vec::new();
    for listener in &settings.listen {
        let addr = bind(listener.addr, &mut fds, "viewers")?;
        listeners.push(verge_config::model::Listener { addr, ..*listener });
    }
    if listeners.is_empty() {
        return Err(std::io::Error::other("no listen address"));
    }
    let https_port = listeners.iter().find(|l| l.tls).map(|l| l.addr.port());
    let viewer_tls = match listeners.iter().any(|l| l.tls) {
        true => {
            let inputs = tls::TlsInputs {
                certificates: &settings.certificates,
                base_dir: &reload::base_dir(Some(&source.path)),
                policy: snapshot.dist.minimum_protocol_version,
                http_version: snapshot.dist.http_version,
            };
            Some(Arc::new(tls::ViewerTls::new(&inputs).map_err(std::io::Error::other)?))
        }
        false => None,
    };

    let admin_listen = settings.admin.as_ref().map(|a| a.listen);
    let base_dir = reload::base_dir(Some(&source.path));
    if let Some(log) = &settings.access_log {
        crate::observe::cloudfront_log::start(log, &base_dir).map_err(std::io::Error::other)?;
    }
    if let Some(log) = &settings.realtime_log {
        crate::observe::realtime_log::start(log, &base_dir).map_err(std::io::Error::other)?;
    }
    crate::observe::metrics::init(&snapshot.dist.id);
    let shared: SharedSnapshot = Arc::new(ArcSwap::from_pointee(snapshot));
    let reloader = Arc::new(Reloader::new(source, shared.clone(), engine, viewer_tls.clone()));
    let admin = match admin_listen {
        Some(addr) => {
            let bound = bind(addr, &mut fds, "admin")?;
            let app = AdminApp { store, snapshot: shared.clone(), reloader: reloader.clone(), token: admin_token };
            let mut service = ListeningService::new("verge admin".to_string(), HttpServer::new_app(app));
            service.add_tcp(&bound.to_string());
            Some((bound, service))
        }
        None => None,
    };
    let admin_addr = admin.as_ref().map(|(addr, _)| *addr);
    let conf = Arc::new(ServerConf { max_retries: 8, ..Default::default() });
    let origin_connections = Arc::new(std::sync::OnceLock::new());
    let mut proxy = pingora_proxy::http_proxy(
        &conf,
        VergeProxy {
            snapshot: shared.clone(),
            cache: CacheParts { store, lock, max_object_bytes: cache.max_object_bytes },
            viewer_idle_timeout_secs: settings.viewer_idle_timeout_secs,
            trusted_proxies: settings.trusted_proxies.clone(),
            https_port,
            origin_connections: origin_connections.clone(),
        },
    );
    // verge's pass exchange takes and gives back the connections pingora's proxy keeps alive.
    let _ = origin_connections.set(proxy.idle_upstream_connections());
    // pingora's HTTP/2 server: h2c so it takes the plain connections verge found the preface on, and
    // the viewer idle timeout for HTTP/2 connections with no stream open.
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    options.h2_idle_timeout = Some(Duration::from_secs(settings.viewer_idle_timeout_secs));
    proxy.server_options = Some(options);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(Connections {
        proxy: Arc::new(proxy),
        snapshot: shared.clone(),
        in_flight: in_flight.clone(),
        idle_timeout_secs: settings.viewer_idle_timeout_secs,
        header_timeout: Duration::from_secs(settings.viewer_header_timeout_secs),
        max_connections: settings.max_connections,
        tls: viewer_tls,
        h2c: settings.h2c,
    });
    let (shutdown, watch) = watch::channel(false);
    let fds = Arc::new(parking_lot::Mutex::new(fds));
    if let Some((_, mut admin)) = admin {
        let (fds, watch) = (fds.clone(), watch.clone());
        tokio::spawn(async move { admin.start_service(Some(fds), watch, 1).await });
    }
    // One service per listener: each knows whether its connections are TLS or carry a PROXY header.
    for listener in listeners.iter().copied() {
        let app = ViewerApp { shared: connections.clone(), listener, lot: Default::default() };
        let mut service = ListeningService::new(format!("verge viewer {}", listener.addr), app);
        // Viewer reads unbuffered; writes through `viewer::WRITE_BUFFER`.
        let buffers = L4BufferSettings::new(0, viewer::WRITE_BUFFER);
        service.endpoints().add_listener(ListenerConfig::tcp(listener.addr.to_string()).l4_buffer(buffers));
        let (fds, watch) = (fds.clone(), watch.clone());
        tokio::spawn(async move { service.start_service(Some(fds), watch, 1).await });
    }
    Ok(Started { listeners: listeners.clone(), admin_addr, reloader, store, shutdown, in_flight })
}

/// Reloads on SIGHUP; on SIGTERM or SIGINT stops accepting and gives in-flight requests `GRACE` to
/// finish.
pub async fn run_until_signal(started: Started) {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    /// The next delivery of a signal (never, if it could not be installed).
    async fn next(signal: &mut Option<Signal>) {
        match signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hangup = signal(SignalKind::hangup()).ok();
    // SIGUSR1: reopen the CloudFront access log (logrotate moved it).
    let mut user1 = signal(SignalKind::user_defined1()).ok();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = next(&mut term) => break,
            _ = next(&mut user1) => crate::observe::cloudfront_log::reopen(),
            _ = next(&mut hangup) => {
                // Compiling functions blocks: off the async workers. The outcome is logged by `reload`.
                let reloader = started.reloader.clone();
                drop(tokio::task::spawn_blocking(move || reloader.reload()));
            }
        }
    }
    tracing::info!("shutting down: no new connections; draining requests in flight");
    started.shutdown();
    let deadline = tokio::time::Instant::now() + GRACE;
    while started.in_flight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(in_flight = started.in_flight.load(Ordering::Acquire), "stopped");
    crate::observe::log_writer::flush();
    if let Some(log) = crate::observe::cloudfront_log::get() {
        log.flush();
    }
    if let Some(log) = crate::observe::realtime_log::get() {
        log.flush();
    }
}

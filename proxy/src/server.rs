//! Runs the viewer service: binds the listeners (port 0 allowed: the bound address is printed), feeds
//! accepted connections to pingora's HTTP proxy app, and shuts down gracefully on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as TcpStreamIo;
use pingora_core::protocols::{GetSocketDigest, SocketDigest};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cache::storage::ObjectStore;
use crate::proxy::{CacheParts, VergeProxy};
use crate::snapshot::{SharedSnapshot, Snapshot};

/// How long a cache-lock writer may hold a key before waiting readers go to the origin themselves;
/// above the longest origin read timeout (120 s), so a slow fill is never duplicated.
const CACHE_LOCK_AGE: Duration = Duration::from_secs(130);
/// How long in-flight requests get to finish after a shutdown signal.
const GRACE: Duration = Duration::from_secs(10);

/// A started verge: its bound addresses and the live snapshot.
pub struct Started {
    pub addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub snapshot: SharedSnapshot,
    pub store: &'static ObjectStore,
    shutdown: watch::Sender<bool>,
    /// Open viewer connections (drained on shutdown).
    connections: Arc<AtomicUsize>,
}

impl Started {
    /// Stops accepting and tells keep-alive connections to close.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Binds every listener and starts serving on the current tokio runtime.
pub async fn start(snapshot: Snapshot) -> std::io::Result<Started> {
    let dist = &snapshot.dist;
    let store: &'static ObjectStore =
        Box::leak(Box::new(ObjectStore::new(dist.cache.memory_bytes, dist.cache.max_object_bytes)));
    let lock = Box::leak(pingora_cache::lock::CacheLock::new_boxed(CACHE_LOCK_AGE));
    let mut listeners = Vec::new();
    for addr in &dist.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        listeners.push(listener);
    }
    let admin_addr = match dist.admin_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr} (admin): {e}")))?;
            let bound = listener.local_addr()?;
            crate::admin::spawn(listener, store);
            Some(bound)
        }
        None => None,
    };
    let shared: SharedSnapshot = Arc::new(ArcSwap::from_pointee(snapshot));
    let self_addr = match listeners.first() {
        Some(l) => l.local_addr()?,
        None => return Err(std::io::Error::other("no listen address")),
    };
    let conf = ServerConf { max_retries: 8, ..Default::default() };
    let app = Arc::new(pingora_proxy::http_proxy(
        &Arc::new(conf),
        VergeProxy { snapshot: shared.clone(), cache: CacheParts { store, lock }, self_addr },
    ));
    let (shutdown, watch) = watch::channel(false);
    let connections = Arc::new(AtomicUsize::new(0));
    let mut addrs = Vec::new();
    for listener in listeners {
        addrs.push(listener.local_addr()?);
        tokio::spawn(accept_loop(listener, app.clone(), watch.clone(), connections.clone()));
    }
    Ok(Started { addrs, admin_addr, snapshot: shared, store, shutdown, connections })
}

/// Decrements the open-connection count when a connection task ends, however it ends.
struct ConnectionGuard(Arc<AtomicUsize>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Arc<HttpProxy<VergeProxy>>,
    mut shutdown: ShutdownWatch,
    connections: Arc<AtomicUsize>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let digest = SocketDigest::from_raw_fd(std::os::fd::AsRawFd::as_raw_fd(&tcp));
        let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(peer)));
        let mut stream: TcpStreamIo = tcp.into();
        stream.set_socket_digest(digest);
        let stream: pingora_core::protocols::Stream = Box::new(stream);
        let app = app.clone();
        let shutdown = shutdown.clone();
        connections.fetch_add(1, Ordering::AcqRel);
        let guard = ConnectionGuard(connections.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let mut next = app.process_new(stream, &shutdown).await;
            while let Some(stream) = next {
                next = app.process_new(stream, &shutdown).await;
            }
        });
    }
}

/// Waits for SIGTERM or SIGINT, then shuts down and gives in-flight requests `GRACE` to finish.
pub async fn run_until_signal(started: Started) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    tracing::info!("shutting down: no new connections; draining open ones");
    started.shutdown();
    // pingora closes keep-alive connections after their current request once shutdown is signalled.
    let deadline = tokio::time::Instant::now() + GRACE;
    while started.connections.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(open = started.connections.load(Ordering::Acquire), "stopped");
}

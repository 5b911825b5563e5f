//! Hot reload: on SIGHUP or `POST /reload` (admin API) verge re-reads its distribution file, validates
//! it, loads its functions and resolves its origins off the request path, then swaps the new snapshot in
//! at once. Requests in flight finish on the snapshot they started with; the cache is kept (as a
//! CloudFront deployment keeps it). Anything wrong (YAML, validation, a missing or tampered function
//! version, an origin that does not resolve) leaves the running distribution serving, and the reason
//! is logged and returned. Function versions the running distribution already has (same module bytes,
//! same settings) are reused as they are: no compile, and their warm instances stay warm.
//!
//! Process settings (the file's `server` section: listeners, worker threads, admin listener, cache
//! sizes) are a different type from the distribution and are never touched by a reload: a file whose
//! `server` section changed is still applied, and the reload names the section as needing a restart.
//! The one exception is `server.certificates`: certificate files are read again by every reload (a
//! renewed certificate must not need a restart), and new TLS connections get them, with the
//! distribution's security policy and HTTP versions; open connections keep theirs. The same goes for
//! `server.geo`: its databases are read again (when their files changed) by every reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use verge_config::{Distribution, ServerSettings};

use super::tls::{TlsInputs, ViewerTls};
use crate::snapshot::{SharedSnapshot, Snapshot};

/// Where a served distribution came from, to read it again, and the process settings it started with.
pub struct Source {
    pub path: PathBuf,
    /// The `server` section as the file had it at start (before command-line overrides).
    pub server: ServerSettings,
    /// A fleet node: its own settings file, whose `server` section applies to every deployment it
    /// serves (a deployment's own `server` section is not used). `None`: `path` holds both.
    pub settings_file: Option<PathBuf>,
}

/// Reloads one distribution file into the live snapshot, one reload at a time.
pub struct Reloader {
    source: Source,
    /// The distribution file a plain reload reads (`source.path`, or a fleet node's last deployment).
    current: Mutex<PathBuf>,
    shared: SharedSnapshot,
    /// The wasm engine, kept across reloads (started by the first distribution that needs it).
    engine: Mutex<Option<verge_hooks::HookEngine>>,
    /// The TLS listeners' configuration, rebuilt with each distribution (none without TLS listeners).
    tls: Option<Arc<ViewerTls>>,
    generation: Mutex<u64>,
}

/// What a successful reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub generation: u64,
    pub millis: u128,
    /// Process settings the file changed: they apply at the next start.
    pub ignored: Vec<&'static str>,
}

/// The directory a distribution's relative paths (the function store) are resolved against.
pub fn base_dir(config: Option<&Path>) -> PathBuf {
    config.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// The wasm engine, started only when the distribution associates functions; compiled code is cached
/// in the function store's `.cache` directory.
pub fn hook_engine(dist: &Distribution, base_dir: &Path) -> Result<Option<verge_hooks::HookEngine>, String> {
    let any = dist.behaviors.iter().any(|b| b.functions.iter().any(Option::is_some));
    if !any {
        return Ok(None);
    }
    let store = base_dir.join(dist.functions.store.as_deref().unwrap_or("functions"));
    // wasmtime wants an absolute cache directory.
    let store = std::path::absolute(&store).map_err(|e| format!("{}: {e}", store.display()))?;
    verge_hooks::HookEngine::new(Some(&store.join(".cache"))).map(Some)
}

impl Reloader {
    pub fn new(
        source: Source,
        shared: SharedSnapshot,
        engine: Option<verge_hooks::HookEngine>,
        tls: Option<Arc<ViewerTls>>,
    ) -> Self {
        let current = Mutex::new(source.path.clone());
        Self { source, current, shared, engine: Mutex::new(engine), tls, generation: Mutex::new(1) }
    }

    /// Reads, validates and loads the file, then swaps it in; blocking (compiling functions takes time),
    /// so call it off the async workers.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let path = self.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.reload_from(&path)
    }

    /// Reloads from `path` instead of the current file (a fleet node's staged deployment); the current
    /// file does not change (`set_current` once the caller has kept `path`).
    pub fn reload_from(&self, path: &Path) -> Result<Reloaded, String> {
        let started = Instant::now();
        let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.build(path);
        match result {
            Ok((snapshot, acceptor, ignored)) => {
                self.shared.store(Arc::new(snapshot));
                if let (Some(tls), Some(acceptor)) = (&self.tls, acceptor) {
                    tls.install(acceptor);
                }
                *generation += 1;
                let reloaded = Reloaded { generation: *generation, millis: started.elapsed().as_millis(), ignored };
                crate::observe::metrics::reload(Some(reloaded.generation));
                tracing::info!(
                    target: "verge::reload",
                    generation = reloaded.generation,
                    millis = reloaded.millis as u64,
                    needs_restart = ?reloaded.ignored,
                    "distribution reloaded"
                );
                Ok(reloaded)
            }
            Err(reason) => {
                crate::observe::metrics::reload(None);
                tracing::error!(target: "verge::reload", "reload refused, the running distribution keeps serving: {reason}");
                Err(reason)
            }
        }
    }

    /// The file later plain reloads (SIGHUP, `POST /reload`) read.
    pub fn set_current(&self, path: PathBuf) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = path;
    }

    #[allow(clippy::type_complexity)]
    fn build(
        &self,
        path: &Path,
    ) -> Result<(Snapshot, Option<pingora_core::listeners::tls::Acceptor>, Vec<&'static str>), String> {
        let mut config = verge_config::from_file(path).map_err(|e| e.to_string())?;
        if let Some(settings_file) = &self.source.settings_file {
            config.server = node_settings(settings_file)?;
        }
        let ignored = changed_server_settings(&config.server, &self.source.server);
        let running = self.shared.load_full();
        let base_dir = base_dir(Some(path));
        let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if engine.is_none() {
            *engine = hook_engine(&config.distribution, &base_dir)?;
        }
        // Function versions the running snapshot already has are reused, warm instances and all.
        let acceptor = match &self.tls {
            Some(tls) => Some(tls.prepare(&TlsInputs {
                certificates: &config.server.certificates,
                base_dir: &base_dir,
                policy: config.distribution.minimum_protocol_version,
                http_version: config.distribution.http_version,
            })?),
            None => None,
        };
        let snapshot =
            Snapshot::build_after(config.distribution, &base_dir, engine.as_ref(), &config.server, Some(&running))?;
        Ok((snapshot, acceptor, ignored))
    }
}

/// A fleet node's own settings (the `server` section of its file), every path made absolute so it
/// means the same file whatever directory the deployment is read from.
pub fn node_settings(settings_file: &Path) -> Result<ServerSettings, String> {
    let mut server = verge_config::server_from_file(settings_file).map_err(|e| e.to_string())?;
    server.resolve_paths(&base_dir(Some(settings_file)));
    Ok(server)
}

/// The process settings that differ between the file now and at start (named as the file names them).
fn changed_server_settings(now: &ServerSettings, at_start: &ServerSettings) -> Vec<&'static str> {
    let (a, b) = (now, at_start);
    [
        ("server.listen", a.listen != b.listen),
        ("server.h2c", a.h2c != b.h2c),
        ("server.dns", a.dns != b.dns),
        ("server.access_log", a.access_log != b.access_log),
        ("server.realtime_log", a.realtime_log != b.realtime_log),
        ("server.viewer_idle_timeout", a.viewer_idle_timeout_secs != b.viewer_idle_timeout_secs),
        ("server.viewer_header_timeout", a.viewer_header_timeout_secs != b.viewer_header_timeout_secs),
        ("server.trusted_proxies", a.trusted_proxies != b.trusted_proxies),
        ("server.max_connections", a.max_connections != b.max_connections),
        ("server.threads", a.threads != b.threads),
        ("server.admin", a.admin != b.admin),
        ("server.cache", a.cache != b.cache),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

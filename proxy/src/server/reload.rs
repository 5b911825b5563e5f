//! Hot reload: on SIGHUP or `POST /reload` (admin API) verge re-reads its distribution file, validates
//! it, loads its functions and resolves its origins off the request path, then swaps the new snapshot in
//! at once. Requests in flight finish on the snapshot they started with; the cache is kept (as a
//! CloudFront deployment keeps it). Anything wrong (YAML, validation, a missing or tampered function
//! version, an origin that does not resolve) leaves the running distribution serving, and the reason
//! is logged and returned. Function versions the running distribution already has (same module bytes,
//! same settings) are reused as they are: no compile, and their warm instances stay warm.
//!
//! Settings bound at start (listeners, worker threads, admin listener, cache sizes) keep their running
//! values; a reload that changes them says so and applies the rest.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use verge_config::Distribution;

use crate::snapshot::{SharedSnapshot, Snapshot};

/// Where a served distribution came from, to read it again.
pub struct Source {
    pub path: PathBuf,
    /// `--listen` given on the command line: it keeps precedence over the file.
    pub listen_override: Vec<std::net::SocketAddr>,
}

/// Reloads one distribution file into the live snapshot, one reload at a time.
pub struct Reloader {
    source: Source,
    shared: SharedSnapshot,
    /// The wasm engine, kept across reloads (started by the first distribution that needs it).
    engine: Mutex<Option<verge_hooks::HookEngine>>,
    generation: Mutex<u64>,
}

/// What a successful reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub generation: u64,
    pub millis: u128,
    /// Changes that need a restart (kept at their running values).
    pub ignored: Vec<&'static str>,
}

impl Reloaded {
    pub fn to_json(&self) -> String {
        let ignored: Vec<String> = self.ignored.iter().map(|s| format!("{s:?}")).collect();
        format!(
            "{{\"reloaded\":true,\"generation\":{},\"millis\":{},\"needs_restart\":[{}]}}\n",
            self.generation,
            self.millis,
            ignored.join(",")
        )
    }
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
    pub fn new(source: Source, shared: SharedSnapshot, engine: Option<verge_hooks::HookEngine>) -> Self {
        Self { source, shared, engine: Mutex::new(engine), generation: Mutex::new(1) }
    }

    /// Reads, validates and loads the file, then swaps it in; blocking (compiling functions takes time),
    /// so call it off the async workers.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let started = Instant::now();
        let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.build();
        match result {
            Ok((snapshot, ignored)) => {
                self.shared.store(Arc::new(snapshot));
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

    fn build(&self) -> Result<(Snapshot, Vec<&'static str>), String> {
        let mut dist = verge_config::from_file(&self.source.path).map_err(|e| e.to_string())?;
        if !self.source.listen_override.is_empty() {
            dist.listen = self.source.listen_override.clone();
        }
        let running = self.shared.load_full();
        let ignored = keep_start_settings(&mut dist, &running.dist);
        let base_dir = base_dir(Some(&self.source.path));
        let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if engine.is_none() {
            *engine = hook_engine(&dist, &base_dir)?;
        }
        // Function versions the running snapshot already has are reused, warm instances and all.
        let snapshot = Snapshot::build_after(dist, &base_dir, engine.as_ref(), Some(&running))?;
        Ok((snapshot, ignored))
    }
}

/// Puts the running values back into settings bound at start; names the ones the file changed.
fn keep_start_settings(dist: &mut Distribution, running: &Distribution) -> Vec<&'static str> {
    let mut ignored = Vec::new();
    if dist.listen != running.listen {
        ignored.push("listen");
        dist.listen = running.listen.clone();
    }
    if dist.threads != running.threads {
        ignored.push("server.threads");
        dist.threads = running.threads;
    }
    if dist.admin_listen != running.admin_listen {
        ignored.push("admin.listen");
        dist.admin_listen = running.admin_listen;
    }
    if (dist.cache.memory_bytes, dist.cache.max_object_bytes)
        != (running.cache.memory_bytes, running.cache.max_object_bytes)
    {
        ignored.push("cache");
        dist.cache.memory_bytes = running.cache.memory_bytes;
        dist.cache.max_object_bytes = running.cache.max_object_bytes;
    }
    ignored
}

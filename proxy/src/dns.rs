//! Origin name resolution: each origin domain name is resolved with hickory-resolver (the system's
//! resolvers, or `server.dns.nameservers`), then again when its answer's TTL runs out (clamped to
//! `server.dns.min_ttl`..`max_ttl`), by a task of its own, off the request path. Every A/AAAA address of
//! the answer is kept; a request takes them in order, the next one on each connection attempt. A name
//! that stops resolving keeps its last good addresses (and the failure is logged). Names are shared by
//! every snapshot, so a reload does not resolve again what is already being followed.
//!
//! The resolver runs on a thread of its own (a small tokio runtime), so a snapshot can be built from
//! blocking code (start, a reload, `verge validate`) without a runtime of the caller's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use verge_config::model::DnsSettings;

/// How long a first resolution may take before the distribution is refused.
const FIRST_LOOKUP: Duration = Duration::from_secs(10);
/// How soon a failed refresh is tried again (bounded by `max_ttl`).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// The addresses of one origin name, as last resolved.
pub struct Addresses {
    current: ArcSwap<Vec<IpAddr>>,
}

impl Addresses {
    /// The address for connection attempt `attempt` (0-based): the answer's addresses in order.
    pub fn for_attempt(&self, attempt: usize) -> IpAddr {
        let current = self.current.load();
        current[attempt % current.len()]
    }

    pub fn all(&self) -> Vec<IpAddr> {
        self.current.load().as_ref().clone()
    }
}

/// The process's origin resolver.
pub struct OriginDns {
    resolver: TokioResolver,
    runtime: tokio::runtime::Handle,
    settings: DnsSettings,
    names: Mutex<HashMap<String, Arc<Addresses>>>,
}

static DNS: OnceLock<OriginDns> = OnceLock::new();

impl OriginDns {
    /// The resolver, started on first use with `settings` (later settings are ignored: they are
    /// process settings, bound at start).
    pub fn get(settings: &DnsSettings) -> Result<&'static OriginDns, String> {
        if let Some(dns) = DNS.get() {
            return Ok(dns);
        }
        let dns = Self::start(settings.clone())?;
        Ok(DNS.get_or_init(|| dns))
    }

    fn start(settings: DnsSettings) -> Result<Self, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("verge-dns".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                match runtime {
                    Ok(runtime) => {
                        let _ = tx.send(Ok(runtime.handle().clone()));
                        runtime.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("cannot start the DNS resolver: {e}")));
                    }
                }
            })
            .map_err(|e| format!("cannot start the DNS resolver: {e}"))?;
        let runtime = rx.recv().map_err(|e| e.to_string())??;
        let provider = TokioConnectionProvider::default();
        let builder = if settings.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?
        } else {
            let mut config = ResolverConfig::new();
            for addr in &settings.nameservers {
                // UDP, with TCP only for truncated answers (hickory's own fallback).
                config.add_name_server(NameServerConfig::new(*addr, Protocol::Udp));
            }
            TokioResolver::builder_with_config(config, provider)
        };
        let resolver = {
            // The resolver's background parts need a runtime context to be built in.
            let _guard = runtime.enter();
            builder.build()
        };
        Ok(Self { resolver, runtime, settings, names: Mutex::new(HashMap::new()) })
    }

    /// The addresses of `name` (resolved now if it is new, then followed); an IP literal is itself.
    /// Blocking: call it from blocking code.
    pub fn resolve(&'static self, name: &str) -> Result<Arc<Addresses>, String> {
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(Arc::new(Addresses { current: ArcSwap::from_pointee(vec![ip]) }));
        }
        if let Some(known) = self.names.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(known.clone());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = name.to_string();
        self.runtime.spawn(async move {
            let _ = tx.send(DNS.get().expect("started").lookup(&owned).await);
        });
        let (addrs, valid_until) = rx
            .recv_timeout(FIRST_LOOKUP)
            .map_err(|_| format!("resolving {name} took more than {} s", FIRST_LOOKUP.as_secs()))??;
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = names.get(name) {
            return Ok(known.clone());
        }
        let entry = Arc::new(Addresses { current: ArcSwap::from_pointee(addrs) });
        names.insert(name.to_string(), entry.clone());
        let followed = (name.to_string(), entry.clone());
        self.runtime
            .spawn(async move { DNS.get().expect("started").follow(followed.0, followed.1, valid_until).await });
        Ok(entry)
    }

    /// One lookup: every address and when the answer expires.
    async fn lookup(&self, name: &str) -> Result<(Vec<IpAddr>, Instant), String> {
        let answer = self.resolver.lookup_ip(name).await.map_err(|e| format!("cannot resolve {name}: {e}"))?;
        let addrs: Vec<IpAddr> = answer.iter().collect();
        if addrs.is_empty() {
            return Err(format!("{name} has no A or AAAA record"));
        }
        Ok((addrs, answer.valid_until()))
    }

    /// Resolves `name` again whenever its answer expires, for as long as the process runs.
    async fn follow(&self, name: String, entry: Arc<Addresses>, mut valid_until: Instant) {
        let (min, max) =
            (Duration::from_secs(self.settings.min_ttl_secs), Duration::from_secs(self.settings.max_ttl_secs));
        loop {
            let wait = valid_until.saturating_duration_since(Instant::now()).clamp(min, max);
            tokio::time::sleep(wait).await;
            match self.lookup(&name).await {
                Ok((addrs, until)) => {
                    if *entry.current.load().as_ref() != addrs {
                        tracing::info!(target: "verge::dns", name = %name, addresses = ?addrs, "origin addresses changed");
                        entry.current.store(Arc::new(addrs));
                    }
                    valid_until = until;
                }
                Err(reason) => {
                    tracing::warn!(
                        target: "verge::dns",
                        name = %name,
                        kept = ?entry.all(),
                        "{reason}; keeping the last good addresses"
                    );
                    valid_until = Instant::now() + RETRY_AFTER_FAILURE.min(max);
                }
            }
        }
    }
}

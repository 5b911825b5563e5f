//! A fleet node's agent, beside the proxy: watches its distribution's key in `verge_deployments`, stages
//! each new revision (modules fetched and checked), loads it exactly as a local reload does and swaps it
//! in, reports what it serves (or why it refused) in `verge_nodes` on every change and every heartbeat,
//! and applies the fleet's invalidations from its durable consumer, acking each once applied. NATS going
//! away never touches serving: the agent reconnects and catches up (the watch starts from the latest
//! revision, the durable consumer from the first unacked invalidation).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;

use super::shield::{self, ShieldRing};
use super::state::State;
use super::{invalidations, now_ms, Buckets, Manifest, NodeStatus, Refusal, HEARTBEAT};
use crate::cache::storage::ObjectStore;
use crate::server::reload::Reloader;

/// What a node is told at start.
pub struct NodeOptions {
    pub url: String,
    pub node: String,
    /// `edge` (forwards misses of shielded origins to the shield tier) or `shield`.
    pub role: String,
    pub distribution: String,
    pub state: Arc<State>,
}

/// Fetches and stages the latest deployment when it is newer than what the state directory holds, so a
/// node starts on it; `None` when NATS cannot be reached in `timeout` (the node starts from its state).
pub async fn bootstrap(options: &NodeOptions, timeout: Duration) -> Result<Option<u64>, String> {
    let client = super::connect(&options.url, timeout).await?;
    let buckets = Buckets::open(client).await?;
    let Some(entry) = buckets.deployments.entry(&options.distribution).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if entry.revision <= options.state.revision() || entry.value.is_empty() {
        return Ok(None);
    }
    let manifest: Manifest = serde_json::from_slice(&entry.value).map_err(|e| format!("manifest: {e}"))?;
    options.state.stage(&manifest, &buckets.functions().await?).await?;
    Ok(Some(entry.revision))
}

/// The fleet's hop secret: made by the first node that needs it (a KV create either wins or finds it).
async fn hop_secret(buckets: &Buckets) -> Result<String, String> {
    const KEY: &str = "fleet.hop-secret";
    let _ = buckets.deployments.create(KEY, shield::new_secret()?.into()).await;
    let value = buckets.deployments.get(KEY).await.map_err(|e| format!("{KEY}: {e}"))?;
    value.map(|v| String::from_utf8_lossy(&v).into_owned()).ok_or_else(|| format!("{KEY} is missing"))
}

pub struct Agent {
    options: NodeOptions,
    reloader: Arc<Reloader>,
    cache: &'static ObjectStore,
    status: Mutex<NodeStatus>,
}

impl Agent {
    pub fn new(
        options: NodeOptions,
        reloader: Arc<Reloader>,
        cache: &'static ObjectStore,
        revision: u64,
        listen: Vec<String>,
    ) -> Arc<Self> {
        let status = NodeStatus {
            node: options.node.clone(),
            role: options.role.clone(),
            distribution: options.distribution.clone(),
            revision,
            refused: None,
            listen,
            updated_ms: now_ms(),
        };
        Arc::new(Self { options, reloader, cache, status: Mutex::new(status) })
    }

    /// Runs forever: connects (again and again, backing off to 5 s), then watches, heartbeats and
    /// consumes until the connection fails.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.session().await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => tracing::warn!(target: "verge::fleet", node = %self.options.node, "{e}; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn session(self: &Arc<Self>) -> Result<(), String> {
        let client = super::connect(&self.options.url, Duration::from_secs(5)).await?;
        let buckets = Arc::new(Buckets::open(client.clone()).await?);
        tracing::info!(target: "verge::fleet", node = %self.options.node, url = %self.options.url, "connected to the fleet");
        shield::set_secret(hop_secret(&buckets).await?);
        self.publish_status(&buckets).await?;
        self.refresh_ring(&buckets).await;
        let heartbeat = {
            let (agent, buckets) = (self.clone(), buckets.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    if agent.publish_status(&buckets).await.is_err() {
                        break;
                    }
                    agent.refresh_ring(&buckets).await;
                }
            })
        };
        let consumer = {
            let (agent, buckets) = (self.clone(), buckets.clone());
            tokio::spawn(async move { agent.consume_invalidations(&buckets).await })
        };
        let watched = self.watch(&buckets).await;
        heartbeat.abort();
        consumer.abort();
        watched
    }

    /// An edge's ring: the live shields serving its distribution (a shield forwards to no one).
    async fn refresh_ring(&self, buckets: &Buckets) {
        if self.options.role != "edge" {
            return;
        }
        let Ok(nodes) = buckets.live_nodes().await else { return };
        let shields: Vec<std::net::SocketAddr> = nodes
            .iter()
            .filter(|n| {
                n.role == "shield" && n.distribution == self.options.distribution && n.node != self.options.node
            })
            .filter_map(|n| n.listen.iter().find_map(|l| l.strip_prefix("http://")?.parse().ok()))
            // A shield bound to 0.0.0.0 without --advertise cannot be reached by that address.
            .filter(|addr: &std::net::SocketAddr| !addr.ip().is_unspecified())
            .collect();
        let count = shields.len();
        if shield::install(ShieldRing::new(shields)) {
            tracing::info!(target: "verge::fleet", shields = count, "shield ring changed");
        }
    }

    async fn publish_status(&self, buckets: &Buckets) -> Result<(), String> {
        let value = {
            let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
            status.updated_ms = now_ms();
            serde_json::to_vec(&*status).map_err(|e| e.to_string())?
        };
        buckets.nodes.put(&self.options.node, value.into()).await.map_err(|e| format!("status: {e}"))?;
        Ok(())
    }

    /// Applies every revision of the distribution's key newer than the one served.
    async fn watch(&self, buckets: &Buckets) -> Result<(), String> {
        let mut updates = buckets
            .deployments
            .watch_with_history(&self.options.distribution)
            .await
            .map_err(|e| format!("watch: {e}"))?;
        while let Some(entry) = updates.next().await {
            let entry = entry.map_err(|e| format!("watch: {e}"))?;
            let served = self.status.lock().unwrap_or_else(|e| e.into_inner()).revision;
            if entry.revision <= served || entry.operation != jetstream::kv::Operation::Put {
                continue;
            }
            self.apply(buckets, entry.revision, &entry.value).await;
            self.publish_status(buckets).await?;
        }
        Err("the deployment watch ended".to_string())
    }

    /// Stages, loads and swaps in one revision; a failure is reported and the running one keeps serving.
    async fn apply(&self, buckets: &Buckets, revision: u64, value: &[u8]) {
        let started = std::time::Instant::now();
        let result = async {
            let manifest: Manifest = serde_json::from_slice(value).map_err(|e| format!("manifest: {e}"))?;
            let incoming = self.options.state.stage(&manifest, &buckets.functions().await?).await?;
            let reloader = self.reloader.clone();
            tokio::task::spawn_blocking(move || reloader.reload_from(&incoming))
                .await
                .map_err(|e| format!("load: {e}"))??;
            self.options.state.promote(revision)?;
            self.reloader.set_current(self.options.state.current());
            Ok::<(), String>(())
        }
        .await;
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                status.revision = revision;
                tracing::info!(target: "verge::fleet", revision, millis = started.elapsed().as_millis() as u64, "deployment applied");
            }
            Err(reason) => {
                tracing::error!(target: "verge::fleet", revision, "deployment refused, revision {} keeps serving: {reason}", status.revision);
                status.refused = Some(Refusal { revision, reason });
            }
        }
    }

    async fn consume_invalidations(&self, buckets: &Buckets) {
        if let Err(e) =
            invalidations::consume(buckets, &self.options.node, &self.options.distribution, self.cache).await
        {
            tracing::warn!(target: "verge::fleet", "invalidations: {e}");
        }
    }
}

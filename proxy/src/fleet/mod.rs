//! The fleet: many verge nodes run one distribution, controlled through NATS JetStream (docs/fleet.md).
//! What lives where in JetStream: the deployed manifests in the KV bucket `verge_deployments` (one key
//! per distribution id; the key's revision is the fleet-wide deployment number), function modules in the
//! Object Store `verge_functions` (named by sha256), each node's status in the KV bucket `verge_nodes`
//! (rewritten every heartbeat, expiring after `NODE_TTL`: a key present is a live node), invalidations in
//! the stream `VERGE_INVALIDATIONS` (one durable consumer per node, explicit acks) with their records and
//! per-node acks in the KV bucket `verge_invalidations`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use serde::{Deserialize, Serialize};

pub mod agent;
pub mod deploy;
pub mod invalidations;
pub mod shield;
pub mod state;

pub const DEPLOYMENTS: &str = "verge_deployments";
pub const FUNCTIONS: &str = "verge_functions";
pub const NODES: &str = "verge_nodes";
pub const INVALIDATION_RECORDS: &str = "verge_invalidations";
pub const INVALIDATION_STREAM: &str = "VERGE_INVALIDATIONS";

/// How often a node rewrites its status, and how long a status lives without being rewritten.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
pub const NODE_TTL: Duration = Duration::from_secs(5);

/// What `verge deploy` writes: the distribution file as written and the modules it names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The distribution file's text (its `server` section, if any, is not applied: each node has its own).
    pub distribution: String,
    pub functions: Vec<Artifact>,
    pub deployed_at_ms: u64,
    /// Who deployed (user@host), for `fleet status`.
    pub deployed_by: String,
}

/// One function version of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub version: u32,
    /// The module's sha256 (hex): its name in the Object Store, checked by every node.
    pub sha256: String,
}

/// A node's status under its id in `verge_nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    /// `edge` or `shield`.
    pub role: String,
    pub distribution: String,
    /// The deployment revision served (0: the node's own file, no deployment yet).
    pub revision: u64,
    /// The last deployment this node refused, with the reasons.
    pub refused: Option<Refusal>,
    /// Viewer listeners (`http://127.0.0.1:8080`).
    pub listen: Vec<String>,
    pub updated_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refusal {
    pub revision: u64,
    pub reason: String,
}

/// A fleet node's NATS and distribution, for the admin API (its invalidations are the fleet's).
pub struct Link {
    pub url: String,
    pub distribution: String,
}

static LINK: std::sync::OnceLock<Link> = std::sync::OnceLock::new();

/// Set once by a node that joins a fleet.
pub fn set_link(link: Link) {
    let _ = LINK.set(link);
}

pub fn link() -> Option<&'static Link> {
    LINK.get()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Connects to NATS (`nats://host:port`, a comma-separated list for a cluster) within `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<async_nats::Client, String> {
    let options = async_nats::ConnectOptions::new().connection_timeout(timeout).name("verge");
    match tokio::time::timeout(timeout, options.connect(url)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!("cannot connect to NATS at {url}: {e}")),
        Err(_) => Err(format!("cannot connect to NATS at {url}: no answer in {} s", timeout.as_secs())),
    }
}

/// The buckets and stream, created on first use (any node or command may be first).
pub struct Buckets {
    pub js: jetstream::Context,
    pub deployments: jetstream::kv::Store,
    pub nodes: jetstream::kv::Store,
    pub invalidations: jetstream::kv::Store,
}

impl Buckets {
    pub async fn open(client: async_nats::Client) -> Result<Self, String> {
        let js = jetstream::new(client);
        let kv = |bucket: &str, history: i64, max_age: Duration| jetstream::kv::Config {
            bucket: bucket.to_string(),
            history,
            max_age,
            ..Default::default()
        };
        let deployments = get_or_create_kv(&js, kv(DEPLOYMENTS, 10, Duration::ZERO)).await?;
        let nodes = get_or_create_kv(&js, kv(NODES, 1, NODE_TTL)).await?;
        let invalidations =
            get_or_create_kv(&js, kv(INVALIDATION_RECORDS, 1, Duration::from_secs(30 * 86_400))).await?;
        Ok(Self { js, deployments, nodes, invalidations })
    }

    pub async fn functions(&self) -> Result<jetstream::object_store::ObjectStore, String> {
        match self.js.get_object_store(FUNCTIONS).await {
            Ok(store) => Ok(store),
            Err(_) => self
                .js
                .create_object_store(jetstream::object_store::Config {
                    bucket: FUNCTIONS.to_string(),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("object store {FUNCTIONS}: {e}")),
        }
    }

    /// The names of the live nodes. A listing can miss a key rewritten while it runs (the bucket keeps one
    /// value per key, so the old message is gone and the new one lands after the listing's end): callers
    /// that wait on nodes list again and keep the union.
    pub async fn node_names(&self) -> Result<std::collections::BTreeSet<String>, String> {
        use futures::StreamExt;
        let mut keys = self.nodes.keys().await.map_err(|e| format!("{NODES}: {e}"))?;
        let mut out = std::collections::BTreeSet::new();
        while let Some(key) = keys.next().await {
            if let Ok(key) = key {
                out.insert(key);
            }
        }
        Ok(out)
    }

    /// A node's status, read directly (`None` once it expired).
    pub async fn node_status(&self, node: &str) -> Result<Option<NodeStatus>, String> {
        let value = self.nodes.get(node).await.map_err(|e| format!("{NODES}: {e}"))?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Every live node's status, by name.
    pub async fn live_nodes(&self) -> Result<Vec<NodeStatus>, String> {
        let mut out = Vec::new();
        for name in self.node_names().await? {
            if let Some(status) = self.node_status(&name).await? {
                out.push(status);
            }
        }
        Ok(out)
    }
}

async fn get_or_create_kv(
    js: &jetstream::Context,
    config: jetstream::kv::Config,
) -> Result<jetstream::kv::Store, String> {
    let bucket = config.bucket.clone();
    match js.get_key_value(&bucket).await {
        Ok(store) => Ok(store),
        Err(_) => match js.create_key_value(config).await {
            Ok(store) => Ok(store),
            // Another node created it between the two calls.
            Err(_) => js.get_key_value(&bucket).await.map_err(|e| format!("key-value bucket {bucket}: {e}")),
        },
    }
}

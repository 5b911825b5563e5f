//! `verge deploy --nats URL FILE`: validates the file as `verge validate` does, uploads the function
//! versions it names to the Object Store (by sha256; a module already there is not sent again), writes the
//! manifest to the distribution's key (its revision is the deployment number), then waits until every
//! live node of the distribution serves that revision or one refuses it, and says which.

use std::path::Path;
use std::time::{Duration, Instant};

use verge_config::Config;
use verge_hooks::FunctionStore;

use super::{now_ms, Artifact, Buckets, Manifest};

/// The function versions `config` names, read from its store (each checked against the store's
/// manifest), deduplicated.
fn artifacts(config: &Config, file: &Path) -> Result<Vec<(Artifact, Vec<u8>)>, String> {
    let base_dir = crate::server::reload::base_dir(Some(file));
    let dist = &config.distribution;
    let store = FunctionStore::new(base_dir.join(dist.functions.store.as_deref().unwrap_or("functions")));
    let mut out: Vec<(Artifact, Vec<u8>)> = Vec::new();
    for a in dist.behaviors.iter().flat_map(|b| b.functions.iter().flatten()) {
        if out.iter().any(|(x, _)| x.name == a.arn.name && x.version == a.arn.version) {
            continue;
        }
        let bytes = store.load(&a.arn)?;
        let sha256 = verge_hooks::sha256_hex(&bytes);
        out.push((Artifact { name: a.arn.name.clone(), version: a.arn.version, sha256 }, bytes));
    }
    Ok(out)
}

fn deployer() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "?".to_string());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{user}@{host}")
}

/// What became of a deployment on the fleet.
pub struct Outcome {
    pub revision: u64,
    pub served: Vec<String>,
    pub refused: Vec<(String, String)>,
    pub waiting: Vec<String>,
    pub millis: u128,
}

/// Uploads and publishes a checked `config` (read from `file`), then waits up to `wait` for the fleet.
pub async fn deploy(url: &str, file: &Path, config: &Config, wait: Duration) -> Result<Outcome, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let modules = artifacts(config, file)?;
    let client = super::connect(url, Duration::from_secs(5)).await?;
    let buckets = Buckets::open(client).await?;
    let objects = buckets.functions().await?;
    for (artifact, bytes) in &modules {
        if objects.info(&artifact.sha256).await.is_ok() {
            continue;
        }
        objects
            .put(artifact.sha256.as_str(), &mut bytes.as_slice())
            .await
            .map_err(|e| format!("uploading {}:{}: {e}", artifact.name, artifact.version))?;
    }
    let manifest = Manifest {
        distribution: text,
        functions: modules.into_iter().map(|(a, _)| a).collect(),
        deployed_at_ms: now_ms(),
        deployed_by: deployer(),
    };
    let value = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    // The nodes to wait for: those live now, and any seen live while waiting (see `node_names`).
    let mut known = buckets.node_names().await?;
    let started = Instant::now();
    let key = &config.distribution.id;
    let revision = buckets.deployments.put(key, value.into()).await.map_err(|e| format!("{key}: {e}"))?;
    println!("verge: deployment {key} revision {revision} published ({} function versions)", manifest.functions.len());
    loop {
        known.extend(buckets.node_names().await?);
        let mut nodes = Vec::new();
        for name in &known {
            if let Some(status) = buckets.node_status(name).await? {
                nodes.push(status);
            }
        }
        let mut outcome = Outcome { revision, served: vec![], refused: vec![], waiting: vec![], millis: 0 };
        for node in nodes.into_iter().filter(|n| n.distribution == *key) {
            match &node.refused {
                Some(r) if r.revision >= revision && node.revision < revision => {
                    outcome.refused.push((node.node, r.reason.clone()))
                }
                _ if node.revision >= revision => outcome.served.push(node.node),
                _ => outcome.waiting.push(node.node),
            }
        }
        outcome.millis = started.elapsed().as_millis();
        if outcome.waiting.is_empty() || started.elapsed() >= wait {
            return Ok(outcome);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

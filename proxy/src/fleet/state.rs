//! A fleet node's state directory: the last deployment it served well (`deployment.yaml`, its revision
//! in `revision`) and the function store its modules were installed in (`functions/`). A node starts from
//! it when NATS cannot be reached, so NATS down never stops serving. A new deployment is staged as
//! `incoming.yaml`, loaded, and only then renamed over `deployment.yaml`.

use std::path::{Path, PathBuf};

use async_nats::jetstream::object_store::ObjectStore;
use tokio::io::AsyncReadExt;
use verge_hooks::FunctionStore;

use super::{Artifact, Manifest};

pub struct State {
    dir: PathBuf,
}

/// The largest module a node downloads (Lambda@Edge's origin-facing package limit is 50 MB).
const MAX_MODULE_BYTES: usize = 64 << 20;

impl State {
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir.join("functions"))
            .map_err(|e| format!("state directory {}: {e}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// The deployment served (present once a deployment was served).
    pub fn current(&self) -> PathBuf {
        self.dir.join("deployment.yaml")
    }

    pub fn incoming(&self) -> PathBuf {
        self.dir.join("incoming.yaml")
    }

    fn store(&self) -> FunctionStore {
        FunctionStore::new(self.dir.join("functions"))
    }

    /// The revision of `current()`; 0 when there is none.
    pub fn revision(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("revision")).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
    }

    /// Writes `manifest` as `incoming.yaml`, with the modules it names fetched from `objects` (those the
    /// node's store holds already are not fetched), each checked against its sha256.
    pub async fn stage(&self, manifest: &Manifest, objects: &ObjectStore) -> Result<PathBuf, String> {
        let store = self.store();
        for artifact in &manifest.functions {
            if store.published_sha256(&artifact.name, artifact.version)?.as_deref() == Some(artifact.sha256.as_str()) {
                continue;
            }
            let bytes = fetch(objects, artifact).await?;
            store.install(&artifact.name, artifact.version, &bytes)?;
        }
        let text = distribution_for_node(&manifest.distribution)?;
        let incoming = self.incoming();
        std::fs::write(&incoming, text).map_err(|e| format!("{}: {e}", incoming.display()))?;
        Ok(incoming)
    }

    /// Makes the staged deployment the current one (after it loaded).
    pub fn promote(&self, revision: u64) -> Result<(), String> {
        let io = |e: std::io::Error| format!("state directory {}: {e}", self.dir.display());
        std::fs::rename(self.incoming(), self.current()).map_err(io)?;
        let tmp = self.dir.join(".revision.tmp");
        std::fs::write(&tmp, revision.to_string()).map_err(io)?;
        std::fs::rename(tmp, self.dir.join("revision")).map_err(io)
    }
}

/// A module from the Object Store, refused unless its bytes hash to the name the manifest gives.
async fn fetch(objects: &ObjectStore, artifact: &Artifact) -> Result<Vec<u8>, String> {
    let what = format!("{}:{} (sha256 {})", artifact.name, artifact.version, artifact.sha256);
    let mut object =
        objects.get(&artifact.sha256).await.map_err(|e| format!("{what}: not in the object store: {e}"))?;
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = object.read(&mut chunk).await.map_err(|e| format!("{what}: {e}"))?;
        if n == 0 {
            break;
        }
        if bytes.len() + n > MAX_MODULE_BYTES {
            return Err(format!("{what}: larger than {} MiB", MAX_MODULE_BYTES >> 20));
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let actual = verge_hooks::sha256_hex(&bytes);
    if actual != artifact.sha256 {
        return Err(format!("{what}: the object store's bytes hash to {actual}"));
    }
    Ok(bytes)
}

/// The deployed file as this node serves it: without a `server` section (the node's own applies), with
/// its function store in the state directory. The text is bounded before it is parsed (a manifest is
/// outside input).
pub fn distribution_for_node(text: &str) -> Result<String, String> {
    verge_config::bounds::check(text).map_err(|c| format!("line {}: {}", c.line, c.reason))?;
    let mut doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| format!("the deployment: {e}"))?;
    let map = doc.as_mapping_mut().ok_or("the deployment is not a YAML mapping")?;
    map.remove("server");
    let functions = map.entry("functions".into()).or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    let functions = functions.as_mapping_mut().ok_or("the deployment's `functions` is not a mapping")?;
    functions.insert("store".into(), "functions".into());
    serde_yaml::to_string(&doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_drops_the_server_section_and_uses_its_own_store() {
        let text = "server: {listen: [\"0.0.0.0:80\"]}\nfunctions: {store: /elsewhere}\norigins: []\n";
        let out = distribution_for_node(text).unwrap();
        assert!(!out.contains("server"), "{out}");
        assert!(out.contains("store: functions"), "{out}");
        assert!(distribution_for_node("- a list").is_err());
    }
}

//! The function store: `<store>/<name>/<version>.wasm` plus `<store>/manifest.json` with each version's
//! sha256. A published version is immutable: a file whose hash no longer matches is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use verge_config::arn::FunctionArn;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// name -> version -> sha256 (hex)
    functions: BTreeMap<String, BTreeMap<u32, String>>,
}

pub struct FunctionStore {
    root: PathBuf,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl FunctionStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn manifest_path(&self) -> PathBuf {
        self.root.join("manifest.json")
    }

    fn read_manifest(&self) -> Result<Manifest, String> {
        match std::fs::read(self.manifest_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a function store manifest: {e}", self.manifest_path().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(format!("{}: {e}", self.manifest_path().display())),
        }
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<(), String> {
        let tmp = self.root.join(".manifest.json.tmp");
        let text = serde_json::to_vec_pretty(manifest).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, self.manifest_path()).map_err(|e| format!("{}: {e}", self.manifest_path().display()))
    }

    pub fn module_path(&self, name: &str, version: u32) -> PathBuf {
        self.root.join(name).join(format!("{version}.wasm"))
    }

    /// Copies `module` in as the next version of `name` and returns its ARN.
    pub fn publish(&self, name: &str, module: &Path) -> Result<FunctionArn, String> {
        if FunctionArn::parse(&format!("arn:aws:lambda:r:0:function:{name}:1")).is_err() {
            return Err(format!("`{name}` is not a function name (1-64 of A-Z a-z 0-9 - _)"));
        }
        let bytes = std::fs::read(module).map_err(|e| format!("{}: {e}", module.display()))?;
        let is_wasm = bytes.starts_with(b"\0asm");
        let is_wat = std::str::from_utf8(&bytes).is_ok_and(|t| t.trim_start().starts_with('('));
        if !is_wasm && !is_wat {
            return Err(format!("{}: not a WebAssembly module (binary or text)", module.display()));
        }
        std::fs::create_dir_all(self.root.join(name)).map_err(|e| format!("{}: {e}", self.root.display()))?;
        let mut manifest = self.read_manifest()?;
        let versions = manifest.functions.entry(name.to_string()).or_default();
        let version = versions.keys().next_back().map_or(1, |v| v + 1);
        let path = self.module_path(name, version);
        std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        versions.insert(version, sha256_hex(&bytes));
        self.write_manifest(&manifest)?;
        Ok(FunctionArn::local(name, version))
    }

    /// The sha256 `name` version `version` was published with, if it is in the store.
    pub fn published_sha256(&self, name: &str, version: u32) -> Result<Option<String>, String> {
        Ok(self.read_manifest()?.functions.get(name).and_then(|v| v.get(&version)).cloned())
    }

    /// Puts `bytes` in as version `version` of `name` (a version published elsewhere and brought here,
    /// as a fleet node does with a deployment's modules). A version the store already holds with other
    /// bytes is refused: published versions are immutable.
    pub fn install(&self, name: &str, version: u32, bytes: &[u8]) -> Result<(), String> {
        let sha = sha256_hex(bytes);
        let mut manifest = self.read_manifest()?;
        let versions = manifest.functions.entry(name.to_string()).or_default();
        match versions.get(&version) {
            Some(held) if *held == sha => return Ok(()),
            Some(held) => {
                return Err(format!(
                    "{name}:{version}: published versions are immutable, but this store holds sha256 {held} and the deployment brings {sha}"
                ))
            }
            None => {}
        }
        std::fs::create_dir_all(self.root.join(name)).map_err(|e| format!("{}: {e}", self.root.display()))?;
        let path = self.module_path(name, version);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        versions.insert(version, sha);
        self.write_manifest(&manifest)
    }

    /// Every published version, oldest first.
    pub fn list(&self) -> Result<Vec<(FunctionArn, String)>, String> {
        let manifest = self.read_manifest()?;
        Ok(manifest
            .functions
            .iter()
            .flat_map(|(name, versions)| versions.iter().map(|(v, sha)| (FunctionArn::local(name, *v), sha.clone())))
            .collect())
    }

    /// The module bytes of `arn`, refused when the file changed since it was published.
    pub fn load(&self, arn: &FunctionArn) -> Result<Vec<u8>, String> {
        let manifest = self.read_manifest()?;
        let expected = manifest.functions.get(&arn.name).and_then(|v| v.get(&arn.version)).ok_or_else(|| {
            format!("{arn}: version {} of `{}` is not published in {}", arn.version, arn.name, self.root.display())
        })?;
        let path = self.module_path(&arn.name, arn.version);
        let bytes = std::fs::read(&path).map_err(|e| format!("{arn}: {}: {e}", path.display()))?;
        let actual = sha256_hex(&bytes);
        if &actual != expected {
            return Err(format!(
                "{arn}: published versions are immutable, but {} changed: manifest sha256 {expected}, file sha256 {actual}",
                path.display()
            ));
        }
        Ok(bytes)
    }
}

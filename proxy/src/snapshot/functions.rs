//! The distribution's Lambda@Edge function versions, verified against the store's manifest, compiled once
//! and indexed by behavior and trigger; unchanged versions are carried over from the running snapshot.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use verge_config::model::{Distribution, EventType, FunctionSettings};
use verge_hooks::{Function, FunctionStore, HookEngine, Limits};

/// Every behavior's functions, indexed like `Distribution::behaviors` and then by `EventType::index`.
#[derive(Default)]
pub struct LoadedFunctions {
    by_behavior: Vec<[Option<Arc<Function>>; 4]>,
    /// Each loaded version by ARN, with the sha256 of its module (for reuse by the next reload).
    by_arn: HashMap<String, (String, Arc<Function>)>,
}

impl LoadedFunctions {
    /// Verifies, compiles and checks every associated function version once. A version `previous`
    /// (the running snapshot's functions, on reload) already loaded from the same bytes with the same
    /// limits is reused as it is: no compile, and its warm instances stay warm across the deploy.
    pub fn load(
        dist: &Distribution,
        base_dir: &Path,
        engine: Option<&HookEngine>,
        previous: Option<&LoadedFunctions>,
    ) -> Result<Self, String> {
        let mut by_behavior = Vec::with_capacity(dist.behaviors.len());
        let mut compiled: HashMap<String, (String, Arc<Function>)> = HashMap::new();
        // The package limit of a function is that of its strictest trigger.
        let mut package_limit: HashMap<String, u64> = HashMap::new();
        for a in dist.behaviors.iter().flat_map(|b| b.functions.iter().flatten()) {
            let limit = package_limit.entry(a.arn.to_string()).or_insert(u64::MAX);
            *limit = (*limit).min(a.event_type.limits().max_package_bytes);
        }
        for behavior in &dist.behaviors {
            let mut slots: [Option<Arc<Function>>; 4] = Default::default();
            for a in behavior.functions.iter().flatten() {
                let key = a.arn.to_string();
                if let Some((_, f)) = compiled.get(&key) {
                    slots[a.event_type.index()] = Some(f.clone());
                    continue;
                }
                let engine = engine.ok_or("functions are associated but no hook engine was started")?;
                let store_dir = base_dir.join(dist.functions.store.as_deref().unwrap_or("functions"));
                let store = FunctionStore::new(store_dir);
                let bytes = store.load(&a.arn)?;
                let settings = dist.functions.settings.get(&a.arn.name);
                let limits = Limits {
                    timeout: Duration::from_millis(
                        settings.map_or(FunctionSettings::DEFAULT_TIMEOUT_MS, |s| s.timeout_ms),
                    ),
                    memory_bytes: (settings.map_or(FunctionSettings::DEFAULT_MEMORY_MB, |s| s.memory_mb) as usize)
                        << 20,
                    env: settings.map(|s| s.env.clone()).unwrap_or_default(),
                    per_request: settings.is_some_and(|s| s.isolation == verge_config::model::Isolation::PerRequest),
                };
                let sha = verge_hooks::sha256_hex(&bytes);
                let reusable = previous.and_then(|p| p.by_arn.get(&key)).filter(|(previous_sha, f)| {
                    *previous_sha == sha && f.limits == limits && bytes.len() as u64 <= package_limit[&key]
                });
                let function = match reusable {
                    Some((_, f)) => f.clone(),
                    None => Arc::new(engine.load(&key, &bytes, package_limit[&key], limits)?),
                };
                compiled.insert(key, (sha, function.clone()));
                slots[a.event_type.index()] = Some(function);
            }
            by_behavior.push(slots);
        }
        Ok(Self { by_behavior, by_arn: compiled })
    }

    /// Every loaded function version (for metrics).
    pub fn versions(&self) -> Vec<&Arc<Function>> {
        self.by_arn.values().map(|(_, f)| f).collect()
    }

    pub fn get(&self, behavior: usize, event: EventType) -> Option<&Arc<Function>> {
        self.by_behavior.get(behavior)?[event.index()].as_ref()
    }
}

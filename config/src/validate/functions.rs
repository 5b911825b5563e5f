//! Validation of `lambda_function_associations` and `functions` (versioned ARNs, per-trigger limits).

use super::Problems;
use crate::model::{Association, EventType, FunctionSettings, Functions, Isolation};
use crate::raw::{RawAssociation, RawFunctions};

pub(super) fn validate_associations(key: &str, raw: &[RawAssociation], p: &mut Problems) -> [Option<Association>; 4] {
    let mut out: [Option<Association>; 4] = Default::default();
    for (i, a) in raw.iter().enumerate() {
        let akey = format!("{key}.lambda_function_associations[{i}]");
        let Some(event_type) = EventType::parse(&a.event_type) else {
            p.add(
                format!("{akey}.event_type"),
                format!(
                    "`{}` is not one of viewer-request, origin-request, origin-response, viewer-response",
                    a.event_type
                ),
            );
            continue;
        };
        let arn = match crate::arn::FunctionArn::parse(&a.lambda_function_arn) {
            Ok(arn) => arn,
            Err(reason) => {
                p.add(format!("{akey}.lambda_function_arn"), reason);
                continue;
            }
        };
        if a.include_body && !matches!(event_type, EventType::ViewerRequest | EventType::OriginRequest) {
            p.add(
                format!("{akey}.include_body"),
                "The IncludeBody option can only be used with viewer-request or origin-request events",
            );
        }
        if out[event_type.index()].is_some() {
            p.add(
                format!("{akey}.event_type"),
                format!("one association per event type: `{}` is already associated", event_type.as_str()),
            );
            continue;
        }
        out[event_type.index()] = Some(Association { event_type, arn, include_body: a.include_body });
    }
    out
}

/// Function settings, checked against every trigger each function is associated with.
pub(super) fn validate_functions(
    raw: Option<RawFunctions>,
    behaviors: &[(String, [Option<Association>; 4])],
    p: &mut Problems,
) -> Functions {
    let raw = raw.unwrap_or(RawFunctions { store: None, settings: Default::default() });
    let mut settings = std::collections::BTreeMap::new();
    for (name, s) in &raw.settings {
        let key = format!("functions.settings.{name}");
        let isolation = match s.isolation.as_deref() {
            None | Some("warm") => Isolation::Warm,
            Some("per-request") => Isolation::PerRequest,
            Some(other) => {
                p.add(format!("{key}.isolation"), format!("`{other}` is not one of warm, per-request"));
                Isolation::Warm
            }
        };
        let memory_mb = p.range(
            &format!("{key}.memory_mb"),
            s.memory_mb,
            FunctionSettings::DEFAULT_MEMORY_MB,
            FunctionSettings::MAX_MEMORY_MB,
            FunctionSettings::DEFAULT_MEMORY_MB,
        );
        let timeout_ms =
            p.range(&format!("{key}.timeout_ms"), s.timeout_ms, 1, 30_000, FunctionSettings::DEFAULT_TIMEOUT_MS);
        let env = s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        settings.insert(name.clone(), FunctionSettings { memory_mb, timeout_ms, env, isolation });
    }
    let mut any = false;
    for (key, associations) in behaviors {
        for a in associations.iter().flatten() {
            any = true;
            let Some(s) = settings.get(&a.arn.name) else { continue };
            let limits = a.event_type.limits();
            let akey = format!("{key}.lambda_function_associations");
            if s.timeout_ms > limits.max_timeout_ms {
                p.add(
                    akey.clone(),
                    format!(
                        "`{}` has timeout_ms {}; {} functions may run at most {} ms",
                        a.arn.name,
                        s.timeout_ms,
                        a.event_type.as_str(),
                        limits.max_timeout_ms
                    ),
                );
            }
            if s.memory_mb > limits.max_memory_mb {
                p.add(
                    akey,
                    format!(
                        "`{}` has memory_mb {}; {} functions get at most {} MB",
                        a.arn.name,
                        s.memory_mb,
                        a.event_type.as_str(),
                        limits.max_memory_mb
                    ),
                );
            }
        }
    }
    if any && raw.store.is_none() {
        p.add("functions.store", "lambda_function_associations need a function store (functions.store: ./functions)");
    }
    Functions { store: raw.store, settings }
}

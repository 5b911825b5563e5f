//! The Grafana dashboard in `ops/grafana/verge.json` only queries metrics verge exports.

use std::collections::BTreeSet;

use verge_testkit::origin::OriginResponse;

use crate::harness::*;

/// Every `verge_*` metric family named in a panel query (histogram suffixes stripped).
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/grafana/verge.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            for (i, _) in expr.match_indices("verge_") {
                let name: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .fold(name.clone(), |n, s| n.strip_suffix(s).map(str::to_string).unwrap_or(n));
                names.insert(family);
            }
        }
    }
    names
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let names = dashboard_metrics();
    assert!(names.len() >= 15, "the dashboard queries {names:?}");
    let origin = Origin::start(|_| OriginResponse::new(200, "page").header("cache-control", "max-age=60"));
    let yaml = format!(
        "server: {{admin: {{listen: '127.0.0.1:0', unauthenticated: true}}}}\nfunctions: {{store: ./functions}}\n\
origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\ndefault_cache_behavior:\n  target_origin_id: app\n  \
lambda_function_associations:\n    - {{event_type: viewer-request, lambda_function_arn: '{}'}}\n",
        origin.port(),
        arn("misbehave", 1)
    );
    let verge = Verge::start_with_functions(&yaml, &[("misbehave", Module::Guest("misbehave"))]);
    assert_eq!(verge.get("/page").status, 200);
    let metrics = http_request(verge.admin.unwrap(), "GET", "/metrics", &[], b"").text();
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = names.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics verge does not export: {missing:?}\n{exported:?}");
}

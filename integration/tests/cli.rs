//! The `verge` command line: validate exit codes and diagnostics, serve refusing bad config.

use crate::harness::*;

#[test]
fn validate_accepts_examples_and_reports_bad_files_with_position() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo.yaml");
    let (code, out, _) = run_verge(&["validate", "--config-only", examples]);
    assert_eq!(code, 0, "{out}");

    let dir = TempDir::new();
    let bad = dir.path.join("bad.yaml");
    std::fs::write(&bad, "origins:\n  - id: app\n    domain_name: 127.0.0.1\n    http_port: 22\ndefault_cache_behavior:\n  target_origin_id: nowhere\n").unwrap();
    let (code, _, err) = run_verge(&["validate", bad.to_str().unwrap()]);
    assert_eq!(code, 64);
    assert!(err.contains("bad.yaml:4:5: origins[0].http_port: 22 is not allowed"), "{err}");
    assert!(
        err.contains(
            "bad.yaml:6:3: default_cache_behavior.target_origin_id: no origin or origin group with id `nowhere`"
        ),
        "{err}"
    );

    let (code, _, err) = run_verge(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 64, "serve refuses bad config with the same diagnostics");
    assert!(err.contains("origins[0].http_port"), "{err}");
}

#[test]
fn functions_list_and_local_invoke_with_aws_sample_events() {
    let dir = TempDir::new();
    publish(&dir, &[("webp", Module::Guest("webp"))]);
    let store = dir.path.join("functions");
    let (code, out, _) = run_verge(&["functions", "list", "--store", store.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("{}  sha256:", arn("webp", 1))), "{out}");
    let event = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/events/origin-request.json");
    let arn = arn("webp", 1);
    let args = [
        "invoke",
        "--event-type",
        "origin-request",
        "--arn",
        &arn,
        "--store",
        store.to_str().unwrap(),
        "--event",
        event,
    ];
    let (code, out, err) = run_verge(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"uri\": \"/images/cat.webp\""), "{out}");
    assert!(err.contains("origin-request returned a request"), "{err}");
    let misbehave = verge_testkit::guests::guest_path("misbehave");
    let viewer = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/events/viewer-request.json");
    let args =
        ["invoke", "--event-type", "viewer-request", "--function", misbehave.to_str().unwrap(), "--event", viewer];
    let (code, _, err) = run_verge(&args);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn validate_loads_what_serve_loads() {
    let origin = Origin::fixed(200, "ok");
    let dir = TempDir::new();
    let foreign = r#"(module (import "env" "secret" (func)) (memory (export "memory") 1) (func (export "_start")))"#;
    let big = format!(
        r#"(module (memory (export "memory") 20) (data (i32.const 0) "{}") (func (export "_start")))"#,
        "x".repeat(1_100_000)
    );
    publish(&dir, &[("foreign", Module::Wat(foreign)), ("big", Module::Wat(&big))]);
    let association = |name: &str| {
        format!("functions: {{store: ./functions}}\norigins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\ndefault_cache_behavior:\n  target_origin_id: app\n  lambda_function_associations:\n    - {{event_type: viewer-request, lambda_function_arn: '{}'}}\n", origin.port(), arn(name, 1))
    };
    for (name, reason) in [("foreign", "imports env::secret"), ("big", "over the 1048576-byte package limit")] {
        let file = dir.path.join(format!("{name}.yaml"));
        std::fs::write(&file, association(name)).unwrap();
        let (code, _, err) = run_verge(&["validate", file.to_str().unwrap()]);
        assert_eq!(code, 64, "validate refuses {name}: {err}");
        assert!(err.contains(reason), "{err}");
        let (code, _, serve_err) = run_verge(&["serve", "--config", file.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
        assert_eq!(code, 64, "and serve refuses it the same way: {serve_err}");
        assert!(serve_err.contains(reason), "{serve_err}");
        let (code, out, _) = run_verge(&["validate", "--config-only", file.to_str().unwrap()]);
        assert_eq!(code, 0, "the file alone is fine: {out}");
    }
}

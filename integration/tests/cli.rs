//! The `verge` command line: validate exit codes and diagnostics, serve refusing bad config.

use crate::harness::*;

#[test]
fn validate_accepts_examples_and_reports_bad_files_with_position() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo.yaml");
    let (code, out, _) = run_verge(&["validate", examples]);
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

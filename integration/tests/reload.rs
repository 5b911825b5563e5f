//! Hot reload end to end: `POST /reload` and SIGHUP swap the distribution (origins, behaviors, function
//! versions) into the running process; a bad file is refused and the running distribution keeps serving.

use std::time::{Duration, Instant};

use crate::harness::*;

fn yaml(origin_port: u16, behavior_extra: &str) -> String {
    format!(
        "server: {{admin: {{listen: '127.0.0.1:0', unauthenticated: true}}}}\nfunctions: {{store: ./functions}}\norigins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {origin_port}}}\n\
default_cache_behavior:\n  target_origin_id: app\n  cache_policy: CachingDisabled\n{behavior_extra}"
    )
}

/// A fast-ABI viewer-response hook that sets `x-version: <version>`.
fn versioned_hook(version: char) -> String {
    format!(
        r#"(module
      (import "verge" "header_set" (func $set (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-version{version}")
      (func (export "verge_fast_handle") (param $event i32) (result i32)
        (drop (call $set (i32.const 1) (i32.const 0) (i32.const 9) (i32.const 9) (i32.const 1)))
        (i32.const 0)))"#
    )
}

fn hook_association(version: u32) -> String {
    format!(
        "  lambda_function_associations:\n    - {{event_type: viewer-response, lambda_function_arn: '{}'}}\n",
        arn("stamp", version)
    )
}

#[test]
fn admin_reload_swaps_the_distribution_and_a_bad_file_keeps_the_running_one() {
    let first = Origin::fixed(200, "first origin");
    let second = Origin::fixed(200, "second origin");
    let verge = Verge::start(&yaml(first.port(), ""));
    let admin = verge.admin.expect("admin API");
    assert_eq!(verge.get("/a").text(), "first origin");

    std::fs::write(verge.config_path(), yaml(second.port(), "")).unwrap();
    let reloaded = http_request(admin, "POST", "/reload", &[], b"");
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert!(reloaded.text().contains("\"generation\":2"), "{}", reloaded.text());
    assert!(reloaded.text().contains("\"needs_restart\":[]"), "{}", reloaded.text());
    assert_eq!(verge.get("/a").text(), "second origin", "the new origin serves at once");

    // A typo: refused with the file, line, column and key; the second origin keeps serving.
    std::fs::write(verge.config_path(), yaml(second.port(), "  target_origin: app\n")).unwrap();
    let refused = http_request(admin, "POST", "/reload", &[], b"");
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("distribution.yaml:8:"), "{}", refused.text());
    assert!(refused.text().contains("target_origin"), "{}", refused.text());
    assert_eq!(verge.get("/a").text(), "second origin");
    assert!(verge.wait_for_output("reload refused, the running distribution keeps serving"), "{}", verge.output());

    // A missing function version is a load error, refused the same way.
    std::fs::write(verge.config_path(), yaml(second.port(), &hook_association(7))).unwrap();
    let missing = http_request(admin, "POST", "/reload", &[], b"");
    assert_eq!(missing.status, 400, "{}", missing.text());
    assert!(missing.text().contains(&arn("stamp", 7)), "{}", missing.text());
    assert_eq!(verge.get("/a").text(), "second origin");

    // The CLI says the same (exit 64, the reasons on stderr).
    let admin_arg = admin.to_string();
    let (code, _, err) = run_verge(&["reload", "--admin", &admin_arg]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("reload refused") && err.contains(&arn("stamp", 7)), "{err}");

    // Settings bound at start keep their running values and are named.
    let resized = yaml(first.port(), "").replace("server: {", "server: {cache: {memory_mb: 8}, ");
    std::fs::write(verge.config_path(), resized).unwrap();
    let partial = http_request(admin, "POST", "/reload", &[], b"");
    assert_eq!(partial.status, 200, "{}", partial.text());
    assert!(partial.text().contains("\"needs_restart\":[\"server.cache\"]"), "{}", partial.text());
    assert_eq!(verge.get("/a").text(), "first origin", "the rest applied");
    let (code, out, err) = run_verge(&["reload", "--admin", &admin_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"reloaded\":true"), "{out}");
}

#[test]
fn sighup_reloads_a_new_function_version() {
    let origin = Origin::fixed(200, "origin");
    let dir = TempDir::new();
    publish(&dir, &[("stamp", Module::Wat(&versioned_hook('1')))]);
    let verge = Verge::start_in(dir, &yaml(origin.port(), &hook_association(1)));
    assert_eq!(verge.get("/a").header("x-version"), Some("1"));

    publish(verge.dir(), &[("stamp", Module::Wat(&versioned_hook('2')))]);
    std::fs::write(verge.config_path(), yaml(origin.port(), &hook_association(2))).unwrap();
    let status = std::process::Command::new("kill").args(["-HUP", &verge.pid().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(verge.wait_for_output("distribution reloaded"), "{}", verge.output());
    // Requests after the swap see version 2 (poll: the log line and the swap are one step apart).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let version = verge.get("/a").header("x-version").map(str::to_string);
        if version.as_deref() == Some("2") {
            break;
        }
        assert!(Instant::now() < deadline, "still {version:?} after the reload");
        std::thread::yield_now();
    }
}

#[test]
fn an_unchanged_function_version_stays_warm_across_a_reload() {
    // misbehave's `/count` answers how many calls its warm instance has served.
    let first = Origin::fixed(200, "first origin");
    let second = Origin::fixed(200, "second origin");
    let association = format!(
        "  lambda_function_associations:\n    - {{event_type: viewer-request, lambda_function_arn: '{}'}}\n",
        arn("misbehave", 1)
    );
    let dir = TempDir::new();
    publish(&dir, &[("misbehave", Module::Guest("misbehave"))]);
    let verge = Verge::start_in(dir, &yaml(first.port(), &association));
    assert_eq!(verge.get("/count").text(), "1");
    assert_eq!(verge.get("/count").text(), "2");
    std::fs::write(verge.config_path(), yaml(second.port(), &association)).unwrap();
    let reloaded = http_request(verge.admin.unwrap(), "POST", "/reload", &[], b"");
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert_eq!(verge.get("/a").text(), "second origin", "the reload applied");
    assert_eq!(verge.get("/count").text(), "4", "same function version: the same warm instance");
}

/// 1.2 MB on disk that YAML aliases expand to about 20 GB.
fn alias_bomb(origin_port: u16) -> String {
    let mut text = yaml(origin_port, "");
    text.push_str(&format!("distribution:\n  id: E{}\n", "B".repeat(4)));
    text = text.replace("functions: {store: ./functions}\n", "");
    let mut bomb = format!(
        "functions:\n  store: ./functions\n  settings:\n    f:\n      env:\n        k0: &a \"{}\"\n",
        "x".repeat(1 << 20)
    );
    for i in 1..20_000 {
        bomb.push_str(&format!("        k{i}: *a\n"));
    }
    text + &bomb
}

#[test]
fn an_alias_bomb_is_refused_by_validate_and_by_reload_while_verge_keeps_serving() {
    let origin = Origin::fixed(200, "still serving");
    let verge = Verge::start(&yaml(origin.port(), ""));
    let admin = verge.admin.expect("admin API");
    std::fs::write(verge.config_path(), alias_bomb(origin.port())).unwrap();

    let started = Instant::now();
    let (code, _, err) = run_verge(&["validate", verge.config_path().to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("aliases expand the file past"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "refused before expanding: {:?}", started.elapsed());

    let refused = http_request(admin, "POST", "/reload", &[], b"");
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("aliases expand the file past"), "{}", refused.text());
    assert_eq!(verge.get("/a").text(), "still serving", "the running distribution keeps serving");
    assert!(verge.peak_rss_kb() < 512 * 1024, "no expansion in the serving process: {} KB", verge.peak_rss_kb());
}

#[test]
fn the_admin_api_needs_its_bearer_token_except_for_healthz() {
    let origin = Origin::fixed(200, "ok");
    let dir = TempDir::new();
    std::fs::write(dir.path.join("admin.token"), "s3cr3t-admin-token-0123456789\n").unwrap();
    let yaml = yaml(origin.port(), "").replace(
        "admin: {listen: '127.0.0.1:0', unauthenticated: true}",
        "admin: {listen: '127.0.0.1:0', token_file: admin.token}",
    );
    let verge = Verge::start_in(dir, &yaml);
    let admin = verge.admin.expect("admin API");
    let bearer = ("Authorization", "Bearer s3cr3t-admin-token-0123456789");
    for (method, path) in [("GET", "/metrics"), ("GET", "/stats"), ("POST", "/reload"), ("POST", "/invalidations")] {
        let refused = http_request(admin, method, path, &[], b"/a");
        assert_eq!(refused.status, 401, "{method} {path} without a token");
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        let wrong =
            http_request(admin, method, path, &[("Authorization", "Bearer s3cr3t-admin-token-0123456780")], b"/a");
        assert_eq!(wrong.status, 401, "{method} {path} with a wrong token");
        assert_eq!(http_request(admin, method, path, &[bearer], b"/a").status, 200, "{method} {path} with the token");
    }
    assert_eq!(http_request(admin, "GET", "/healthz", &[], b"").status, 200, "health checks need no token");
    let token_file = verge.config_path().with_file_name("admin.token");
    let (code, _, err) = run_verge(&["invalidate", "--admin", &admin.to_string(), "/a"]);
    assert_eq!(code, 64, "the CLI without the token is refused: {err}");
    let (code, out, err) =
        run_verge(&["invalidate", "--admin", &admin.to_string(), "--token-file", token_file.to_str().unwrap(), "/a"]);
    assert_eq!(code, 0, "{out}{err}");
}

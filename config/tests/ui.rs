//! Snapshot tests of the distribution format: each `ui/*.yaml` beside its expected `.err` (exact
//! diagnostics) or `.out` (a summary of the parsed model). `VERGE_BLESS=1` rewrites the expectations.

use std::fmt::Write as _;
use std::path::Path;

use verge_config::model::{Config, Target};

fn summary(config: &Config) -> String {
    let (d, server) = (&config.distribution, &config.server);
    let mut s = String::new();
    writeln!(
        s,
        "listen: {:?} threads: {:?} idle: {}s admin: {:?}",
        server.listen, server.threads, server.viewer_idle_timeout_secs, server.admin
    )
    .unwrap();
    writeln!(s, "id: {} domain: {} aliases: {:?} root: {:?}", d.id, d.domain_name, d.aliases, d.default_root_object)
        .unwrap();
    if server.geo.is_some() || d.geo_restriction.is_some() {
        writeln!(s, "geo: {:?} restriction: {:?}", server.geo, d.geo_restriction).unwrap();
    }
    writeln!(s, "cache: {} bytes, max object {} bytes", server.cache.memory_bytes, server.cache.max_object_bytes)
        .unwrap();
    for o in &d.origins {
        writeln!(
            s,
            "origin {}: {}:{} path={:?} headers={:?} attempts={} connect={}s read={}s keepalive={}s",
            o.id,
            o.domain_name,
            o.http_port,
            o.origin_path,
            o.custom_headers,
            o.connection_attempts,
            o.connection_timeout_secs,
            o.read_timeout_secs,
            o.keepalive_timeout_secs
        )
        .unwrap();
    }
    for g in &d.origin_groups {
        writeln!(s, "group {}: {} -> {} on {:?}", g.id, g.primary, g.secondary, g.failover_status_codes).unwrap();
    }
    for b in &d.behaviors {
        let target = match b.target {
            Target::Origin(i) => format!("origin {}", d.origins[i].id),
            Target::Group(i) => format!("group {}", d.origin_groups[i].id),
        };
        let c = &b.cache_policy;
        writeln!(
            s,
            "behavior {} -> {target}; methods {:#b}/{:#b}; cache {} ttl {}/{}/{} headers {:?} cookies {:?} qs {:?} gzip {} br {}; request policy {:?}",
            b.path_pattern.as_ref().map_or("*", |p| p.as_str()),
            b.allowed_methods.bits(),
            b.cached_methods.bits(),
            c.name,
            c.min_ttl,
            c.default_ttl,
            c.max_ttl,
            c.headers,
            c.cookies,
            c.query_strings,
            c.accept_encoding_gzip,
            c.accept_encoding_brotli,
            b.origin_request_policy.as_ref().map(|p| p.name.as_str())
        )
        .unwrap();
        for a in b.functions.iter().flatten() {
            writeln!(s, "  {} -> {} include_body={}", a.event_type.as_str(), a.arn, a.include_body).unwrap();
        }
    }
    writeln!(s, "functions store {:?}", d.functions.store).unwrap();
    for (name, f) in &d.functions.settings {
        writeln!(s, "  {name}: {} MB, {} ms, env {:?}, {:?}", f.memory_mb, f.timeout_ms, f.env, f.isolation).unwrap();
    }
    for e in &d.custom_error_responses {
        writeln!(
            s,
            "error {} -> {:?} as {:?}, min ttl {}",
            e.error_code, e.response_page_path, e.response_code, e.error_caching_min_ttl
        )
        .unwrap();
    }
    s
}

#[test]
fn ui_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let bless = std::env::var_os("VERGE_BLESS").is_some();
    let mut failures = Vec::new();
    let mut count = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for yaml in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        count += 1;
        let name = yaml.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(yaml).unwrap();
        let (actual, ext) = match verge_config::parse_str(name, &text) {
            Ok(d) => (summary(&d), "out"),
            Err(e) => (format!("{e}\n"), "err"),
        };
        let expected_path = yaml.with_extension(ext);
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!("{name}:\n--- expected\n{expected}--- actual\n{actual}")),
            Err(_) => failures.push(format!("{name}: no {ext} file; got:\n{actual}")),
        }
    }
    assert!(count >= 10, "expected the ui corpus, found {count} files");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

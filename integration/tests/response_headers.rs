//! Response headers policies end to end: managed and custom policies on hits, misses and verge's own
//! pages, override rules, removal, CORS (with a preflight answered at the edge), Server-Timing, and that
//! nothing a policy adds is stored in the cache.

use verge_testkit::origin::OriginResponse;

use crate::harness::*;

fn origin() -> Origin {
    Origin::start(|req| {
        OriginResponse::new(200, format!("body of {}", req.path()))
            .header("content-type", "text/plain")
            .header("cache-control", "max-age=300")
            .header("x-frame-options", "DENY")
            .header("x-powered-by", "php/5")
            .header("x-custom", "from origin")
            .header("server-timing", "db;dur=53")
    })
}

fn yaml(port: u16, policies: &str, policy: &str) -> String {
    format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {port}}}\n{policies}\
default_cache_behavior: {{target_origin_id: app, response_headers_policy: {policy}}}\n"
    )
}

#[test]
fn the_managed_security_headers_policy_on_misses_hits_and_verges_own_pages() {
    let app = origin();
    let verge = Verge::start(&yaml(app.port(), "", "SecurityHeadersPolicy"));
    for expected in ["Miss from verge", "Hit from verge"] {
        let resp = verge.get("/page");
        assert_eq!(resp.x_cache(), expected);
        assert_eq!(resp.header("strict-transport-security"), Some("max-age=31536000"));
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(resp.header("referrer-policy"), Some("strict-origin-when-cross-origin"));
        assert_eq!(resp.header("x-xss-protection"), Some("1; mode=block"));
        assert_eq!(resp.header("x-frame-options"), Some("DENY"), "the origin's value is kept (no override)");
        // A hit sends the policy's fields appended to the stored head (fresh_hit.rs): each once.
        for name in ["x-frame-options", "strict-transport-security", "x-content-type-options"] {
            assert_eq!(resp.headers.iter().filter(|(n, _)| n == name).count(), 1, "{name} in {resp:?}");
        }
    }
    let refused = verge.request("POST", "/page", &[], b"x");
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"), "verge's own pages too");
}

#[test]
fn a_custom_policy_overrides_removes_and_adds_and_nothing_it_adds_is_cached() {
    let app = origin();
    let policies = "response_headers_policies:\n  - name: site\n    security_headers_config:\n      \
frame_options: {frame_option: SAMEORIGIN, override: true}\n      \
content_security_policy: {content_security_policy: \"default-src 'self'\", override: true}\n      \
strict_transport_security: {access_control_max_age_sec: 63072000, include_subdomains: true, preload: true, override: true}\n    \
custom_headers_config:\n      - {header: X-Custom, value: from policy, override: false}\n      \
- {header: X-Edge-Team, value: platform, override: true}\n    remove_headers_config: [X-Powered-By, Server-Timing]\n";
    let verge = Verge::start(&yaml(app.port(), policies, "site"));
    let miss = verge.get("/a");
    let hit = verge.get("/a");
    assert_eq!(hit.x_cache(), "Hit from verge");
    for resp in [&miss, &hit] {
        assert_eq!(resp.header("x-frame-options"), Some("SAMEORIGIN"), "override replaces the origin's");
        assert_eq!(resp.header("content-security-policy"), Some("default-src 'self'"));
        assert_eq!(resp.header("strict-transport-security"), Some("max-age=63072000; includeSubDomains; preload"));
        assert_eq!(resp.header("x-custom"), Some("from origin"), "no override: the origin's kept");
        assert_eq!(resp.header("x-edge-team"), Some("platform"));
        assert_eq!(resp.header("x-powered-by"), None, "removed");
        assert_eq!(resp.header("server-timing"), None, "removed");
    }
    // Without the policy (a reload), the cached object shows the origin's own headers: none were stored.
    std::fs::write(verge.config_path(), yaml(app.port(), "", "SimpleCORS")).unwrap();
    let _ = std::process::Command::new("kill").args(["-HUP", &verge.pid().to_string()]).status();
    assert!(verge.wait_for_output("distribution reloaded"), "{}", verge.output());
    let after = verge.get("/a");
    assert_eq!(after.x_cache(), "Hit from verge");
    assert_eq!(after.header("x-frame-options"), Some("DENY"));
    assert_eq!(after.header("x-powered-by"), Some("php/5"));
    assert_eq!(after.header("x-edge-team"), None);
    assert_eq!(app.count(), 1);
}

#[test]
fn cors_allows_listed_and_wildcard_origins_and_answers_preflights_at_the_edge() {
    let app = origin();
    let policies = "response_headers_policies:\n  - name: api\n    cors_config:\n      \
access_control_allow_origins: ['https://app.example.com', 'https://*.example.org']\n      \
access_control_allow_methods: [GET, POST]\n      access_control_allow_headers: [Content-Type, X-Token]\n      \
access_control_expose_headers: [X-Request-Id]\n      access_control_allow_credentials: true\n      \
access_control_max_age_sec: 600\n";
    let verge = Verge::start(&yaml(app.port(), policies, "api"));
    let allowed = verge.request("GET", "/data", &[("Origin", "https://a.example.org")], b"");
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://a.example.org"));
    assert_eq!(allowed.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(allowed.header("access-control-expose-headers"), Some("X-Request-Id"));
    assert!(allowed.headers.iter().any(|(n, v)| n == "vary" && v.contains("Origin")), "{:?}", allowed.headers);
    let denied = verge.request("GET", "/data", &[("Origin", "https://evil.example.com")], b"");
    assert_eq!(denied.header("access-control-allow-origin"), None);
    let no_origin = verge.get("/data");
    assert_eq!(no_origin.header("access-control-allow-origin"), None);

    let preflight = verge.request(
        "OPTIONS",
        "/data",
        &[("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "POST")],
        b"",
    );
    assert_eq!(preflight.status, 204, "answered at the edge: OPTIONS is not sent to this behavior's origin");
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(preflight.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(preflight.header("access-control-allow-headers"), Some("Content-Type, X-Token"));
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    assert_eq!(app.count(), 1, "the origin saw the first GET only");
    assert_eq!(verge.request("OPTIONS", "/data", &[], b"").status, 403, "a plain OPTIONS is still not allowed");
}

#[test]
fn server_timing_when_sampled_or_asked_for_merged_with_the_origins() {
    let app = origin();
    let policies = "response_headers_policies:\n  - name: timing\n    server_timing_headers_config: {enabled: true, sampling_rate: 0}\n  \
- name: always\n    server_timing_headers_config: {enabled: true, sampling_rate: 100}\n";
    let verge = Verge::start(&format!(
        "{}cache_behaviors:\n  - {{path_pattern: /always/*, target_origin_id: app, response_headers_policy: always}}\n",
        yaml(app.port(), policies, "timing")
    ));
    assert_eq!(verge.get("/t").header("server-timing"), Some("db;dur=53"), "not sampled: the origin's alone");
    let asked = verge.request("GET", "/t2", &[("Pragma", "server-timing")], b"");
    let timing = asked.header("server-timing").unwrap_or("");
    let id = asked.header("x-amz-cf-id").unwrap();
    assert!(timing.starts_with("db;dur=53,cdn-cache-miss,"), "{timing}");
    assert!(timing.contains(&format!("cdn-rid;desc=\"{id}\"")) && timing.contains("cdn-upstream-fbl;dur="), "{timing}");
    let hit = verge.request("GET", "/t2", &[("Pragma", "server-timing")], b"");
    let timing = hit.header("server-timing").unwrap_or("");
    assert!(timing.contains("cdn-cache-hit") && timing.contains("cdn-hit-layer;desc=\"EDGE\""), "{timing}");
    assert!(verge.get("/always/x").header("server-timing").unwrap_or("").contains("cdn-cache-miss"));
}

//! The three example hooks with their own example distributions, against real origins.

use crate::harness::*;

/// The example's distribution with its origin pointed at `port`.
fn example_yaml(example: &str, port: u16) -> String {
    let path = format!("{}/../examples/{example}/distribution.yaml", env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(path).unwrap();
    assert!(yaml.contains("http_port: 8081"), "the example's origin port moved");
    yaml.replace("http_port: 8081", &format!("http_port: {port}"))
}

#[test]
fn ab_test_keeps_a_viewer_in_its_group_and_assigns_new_ones() {
    let origin = Origin::start(|req| {
        OriginResponse::new(200, format!("page {}", req.path())).header("cache-control", "max-age=60")
    });
    let verge =
        Verge::start_with_functions(&example_yaml("ab-test", origin.port()), &[("ab-test", Module::Guest("ab_test"))]);
    let b = verge.request("GET", "/page", &[("Cookie", "ab_test=B")], b"");
    assert_eq!(b.text(), "page /version-B/page");
    assert_eq!(b.header("set-cookie"), Some("ab_test=B; Path=/; Max-Age=2592000; Secure; HttpOnly"));
    let again = verge.request("GET", "/page", &[("Cookie", "ab_test=B")], b"");
    assert_eq!((again.x_cache(), again.text().as_str()), ("Hit from verge", "page /version-B/page"));
    assert!(again.header("set-cookie").is_some(), "viewer-response runs on hits");

    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let fresh = verge.get("/page");
        let group = fresh.text().strip_prefix("page /version-").and_then(|r| r.get(..1)).unwrap().to_string();
        let cookie = fresh.header("set-cookie").unwrap();
        assert!(cookie.starts_with(&format!("ab_test={group};")), "the cookie names the group served: {cookie}");
        seen.insert(group);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["A", "B"], "new viewers are split between both groups");
}

#[test]
fn security_headers_are_added_to_misses_and_hits() {
    let origin = Origin::start(|req| {
        let resp = OriginResponse::new(200, "hello").header("cache-control", "max-age=60");
        if req.path() == "/framed" {
            resp.header("X-Frame-Options", "SAMEORIGIN")
        } else {
            resp
        }
    });
    let verge = Verge::start_with_functions(
        &example_yaml("security-headers", origin.port()),
        &[("security-headers", Module::Guest("security_headers"))],
    );
    for expected in ["Miss from verge", "Hit from verge"] {
        let resp = verge.get("/");
        assert_eq!(resp.x_cache(), expected);
        assert_eq!(resp.header("strict-transport-security"), Some("max-age=63072000; includeSubDomains; preload"));
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(resp.header("x-frame-options"), Some("DENY"));
        assert_eq!(resp.header("x-xss-protection"), Some("1; mode=block"));
        assert!(resp.header("content-security-policy").is_some_and(|v| v.contains("default-src 'self'")));
        assert_eq!(resp.headers.iter().filter(|(n, _)| n == "x-frame-options").count(), 1);
    }
    assert_eq!(origin.count(), 1, "the second response was a hit");
    // A hit's head is the stored one with the function's fields appended, unless the function replaces
    // a field the origin sent: then that field is replaced, never sent twice.
    for expected in ["Miss from verge", "Hit from verge"] {
        let resp = verge.get("/framed");
        assert_eq!(resp.x_cache(), expected);
        let frame_options: Vec<&str> =
            resp.headers.iter().filter(|(n, _)| n == "x-frame-options").map(|(_, v)| v.as_str()).collect();
        assert_eq!(frame_options, ["DENY"]);
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(origin.count(), 2);
}

/// HTTP/2 hits take the stored header's copy, where the hook's header block is replayed field by field
/// (HTTP/1 hits append its rendered lines): the same fields either way, once each.
#[test]
fn security_headers_reach_http2_viewers_on_misses_and_hits() {
    let origin = Origin::start(|_| {
        OriginResponse::new(200, "hello").header("cache-control", "max-age=60").header("x-frame-options", "SAMEORIGIN")
    });
    let yaml = example_yaml("security-headers", origin.port())
        .replace(r#"server: { listen: ["127.0.0.1:8080"] }"#, r#"server: { listen: ["127.0.0.1:8080"], h2c: true }"#);
    assert!(yaml.contains("h2c: true"), "the example's server line moved");
    let verge = Verge::start_with_functions(&yaml, &[("security-headers", Module::Guest("security_headers"))]);
    let url = format!("http://{}/page", verge.addr);
    for expected in ["miss from verge", "hit from verge"] {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "30", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null", &url])
            .output()
            .expect("curl runs");
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(head.starts_with("http/2 200"), "{head}");
        let field = |name: &str| -> Vec<String> {
            head.lines().filter_map(|l| l.strip_prefix(&format!("{name}: ")).map(|v| v.trim().to_string())).collect()
        };
        assert_eq!(field("x-cache"), [expected]);
        assert_eq!(field("x-frame-options"), ["deny"], "replaced, not sent twice");
        assert_eq!(field("strict-transport-security"), ["max-age=63072000; includesubdomains; preload"]);
        assert_eq!(field("x-content-type-options"), ["nosniff"]);
        assert_eq!(field("x-xss-protection"), ["1; mode=block"]);
        assert_eq!(field("content-security-policy").len(), 1);
    }
    assert_eq!(origin.count(), 1, "the second response was a hit");
}

#[test]
fn webp_is_served_only_to_viewers_that_accept_it_even_from_cache() {
    let origin = Origin::start(|req| {
        let body = if req.path().ends_with(".webp") { "WEBP" } else { "JPEG" };
        OriginResponse::new(200, format!("{body} {:?}", req.header("x-original-format")))
            .header("cache-control", "max-age=600")
    });
    let verge = Verge::start_with_functions(&example_yaml("webp", origin.port()), &[("webp", Module::Guest("webp"))]);
    let webp = [("Accept", "image/webp,*/*")];
    let plain = [("Accept", "image/png,*/*")];
    let get = |h: &[(&str, &str)]| verge.request("GET", "/images/cat.jpg", h, b"");
    let first = get(&webp);
    assert_eq!((first.x_cache(), first.text().as_str()), ("Miss from verge", "WEBP Some(\"jpg\")"));
    let other = get(&plain);
    assert_eq!(
        (other.x_cache(), other.text().as_str()),
        ("Miss from verge", "JPEG None"),
        "a non-webp viewer never gets the cached webp"
    );
    assert_eq!(get(&webp).text(), "WEBP Some(\"jpg\")");
    let cached_plain = get(&plain);
    assert_eq!((cached_plain.x_cache(), cached_plain.text().as_str()), ("Hit from verge", "JPEG None"));
    let none = verge.get("/images/cat.jpg");
    assert_eq!(none.text(), "JPEG None", "no Accept at all: the original format");
    assert_eq!(verge.request("GET", "/images/logo.gif", &webp, b"").text(), "JPEG None", "other formats untouched");
}

//! CloudFront cache semantics end to end: TTLs, keys, managed policies, collapsing, revalidation,
//! conditional/HEAD/Range from cache, stale serving, error caching, invalidation, storage bounds.
//! Sleeps here wait for a TTL to run out (the behaviour under test), never to synchronise.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

/// A distribution with one origin, the given cache policies and a default behavior using `policy`.
fn dist(port: u16, policies: &str, behavior: &str) -> String {
    format!(
        "server: {{admin: {{listen: '127.0.0.1:0', unauthenticated: true}}}}\norigins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {port}, connection_attempts: 1}}\n{policies}default_cache_behavior: {{target_origin_id: app, {behavior}}}\n"
    )
}

fn cc(value: &'static str) -> impl Fn(&OriginRequest) -> OriginResponse {
    move |req| OriginResponse::new(200, format!("body of {}", req.target)).header("cache-control", value)
}

#[test]
fn default_ttl_applies_only_without_origin_freshness() {
    let plain = Origin::start(|_| OriginResponse::new(200, "plain"));
    let policies = "cache_policies:\n  - {name: p, min_ttl: 0, default_ttl: 60, max_ttl: 100}\n";
    let verge = Verge::start(&dist(plain.port(), policies, "cache_policy: p"));
    verge.get("/x");
    assert_eq!(verge.get("/x").x_cache(), "Hit from verge");
    assert_eq!(plain.count(), 1);

    // UseOriginCacheControlHeaders is 0/0/1y: a plain RFC 9111 cache, so no freshness means no reuse.
    let verge = Verge::start(&dist(plain.port(), "", "cache_policy: UseOriginCacheControlHeaders"));
    verge.get("/y");
    verge.get("/y");
    assert_eq!(plain.count(), 3);
}

/// A fresh hit's response header is moved out of the per-lookup copy of the stored header (the vendored
/// pingora-cache), never out of the store: every hit carries all the origin's fields, not only the first.
#[test]
fn every_hit_carries_the_whole_stored_header() {
    let origin = Origin::start(|_| {
        OriginResponse::new(200, "stored")
            .header("cache-control", "max-age=600")
            .header("etag", "\"v1\"")
            .header("x-origin-field", "kept")
            .header("content-type", "text/plain")
    });
    let verge = Verge::start(&dist(origin.port(), "", "cache_policy: CachingOptimized"));
    assert_eq!(verge.get("/h").x_cache(), "Miss from verge");
    for _ in 0..3 {
        let hit = verge.get("/h");
        assert_eq!(hit.x_cache(), "Hit from verge");
        assert_eq!(hit.header("etag"), Some("\"v1\""));
        assert_eq!(hit.header("x-origin-field"), Some("kept"));
        assert_eq!(hit.header("content-type"), Some("text/plain"));
        assert_eq!(hit.header("cache-control"), Some("max-age=600"));
        assert!(hit.header("age").is_some(), "a hit says its age");
        assert_eq!(hit.text(), "stored");
    }
    assert_eq!(origin.count(), 1);
}

/// Reads one response off a kept-alive connection (framed by `Content-Length`; none for HEAD): the
/// head as sent (names in their wire case) and the body.
fn read_response(stream: &mut std::net::TcpStream, head_only: bool) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "connection closed in a head: {raw:?}");
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
        .expect("a hit says its length");
    let mut body = vec![0u8; if head_only { 0 } else { length }];
    stream.read_exact(&mut body).unwrap();
    (head, body)
}

/// A fresh hit is sent from the head rendered when the object was stored (edge/fresh_hit.rs); one
/// with a conditional that does not match takes pingora's hit path. Both say the same, and the
/// rendered one keeps the origin's field names as the origin wrote them.
#[test]
fn fresh_hits_sent_from_the_rendered_head_match_pingoras_hit_path() {
    let origin = Origin::start(|_| {
        OriginResponse::new(200, "rendered once")
            .header("Cache-Control", "max-age=600")
            .header("ETag", "\"v1\"")
            .header("X-Origin-Field", "kept")
            .header("Link", "</a.css>; rel=preload")
            .header("Link", "</b.js>; rel=preload")
            .header("X-Cache", "from the origin")
    });
    let verge = Verge::start(&dist(origin.port(), "", "cache_policy: CachingOptimized"));
    assert_eq!(verge.get("/r").x_cache(), "Miss from verge");
    let fields = |r: &Response| {
        let mut f: Vec<(String, String)> =
            r.headers.iter().filter(|(n, _)| !matches!(n.as_str(), "x-amz-cf-id" | "age" | "date")).cloned().collect();
        f.sort();
        f
    };
    let rendered = verge.get("/r");
    let pingoras = verge.request("GET", "/r", &[("If-None-Match", "\"v0\"")], b"");
    assert_eq!(rendered.x_cache(), "Hit from verge");
    assert_eq!(fields(&rendered), fields(&pingoras));
    assert_eq!(rendered.body, pingoras.body);
    for hit in [&rendered, &pingoras] {
        assert!(hit.header("age").is_some() && hit.header("date").is_some(), "{hit:?}");
        assert_eq!(hit.header("accept-ranges"), Some("bytes"));
        assert_eq!(hit.headers.iter().filter(|(n, _)| n == "link").count(), 2);
    }
    assert_ne!(rendered.header("x-amz-cf-id"), pingoras.header("x-amz-cf-id"));
    assert_eq!(origin.count(), 1);

    // On one kept-alive connection: hits, a HEAD (a length, no body), and the origin's case.
    use std::io::Write;
    let mut viewer = std::net::TcpStream::connect(verge.addr).unwrap();
    viewer.set_read_timeout(Some(TIMEOUT)).unwrap();
    for method in ["GET", "HEAD", "GET"] {
        write!(viewer, "{method} /r HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut viewer, method == "HEAD");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        for field in ["\r\nX-Origin-Field: kept\r\n", "\r\nETag: \"v1\"\r\n", "\r\nConnection: keep-alive\r\n"] {
            assert!(head.contains(field), "{field:?} in {head}");
        }
        assert!(head.contains("\r\nContent-Length: 13\r\n") || head.contains("\r\ncontent-length: 13\r\n"), "{head}");
        assert_eq!(head.matches("X-Cache").count(), 1, "the edge's X-Cache replaces the origin's: {head}");
        assert_eq!(body, if method == "HEAD" { &b""[..] } else { &b"rendered once"[..] });
    }
    // HTTP/1.0 without keep-alive: the hit says so and the connection ends after it.
    let mut old = std::net::TcpStream::connect(verge.addr).unwrap();
    old.set_read_timeout(Some(TIMEOUT)).unwrap();
    old.write_all(b"GET /r HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut old, false);
    assert!(head.contains("\r\nConnection: close\r\n") && head.contains("Hit from verge"), "{head}");
    assert_eq!(body, b"rendered once");
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut old, &mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    // The viewer's `Connection` field, in any case, still decides (pingora notes it as the head is
    // read): `close` ends an HTTP/1.1 connection, `keep-alive` keeps an HTTP/1.0 one.
    let mut closing = std::net::TcpStream::connect(verge.addr).unwrap();
    closing.set_read_timeout(Some(TIMEOUT)).unwrap();
    closing.write_all(b"GET /r HTTP/1.1\r\nHost: x\r\nconnection: Close\r\n\r\n").unwrap();
    let (head, _) = read_response(&mut closing, false);
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut closing, &mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let mut kept = std::net::TcpStream::connect(verge.addr).unwrap();
    kept.set_read_timeout(Some(TIMEOUT)).unwrap();
    for _ in 0..2 {
        kept.write_all(b"GET /r HTTP/1.0\r\nHost: x\r\nCONNECTION: keep-alive\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut kept, false);
        assert!(head.contains("\r\nConnection: keep-alive\r\n"), "{head}");
        assert_eq!(body, b"rendered once");
    }
    assert_eq!(origin.count(), 1);
}

/// Objects with `Vary` (every object verge compresses has one) take the rendered path too: each viewer
/// gets its own variant, from the primary slot or the variant's slot, as pingora's lookup would pick.
#[test]
fn fresh_hits_of_varied_objects_serve_each_viewer_its_own_variant_from_the_rendered_head() {
    let origin = Origin::start(|req| {
        let encoding = req.header("accept-encoding").unwrap_or("none").to_string();
        OriginResponse::new(200, format!("variant {encoding}"))
            .header("Cache-Control", "max-age=600")
            .header("Content-Type", "image/png")
            .header("Vary", "Accept-Encoding")
            .header("X-Origin-Field", "kept")
    });
    let verge = Verge::start(&dist(origin.port(), "", "cache_policy: CachingOptimized"));
    let encodings: [&[(&str, &str)]; 3] = [&[("Accept-Encoding", "gzip")], &[("Accept-Encoding", "br, gzip")], &[]];
    for headers in encodings {
        assert_eq!(verge.request("GET", "/v", headers, b"").x_cache(), "Miss from verge");
    }
    assert_eq!(origin.count(), 3, "three variants: gzip (the primary slot), br and identity (their own slots)");

    use std::io::Write;
    let mut viewer = std::net::TcpStream::connect(verge.addr).unwrap();
    viewer.set_read_timeout(Some(TIMEOUT)).unwrap();
    for (accept, expected) in [("gzip", "variant gzip"), ("br, gzip", "variant br,gzip"), ("", "variant identity")] {
        let field = if accept.is_empty() { String::new() } else { format!("Accept-Encoding: {accept}\r\n") };
        write!(viewer, "GET /v HTTP/1.1\r\nHost: x\r\n{field}\r\n").unwrap();
        let (head, body) = read_response(&mut viewer, false);
        assert!(head.contains("Hit from verge"), "{head}");
        // The origin's case: the head rendered when the variant was stored (pingora's path lower-cases).
        assert!(
            head.contains("\r\nX-Origin-Field: kept\r\n") && head.contains("\r\nVary: Accept-Encoding\r\n"),
            "{head}"
        );
        assert_eq!(String::from_utf8(body).unwrap(), expected, "Accept-Encoding: {accept:?}");
    }
    // The same fields as pingora's hit of the same variant (a non-matching conditional goes through it).
    let fields = |r: &Response| {
        let mut f: Vec<(String, String)> =
            r.headers.iter().filter(|(n, _)| !matches!(n.as_str(), "x-amz-cf-id" | "age" | "date")).cloned().collect();
        f.sort();
        f
    };
    let br = [("Accept-Encoding", "gzip, br")];
    let rendered = verge.request("GET", "/v", &br, b"");
    let pingoras = verge.request("GET", "/v", &[br[0], ("If-None-Match", "\"other\"")], b"");
    assert_eq!((rendered.x_cache(), pingoras.x_cache()), ("Hit from verge", "Hit from verge"));
    assert_eq!(fields(&rendered), fields(&pingoras));
    assert_eq!(
        (rendered.body.as_slice(), pingoras.body.as_slice()),
        (&b"variant br,gzip"[..], &b"variant br,gzip"[..])
    );
    assert_eq!(origin.count(), 3);
}

#[test]
fn no_store_is_honoured_at_min_ttl_zero_and_overridden_above() {
    let origin = Origin::start(cc("no-store"));
    let policies = "cache_policies:\n  - {name: rfc, min_ttl: 0, default_ttl: 60, max_ttl: 100}\n  - {name: forced, min_ttl: 60, default_ttl: 60, max_ttl: 100}\n";
    let yaml = dist(origin.port(), policies, "cache_policy: rfc")
        + "cache_behaviors:\n  - {path_pattern: /forced/*, target_origin_id: app, cache_policy: forced}\n";
    let verge = Verge::start(&yaml);
    verge.get("/a");
    assert_eq!(verge.get("/a").x_cache(), "Miss from verge");
    assert_eq!(origin.count(), 2, "min_ttl 0: no-store honoured");
    verge.get("/forced/a");
    assert_eq!(verge.get("/forced/a").x_cache(), "Hit from verge", "min_ttl 60 overrides no-store");
    assert_eq!(origin.count(), 3);
}

#[test]
fn max_age_expires_and_origin_age_counts() {
    let origin = Origin::start(|req| {
        let r = OriginResponse::new(200, "x").header("cache-control", "max-age=4");
        if req.path() == "/aged" {
            r.header("age", "2")
        } else {
            r
        }
    });
    let policies = "cache_policies:\n  - {name: p, min_ttl: 0, default_ttl: 0, max_ttl: 100}\n";
    let verge = Verge::start(&dist(origin.port(), policies, "cache_policy: p"));
    verge.get("/aged");
    verge.get("/fresh");
    assert_eq!(verge.get("/aged").x_cache(), "Hit from verge");
    // Margins of 1.5 s either way, for a loaded CI machine.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(verge.get("/fresh").x_cache(), "Hit from verge", "4 s TTL still fresh");
    assert_eq!(verge.get("/aged").x_cache(), "Miss from verge", "Age: 2 left 2 s of freshness");
    assert_eq!(origin.count(), 3);
}

#[test]
fn set_cookie_cached_only_when_cookies_are_in_the_key_and_vary_star_never() {
    let origin = Origin::start(|req| match req.path() {
        "/star" => OriginResponse::new(200, "v").header("cache-control", "max-age=60").header("vary", "*"),
        _ => OriginResponse::new(200, "c").header("cache-control", "max-age=60").header("set-cookie", "a=b"),
    });
    let policies = "cache_policies:\n  - {name: cookies, cookies: {behavior: all}}\n";
    let yaml = dist(origin.port(), policies, "cache_policy: CachingOptimized")
        + "cache_behaviors:\n  - {path_pattern: /keyed, target_origin_id: app, cache_policy: cookies}\n";
    let verge = Verge::start(&yaml);
    verge.get("/plain");
    verge.get("/plain");
    assert_eq!(origin.count(), 2, "Set-Cookie response not cached");
    verge.get("/keyed");
    assert_eq!(verge.get("/keyed").x_cache(), "Hit from verge");
    assert_eq!(origin.count(), 3);
    verge.get("/star");
    verge.get("/star");
    assert_eq!(origin.count(), 5, "Vary: * never served from cache");
}

#[test]
fn cache_key_query_strings_follow_the_policy() {
    let origin = Origin::start(cc("max-age=60"));
    let policies = "cache_policies:\n  - {name: w, query_strings: {behavior: whitelist, items: [w]}}\n  - {name: all, query_strings: {behavior: all}}\n";
    let yaml = dist(origin.port(), policies, "cache_policy: w")
        + "cache_behaviors:\n  - {path_pattern: /all/*, target_origin_id: app, cache_policy: all}\n";
    let verge = Verge::start(&yaml);
    assert_eq!(verge.get("/a?w=1&x=1").text(), "body of /a?w=1", "only keyed query strings reach the origin");
    assert_eq!(verge.get("/a?x=2&w=1").x_cache(), "Hit from verge");
    assert_eq!(verge.get("/a?w=2").x_cache(), "Miss from verge");
    verge.get("/all/b?a=1&b=2");
    assert_eq!(verge.get("/all/b?b=2&a=1").x_cache(), "Miss from verge", "order matters");
    assert_eq!(verge.get("/all/b?a=1&b=2").x_cache(), "Hit from verge");
    assert_eq!(origin.count(), 4);
}

#[test]
fn cache_key_headers_cookies_and_accept_encoding() {
    let origin = Origin::start(|req| {
        let body = format!(
            "accept={:?} cookie={:?} ae={:?}",
            req.header("accept"),
            req.header("cookie"),
            req.header("accept-encoding")
        );
        OriginResponse::new(200, body).header("cache-control", "max-age=60")
    });
    let policies = "cache_policies:\n  - name: k\n    headers: {behavior: whitelist, items: [Accept]}\n    cookies: {behavior: whitelist, items: [session]}\n    enable_accept_encoding_gzip: true\n    enable_accept_encoding_brotli: true\n";
    let verge = Verge::start(&dist(origin.port(), policies, "cache_policy: k"));
    let get = |headers: &[(&str, &str)]| verge.request("GET", "/r", headers, b"");
    let first =
        get(&[("Accept", "image/webp"), ("Cookie", "session=1; other=x"), ("Accept-Encoding", "gzip, deflate")]);
    assert_eq!(first.text(), "accept=Some(\"image/webp\") cookie=Some(\"session=1\") ae=Some(\"gzip\")");
    let same = get(&[("accept", "image/webp"), ("Cookie", "other=y; session=1"), ("Accept-Encoding", "deflate,gzip")]);
    assert_eq!(same.x_cache(), "Hit from verge", "header names any case, other cookies and encodings ignored");
    assert_eq!(
        get(&[("Accept", "image/png"), ("Cookie", "session=1"), ("Accept-Encoding", "gzip")]).x_cache(),
        "Miss from verge"
    );
    assert_eq!(
        get(&[("Accept", "image/webp"), ("Cookie", "session=2"), ("Accept-Encoding", "gzip")]).x_cache(),
        "Miss from verge"
    );
    let br = get(&[("Accept", "image/webp"), ("Cookie", "session=1"), ("Accept-Encoding", "br, gzip")]);
    assert_eq!(br.x_cache(), "Miss from verge");
    assert!(br.text().ends_with("ae=Some(\"br,gzip\")"), "{}", br.text());
    let none = get(&[("Accept", "image/webp"), ("Cookie", "session=1")]);
    assert!(none.text().ends_with("ae=Some(\"identity\")"), "{}", none.text());
    assert_eq!(origin.count(), 5);
}

#[test]
fn options_cached_separately_and_vary_honoured() {
    let origin = Origin::start(|req| {
        OriginResponse::new(200, format!("{} {:?}", req.method, req.header("accept-language")))
            .header("cache-control", "max-age=60")
            .header("vary", "Accept-Language")
    });
    // Vary names a header the origin request policy forwards (CloudFront keeps Vary only for those).
    let policies =
        "origin_request_policies:\n  - {name: lang, headers: {behavior: whitelist, items: [Accept-Language]}}\n";
    let verge = Verge::start(&dist(
        origin.port(),
        policies,
        "cache_policy: CachingOptimized, origin_request_policy: lang, allowed_methods: [GET, HEAD, OPTIONS], cached_methods: [GET, HEAD, OPTIONS]",
    ));
    assert_eq!(verge.request("OPTIONS", "/o", &[], b"").text(), "OPTIONS None");
    assert_eq!(verge.get("/o").text(), "GET None", "OPTIONS has its own key");
    assert_eq!(verge.request("OPTIONS", "/o", &[], b"").x_cache(), "Hit from verge");
    let lang = |l: &str| verge.request("GET", "/v", &[("Accept-Language", l)], b"");
    assert_eq!(lang("en").text(), "GET Some(\"en\")");
    assert_eq!(lang("fr").text(), "GET Some(\"fr\")");
    let again = lang("en");
    assert_eq!((again.x_cache(), again.text().as_str()), ("Hit from verge", "GET Some(\"en\")"));
    assert_eq!(lang("fr").x_cache(), "Hit from verge");
    assert_eq!(origin.count(), 4);
}

#[test]
fn managed_caching_disabled_never_caches() {
    let origin = Origin::start(cc("max-age=600"));
    let verge = Verge::start(&dist(origin.port(), "", "cache_policy: 4135ea2d-6df8-44a3-9df3-4b5a84be39ad"));
    verge.get("/d");
    assert_eq!(verge.get("/d").x_cache(), "Miss from verge");
    assert_eq!(origin.count(), 2);
}

fn concurrent_gets(verge: &Verge, path: &str, n: usize) -> Vec<Response> {
    let addr = verge.addr;
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || http_request(addr, "GET", &path, &[], b""))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn concurrent_misses_collapse_into_one_origin_request() {
    let origin = Origin::start(|_| {
        OriginResponse::new(200, "slow").header("cache-control", "max-age=60").delay(Duration::from_millis(700))
    });
    let yaml = dist(origin.port(), "", "cache_policy: CachingOptimized")
        + "cache_behaviors:\n  - {path_pattern: /nocache/*, target_origin_id: app, cache_policy: CachingDisabled}\n";
    let verge = Verge::start(&yaml);
    let responses = concurrent_gets(&verge, "/cold", 100);
    assert!(responses.iter().all(|r| r.status == 200 && r.text() == "slow"));
    assert_eq!(origin.count(), 1, "100 concurrent misses, one origin request");
    let responses = concurrent_gets(&verge, "/nocache/x", 20);
    assert!(responses.iter().all(|r| r.status == 200));
    assert_eq!(origin.count(), 21, "CachingDisabled does not collapse");
}

#[test]
fn forwarding_cookies_disables_collapsing() {
    let origin = Origin::start(|_| {
        OriginResponse::new(200, "slow").header("cache-control", "max-age=60").delay(Duration::from_millis(700))
    });
    let verge =
        Verge::start(&dist(origin.port(), "", "cache_policy: CachingOptimized, origin_request_policy: AllViewer"));
    let responses = concurrent_gets(&verge, "/with-cookies", 10);
    assert!(responses.iter().all(|r| r.status == 200));
    // With collapsing every overlapping miss would wait for the first: one origin request. (Late
    // arrivals on a slow machine may already be hits, so the count is not asserted to be exactly 10.)
    assert!(origin.count() > 1, "cookies forwarded: concurrent misses go to the origin ({})", origin.count());
    assert_eq!(verge.get("/with-cookies").x_cache(), "Hit from verge", "still cached");
}

#[test]
fn expired_objects_revalidate_with_validators() {
    let origin = Origin::start(|req| {
        if req.header("if-none-match") == Some("\"v1\"") {
            return OriginResponse::new(304, "").header("etag", "\"v1\"").header("cache-control", "max-age=60");
        }
        OriginResponse::new(200, "0123456789").header("etag", "\"v1\"").header("cache-control", "max-age=1")
    });
    let policies = "cache_policies:\n  - {name: p, min_ttl: 0, default_ttl: 0, max_ttl: 100}\n";
    let verge = Verge::start(&dist(origin.port(), policies, "cache_policy: p"));
    verge.get("/e");
    std::thread::sleep(Duration::from_millis(1300));
    let refreshed = verge.get("/e");
    assert_eq!(
        (refreshed.status, refreshed.x_cache(), refreshed.text().as_str()),
        (200, "RefreshHit from verge", "0123456789")
    );
    assert_eq!(origin.requests()[1].header("if-none-match"), Some("\"v1\""));
    assert_eq!(verge.get("/e").x_cache(), "Hit from verge", "the 304 refreshed the TTL");
    assert_eq!(origin.count(), 2);
}

#[test]
fn conditional_head_and_range_requests_are_served_from_cache() {
    let origin = Origin::start(|_| {
        OriginResponse::new(200, "0123456789").header("etag", "\"v1\"").header("cache-control", "max-age=60")
    });
    let verge = Verge::start(&dist(origin.port(), "", "cache_policy: CachingOptimized"));
    verge.get("/r");
    let cond = verge.request("GET", "/r", &[("If-None-Match", "\"v1\"")], b"");
    assert_eq!(cond.status, 304);
    let head = verge.request("HEAD", "/r", &[], b"");
    assert_eq!((head.status, head.x_cache()), (200, "Hit from verge"));
    let range = verge.request("GET", "/r", &[("Range", "bytes=2-4")], b"");
    assert_eq!((range.status, range.text().as_str()), (206, "234"));
    assert_eq!(range.header("content-range"), Some("bytes 2-4/10"));
    let multi = verge.request("GET", "/r", &[("Range", "bytes=0-1,5-6")], b"");
    assert_eq!(multi.status, 206);
    assert!(multi.header("content-type").unwrap_or("").starts_with("multipart/byteranges"), "{:?}", multi.headers);
    let overlapping = verge.request("GET", "/r", &[("Range", "bytes=0-5,3-8")], b"");
    assert_eq!(
        (overlapping.status, overlapping.text().as_str()),
        (200, "0123456789"),
        "invalid multi-range: full body"
    );
    assert_eq!(origin.count(), 1);
}

#[test]
fn stale_while_revalidate_serves_at_once_and_refreshes_in_background() {
    let version = Arc::new(AtomicUsize::new(1));
    let v = version.clone();
    let origin = Origin::start(move |_| {
        OriginResponse::new(200, format!("v{}", v.load(Ordering::SeqCst)))
            .header("cache-control", "max-age=1, stale-while-revalidate=30")
    });
    let policies = "cache_policies:\n  - {name: p, min_ttl: 0, default_ttl: 0, max_ttl: 100}\n";
    let verge = Verge::start(&dist(origin.port(), policies, "cache_policy: p"));
    assert_eq!(verge.get("/s").text(), "v1");
    version.store(2, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1300));
    let stale = verge.get("/s");
    assert_eq!((stale.text().as_str(), stale.x_cache()), ("v1", "RefreshHit from verge"), "stale served at once");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while origin.count() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(origin.count(), 2, "one background refresh");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while verge.get("/s").text() != "v2" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(verge.get("/s").text(), "v2");
    assert_eq!(origin.count(), 2);
}

#[test]
fn stale_if_error_and_stale_on_origin_5xx() {
    let broken = Arc::new(AtomicBool::new(false));
    let b = broken.clone();
    let origin = Origin::start(move |req| {
        if b.load(Ordering::SeqCst) {
            return OriginResponse::new(503, "down");
        }
        let cc = if req.path() == "/explicit" { "max-age=1, stale-if-error=60" } else { "max-age=1" };
        OriginResponse::new(200, format!("good {}", req.path())).header("cache-control", cc)
    });
    let policies = "cache_policies:\n  - {name: p, min_ttl: 0, default_ttl: 0, max_ttl: 100}\n";
    let yaml = dist(origin.port(), policies, "cache_policy: p")
        + "custom_error_responses:\n  - {error_code: 503, error_caching_min_ttl: 30}\n";
    let verge = Verge::start(&yaml);
    verge.get("/explicit");
    verge.get("/implicit");
    broken.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1300));
    let a = verge.get("/explicit");
    assert_eq!((a.status, a.text().as_str()), (200, "good /explicit"));
    let b = verge.get("/implicit");
    assert_eq!((b.status, b.text().as_str()), (200, "good /implicit"), "expired + origin 5xx: stale");
    let before = origin.count();
    assert_eq!(verge.get("/implicit").text(), "good /implicit");
    assert_eq!(origin.count(), before, "served stale for error_caching_min_ttl without asking the origin");
    assert_eq!(verge.get("/never-cached").status, 503);
}

#[test]
fn error_responses_are_cached_per_cloudfront_rules() {
    let origin = Origin::start(|req| match req.path() {
        "/404" => OriginResponse::new(404, "missing"),
        "/403" => OriginResponse::new(403, "no"),
        "/403-max-age" => OriginResponse::new(403, "no").header("cache-control", "max-age=60"),
        _ => OriginResponse::new(416, "range").header("cache-control", "max-age=60"),
    });
    let verge = Verge::start(&dist(origin.port(), "", "cache_policy: CachingOptimized"));
    for path in ["/404", "/403", "/403-max-age", "/416"] {
        verge.get(path);
        let again = verge.get(path);
        assert_eq!(again.x_cache(), "Error from verge");
    }
    let per_path = |p: &str| origin.requests().iter().filter(|r| r.path() == p).count();
    assert_eq!(per_path("/404"), 1, "404 cached for error_caching_min_ttl");
    assert_eq!(per_path("/403"), 2, "403 only with an explicit max-age");
    assert_eq!(per_path("/403-max-age"), 1);
    assert_eq!(per_path("/416"), 2, "416 never");
}

#[test]
fn unsafe_methods_pass_through_and_invalidate_the_url() {
    let origin =
        Origin::start(|req| OriginResponse::new(200, req.method.clone()).header("cache-control", "max-age=60"));
    let verge = Verge::start(&dist(
        origin.port(),
        "",
        "cache_policy: CachingOptimized, allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]",
    ));
    verge.request("GET", "/u", &[("Accept-Encoding", "gzip")], b"");
    verge.get("/u");
    assert_eq!(verge.get("/u").x_cache(), "Hit from verge");
    assert_eq!(verge.request("POST", "/u", &[], b"data").text(), "POST");
    assert_eq!(verge.request("POST", "/u", &[], b"data").x_cache(), "Miss from verge", "never cached");
    assert_eq!(verge.get("/u").x_cache(), "Miss from verge", "the POST invalidated the GET");
    assert_eq!(
        verge.request("GET", "/u", &[("Accept-Encoding", "gzip")], b"").x_cache(),
        "Miss from verge",
        "every variant"
    );
    assert_eq!(origin.count(), 6);
}

#[test]
fn invalidation_removes_matching_objects_and_their_variants() {
    let origin = Origin::start(cc("max-age=600"));
    let verge = Verge::start(&dist(origin.port(), "", "cache_policy: CachingOptimized"));
    for p in ["/a.jpg", "/images/1.png", "/images/deep/2.png", "/Images/3.png"] {
        verge.get(p);
        verge.request("GET", p, &[("Accept-Encoding", "br")], b"");
    }
    assert_eq!(origin.count(), 8);
    let resp = verge.invalidate(&["/images/*"]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "{\"paths\":1,\"removed\":4}\n");
    assert_eq!(verge.get("/images/1.png").x_cache(), "Miss from verge");
    assert_eq!(verge.get("/Images/3.png").x_cache(), "Hit from verge", "case-sensitive");
    assert_eq!(verge.get("/a.jpg").x_cache(), "Hit from verge");

    let admin = verge.admin.unwrap().to_string();
    let (code, out, _) = run_verge(&["invalidate", "--admin", &admin, "/a.jpg"]);
    assert_eq!((code, out.as_str()), (0, "{\"paths\":1,\"removed\":2}\n"));
    assert_eq!(verge.get("/a.jpg").x_cache(), "Miss from verge");
    let (code, _, err) = run_verge(&["invalidate", "--admin", &admin, "/a/*/b"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("only as the last character"), "{err}");
}

#[test]
fn storage_is_bounded_and_never_keeps_oversized_or_truncated_objects() {
    let origin = Origin::start(|req| match req.path() {
        "/big" => OriginResponse::new(200, vec![b'b'; 1_500_000]).header("cache-control", "max-age=60"),
        "/broken" => OriginResponse::new(200, vec![b'x'; 1000]).header("cache-control", "max-age=60").truncate_to(500),
        _ => OriginResponse::new(200, vec![b'o'; 300_000]).header("cache-control", "max-age=60"),
    });
    let yaml = dist(origin.port(), "", "cache_policy: CachingOptimized")
        .replace("server: {", "server: {cache: {memory_mb: 1, max_object_mb: 1}, ");
    let verge = Verge::start(&yaml);
    for i in 0..8 {
        assert_eq!(verge.get(&format!("/obj{i}")).body.len(), 300_000);
    }
    let stats = http_request(verge.admin.unwrap(), "GET", "/stats", &[], b"").text();
    let field = |name: &str| -> u64 {
        let rest = &stats[stats.find(&format!("\"{name}\":")).unwrap() + name.len() + 3..];
        rest.split([',', '}']).next().unwrap().parse().unwrap()
    };
    assert!(field("bytes") <= field("capacity_bytes"), "{stats}");
    assert!(field("evicted_objects") >= 4, "{stats}");

    assert_eq!(verge.get("/big").body.len(), 1_500_000, "served whole");
    assert_eq!(verge.get("/big").body.len(), 1_500_000);
    assert_eq!(origin.requests().iter().filter(|r| r.path() == "/big").count(), 2, "over max_object_mb: not stored");

    let first = verge.get("/broken");
    assert!(
        first.body.len() < 1000,
        "the viewer cannot get more than the origin sent: {} {} {:?}",
        first.body.len(),
        first.status,
        first.headers
    );
    let second = verge.get("/broken");
    assert!(second.x_cache() != "Hit from verge", "a truncated transfer is never served as complete");
    assert_eq!(origin.requests().iter().filter(|r| r.path() == "/broken").count(), 2);
}

#[test]
fn custom_error_responses_fetch_the_page_through_its_behavior() {
    let app = Origin::start(|req| match req.path() {
        "/down" => OriginResponse::new(503, "origin 503"),
        "/empty" => OriginResponse::new(404, ""),
        _ => OriginResponse::new(404, "origin 404"),
    });
    let pages = Origin::start(|req| match req.path() {
        "/errors/404.html" => OriginResponse::new(200, "<h1>custom not found</h1>")
            .header("content-type", "text/html")
            .header("cache-control", "max-age=600"),
        _ => OriginResponse::new(404, "no such page"),
    });
    let yaml = format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\n  - {{id: pages, domain_name: 127.0.0.1, http_port: {}}}\n  - {{id: dead, domain_name: 127.0.0.1, http_port: {}, connection_attempts: 1}}\n\
default_cache_behavior: {{target_origin_id: app}}\n\
cache_behaviors:\n  - {{path_pattern: /errors/*, target_origin_id: pages}}\n  - {{path_pattern: /dead/*, target_origin_id: dead}}\n\
custom_error_responses:\n  - {{error_code: 404, response_page_path: /errors/404.html, response_code: 404}}\n  - {{error_code: 503, response_page_path: /errors/503.html, response_code: 200}}\n  - {{error_code: 502, response_page_path: /errors/404.html, response_code: 200}}\n",
        app.port(),
        pages.port(),
        closed_port()
    );
    let verge = Verge::start(&yaml);
    let missing = verge.get("/nope");
    assert_eq!((missing.status, missing.text().as_str()), (404, "<h1>custom not found</h1>"));
    assert_eq!(missing.header("content-type"), Some("text/html"));
    verge.get("/nope2");
    let page_fetches = pages.requests().iter().filter(|r| r.path() == "/errors/404.html").count();
    assert_eq!(page_fetches, 1, "the page is cached by its own behavior");
    // The origin's 404 itself is cached (ErrorCachingMinTTL, 10 s by default) and replaced on the hit.
    let again = verge.get("/nope");
    assert_eq!((again.status, again.text().as_str()), (404, "<h1>custom not found</h1>"));
    assert_eq!(app.requests().iter().filter(|r| r.path() == "/nope").count(), 1, "the error was cached");
    let head = verge.request("HEAD", "/nope", &[], b"");
    assert_eq!((head.status, head.header("content-length")), (404, Some("25")));
    let empty = verge.get("/empty");
    assert_eq!((empty.status, empty.text().as_str()), (404, "<h1>custom not found</h1>"), "a body-less error too");
    let down = verge.get("/down");
    assert_eq!((down.status, down.text().as_str()), (404, "no such page"), "a missing page: the page origin's status");
    let dead = verge.get("/dead/x");
    assert_eq!((dead.status, dead.text().as_str()), (200, "<h1>custom not found</h1>"), "verge's own 502 too");
}

#[test]
fn the_cache_bound_holds_for_small_objects_too() {
    // 520-byte objects: per-object overhead (map entry, header allocations, index) dominates their bytes.
    let origin = Origin::start(|_| OriginResponse::new(200, vec![b's'; 520]).header("cache-control", "max-age=600"));
    let yaml = dist(origin.port(), "", "cache_policy: CachingOptimized")
        .replace("server: {", "server: {cache: {memory_mb: 4, max_object_mb: 1}, ");
    let verge = Verge::start(&yaml);
    for i in 0..200 {
        verge.get(&format!("/warm/{i}"));
    }
    let before = verge.rss_kb();
    for i in 0..4000 {
        assert_eq!(verge.get(&format!("/small/{i}")).body.len(), 520);
    }
    let grown_kb = verge.rss_kb().saturating_sub(before);
    eprintln!("RSS growth for 4,000 small objects in a 4 MiB cache: {grown_kb} KB");
    // 4 MiB of budget; allow for allocator slack, never the ~26 MB that counting bytes alone allowed.
    assert!(grown_kb < 14 * 1024, "RSS grew {grown_kb} KB for a 4 MiB cache of small objects");
}

#[test]
fn vary_splits_the_cache_only_on_headers_the_origin_saw() {
    let origin = Origin::start(|req| {
        OriginResponse::new(200, format!("for {:?}", req.header("user-agent")))
            .header("cache-control", "max-age=600")
            .header("vary", "User-Agent")
    });
    // User-Agent neither keyed nor forwarded: the origin never saw it, so its Vary cannot apply.
    let verge = Verge::start(&dist(origin.port(), "", "cache_policy: CachingOptimized"));
    assert_eq!(verge.request("GET", "/v", &[("User-Agent", "a")], b"").x_cache(), "Miss from verge");
    assert_eq!(verge.request("GET", "/v", &[("User-Agent", "b")], b"").x_cache(), "Hit from verge");
    // Forwarded by the origin request policy: the origin's Vary splits the cache by it.
    let forwarded = Verge::start(&dist(
        origin.port(),
        "",
        "cache_policy: CachingOptimized, origin_request_policy: UserAgentRefererHeaders",
    ));
    assert_eq!(forwarded.request("GET", "/w", &[("User-Agent", "a")], b"").x_cache(), "Miss from verge");
    assert_eq!(forwarded.request("GET", "/w", &[("User-Agent", "b")], b"").x_cache(), "Miss from verge");
    let again = forwarded.request("GET", "/w", &[("User-Agent", "a")], b"");
    assert_eq!((again.x_cache(), again.text().as_str()), ("Hit from verge", "for Some(\"a\")"));
}

#[test]
fn a_304_updates_the_stored_header_except_its_validator_and_body_description() {
    let app = Origin::start(|req| {
        if req.header("if-none-match") == Some("\"v1\"") {
            OriginResponse::new(304, "")
                .header("ETag", "\"v2\"")
                .header("Cache-Control", "max-age=600")
                .header("X-Version", "2")
                .header("Content-Type", "text/plain;charset=utf-8")
        } else {
            OriginResponse::new(200, "the body")
                .header("ETag", "\"v1\"")
                .header("Cache-Control", "max-age=1")
                .header("X-Version", "1")
                .header("Content-Type", "text/plain")
        }
    });
    let verge = Verge::start(&dist(app.port(), "", "cache_policy: CachingOptimized"));
    assert_eq!(verge.get("/doc").header("x-version"), Some("1"));
    std::thread::sleep(Duration::from_millis(2100)); // max-age=1 runs out
    for expected_cache in ["RefreshHit from verge", "Hit from verge"] {
        let r = verge.get("/doc");
        assert_eq!((r.status, r.text().as_str(), r.x_cache()), (200, "the body", expected_cache));
        assert_eq!(r.header("x-version"), Some("2"), "the 304's field replaced the stored one");
        assert_eq!(r.header("content-type"), Some("text/plain;charset=utf-8"));
        assert_eq!(r.header("etag"), Some("\"v1\""), "the validator describes the stored body");
        assert_eq!(r.header("content-length"), Some("8"));
    }
    assert_eq!(app.count(), 2);
}

#[test]
fn age_counts_the_origins_time_an_unreadable_age_is_stale_and_date_is_kept() {
    const DATE: &str = "Fri, 27 Nov 2026 10:00:00 GMT";
    let app = Origin::start(|req| {
        let age = if req.target == "/aged" { "30" } else { "0, 0" };
        OriginResponse::new(200, "x").header("Cache-Control", "max-age=600").header("Age", age).header("Date", DATE)
    });
    let verge = Verge::start(&dist(app.port(), "", "cache_policy: UseOriginCacheControlHeaders"));
    assert_eq!(verge.get("/aged").header("date"), Some(DATE), "the origin's Date passes");
    let hit = verge.get("/aged");
    assert_eq!(hit.x_cache(), "Hit from verge");
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!(age >= 30, "Age {age} counts the origin's 30 s");
    assert_eq!(hit.header("date"), Some(DATE), "a hit keeps the stored Date");
    verge.get("/list-age");
    assert_eq!(verge.get("/list-age").x_cache(), "Miss from verge", "`Age: 0, 0` is not trusted to be fresh");
    assert_eq!(app.count(), 3);
}

#[test]
fn fields_named_by_connection_or_a_qualified_no_cache_are_not_served_from_the_cache() {
    let app = Origin::start(|_| {
        OriginResponse::new(200, "x")
            .header("Cache-Control", "max-age=600, no-cache=\"x-user\"")
            .header("Connection", "x-hop")
            .header("X-Hop", "1")
            .header("X-User", "alice")
            .header("X-Kept", "yes")
    });
    let verge = Verge::start(&dist(app.port(), "", "cache_policy: CachingOptimized"));
    verge.get("/p");
    let hit = verge.get("/p");
    assert_eq!(hit.x_cache(), "Hit from verge");
    assert_eq!((hit.header("x-hop"), hit.header("x-user"), hit.header("x-kept")), (None, None, Some("yes")));
}

#[test]
fn a_successful_post_invalidates_its_location_and_content_location_on_the_same_host_only() {
    let app = Origin::start(|req| match (req.method.as_str(), req.target.as_str()) {
        ("POST", _) => OriginResponse::new(201, "")
            .header("Location", "/made")
            .header("Content-Location", "http://elsewhere.test/kept"),
        _ => OriginResponse::new(200, "x").header("Cache-Control", "max-age=600"),
    });
    let verge = Verge::start(&dist(
        app.port(),
        "",
        "cache_policy: CachingOptimized, allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]",
    ));
    for path in ["/made", "/kept"] {
        verge.get(path);
        assert_eq!(verge.get(path).x_cache(), "Hit from verge");
    }
    assert_eq!(verge.request("POST", "/create", &[], b"new").status, 201);
    assert_eq!(verge.get("/made").x_cache(), "Miss from verge", "Location on this host is invalidated");
    assert_eq!(verge.get("/kept").x_cache(), "Hit from verge", "another host's URL is not");
}

#[test]
fn error_caching_min_ttl_0_lets_the_origin_say_an_error_is_stale() {
    let app = Origin::start(|_| OriginResponse::new(404, "gone").header("Cache-Control", "max-age=0"));
    let yaml = dist(app.port(), "", "cache_policy: CachingOptimized");
    let verge = Verge::start(&yaml);
    verge.get("/e");
    assert_eq!(verge.get("/e").x_cache(), "Error from verge");
    assert_eq!(app.count(), 1, "CloudFront's default keeps a 404 for 10 s whatever the origin says");
    let app = Origin::start(|_| OriginResponse::new(404, "gone").header("Cache-Control", "max-age=0"));
    let verge = Verge::start(&format!(
        "{}custom_error_responses:\n  - {{error_code: 404, error_caching_min_ttl: 0}}\n",
        dist(app.port(), "", "cache_policy: CachingOptimized")
    ));
    verge.get("/e");
    verge.get("/e");
    assert_eq!(app.count(), 2, "a stale error is not stored");
}

//! Behaviors, methods, origin requests, failover, error pages, default root object, first cache hit.

use std::time::Duration;

use crate::harness::*;

fn one_origin(port: u16, extra: &str) -> String {
    format!(
        "origins:\n  - id: app\n    domain_name: 127.0.0.1\n    http_port: {port}\n    connection_attempts: 1\n    connection_timeout: 2\n{extra}"
    )
}

#[test]
fn routes_by_path_pattern_first_match_wins() {
    let app = Origin::fixed(200, "app");
    let images = Origin::fixed(200, "images");
    let yaml = format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\n  - {{id: img, domain_name: 127.0.0.1, http_port: {}}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled}}\n\
cache_behaviors:\n  - {{path_pattern: /images/*.jpg, target_origin_id: img, cache_policy: CachingDisabled}}\n  - {{path_pattern: /images/*, target_origin_id: app, cache_policy: CachingDisabled}}\n",
        app.port(),
        images.port()
    );
    let verge = Verge::start(&yaml);
    assert_eq!(verge.get("/images/a/b.jpg?x=1").text(), "images", "* crosses / and the query is ignored");
    assert_eq!(verge.get("/images/a.png").text(), "app", "second behavior");
    assert_eq!(verge.get("/images/A.JPG").text(), "app", "patterns are case-sensitive");
    assert_eq!(verge.get("/other").text(), "app", "default behavior last");
    assert_eq!(images.count(), 1);
    assert_eq!(app.count(), 3);
}

#[test]
fn methods_outside_allowed_methods_get_403() {
    let app = Origin::fixed(200, "ok");
    let yaml = one_origin(app.port(), "default_cache_behavior: {target_origin_id: app}\n");
    let verge = Verge::start(&yaml);
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let resp = verge.request(method, "/x", &[], b"data");
        assert_eq!(resp.status, 403, "{method}");
        assert_eq!(resp.x_cache(), "Error from verge");
        assert!(resp.text().contains("not configured to allow the HTTP request method"), "{}", resp.text());
    }
    assert_eq!(verge.get("/x").status, 200);
    assert_eq!(app.count(), 1, "rejected requests never reach the origin");
}

#[test]
fn origin_request_has_origin_path_custom_headers_and_proxy_headers() {
    let app = Origin::fixed(200, "ok");
    let yaml = format!(
        "distribution: {{domain_name: d1.verge.test}}\norigins:\n  - id: app\n    domain_name: 127.0.0.1\n    http_port: {}\n    origin_path: /v1\n    custom_headers: {{X-Origin-Verify: s3cr3t}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled}}\n",
        app.port()
    );
    let verge = Verge::start(&yaml);
    let resp = verge.request(
        "GET",
        "/a/b?q=1",
        &[("X-Forwarded-For", "203.0.113.9"), ("Connection", "close"), ("Cookie", "s=1"), ("Accept-Language", "fr")],
        b"",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("via"), Some("1.1 d1.verge.test (verge)"));
    let id = resp.header("x-amz-cf-id").expect("request id header").to_string();
    let seen = &app.requests()[0];
    assert_eq!(seen.target, "/v1/a/b", "origin path prefixed; query not in key or policy is dropped");
    assert_eq!(seen.header("x-origin-verify"), Some("s3cr3t"));
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(seen.header("via"), Some("1.1 d1.verge.test (verge)"));
    assert_eq!(seen.header("host"), Some(format!("127.0.0.1:{}", app.port()).as_str()));
    assert_eq!(seen.header("x-amz-cf-id"), Some(id.as_str()));
    assert_eq!(seen.header("cookie"), None, "cookies are not forwarded without a policy");
    assert_eq!(seen.header("accept-language"), None);
    assert!(verge.wait_for_output(&id), "the request id is logged:\n{}", verge.output());
}

/// The origin always gets origin form: a viewer's absolute-form target (RFC 9112 §3.2.2) and an origin-form
/// one whose query goes whole reach it as `/path?query`.
#[test]
fn origin_requests_carry_the_target_in_origin_form() {
    let app = Origin::fixed(200, "ok");
    let yaml = format!(
        "{}default_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled, origin_request_policy: AllViewer}}\n",
        one_origin(app.port(), "")
    );
    let verge = Verge::start(&yaml);
    assert_eq!(verge.request("GET", "/plain?q=1&r=2", &[], b"").status, 200);
    let absolute = format!("http://{}/absolute?q=1", verge.addr);
    assert_eq!(verge.request("GET", &absolute, &[], b"").status, 200);
    let seen: Vec<String> = app.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(seen, ["/plain?q=1&r=2", "/absolute?q=1"]);
}

#[test]
fn origin_request_policy_forwards_viewer_values() {
    let app = Origin::fixed(200, "ok");
    let yaml = one_origin(
        app.port(),
        "default_cache_behavior: {target_origin_id: app, cache_policy: CachingDisabled, origin_request_policy: AllViewer}\n",
    );
    let verge = Verge::start(&yaml);
    verge.request(
        "GET",
        "/p?b=2&a=1",
        &[("Host", "www.example.com"), ("Cookie", "s=1; t=2"), ("Accept-Language", "fr")],
        b"",
    );
    let seen = &app.requests()[0];
    assert_eq!(seen.target, "/p?b=2&a=1");
    assert_eq!(seen.header("host"), Some("www.example.com"));
    assert_eq!(seen.header("cookie"), Some("s=1; t=2"));
    assert_eq!(seen.header("accept-language"), Some("fr"));
}

fn group_yaml(primary: u16, secondary: u16) -> String {
    [
        "origins:".to_string(),
        format!("  - {{id: primary, domain_name: 127.0.0.1, http_port: {primary}, connection_attempts: 2, connection_timeout: 2, read_timeout: 2}}"),
        format!("  - {{id: backup, domain_name: 127.0.0.1, http_port: {secondary}, connection_attempts: 1}}"),
        "origin_groups:".to_string(),
        "  - {id: ha, primary: primary, secondary: backup, failover_status_codes: [500, 503]}".to_string(),
        "default_cache_behavior:".to_string(),
        "  target_origin_id: ha".to_string(),
        "  cache_policy: CachingDisabled".to_string(),
        "  allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]\n".to_string(),
    ]
    .join("\n")
}

#[test]
fn origin_group_fails_over_on_status_for_safe_methods_only() {
    let primary = Origin::fixed(503, "primary down");
    let backup = Origin::fixed(200, "backup");
    let verge = Verge::start(&group_yaml(primary.port(), backup.port()));
    let resp = verge.get("/page");
    assert_eq!((resp.status, resp.text().as_str()), (200, "backup"));
    assert_eq!((primary.count(), backup.count()), (1, 1), "every request tries the primary first");
    let resp = verge.get("/page");
    assert_eq!(resp.status, 200);
    assert_eq!((primary.count(), backup.count()), (2, 2), "no stickiness");
    let resp = verge.request("POST", "/page", &[], b"x");
    assert_eq!(resp.status, 503, "POST never fails over");
    assert_eq!((primary.count(), backup.count()), (3, 2));
}

#[test]
fn origin_group_fails_over_on_connection_failure_and_timeout() {
    let backup = Origin::fixed(200, "backup");
    let verge = Verge::start(&group_yaml(closed_port(), backup.port()));
    let resp = verge.get("/x");
    assert_eq!((resp.status, resp.text().as_str()), (200, "backup"));

    let slow = Origin::start(|_| OriginResponse::new(200, "slow").delay(Duration::from_secs(6)));
    let verge = Verge::start(&group_yaml(slow.port(), backup.port()));
    let resp = verge.get("/y");
    assert_eq!((resp.status, resp.text().as_str()), (200, "backup"), "read timeout fails over");
}

#[test]
fn unreachable_origin_gives_502_page_and_slow_origin_504() {
    let verge = Verge::start(&one_origin(closed_port(), "default_cache_behavior: {target_origin_id: app}\n"));
    let resp = verge.get("/x");
    assert_eq!(resp.status, 502);
    assert_eq!(resp.x_cache(), "Error from verge");
    assert!(resp.text().contains("502 ERROR") && resp.text().contains("Request ID: "), "{}", resp.text());

    let slow = Origin::start(|_| OriginResponse::new(200, "late").delay(Duration::from_secs(5)));
    let yaml = format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}, read_timeout: 1}}\ndefault_cache_behavior: {{target_origin_id: app}}\n",
        slow.port()
    );
    let verge = Verge::start(&yaml);
    let resp = verge.get("/x");
    assert_eq!(resp.status, 504);
    assert_eq!(resp.x_cache(), "Error from verge");
    assert!(resp.text().contains("504 ERROR"));
}

#[test]
fn default_root_object_applies_to_slash_only() {
    let app = Origin::start(|req| OriginResponse::new(200, req.target.clone()));
    let yaml = format!(
        "distribution: {{default_root_object: index.html}}\n{}default_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled}}\n",
        one_origin(app.port(), "")
    );
    let verge = Verge::start(&yaml);
    assert_eq!(verge.get("/").text(), "/index.html");
    assert_eq!(verge.get("/docs/").text(), "/docs/");
}

#[test]
fn second_get_is_a_cache_hit() {
    let app = Origin::start(|_| OriginResponse::new(200, "cached body").header("cache-control", "max-age=300"));
    let verge = Verge::start(&one_origin(app.port(), "default_cache_behavior: {target_origin_id: app}\n"));
    let first = verge.get("/obj");
    assert_eq!(first.x_cache(), "Miss from verge");
    let second = verge.get("/obj");
    assert_eq!(second.x_cache(), "Hit from verge");
    assert_eq!(second.text(), "cached body");
    assert!(second.header("age").is_some(), "Age on hits");
    assert_eq!(app.count(), 1);
}

#[test]
fn hosts_outside_aliases_get_403() {
    let app = Origin::fixed(200, "ok");
    let yaml = format!(
        "distribution: {{domain_name: d1.verge.test, aliases: [www.example.com, '*.cdn.example.com']}}\n{}default_cache_behavior: {{target_origin_id: app}}\n",
        one_origin(app.port(), "")
    );
    let verge = Verge::start(&yaml);
    let host = |h: &str| verge.request("GET", "/", &[("Host", h)], b"").status;
    assert_eq!(host("www.example.com"), 200);
    assert_eq!(host("WWW.example.com:8080"), 200);
    assert_eq!(host("img.cdn.example.com"), 200);
    assert_eq!(host("d1.verge.test"), 200);
    assert_eq!(host("evil.example.net"), 403);
}

/// What an origin that normalises paths (as nginx does: decode every escape, merge slashes, remove dot
/// segments) serves for a request target.
fn resolved_by_a_normalising_origin(target: &str) -> String {
    let path = target.split('?').next().unwrap_or("");
    let mut decoded = Vec::new();
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() && u8::from_str_radix(&path[i + 1..i + 3], 16).is_ok() {
            decoded.push(u8::from_str_radix(&path[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let resolved = decoded.split('/').fold(Vec::<&str>::new(), |mut kept, segment| {
        match segment {
            "" | "." => {}
            ".." => drop(kept.pop()),
            other => kept.push(other),
        }
        kept
    });
    format!("/{}", resolved.join("/"))
}

#[test]
fn a_behavior_cannot_be_stepped_around_by_spelling_its_path_another_way() {
    // The default behavior's origin normalises paths and serves the secret; `/secret/*` is guarded by
    // its own behavior (another origin), and `/ro/*` allows GET and HEAD only.
    let open = Origin::start(|req| {
        let resolved = resolved_by_a_normalising_origin(&req.target);
        let body = if resolved.starts_with("/secret") { "SECRET" } else { "public" };
        OriginResponse::new(200, format!("{body} {resolved}"))
    });
    let guard = Origin::fixed(200, "guarded");
    let yaml = format!(
        "origins:\n  - {{id: open, domain_name: 127.0.0.1, http_port: {}}}\n  - {{id: guard, domain_name: 127.0.0.1, http_port: {}}}\n\
default_cache_behavior: {{target_origin_id: open, cache_policy: CachingDisabled, allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]}}\n\
cache_behaviors:\n  - {{path_pattern: /secret/*, target_origin_id: guard, cache_policy: CachingDisabled}}\n  - {{path_pattern: /ro/*, target_origin_id: open, cache_policy: CachingDisabled, allowed_methods: [GET, HEAD]}}\n",
        open.port(),
        guard.port()
    );
    let verge = Verge::start(&yaml);
    for spelling in ["/public/../secret/x", "/public/%2e%2e/secret/x", "//secret/x", "/./secret/x", "/%73ecret/x"] {
        let resp = verge.get(spelling);
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "guarded"),
            "{spelling} must reach the /secret/* behavior"
        );
    }
    assert!(guard.requests().iter().all(|r| r.target == "/secret/x"), "matched, keyed and forwarded as one path");
    let post = verge.request("POST", "/public/../ro/x", &[], b"data");
    assert_eq!(post.status, 403, "allowed_methods of /ro/* apply to its other spellings");
    for ambiguous in ["/public%2F..%2Fsecret/x", "/public%5C..%5Csecret/x", "/a%00b", "/a%zz"] {
        let resp = verge.get(ambiguous);
        assert_eq!(resp.status, 400, "{ambiguous} is refused");
        assert_eq!(resp.x_cache(), "Error from verge");
    }
    assert!(open.requests().iter().all(|r| !resolved_by_a_normalising_origin(&r.target).starts_with("/secret")));
    assert_eq!(verge.get("/public/a").text(), "public /public/a", "ordinary paths pass unchanged");
}

/// Sends `raw` on a new connection and returns the status line.
fn raw_status_line(addr: std::net::SocketAddr, raw: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut line = String::new();
    // A refused connection may be reset once its answer is out: what was read is the answer.
    let _ = BufReader::new(stream).read_line(&mut line);
    line.trim_end().to_string()
}

#[test]
fn a_get_with_a_body_is_refused_and_never_cached() {
    let app = Origin::start(|req| {
        OriginResponse::new(200, format!("got {} body bytes", req.body.len())).header("cache-control", "max-age=60")
    });
    let verge = Verge::start(&one_origin(app.port(), "default_cache_behavior: {target_origin_id: app}\n"));
    let fat = verge.request("GET", "/page", &[("Content-Length", "4")], b"evil");
    assert_eq!((fat.status, fat.x_cache()), (403, "Error from verge"));
    let chunked = verge.request("GET", "/page", &[("Transfer-Encoding", "chunked")], b"4\r\nevil\r\n0\r\n\r\n");
    assert_eq!(chunked.status, 403);
    assert_eq!(app.count(), 0, "never forwarded");
    let clean = verge.get("/page");
    assert_eq!((clean.x_cache(), clean.text().as_str()), ("Miss from verge", "got 0 body bytes"), "nothing was stored");
}

#[test]
fn an_http_1_1_request_without_host_gets_400() {
    let app = Origin::fixed(200, "ok");
    let verge = Verge::start(&one_origin(app.port(), "default_cache_behavior: {target_origin_id: app}\n"));
    assert_eq!(raw_status_line(verge.addr, "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n"), "HTTP/1.1 400 Bad Request");
    assert_eq!(raw_status_line(verge.addr, "GET /x HTTP/1.0\r\n\r\n"), "HTTP/1.1 200 OK", "HTTP/1.0 needs no Host");
    assert_eq!(app.count(), 1);
}

/// Reads until the server closes the connection; `None` if it is still open after `limit`.
fn closed_within(stream: &mut std::net::TcpStream, limit: Duration) -> Option<Duration> {
    use std::io::Read;
    let started = std::time::Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

#[test]
fn idle_viewer_connections_are_closed_after_the_idle_timeout() {
    use std::io::Write;
    let app = Origin::fixed(200, "ok");
    let yaml =
        one_origin(app.port(), "server: {viewer_idle_timeout: 1}\ndefault_cache_behavior: {target_origin_id: app}\n");
    let verge = Verge::start(&yaml);
    // Silent from the start: closed without a request.
    let mut silent = std::net::TcpStream::connect(verge.addr).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(20)).is_some(), "a silent connection is closed");
    // Idle after a request on a keep-alive connection: the answer comes, then the close.
    let mut idle = std::net::TcpStream::connect(verge.addr).unwrap();
    idle.write_all(format!("GET /x HTTP/1.1\r\nHost: {}\r\n\r\n", verge.addr).as_bytes()).unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(20)).is_some(), "an idle keep-alive connection is closed");
    assert_eq!(app.count(), 1);
}

#[test]
fn request_headers_over_20_kb_get_431() {
    let app = Origin::fixed(200, "ok");
    let verge = Verge::start(&one_origin(app.port(), "default_cache_behavior: {target_origin_id: app}\n"));
    let big = "x".repeat(21 * 1024);
    let refused = verge.request("GET", "/x", &[("X-Big", big.as_str())], b"");
    // Refused while the head is read (nothing past 20,480 bytes is buffered), before any phase runs.
    assert_eq!(refused.status, 431);
    assert_eq!(refused.header("connection"), Some("close"));
    let fine = "x".repeat(15 * 1024);
    assert_eq!(verge.request("GET", "/x", &[("X-Big", fine.as_str())], b"").status, 200);
    assert_eq!(app.count(), 1, "the oversize request never reached the origin");
}

#[test]
fn connections_over_the_limit_get_503_and_are_closed() {
    use std::io::Read;
    let app = Origin::fixed(200, "ok");
    let yaml =
        one_origin(app.port(), "server: {max_connections: 2}\ndefault_cache_behavior: {target_origin_id: app}\n");
    let verge = Verge::start(&yaml);
    // Two connections held open (each proven served, so the server has counted it).
    let held: Vec<_> = (0..2)
        .map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(verge.addr).unwrap();
            s.write_all(format!("GET /x HTTP/1.1\r\nHost: {}\r\n\r\n", verge.addr).as_bytes()).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut buf = [0u8; 12];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"HTTP/1.1 200");
            s
        })
        .collect();
    assert_eq!(raw_status_line(verge.addr, "GET /x HTTP/1.1\r\nHost: v\r\n\r\n"), "HTTP/1.1 503 Service Unavailable");
    drop(held);
    // Once they are gone, new connections are served again (the server notices the closes shortly).
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if raw_status_line(verge.addr, "GET /x HTTP/1.1\r\nHost: v\r\nConnection: close\r\n\r\n") == "HTTP/1.1 200 OK" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "connections were never released");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cloudfront_headers_a_viewer_sends_never_reach_the_origin() {
    let app = Origin::start(|req| OriginResponse::new(200, format!("{:?}", req.headers)));
    let verge = Verge::start(&one_origin(
        app.port(),
        "default_cache_behavior: {target_origin_id: app, cache_policy: CachingDisabled, origin_request_policy: AllViewer}\n",
    ));
    let spoofed = [("CloudFront-Viewer-Country", "XX"), ("CloudFront-Is-Mobile-Viewer", "true"), ("X-Custom", "kept")];
    verge.request("GET", "/x", &spoofed, b"");
    let seen = &app.requests()[0];
    assert_eq!(seen.header("x-custom"), Some("kept"), "AllViewer forwards the viewer's headers");
    assert!(seen.headers.iter().all(|(n, _)| !n.starts_with("cloudfront-")), "{:?}", seen.headers);
}

/// Even with AllViewer, hop-by-hop fields (RFC 9110 §7.6.1) and the fields a viewer's `Connection`
/// names stay between the viewer and verge.
#[test]
fn hop_by_hop_and_connection_named_fields_never_reach_the_origin() {
    let app = Origin::start(|_| OriginResponse::new(200, "ok"));
    let verge = Verge::start(&one_origin(
        app.port(),
        "default_cache_behavior: {target_origin_id: app, cache_policy: CachingDisabled, origin_request_policy: AllViewer}\n",
    ));
    let hop = [
        ("Connection", "keep-alive, X-Named"),
        ("X-Named", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic eDp5"),
        ("TE", "trailers"),
        ("Trailer", "x-t"),
        ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ("X-Kept", "yes"),
    ];
    for _ in 0..2 {
        assert_eq!(verge.request("GET", "/x", &hop, b"").status, 200);
        let seen = app.requests().pop().unwrap();
        assert_eq!(seen.header("x-kept"), Some("yes"), "AllViewer forwards the others");
        for (name, _) in &hop[..8] {
            assert_eq!(seen.header(&name.to_ascii_lowercase()), None, "{name} reached the origin: {:?}", seen.headers);
        }
    }
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    use std::io::{Read, Write};
    let app = Origin::start(|req| OriginResponse::new(200, format!("answer to {}", req.path())));
    let verge = Verge::start(&one_origin(
        app.port(),
        "default_cache_behavior: {target_origin_id: app, cache_policy: CachingDisabled}\n",
    ));
    let mut stream = std::net::TcpStream::connect(verge.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let host = verge.addr;
    // Two requests in one write, the second closing the connection once answered.
    let both = format!(
        "GET /first HTTP/1.1\r\nHost: {host}\r\n\r\nGET /second HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(both.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let first = raw.find("answer to /first").expect(&raw);
    let second = raw.find("answer to /second").expect(&raw);
    assert!(first < second, "in order: {raw}");
    assert_eq!(raw.matches("HTTP/1.1 200").count(), 2, "{raw}");
}

#[test]
fn the_viewer_protocol_policy_believes_x_forwarded_proto_only_from_trusted_proxies() {
    let app = Origin::fixed(200, "ok");
    let behaviors = "default_cache_behavior: {target_origin_id: app, viewer_protocol_policy: redirect-to-https}\n\
cache_behaviors:\n  - {path_pattern: /secure/*, target_origin_id: app, viewer_protocol_policy: https-only}\n";
    // Behind a TLS terminator on loopback: its X-Forwarded-Proto is believed.
    let trusted =
        Verge::start(&one_origin(app.port(), &format!("server: {{trusted_proxies: [127.0.0.0/8]}}\n{behaviors}")));
    let https = [("X-Forwarded-Proto", "https")];
    assert_eq!(trusted.request("GET", "/secure/a", &https, b"").status, 200, "https-only passes HTTPS");
    assert_eq!(trusted.request("GET", "/page", &https, b"").status, 200, "no redirect loop behind the terminator");
    assert_eq!(trusted.get("/secure/a").status, 403, "plain HTTP is refused");
    let redirect = trusted.request("GET", "/page?x=1", &[("Host", "www.example.com:8080")], b"");
    assert_eq!((redirect.status, redirect.header("location")), (301, Some("https://www.example.com/page?x=1")));
    assert_eq!(redirect.x_cache(), "Redirect from verge");
    assert_eq!(trusted.request("POST", "/page", &[], b"x").status, 307, "other methods: 307");
    // From a peer outside trusted_proxies the header means nothing.
    let untrusted =
        Verge::start(&one_origin(app.port(), &format!("server: {{trusted_proxies: [10.0.0.0/8]}}\n{behaviors}")));
    assert_eq!(untrusted.request("GET", "/secure/a", &https, b"").status, 403);
    assert_eq!(untrusted.request("GET", "/page", &https, b"").status, 301);
}

#[test]
fn an_http_1_0_origin_is_answered_to_viewers_as_http_1_1_with_keep_alive() {
    use std::io::{Read, Write};
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = origin.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in origin.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nCache-Control: max-age=60\r\n\r\nok");
        }
    });
    let verge = Verge::start(&one_origin(port, "default_cache_behavior:\n  target_origin_id: app\n"));
    let mut viewer = std::net::TcpStream::connect(verge.addr).unwrap();
    viewer.set_read_timeout(Some(TIMEOUT)).unwrap();
    for expected in ["Miss from verge", "Hit from verge"] {
        viewer.write_all(b"GET /old HTTP/1.1\r\nHost: example.com\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                viewer.read(&mut byte).unwrap(),
                1,
                "the connection stays open: {}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains(&expected.to_ascii_lowercase()), "{head}");
        let mut body = [0u8; 2];
        viewer.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"ok");
    }
}

/// Sends raw bytes on a new connection and returns everything until verge closes it.
fn raw_exchange(verge: &Verge, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut viewer = std::net::TcpStream::connect(verge.addr).unwrap();
    viewer.set_read_timeout(Some(TIMEOUT)).unwrap();
    viewer.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = viewer.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn malformed_requests_get_a_400_not_a_silent_close() {
    let origin = Origin::fixed(200, "ok");
    let verge = Verge::start(&one_origin(
        origin.port(),
        "default_cache_behavior:\n  target_origin_id: app\n  allowed_methods: [GET, HEAD, OPTIONS, PUT, PATCH, POST, DELETE]\n  cache_policy: CachingDisabled\n",
    ));
    for (what, request) in [
        ("Connection naming Host", &b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Host\r\n\r\n"[..]),
        (
            "a chunk size that is not hex",
            &b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"[..],
        ),
    ] {
        let answer = raw_exchange(&verge, request);
        assert!(answer.starts_with("HTTP/1.1 400"), "{what}: {answer:?}\n{}", verge.output());
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{what}: {answer:?}");
    }
}

/// A viewer that closes its connection while verge waits for the origin ends the request there: it is
/// logged as CloudFront logs it (`Error`, `ClientHungUpRequest`) without waiting for the origin's answer or
/// its read timeout, and the origin connection it left mid-response is not reused for the next request.
#[test]
fn a_viewer_hanging_up_while_the_origin_is_slow_ends_the_request() {
    use std::io::Write;
    let origin = Origin::start(|req| {
        let delay = if req.path() == "/slow" { Duration::from_secs(600) } else { Duration::ZERO };
        OriginResponse::new(200, "ok").delay(delay)
    });
    let verge = Verge::start(&format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}, read_timeout: 120}}\ndefault_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled}}\n",
        origin.port()
    ));
    assert_eq!(verge.get("/fast").status, 200, "{}", verge.output());

    let mut viewer = std::net::TcpStream::connect(verge.addr).unwrap();
    viewer.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while origin.requests().iter().all(|r| r.path() != "/slow") {
        assert!(std::time::Instant::now() < deadline, "the origin never saw /slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    viewer.shutdown(std::net::Shutdown::Both).unwrap();
    drop(viewer);

    // Without watching the viewer, this line would come only after the 120 s read timeout (the wait is 30 s), as a 504.
    assert!(verge.wait_for_output("uri=/slow"), "{}", verge.output());
    let output = verge.output();
    let line = output.lines().find(|l| l.contains("uri=/slow")).unwrap();
    assert!(line.contains("result=\"Error\"") && line.contains("ClientHungUpRequest"), "{line}");

    let before = origin.count();
    let again = verge.get("/fast");
    assert_eq!((again.status, again.text().as_str()), (200, "ok"), "{}", verge.output());
    assert_eq!(origin.count(), before + 1);
}

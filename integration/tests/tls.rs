//! Viewer TLS, HTTP/2, HTTPS origins, the viewer protocol policy on both listener kinds, the PROXY
//! protocol and CloudFront's connection headers: real handshakes (curl, rustls) with certificates the
//! tests make.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;

use verge_testkit::tls::TestCa;

use crate::harness::*;

/// Certificates for `default.test`, `a.example.test` and `*.wild.test`, written into `dir`.
fn certificates(ca: &TestCa, dir: &TempDir) -> &'static str {
    ca.issue(&["default.test"]).write(&dir.path, "default");
    ca.issue(&["a.example.test", "b.example.test"]).write(&dir.path, "a");
    ca.issue(&["*.wild.test"]).write(&dir.path, "wild");
    std::fs::write(dir.path.join("ca.pem"), ca.pem()).unwrap();
    "  certificates:\n    - {certificate_file: default.pem, private_key_file: default.key}\n    - {certificate_file: a.pem, private_key_file: a.key}\n    - {certificate_file: wild.pem, private_key_file: wild.key}\n"
}

/// A distribution with a TLS listener (and the harness's plain one) in front of `port`.
fn tls_yaml(certs: &str, port: u16, extra_server: &str, rest: &str) -> String {
    format!(
        "server:\n  listen:\n    - {{address: '127.0.0.1:0', tls: true}}\n{certs}{extra_server}\
origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {port}, connection_attempts: 1}}\n{rest}"
    )
}

/// Runs curl; returns (exit code, stdout).
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl").args(["-s", "--max-time", "30"]).args(args).output().expect("curl runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `curl` to `https://name:port/path` on verge's TLS listener, checking the certificate with the test CA.
fn curl_name(verge: &Verge, dir: &TempDir, name: &str, path: &str, extra: &[&str]) -> (i32, String) {
    let addr = verge.listener("https");
    let resolve = format!("{name}:{}:127.0.0.1", addr.port());
    let url = format!("https://{name}:{}{path}", addr.port());
    let ca = dir.path.join("ca.pem");
    let mut args = vec!["--resolve", &resolve, "--cacert", ca.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

#[test]
fn sni_picks_the_certificate_by_name_wildcards_included_and_the_first_is_the_default() {
    let app = Origin::fixed(200, "ok");
    let ca = TestCa::new("verge test CA");
    let dir = TempDir::new();
    let certs = certificates(&ca, &dir);
    let verge =
        Verge::start_in(dir, &tls_yaml(certs, app.port(), "", "default_cache_behavior: {target_origin_id: app}\n"));
    let dir = verge.dir();
    for name in ["default.test", "a.example.test", "b.example.test", "x.wild.test"] {
        let (code, out) = curl_name(&verge, dir, name, "/", &["-w", " %{http_code}"]);
        assert_eq!((code, out.as_str()), (0, "ok 200"), "{name}: the certificate for it verifies");
    }
    // A wildcard covers one label only: a.b.wild.test gets the default certificate, which fails.
    let (code, _) = curl_name(&verge, dir, "a.b.wild.test", "/", &[]);
    assert_eq!(code, 60, "no certificate matches a.b.wild.test (curl: peer certificate not verified)");
    // No SNI (an IP address): the default certificate.
    let addr = verge.listener("https");
    let out =
        Command::new("curl").args(["-s", "-k", "-v", "-o", "/dev/null", &format!("https://{addr}/")]).output().unwrap();
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(verbose.contains("CN=default.test"), "{verbose}");
}

#[test]
fn a_client_below_the_minimum_protocol_version_is_refused() {
    let app = Origin::fixed(200, "ok");
    let ca = TestCa::new("verge test CA");
    let dir = TempDir::new();
    let certs = certificates(&ca, &dir);
    let rest = "distribution: {viewer_certificate: {minimum_protocol_version: TLSv1.3_2025}}\n\
default_cache_behavior: {target_origin_id: app}\n";
    let verge = Verge::start_in(dir, &tls_yaml(certs, app.port(), "", rest));
    let (code, _) = curl_name(&verge, verge.dir(), "default.test", "/", &["--tls-max", "1.2"]);
    assert_eq!(code, 35, "TLS 1.2 is below TLSv1.3_2025: the handshake fails");
    let (code, out) = curl_name(&verge, verge.dir(), "default.test", "/", &["--tlsv1.3"]);
    assert_eq!((code, out.as_str()), (0, "ok"));

    // The default policy (TLSv1.2_2021) refuses TLS 1.1 and takes 1.2.
    let app = Origin::fixed(200, "ok");
    let dir = TempDir::new();
    let certs = certificates(&ca, &dir);
    let verge =
        Verge::start_in(dir, &tls_yaml(certs, app.port(), "", "default_cache_behavior: {target_origin_id: app}\n"));
    let (code, _) = curl_name(&verge, verge.dir(), "default.test", "/", &["--tlsv1.0", "--tls-max", "1.1"]);
    assert_ne!(code, 0, "TLS 1.1 is refused");
    let (code, out) =
        curl_name(&verge, verge.dir(), "default.test", "/", &["--tls-max", "1.2", "-w", " %{http_version}"]);
    assert_eq!((code, out.as_str()), (0, "ok 2"), "TLS 1.2 with HTTP/2 by ALPN");
}

/// A response as curl reports it: status, X-Cache, body, HTTP version.
fn fetch(verge: &Verge, dir: &TempDir, path: &str, extra: &[&str]) -> (String, String, String) {
    let headers = dir.path.join(format!("headers-{}", std::process::id()));
    let mut args = vec!["-D", headers.to_str().unwrap(), "-w", "\n%{http_code} %{http_version}"];
    args.extend_from_slice(extra);
    let (code, out) = curl_name(verge, dir, "default.test", path, &args);
    assert_eq!(code, 0, "curl {path} {extra:?}");
    let head = std::fs::read_to_string(&headers).unwrap().to_ascii_lowercase();
    let x_cache = head.lines().find_map(|l| l.strip_prefix("x-cache: ")).unwrap_or("").trim().to_string();
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.to_string(), x_cache, body.to_string())
}

#[test]
fn http2_and_http1_get_the_same_answers_hit_miss_range_head_rewrite_and_generated() {
    let body: String = (0..4000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let app = {
        let body = body.clone();
        Origin::start(move |req| {
            let text = if req.path().starts_with("/rewritten") { "rewritten".to_string() } else { body.clone() };
            verge_testkit::origin::OriginResponse::new(200, text)
                .header("content-type", "text/plain")
                .header("cache-control", "max-age=60")
        })
    };
    let ca = TestCa::new("verge test CA");
    let dir = TempDir::new();
    let certs = certificates(&ca, &dir);
    let rest = format!(
        "functions: {{store: ./functions}}\ndefault_cache_behavior: {{target_origin_id: app}}\ncache_behaviors:\n  - path_pattern: /fn/*\n    target_origin_id: app\n    cache_policy: CachingDisabled\n    lambda_function_associations:\n      - {{event_type: viewer-request, lambda_function_arn: '{}'}}\n",
        arn("misbehave", 1)
    );
    publish(&dir, &[("misbehave", Module::Guest("misbehave"))]);
    let verge = Verge::start_in(dir, &tls_yaml(certs, app.port(), "", &rest));
    let dir = verge.dir();
    for (version, flag) in [("2", "--http2"), ("1.1", "--http1.1")] {
        let path = format!("/object-{version}");
        let miss = fetch(&verge, dir, &path, &[flag]);
        assert_eq!(miss, (format!("200 {version}"), "miss from verge".to_string(), body.clone()));
        let hit = fetch(&verge, dir, &path, &[flag]);
        assert_eq!(hit.1, "hit from verge", "{flag}");
        assert_eq!(hit.2, body, "{flag}");
        let range = fetch(&verge, dir, &path, &[flag, "-r", "10-19"]);
        assert_eq!(range, (format!("206 {version}"), "hit from verge".to_string(), body[10..20].to_string()));
        let head = fetch(&verge, dir, &path, &[flag, "-I"]);
        // curl -I prints the head as the body; the 4,000 bytes must not follow it.
        assert_eq!(head.0, format!("200 {version}"), "{flag} HEAD");
        assert!(head.2.to_ascii_lowercase().contains("content-length: 4000"), "{flag} HEAD: {}", head.2);
        assert!(!head.2.contains("abcdefghij"), "{flag} HEAD has no body");
    }
    for (version, flag) in [("2", "--http2"), ("1.1", "--http1.1")] {
        let generated = fetch(&verge, dir, "/fn/generate", &[flag]);
        assert_eq!(generated.0, format!("200 {version}"), "{flag}");
        assert_eq!(generated.2, "generated by viewer-request", "{flag}");
        let rewritten = fetch(&verge, dir, "/fn/rewrite", &[flag]);
        assert_eq!((rewritten.0, rewritten.2.as_str()), (format!("200 {version}"), "rewritten"), "{flag}");
    }
    assert!(app.requests().iter().all(|r| r.header("cloudfront-viewer-tls").is_none()), "not asked for");
}

#[test]
fn https_origins_are_verified_against_a_ca_bundle_and_a_bad_certificate_is_a_502_naming_the_origin() {
    let ca = TestCa::new("origin CA");
    let good = Origin::start_tls(ca.issue(&["127.0.0.1"]).server_config(), |_| {
        verge_testkit::origin::OriginResponse::new(200, "over tls")
    });
    let expired = Origin::start_tls(ca.issue_expired(&["127.0.0.1"]).server_config(), |_| {
        verge_testkit::origin::OriginResponse::new(200, "expired")
    });
    let plain = Origin::fixed(200, "over plain http");
    let viewer_ca = TestCa::new("viewer CA");
    let dir = TempDir::new();
    let certs = certificates(&viewer_ca, &dir);
    std::fs::write(dir.path.join("origin-ca.pem"), ca.pem()).unwrap();
    let origin = |id: &str, port: u16, more: &str| {
        format!("  - {{id: {id}, domain_name: 127.0.0.1, https_port: {port}, connection_attempts: 1{more}}}\n")
    };
    let yaml = format!(
        "server:\n  listen:\n    - {{address: '127.0.0.1:0', tls: true}}\n{certs}origins:\n{}{}{}{}\
default_cache_behavior: {{target_origin_id: match, cache_policy: CachingDisabled}}\n\
cache_behaviors:\n  - {{path_pattern: /unknown/*, target_origin_id: unknown-ca, cache_policy: CachingDisabled}}\n  \
- {{path_pattern: /private/*, target_origin_id: private-ca, cache_policy: CachingDisabled}}\n  \
- {{path_pattern: /expired/*, target_origin_id: expired, cache_policy: CachingDisabled}}\n",
        origin("unknown-ca", good.port(), ", protocol_policy: https-only"),
        origin("private-ca", good.port(), ", protocol_policy: https-only, ca_bundle_file: origin-ca.pem"),
        origin("expired", expired.port(), ", protocol_policy: https-only, ca_bundle_file: origin-ca.pem"),
        origin(
            "match",
            good.port(),
            &format!(", http_port: {}, protocol_policy: match-viewer, ca_bundle_file: origin-ca.pem", plain.port())
        ),
    );
    let verge = Verge::start_in(dir, &yaml);
    let unknown = verge.get("/unknown/x");
    assert_eq!(unknown.status, 502, "a certificate from an unknown CA");
    assert!(verge.wait_for_output("origin=unknown-ca"), "{}", verge.output());
    assert!(verge.wait_for_output("UnknownIssuer"), "the reason is logged: {}", verge.output());
    let private = verge.get("/private/x");
    assert_eq!((private.status, private.text().as_str()), (200, "over tls"), "the same origin with its CA bundle");
    for _ in 0..3 {
        assert_eq!(verge.get("/private/again").status, 200);
    }
    let connections: Vec<usize> = good.requests().iter().map(|r| r.connection).collect();
    // (Connection 0 was the unknown-CA attempt, refused in its handshake.)
    assert_eq!(connections, vec![connections[0]; 4], "one pooled TLS connection serves the four requests in turn");
    assert_eq!(verge.get("/expired/x").status, 502, "an expired certificate");
    assert!(verge.wait_for_output("origin=expired"), "{}", verge.output());
    assert!(verge.wait_for_output("certificate expired"), "the reason is logged: {}", verge.output());
    // match-viewer: plain HTTP for an HTTP viewer, TLS for an HTTPS viewer.
    assert_eq!(verge.get("/m").text(), "over plain http");
    let (code, out) = curl_name(&verge, verge.dir(), "default.test", "/m", &[]);
    assert_eq!((code, out.as_str()), (0, "over tls"));
    assert_eq!(expired.count(), 0, "the expired origin never got a request");
}

#[test]
fn the_viewer_protocol_policy_on_both_listener_kinds_and_no_viewer_request_for_a_redirect() {
    let app = Origin::fixed(200, "ok");
    let ca = TestCa::new("verge test CA");
    let dir = TempDir::new();
    let certs = certificates(&ca, &dir);
    publish(&dir, &[("misbehave", Module::Guest("misbehave"))]);
    let hook = format!(
        "    lambda_function_associations:\n      - {{event_type: viewer-request, lambda_function_arn: '{}'}}\n",
        arn("misbehave", 1)
    );
    let rest = format!(
        "functions: {{store: ./functions}}\ndefault_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled}}\n\
cache_behaviors:\n  - {{path_pattern: /secure/*, target_origin_id: app, cache_policy: CachingDisabled, viewer_protocol_policy: https-only}}\n  \
- path_pattern: /redir/*\n    target_origin_id: app\n    cache_policy: CachingDisabled\n    viewer_protocol_policy: redirect-to-https\n{hook}"
    );
    let verge = Verge::start_in(dir, &tls_yaml(certs, app.port(), "", &rest));
    let https_port = verge.listener("https").port();
    assert_eq!(verge.get("/secure/x").status, 403, "https-only refuses HTTP");
    let redirect = verge.request("GET", "/redir/generate?q=1", &[("Host", "default.test:8080")], b"");
    assert_eq!(redirect.status, 301, "GET is redirected, not answered by the viewer-request function");
    assert_eq!(
        redirect.header("location"),
        Some(format!("https://default.test:{https_port}/redir/generate?q=1").as_str())
    );
    let post = verge.request("POST", "/redir/x", &[("Host", "default.test")], b"data");
    assert_eq!(post.status, 307);
    let (code, out) = curl_name(&verge, verge.dir(), "default.test", "/secure/x", &[]);
    assert_eq!((code, out.as_str()), (0, "ok"), "https-only serves HTTPS");
    let (code, out) = curl_name(&verge, verge.dir(), "default.test", "/redir/generate", &["-w", " %{http_code}"]);
    assert_eq!((code, out.as_str()), (0, "generated by viewer-request 200"), "no loop: HTTPS runs the function");
}

/// Sends `prefix` then an HTTP/1.1 request on a raw connection; returns the response text (empty when
/// verge closed the connection without one).
fn raw_request(addr: SocketAddr, prefix: &[u8], path: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(prefix).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

#[test]
fn proxy_protocol_v1_and_v2_give_the_client_address_and_cloudfront_headers_are_the_edges_own() {
    let app = Origin::fixed(200, "ok");
    let ca = TestCa::new("verge test CA");
    let dir = TempDir::new();
    let certs = certificates(&ca, &dir);
    let yaml = format!(
        "server:\n  listen:\n    - {{address: '127.0.0.1:0', tls: true}}\n    - {{address: '127.0.0.1:0', proxy_protocol: true}}\n{certs}\
origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled, origin_request_policy: AllViewerAndCloudFrontHeaders-2022-06}}\n\
cache_behaviors:\n  - {{path_pattern: /all/*, target_origin_id: app, cache_policy: CachingDisabled, origin_request_policy: AllViewer}}\n",
        app.port()
    );
    let verge = Verge::start_in(dir, &yaml);
    let proxied = verge.listener("proxy+http");
    let spoof = "CloudFront-Viewer-Country: XX\r\nCloudFront-Viewer-Address: 6.6.6.6:1\r\n";
    let v1 = raw_request(proxied, b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 80\r\n", "/p", spoof);
    assert!(v1.starts_with("HTTP/1.1 200"), "{v1}");
    assert!(verge.wait_for_output("client=203.0.113.7 "), "the access line has the PROXY client: {}", verge.output());
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0, 80]);
    assert!(raw_request(proxied, &v2, "/p", "").starts_with("HTTP/1.1 200"));
    assert_eq!(raw_request(proxied, b"", "/p", ""), "", "no PROXY header: closed without an answer");
    let (code, _) = curl_name(&verge, verge.dir(), "default.test", "/tls", &["--http2"]);
    assert_eq!(code, 0);
    assert!(raw_request(verge.addr, b"", "/p", spoof).starts_with("HTTP/1.1 200"));
    assert!(raw_request(verge.addr, b"", "/all/p", spoof).starts_with("HTTP/1.1 200"));

    let seen = app.requests();
    assert_eq!(seen.len(), 5, "{seen:?}");
    let (v1, v2, tls, plain) = (&seen[0], &seen[1], &seen[2], &seen[3]);
    assert_eq!(v1.header("x-forwarded-for"), Some("203.0.113.7"));
    assert_eq!(v1.header("cloudfront-viewer-address"), Some("203.0.113.7:40000"));
    assert_eq!(v1.header("cloudfront-forwarded-proto"), Some("http"));
    assert_eq!(v1.header("cloudfront-viewer-http-version"), Some("1.1"));
    assert_eq!(v2.header("cloudfront-viewer-address"), Some("198.51.100.9:8080"));
    assert_eq!(tls.header("cloudfront-forwarded-proto"), Some("https"));
    assert_eq!(tls.header("cloudfront-viewer-http-version"), Some("2.0"));
    let viewer_tls = tls.header("cloudfront-viewer-tls").unwrap_or("");
    assert!(viewer_tls.starts_with("TLSv1.3:TLS_") && viewer_tls.ends_with(":fullHandshake"), "{viewer_tls}");
    assert!(plain.header("cloudfront-viewer-address").is_some_and(|a| a.starts_with("127.0.0.1:")));
    for request in &seen {
        assert_eq!(request.header("cloudfront-viewer-country"), None, "a viewer's CloudFront-* never passes");
        assert_ne!(request.header("cloudfront-viewer-address"), Some("6.6.6.6:1"));
    }
    assert_eq!(seen[4].header("cloudfront-viewer-address"), None, "AllViewer names no CloudFront header");
}

#[test]
fn h2c_with_prior_knowledge_and_http_version_http1_1() {
    let app = Origin::fixed(200, "ok");
    let ca = TestCa::new("verge test CA");
    let dir = TempDir::new();
    let certs = certificates(&ca, &dir);
    let server = "  h2c: true\n  viewer_idle_timeout: 1\n";
    let verge =
        Verge::start_in(dir, &tls_yaml(certs, app.port(), server, "default_cache_behavior: {target_origin_id: app}\n"));
    let url = format!("http://{}/x", verge.addr);
    assert_eq!(curl(&["--http2-prior-knowledge", "-w", " %{http_version}", &url]), (0, "ok 2".to_string()));
    assert_eq!(curl(&["-w", " %{http_version}", &url]), (0, "ok 1.1".to_string()), "HTTP/1 on the same listener");
    assert_eq!(verge.request("GET", "/", &[], b"").status, 200, "a request shorter than the preface");
    // A connection that sends nothing is closed at the idle timeout (1 s here), not held forever.
    let mut silent = TcpStream::connect(verge.addr).unwrap();
    silent.set_read_timeout(Some(TIMEOUT)).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(silent.read(&mut [0u8; 16]).unwrap_or(usize::MAX), 0, "closed by verge");
    assert!(started.elapsed() < TIMEOUT);

    let dir = TempDir::new();
    let certs = certificates(&ca, &dir);
    let rest = "distribution: {http_version: http1.1}\ndefault_cache_behavior: {target_origin_id: app}\n";
    let verge = Verge::start_in(dir, &tls_yaml(certs, app.port(), "  h2c: true\n", rest));
    let (code, out) = curl_name(&verge, verge.dir(), "default.test", "/", &["--http2", "-w", " %{http_version}"]);
    assert_eq!((code, out.as_str()), (0, "ok 1.1"), "http1.1: ALPN offers no h2");
    let url = format!("http://{}/x", verge.addr);
    assert_ne!(curl(&["--http2-prior-knowledge", &url]).0, 0, "http1.1: no h2c either");
}

/// A kept-alive HTTPS connection made with rustls, trusting `ca_pem`.
struct TlsConnection(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl TlsConnection {
    fn open(addr: SocketAddr, name: &str, ca_pem: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        Self(rustls::StreamOwned::new(connection, tcp))
    }

    /// GET `path` on this connection; the status and body.
    fn get(&mut self, path: &str) -> (u16, String) {
        write!(self.0, "GET {path} HTTP/1.1\r\nHost: default.test\r\n\r\n").unwrap();
        self.read_response()
    }

    /// The next response on this connection: its status and body. Read a byte at a time: a buffered
    /// reader dropped after one response would take the next (pipelined) one's bytes with it.
    fn read_response(&mut self) -> (u16, String) {
        let status_line = self.read_line();
        let mut length = 0;
        loop {
            let line = self.read_line();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).unwrap();
        (status_line.split(' ').nth(1).unwrap().parse().unwrap(), String::from_utf8(body).unwrap())
    }

    /// One line, with its end.
    fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8];
        while !line.ends_with(b"\n") {
            self.0.read_exact(&mut byte).unwrap();
            line.push(byte[0]);
        }
        String::from_utf8(line).unwrap()
    }
}

/// A kept-alive TLS connection waits for its next request outside the request (docs/performance.md,
/// "Idle connections"): requests after a quiet spell, pipelined ones (plaintext rustls already holds)
/// and the idle timeout all behave as before.
#[test]
fn kept_alive_tls_connections_answer_late_and_pipelined_requests_and_close_at_the_idle_timeout() {
    let app = Origin::fixed(200, "ok");
    let ca = TestCa::new("idle CA");
    let dir = TempDir::new();
    let certs = certificates(&ca, &dir);
    let yaml =
        tls_yaml(certs, app.port(), "  viewer_idle_timeout: 2\n", "default_cache_behavior: {target_origin_id: app}\n");
    let verge = Verge::start_in(dir, &yaml);
    let mut conn = TlsConnection::open(verge.listener("https"), "default.test", &ca.pem());
    assert_eq!(conn.get("/a"), (200, "ok".to_string()));
    // Quiet for longer than a plain connection's wait in its task (100 ms), well within the idle timeout.
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(conn.get("/b"), (200, "ok".to_string()), "a request after a quiet spell");
    // Two requests in one write: the second's plaintext is in rustls's buffer when the first is answered.
    conn.0
        .write_all(b"GET /c HTTP/1.1\r\nHost: default.test\r\n\r\nGET /d HTTP/1.1\r\nHost: default.test\r\n\r\n")
        .unwrap();
    assert_eq!(conn.read_response(), (200, "ok".to_string()));
    assert_eq!(conn.read_response(), (200, "ok".to_string()), "the pipelined request");
    let answered = std::time::Instant::now();
    let mut rest = Vec::new();
    // The end: close_notify (Ok) or the socket's end without one (an error); either way no more bytes.
    let _ = conn.0.read_to_end(&mut rest);
    let after = answered.elapsed();
    assert!(rest.is_empty(), "nothing after the last response: {rest:?}");
    assert!(after >= std::time::Duration::from_millis(1_900), "closed {after:?} after the last response (timeout 2 s)");
    assert!(after < std::time::Duration::from_secs(20), "closed at the idle timeout, not {after:?}");
}

#[test]
fn a_certificate_replaced_by_a_reload_serves_new_connections_while_an_open_one_keeps_working() {
    let app = Origin::fixed(200, "ok");
    let first_ca = TestCa::new("first CA");
    let dir = TempDir::new();
    let certs = certificates(&first_ca, &dir);
    let admin = "  admin: {listen: '127.0.0.1:0', unauthenticated: true}\n";
    let verge =
        Verge::start_in(dir, &tls_yaml(certs, app.port(), admin, "default_cache_behavior: {target_origin_id: app}\n"));
    let mut open = TlsConnection::open(verge.listener("https"), "default.test", &first_ca.pem());
    assert_eq!(open.get("/before"), (200, "ok".to_string()));

    let second_ca = TestCa::new("second CA");
    second_ca.issue(&["default.test"]).write(&verge.dir().path, "default");
    let reloaded = http_request(verge.admin.unwrap(), "POST", "/reload", &[], b"");
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());

    let fresh = TlsConnection::open(verge.listener("https"), "default.test", &second_ca.pem()).get("/new");
    assert_eq!(fresh, (200, "ok".to_string()), "a new connection gets the new certificate");
    let (code, _) = curl_name(&verge, verge.dir(), "default.test", "/", &[]);
    assert_eq!(code, 60, "the old CA no longer verifies new connections");
    assert_eq!(open.get("/after"), (200, "ok".to_string()), "the open connection keeps working");

    // A reload with a broken certificate file is refused; the running certificates keep serving.
    std::fs::write(verge.dir().path.join("a.pem"), "not a certificate").unwrap();
    let refused = http_request(verge.admin.unwrap(), "POST", "/reload", &[], b"");
    assert_ne!(refused.status, 200);
    assert!(refused.text().contains("server.certificates[1]"), "{}", refused.text());
    let again = TlsConnection::open(verge.listener("https"), "default.test", &second_ca.pem()).get("/x");
    assert_eq!(again.0, 200);
}

#[test]
fn x_forwarded_for_names_the_client_only_from_trusted_proxies() {
    let app = Origin::fixed(200, "ok");
    let rest = |trusted: &str| {
        format!(
            "server: {{trusted_proxies: [{trusted}]}}\norigins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled, origin_request_policy: AllViewerAndCloudFrontHeaders-2022-06}}\n",
            app.port()
        )
    };
    let xff = [("X-Forwarded-For", "198.51.100.1, 127.0.0.5")];
    let trusted = Verge::start(&rest("127.0.0.0/8"));
    assert_eq!(trusted.request("GET", "/t", &xff, b"").status, 200);
    let untrusted = Verge::start(&rest("10.0.0.0/8"));
    assert_eq!(untrusted.request("GET", "/u", &xff, b"").status, 200);
    let seen = app.requests();
    // 127.0.0.5 is a trusted proxy too: the client is the rightmost entry that is not.
    assert_eq!(seen[0].header("cloudfront-viewer-address"), Some("198.51.100.1:0"));
    assert!(trusted.wait_for_output("client=198.51.100.1 "), "{}", trusted.output());
    assert!(seen[1].header("cloudfront-viewer-address").is_some_and(|a| a.starts_with("127.0.0.1:")), "{seen:?}");
    assert!(untrusted.wait_for_output("client=127.0.0.1 "), "{}", untrusted.output());
    // Either way the origin gets the chain extended with the connection's peer.
    assert_eq!(seen[0].header("x-forwarded-for"), Some("198.51.100.1, 127.0.0.5, 127.0.0.1"));
}

#[test]
fn http2_carries_large_bodies_include_body_and_custom_error_pages() {
    let large: String = (0..3_000_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let app = {
        let large = large.clone();
        Origin::start(move |req| match req.path() {
            "/large" => {
                verge_testkit::origin::OriginResponse::new(200, large.clone()).header("cache-control", "max-age=60")
            }
            "/errors/404.html" => verge_testkit::origin::OriginResponse::new(200, "custom 404 page"),
            _ => verge_testkit::origin::OriginResponse::new(404, "origin 404"),
        })
    };
    let ca = TestCa::new("verge test CA");
    let dir = TempDir::new();
    let certs = certificates(&ca, &dir);
    publish(&dir, &[("misbehave", Module::Guest("misbehave"))]);
    let rest = format!(
        "functions: {{store: ./functions}}\ndefault_cache_behavior: {{target_origin_id: app}}\n\
cache_behaviors:\n  - path_pattern: /fn/*\n    target_origin_id: app\n    cache_policy: CachingDisabled\n    \
allowed_methods: [GET, HEAD, OPTIONS, PUT, PATCH, POST, DELETE]\n    lambda_function_associations:\n      \
- {{event_type: viewer-request, lambda_function_arn: '{}', include_body: true}}\n\
custom_error_responses:\n  - {{error_code: 404, response_page_path: /errors/404.html, response_code: 404}}\n",
        arn("misbehave", 1)
    );
    let verge = Verge::start_in(dir, &tls_yaml(certs, app.port(), "", &rest));
    let dir = verge.dir();
    for flag in ["--http2", "--http1.1"] {
        for _ in 0..2 {
            let big = fetch(&verge, dir, "/large", &[flag]);
            assert_eq!(big.2.len(), large.len(), "{flag}: {}", big.1);
            assert!(big.2 == large, "{flag}: the 3 MB body arrives whole");
        }
        let body = fetch(&verge, dir, "/fn/body", &[flag, "--data-binary", "twelve bytes"]);
        assert_eq!(body.2, "truncated=false encoding=base64 len=16", "{flag}");
        let missing = fetch(&verge, dir, "/missing", &[flag]);
        assert_eq!(
            (missing.0.split(' ').next(), missing.2.as_str()),
            (Some("404"), "custom 404 page"),
            "{flag}: {}",
            verge.output()
        );
    }
}

#[test]
fn device_headers_from_the_user_agent_split_the_cache_when_the_key_names_them() {
    let app = Origin::start(|req| {
        verge_testkit::origin::OriginResponse::new(
            200,
            format!("mobile={:?}", req.header("cloudfront-is-mobile-viewer")),
        )
        .header("cache-control", "max-age=60")
    });
    let yaml = format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\n\
cache_policies:\n  - {{name: by-device, headers: {{behavior: whitelist, items: [CloudFront-Is-Mobile-Viewer]}}}}\n\
origin_request_policies:\n  - {{name: devices, headers: {{behavior: whitelist, items: [CloudFront-Is-IOS-Viewer, CloudFront-Is-Desktop-Viewer]}}}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: by-device, origin_request_policy: devices}}\n",
        app.port()
    );
    let verge = Verge::start(&yaml);
    let iphone = [("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148")];
    let desktop =
        [("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"), ("CloudFront-Is-Mobile-Viewer", "true")];
    assert_eq!(verge.request("GET", "/p", &iphone, b"").text(), "mobile=Some(\"true\")");
    let spoofed = verge.request("GET", "/p", &desktop, b"");
    assert_eq!(spoofed.text(), "mobile=Some(\"false\")", "the viewer's own value is replaced");
    assert_eq!(verge.request("GET", "/p", &iphone, b"").x_cache(), "Hit from verge");
    assert_eq!(verge.request("GET", "/p", &desktop, b"").x_cache(), "Hit from verge");
    let seen = app.requests();
    assert_eq!(seen.len(), 2, "one object per device class");
    assert_eq!(
        (seen[0].header("cloudfront-is-ios-viewer"), seen[0].header("cloudfront-is-desktop-viewer")),
        (Some("true"), Some("false"))
    );
    assert_eq!(
        (seen[1].header("cloudfront-is-ios-viewer"), seen[1].header("cloudfront-is-desktop-viewer")),
        (Some("false"), Some("true"))
    );
}

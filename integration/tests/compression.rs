//! Compression at the edge on CloudFront's conditions: compressed once, stored compressed per normalised
//! Accept-Encoding, served compressed on hits; Range answered from the compressed bytes; what must not be
//! compressed is not.

use std::io::Read;

use verge_testkit::origin::OriginResponse;

use crate::harness::*;

fn page() -> String {
    "<p>verge compresses this page once and serves it from the cache many times.</p>\n".repeat(160)
}

fn origin() -> Origin {
    Origin::start(|req| {
        let html = page();
        let (status, content_type, body): (u16, &str, String) = match req.path() {
            "/small.html" => (200, "text/html", "<p>short</p>".to_string()),
            "/image.png" => (200, "image/png", html),
            "/partial.html" => (206, "text/html", html),
            _ => (200, "text/html; charset=utf-8", html),
        };
        let mut resp = OriginResponse::new(status, body)
            .header("content-type", content_type)
            .header(
                "cache-control",
                if req.path() == "/no-transform.html" { "max-age=60, no-transform" } else { "max-age=60" },
            )
            .header("etag", "\"v1\"");
        if req.path() == "/encoded.html" {
            resp = resp.header("content-encoding", "identity-ish");
        }
        resp
    })
}

fn yaml(port: u16) -> String {
    format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {port}}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: CachingOptimized, compress: true}}\n\
cache_behaviors:\n  - {{path_pattern: /plain/*, target_origin_id: app, cache_policy: CachingOptimized}}\n"
    )
}

fn gunzip(data: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(data).read_to_string(&mut out).expect("valid gzip");
    out
}

fn unbrotli(data: &[u8]) -> String {
    let mut out = String::new();
    brotli::Decompressor::new(data, 4096).read_to_string(&mut out).expect("valid brotli");
    out
}

#[test]
fn brotli_or_gzip_compressed_once_stored_and_served_on_hits() {
    let app = origin();
    let verge = Verge::start(&format!(
        "server: {{admin: {{listen: '127.0.0.1:0', unauthenticated: true}}}}\n{}",
        yaml(app.port())
    ));
    let br = [("Accept-Encoding", "gzip, deflate, br")];
    let miss = verge.request("GET", "/index.html", &br, b"");
    assert_eq!((miss.status, miss.x_cache()), (200, "Miss from verge"));
    assert_eq!(miss.header("content-encoding"), Some("br"), "Brotli preferred");
    assert_eq!(miss.header("etag"), Some("W/\"v1\""), "a strong ETag made weak");
    assert!(miss.header("vary").is_some_and(|v| v.contains("Accept-Encoding")));
    assert_eq!(unbrotli(&miss.body), page());
    assert!(miss.body.len() * 5 < page().len(), "compressed: {} of {}", miss.body.len(), page().len());
    let hit = verge.request("GET", "/index.html", &br, b"");
    assert_eq!((hit.x_cache(), hit.header("content-encoding")), ("Hit from verge", Some("br")));
    assert_eq!(hit.body, miss.body, "the stored compressed bytes");

    let gzip = verge.request("GET", "/index.html", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!((gzip.x_cache(), gzip.header("content-encoding")), ("Miss from verge", Some("gzip")));
    assert_eq!(gunzip(&gzip.body), page());
    let identity = verge.get("/index.html");
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.text(), page());
    assert_eq!(app.count(), 3, "one origin fetch per normalised Accept-Encoding");
    let metrics = http_request(verge.admin.unwrap(), "GET", "/metrics", &[], b"").text();
    let line = |name: &str| metrics.lines().find(|l| l.starts_with(name)).unwrap_or("").to_string();
    assert!(line("verge_compressed_responses_total{encoding=\"br\"").ends_with(" 1"), "{metrics}");
    assert!(line("verge_compressed_responses_total{encoding=\"gzip\"").ends_with(" 1"), "{metrics}");
    let saved: u64 = line("verge_compression_saved_bytes_total").rsplit(' ').next().unwrap().parse().unwrap();
    assert!(saved > 2 * (page().len() as u64 - 500), "two pages' worth saved: {saved}");

    // Range on a compressed object (a hit: the stored compressed bytes, with their length).
    assert_eq!(hit.header("content-length"), Some(hit.body.len().to_string().as_str()));
    let range = verge.request("GET", "/index.html", &[br[0], ("Range", "bytes=10-49")], b"");
    assert_eq!(range.status, 206, "{:?}", range.headers);
    assert_eq!(range.header("content-encoding"), Some("br"));
    assert_eq!(range.body, hit.body[10..50].to_vec());
}

#[test]
fn zstd_behind_the_cache_policy_setting() {
    let app = origin();
    let yaml = format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\n\
cache_policies:\n  - {{name: zstd, default_ttl: 60, enable_accept_encoding_gzip: true, enable_accept_encoding_brotli: true, enable_accept_encoding_zstd: true}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: zstd, compress: true}}\n",
        app.port()
    );
    let verge = Verge::start(&yaml);
    let resp = verge.request("GET", "/z.html", &[("Accept-Encoding", "gzip, deflate, br, zstd")], b"");
    assert_eq!(resp.header("content-encoding"), Some("zstd"));
    let mut text = String::new();
    zstd::stream::read::Decoder::new(&resp.body[..]).unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, page());
    let br = verge.request("GET", "/z.html", &[("Accept-Encoding", "gzip, br")], b"");
    assert_eq!(br.header("content-encoding"), Some("br"), "a viewer without zstd gets br");
    let origin_saw: Vec<String> =
        app.requests().iter().map(|r| r.header("accept-encoding").unwrap_or("").to_string()).collect();
    assert_eq!(origin_saw, ["zstd,br,gzip", "br,gzip"], "the normalised Accept-Encoding, zstd first");
}

#[test]
fn what_cloudfront_does_not_compress_is_not_compressed() {
    let app = origin();
    let verge = Verge::start(&yaml(app.port()));
    let ae = [("Accept-Encoding", "gzip, br")];
    for path in ["/small.html", "/image.png", "/encoded.html", "/no-transform.html", "/plain/index.html"] {
        let resp = verge.request("GET", path, &ae, b"");
        assert_eq!(resp.status, 200, "{path}");
        assert_ne!(resp.header("content-encoding"), Some("br"), "{path} is not compressed");
        assert_ne!(resp.header("content-encoding"), Some("gzip"), "{path} is not compressed");
    }
    let old = std::net::TcpStream::connect(verge.addr);
    drop(old);
    let http10 = raw_http10(verge.addr, "/index.html");
    assert!(http10.starts_with("HTTP/1."), "{http10}");
    assert!(!http10.to_ascii_lowercase().contains("content-encoding: br"), "HTTP/1.0 is never compressed");
}

fn raw_http10(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\nAccept-Encoding: br\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

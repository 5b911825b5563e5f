//! verge's own pass exchange (proxy/src/pass_through.rs): a pass miss over a kept-alive origin
//! connection is sent and passed on by verge itself. The first request to an origin goes through
//! pingora's proxy (no idle connection yet), the next ones through verge's exchange: each test compares
//! the two, or drives the exchange through an origin's framings and failures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use verge_testkit::client::http_request;

use crate::harness::{Origin, OriginResponse, Verge, TIMEOUT};

/// `verge_origin_pass_exchanges_total` from the admin endpoint.
fn pass_exchanges(verge: &Verge) -> u64 {
    let metrics = http_request(verge.admin.expect("an admin listener"), "GET", "/metrics", &[], b"").text();
    metrics
        .lines()
        .find(|l| l.starts_with("verge_origin_pass_exchanges_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no pass exchange counter in {metrics}"))
}

/// Header fields without the per-response ones, sorted: what two responses (or origin requests) that
/// should be the same must agree on.
fn comparable(headers: &[(String, String)], per_response: &[&str]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> =
        headers.iter().filter(|(n, _)| !per_response.contains(&n.as_str())).cloned().collect();
    fields.sort();
    fields
}

/// The same viewer request twice, through pingora's proxy and then verge's exchange: the viewer gets
/// the same response and the origin the same request, field for field (order and case aside), under
/// policies that rewrite the request (origin path, custom headers, selected query strings and cookies,
/// X-Forwarded-For and Via chained) and for an error status.
#[test]
fn the_exchange_sends_what_pingoras_proxy_sends() {
    let origin = Origin::start(|req| {
        let status = if req.path().ends_with("/missing") { 404 } else { 200 };
        OriginResponse::new(status, "body of the answer")
            .header("Content-Type", "text/plain")
            .header("X-Origin-Field", "kept as sent")
            .header("Via", "1.1 upstream-cache")
            .header("X-Cache", "Hit from upstream")
            .header("Connection", "keep-alive")
            .header("Set-Cookie", "a=1")
            .header("Set-Cookie", "b=2")
    });
    let behaviors = [
        "cache_policy: CachingDisabled",
        "cache_policy: CachingDisabled, origin_request_policy: AllViewer",
        "cache_policy: CachingDisabled, origin_request_policy: AllViewerExceptHostHeader",
        "cache_policy: CachingDisabled, origin_request_policy: UserAgentRefererHeaders",
    ];
    for behavior in behaviors {
        for path in ["/page?lang=en&utm=x", "/missing"] {
            // A verge of its own each time, so that the first request finds no idle connection.
            let verge = Verge::start(&format!(
                "server: {{ admin: {{ listen: 127.0.0.1:0, unauthenticated: true }} }}\norigins:\n  - id: app\n    domain_name: 127.0.0.1\n    http_port: {}\n    origin_path: /v1\n    custom_headers: {{X-Origin-Verify: s3cr3t}}\ndefault_cache_behavior: {{target_origin_id: app, {behavior}}}\n",
                origin.port()
            ));
            let viewer_fields = [
                ("Cookie", "session=abc; theme=dark"),
                ("X-Forwarded-For", "203.0.113.7"),
                ("Via", "1.1 viewer-proxy"),
                ("User-Agent", "pass-test/1.0"),
                ("Referer", "https://example.com/"),
                ("Accept-Encoding", "gzip, br"),
                ("Accept-Language", "fr"),
                ("X-Amz-Cf-Id", "forged"),
            ];
            assert_eq!(pass_exchanges(&verge), 0);
            let seen = origin.count();
            let through_pingora = verge.request("GET", path, &viewer_fields, b"");
            let through_verge = verge.request("GET", path, &viewer_fields, b"");
            assert_eq!(
                pass_exchanges(&verge),
                1,
                "{behavior} {path}: the second request took the exchange: {}",
                verge.output()
            );
            let per_response = ["date", "x-amz-cf-id", "connection"];
            assert_eq!(through_pingora.status, through_verge.status, "{behavior} {path}");
            assert_eq!(
                comparable(&through_pingora.headers, &per_response),
                comparable(&through_verge.headers, &per_response),
                "{behavior} {path}"
            );
            assert_eq!(through_pingora.body, through_verge.body);
            assert_eq!(through_verge.header("x-cache"), through_pingora.header("x-cache"));
            assert!(through_verge.header("date").is_some());
            let requests = origin.requests();
            let (first, second) = (&requests[seen], &requests[seen + 1]);
            assert_eq!((&first.method, &first.target), (&second.method, &second.target), "{behavior} {path}");
            assert_eq!(
                comparable(&first.headers, &["x-amz-cf-id"]),
                comparable(&second.headers, &["x-amz-cf-id"]),
                "{behavior} {path}: the origin requests differ"
            );
            assert_eq!(second.header("x-amz-cf-id"), through_verge.header("x-amz-cf-id"));
            assert_eq!(first.connection, second.connection, "the exchange reused pingora's connection");
        }
    }
}

/// One request read from `reader` (its head; these requests have no body). `None` once the peer closed.
fn read_request(reader: &mut BufReader<std::net::TcpStream>) -> Option<(String, String)> {
    let mut first = String::new();
    if reader.read_line(&mut first).ok()? == 0 {
        return None;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut parts = first.split(' ');
    Some((parts.next()?.to_string(), parts.next()?.to_string()))
}

/// An origin answering by path with the framings HTTP/1 has: chunked (in pieces), a 100 KiB length,
/// none (until it closes), bodiless 204 and 304, a HEAD's length without a body; `/cut` announces
/// 100 KiB and closes after half. Counts its connections.
/// The origin of the framing test: the number of connections it accepted, and a channel that says when
/// it closed a kept-alive connection on its own (`/then-close`).
fn framing_origin() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>, std::sync::mpsc::Receiver<()>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let (closed_tx, closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            let closed_tx = closed_tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn);
                while let Some((method, path)) = read_request(&mut reader) {
                    let out = reader.get_mut();
                    let big = vec![b'x'; 100 * 1024];
                    let ok = match path.as_str() {
                        "/chunked" => out
                            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n")
                            .and_then(|_| out.flush())
                            .and_then(|_| out.write_all(b"1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")),
                        "/big" => out
                            .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).as_bytes())
                            .and_then(|_| out.write_all(&big)),
                        "/cut" => {
                            let _ = out.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).as_bytes());
                            let _ = out.write_all(&big[..big.len() / 2]);
                            return;
                        }
                        "/until-close" => {
                            let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the origin closes");
                            return;
                        }
                        "/then-close" => {
                            // A whole answer that allows keep-alive, then the origin closes the idle
                            // connection itself (as origins do when their idle timeout is shorter).
                            let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
                            let _ = out.flush();
                            let _ = out.shutdown(std::net::Shutdown::Both);
                            let _ = closed_tx.send(());
                            return;
                        }
                        "/no-content" => out.write_all(b"HTTP/1.1 204 No Content\r\n\r\n"),
                        "/not-modified" => out.write_all(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n"),
                        _ if method == "HEAD" => out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
                        _ => out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"),
                    };
                    if ok.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, connections, closed)
}

/// The exchange relays every framing an origin uses and keeps the origin connection only when the
/// answer ended where its framing said.
#[test]
fn the_exchange_relays_every_framing_and_keeps_the_connection_only_when_it_can() {
    use std::sync::atomic::Ordering;
    let (port, connections, closed) = framing_origin();
    let verge = Verge::start(&format!(
        "server: {{ admin: {{ listen: 127.0.0.1:0, unauthenticated: true }} }}\norigins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {port}}}\ndefault_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled}}\n"
    ));
    let first = verge.get("/first");
    assert_eq!((first.status, first.text().as_str()), (200, "first"), "{}", verge.output());
    assert_eq!(pass_exchanges(&verge), 0, "the first request connects: pingora's");

    let chunked = verge.get("/chunked");
    assert_eq!((chunked.status, chunked.text().as_str()), (200, "hello world"), "{}", verge.output());
    assert_eq!(chunked.header("transfer-encoding"), Some("chunked"));
    let big = verge.get("/big");
    assert_eq!((big.status, big.body.len()), (200, 100 * 1024));
    assert!(big.body.iter().all(|b| *b == b'x'));
    let head = verge.request("HEAD", "/any", &[], b"");
    assert_eq!((head.status, head.header("content-length"), head.body.len()), (200, Some("5"), 0));
    let no_content = verge.get("/no-content");
    assert_eq!((no_content.status, no_content.body.len()), (204, 0));
    let not_modified = verge.get("/not-modified");
    assert_eq!((not_modified.status, not_modified.header("etag")), (304, Some("\"e\"")));
    assert_eq!(pass_exchanges(&verge), 5, "{}", verge.output());
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one origin connection for all of them");

    // No length: the body runs until the origin closes, so neither connection is kept.
    let until_close = verge.get("/until-close");
    assert_eq!((until_close.status, until_close.text().as_str()), (200, "until the origin closes"));
    assert_eq!(until_close.header("connection"), Some("close"));
    assert_eq!(pass_exchanges(&verge), 6);
    let again = verge.get("/first");
    assert_eq!((again.status, again.text().as_str()), (200, "first"));
    assert_eq!(connections.load(Ordering::SeqCst), 2, "the closed connection was not reused");
    assert_eq!(pass_exchanges(&verge), 6, "a new connection: pingora's again");

    // An origin that closes mid-body: the viewer's response ends short (its length says so) and the
    // connection is closed, as on pingora's path.
    let mut viewer = std::net::TcpStream::connect(verge.addr).unwrap();
    viewer.set_read_timeout(Some(TIMEOUT)).unwrap();
    viewer.write_all(b"GET /cut HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = viewer.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:.200}");
    let body_start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(raw.len() - body_start < 100 * 1024, "the short body ended the connection");
    assert_eq!(pass_exchanges(&verge), 7);
    assert!(verge.wait_for_output("uri=/cut"), "{}", verge.output());
    let after = verge.get("/first");
    assert_eq!((after.status, after.text().as_str()), (200, "first"), "{}", verge.output());

    // The origin closes a connection verge keeps: the next request is not failed by it (the pool's
    // reuse test finds it ended, or the exchange sees it end before any answer and pingora retries).
    let opened = connections.load(Ordering::SeqCst);
    let then_close = verge.get("/then-close");
    assert_eq!((then_close.status, then_close.text().as_str()), (200, "first"), "{}", verge.output());
    closed.recv_timeout(TIMEOUT).expect("the origin closed its connection");
    for _ in 0..3 {
        let next = verge.get("/first");
        assert_eq!((next.status, next.text().as_str()), (200, "first"), "{}", verge.output());
    }
    assert_eq!(connections.load(Ordering::SeqCst), opened + 1, "one new connection after the close");
}

/// An origin that stops answering on a kept-alive connection: the exchange gives up after the origin's
/// read timeout with CloudFront's 504, as pingora's proxy does.
#[test]
fn an_exchange_that_times_out_answers_504() {
    let origin = Origin::start(|req| {
        let delay = if req.path() == "/slow" { Duration::from_secs(600) } else { Duration::ZERO };
        OriginResponse::new(200, "ok").delay(delay)
    });
    let verge = Verge::start(&format!(
        "server: {{ admin: {{ listen: 127.0.0.1:0, unauthenticated: true }} }}\norigins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}, read_timeout: 1}}\ndefault_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled}}\n",
        origin.port()
    ));
    assert_eq!(verge.get("/fast").status, 200, "{}", verge.output());
    // The origin's waits run on the connection's own timer, set lazily (wait_timer.rs): left at an
    // earlier wait's deadline, it must still not end this one before its read timeout.
    let asked = std::time::Instant::now();
    let slow = verge.get("/slow");
    let waited = asked.elapsed();
    assert_eq!(slow.status, 504, "{}", verge.output());
    assert!(waited >= Duration::from_millis(990), "a 504 after {waited:?}, before the 1 s read timeout");
    assert_eq!(slow.x_cache(), "Error from verge");
    assert_eq!(pass_exchanges(&verge), 1);
    assert!(verge.wait_for_output("uri=/slow"), "{}", verge.output());
    let output = verge.output();
    let line = output.lines().find(|l| l.contains("uri=/slow")).unwrap();
    assert!(line.contains("status=504") && line.contains("OriginReadError"), "{line}");
}

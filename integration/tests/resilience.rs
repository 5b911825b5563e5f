//! The resilience suite: slowloris, unfinished and oversize heads, idle connections, reloads under load,
//! a soak with RSS samples and origin faults, against the real binary on loopback. Bounded for CI; the
//! long soak is `VERGE_SOAK_SECS=600 cargo test --test integration resilience::soak`. Each test prints
//! its figures (`--nocapture`) for the notes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;

fn distribution(origin_port: u16, server: &str, behavior: &str) -> String {
    format!(
        "server: {{{server}}}\norigins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {origin_port}, connection_attempts: 1, connection_timeout: 2, read_timeout: 2}}\n\
default_cache_behavior: {{target_origin_id: app{behavior}}}\n"
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// One request on a kept-alive connection: its status and body (`Content-Length` framed).
fn keepalive_get(stream: &mut BufReader<TcpStream>, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    stream.get_mut().write_all(format!("GET {path} HTTP/1.1\r\nHost: edge.test\r\n\r\n").as_bytes())?;
    let mut line = String::new();
    if stream.read_line(&mut line)? == 0 {
        return Err(std::io::Error::other("closed before the status line"));
    }
    let status = line.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(line.clone()))?;
    let mut length = 0;
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok((status, body))
}

/// Everything the server sends until it closes, and how long the close took (`None`: still open).
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, Some(started.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, Some(started.elapsed())),
            Err(_) => return (got, None),
        }
    }
}

#[test]
fn slowloris_viewers_get_408_at_the_header_deadline_while_others_are_served() {
    let app = Origin::fixed(200, "ok");
    let verge = Verge::start(&distribution(app.port(), "viewer_header_timeout: 2, viewer_idle_timeout: 5", ""));
    const VIEWERS: usize = 200;
    // Each viewer's cut-off is timed from its own first bytes (verge's deadline starts there): opening
    // 200 connections takes a while on a loaded machine, so one clock for all would read early.
    let mut drips: Vec<(TcpStream, Option<Duration>, Vec<u8>, Instant)> = (0..VIEWERS)
        .map(|_| {
            let mut s = connect(verge.addr);
            let first_bytes = Instant::now();
            s.write_all(b"GET /x HTTP/1.1\r\nHost: edge.test\r\n").unwrap();
            s.set_nonblocking(true).unwrap();
            (s, None, Vec::new(), first_bytes)
        })
        .collect();
    let started = Instant::now();
    // One header byte per viewer every 250 ms (well inside the 5 s per-read idle timeout), until each is
    // answered and closed or 30 s pass.
    let mut served_meanwhile = 0;
    while started.elapsed() < Duration::from_secs(30) && drips.iter().any(|d| d.1.is_none()) {
        for (stream, closed, got, first_bytes) in drips.iter_mut().filter(|d| d.1.is_none()) {
            let _ = stream.write(b"X");
            let mut buf = [0u8; 512];
            match stream.read(&mut buf) {
                Ok(0) => *closed = Some(first_bytes.elapsed()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *closed = Some(first_bytes.elapsed()),
            }
        }
        if verge.get("/x").status == 200 {
            served_meanwhile += 1;
        }
        std::thread::sleep(Duration::from_millis(250)); // the attacker's pace, not a synchronisation
    }
    let cutoffs: Vec<Duration> = drips.iter().filter_map(|d| d.1).collect();
    assert_eq!(cutoffs.len(), VIEWERS, "every dripping viewer is cut off");
    for (_, _, got, _) in &drips {
        let head = String::from_utf8_lossy(got);
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
        assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    }
    let (first, last) = (cutoffs.iter().min().unwrap(), cutoffs.iter().max().unwrap());
    eprintln!(
        "slowloris: {VIEWERS} dripping viewers cut off after {:.2}-{:.2} s (deadline 2 s); {served_meanwhile} requests served meanwhile",
        first.as_secs_f64(),
        last.as_secs_f64()
    );
    assert!(*first >= Duration::from_millis(1900), "not before the deadline: {first:?}");
    assert!(served_meanwhile > 0);
}

#[test]
fn unfinished_and_oversize_heads_are_bounded_in_memory() {
    let app = Origin::fixed(200, "ok");
    let verge = Verge::start(&distribution(
        app.port(),
        "viewer_header_timeout: 30, viewer_idle_timeout: 30",
        ", cache_policy: CachingDisabled",
    ));
    assert_eq!(verge.get("/x").status, 200);
    let before = verge.rss_kb();
    // Parked just under the bound: held until the deadline, each costing its buffer and no more.
    const PARKED: usize = 500;
    let mut filler = String::from("GET /x HTTP/1.1\r\nHost: edge.test\r\nX-Filler: ");
    filler.push_str(&"x".repeat(19 * 1024));
    let parked: Vec<TcpStream> = (0..PARKED)
        .map(|_| {
            let mut s = connect(verge.addr);
            s.write_all(filler.as_bytes()).unwrap();
            s
        })
        .collect();
    // Proof that verge has read them all: a request behind them is served (accepts are in order, and
    // each worker reads what is there), then RSS settles.
    assert_eq!(verge.get("/x").status, 200);
    let held = verge.rss_kb().saturating_sub(before);
    let per_connection = held / PARKED as u64;
    eprintln!("unfinished heads: {PARKED} viewers parked on 19 KiB heads hold {held} KB, {per_connection} KB each");
    assert!(per_connection <= 96, "{per_connection} KB per parked head");
    drop(parked);
    // Past the bound: 431 and a close at once, whatever else the viewer would have sent.
    let mut over = connect(verge.addr);
    over.write_all(filler.as_bytes()).unwrap();
    over.write_all("y".repeat(8 * 1024).as_bytes()).unwrap();
    let (got, closed) = read_until_closed(&mut over, TIMEOUT);
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    assert!(closed.is_some(), "closed after the 431");
    assert_eq!(app.count(), 2, "no unfinished head reached the origin");
}

/// The admin listener, for the parked-connection gauge.
const ADMIN: &str = "admin: {listen: '127.0.0.1:0', unauthenticated: true}";

/// `verge_viewer_connections_parked`: idle connections waiting in a lot (server/parking.rs).
fn parked(verge: &Verge) -> i64 {
    let metrics = http_request(verge.admin.unwrap(), "GET", "/metrics", &[], b"").text();
    metrics
        .lines()
        .find(|line| line.starts_with("verge_viewer_connections_parked"))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no parked-connection gauge in:\n{metrics}"))
}

/// Waits (generously: a loaded 2-core machine) until the lots hold `count` connections.
fn wait_until_parked(verge: &Verge, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = parked(verge);
    while seen != count {
        assert!(Instant::now() < deadline, "{seen} connections parked, waiting for {count}");
        std::thread::sleep(Duration::from_millis(100));
        seen = parked(verge);
    }
}

/// A distribution whose `server` has `settings` and the admin listener.
fn with_admin(origin_port: u16, settings: &str) -> String {
    format!(
        "server: {{{settings}, {ADMIN}}}\norigins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {origin_port}}}\n\
default_cache_behavior: {{target_origin_id: app}}\n"
    )
}

#[test]
fn idle_keepalive_connections_cost_little() {
    let app = Origin::fixed(200, "ok");
    // An idle timeout the test never reaches, however loaded the machine (opening 1,000 connections can
    // take seconds then).
    let verge = Verge::start(&with_admin(app.port(), "viewer_idle_timeout: 600"));
    let mut warm = BufReader::new(connect(verge.addr));
    assert_eq!(keepalive_get(&mut warm, "/x").unwrap().0, 200);
    drop(warm);
    wait_until_parked(&verge, 0);
    let before = verge.rss_kb();
    const IDLE: usize = 1_000;
    let idle: Vec<BufReader<TcpStream>> = (0..IDLE)
        .map(|_| {
            let mut s = BufReader::new(connect(verge.addr));
            assert_eq!(keepalive_get(&mut s, "/x").unwrap().0, 200, "served before going idle");
            s
        })
        .collect();
    // Quiet for 100 ms, each waits in its listener's lot instead of its own task.
    wait_until_parked(&verge, IDLE as i64);
    let held = verge.rss_kb().saturating_sub(before);
    eprintln!("idle connections: {IDLE} parked kept-alive viewers hold {held} KB, {} KB each", held / IDLE as u64);
    // More here than in benches/connection-memory.sh, whose 10,000 connections amortise the allocator's
    // pages; 23 KB and more before idle connections waited outside the request.
    assert!(held / IDLE as u64 <= 8, "{} KB per idle connection", held / IDLE as u64);
    drop(idle);
    wait_until_parked(&verge, 0);
}

/// Parked or not, an idle connection is closed at the idle timeout, not before.
#[test]
fn idle_keepalive_connections_are_closed_at_the_idle_timeout() {
    let app = Origin::fixed(200, "ok");
    let verge = Verge::start(&with_admin(app.port(), "viewer_idle_timeout: 5"));
    const IDLE: usize = 50;
    let mut idle: Vec<(Instant, BufReader<TcpStream>)> = (0..IDLE)
        .map(|_| {
            let mut s = BufReader::new(connect(verge.addr));
            assert_eq!(keepalive_get(&mut s, "/x").unwrap().0, 200, "served before going idle");
            (Instant::now(), s)
        })
        .collect();
    let mut latest = Duration::ZERO;
    for (served, s) in idle.iter_mut() {
        let (_, closed) = read_until_closed(s.get_mut(), Duration::from_secs(60));
        assert!(closed.is_some(), "an idle connection is closed");
        let after = served.elapsed();
        assert!(after >= Duration::from_millis(4_900), "closed {after:?} after its response (timeout 5 s)");
        latest = latest.max(after);
    }
    eprintln!(
        "idle connections: {IDLE} closed at most {:.1} s after their response (timeout 5 s)",
        latest.as_secs_f64()
    );
    wait_until_parked(&verge, 0);
}

/// A parked connection (server/parking.rs) is the same connection to its viewer: its next requests,
/// pipelined ones included, are answered on it, with keep-alive, and it can park again.
#[test]
fn parked_connections_answer_their_next_requests() {
    let app = Origin::fixed(200, "ok");
    let verge = Verge::start(&with_admin(app.port(), "viewer_idle_timeout: 60"));
    let mut conns: Vec<BufReader<TcpStream>> = (0..3).map(|_| BufReader::new(connect(verge.addr))).collect();
    for conn in conns.iter_mut() {
        assert_eq!(keepalive_get(conn, "/x").unwrap(), (200, b"ok".to_vec()));
    }
    wait_until_parked(&verge, 3);
    for round in 0..2 {
        // The first connection sends two pipelined requests at once; the others one each.
        let pipelined = b"GET /x HTTP/1.1\r\nHost: edge.test\r\n\r\nGET /y HTTP/1.1\r\nHost: edge.test\r\n\r\n";
        conns[0].get_mut().write_all(pipelined).unwrap();
        for _ in 0..2 {
            assert_eq!(read_response(&mut conns[0]), (200, b"ok".to_vec()), "round {round}: pipelined after parking");
        }
        for conn in conns.iter_mut().skip(1) {
            assert_eq!(keepalive_get(conn, "/x").unwrap(), (200, b"ok".to_vec()), "round {round}: after parking");
        }
        // Quiet again: parked again.
        wait_until_parked(&verge, 3);
    }
}

/// A response's status and `Content-Length` body, read from a kept-alive connection.
fn read_response(stream: &mut BufReader<TcpStream>) -> (u16, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(stream.read_line(&mut line).unwrap() > 0, "closed mid-response: {head}");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let status = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
        .map_or(0, |(_, v)| v.trim().parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    (status, body)
}

/// An idle kept-alive connection waits outside any request (docs/performance.md, "Idle connections"):
/// a shutdown still ends it at once, in its task or parked, so it does not hold the shutdown for the
/// grace period.
#[test]
fn idle_keepalive_connections_are_closed_when_verge_shuts_down() {
    let app = Origin::fixed(200, "ok");
    let verge = Verge::start(&with_admin(app.port(), "viewer_idle_timeout: 60"));
    let mut parked_conn = BufReader::new(connect(verge.addr));
    assert_eq!(keepalive_get(&mut parked_conn, "/x").unwrap().0, 200);
    wait_until_parked(&verge, 1);
    let mut idle = BufReader::new(connect(verge.addr));
    assert_eq!(keepalive_get(&mut idle, "/x").unwrap().0, 200);
    let status = std::process::Command::new("kill").args(["-TERM", &verge.pid().to_string()]).status().unwrap();
    assert!(status.success());
    for (which, conn) in [("in its task", &mut idle), ("parked", &mut parked_conn)] {
        let (_, closed) = read_until_closed(conn.get_mut(), Duration::from_secs(30));
        // Not at the idle timeout (60 s) nor when the grace period (10 s) ran out.
        assert!(closed.is_some_and(|after| after < Duration::from_secs(8)), "{which}: closed after {closed:?}");
    }
    assert!(verge.wait_for_output("stopped in_flight=0"), "{}", verge.output());
}

#[test]
fn reloads_under_load_fail_no_request() {
    let first = Origin::fixed(200, "first");
    let second = Origin::fixed(200, "second");
    let admin = ADMIN;
    let verge = Verge::start(&distribution(first.port(), admin, ", cache_policy: CachingDisabled"));
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served, failed, addr) = (stop.clone(), served.clone(), failed.clone(), verge.addr);
            std::thread::spawn(move || {
                let mut conn = BufReader::new(connect(addr));
                while !stop.load(Ordering::Relaxed) {
                    match keepalive_get(&mut conn, "/x") {
                        Ok((200, body)) if body == b"first" || body == b"second" => {
                            served.fetch_add(1, Ordering::Relaxed)
                        }
                        other => {
                            eprintln!("failed: {other:?}");
                            conn = BufReader::new(connect(addr));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    const RELOADS: usize = 50;
    let admin_addr = verge.admin.unwrap();
    for i in 0..RELOADS {
        let port = if i % 2 == 0 { second.port() } else { first.port() };
        std::fs::write(verge.config_path(), distribution(port, admin, ", cache_policy: CachingDisabled")).unwrap();
        let reloaded = http_request(admin_addr, "POST", "/reload", &[], b"");
        assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (served, failed) = (served.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("reloads under load: {RELOADS} reloads, {served} requests served, {failed} failed");
    assert!(served > RELOADS, "the load ran through the reloads");
    assert_eq!(failed, 0);
    assert!(first.count() > 0 && second.count() > 0, "both distributions served");
}

#[test]
fn soak_keeps_memory_flat() {
    let seconds: u64 = std::env::var("VERGE_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let app = Origin::start(|req| {
        OriginResponse::new(200, format!("object {}", req.target)).header("Cache-Control", "max-age=600")
    });
    // A small cache that fills early, so the soak exercises eviction as well as hits and misses.
    let verge = Verge::start(&distribution(app.port(), "cache: {memory_mb: 4, max_object_mb: 1}", ""));
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4u64)
        .map(|client| {
            let (stop, requests, addr) = (stop.clone(), requests.clone(), verge.addr);
            std::thread::spawn(move || {
                let mut conn = BufReader::new(connect(addr));
                let mut n: u64 = client;
                while !stop.load(Ordering::Relaxed) {
                    // Nine in ten requests for a hot set, the rest spread wide (misses and evictions).
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let key = if n.is_multiple_of(10) { n >> 33 } else { (n >> 33) % 200 };
                    let (status, _) = keepalive_get(&mut conn, &format!("/soak/{key}")).expect("soak request");
                    assert_eq!(status, 200);
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1)); // the sampling period
        samples.push(verge.rss_kb());
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    // Growth after the warm-up third (the cache filling, allocator pools reaching their size).
    let warm = samples[samples.len() / 3];
    let last = *samples.last().unwrap();
    let growth = (last as f64 - warm as f64) / warm as f64 * 100.0;
    eprintln!(
        "soak: {} s, {} requests, RSS samples (KB) {samples:?}, growth after warm-up {growth:.1}%",
        seconds,
        requests.load(Ordering::Relaxed)
    );
    assert!(growth < 10.0, "RSS grew {growth:.1}% after warm-up: {samples:?}");
}

/// An origin on loopback that answers every connection with `answer` (raw bytes), then closes.
fn raw_origin(answer: &'static [u8]) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            seen.fetch_add(1, Ordering::Relaxed);
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(answer);
        }
    });
    (port, count)
}

#[test]
fn origin_faults_give_errors_and_never_leave_a_partial_object() {
    // Cut mid-body: the viewer's response is cut short too, and nothing is stored.
    let (port, fetches) =
        raw_origin(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nCache-Control: max-age=600\r\n\r\npartial");
    let verge = Verge::start(&distribution(port, "", ""));
    for round in 1..=2 {
        let mut conn = connect(verge.addr);
        conn.write_all(b"GET /cut HTTP/1.1\r\nHost: edge.test\r\n\r\n").unwrap();
        let (got, closed) = read_until_closed(&mut conn, TIMEOUT);
        let got = String::from_utf8_lossy(&got);
        assert!(closed.is_some(), "closed, not left hanging");
        assert!(got.len() < 100_000, "never a full-length body from a cut origin");
        assert_eq!(fetches.load(Ordering::Relaxed), round, "nothing was stored: each request goes to the origin");
    }
    // Closed without an answer, and garbage instead of HTTP: 502 from verge, nothing stored.
    for (answer, what) in [(&b""[..], "no answer"), (&b"SSH-2.0-OpenSSH\r\n\r\n"[..], "not HTTP")] {
        let (port, fetches) = raw_origin(answer);
        let verge = Verge::start(&distribution(port, "", ""));
        for _ in 0..2 {
            let r = verge.get("/fault");
            assert_eq!(r.status, 502, "{what}: {}", r.text());
            assert_eq!(r.x_cache(), "Error from verge", "{what}");
        }
        assert_eq!(fetches.load(Ordering::Relaxed), 2, "{what}: not cached");
    }
    // An origin that accepts and never answers: 504 within its read timeout (2 s), verge unaffected.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let verge = Verge::start(&distribution(silent.local_addr().unwrap().port(), "", ""));
    let started = Instant::now();
    assert_eq!(verge.get("/silent").status, 504);
    eprintln!("origin faults: a silent origin answered 504 after {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_response_without_framing_is_never_advertised_as_kept_alive() {
    // An origin that ends its body by closing (no Content-Length, no chunking).
    let (port, _) =
        raw_origin(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nConnection: close\r\n\r\nuntil the close");
    let verge = Verge::start(&distribution(port, "viewer_idle_timeout: 1", ""));
    for (request, what) in [
        ("GET /unframed HTTP/1.1\r\nHost: edge.test\r\n\r\n", "miss, HTTP/1.1"),
        ("GET /unframed HTTP/1.1\r\nHost: edge.test\r\n\r\n", "hit, HTTP/1.1"),
        ("GET /unframed HTTP/1.0\r\nHost: edge.test\r\n\r\n", "hit, HTTP/1.0"),
    ] {
        let mut conn = connect(verge.addr);
        conn.write_all(request.as_bytes()).unwrap();
        let (got, _) = read_until_closed(&mut conn, TIMEOUT);
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let framed = head.contains("content-length:") || head.contains("transfer-encoding: chunked");
        assert!(framed || head.contains("connection: close"), "{what}: an unframed body said keep-alive:\n{head}");
        assert!(body.contains("until the close"), "{what}: {text}");
    }
}

/// An origin written out for the upstream-pool tests: HTTP/1.1 keep-alive answers of `ok` to each
/// request head, counting connections; each connection's end (verge closed it: EOF) is sent on the
/// channel, and with `close_after_each` the origin closes a connection itself after each answer
/// (without saying `Connection: close`, as a server whose keep-alive timer fired would), sending the
/// closed connection's number once it has.
fn pool_origin(close_after_each: bool) -> (u16, Arc<AtomicUsize>, std::sync::mpsc::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let (ended, ends) = std::sync::mpsc::channel();
    let counted = connections.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let ended = ended.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    let mut head_lines = 0;
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => {
                                let _ = ended.send(n);
                                return;
                            }
                            Ok(_) if line == "\r\n" && head_lines > 0 => break,
                            Ok(_) => head_lines += 1,
                        }
                    }
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok";
                    if reader.get_mut().write_all(answer).is_err() {
                        return;
                    }
                    if close_after_each {
                        let _ = reader.get_mut().shutdown(std::net::Shutdown::Both);
                        let _ = ended.send(n);
                        return;
                    }
                }
            });
        }
    });
    (port, connections, ends)
}

/// verge keeps an origin connection for the next request, and closes it once it has idled past the
/// origin's `keepalive_timeout` even when no request comes to reuse it (the idle pool's sweeper; a
/// connection left open would hold a file descriptor, and the origin's slot, indefinitely).
#[test]
fn origin_connections_are_reused_and_closed_after_their_idle_timeout() {
    let (port, connections, ends) = pool_origin(false);
    let verge = Verge::start(&format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {port}, keepalive_timeout: 1}}\ndefault_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled}}\n"
    ));
    for i in 0..5 {
        let resp = verge.get(&format!("/r{i}"));
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "{}", verge.output());
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one origin connection serves requests in turn");
    let idle_since = Instant::now();
    let closed = ends.recv_timeout(TIMEOUT).expect("verge never closed its idle origin connection");
    println!("the idle origin connection was closed after {:?} (keepalive_timeout 1 s)", idle_since.elapsed());
    assert_eq!(closed, 1);
    let resp = verge.get("/after");
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert_eq!(connections.load(Ordering::SeqCst), 2, "a new connection after the idle one was closed");
}

/// An origin that closes a kept-alive connection between requests: verge does not send the next
/// request on it (it would fail, or be retried), it opens a new one.
#[test]
fn an_origin_connection_closed_while_idle_is_not_reused() {
    let (port, connections, ends) = pool_origin(true);
    let verge = Verge::start(&format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {port}, connection_attempts: 1, keepalive_timeout: 60}}\ndefault_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled}}\n"
    ));
    for i in 1..=4 {
        let resp = verge.get(&format!("/r{i}"));
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "request {i}: {}", verge.output());
        assert_eq!(ends.recv_timeout(TIMEOUT), Ok(i), "the origin closed connection {i}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 4);
    assert!(!verge.output().contains("status=502"), "{}", verge.output());
}

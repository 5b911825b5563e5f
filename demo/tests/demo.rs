//! The demo end to end: the real `verge-demo` runs the real `verge` (built beside it by the workspace's
//! tests) with the example hooks, in front of its origin.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use verge_testkit::client::http_request;

/// Stops the demo when the test ends, pass or fail: SIGTERM, which the demo passes on to verge, and
/// SIGKILL only if it has not exited in time.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_serves_the_three_example_hooks() {
    let modules = verge_testkit::guests::guest_dir();
    let demo = env!("CARGO_BIN_EXE_verge-demo");
    assert!(
        std::path::Path::new(demo).with_file_name("verge").exists(),
        "the verge binary is built beside verge-demo by `cargo test --workspace` (or `cargo build -p verge`)"
    );
    let mut child = Command::new(demo)
        .arg("--functions")
        .arg(modules)
        .args(["--listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0"])
        .env("VERGE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run verge-demo");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("verge: listening on https://") {
                let _ = tx.send(Ok((true, addr.parse::<SocketAddr>().unwrap())));
            }
            if let Some(addr) = line.strip_prefix("verge: listening on http://") {
                let _ = tx.send(Ok((false, addr.parse::<SocketAddr>().unwrap())));
            }
            lines.push(line);
        }
        let _ = tx.send(Err(lines.join("\n")));
    });
    let (https, addr) = match (rx.recv_timeout(Duration::from_secs(60)), rx.recv_timeout(Duration::from_secs(60))) {
        (Ok(Ok((true, https))), Ok(Ok((false, addr)))) => (https, addr),
        other => panic!("the demo did not start: {other:?}"),
    };
    let get = |path: &str, headers: &[(&str, &str)]| http_request(addr, "GET", path, headers, b"");
    let root = get("/", &[]);
    assert!(root.text().contains("Hello from the verge demo origin"), "{}", root.text());
    assert_eq!(root.header("x-frame-options"), Some("DENY"), "security-headers");
    let compressed = get("/", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(compressed.header("content-encoding"), Some("br"), "compressed at the edge");
    let ab = get("/ab/page", &[("Cookie", "ab_test=A")]);
    assert_eq!(ab.text(), "You are in group A (/version-A/ab/page)\n");
    assert!(ab.header("set-cookie").is_some_and(|c| c.starts_with("ab_test=A;")));
    let webp = get("/images/cat.jpg", &[("Accept", "image/webp,*/*")]);
    assert!(webp.text().starts_with("WEBP bytes of /images/cat.webp"), "{}", webp.text());
    assert!(get("/images/cat.jpg", &[]).text().starts_with("JPEG bytes"));
    let api = get("/api/time", &[("Origin", "https://app.example.com"), ("Pragma", "server-timing")]);
    assert_eq!(api.header("access-control-allow-origin"), Some("https://app.example.com"), "the demo's CORS policy");
    assert!(api.header("server-timing").is_some_and(|t| t.contains("cdn-cache-miss")));
    // The tour's HTTPS + HTTP/2 line, with the certificate the demo made.
    let out = Command::new("curl")
        .args(["-sk", "--http2", "--max-time", "30", "-w", " %{http_version}", &format!("https://{https}/")])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Hello from the verge demo origin") && text.ends_with(" 2"), "{text}");
    drop(running);
    // verge went with the demo: its listener is closed.
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(), "verge outlived the demo");
}

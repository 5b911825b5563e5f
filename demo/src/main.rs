//! `verge-demo`: the newcomer's demo, kept out of the product. It starts a small demo origin on a free
//! loopback port, writes the embedded demo distribution (`examples/demo.yaml`) into a temporary
//! directory pointed at that origin, publishes the three example hooks there with the real
//! `verge functions publish`, makes a certificate for `localhost` / `127.0.0.1` (a throwaway CA of its
//! own, so `curl -k`), and runs the real `verge serve` on it (the `verge` binary beside this one). Extra
//! arguments go to `verge serve` (e.g. `--listen 127.0.0.1:0`).
//!
//! Usage: `verge-demo --functions DIR [--https-listen ADDR] [verge serve arguments...]`, DIR holding the
//! built example modules (scripts/demo builds them); ADDR replaces the HTTPS listener's 127.0.0.1:8443.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use verge_testkit::origin::{OriginRequest, OriginResponse};

/// The demo distribution (the same file as `examples/demo.yaml`).
const DEMO_YAML: &str = include_str!("../../examples/demo.yaml");
/// The placeholder port of the `demo` origin in `DEMO_YAML`, replaced by the built-in origin's.
const PLACEHOLDER_PORT: &str = "http_port: 8081";
/// The HTTPS listener in `DEMO_YAML`, replaced by `--https-listen`.
const HTTPS_LISTEN: &str = "127.0.0.1:8443";
/// The example hooks the demo associates: (function name, module file stem).
const FUNCTIONS: [(&str, &str); 3] =
    [("security-headers", "security_headers"), ("ab-test", "ab_test"), ("webp", "webp")];

fn demo_origin(req: &OriginRequest) -> OriginResponse {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match req.path() {
        "/index.html" => OriginResponse::new(
            200,
            format!(
                "<!doctype html><title>verge demo</title><h1>Hello from the verge demo origin</h1>\n{}",
                "<p>This page is long enough (over 1,000 bytes) for verge to compress it at the edge, once, \
and to serve the compressed copy from its cache to every viewer that accepts it.</p>\n"
                    .repeat(12)
            ),
        )
        .header("content-type", "text/html")
        .header("cache-control", "max-age=60"),
        "/api/time" => OriginResponse::new(200, format!("{{\"now\":{now}}}\n"))
            .header("content-type", "application/json")
            .header("cache-control", "no-store"),
        p if p.starts_with("/images/") && p.ends_with(".webp") => {
            OriginResponse::new(200, format!("WEBP bytes of {p} (was {:?})\n", req.header("x-original-format")))
                .header("content-type", "image/webp")
                .header("cache-control", "max-age=3600")
        }
        p if p.starts_with("/images/") => OriginResponse::new(200, format!("JPEG bytes of {p}\n"))
            .header("content-type", "image/jpeg")
            .header("cache-control", "max-age=3600"),
        p if p.starts_with("/version-A/") || p.starts_with("/version-B/") => {
            OriginResponse::new(200, format!("You are in group {} ({p})\n", &p[9..10]))
                .header("content-type", "text/plain")
                .header("cache-control", "max-age=60")
        }
        p if p.starts_with("/error/") => {
            let code = p.trim_start_matches("/error/").parse().unwrap_or(500);
            OriginResponse::new(code, format!("origin error {code}\n")).header("content-type", "text/plain")
        }
        _ => OriginResponse::new(404, "not found\n").header("content-type", "text/plain"),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("verge-demo: {message}");
    ExitCode::FAILURE
}

/// Publishes each example module with `verge functions publish` into `dir/functions`.
fn publish(verge: &Path, modules: &Path, dir: &Path) -> Result<(), String> {
    for (name, stem) in FUNCTIONS {
        let module = modules.join(format!("{stem}.wasm"));
        let out = Command::new(verge)
            .args(["functions", "publish", name])
            .arg(&module)
            .arg("--store")
            .arg(dir.join("functions"))
            .output()
            .map_err(|e| format!("cannot run {}: {e}", verge.display()))?;
        if !out.status.success() {
            return Err(format!("publishing {}: {}", module.display(), String::from_utf8_lossy(&out.stderr).trim()));
        }
    }
    Ok(())
}

fn hints(addr: &str, https: &str) {
    println!(
        "try:\n  curl -i http://{addr}/                 default root object, security headers; run it twice for a Hit\n  \
curl -ik --http2 https://{https}/       the same over HTTPS and HTTP/2 (a self-signed certificate: -k)\n  \
curl -i --http2-prior-knowledge http://{addr}/   HTTP/2 without TLS (h2c)\n  \
curl -i http://{addr}/ab/page          A/B test: a group, a rewritten uri and a Set-Cookie\n  \
curl -i -H 'Accept: image/webp' http://{addr}/images/cat.jpg   webp for viewers that accept it\n  \
curl -i http://{addr}/images/cat.jpg   the jpeg for the others (Accept is in the cache key)\n  \
curl -i http://{addr}/api/time         CachingDisabled behavior\n  \
curl -i -X POST http://{addr}/         403: method not allowed"
    );
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let Some(at) = args.iter().position(|a| a == "--functions") else {
        return fail("usage: verge-demo --functions DIR [verge serve arguments...] (scripts/demo builds the hooks)");
    };
    if at + 1 >= args.len() {
        return fail("--functions needs the directory of the built example modules");
    }
    let modules = PathBuf::from(args.remove(at + 1));
    args.remove(at);
    let https_listen = match args.iter().position(|a| a == "--https-listen") {
        Some(at) if at + 1 < args.len() => {
            let addr = args.remove(at + 1);
            args.remove(at);
            addr
        }
        Some(_) => return fail("--https-listen needs an IP:port"),
        None => HTTPS_LISTEN.to_string(),
    };
    let verge = match std::env::current_exe() {
        Ok(me) => me.with_file_name("verge"),
        Err(e) => return fail(e),
    };
    if !verge.exists() {
        return fail(format!("{} not found: build it first (cargo build -p verge)", verge.display()));
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let listener = match runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")) {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot start the demo origin: {e}")),
    };
    let origin = listener.local_addr().expect("bound");
    runtime.spawn(verge_testkit::origin::serve(listener, Arc::new(demo_origin)));
    println!("verge-demo: demo origin on http://{origin}");

    let dir = std::env::temp_dir().join(format!("verge-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return fail(format!("{}: {e}", dir.display()));
    }
    let yaml = DEMO_YAML.replacen(PLACEHOLDER_PORT, &format!("http_port: {}", origin.port()), 1).replacen(
        HTTPS_LISTEN,
        &https_listen,
        1,
    );
    // A certificate for the HTTPS listener, from a CA made for this run only.
    let certificate = verge_testkit::tls::TestCa::new("verge demo CA").issue(&["localhost", "127.0.0.1"]);
    for (file, pem) in [("demo-cert.pem", &certificate.cert_pem), ("demo-key.pem", &certificate.key_pem)] {
        if let Err(e) = std::fs::write(dir.join(file), pem) {
            return fail(format!("{file}: {e}"));
        }
    }
    let config = dir.join("distribution.yaml");
    if let Err(e) = std::fs::write(&config, yaml) {
        return fail(format!("{}: {e}", config.display()));
    }
    if let Err(e) = publish(&verge, &modules, &dir) {
        return fail(e);
    }
    println!("verge-demo: example hooks published: security-headers, ab-test, webp");

    let child =
        Command::new(&verge).arg("serve").arg("--config").arg(&config).args(&args).stdout(Stdio::piped()).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {}: {e}", verge.display())),
    };
    // SIGTERM or SIGINT to the demo stops verge too (it drains and exits; then so does the demo).
    let verge_pid = child.id().to_string();
    runtime.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else { return };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = Command::new("kill").args(["-TERM", &verge_pid]).status();
    });
    // verge's own lines pass through; the hints follow its first plain listening address (the HTTPS
    // one is printed before it).
    if let Some(stdout) = child.stdout.take() {
        let mut hinted = false;
        let mut https = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(addr) = line.strip_prefix("verge: listening on https://") {
                https = addr.to_string();
            }
            if let Some(addr) = line.strip_prefix("verge: listening on http://").filter(|_| !hinted) {
                hints(addr, &https);
                hinted = true;
            }
        }
    }
    let status = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => fail(format!("verge exited with {s}")),
        Err(e) => fail(e),
    }
}

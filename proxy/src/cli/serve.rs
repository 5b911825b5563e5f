//! `verge serve --config FILE`: reads the file, starts the hook engine if functions are associated,
//! builds the first snapshot, binds the listeners and serves until SIGTERM/SIGINT (SIGHUP reloads). With
//! `--nats`, a fleet node: its file gives its `server` settings, deployments its distribution (`fleet/`).

use std::path::PathBuf;
use std::process::ExitCode;

use super::EXIT_CONFIG;
use crate::server::{self, reload};
use crate::snapshot::Snapshot;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VERGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(crate::observe::log_writer::LogWriter::global())
        .try_init();
}

/// The admin API's bearer token, read from `server.admin.token_file` (relative to the distribution file).
fn admin_token(settings: &verge_config::ServerSettings, base_dir: &std::path::Path) -> Result<Option<String>, String> {
    use verge_config::model::AdminAuth;
    let Some(AdminAuth::TokenFile(file)) = settings.admin.as_ref().map(|a| &a.auth) else { return Ok(None) };
    let path = base_dir.join(file);
    let token =
        std::fs::read_to_string(&path).map_err(|e| format!("server.admin.token_file {}: {e}", path.display()))?;
    let token = token.trim();
    if token.len() < 16 {
        return Err(format!("server.admin.token_file {}: the token needs at least 16 characters", path.display()));
    }
    Ok(Some(token.to_string()))
}

/// A fleet node's options (`verge serve --nats`).
pub struct Node {
    pub url: String,
    pub node: String,
    pub role: String,
    pub advertise: Option<std::net::SocketAddr>,
    pub distribution: String,
    pub state_dir: PathBuf,
}

/// The distribution a process starts on: the file, its deployment revision (0: not a deployment), the
/// snapshot built from it and the hook engine it needed.
struct FirstLoad {
    path: PathBuf,
    revision: u64,
    snapshot: Snapshot,
    engine: Option<verge_hooks::HookEngine>,
}

/// Builds the first snapshot from the first of `candidates` (file, revision) that loads.
fn first_load(candidates: &[(PathBuf, u64)], settings: &verge_config::ServerSettings) -> Result<FirstLoad, String> {
    let mut reasons = Vec::new();
    for (path, revision) in candidates {
        let built = verge_config::from_file(path).map_err(|e| e.to_string()).and_then(|config| {
            let base_dir = reload::base_dir(Some(path));
            let engine = reload::hook_engine(&config.distribution, &base_dir)?;
            let snapshot = Snapshot::build(config.distribution, &base_dir, engine.as_ref(), settings)?;
            Ok(FirstLoad { path: path.clone(), revision: *revision, snapshot, engine })
        });
        match built {
            Ok(load) => return Ok(load),
            Err(e) => reasons.push(format!("{}: {e}", path.display())),
        }
    }
    Err(reasons.join("\n"))
}

pub fn serve(config: PathBuf, listen: Vec<std::net::SocketAddr>, node: Option<Node>) -> ExitCode {
    init_logging();
    // A fleet node takes its `server` section from its file and its distribution from deployments.
    let file_settings = match &node {
        None => verge_config::from_file(&config).map(|c| c.server).map_err(|e| e.to_string()),
        Some(_) => reload::node_settings(&config),
    };
    let file_settings = match file_settings {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // `--listen` replaces the file's plain listeners; its TLS and PROXY protocol listeners stay.
    let mut settings = file_settings.clone();
    if !listen.is_empty() {
        settings.listen.retain(|l| l.tls || l.proxy_protocol);
        let plain = listen.into_iter().map(verge_config::model::Listener::plain);
        settings.listen.splice(0..0, plain);
    }
    let threads = settings.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("verge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut candidates = Vec::new();
        let mut fleet = None;
        let advertise = node.as_ref().and_then(|n| n.advertise);
        if let Some(node) = node {
            let state = match crate::fleet::state::State::open(&node.state_dir) {
                Ok(state) => std::sync::Arc::new(state),
                Err(e) => {
                    eprintln!("verge: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = crate::fleet::agent::NodeOptions {
                url: node.url,
                node: node.node,
                role: node.role,
                distribution: node.distribution,
                state: state.clone(),
            };
            // The newest deployment first, then the last one served here, then the node's own file.
            match crate::fleet::agent::bootstrap(&options, std::time::Duration::from_secs(3)).await {
                Ok(Some(revision)) => candidates.push((state.incoming(), revision)),
                Ok(None) => {}
                Err(e) => tracing::warn!(target: "verge::fleet", "starting without NATS: {e}"),
            }
            if state.current().exists() {
                candidates.push((state.current(), state.revision()));
            }
            crate::fleet::set_link(crate::fleet::Link {
                url: options.url.clone(),
                distribution: options.distribution.clone(),
            });
            fleet = Some((options, state));
        }
        candidates.push((config.clone(), 0));
        // An origin that does not resolve or a function that cannot be loaded is a distribution error.
        let first = match first_load(&candidates, &settings) {
            Ok(first) => first,
            Err(e) => {
                eprintln!("verge: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let mut path = first.path.clone();
        if let Some((_, state)) = &fleet {
            if path == state.incoming() {
                if let Err(e) = state.promote(first.revision) {
                    eprintln!("verge: {e}");
                    return ExitCode::FAILURE;
                }
                path = state.current();
            }
        }
        let admin_token = match admin_token(&settings, &reload::base_dir(Some(&config))) {
            Ok(token) => token,
            Err(e) => {
                eprintln!("verge: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let settings_file = fleet.as_ref().map(|_| config.clone());
        let source = reload::Source { path, server: file_settings, settings_file };
        let started = match server::start(&settings, first.snapshot, source, first.engine, admin_token).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("verge: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some((options, _)) = fleet {
            let listen = match advertise {
                Some(addr) => vec![format!("http://{addr}")],
                None => started
                    .listeners
                    .iter()
                    .map(|l| format!("{}://{}", if l.tls { "https" } else { "http" }, l.addr))
                    .collect(),
            };
            let agent = crate::fleet::agent::Agent::new(
                options,
                started.reloader.clone(),
                started.store,
                first.revision,
                listen,
            );
            tokio::spawn(agent.run());
        }
        // The admin line comes first: a reader that saw `listening on` has seen everything.
        if let Some(addr) = started.admin_addr {
            println!("verge: admin API on http://{addr}");
        }
        // TLS and PROXY protocol listeners before the plain ones: a reader that stops at the first
        // `http://` line has seen them all.
        let mut listeners = started.listeners.clone();
        listeners.sort_by_key(|l| !(l.tls || l.proxy_protocol));
        for l in &listeners {
            let scheme = match (l.proxy_protocol, l.tls) {
                (false, false) => "http",
                (false, true) => "https",
                (true, false) => "proxy+http",
                (true, true) => "proxy+https",
            };
            println!("verge: listening on {scheme}://{}", l.addr);
        }
        server::run_until_signal(started).await;
        ExitCode::SUCCESS
    })
}

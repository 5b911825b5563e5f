//! `verge serve --config FILE`: reads the file, starts the hook engine if functions are associated,
//! builds the first snapshot, binds the listeners and serves until SIGTERM/SIGINT (SIGHUP reloads).

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

pub fn serve(config: PathBuf, listen: Vec<std::net::SocketAddr>) -> ExitCode {
    init_logging();
    let (file_settings, dist) = match verge_config::from_file(&config) {
        Ok(config) => (config.server, config.distribution),
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
        let base_dir = reload::base_dir(Some(&config));
        let engine = match reload::hook_engine(&dist, &base_dir) {
            Ok(engine) => engine,
            Err(e) => {
                eprintln!("verge: {e}");
                return ExitCode::FAILURE;
            }
        };
        // An origin that does not resolve or a function that cannot be loaded is a distribution error.
        let snapshot = match Snapshot::build(dist, &base_dir, engine.as_ref(), &settings) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("verge: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let admin_token = match admin_token(&settings, &base_dir) {
            Ok(token) => token,
            Err(e) => {
                eprintln!("verge: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let source = reload::Source { path: config, server: file_settings };
        let started = match server::start(&settings, snapshot, source, engine, admin_token).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("verge: {e}");
                return ExitCode::FAILURE;
            }
        };
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

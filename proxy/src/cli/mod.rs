//! The `verge` command line: `serve` and `validate`. Bad configuration exits 64 (EX_USAGE),
//! a start-up failure exits 1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod invoke;

use crate::server::{self, reload};
use crate::snapshot::Snapshot;

pub const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "verge",
    version,
    about = "A self-hosted CDN edge: caching reverse proxy with Lambda@Edge-style WebAssembly hooks"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum FunctionsCommand {
    /// Copy a module in as the next version of NAME; prints the new version's ARN.
    Publish {
        name: String,
        file: PathBuf,
        #[arg(long, default_value = "functions")]
        store: PathBuf,
    },
    /// List every published version with its sha256.
    List {
        #[arg(long, default_value = "functions")]
        store: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Serve a distribution (with no --config: the demo distribution in front of a built-in origin).
    Serve {
        /// The distribution file (YAML).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen on these addresses instead of the file's `listen` (repeatable; port 0 picks a free port).
        #[arg(long)]
        listen: Vec<std::net::SocketAddr>,
        /// Demo only: the directory of the built example hooks (ab_test.wasm, security_headers.wasm, webp.wasm).
        #[arg(long)]
        demo_functions: Option<PathBuf>,
    },
    /// Manage the function store: publish immutable versions, list them.
    Functions {
        #[command(subcommand)]
        command: FunctionsCommand,
    },
    /// Run one function locally on an event file, with the same limits as in the proxy
    /// (like `sam local invoke`; AWS's sample events work).
    Invoke {
        /// viewer-request, origin-request, origin-response or viewer-response.
        #[arg(long)]
        event_type: String,
        /// A module file (.wasm or .wat) ...
        #[arg(long, conflicts_with = "arn")]
        function: Option<PathBuf>,
        /// ... or a published version.
        #[arg(long, requires = "store")]
        arn: Option<String>,
        #[arg(long)]
        store: Option<PathBuf>,
        /// The event JSON file.
        #[arg(long)]
        event: PathBuf,
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long)]
        memory_mb: Option<u64>,
    },
    /// Invalidate cached objects through a running verge's admin API (`admin.listen`).
    Invalidate {
        /// The admin address, e.g. 127.0.0.1:9180.
        #[arg(long)]
        admin: std::net::SocketAddr,
        /// CloudFront invalidation paths: /a.jpg, /images/*, /*
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Reload a running verge's distribution file through its admin API (same as SIGHUP); a file that
    /// does not validate or load is refused with its problems, and the running distribution keeps serving.
    Reload {
        /// The admin address, e.g. 127.0.0.1:9180.
        #[arg(long)]
        admin: std::net::SocketAddr,
    },
    /// Check distribution files; prints every problem with file:line:column: key: reason.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Serve { config, listen, demo_functions } => serve(config, listen, demo_functions),
        Command::Invalidate { admin, paths } => invalidate(admin, &paths),
        Command::Reload { admin } => reload(admin),
        Command::Functions { command } => functions(command),
        Command::Invoke { event_type, function, arn, store, event, timeout_ms, memory_mb } => {
            invoke::run(&event_type, function, arn, store, &event, timeout_ms, memory_mb)
        }
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for file in files {
        match verge_config::from_file(file) {
            Ok(config) => {
                let d = &config.distribution;
                println!("{}: ok ({} origins, {} behaviors)", file.display(), d.origins.len(), d.behaviors.len())
            }
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}

fn functions(command: FunctionsCommand) -> ExitCode {
    match command {
        FunctionsCommand::Publish { name, file, store } => {
            match verge_hooks::FunctionStore::new(store).publish(&name, &file) {
                Ok(arn) => {
                    println!("{arn}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("verge: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        FunctionsCommand::List { store } => match verge_hooks::FunctionStore::new(store).list() {
            Ok(versions) => {
                for (arn, sha) in versions {
                    println!("{arn}  sha256:{sha}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("verge: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

fn invalidate(admin: std::net::SocketAddr, paths: &[String]) -> ExitCode {
    admin_post(admin, "/invalidations", &paths.join("\n"), "invalidation refused")
}

fn reload(admin: std::net::SocketAddr) -> ExitCode {
    admin_post(admin, "/reload", "", "reload refused, the running distribution keeps serving")
}

/// POSTs `body` to the admin API; prints the answer (stdout on 200, stderr with `refused` otherwise).
fn admin_post(admin: std::net::SocketAddr, path: &str, body: &str, refused: &str) -> ExitCode {
    use std::io::{Read, Write};
    let result = (|| -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&admin, std::time::Duration::from_secs(10))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })();
    match result {
        Ok(response) => {
            let ok = response.starts_with("HTTP/1.1 200");
            let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            if ok {
                print!("{body}");
                ExitCode::SUCCESS
            } else {
                eprint!("verge: {refused}: {body}");
                ExitCode::from(EXIT_CONFIG)
            }
        }
        Err(e) => {
            eprintln!("verge: cannot reach the admin API at {admin}: {e}");
            ExitCode::FAILURE
        }
    }
}

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

fn serve(config: Option<PathBuf>, listen: Vec<std::net::SocketAddr>, demo_functions: Option<PathBuf>) -> ExitCode {
    init_logging();
    let is_demo = config.is_none();
    let parsed = match &config {
        Some(path) => verge_config::from_file(path),
        None => verge_config::parse_str("<embedded demo.yaml>", demo::DEMO_YAML),
    };
    let (file_settings, mut dist) = match parsed {
        Ok(config) => (config.server, config.distribution),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // `--listen` takes precedence over the file's `server.listen`.
    let mut settings = file_settings.clone();
    if !listen.is_empty() {
        settings.listen = listen;
    }
    let threads = settings.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if is_demo {
        match demo::prepare_functions(&mut dist, demo_functions.as_deref()) {
            Ok(true) => println!("verge: demo hooks published: security-headers, ab-test, webp"),
            Ok(false) => println!("verge: demo without hooks (scripts/demo builds them and passes --demo-functions)"),
            Err(e) => {
                eprintln!("verge: demo hooks: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("verge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if is_demo {
            match demo::start_origin(&mut dist).await {
                Ok(addr) => println!("verge: demo origin on http://{addr}"),
                Err(e) => {
                    eprintln!("verge: cannot start the demo origin: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let base_dir = reload::base_dir(config.as_deref());
        let engine = match reload::hook_engine(&dist, &base_dir) {
            Ok(engine) => engine,
            Err(e) => {
                eprintln!("verge: {e}");
                return ExitCode::FAILURE;
            }
        };
        // An origin that does not resolve or a function that cannot be loaded is a distribution error.
        let snapshot = match Snapshot::build(dist, &base_dir, engine.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("verge: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        // The embedded demo has no file to read again.
        let reload = config.map(|path| (reload::Source { path, server: file_settings }, engine));
        let started = match server::start(&settings, snapshot, reload).await {
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
        for addr in &started.addrs {
            println!("verge: listening on http://{addr}");
        }
        if is_demo {
            let a = started.addrs[0];
            println!(
                "try:\n  curl -i http://{a}/                 default root object, security headers; run it twice for a Hit\n  curl -i http://{a}/ab/page          A/B test: a group, a rewritten uri and a Set-Cookie\n  curl -i -H 'Accept: image/webp' http://{a}/images/cat.jpg   webp for viewers that accept it\n  curl -i http://{a}/images/cat.jpg   the jpeg for the others (Accept is in the cache key)\n  curl -i http://{a}/api/time         CachingDisabled behavior\n  curl -i -X POST http://{a}/         403: method not allowed"
            );
        }
        server::run_until_signal(started).await;
        ExitCode::SUCCESS
    })
}

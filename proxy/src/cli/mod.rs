//! The `verge` command line: `serve`, `validate`, `invoke`, `functions`, and the admin clients
//! `invalidate` and `reload`. Bad configuration exits 64 (EX_USAGE), a start-up failure exits 1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod fleet;
mod invoke;
mod serve;

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

/// The id of a distribution whose file names none.
const DEFAULT_DISTRIBUTION: &str = "EVERGEDEFAULT";

/// `verge serve` as a fleet node.
#[derive(clap::Args)]
struct FleetNode {
    /// Join the fleet at this NATS (e.g. nats://127.0.0.1:4222): serve what `verge deploy` publishes.
    #[arg(long, requires = "node_id")]
    nats: Option<String>,
    /// This node's name in the fleet (letters, digits, `-`, `_`).
    #[arg(long)]
    node_id: Option<String>,
    /// The distribution id to serve.
    #[arg(long, default_value = DEFAULT_DISTRIBUTION)]
    distribution: String,
    /// `edge` (serves viewers; misses of origins with `origin_shield` go to the shield tier) or `shield`.
    #[arg(long, default_value = "edge", value_parser = ["edge", "shield"])]
    role: String,
    /// The address other nodes reach this node's plain HTTP listener at (shields: edges send misses
    /// there); default the listener's own address (which must then not be 0.0.0.0).
    #[arg(long)]
    advertise: Option<std::net::SocketAddr>,
    /// Where the node keeps its last good deployment (default: `.verge-fleet/NODE` beside the config).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum FleetCommand {
    /// List the live nodes.
    Status {
        #[arg(long)]
        nats: String,
    },
}

#[derive(Subcommand)]
enum InvalidationsCommand {
    /// List the fleet's invalidations, newest first, with their status.
    List {
        #[arg(long)]
        nats: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Serve a distribution file (the demo: `verge-demo`, see scripts/demo).
    Serve {
        /// The distribution file (YAML).
        #[arg(long, short)]
        config: PathBuf,
        /// Listen on these addresses instead of the file's plain `server.listen` entries (repeatable;
        /// port 0 picks a free port); the file's TLS and PROXY protocol listeners are kept.
        #[arg(long)]
        listen: Vec<std::net::SocketAddr>,
        #[command(flatten)]
        fleet: FleetNode,
    },
    /// Validate a distribution file as `verge validate` does, upload its function versions and publish
    /// it to every fleet node; waits until each live node serves it or one refuses.
    Deploy {
        /// NATS, e.g. nats://127.0.0.1:4222.
        #[arg(long)]
        nats: String,
        /// Check the file alone here (no origin lookups, no compiling): the nodes load it fully.
        #[arg(long)]
        config_only: bool,
        /// How long to wait for the fleet (seconds).
        #[arg(long, default_value_t = 30)]
        wait: u64,
        file: PathBuf,
    },
    /// The fleet's nodes: what each serves, when it was last seen, what it refused.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// The fleet's invalidations and their status.
    Invalidations {
        #[command(subcommand)]
        command: InvalidationsCommand,
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
    /// Invalidate cached objects: on every fleet node (`--nats`), or through one verge's admin API.
    Invalidate {
        /// The admin address, e.g. 127.0.0.1:9180.
        #[arg(long, required_unless_present = "nats", conflicts_with = "nats")]
        admin: Option<std::net::SocketAddr>,
        /// The fleet's NATS: the invalidation reaches every node; waits until it is Completed.
        #[arg(long)]
        nats: Option<String>,
        /// The distribution id (fleet invalidations).
        #[arg(long, default_value = DEFAULT_DISTRIBUTION)]
        distribution: String,
        /// The file holding the admin API's bearer token (`server.admin.token_file`).
        #[arg(long)]
        token_file: Option<PathBuf>,
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
        /// The file holding the admin API's bearer token (`server.admin.token_file`).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Check distribution files as `serve` would load them: the file (every problem with
    /// file:line:column: key: reason), then its function versions (store, manifest, imports, limits,
    /// compiled) and its origins (resolved).
    Validate {
        /// Check the file alone (no function store, no name lookups): for a file whose modules are
        /// published elsewhere.
        #[arg(long)]
        config_only: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config_only, files } => validate(&files, config_only),
        Command::Serve { config, listen, fleet } => {
            let node = match fleet.nats {
                Some(url) => {
                    let node = fleet.node_id.unwrap_or_default();
                    if node.is_empty() || !node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                        eprintln!("verge: --node-id `{node}`: letters, digits, `-` and `_` only");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                    let state_dir = fleet.state_dir.unwrap_or_else(|| {
                        crate::server::reload::base_dir(Some(&config)).join(".verge-fleet").join(&node)
                    });
                    Some(serve::Node {
                        url,
                        node,
                        role: fleet.role,
                        distribution: fleet.distribution,
                        state_dir,
                        advertise: fleet.advertise,
                    })
                }
                None => None,
            };
            serve::serve(config, listen, node)
        }
        Command::Deploy { nats, config_only, wait, file } => {
            fleet::deploy(&nats, &file, config_only, std::time::Duration::from_secs(wait))
        }
        Command::Fleet { command: FleetCommand::Status { nats } } => fleet::status(&nats),
        Command::Invalidations { command: InvalidationsCommand::List { nats } } => fleet::list_invalidations(&nats),
        Command::Invalidate { admin, nats, distribution, token_file, paths } => match (admin, nats) {
            (_, Some(url)) => fleet::invalidate(&url, &distribution, &paths, std::time::Duration::from_secs(60)),
            (Some(admin), None) => {
                admin_post(admin, token_file, "/invalidations", &paths.join("\n"), "invalidation refused")
            }
            (None, None) => unreachable!("clap requires one of --admin and --nats"),
        },
        Command::Reload { admin, token_file } => {
            admin_post(admin, token_file, "/reload", "", "reload refused, the running distribution keeps serving")
        }
        Command::Functions { command } => functions(command),
        Command::Invoke { event_type, function, arn, store, event, timeout_ms, memory_mb } => {
            invoke::run(&event_type, function, arn, store, &event, timeout_ms, memory_mb)
        }
    }
}

/// Checks a file as `serve` would load it (the file, then its function versions and origins unless
/// `config_only`); the config and a one-line summary, or every problem.
fn check_file(file: &std::path::Path, config_only: bool) -> Result<(verge_config::Config, String), String> {
    let config = verge_config::from_file(file).map_err(|e| e.to_string())?;
    let d = &config.distribution;
    let summary = format!("{} origins, {} behaviors", d.origins.len(), d.behaviors.len());
    if config_only {
        return Ok((config, format!("{summary}; file only")));
    }
    // What `serve` loads, loaded the same way: a file validate passes, serve starts.
    let base_dir = crate::server::reload::base_dir(Some(file));
    let engine = crate::server::reload::hook_engine(&config.distribution, &base_dir)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let snapshot =
        crate::snapshot::Snapshot::build(config.distribution.clone(), &base_dir, engine.as_ref(), &config.server)
            .map_err(|e| format!("{}: {e}", file.display()))?;
    let functions = snapshot.functions.versions().len();
    Ok((config, format!("{summary}, {functions} function versions loaded")))
}

fn validate(files: &[PathBuf], config_only: bool) -> ExitCode {
    let mut ok = true;
    for file in files {
        match check_file(file, config_only) {
            Ok((_, summary)) => println!("{}: ok ({summary})", file.display()),
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

/// POSTs `body` to the admin API (with the bearer token in `token_file`, if given); prints the answer
/// (stdout on 200, stderr with `refused` otherwise).
fn admin_post(
    admin: std::net::SocketAddr,
    token_file: Option<PathBuf>,
    path: &str,
    body: &str,
    refused: &str,
) -> ExitCode {
    use std::io::{Read, Write};
    let authorization = match token_file.map(std::fs::read_to_string).transpose() {
        Ok(token) => token.map(|t| format!("Authorization: Bearer {}\r\n", t.trim())).unwrap_or_default(),
        Err(e) => {
            eprintln!("verge: the token file: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = (|| -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&admin, std::time::Duration::from_secs(10))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {admin}\r\n{authorization}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

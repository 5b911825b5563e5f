//! verge: a CloudFront-style caching edge on pingora. The binary is a thin wrapper over `run`; the
//! request path is `phases` (pingora's callbacks) over `edge` (per-request parts), `triggers` (the four
//! Lambda@Edge points), `cache` and `snapshot` (the running distribution). docs/architecture.md maps it.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod cache;
mod cli;
mod dns;
mod edge;
mod fleet;
mod observe;
mod phases;
mod server;
mod snapshot;
mod triggers;

pub use cli::run;

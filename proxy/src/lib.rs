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
mod fresh_hit;
mod observe;
mod pass_through;
mod phases;
mod server;
mod snapshot;
mod triggers;
mod wait_timer;

pub use cli::run;

/// The cache's parsers of origin and viewer input, for the fuzz targets in `fuzz/` (not an API).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::cache::cache_control::{cache_directives, CacheDirectives};
    pub use crate::cache::freshness::freshness;
    pub use crate::cache::key::primary_key;
    pub use crate::cache::rendered_head::render;
    pub use crate::cache::stored_header::{merge_not_modified, same_host_path, strip_unstorable};
    pub use crate::cache::ttl::{decide, Decision, TtlPolicy};
    pub use crate::edge::head_scan::agrees_with_httparse as origin_head_scan_agrees_with_httparse;
    pub use crate::edge::origin_head::{parse as parse_origin_head, Framing, HeadParse};
}

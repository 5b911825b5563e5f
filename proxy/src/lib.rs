//! verge: a CloudFront-style caching edge on pingora. The binary is a thin wrapper over `cli::run`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod cli;
pub mod context;
pub mod demo;
pub mod error_page;
pub mod error_pages;
pub mod forward;
pub mod generated;
pub mod header_names;
pub mod http_server;
pub mod include_body;
pub mod invoke;
pub mod lambda;
pub mod log_writer;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod server;
pub mod snapshot;
pub mod triggers;

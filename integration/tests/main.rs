//! End-to-end tests: the real `verge` binary in front of real origin servers on loopback.

#[macro_use]
mod harness;

mod access_log;
mod caching;
mod cli;
mod compression;
mod dashboard;
mod dns;
mod examples;
mod fleet;
mod geo;
mod hooks;
mod pass_exchange;
mod reload;
mod resilience;
mod response_headers;
mod routing;
mod tls;

//! Test support for verge's crates, a dev-dependency only (nothing here ships in the `verge` binary):
//! the guest-module builder, a programmable HTTP(S) origin and test certificates.
#![forbid(unsafe_code)]

pub mod client;
pub mod dns;
pub mod guests;
pub mod mmdb;
pub mod origin;
pub mod tls;

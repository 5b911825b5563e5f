//! Test support for verge's crates, a dev-dependency only (nothing here ships in the `verge` binary):
//! the guest-module builder and a programmable HTTP origin.
#![forbid(unsafe_code)]

pub mod client;
pub mod guests;
pub mod origin;

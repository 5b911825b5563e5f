//! Test support for verge's crates, a dev-dependency only (nothing here ships in the `verge` binary):
//! the guest-module builder.
#![forbid(unsafe_code)]

pub mod guests;

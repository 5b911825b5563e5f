//! The cache layer under pingora-cache: keys, TTL decisions and the bounded object store.

pub mod key;
pub mod storage;
pub mod ttl;

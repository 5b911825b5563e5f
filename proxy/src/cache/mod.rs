//! The cache layer under pingora-cache: keys, TTL decisions and the bounded object store.

pub mod cache_control;
pub mod freshness;
pub mod invalidation;
pub mod key;
pub mod rendered_head;
pub mod storage;
pub mod stored_header;
pub mod ttl;

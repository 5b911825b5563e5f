//! Parsers of what verge reads from viewers before its HTTP stack takes over or before a request is
//! routed: the PROXY protocol header (`proxy_protocol`) and the request path's one normalised form
//! (`path`), and CloudFront invalidation paths (`invalidation`). Pure functions over bytes, without dependencies, fuzzed on their own (`fuzz/`).
#![forbid(unsafe_code)]

pub mod invalidation;
pub mod path;
pub mod proxy_protocol;

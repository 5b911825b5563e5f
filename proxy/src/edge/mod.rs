//! The per-request parts of the edge that the phases use: request state, the outcome vocabulary, the
//! responses verge makes itself, custom error pages, origin requests, IncludeBody, request ids and header
//! names, and the in-memory origin of origin-request answers.

pub mod compress;
pub mod connection;
pub mod context;
pub mod device;
pub mod error_pages;
pub mod forward;
pub mod generated;
pub mod geo;
pub mod head_scan;
pub mod header_names;
pub mod include_body;
pub mod origin_head;
pub mod outcome;
pub mod request_id;
pub mod respond;
pub mod response_policy;
pub mod variance;

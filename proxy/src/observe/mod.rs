//! What verge tells its operators: Prometheus metrics, the access line, and the buffered log writer both
//! go through.

pub mod access_log;
pub mod cloudfront_log;
pub mod log_writer;
pub mod metrics;
pub mod realtime_log;

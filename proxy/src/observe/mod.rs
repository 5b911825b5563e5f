//! What verge tells its operators: Prometheus metrics, the access line, and the buffered log writer both
//! go through; CloudFront's standard log file and real-time records.

pub mod access_log;
pub mod cloudfront_log;
pub mod log_writer;
pub mod metrics;
pub mod realtime_log;

/// Whether a log that records a response's time to first byte (CloudFront's standard log, real-time
/// records) is on: only then is the clock read when a response head goes out.
pub fn first_byte_logged() -> bool {
    cloudfront_log::get().is_some() || realtime_log::get().is_some()
}

/// Starts a thread that calls `flush` every `period`, for as long as the process runs (the log files'
/// buffered lines go out from it, never from a request).
pub(crate) fn spawn_flusher(name: &str, period: std::time::Duration, flush: fn()) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            std::thread::sleep(period);
            flush();
        })
        .map(drop)
        .map_err(|e| format!("{name}: {e}"))
}

//! The access line, one per request, formatted here instead of through `tracing`'s event machinery.
//!
//! Same text as a `tracing` INFO event with target `verge::access` (and switched on or off by
//! `VERGE_LOG` the same way), but written with one `write!` into the buffered log writer: through
//! `tracing`'s field visitors the line cost ~10% of a 1 KiB cache hit.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::edge::outcome::LoggedResult;
use crate::observe::log_writer::LogWriter;

/// What one access line says.
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub uri: &'a http::Uri,
    pub status: u16,
    pub result: LoggedResult,
    pub behavior: usize,
    /// The viewer's IP (the PROXY protocol's or a trusted proxy's client when there is one).
    pub client: &'a str,
    pub origin: &'a str,
    /// The triggers whose functions ran, in order.
    pub functions: crate::edge::context::Trail,
    pub millis: u64,
    pub error: Option<&'a pingora_error::Error>,
}

/// `viewer-request,origin-request,...`, or `-` when no function ran.
struct Functions(crate::edge::context::Trail);

impl std::fmt::Display for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, event) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(event.as_str())?;
        }
        Ok(())
    }
}

/// Whether access lines are on (`VERGE_LOG` filters them like any `verge::access` event).
pub fn enabled() -> bool {
    tracing::enabled!(target: "verge::access", tracing::Level::INFO)
}

/// Formats `line` and hands it to the buffered writer.
pub fn write(line: &AccessLine<'_>) {
    let mut text = String::with_capacity(256);
    push_timestamp(&mut text, SystemTime::now());
    let error = line.error.map(|e| e.to_string()).unwrap_or_default();
    let _ = writeln!(
        text,
        "  INFO verge::access: request_id={} client={} method={} uri={} status={} result={:?} response_result={:?} detailed_result={:?} behavior={} origin={} functions={} millis={} error={:?}",
        line.request_id,
        if line.client.is_empty() { "-" } else { line.client },
        line.method,
        line.uri,
        line.status,
        line.result.result.as_str(),
        line.result.response_result.as_str(),
        line.result.detailed,
        line.behavior,
        line.origin,
        Functions(line.functions),
        line.millis,
        error
    );
    LogWriter::global().append_buffered(text.as_bytes());
}

/// `2026-11-25T01:40:21.822312Z`, as `tracing-subscriber` prints time.
fn push_timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let c = Civil::of(now);
    let micros = since.subsec_micros();
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    );
}

/// A UTC calendar date and time of day.
pub(crate) struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
}

impl Civil {
    pub fn of(time: SystemTime) -> Self {
        let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let of_day = secs % 86_400;
        Self { year, month, day, hour: of_day / 3600, minute: of_day / 60 % 60, second: of_day % 60 }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_the_calendar() {
        let at = |secs: u64, micros: u32| {
            let mut s = String::new();
            push_timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into()));
            s
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z", "leap day of a leap century");
        assert_eq!(at(1_795_570_821, 822_312), "2026-11-25T01:40:21.822312Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z", "2100 is not a leap year");
    }
}

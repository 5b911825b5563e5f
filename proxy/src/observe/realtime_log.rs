//! CloudFront's real-time log records: one JSON object per line, with CloudFront's real-time field names
//! (the chosen `fields`, in that order), for a sampled share of requests, to a file or to a Unix stream
//! socket a log shipper listens on (Vector, Fluent Bit, …: CloudFront sends these to Kinesis). Lines are
//! buffered and written by a thread of their own every 200 ms, never on the request path; while the socket
//! is down, lines wait (up to 1 MiB, then the oldest are dropped and counted in the log).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use verge_config::model::{RealtimeLogSettings, RealtimeTarget};

use super::cloudfront_log::Entry;

const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Lines kept while the socket is unreachable.
const MAX_PENDING: usize = 1 << 20;

pub struct RealtimeLog {
    fields: Vec<&'static str>,
    sampling: f64,
    pending: Mutex<Vec<u8>>,
    sink: Mutex<Sink>,
}

enum Sink {
    File(File),
    Socket { path: PathBuf, stream: Option<UnixStream> },
}

static LOG: OnceLock<RealtimeLog> = OnceLock::new();

pub fn start(settings: &RealtimeLogSettings, base_dir: &Path) -> Result<(), String> {
    let sink = match &settings.target {
        RealtimeTarget::File(file) => {
            let path = base_dir.join(file);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("realtime log {}: {e}", path.display()))?;
            Sink::File(file)
        }
        // Connected at the first flush (and again after a failure): the shipper may start after verge.
        RealtimeTarget::UnixSocket(socket) => Sink::Socket { path: base_dir.join(socket), stream: None },
    };
    let log = RealtimeLog {
        fields: settings.fields.clone(),
        sampling: settings.sampling,
        pending: Mutex::new(Vec::new()),
        sink: Mutex::new(sink),
    };
    if LOG.set(log).is_err() {
        return Ok(());
    }
    super::spawn_flusher("verge-rt-log", FLUSH_EVERY, || {
        if let Some(log) = get() {
            log.flush();
        }
    })
}

pub fn get() -> Option<&'static RealtimeLog> {
    LOG.get()
}

impl RealtimeLog {
    pub fn sampled(&self) -> bool {
        self.sampling >= 1.0 || crate::edge::response_policy::draw() < self.sampling
    }

    pub fn write(&self, entry: &Entry<'_>) {
        let mut line = String::with_capacity(768);
        format_record(entry, &self.fields, &mut line);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() + line.len() > MAX_PENDING {
            tracing::warn!(target: "verge::log", bytes = pending.len(), "real-time log receiver not keeping up: lines dropped");
            pending.clear();
        }
        pending.extend_from_slice(line.as_bytes());
    }

    pub fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            return;
        }
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let written = match &mut *sink {
            Sink::File(file) => file.write_all(&batch).is_ok(),
            Sink::Socket { path, stream } => {
                if stream.is_none() {
                    *stream = UnixStream::connect(&*path).ok();
                }
                let ok = stream.as_mut().is_some_and(|s| s.write_all(&batch).is_ok());
                if !ok {
                    *stream = None;
                }
                ok
            }
        };
        if !written {
            // Kept for the next try, ahead of newer lines.
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let newer = std::mem::take(&mut *pending);
            *pending = batch;
            pending.extend_from_slice(&newer);
        }
    }
}

/// One record: `{"timestamp":"1795000000.123","c-ip":"203.0.113.7",…}` and a newline.
pub fn format_record(e: &Entry<'_>, fields: &[&str], out: &mut String) {
    out.push('{');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{field}\":");
        let millis = |d: Option<Duration>| d.map(|d| format!("{:.3}", d.as_secs_f64()));
        let value: Option<String> = match *field {
            "timestamp" => {
                let t = e.finished.duration_since(UNIX_EPOCH).unwrap_or_default();
                Some(format!("{}.{:03}", t.as_secs(), t.subsec_millis()))
            }
            "c-ip" => Some(e.client_ip.to_string()),
            "time-to-first-byte" => millis(e.time_to_first_byte),
            "sc-status" => Some(e.status.to_string()),
            "sc-bytes" => Some(e.sc_bytes.to_string()),
            "cs-method" => Some(e.method.to_string()),
            "cs-protocol" => Some(if e.https { "https" } else { "http" }.to_string()),
            "cs-host" => Some(e.distribution.to_string()),
            "cs-uri-stem" => Some(e.uri_stem.to_string()),
            "cs-bytes" => Some(e.cs_bytes.to_string()),
            "x-edge-location" => Some(e.edge_location.to_string()),
            "x-edge-request-id" => Some(e.request_id.to_string()),
            "x-host-header" => e.host.map(str::to_string),
            "time-taken" => millis(Some(e.time_taken)),
            "cs-protocol-version" => Some(e.http_version.to_string()),
            "c-ip-version" => Some(if e.client_ip.contains(':') { "IPv6" } else { "IPv4" }.to_string()),
            "cs-user-agent" => e.user_agent.map(str::to_string),
            "cs-referer" => e.referer.map(str::to_string),
            "cs-cookie" => e.cookie.map(str::to_string),
            "cs-uri-query" => e.query.filter(|q| !q.is_empty()).map(str::to_string),
            "x-edge-response-result-type" => Some(e.response_result_type.to_string()),
            "x-forwarded-for" => e.forwarded_for.map(str::to_string),
            "ssl-protocol" => e.tls.map(|(p, _)| p.to_string()),
            "ssl-cipher" => e.tls.map(|(_, c)| c.to_string()),
            "x-edge-result-type" => Some(e.result_type.to_string()),
            "sc-content-type" => e.content_type.map(str::to_string),
            "sc-content-len" => e.content_length.map(str::to_string),
            "sc-range-start" => e.range.map(|(s, _)| s.to_string()),
            "sc-range-end" => e.range.map(|(_, end)| end.to_string()),
            "c-port" => Some(e.client_port.to_string()),
            "x-edge-detailed-result-type" => Some(e.detailed_result_type.to_string()),
            "cs-accept-encoding" => e.accept_encoding.map(str::to_string),
            "cs-accept" => e.accept.map(str::to_string),
            "cache-behavior-path-pattern" => Some(e.path_pattern.to_string()),
            "primary-distribution-id" => Some(e.distribution_id.to_string()),
            "primary-distribution-dns-name" => Some(e.distribution.to_string()),
            "origin-fbl" => millis(e.origin_first_byte),
            _ => None,
        };
        match value {
            Some(v) => push_json_string(out, &v),
            None => out.push_str("\"-\""),
        }
    }
    out.push_str("}\n");
}

fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

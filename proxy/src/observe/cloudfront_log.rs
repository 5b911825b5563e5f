//! CloudFront's standard access log: the 33 tab-separated fields in CloudFront's order under `#Version`
//! and `#Fields` lines, `-` for an empty value, values with spaces or controls percent-encoded as
//! CloudFront does; written to the file `server.access_log.file` names, buffered (32 KiB, flushed every
//! 200 ms and at shutdown), reopened on SIGUSR1 (logrotate's `postrotate`), optionally rotated by size or
//! every hour, sampled, with cookies only when asked. Read by GoAccess (`--log-format=CLOUDFRONT`), Athena
//! and the other tools built for CloudFront's files.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use verge_config::model::AccessLogSettings;

use super::access_log::Civil;

const FLUSH_EVERY: Duration = Duration::from_millis(200);
const BUFFER_BYTES: usize = 32 << 10;

const HEADER: &str = "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end\n";

/// One request, as the log line needs it.
pub struct Entry<'a> {
    pub finished: SystemTime,
    pub sc_bytes: u64,
    pub client_ip: &'a str,
    pub client_port: u16,
    pub method: &'a str,
    /// The distribution's domain name (CloudFront's `*.cloudfront.net` name).
    pub distribution: &'a str,
    pub uri_stem: &'a str,
    pub query: Option<&'a str>,
    pub status: u16,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub result_type: &'a str,
    pub request_id: &'a str,
    pub host: Option<&'a str>,
    pub https: bool,
    pub cs_bytes: u64,
    pub time_taken: Duration,
    pub forwarded_for: Option<&'a str>,
    pub tls: Option<(&'a str, &'a str)>,
    pub response_result_type: &'a str,
    pub http_version: &'a str,
    pub time_to_first_byte: Option<Duration>,
    pub detailed_result_type: &'a str,
    pub content_type: Option<&'a str>,
    pub content_length: Option<&'a str>,
    pub range: Option<(u64, u64)>,
    // Fields only the real-time records have.
    pub edge_location: &'a str,
    pub accept_encoding: Option<&'a str>,
    pub accept: Option<&'a str>,
    /// The matched behavior's path pattern (`*` for the default one).
    pub path_pattern: &'a str,
    pub distribution_id: &'a str,
    pub origin_first_byte: Option<Duration>,
}

pub struct CloudFrontLog {
    settings: AccessLogSettings,
    path: PathBuf,
    state: Mutex<State>,
    reopen: AtomicBool,
}

struct State {
    pending: Vec<u8>,
    file: Option<File>,
    written: u64,
    /// Hours since the epoch when the file was opened (hourly rotation).
    hour: u64,
}

static LOG: OnceLock<CloudFrontLog> = OnceLock::new();

/// Opens the log (relative paths against `base_dir`) and starts its flusher; once per process.
pub fn start(settings: &AccessLogSettings, base_dir: &Path) -> Result<(), String> {
    let path = base_dir.join(&settings.file);
    let file = open(&path)?;
    let written = file.metadata().map_or(0, |m| m.len());
    let state = State { pending: Vec::with_capacity(BUFFER_BYTES), file: Some(file), written, hour: hour_now() };
    let log =
        CloudFrontLog { settings: settings.clone(), path, state: Mutex::new(state), reopen: AtomicBool::new(false) };
    if LOG.set(log).is_err() {
        return Ok(());
    }
    super::spawn_flusher("verge-cf-log", FLUSH_EVERY, || {
        if let Some(log) = get() {
            log.flush();
        }
    })
}

pub fn get() -> Option<&'static CloudFrontLog> {
    LOG.get()
}

/// SIGUSR1: the file is reopened at the next flush (after logrotate moved it away).
pub fn reopen() {
    if let Some(log) = get() {
        log.reopen.store(true, Ordering::Release);
        log.flush();
    }
}

/// Opens `path` for appending; a new or empty file gets the header lines.
fn open(path: &Path) -> Result<File, String> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("access log {}: {e}", path.display()))?;
    if file.metadata().map_or(0, |m| m.len()) == 0 {
        file.write_all(HEADER.as_bytes()).map_err(|e| format!("access log {}: {e}", path.display()))?;
    }
    Ok(file)
}

fn hour_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 3600)
}

impl CloudFrontLog {
    /// Whether this request is logged (`sampling_rate`).
    pub fn sampled(&self) -> bool {
        self.settings.sampling >= 1.0 || crate::edge::response_policy::draw() < self.settings.sampling
    }

    pub fn include_cookies(&self) -> bool {
        self.settings.include_cookies
    }

    pub fn edge_location(&self) -> &str {
        &self.settings.edge_location
    }

    pub fn write(&self, entry: &Entry<'_>) {
        let mut line = String::with_capacity(512);
        format_line(entry, &self.settings.edge_location, &mut line);
        let full = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.pending.extend_from_slice(line.as_bytes());
            state.pending.len() >= BUFFER_BYTES
        };
        if full {
            self.flush();
        }
    }

    /// Writes out what is pending; reopens or rotates the file first when due.
    pub fn flush(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rotate_size = self.settings.rotate_bytes.is_some_and(|max| state.written >= max);
        let rotate_hour = self.settings.rotate_hourly && hour_now() != state.hour;
        if rotate_size || rotate_hour {
            let stamp = civil_stamp(SystemTime::now());
            let rotated = self.path.with_file_name(format!(
                "{}.{stamp}",
                self.path.file_name().map_or("access.log".into(), |n| n.to_string_lossy())
            ));
            if let Err(e) = std::fs::rename(&self.path, &rotated) {
                tracing::warn!(target: "verge::log", "cannot rotate {}: {e}", self.path.display());
            }
            self.reopen.store(true, Ordering::Release);
        }
        if self.reopen.swap(false, Ordering::AcqRel) {
            state.file = None;
            match open(&self.path) {
                Ok(file) => {
                    state.written = file.metadata().map_or(0, |m| m.len());
                    state.hour = hour_now();
                    state.file = Some(file);
                }
                Err(e) => tracing::error!(target: "verge::log", "{e}; access lines are dropped until it opens"),
            }
        }
        if state.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut state.pending);
        if let Some(file) = state.file.as_mut() {
            if let Err(e) = file.write_all(&pending) {
                tracing::error!(target: "verge::log", "writing {}: {e}", self.path.display());
            }
        }
        state.written += pending.len() as u64;
        state.pending = pending;
        state.pending.clear();
    }
}

/// The line for `entry` (with its newline).
pub fn format_line(e: &Entry<'_>, edge_location: &str, out: &mut String) {
    let c = Civil::of(e.finished);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}\t{:02}:{:02}:{:02}\t{edge_location}\t{}\t{}\t{}\t{}\t",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        e.sc_bytes,
        dash(e.client_ip),
        e.method,
        e.distribution,
    );
    push_encoded(out, e.uri_stem);
    let _ = write!(out, "\t{:03}\t", e.status);
    push_field(out, e.referer);
    out.push('\t');
    push_field(out, e.user_agent);
    out.push('\t');
    push_field(out, e.query.filter(|q| !q.is_empty()));
    out.push('\t');
    push_field(out, e.cookie);
    let _ = write!(out, "\t{}\t{}\t", e.result_type, e.request_id);
    push_field(out, e.host);
    let _ = write!(
        out,
        "\t{}\t{}\t{:.3}\t",
        if e.https { "https" } else { "http" },
        e.cs_bytes,
        e.time_taken.as_secs_f64()
    );
    push_field(out, e.forwarded_for);
    match e.tls {
        Some((protocol, cipher)) => {
            let _ = write!(out, "\t{protocol}\t{cipher}\t");
        }
        None => out.push_str("\t-\t-\t"),
    }
    let _ = write!(out, "{}\t{}\t-\t-\t{}\t", e.response_result_type, e.http_version, e.client_port);
    match e.time_to_first_byte {
        Some(t) => {
            let _ = write!(out, "{:.3}", t.as_secs_f64());
        }
        None => out.push('-'),
    }
    let _ = write!(out, "\t{}\t", e.detailed_result_type);
    push_field(out, e.content_type);
    out.push('\t');
    push_field(out, e.content_length);
    match e.range {
        Some((start, end)) => {
            let _ = writeln!(out, "\t{start}\t{end}");
        }
        None => out.push_str("\t-\t-\n"),
    }
}

fn dash(value: &str) -> &str {
    if value.is_empty() {
        "-"
    } else {
        value
    }
}

fn push_field(out: &mut String, value: Option<&str>) {
    match value.filter(|v| !v.is_empty()) {
        Some(v) => push_encoded(out, v),
        None => out.push('-'),
    }
}

/// Percent-encodes what would break the line or its fields (space, tab, controls, `"`, `\`, non-ASCII),
/// as CloudFront writes `Mozilla/5.0%20(X11;%20Linux%20x86_64)`.
fn push_encoded(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b <= b' ' || b >= 0x7f || b == b'"' || b == b'\\' {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// `YYYYmmddHHMMSS` (UTC), for rotated file names.
fn civil_stamp(now: SystemTime) -> String {
    let c = Civil::of(now);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_33_fields_with_dashes_and_encoding() {
        let entry = Entry {
            finished: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            sc_bytes: 1_234,
            client_ip: "203.0.113.7",
            client_port: 40_000,
            method: "GET",
            distribution: "d111111abcdef8.verge.local",
            uri_stem: "/a b.html",
            query: Some("x=1"),
            status: 200,
            referer: None,
            user_agent: Some("Mozilla/5.0 (X11; Linux)"),
            cookie: None,
            result_type: "Hit",
            request_id: "abc",
            host: Some("www.example.com"),
            https: true,
            cs_bytes: 321,
            time_taken: Duration::from_millis(12),
            forwarded_for: None,
            tls: Some(("TLSv1.3", "TLS_AES_128_GCM_SHA256")),
            response_result_type: "Hit",
            http_version: "HTTP/2.0",
            time_to_first_byte: Some(Duration::from_millis(3)),
            detailed_result_type: "Hit",
            content_type: Some("text/html"),
            content_length: Some("1000"),
            range: None,
            edge_location: "VRG1",
            accept_encoding: None,
            accept: None,
            path_pattern: "*",
            distribution_id: "E1",
            origin_first_byte: None,
        };
        let mut line = String::new();
        format_line(&entry, "VRG1", &mut line);
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(fields.len(), 33, "{line}");
        assert_eq!(HEADER.lines().nth(1).unwrap().split(' ').count() - 1, 33);
        assert_eq!(&fields[..4], &["2026-11-18", "11:06:40", "VRG1", "1234"]);
        assert_eq!(fields[7], "/a%20b.html");
        assert_eq!(fields[8], "200");
        assert_eq!(fields[9], "-");
        assert_eq!(fields[10], "Mozilla/5.0%20(X11;%20Linux)");
        assert_eq!(fields[18], "0.012");
        assert_eq!(fields[20], "TLSv1.3");
        assert_eq!(fields[26], "40000");
        assert_eq!(fields[27], "0.003");
        assert_eq!(&fields[31..], &["-", "-"]);
    }
}

//! The connection-level settings: listeners (plain, TLS, PROXY protocol), certificates, HTTP versions,
//! CloudFront's security policies, origin TLS, origin DNS, and the access log file.

use std::net::SocketAddr;

use super::Problems;
use crate::model::*;
use crate::raw::*;

pub(super) fn validate_listen(listen: Option<Vec<RawListener>>, p: &mut Problems) -> Vec<Listener> {
    let listen = listen.unwrap_or_else(|| vec![RawListener::Address("127.0.0.1:8080".to_string())]);
    if listen.is_empty() {
        p.add("server.listen", "needs at least one address");
    }
    let mut out = Vec::new();
    for (i, l) in listen.into_iter().enumerate() {
        let (address, tls, proxy_protocol) = match l {
            RawListener::Address(a) => (a, false, false),
            RawListener::Options(o) => (o.address, o.tls, o.proxy_protocol),
        };
        let key = format!("server.listen[{i}]");
        match address.parse::<SocketAddr>() {
            Ok(addr) if out.iter().any(|l: &Listener| l.addr == addr && addr.port() != 0) => {
                p.add(key, format!("{addr} is listed twice"))
            }
            Ok(addr) => out.push(Listener { addr, tls, proxy_protocol }),
            Err(_) => p.add(key, format!("`{address}` is not an IP:port address")),
        }
    }
    out
}

pub(super) fn validate_certificates(
    raw: Vec<RawCertificate>,
    listen: &[Listener],
    p: &mut Problems,
) -> Vec<CertificateFiles> {
    if listen.iter().any(|l| l.tls) && raw.is_empty() {
        p.add(
            "server.certificates",
            "a TLS listener needs at least one certificate (certificate_file, private_key_file)",
        );
    }
    let mut out = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        for (name, value) in [("certificate_file", &c.certificate_file), ("private_key_file", &c.private_key_file)] {
            if value.is_empty() {
                p.add(format!("server.certificates[{i}].{name}"), "is empty");
            }
        }
        out.push(CertificateFiles { certificate_file: c.certificate_file, private_key_file: c.private_key_file });
    }
    out
}

pub(super) fn validate_dns(raw: Option<RawDns>, p: &mut Problems) -> DnsSettings {
    let raw = raw.unwrap_or(RawDns { nameservers: Vec::new(), min_ttl: None, max_ttl: None });
    let mut nameservers = Vec::new();
    for (i, n) in raw.nameservers.iter().enumerate() {
        match n.parse::<SocketAddr>() {
            Ok(addr) => nameservers.push(addr),
            Err(_) => p.add(format!("server.dns.nameservers[{i}]"), format!("`{n}` is not an IP:port address")),
        }
    }
    let min_ttl_secs = p.range("server.dns.min_ttl", raw.min_ttl, 0, 86_400, 1);
    let max_ttl_secs = p.range("server.dns.max_ttl", raw.max_ttl, 1, 86_400, 3_600);
    if min_ttl_secs > max_ttl_secs {
        p.add("server.dns", "min_ttl must not be above max_ttl");
    }
    DnsSettings { nameservers, min_ttl_secs, max_ttl_secs }
}

pub(super) fn validate_http_version(raw: Option<&str>, p: &mut Problems) -> HttpVersion {
    match raw {
        None | Some("http2") | Some("http2and3") => HttpVersion::Http2,
        Some("http1.1") => HttpVersion::Http1_1,
        Some("http3") => {
            p.add(
                "distribution.http_version",
                "http3 is not served by verge (pingora 0.9 has no QUIC): use http2 or http2and3",
            );
            HttpVersion::Http2
        }
        Some(other) => {
            p.add("distribution.http_version", format!("`{other}` is not one of http1.1, http2, http2and3, http3"));
            HttpVersion::Http2
        }
    }
}

pub(super) fn validate_viewer_certificate(
    raw: Option<RawViewerCertificate>,
    p: &mut Problems,
) -> MinimumProtocolVersion {
    let Some(raw) = raw else { return MinimumProtocolVersion::TlsV1_2_2021 };
    match raw.ssl_support_method.as_deref() {
        None | Some("sni-only") => {}
        Some(other) => p.add(
            "distribution.viewer_certificate.ssl_support_method",
            format!("`{other}`: verge serves sni-only (vip and static-ip need dedicated addresses per certificate)"),
        ),
    }
    match raw.minimum_protocol_version.as_deref() {
        None => MinimumProtocolVersion::TlsV1_2_2021,
        Some(name) => MinimumProtocolVersion::parse(name).unwrap_or_else(|| {
            let names: Vec<&str> = MinimumProtocolVersion::ALL.iter().map(|(n, _)| *n).collect();
            p.add(
                "distribution.viewer_certificate.minimum_protocol_version",
                format!("`{name}` is not one of {}", names.join(", ")),
            );
            MinimumProtocolVersion::TlsV1_2_2021
        }),
    }
}

/// `origin_ssl_protocols`: CloudFront's names; verge's TLS library offers TLS 1.2 and 1.3 to origins, so
/// the list must allow TLSv1.2 (an origin that only speaks SSLv3/TLSv1/TLSv1.1 cannot be reached).
pub(super) fn validate_origin_ssl_protocols(key: &str, protocols: &[String], p: &mut Problems) {
    for (i, name) in protocols.iter().enumerate() {
        if !matches!(name.as_str(), "SSLv3" | "TLSv1" | "TLSv1.1" | "TLSv1.2") {
            p.add(
                format!("{key}.origin_ssl_protocols[{i}]"),
                format!("`{name}` is not one of SSLv3, TLSv1, TLSv1.1, TLSv1.2"),
            );
        }
    }
    if !protocols.is_empty() && !protocols.iter().any(|n| n == "TLSv1.2") {
        p.add(
            format!("{key}.origin_ssl_protocols"),
            "must include TLSv1.2: verge speaks TLS 1.2 and 1.3 to origins (older protocols are broken and rustls has none)",
        );
    }
}

pub(super) fn validate_realtime_log(raw: Option<RawRealtimeLog>, p: &mut Problems) -> Option<RealtimeLogSettings> {
    let raw = raw?;
    let target = match (raw.file, raw.unix_socket) {
        (Some(file), None) if !file.is_empty() => RealtimeTarget::File(file),
        (None, Some(socket)) if !socket.is_empty() => RealtimeTarget::UnixSocket(socket),
        _ => {
            p.add("server.realtime_log", "needs one of file or unix_socket (not both, not empty)");
            return None;
        }
    };
    let mut fields = Vec::new();
    for (i, name) in raw.fields.iter().enumerate() {
        match REALTIME_FIELDS.iter().find(|f| **f == name.as_str()) {
            Some(field) => fields.push(*field),
            None => p.add(
                format!("server.realtime_log.fields[{i}]"),
                format!("`{name}` is not a real-time log field verge fills ({})", REALTIME_FIELDS.join(", ")),
            ),
        }
    }
    if fields.is_empty() {
        fields = REALTIME_FIELDS.to_vec();
    }
    let rate = raw.sampling_rate.unwrap_or(100.0);
    if !(1.0..=100.0).contains(&rate) {
        p.add("server.realtime_log.sampling_rate", "must be 1–100 (percent), as CloudFront's SamplingRate");
    }
    Some(RealtimeLogSettings { target, fields, sampling: rate.clamp(1.0, 100.0) / 100.0 })
}

pub(super) fn validate_access_log(raw: Option<RawAccessLog>, p: &mut Problems) -> Option<AccessLogSettings> {
    let raw = raw?;
    if raw.file.is_empty() {
        p.add("server.access_log.file", "is empty");
    }
    let rate = raw.sampling_rate.unwrap_or(100.0);
    if !(0.0..=100.0).contains(&rate) {
        p.add("server.access_log.sampling_rate", "must be 0–100 (percent)");
    }
    let rotate_bytes = raw.rotate_mb.map(|mb| p.range("server.access_log.rotate_mb", Some(mb), 1, 1 << 20, 100) << 20);
    let edge_location = raw.edge_location.unwrap_or_else(|| "VRG1".to_string());
    if edge_location.is_empty() || !edge_location.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        p.add("server.access_log.edge_location", "letters, digits and `-` only (e.g. FRA56-C1)");
    }
    Some(AccessLogSettings {
        file: raw.file,
        include_cookies: raw.include_cookies,
        sampling: rate.clamp(0.0, 100.0) / 100.0,
        rotate_bytes,
        rotate_hourly: raw.rotate_hourly,
        edge_location,
    })
}

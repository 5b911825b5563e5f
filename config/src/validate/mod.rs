//! Turns the raw file into the runtime model, checking every reference and every CloudFront range.
//!
//! Problems are collected (not returned at the first one) as key paths plus reasons; `lib.rs` attaches
//! file positions.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::managed;
use crate::model::*;
use crate::pattern::{is_pattern_char, PathPattern};
use crate::raw::*;

mod functions;
mod geo;
mod policies;
mod response_headers;
mod tls;
use functions::{validate_associations, validate_functions};
use policies::{validate_cache_policies, validate_request_policies};

/// Headers an origin's `custom_headers` may not set (docs/cloudfront.md, "Origins and origin groups"); `x-amz-` and `x-edge-` prefixes too.
const DENIED_CUSTOM_HEADERS: &[&str] = &[
    "cache-control",
    "connection",
    "content-length",
    "cookie",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "max-forwards",
    "pragma",
    "proxy-authorization",
    "proxy-connection",
    "range",
    "request-range",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "x-real-ip",
];
const FAILOVER_CODES: &[u16] = &[400, 403, 404, 416, 500, 502, 503, 504];
const ERROR_PAGE_CODES: &[u16] = &[400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504];
pub const MAX_BEHAVIORS: usize = 75;
pub(crate) const MAX_TTL_LIMIT: u64 = 3_153_600_000;

/// Accumulates `(key path, reason)` pairs.
#[derive(Default)]
pub struct Problems(pub Vec<(String, String)>);

impl Problems {
    pub(crate) fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push((key.into(), reason.into()));
    }

    fn range(&mut self, key: &str, value: Option<u64>, lo: u64, hi: u64, default: u64) -> u64 {
        match value {
            None => default,
            Some(v) if v < lo || v > hi => {
                self.add(key, format!("{v} is out of range: must be {lo}-{hi}"));
                default
            }
            Some(v) => v,
        }
    }
}

/// The `server` section. Pure: addresses are IP literals (no name lookup), and a missing thread count
/// stays `None` for the proxy to size from the machine.
pub fn validate_server(raw: Option<RawServer>, p: &mut Problems) -> ServerSettings {
    let raw = raw.unwrap_or(RawServer {
        listen: None,
        h2c: None,
        certificates: Vec::new(),
        dns: None,
        access_log: None,
        realtime_log: None,
        geo: None,
        viewer_idle_timeout: None,
        viewer_header_timeout: None,
        max_connections: None,
        trusted_proxies: Vec::new(),
        threads: None,
        admin: None,
        cache: None,
    });
    let listen = tls::validate_listen(raw.listen, p);
    let certificates = tls::validate_certificates(raw.certificates, &listen, p);
    let dns = tls::validate_dns(raw.dns, p);
    let access_log = tls::validate_access_log(raw.access_log, p);
    let realtime_log = tls::validate_realtime_log(raw.realtime_log, p);
    let geo = geo::validate_geo(raw.geo, p);
    let h2c = raw.h2c.unwrap_or(false);
    let threads = raw.threads.map(|t| p.range("server.threads", Some(t), 1, 256, 1) as usize);
    let viewer_idle_timeout_secs = p.range("server.viewer_idle_timeout", raw.viewer_idle_timeout, 1, 3600, 5);
    let viewer_header_timeout_secs = p.range("server.viewer_header_timeout", raw.viewer_header_timeout, 1, 3600, 10);
    let max_connections = p.range("server.max_connections", raw.max_connections, 1, 1 << 20, 16_384) as usize;
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.trusted_proxies.iter().enumerate() {
        match crate::cidr::Cidr::parse(text) {
            Ok(cidr) => trusted_proxies.push(cidr),
            Err(reason) => p.add(format!("server.trusted_proxies[{i}]"), reason),
        }
    }
    let admin = raw.admin.and_then(|a| validate_admin(a, p));
    let cache = validate_cache(raw.cache, p);
    ServerSettings {
        listen,
        h2c,
        certificates,
        dns,
        access_log,
        realtime_log,
        geo,
        threads,
        viewer_idle_timeout_secs,
        viewer_header_timeout_secs,
        max_connections,
        trusted_proxies,
        admin,
        cache,
    }
}

/// The admin API must say how callers authenticate: a token file, or `unauthenticated: true` on a
/// loopback address (anything else would hand reloads and invalidations to whoever can connect).
fn validate_admin(raw: RawAdmin, p: &mut Problems) -> Option<AdminSettings> {
    let listen = match raw.listen.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            p.add("server.admin.listen", format!("`{}` is not an IP:port address", raw.listen));
            return None;
        }
    };
    let auth = match (raw.token_file, raw.unauthenticated) {
        (Some(_), true) => {
            p.add("server.admin", "token_file and unauthenticated: true exclude each other");
            return None;
        }
        (Some(file), false) if file.is_empty() => {
            p.add("server.admin.token_file", "is empty");
            return None;
        }
        (Some(file), false) => AdminAuth::TokenFile(file),
        (None, true) if listen.ip().is_loopback() => AdminAuth::Unauthenticated,
        (None, true) => {
            p.add("server.admin.unauthenticated", format!("allowed only on a loopback address, not {listen}"));
            return None;
        }
        (None, false) => {
            p.add(
                "server.admin",
                "needs token_file (a bearer token for every route but /healthz), or unauthenticated: true on a loopback address",
            );
            return None;
        }
    };
    Some(AdminSettings { listen, auth })
}

pub fn validate(raw: RawFile, p: &mut Problems) -> Option<Config> {
    let server = validate_server(raw.server, p);
    let dist = raw.distribution.unwrap_or(RawDistribution {
        id: None,
        domain_name: None,
        aliases: Vec::new(),
        default_root_object: None,
        enabled: None,
        http_version: None,
        viewer_certificate: None,
        restrictions: None,
    });
    let http_version = tls::validate_http_version(dist.http_version.as_deref(), p);
    let minimum_protocol_version = tls::validate_viewer_certificate(dist.viewer_certificate, p);
    let geo_restriction = geo::validate_restrictions(dist.restrictions, server.geo.is_some(), p);
    let id = match dist.id {
        Some(id) if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) => {
            p.add("distribution.id", "must be letters and digits only");
            id
        }
        Some(id) => id,
        None => "EVERGEDEFAULT".to_string(),
    };
    let domain_name = match dist.domain_name {
        Some(d) => {
            check_host("distribution.domain_name", &d, p);
            d.to_ascii_lowercase()
        }
        None => format!("{}.verge.local", id.to_ascii_lowercase()),
    };
    if dist.aliases.len() > 100 {
        p.add("distribution.aliases", "at most 100 aliases");
    }
    for (i, a) in dist.aliases.iter().enumerate() {
        check_host(&format!("distribution.aliases[{i}]"), a.trim_start_matches("*."), p);
    }
    let aliases = dist.aliases.iter().map(|a| a.to_ascii_lowercase()).collect();
    if let Some(root) = &dist.default_root_object {
        check_root_object(root, p);
    }

    let origins = validate_origins(&raw.origins, p);
    let origin_index: HashMap<&str, usize> = raw.origins.iter().enumerate().map(|(i, o)| (o.id.as_str(), i)).collect();
    let origin_groups = validate_groups(&raw.origin_groups, &origin_index, p);
    let group_index: HashMap<&str, usize> =
        raw.origin_groups.iter().enumerate().map(|(i, g)| (g.id.as_str(), i)).collect();

    let cache_policies = validate_cache_policies(&raw.cache_policies, p);
    let request_policies = validate_request_policies(&raw.origin_request_policies, p);
    let response_policies = response_headers::validate_response_headers_policies(&raw.response_headers_policies, p);

    let refs = References {
        origins: &origin_index,
        groups: &group_index,
        cache_policies: &cache_policies,
        request_policies: &request_policies,
        response_policies: &response_policies,
    };
    if raw.cache_behaviors.len() > MAX_BEHAVIORS {
        p.add("cache_behaviors", format!("at most {MAX_BEHAVIORS} cache behaviors"));
    }
    let mut behaviors = Vec::new();
    let mut seen_patterns = HashSet::new();
    for (i, b) in raw.cache_behaviors.iter().enumerate() {
        let key = format!("cache_behaviors[{i}]");
        match &b.path_pattern {
            None => p.add(format!("{key}.path_pattern"), "is required"),
            Some(pat) => {
                check_path_pattern(&format!("{key}.path_pattern"), pat, p);
                let normalised = pat.trim_start_matches('/').to_string();
                if !seen_patterns.insert(normalised) {
                    p.add(format!("{key}.path_pattern"), format!("duplicate path pattern `{pat}`"));
                }
            }
        }
        behaviors.push(validate_behavior(&key, b, &refs, p));
    }
    match &raw.default_cache_behavior {
        None => p.add("default_cache_behavior", "is required"),
        Some(b) => {
            if b.path_pattern.is_some() {
                p.add(
                    "default_cache_behavior.path_pattern",
                    "the default behavior always matches `*`; remove this key",
                );
            }
            behaviors.push(validate_behavior("default_cache_behavior", b, &refs, p));
        }
    }
    let custom_error_responses = validate_error_responses(&raw.custom_error_responses, p);
    let association_sites: Vec<(String, [Option<Association>; 4])> = raw
        .cache_behaviors
        .iter()
        .enumerate()
        .map(|(i, _)| format!("cache_behaviors[{i}]"))
        .chain(std::iter::once("default_cache_behavior".to_string()))
        .zip(behaviors.iter())
        .filter_map(|(key, b)| b.as_ref().map(|b| (key, b.functions.clone())))
        .collect();
    let functions = validate_functions(raw.functions, &association_sites, p);

    if !p.0.is_empty() {
        return None;
    }
    let distribution = Distribution {
        id,
        domain_name,
        aliases,
        default_root_object: dist.default_root_object,
        enabled: dist.enabled.unwrap_or(true),
        http_version,
        minimum_protocol_version,
        geo_restriction,
        origins,
        origin_groups,
        behaviors: behaviors.into_iter().flatten().collect(),
        custom_error_responses,
        functions,
    };
    Some(Config { server, distribution })
}

fn check_host(key: &str, host: &str, p: &mut Problems) {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        p.add(key, format!("`{host}` is not a valid host name"));
    }
}

fn check_root_object(root: &str, p: &mut Problems) {
    let key = "distribution.default_root_object";
    if root.starts_with('/') {
        p.add(key, "is an object name without a leading `/` (e.g. index.html)");
    } else if root.is_empty() || root.len() > 255 {
        p.add(key, "must be 1-255 characters");
    } else if !root.chars().all(|c| c.is_ascii_alphanumeric() || "_-.*$/~\"'&".contains(c)) {
        p.add(key, "may contain only A-Z a-z 0-9 _ - . * $ / ~ \" ' &");
    }
}

fn validate_cache(raw: Option<RawCache>, p: &mut Problems) -> CacheSettings {
    let (memory, max_object) = raw.map_or((None, None), |c| (c.memory_mb, c.max_object_mb));
    let memory_mb = p.range("server.cache.memory_mb", memory, 1, 1 << 20, 256);
    let max_object_mb = p.range("server.cache.max_object_mb", max_object, 1, 1 << 20, 8);
    if max_object_mb > memory_mb {
        p.add("server.cache.max_object_mb", "must not exceed server.cache.memory_mb");
    }
    CacheSettings { memory_bytes: memory_mb << 20, max_object_bytes: max_object_mb << 20 }
}

fn check_port(key: &str, port: Option<u64>, default: u16, p: &mut Problems) -> u16 {
    match port {
        None => default,
        Some(80) | Some(443) => port.unwrap_or_default() as u16,
        Some(v) if (1024..=65535).contains(&v) => v as u16,
        Some(v) => {
            p.add(key, format!("{v} is not allowed: use 80, 443 or 1024-65535"));
            default
        }
    }
}

fn validate_origins(raw: &[RawOrigin], p: &mut Problems) -> Vec<Origin> {
    if raw.is_empty() {
        p.add("origins", "needs at least one origin");
    }
    if raw.len() > 100 {
        p.add("origins", "at most 100 origins");
    }
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for (i, o) in raw.iter().enumerate() {
        let key = format!("origins[{i}]");
        if o.id.is_empty() {
            p.add(format!("{key}.id"), "must not be empty");
        } else if !ids.insert(o.id.as_str()) {
            p.add(format!("{key}.id"), format!("duplicate origin id `{}`", o.id));
        }
        // An IP address (IPv6 with or without brackets) or a host name.
        let domain_name = o.domain_name.trim_start_matches('[').trim_end_matches(']');
        if domain_name.parse::<std::net::IpAddr>().is_err() {
            check_host(&format!("{key}.domain_name"), &o.domain_name, p);
        }
        let protocol_policy = match o.protocol_policy.as_deref() {
            None | Some("http-only") => ProtocolPolicy::HttpOnly,
            Some("match-viewer") => ProtocolPolicy::MatchViewer,
            Some("https-only") => ProtocolPolicy::HttpsOnly,
            Some(other) => {
                p.add(
                    format!("{key}.protocol_policy"),
                    format!("`{other}` is not one of http-only, https-only, match-viewer"),
                );
                ProtocolPolicy::HttpOnly
            }
        };
        tls::validate_origin_ssl_protocols(&key, &o.origin_ssl_protocols, p);
        if o.ca_bundle_file.as_deref() == Some("") {
            p.add(format!("{key}.ca_bundle_file"), "is empty");
        }
        let origin_path = o.origin_path.clone().unwrap_or_default();
        if !origin_path.is_empty()
            && (!origin_path.starts_with('/') || origin_path.ends_with('/') || origin_path.len() > 255)
        {
            p.add(
                format!("{key}.origin_path"),
                "must start with `/`, must not end with `/`, and be at most 255 characters",
            );
        }
        let custom_headers = check_custom_headers(&key, &o.custom_headers, p);
        out.push(Origin {
            id: o.id.clone(),
            domain_name: domain_name.to_ascii_lowercase(),
            http_port: check_port(&format!("{key}.http_port"), o.http_port, 80, p),
            https_port: check_port(&format!("{key}.https_port"), o.https_port, 443, p),
            protocol_policy,
            ca_bundle_file: o.ca_bundle_file.clone(),
            origin_shield: o.origin_shield.as_ref().is_some_and(|s| s.enabled),
            origin_path,
            custom_headers,
            connection_attempts: p.range(&format!("{key}.connection_attempts"), o.connection_attempts, 1, 3, 3) as u8,
            connection_timeout_secs: p.range(&format!("{key}.connection_timeout"), o.connection_timeout, 1, 10, 10),
            read_timeout_secs: p.range(&format!("{key}.read_timeout"), o.read_timeout, 1, 120, 30),
            keepalive_timeout_secs: p.range(&format!("{key}.keepalive_timeout"), o.keepalive_timeout, 1, 120, 5),
        });
    }
    out
}

fn check_custom_headers(
    key: &str,
    headers: &std::collections::BTreeMap<String, String>,
    p: &mut Problems,
) -> Vec<(String, String)> {
    if headers.len() > 10 {
        p.add(format!("{key}.custom_headers"), "at most 10 custom headers");
    }
    let mut total = 0;
    for (name, value) in headers {
        let hkey = format!("{key}.custom_headers.{name}");
        let lower = name.to_ascii_lowercase();
        total += name.len() + value.len();
        if DENIED_CUSTOM_HEADERS.contains(&lower.as_str())
            || lower.starts_with("x-amz-")
            || lower.starts_with("x-edge-")
        {
            p.add(hkey, format!("`{name}` cannot be set as an origin custom header"));
        } else if name.is_empty()
            || name.len() > 256
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            p.add(hkey, "header names are 1-256 token characters");
        } else if value.len() > 1783 || value.bytes().any(|b| b < 0x20 && b != b'\t') {
            p.add(hkey, "header values are at most 1,783 printable characters");
        }
    }
    if total > 10_240 {
        p.add(format!("{key}.custom_headers"), "names and values total more than 10,240 characters");
    }
    headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
}

fn validate_groups(raw: &[RawOriginGroup], origins: &HashMap<&str, usize>, p: &mut Problems) -> Vec<OriginGroup> {
    if raw.len() > 10 {
        p.add("origin_groups", "at most 10 origin groups");
    }
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for (i, g) in raw.iter().enumerate() {
        let key = format!("origin_groups[{i}]");
        if origins.contains_key(g.id.as_str()) {
            p.add(format!("{key}.id"), format!("`{}` is already an origin id", g.id));
        } else if g.id.is_empty() || !ids.insert(g.id.as_str()) {
            p.add(format!("{key}.id"), format!("empty or duplicate origin group id `{}`", g.id));
        }
        let member = |field: &str, id: &str, p: &mut Problems| match origins.get(id) {
            Some(i) => *i,
            None => {
                p.add(format!("{key}.{field}"), format!("no origin with id `{id}`"));
                0
            }
        };
        let primary = member("primary", &g.primary, p);
        let secondary = member("secondary", &g.secondary, p);
        if g.primary == g.secondary {
            p.add(format!("{key}.secondary"), "must differ from primary");
        }
        if g.failover_status_codes.is_empty() {
            p.add(format!("{key}.failover_status_codes"), "needs at least one status code");
        }
        let mut codes = Vec::new();
        for (j, c) in g.failover_status_codes.iter().enumerate() {
            if FAILOVER_CODES.iter().any(|f| u64::from(*f) == *c) {
                codes.push(*c as u16);
            } else {
                p.add(format!("{key}.failover_status_codes[{j}]"), format!("{c} is not one of {FAILOVER_CODES:?}"));
            }
        }
        out.push(OriginGroup { id: g.id.clone(), primary, secondary, failover_status_codes: codes });
    }
    out
}

struct References<'a> {
    origins: &'a HashMap<&'a str, usize>,
    groups: &'a HashMap<&'a str, usize>,
    cache_policies: &'a HashMap<String, Arc<CachePolicy>>,
    request_policies: &'a HashMap<String, Arc<OriginRequestPolicy>>,
    response_policies: &'a HashMap<String, Arc<crate::response_headers::ResponseHeadersPolicy>>,
}

fn check_path_pattern(key: &str, pattern: &str, p: &mut Problems) {
    if pattern.is_empty() || pattern.len() > 255 {
        p.add(key, "must be 1-255 characters");
    } else if let Some(bad) = pattern.chars().find(|c| !is_pattern_char(*c)) {
        p.add(key, format!("character `{bad}` is not allowed in a path pattern"));
    }
}

fn method_set(key: &str, methods: &[String], p: &mut Problems) -> u8 {
    let mut bits = 0;
    for (i, m) in methods.iter().enumerate() {
        match MethodSet::bit(m) {
            Some(b) => bits |= b,
            None => p.add(format!("{key}[{i}]"), format!("`{m}` is not an HTTP method CloudFront allows")),
        }
    }
    bits
}

fn validate_behavior(key: &str, b: &RawBehavior, refs: &References<'_>, p: &mut Problems) -> Option<Behavior> {
    let target = if let Some(i) = refs.origins.get(b.target_origin_id.as_str()) {
        Target::Origin(*i)
    } else if let Some(i) = refs.groups.get(b.target_origin_id.as_str()) {
        Target::Group(*i)
    } else {
        p.add(format!("{key}.target_origin_id"), format!("no origin or origin group with id `{}`", b.target_origin_id));
        Target::Origin(0)
    };
    let viewer_protocol_policy = match b.viewer_protocol_policy.as_deref() {
        None | Some("allow-all") => ViewerProtocolPolicy::AllowAll,
        Some("redirect-to-https") => ViewerProtocolPolicy::RedirectToHttps,
        Some("https-only") => ViewerProtocolPolicy::HttpsOnly,
        Some(other) => {
            p.add(
                format!("{key}.viewer_protocol_policy"),
                format!("`{other}` is not one of allow-all, redirect-to-https, https-only"),
            );
            ViewerProtocolPolicy::AllowAll
        }
    };
    const GH: u8 = MethodSet::GET | MethodSet::HEAD;
    const GHO: u8 = GH | MethodSet::OPTIONS;
    const ALL: u8 = 127;
    let allowed = match &b.allowed_methods {
        None => GH,
        Some(m) => {
            let bits = method_set(&format!("{key}.allowed_methods"), m, p);
            if ![GH, GHO, ALL].contains(&bits) {
                p.add(
                    format!("{key}.allowed_methods"),
                    "must be [GET, HEAD], [GET, HEAD, OPTIONS] or all seven methods",
                );
            }
            bits
        }
    };
    let cached = match &b.cached_methods {
        None => GH,
        Some(m) => {
            let bits = method_set(&format!("{key}.cached_methods"), m, p);
            if ![GH, GHO].contains(&bits) {
                p.add(format!("{key}.cached_methods"), "must be [GET, HEAD] or [GET, HEAD, OPTIONS]");
            } else if bits & !allowed != 0 {
                p.add(format!("{key}.cached_methods"), "must be a subset of allowed_methods");
            }
            bits
        }
    };
    let policy_name = b.cache_policy.as_deref().unwrap_or("CachingOptimized");
    let cache_policy = match refs.cache_policies.get(policy_name) {
        Some(c) => Some(c.clone()),
        None => managed::cache_policy(policy_name).map(Arc::new),
    };
    if cache_policy.is_none() {
        let managed: Vec<_> = managed::cache_policy_names().collect();
        p.add(
            format!("{key}.cache_policy"),
            format!(
                "no cache policy `{policy_name}` (define it under cache_policies or use a managed one: {})",
                managed.join(", ")
            ),
        );
    }
    let origin_request_policy = match &b.origin_request_policy {
        None => None,
        Some(name) => {
            let found =
                refs.request_policies.get(name).cloned().or_else(|| managed::origin_request_policy(name).map(Arc::new));
            if found.is_none() {
                p.add(format!("{key}.origin_request_policy"), format!("no origin request policy `{name}`"));
            }
            found
        }
    };
    let response_headers_policy = match &b.response_headers_policy {
        None => None,
        Some(name) => {
            let found = refs.response_policies.get(name).cloned().or_else(|| crate::response_headers::managed(name));
            if found.is_none() {
                let managed: Vec<&str> = crate::response_headers::MANAGED.iter().map(|(n, _)| *n).collect();
                p.add(
                    format!("{key}.response_headers_policy"),
                    format!(
                        "no response headers policy `{name}` (define it under response_headers_policies or use a managed one: {})",
                        managed.join(", ")
                    ),
                );
            }
            found
        }
    };
    let functions = validate_associations(key, &b.lambda_function_associations, p);
    Some(Behavior {
        compress: b.compress,
        response_headers_policy,
        functions,
        path_pattern: b.path_pattern.as_deref().map(PathPattern::new),
        target,
        viewer_protocol_policy,
        allowed_methods: MethodSet::from_bits(allowed),
        cached_methods: MethodSet::from_bits(cached),
        cache_policy: cache_policy?,
        origin_request_policy,
    })
}

fn validate_error_responses(raw: &[RawCustomErrorResponse], p: &mut Problems) -> Vec<CustomErrorResponse> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let key = format!("custom_error_responses[{i}]");
        let code = e.error_code as u16;
        if !ERROR_PAGE_CODES.iter().any(|c| u64::from(*c) == e.error_code) {
            p.add(format!("{key}.error_code"), format!("{} is not one of {ERROR_PAGE_CODES:?}", e.error_code));
        } else if !seen.insert(code) {
            p.add(format!("{key}.error_code"), format!("duplicate entry for {code}"));
        }
        if let Some(path) = &e.response_page_path {
            if !path.starts_with('/') || path.len() > 4000 {
                p.add(format!("{key}.response_page_path"), "must start with `/` (at most 4,000 characters)");
            }
        }
        let response_code = match e.response_code {
            None => None,
            Some(c) if c == 200 || ERROR_PAGE_CODES.iter().any(|x| u64::from(*x) == c) => Some(c as u16),
            Some(c) => {
                p.add(format!("{key}.response_code"), format!("{c} is not 200 or one of {ERROR_PAGE_CODES:?}"));
                None
            }
        };
        if response_code.is_some() != e.response_page_path.is_some() {
            p.add(key.clone(), "response_page_path and response_code go together");
        }
        out.push(CustomErrorResponse {
            error_code: code,
            response_page_path: e.response_page_path.clone(),
            response_code,
            error_caching_min_ttl: e.error_caching_min_ttl.unwrap_or(10),
        });
    }
    out
}

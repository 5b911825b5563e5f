//! The validated file: process settings (bound at start) and the distribution (what a reload swaps), the
//! types the proxy consumes. Every reference is resolved to an index.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::pattern::PathPattern;

/// A whole file: its `server` section and its distribution.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub distribution: Distribution,
}

/// The `server` section: what the process binds and sizes at start. A reload never changes these (it
/// reports a changed section as needing a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: Vec<Listener>,
    /// Plain listeners also take HTTP/2 with prior knowledge (h2c), when the distribution allows HTTP/2.
    pub h2c: bool,
    /// Certificates of the TLS listeners (paths relative to the file); the first is the default, the
    /// others are chosen by SNI. Re-read by every reload.
    pub certificates: Vec<CertificateFiles>,
    pub dns: DnsSettings,
    /// CloudFront's standard access log (33 tab-separated fields) to a file; off when `None`.
    pub access_log: Option<AccessLogSettings>,
    /// CloudFront's real-time log records; off when `None`.
    pub realtime_log: Option<RealtimeLogSettings>,
    /// The viewer-location databases; re-read by every reload (a new monthly database must not need a
    /// restart). `None`: no geo headers, and geo restriction is refused at load.
    pub geo: Option<GeoSettings>,
    /// Worker threads of the viewer service; `None`: one per CPU (the proxy asks the machine).
    pub threads: Option<usize>,
    /// How long a viewer connection may stay silent waiting for (or between reads of) the next request's
    /// headers before it is closed (CloudFront's viewer keep-alive idle timeout: 5 s).
    pub viewer_idle_timeout_secs: u64,
    /// How long a request's line and headers may take from their first byte to their last, however they
    /// trickle in (a slowloris viewer is answered 408 and closed).
    pub viewer_header_timeout_secs: u64,
    /// Viewer connections open at once; one more is answered 503 and closed at once.
    pub max_connections: usize,
    /// Peers (load balancers, TLS terminators) whose `X-Forwarded-Proto` is believed.
    pub trusted_proxies: Vec<crate::cidr::Cidr>,
    /// The admin API (invalidations, reloads, cache stats, metrics); off unless configured.
    pub admin: Option<AdminSettings>,
    pub cache: CacheSettings,
}

impl ServerSettings {
    /// Makes every file path of the settings absolute against `dir` (the settings file's directory), so
    /// they mean the same files whatever file the distribution is read from (a fleet node's deployments
    /// live in its state directory, its settings beside its own file).
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        let resolve = |path: &mut String| {
            if !path.is_empty() && std::path::Path::new(path.as_str()).is_relative() {
                *path = dir.join(path.as_str()).to_string_lossy().into_owned();
            }
        };
        for c in &mut self.certificates {
            resolve(&mut c.certificate_file);
            resolve(&mut c.private_key_file);
        }
        if let Some(log) = &mut self.access_log {
            resolve(&mut log.file);
        }
        if let Some(log) = &mut self.realtime_log {
            match &mut log.target {
                RealtimeTarget::File(path) | RealtimeTarget::UnixSocket(path) => resolve(path),
            }
        }
        if let Some(geo) = &mut self.geo {
            resolve(&mut geo.database);
            if let Some(asn) = &mut geo.asn_database {
                resolve(asn);
            }
        }
        if let Some(AdminSettings { auth: AdminAuth::TokenFile(path), .. }) = &mut self.admin {
            resolve(path);
        }
    }
}

/// One viewer listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    /// TLS (HTTPS, and HTTP/2 by ALPN).
    pub tls: bool,
    /// Every connection starts with a PROXY protocol v1 or v2 header (an L4 load balancer's), which
    /// gives the client address.
    pub proxy_protocol: bool,
}

impl Listener {
    pub fn plain(addr: SocketAddr) -> Self {
        Self { addr, tls: false, proxy_protocol: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub certificate_file: String,
    pub private_key_file: String,
}

/// `server.access_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    /// Relative to the distribution file.
    pub file: String,
    pub include_cookies: bool,
    /// Share of requests logged, 0.0–1.0.
    pub sampling: f64,
    pub rotate_bytes: Option<u64>,
    pub rotate_hourly: bool,
    pub edge_location: String,
}

/// Where real-time log records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealtimeTarget {
    /// Appended to a file (relative to the distribution file).
    File(String),
    /// Written to a Unix stream socket another process listens on (a log shipper).
    UnixSocket(String),
}

/// `server.realtime_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct RealtimeLogSettings {
    pub target: RealtimeTarget,
    /// Field names in CloudFront's order of the config.
    pub fields: Vec<&'static str>,
    /// Share of requests, 0.01–1.0.
    pub sampling: f64,
}

/// CloudFront's real-time log fields verge fills, in CloudFront's order.
pub const REALTIME_FIELDS: &[&str] = &[
    "timestamp",
    "c-ip",
    "time-to-first-byte",
    "sc-status",
    "sc-bytes",
    "cs-method",
    "cs-protocol",
    "cs-host",
    "cs-uri-stem",
    "cs-bytes",
    "x-edge-location",
    "x-edge-request-id",
    "x-host-header",
    "time-taken",
    "cs-protocol-version",
    "c-ip-version",
    "cs-user-agent",
    "cs-referer",
    "cs-cookie",
    "cs-uri-query",
    "x-edge-response-result-type",
    "x-forwarded-for",
    "ssl-protocol",
    "ssl-cipher",
    "x-edge-result-type",
    "sc-content-type",
    "sc-content-len",
    "sc-range-start",
    "sc-range-end",
    "c-port",
    "x-edge-detailed-result-type",
    "cs-accept-encoding",
    "cs-accept",
    "cache-behavior-path-pattern",
    "primary-distribution-id",
    "primary-distribution-dns-name",
    "origin-fbl",
];

/// `server.geo`: MaxMind DB files (paths relative to the distribution file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoSettings {
    pub database: String,
    pub asn_database: Option<String>,
}

/// CloudFront's geo restriction: which viewer countries are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoRestriction {
    /// Only these countries (ISO 3166-1 alpha-2, upper case) are served.
    Whitelist(Vec<[u8; 2]>),
    /// These countries are refused.
    Blacklist(Vec<[u8; 2]>),
}

impl GeoRestriction {
    /// Whether a viewer from `country` is refused; a viewer whose country is not known is served, as
    /// CloudFront serves viewers it cannot place.
    pub fn blocks(&self, country: Option<[u8; 2]>) -> bool {
        match (self, country) {
            (_, None) => false,
            (GeoRestriction::Whitelist(items), Some(c)) => !items.contains(&c),
            (GeoRestriction::Blacklist(items), Some(c)) => items.contains(&c),
        }
    }
}

/// `server.dns`: how origin names are resolved (asynchronously, again when their TTL runs out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Empty: the system's resolvers.
    pub nameservers: Vec<SocketAddr>,
    pub min_ttl_secs: u64,
    pub max_ttl_secs: u64,
}

/// CloudFront's HttpVersion, as far as verge serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1_1,
    /// `http2` and `http2and3` (verge has no HTTP/3: pingora 0.9 has no QUIC).
    Http2,
}

/// CloudFront's security policies (`viewer_certificate.minimum_protocol_version`). rustls speaks TLS 1.2
/// and 1.3 only, so the policies that allow TLS 1.0/1.1 are served as TLS 1.2+ (docs/config.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinimumProtocolVersion {
    TlsV1,
    TlsV1_2016,
    TlsV1_1_2016,
    TlsV1_2_2018,
    TlsV1_2_2019,
    TlsV1_2_2021,
    TlsV1_2_2025,
    TlsV1_3_2025,
}

impl MinimumProtocolVersion {
    pub const ALL: [(&'static str, MinimumProtocolVersion); 8] = [
        ("TLSv1", Self::TlsV1),
        ("TLSv1_2016", Self::TlsV1_2016),
        ("TLSv1.1_2016", Self::TlsV1_1_2016),
        ("TLSv1.2_2018", Self::TlsV1_2_2018),
        ("TLSv1.2_2019", Self::TlsV1_2_2019),
        ("TLSv1.2_2021", Self::TlsV1_2_2021),
        ("TLSv1.2_2025", Self::TlsV1_2_2025),
        ("TLSv1.3_2025", Self::TlsV1_3_2025),
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, v)| *v == self).map_or("", |(n, _)| n)
    }
}

/// `server.admin`: where the admin API listens and how callers prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub auth: AdminAuth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAuth {
    /// `Authorization: Bearer <token>`, the token read from this file (relative to the distribution
    /// file) at start; every route but `/healthz` needs it.
    TokenFile(String),
    /// No authentication: allowed only on a loopback address, and only when asked for.
    Unauthenticated,
}

/// What a reload swaps: CloudFront's DistributionConfig, in verge's model.
#[derive(Debug, Clone)]
pub struct Distribution {
    pub id: String,
    pub domain_name: String,
    /// Lower-cased Host names served; empty means any Host.
    pub aliases: Vec<String>,
    /// Object name (no leading `/`) served for requests to `/`.
    pub default_root_object: Option<String>,
    pub enabled: bool,
    pub http_version: HttpVersion,
    pub minimum_protocol_version: MinimumProtocolVersion,
    pub geo_restriction: Option<GeoRestriction>,
    pub origins: Vec<Origin>,
    pub origin_groups: Vec<OriginGroup>,
    /// Ordered: `cache_behaviors` in file order, then the default behavior last.
    pub behaviors: Vec<Behavior>,
    pub custom_error_responses: Vec<CustomErrorResponse>,
    pub functions: Functions,
}

/// The four Lambda@Edge trigger points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    ViewerRequest,
    OriginRequest,
    OriginResponse,
    ViewerResponse,
}

impl EventType {
    pub const ALL: [EventType; 4] =
        [EventType::ViewerRequest, EventType::OriginRequest, EventType::OriginResponse, EventType::ViewerResponse];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ViewerRequest => "viewer-request",
            EventType::OriginRequest => "origin-request",
            EventType::OriginResponse => "origin-response",
            EventType::ViewerResponse => "viewer-response",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_viewer(self) -> bool {
        matches!(self, EventType::ViewerRequest | EventType::ViewerResponse)
    }

    /// Lambda@Edge quotas for this trigger (docs/cloudfront.md, "Function limits").
    pub fn limits(self) -> TriggerLimits {
        if self.is_viewer() {
            TriggerLimits {
                max_timeout_ms: 5_000,
                max_memory_mb: 128,
                max_package_bytes: 1 << 20,
                max_generated_response_bytes: 40 * 1024,
                max_body_bytes: 40 * 1024,
            }
        } else {
            TriggerLimits {
                max_timeout_ms: 30_000,
                max_memory_mb: 10_240,
                max_package_bytes: 50 << 20,
                max_generated_response_bytes: 1 << 20,
                max_body_bytes: 1 << 20,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerLimits {
    pub max_timeout_ms: u64,
    pub max_memory_mb: u64,
    pub max_package_bytes: u64,
    /// Generated response, headers + body.
    pub max_generated_response_bytes: usize,
    /// IncludeBody exposure.
    pub max_body_bytes: usize,
}

/// A behavior's hook for one trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub event_type: EventType,
    pub arn: crate::arn::FunctionArn,
    pub include_body: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Lambda's execution-environment model: a warm instance serves one call at a time and is reused.
    #[default]
    Warm,
    /// A fresh instance for every call.
    PerRequest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSettings {
    pub memory_mb: u64,
    pub timeout_ms: u64,
    pub env: Vec<(String, String)>,
    pub isolation: Isolation,
}

impl FunctionSettings {
    /// Lambda's default memory, and the timeout of a function without settings (the viewer triggers'
    /// limit, so a default never breaks one).
    pub const DEFAULT_MEMORY_MB: u64 = 128;
    pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
    /// The most memory verge gives a function: one slot of its instance pool. Lambda allows 10,240 MB
    /// for origin triggers; verge refuses more than this at validation instead of capping it silently.
    pub const MAX_MEMORY_MB: u64 = 4_096;
}

#[derive(Debug, Clone, Default)]
pub struct Functions {
    /// The function store directory as written (relative paths are relative to the distribution file).
    pub store: Option<String>,
    /// Per function name; functions without an entry get the defaults of their strictest trigger.
    pub settings: std::collections::BTreeMap<String, FunctionSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub memory_bytes: u64,
    pub max_object_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolPolicy {
    HttpOnly,
    HttpsOnly,
    MatchViewer,
}

#[derive(Debug, Clone)]
pub struct Origin {
    pub id: String,
    pub domain_name: String,
    pub http_port: u16,
    pub https_port: u16,
    pub protocol_policy: ProtocolPolicy,
    /// A PEM CA bundle (relative to the file) that replaces the system roots for this origin.
    pub ca_bundle_file: Option<String>,
    /// Misses go through the fleet's shield tier (CloudFront's OriginShield; a node outside a fleet, or
    /// a fleet without shields, goes to the origin).
    pub origin_shield: bool,
    /// Empty, or a prefix that starts with `/` and does not end with one.
    pub origin_path: String,
    /// Header name (as written) and value, added to every origin request.
    pub custom_headers: Vec<(String, String)>,
    pub connection_attempts: u8,
    pub connection_timeout_secs: u64,
    pub read_timeout_secs: u64,
    pub keepalive_timeout_secs: u64,
}

#[derive(Debug, Clone)]
pub struct OriginGroup {
    pub id: String,
    /// Indexes into `Distribution::origins`.
    pub primary: usize,
    pub secondary: usize,
    pub failover_status_codes: Vec<u16>,
}

/// What a behavior sends requests to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Origin(usize),
    Group(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerProtocolPolicy {
    AllowAll,
    RedirectToHttps,
    HttpsOnly,
}

/// HTTP methods as a bit set, so the per-request check is one AND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MethodSet(u8);

impl MethodSet {
    pub const GET: u8 = 1;
    pub const HEAD: u8 = 2;
    pub const OPTIONS: u8 = 4;
    pub const PUT: u8 = 8;
    pub const POST: u8 = 16;
    pub const PATCH: u8 = 32;
    pub const DELETE: u8 = 64;

    pub fn bit(method: &str) -> Option<u8> {
        Some(match method {
            "GET" => Self::GET,
            "HEAD" => Self::HEAD,
            "OPTIONS" => Self::OPTIONS,
            "PUT" => Self::PUT,
            "POST" => Self::POST,
            "PATCH" => Self::PATCH,
            "DELETE" => Self::DELETE,
            _ => return None,
        })
    }
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }
    pub fn bits(self) -> u8 {
        self.0
    }
    pub fn contains(self, method: &str) -> bool {
        Self::bit(method).is_some_and(|b| self.0 & b != 0)
    }
}

#[derive(Debug, Clone)]
pub struct Behavior {
    /// `None` for the default behavior (`*`).
    pub path_pattern: Option<PathPattern>,
    pub target: Target,
    pub viewer_protocol_policy: ViewerProtocolPolicy,
    pub allowed_methods: MethodSet,
    pub cached_methods: MethodSet,
    pub cache_policy: Arc<CachePolicy>,
    pub origin_request_policy: Option<Arc<OriginRequestPolicy>>,
    /// ResponseHeadersPolicyId: headers set on every response of the behavior, after viewer-response.
    pub response_headers_policy: Option<Arc<crate::response_headers::ResponseHeadersPolicy>>,
    /// Compress: eligible origin responses are compressed (and stored compressed).
    pub compress: bool,
    /// Indexed by `EventType::index`.
    pub functions: [Option<Association>; 4],
}

impl Behavior {
    pub fn matches(&self, path: &str) -> bool {
        self.path_pattern.as_ref().is_none_or(|p| p.matches(path))
    }
}

/// How a cache key or forwarding dimension picks names (`behavior` + `items` in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    None,
    /// Only these names. Header names are stored lower-case; cookie and query names as written.
    Whitelist(Vec<String>),
    AllExcept(Vec<String>),
    All,
}

impl Selection {
    /// True when `name` is selected; `case_insensitive` for header names (stored lower-case).
    pub fn selects(&self, name: &str, case_insensitive: bool) -> bool {
        let listed = |items: &Vec<String>| {
            items.iter().any(|i| if case_insensitive { i.eq_ignore_ascii_case(name) } else { i == name })
        };
        match self {
            Selection::None => false,
            Selection::All => true,
            Selection::Whitelist(items) => listed(items),
            Selection::AllExcept(items) => !listed(items),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    pub name: String,
    pub min_ttl: u64,
    pub default_ttl: u64,
    pub max_ttl: u64,
    pub headers: Selection,
    pub cookies: Selection,
    pub query_strings: Selection,
    pub accept_encoding_gzip: bool,
    pub accept_encoding_brotli: bool,
    /// verge's own setting: zstd is normalised into the key and offered by edge compression.
    pub accept_encoding_zstd: bool,
}

/// Header selection of an origin request policy (it has two more behaviors than a cache policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderForwarding {
    Select(Selection),
    /// Every viewer header.
    AllViewer,
    /// Every viewer header plus the listed CloudFront-* headers (verge makes the connection-level ones).
    AllViewerAndWhitelistCloudFront(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginRequestPolicy {
    pub name: String,
    pub headers: HeaderForwarding,
    pub cookies: Selection,
    pub query_strings: Selection,
}

impl OriginRequestPolicy {
    /// True when the viewer's header `name` (any case) goes to the origin under this policy.
    pub fn forwards_header(&self, name: &str) -> bool {
        match &self.headers {
            HeaderForwarding::Select(s) => s.selects(name, true),
            HeaderForwarding::AllViewer | HeaderForwarding::AllViewerAndWhitelistCloudFront(_) => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CustomErrorResponse {
    pub error_code: u16,
    pub response_page_path: Option<String>,
    pub response_code: Option<u16>,
    pub error_caching_min_ttl: u64,
}

//! The validated distribution: the types the proxy consumes. Every reference is resolved to an index.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::pattern::PathPattern;

#[derive(Debug, Clone)]
pub struct Distribution {
    pub listen: Vec<SocketAddr>,
    /// Worker threads of the viewer service.
    pub threads: usize,
    /// The admin API (invalidations, cache stats); off unless configured.
    pub admin_listen: Option<SocketAddr>,
    pub id: String,
    pub domain_name: String,
    /// Lower-cased Host names served; empty means any Host.
    pub aliases: Vec<String>,
    /// Object name (no leading `/`) served for requests to `/`.
    pub default_root_object: Option<String>,
    pub enabled: bool,
    pub cache: CacheSettings,
    pub origins: Vec<Origin>,
    pub origin_groups: Vec<OriginGroup>,
    /// Ordered: `cache_behaviors` in file order, then the default behavior last.
    pub behaviors: Vec<Behavior>,
    pub custom_error_responses: Vec<CustomErrorResponse>,
}

#[derive(Debug, Clone, Copy)]
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
}

/// Header selection of an origin request policy (it has two more behaviors than a cache policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderForwarding {
    Select(Selection),
    /// Every viewer header.
    AllViewer,
    /// Every viewer header plus the listed CloudFront-* headers (verge adds none yet).
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

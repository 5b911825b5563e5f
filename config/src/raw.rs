//! The distribution file exactly as users write it: serde types that reject unknown keys.
//!
//! Nothing here is validated beyond YAML types; `validate` turns these into `model` types.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// Process settings, bound at start (a reload never changes them).
    pub server: Option<RawServer>,
    pub distribution: Option<RawDistribution>,
    #[serde(default)]
    pub origins: Vec<RawOrigin>,
    #[serde(default)]
    pub origin_groups: Vec<RawOriginGroup>,
    #[serde(default)]
    pub cache_policies: Vec<RawCachePolicy>,
    #[serde(default)]
    pub origin_request_policies: Vec<RawOriginRequestPolicy>,
    #[serde(default)]
    pub response_headers_policies: Vec<RawResponseHeadersPolicy>,
    pub default_cache_behavior: Option<RawBehavior>,
    #[serde(default)]
    pub cache_behaviors: Vec<RawBehavior>,
    #[serde(default)]
    pub custom_error_responses: Vec<RawCustomErrorResponse>,
    pub functions: Option<RawFunctions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunctions {
    pub store: Option<String>,
    #[serde(default)]
    pub settings: BTreeMap<String, RawFunctionSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunctionSettings {
    pub memory_mb: Option<u64>,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub isolation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssociation {
    pub event_type: String,
    pub lambda_function_arn: String,
    #[serde(default)]
    pub include_body: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Vec<RawListener>>,
    /// HTTP/2 with prior knowledge (h2c) on plain listeners.
    pub h2c: Option<bool>,
    /// PEM certificate chains and keys for TLS listeners; the names they are chosen by come from the
    /// certificates themselves (SNI).
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    /// Origin name resolution.
    pub dns: Option<RawDns>,
    /// CloudFront's standard access log, written to a file.
    pub access_log: Option<RawAccessLog>,
    /// CloudFront's real-time log records (JSON lines) to a file or a Unix socket.
    pub realtime_log: Option<RawRealtimeLog>,
    /// The viewer-location databases (geo headers, geo restriction).
    pub geo: Option<RawGeo>,
    pub viewer_idle_timeout: Option<u64>,
    pub viewer_header_timeout: Option<u64>,
    pub max_connections: Option<u64>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub threads: Option<u64>,
    pub admin: Option<RawAdmin>,
    pub cache: Option<RawCache>,
}

/// A listen address: `IP:port` alone (plain HTTP), or with its options.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawListener {
    Address(String),
    Options(RawListenerOptions),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerOptions {
    pub address: String,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub proxy_protocol: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub certificate_file: String,
    pub private_key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub file: String,
    #[serde(default)]
    pub include_cookies: bool,
    /// Percent of requests logged (0–100).
    pub sampling_rate: Option<f64>,
    /// Start a new file when this one reaches this size (MiB).
    pub rotate_mb: Option<u64>,
    /// Start a new file every hour.
    #[serde(default)]
    pub rotate_hourly: bool,
    /// The `x-edge-location` field (CloudFront's POP code).
    pub edge_location: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRealtimeLog {
    pub file: Option<String>,
    pub unix_socket: Option<String>,
    /// CloudFront's real-time log field names; default: every field verge fills.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Percent of requests sent (1–100, as CloudFront's SamplingRate).
    pub sampling_rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// `IP:port` of the DNS servers to ask; default: the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Floor and ceiling on how long an answer is used before asking again (seconds).
    pub min_ttl: Option<u64>,
    pub max_ttl: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawViewerCertificate {
    pub minimum_protocol_version: Option<String>,
    pub ssl_support_method: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: String,
    pub token_file: Option<String>,
    #[serde(default)]
    pub unauthenticated: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDistribution {
    pub id: Option<String>,
    pub domain_name: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub default_root_object: Option<String>,
    pub enabled: Option<bool>,
    /// CloudFront's HttpVersion: http1.1, http2, http2and3 (HTTP/3 is not served), http3 (refused).
    pub http_version: Option<String>,
    pub viewer_certificate: Option<RawViewerCertificate>,
    /// CloudFront's Restrictions (geo restriction).
    pub restrictions: Option<RawRestrictions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestrictions {
    pub geo_restriction: Option<RawGeoRestriction>,
}

/// CloudFront's GeoRestriction: `restriction_type` (`type` also taken) and ISO 3166-1 alpha-2 `items`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoRestriction {
    #[serde(alias = "type")]
    pub restriction_type: String,
    #[serde(default)]
    pub items: Vec<String>,
    /// CloudFront's API carries the count too; checked against `items` when given.
    pub quantity: Option<u64>,
}

/// `server.geo`: MaxMind-format databases for the viewer's location.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeo {
    /// A City (or Country) database: GeoIP2 / GeoLite2 / DB-IP in the MaxMind DB format.
    pub database: String,
    /// An ASN database (GeoLite2-ASN) for `CloudFront-Viewer-ASN`.
    pub asn_database: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOriginShield {
    pub enabled: bool,
    /// CloudFront's OriginShieldRegion: taken and shown, not used (verge's shields are the fleet's
    /// nodes with the shield role).
    pub origin_shield_region: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub memory_mb: Option<u64>,
    pub max_object_mb: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrigin {
    pub id: String,
    pub domain_name: String,
    pub http_port: Option<u64>,
    pub https_port: Option<u64>,
    pub protocol_policy: Option<String>,
    /// CloudFront's OriginSslProtocols.
    #[serde(default)]
    pub origin_ssl_protocols: Vec<String>,
    /// verge's own: a PEM bundle of the CAs this origin's certificate is checked against instead of the
    /// system roots (a private CA).
    pub ca_bundle_file: Option<String>,
    /// CloudFront's OriginShield: misses go through the fleet's shield tier.
    pub origin_shield: Option<RawOriginShield>,
    pub origin_path: Option<String>,
    #[serde(default)]
    pub custom_headers: BTreeMap<String, String>,
    pub connection_attempts: Option<u64>,
    pub connection_timeout: Option<u64>,
    pub read_timeout: Option<u64>,
    pub keepalive_timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOriginGroup {
    pub id: String,
    pub primary: String,
    pub secondary: String,
    #[serde(default)]
    pub failover_status_codes: Vec<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawItems {
    pub behavior: String,
    #[serde(default)]
    pub items: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCachePolicy {
    pub name: String,
    pub comment: Option<String>,
    pub min_ttl: Option<u64>,
    pub default_ttl: Option<u64>,
    pub max_ttl: Option<u64>,
    pub headers: Option<RawItems>,
    pub cookies: Option<RawItems>,
    pub query_strings: Option<RawItems>,
    pub enable_accept_encoding_gzip: Option<bool>,
    pub enable_accept_encoding_brotli: Option<bool>,
    /// verge's own (CloudFront has no zstd): zstd in the normalised Accept-Encoding and at the edge.
    pub enable_accept_encoding_zstd: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOriginRequestPolicy {
    pub name: String,
    pub comment: Option<String>,
    pub headers: Option<RawItems>,
    pub cookies: Option<RawItems>,
    pub query_strings: Option<RawItems>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBehavior {
    pub path_pattern: Option<String>,
    pub target_origin_id: String,
    pub viewer_protocol_policy: Option<String>,
    pub allowed_methods: Option<Vec<String>>,
    pub cached_methods: Option<Vec<String>>,
    pub cache_policy: Option<String>,
    pub origin_request_policy: Option<String>,
    pub response_headers_policy: Option<String>,
    /// Compress: compress eligible responses at the edge (CloudFront's conditions).
    #[serde(default)]
    pub compress: bool,
    #[serde(default)]
    pub lambda_function_associations: Vec<RawAssociation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomErrorResponse {
    pub error_code: u64,
    pub response_page_path: Option<String>,
    pub response_code: Option<u64>,
    pub error_caching_min_ttl: Option<u64>,
}

/// A response headers policy (CloudFront's ResponseHeadersPolicyConfig; `Items` lists flattened).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponseHeadersPolicy {
    pub name: String,
    pub comment: Option<String>,
    pub cors_config: Option<RawCorsConfig>,
    pub security_headers_config: Option<RawSecurityHeadersConfig>,
    #[serde(default)]
    pub custom_headers_config: Vec<RawCustomHeader>,
    #[serde(default)]
    pub remove_headers_config: Vec<String>,
    pub server_timing_headers_config: Option<RawServerTiming>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCorsConfig {
    #[serde(default)]
    pub access_control_allow_origins: Vec<String>,
    #[serde(default)]
    pub access_control_allow_headers: Vec<String>,
    #[serde(default)]
    pub access_control_allow_methods: Vec<String>,
    #[serde(default)]
    pub access_control_allow_credentials: bool,
    #[serde(default)]
    pub access_control_expose_headers: Vec<String>,
    pub access_control_max_age_sec: Option<u64>,
    #[serde(default)]
    pub origin_override: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurityHeadersConfig {
    pub xss_protection: Option<RawXssProtection>,
    pub frame_options: Option<RawFrameOptions>,
    pub referrer_policy: Option<RawReferrerPolicy>,
    pub content_security_policy: Option<RawContentSecurityPolicy>,
    pub content_type_options: Option<RawContentTypeOptions>,
    pub strict_transport_security: Option<RawStrictTransportSecurity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawXssProtection {
    #[serde(default)]
    pub r#override: bool,
    pub protection: bool,
    #[serde(default)]
    pub mode_block: bool,
    pub report_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFrameOptions {
    #[serde(default)]
    pub r#override: bool,
    pub frame_option: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReferrerPolicy {
    #[serde(default)]
    pub r#override: bool,
    pub referrer_policy: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContentSecurityPolicy {
    #[serde(default)]
    pub r#override: bool,
    pub content_security_policy: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContentTypeOptions {
    #[serde(default)]
    pub r#override: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStrictTransportSecurity {
    #[serde(default)]
    pub r#override: bool,
    pub access_control_max_age_sec: u64,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomHeader {
    pub header: String,
    pub value: String,
    #[serde(default)]
    pub r#override: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTiming {
    pub enabled: bool,
    /// Percent of requests, 0–100 (four decimals).
    pub sampling_rate: Option<f64>,
}

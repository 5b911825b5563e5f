//! The immutable runtime snapshot: a validated distribution plus what is derived from it at load time
//! (origin peers, the Via value, allowed hosts, compiled functions). One `ArcSwap` holds it; a request
//! loads it once.

pub mod functions;

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::WrappedX509;
use verge_config::model::{Behavior, Distribution, Origin, ProtocolPolicy, Target};
use verge_config::ServerSettings;

use crate::edge::connection::EdgeHeaders;
use crate::edge::geo::GeoDatabases;

pub struct Snapshot {
    pub dist: Distribution,
    /// (domain name, id) for fast-ABI calls, shared instead of copied per call.
    pub event_distribution: std::sync::Arc<[String; 2]>,
    /// The distribution's Lambda@Edge functions, compiled.
    pub functions: functions::LoadedFunctions,
    /// `1.1 <domain> (verge)`, sent to origins and viewers, as a header value built once.
    pub via_value: http::HeaderValue,
    /// Prebuilt peers per origin, cloned per request (no DNS, no parsing per request).
    pub peers: Vec<OriginPeers>,
    /// The viewer-location databases (`server.geo`), re-read by every reload.
    pub geo: Option<Arc<GeoDatabases>>,
    /// Per behavior: the `CloudFront-*` headers its policies ask for.
    pub edge_headers: Vec<EdgeHeaders>,
    /// Per behavior: whether its pass misses may be exchanged by verge itself (pass_through.rs: it
    /// caches nothing, targets one origin, runs no origin or viewer-response function and no response
    /// headers policy, and the distribution has no custom error page an origin status could call for).
    pub pass_exchange: Vec<bool>,
}

/// An origin's peers: plain, TLS, or both (`match-viewer`), as templates whose address is filled from
/// the origin name's current addresses (`dns.rs`) per connection attempt.
pub struct OriginPeers {
    addrs: Arc<crate::dns::Addresses>,
    http: Option<HttpPeer>,
    https: Option<HttpPeer>,
    /// The origin request's `Host` (plain, TLS), built once instead of formatted per miss.
    host: [http::HeaderValue; 2],
    /// The templates' pool keys (`reuse_hash`: plain, TLS), hashed once instead of per pass miss.
    keys: [u64; 2],
}

impl OriginPeers {
    /// The `Host` an origin request to this origin carries (over TLS or not) when the viewer's is not
    /// forwarded.
    pub fn host(&self, tls: bool) -> &http::HeaderValue {
        &self.host[usize::from(tls)]
    }

    /// The peer for a viewer that came over HTTPS (`viewer_https`) or not, on connection attempt
    /// `attempt` (0-based; each attempt takes the name's next address), when it is the template as
    /// built (the name's address for `attempt` is still the one the template was built with), with its
    /// key in the pool of idle connections (`reuse_hash`); none otherwise. For verge's pass exchange,
    /// which leaves other peers to pingora's path. A reference, not a `Cow`: a `Cow` of a peer is as
    /// large as a peer (~700 bytes), and was copied whole on every return.
    pub fn template_for(&self, viewer_https: bool, attempt: usize) -> Option<(&HttpPeer, u64)> {
        let (template, key) = self.template(viewer_https);
        match &template._address {
            pingora_core::protocols::l4::socket::SocketAddr::Inet(addr)
                if addr.ip() == self.addrs.for_attempt(attempt) =>
            {
                Some((template, key))
            }
            _ => None,
        }
    }

    /// The template for a viewer over HTTPS or not, and its pool key.
    fn template(&self, viewer_https: bool) -> (&HttpPeer, u64) {
        let (preferred, key) = if viewer_https { (&self.https, self.keys[1]) } else { (&self.http, self.keys[0]) };
        match preferred {
            Some(peer) => (peer, key),
            None => match (&self.http, &self.https) {
                (Some(peer), _) => (peer, self.keys[0]),
                (None, Some(peer)) => (peer, self.keys[1]),
                (None, None) => unreachable!("an origin has a peer"),
            },
        }
    }

    pub fn peer(&self, viewer_https: bool, attempt: usize) -> HttpPeer {
        let preferred = if viewer_https { &self.https } else { &self.http };
        let template = preferred.as_ref().or(self.http.as_ref()).or(self.https.as_ref()).expect("an origin has a peer");
        let mut peer = template.clone();
        let port = match &template._address {
            pingora_core::protocols::l4::socket::SocketAddr::Inet(addr) => addr.port(),
            _ => 0,
        };
        peer._address =
            pingora_core::protocols::l4::socket::SocketAddr::Inet((self.addrs.for_attempt(attempt), port).into());
        peer
    }
}

/// Whether requests to `origin` go over TLS for this viewer.
pub fn origin_tls(origin: &Origin, viewer_https: bool) -> bool {
    match origin.protocol_policy {
        ProtocolPolicy::HttpOnly => false,
        ProtocolPolicy::HttpsOnly => true,
        ProtocolPolicy::MatchViewer => viewer_https,
    }
}

impl Snapshot {
    /// Resolves every origin and prepares its peer, and loads every associated function version from the
    /// store (relative to `base_dir`). Fails on an origin that does not resolve or a function that cannot
    /// be loaded.
    pub fn build(
        dist: Distribution,
        base_dir: &std::path::Path,
        engine: Option<&verge_hooks::HookEngine>,
        server: &ServerSettings,
    ) -> Result<Self, String> {
        Self::build_after(dist, base_dir, engine, server, None)
    }

    /// `build` for a reload: function versions unchanged since `previous` are reused, warm.
    pub fn build_after(
        dist: Distribution,
        base_dir: &std::path::Path,
        engine: Option<&verge_hooks::HookEngine>,
        server: &ServerSettings,
        previous: Option<&Snapshot>,
    ) -> Result<Self, String> {
        let previous_functions = previous.map(|p| &p.functions);
        let functions = functions::LoadedFunctions::load(&dist, base_dir, engine, previous_functions)?;
        let mut peers = Vec::with_capacity(dist.origins.len());
        let resolver = crate::dns::OriginDns::get(&server.dns)?;
        for origin in &dist.origins {
            let addrs = resolver.resolve(&origin.domain_name).map_err(|e| format!("origin `{}`: {e}", origin.id))?;
            let ip = addrs.for_attempt(0);
            let ca = match &origin.ca_bundle_file {
                Some(file) => {
                    Some(load_ca_bundle(&base_dir.join(file)).map_err(|e| format!("origin `{}`: {e}", origin.id))?)
                }
                None => None,
            };
            let (plain, tls) = match origin.protocol_policy {
                ProtocolPolicy::HttpOnly => (true, false),
                ProtocolPolicy::HttpsOnly => (false, true),
                ProtocolPolicy::MatchViewer => (true, true),
            };
            let http = plain.then(|| peer_for((ip, origin.http_port).into(), &origin.domain_name, origin, false, None));
            let https =
                tls.then(|| peer_for((ip, origin.https_port).into(), &origin.domain_name, origin, true, ca.clone()));
            let host = [false, true].map(|tls| {
                http::HeaderValue::from_str(&crate::edge::forward::host_header(origin, tls))
                    .map_err(|e| format!("origin `{}`: domain_name is not a Host value: {e}", origin.id))
            });
            let [plain_host, tls_host] = host;
            let key =
                |peer: &Option<HttpPeer>| peer.as_ref().map_or(0, pingora_core::upstreams::peer::Peer::reuse_hash);
            let keys = [key(&http), key(&https)];
            peers.push(OriginPeers { addrs, http, https, host: [plain_host?, tls_host?], keys });
        }
        let via = format!("1.1 {} (verge)", dist.domain_name);
        let via_value = http::HeaderValue::from_str(&via).map_err(|e| format!("distribution.domain_name: {e}"))?;
        let event_distribution = std::sync::Arc::new([dist.domain_name.clone(), dist.id.clone()]);
        let geo = GeoDatabases::load(server.geo.as_ref(), base_dir)?;
        if geo.is_none() && dist.behaviors.iter().any(|b| EdgeHeaders::of(b).wants_location()) {
            tracing::warn!(
                target: "verge::config",
                "a policy asks for CloudFront-Viewer-* location headers but server.geo names no database: they are not added"
            );
        }
        let edge_headers = dist.behaviors.iter().map(EdgeHeaders::of).collect();
        let pass_exchange = crate::pass_through::behaviors_eligible(&dist, &functions);
        Ok(Self { dist, event_distribution, functions, via_value, peers, geo, edge_headers, pass_exchange })
    }

    /// The first behavior whose pattern matches `path` (the default one matches everything).
    pub fn behavior_for(&self, path: &str) -> usize {
        let behaviors = &self.dist.behaviors;
        behaviors.iter().position(|b| b.matches(path)).unwrap_or(behaviors.len() - 1)
    }

    pub fn behavior(&self, index: usize) -> &Behavior {
        &self.dist.behaviors[index]
    }

    /// True when `host` (from the Host header, port stripped, any case) is served.
    pub fn serves_host(&self, host: &str) -> bool {
        let aliases = &self.dist.aliases;
        if aliases.is_empty() {
            return true;
        }
        let host =
            host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
        host.eq_ignore_ascii_case(&self.dist.domain_name)
            || aliases.iter().any(|a| match a.strip_prefix("*.") {
                Some(suffix) => {
                    host.len() > suffix.len() + 1
                        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                        && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                }
                None => a.eq_ignore_ascii_case(host),
            })
    }

    /// The primary origin index of a behavior's target.
    pub fn primary_origin(&self, target: Target) -> usize {
        match target {
            Target::Origin(i) => i,
            Target::Group(g) => self.dist.origin_groups[g].primary,
        }
    }

    /// The custom error page `(response_page_path, response_code)` configured for `status`, if any.
    pub fn custom_error_page(&self, status: u16) -> Option<(&str, u16)> {
        let entry = self.dist.custom_error_responses.iter().find(|e| e.error_code == status)?;
        Some((entry.response_page_path.as_deref()?, entry.response_code?))
    }

    /// `error_caching_min_ttl` for `status` (10 s unless a custom error response says otherwise).
    pub fn error_caching_min_ttl(&self, status: u16) -> u64 {
        self.dist.custom_error_responses.iter().find(|e| e.error_code == status).map_or(10, |e| e.error_caching_min_ttl)
    }
}

/// A PEM bundle of CA certificates, for an origin whose certificate a private CA signed.
pub fn load_ca_bundle(path: &std::path::Path) -> Result<Arc<[WrappedX509]>, String> {
    use rustls::pki_types::pem::PemObject;
    let ders: Vec<rustls::pki_types::CertificateDer<'static>> = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("ca_bundle_file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ca_bundle_file {}: not PEM certificates: {e}", path.display()))?;
    if ders.is_empty() {
        return Err(format!("ca_bundle_file {}: no certificate in the file", path.display()));
    }
    let mut bundle = Vec::with_capacity(ders.len());
    for der in ders {
        // pingora's wrapper panics on a certificate that does not parse: check first.
        x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("ca_bundle_file {}: a certificate does not parse: {e}", path.display()))?;
        bundle.push(WrappedX509::new(der.to_vec(), pingora_core::utils::tls::parse_x509));
    }
    Ok(bundle.into())
}

/// A pingora peer for `addr` with the timeouts of `origin`; over TLS, the certificate is checked
/// against `host` (sent as SNI unless it is an IP address) and the system roots, or `ca`.
pub fn peer_for(
    addr: std::net::SocketAddr,
    host: &str,
    origin: &verge_config::model::Origin,
    tls: bool,
    ca: Option<Arc<[WrappedX509]>>,
) -> HttpPeer {
    // The name is never empty: pingora skips certificate verification for a TLS peer without one.
    let mut peer = HttpPeer::new(addr, tls, host.to_string());
    peer.options.ca = ca;
    let secs = std::time::Duration::from_secs;
    peer.options.connection_timeout = Some(secs(origin.connection_timeout_secs));
    peer.options.read_timeout = Some(secs(origin.read_timeout_secs));
    peer.options.write_timeout = Some(secs(origin.read_timeout_secs));
    peer.options.idle_timeout = Some(secs(origin.keepalive_timeout_secs));
    peer
}

/// The live snapshot; `store` swaps in a new one atomically (requests in flight keep theirs).
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

//! Viewer TLS: certificates from PEM files chosen by SNI (exact names, then wildcards, then the first
//! certificate), CloudFront's security policies as rustls protocol versions, ALPN from the
//! distribution's `http_version`, and session resumption (tickets and a session cache) that survives
//! reloads. A reload builds a new acceptor and swaps it in: new connections get it, open ones keep theirs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora_core::listeners::tls::Acceptor;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use verge_config::model::{CertificateFiles, HttpVersion, MinimumProtocolVersion};

/// Sessions remembered for resumption by session id (TLS 1.2); tickets need no server memory.
const SESSION_CACHE_ENTRIES: usize = 20_000;

/// The TLS listeners' acceptor, swapped by reloads.
pub struct ViewerTls {
    current: ArcSwap<Acceptor>,
    resumption: Resumption,
}

/// What must outlive a rebuild for sessions to resume across it.
struct Resumption {
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

/// What a TLS configuration is built from.
pub struct TlsInputs<'a> {
    pub certificates: &'a [CertificateFiles],
    pub base_dir: &'a Path,
    pub policy: MinimumProtocolVersion,
    pub http_version: HttpVersion,
}

impl ViewerTls {
    pub fn new(inputs: &TlsInputs<'_>) -> Result<Self, String> {
        let ticketer = provider::Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
        let resumption = Resumption { ticketer, cache: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES) };
        let acceptor = build(inputs, &resumption)?;
        Ok(Self { current: ArcSwap::from_pointee(acceptor), resumption })
    }

    /// Builds the configuration anew (certificate files are read again) without installing it.
    pub fn prepare(&self, inputs: &TlsInputs<'_>) -> Result<Acceptor, String> {
        build(inputs, &self.resumption)
    }

    pub fn install(&self, acceptor: Acceptor) {
        self.current.store(Arc::new(acceptor));
    }

    pub fn acceptor(&self) -> Arc<Acceptor> {
        self.current.load_full()
    }
}

fn build(inputs: &TlsInputs<'_>, resumption: &Resumption) -> Result<Acceptor, String> {
    let resolver = Arc::new(CertificateSet::load(inputs.certificates, inputs.base_dir)?);
    let mut suites = provider::default_provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match inputs.policy {
        MinimumProtocolVersion::TlsV1_3_2025 => {
            suites.cipher_suites.retain(|s| s.version() == &rustls::version::TLS13);
            &[&rustls::version::TLS13]
        }
        // rustls has no TLS 1.0/1.1 and offers only AEAD suites with forward secrecy: exactly the
        // TLS 1.2 suites of TLSv1.2_2021, the strictest of the TLS 1.2 policies (docs/config.md).
        _ => &[&rustls::version::TLS12, &rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(suites))
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS policy {}: {e}", inputs.policy.name()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = match inputs.http_version {
        HttpVersion::Http2 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        HttpVersion::Http1_1 => vec![b"http/1.1".to_vec()],
    };
    config.ticketer = resumption.ticketer.clone();
    config.session_storage = resumption.cache.clone();
    Ok(Acceptor::from_server_config(Arc::new(config)))
}

/// The certificates, indexed by the DNS names they carry.
#[derive(Debug)]
struct CertificateSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertificateSet {
    fn load(files: &[CertificateFiles], base_dir: &Path) -> Result<Self, String> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for (i, files) in files.iter().enumerate() {
            let (key, names) = load_certified_key(files, base_dir)
                .map_err(|reason| format!("server.certificates[{i}] ({}): {reason}", files.certificate_file))?;
            let key = Arc::new(key);
            for name in names {
                // The first certificate that names a host wins, as in the file's order.
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_insert_with(|| key.clone()),
                    None => exact.entry(name).or_insert_with(|| key.clone()),
                };
            }
            default.get_or_insert(key);
        }
        let default = default.ok_or("no certificate for the TLS listeners")?;
        Ok(Self { exact, wildcard, default })
    }

    fn for_name(&self, name: &str) -> Arc<CertifiedKey> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        // A wildcard covers exactly one label (RFC 6125 §6.4.3).
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.wildcard.get(parent) {
                return key.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for CertificateSet {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match hello.server_name() {
            Some(name) => self.for_name(name),
            None => self.default.clone(),
        })
    }
}

/// Reads a chain and its key, checks that they belong together, and returns the DNS names of the leaf.
fn load_certified_key(files: &CertificateFiles, base_dir: &Path) -> Result<(CertifiedKey, Vec<String>), String> {
    let cert_path = base_dir.join(&files.certificate_file);
    let key_path = base_dir.join(&files.private_key_file);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert_path.display()))?;
    let leaf = chain.first().ok_or_else(|| format!("{}: no certificate in the file", cert_path.display()))?;
    let names = leaf_names(leaf)?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: no usable PEM private key: {e}", key_path.display()))?;
    let signing_key = provider::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: unsupported private key: {e}", key_path.display()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| format!("the private key does not belong to the certificate: {e}"))?;
    Ok((certified, names))
}

/// The DNS names a certificate is valid for (subjectAltName; the CN only when there is none), lower case.
fn leaf_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("the leaf certificate does not parse: {e}"))?;
    let validity = cert.validity();
    if !validity.is_valid() {
        tracing::warn!(not_after = %validity.not_after, "a viewer certificate is outside its validity period");
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase));
    }
    Ok(names)
}

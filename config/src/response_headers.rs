//! Response headers policies (CloudFront's ResponseHeadersPolicy) as verge applies them: the model, the
//! five managed policies by name and ID, and the checks a custom one must pass.

use std::sync::Arc;

/// One header a policy sets: `name` to `value`, replacing the origin's only with `override`. Built once at
/// load in the forms the proxy inserts without parsing or copying per response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyHeader {
    pub name: http::HeaderName,
    /// The name as written on the wire (lower case), shared, not copied, per insert.
    pub wire_name: bytes::Bytes,
    pub value: http::HeaderValue,
    pub r#override: bool,
}

impl PolicyHeader {
    /// `None` when `name` is not a header name or `value` not a header value (validation says why).
    pub fn new(name: &str, value: &str, r#override: bool) -> Option<Self> {
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_str(value).ok()?;
        let wire_name = bytes::Bytes::copy_from_slice(name.as_str().as_bytes());
        Some(Self { name, wire_name, value, r#override })
    }
}

/// The CORS block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// `*`, exact origins (lower case), or `scheme://*.example.com` (a wildcard as the leftmost label).
    pub allow_origins: Vec<String>,
    /// `Access-Control-Allow-Headers` (names or `*`), for preflight answers.
    pub allow_headers: String,
    /// `Access-Control-Allow-Methods`, for preflight answers.
    pub allow_methods: String,
    pub allow_credentials: bool,
    /// `Access-Control-Expose-Headers`, empty for none.
    pub expose_headers: String,
    pub max_age_sec: Option<u64>,
    pub origin_override: bool,
}

impl Cors {
    /// Whether a request's `Origin` is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|allowed| {
            if allowed == "*" {
                return true;
            }
            match allowed.split_once("://*.") {
                // `https://*.example.com` matches `https://a.example.com` and `https://a.b.example.com`.
                Some((scheme, suffix)) => {
                    origin.len() > scheme.len() + 3 + suffix.len() + 1 && {
                        let (head, tail) = origin.split_at(origin.len() - suffix.len());
                        tail.eq_ignore_ascii_case(suffix)
                            && head.ends_with('.')
                            && head.len() > scheme.len() + 4
                            && head[..scheme.len() + 3].eq_ignore_ascii_case(&format!("{scheme}://"))
                    }
                }
                None => allowed.eq_ignore_ascii_case(origin),
            }
        })
    }

    /// `*` can be sent as `Access-Control-Allow-Origin` (a credentialed answer must name the origin).
    pub fn answers_any_origin(&self) -> bool {
        !self.allow_credentials && self.allow_origins.iter().any(|o| o == "*")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResponseHeadersPolicy {
    pub name: String,
    pub cors: Option<Cors>,
    /// Security headers, then custom headers, in that order.
    pub set: Vec<PolicyHeader>,
    /// Names removed before anything is added.
    pub remove: Vec<http::HeaderName>,
    /// Server-Timing: the share of requests (0.0–1.0) that get it; `None`: off.
    pub server_timing: Option<f64>,
}

/// Headers a policy may not remove (CloudFront's list; `x-amz-cf-`, `x-amzn-`, `x-edge-`, `x-accel-`
/// prefixes too).
pub const UNREMOVABLE: &[&str] = &[
    "connection",
    "content-encoding",
    "content-length",
    "expect",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "warning",
    "x-cache",
    "x-forwarded-proto",
    "x-real-ip",
];

pub fn unremovable(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    UNREMOVABLE.contains(&name.as_str())
        || ["x-amz-cf-", "x-amzn-", "x-edge-", "x-accel-"].iter().any(|p| name.starts_with(p))
}

pub const REFERRER_POLICIES: &[&str] = &[
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];

/// CloudFront's bound on a Content-Security-Policy value.
pub const MAX_CSP: usize = 1_783;

/// The managed policies: (name, ID).
pub const MANAGED: [(&str, &str); 5] = [
    ("SimpleCORS", "60669652-455b-4ae9-85a4-c4c02393f86c"),
    ("CORS-With-Preflight", "5cc3b908-e619-4b99-88e5-2cf7f45965bd"),
    ("SecurityHeadersPolicy", "67f7725c-6f97-4210-82d7-5512b31e9d03"),
    ("CORS-and-SecurityHeadersPolicy", "e61eb60c-9c35-4d20-a928-2b84e02af89c"),
    ("CORS-with-preflight-and-SecurityHeadersPolicy", "eaab4381-ed33-4a86-88ca-d9558dc6cd63"),
];

/// The managed policy called `name_or_id`, if any.
pub fn managed(name_or_id: &str) -> Option<Arc<ResponseHeadersPolicy>> {
    let (name, _) = MANAGED.iter().find(|(n, id)| *n == name_or_id || *id == name_or_id)?;
    let simple = || Cors {
        allow_origins: vec!["*".into()],
        allow_headers: String::new(),
        allow_methods: String::new(),
        allow_credentials: false,
        expose_headers: String::new(),
        max_age_sec: None,
        origin_override: false,
    };
    let preflight = || Cors {
        allow_headers: "*".into(),
        allow_methods: "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT".into(),
        expose_headers: "*".into(),
        ..simple()
    };
    let header = |name: &str, value: &str| PolicyHeader::new(name, value, false).expect("a valid managed header");
    let security = || {
        vec![
            header("referrer-policy", "strict-origin-when-cross-origin"),
            header("strict-transport-security", "max-age=31536000"),
            header("x-content-type-options", "nosniff"),
            header("x-frame-options", "SAMEORIGIN"),
            header("x-xss-protection", "1; mode=block"),
        ]
    };
    let (cors, set) = match *name {
        "SimpleCORS" => (Some(simple()), Vec::new()),
        "CORS-With-Preflight" => (Some(preflight()), Vec::new()),
        "SecurityHeadersPolicy" => (None, security()),
        "CORS-and-SecurityHeadersPolicy" => (Some(simple()), security()),
        _ => (Some(preflight()), security()),
    };
    Some(Arc::new(ResponseHeadersPolicy { name: name.to_string(), cors, set, remove: Vec::new(), server_timing: None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_a_leftmost_wildcard() {
        let cors = Cors {
            allow_origins: vec!["https://app.example.com".into(), "https://*.example.org".into()],
            ..managed("SimpleCORS").unwrap().cors.clone().unwrap()
        };
        assert!(cors.allows("https://app.example.com"));
        assert!(cors.allows("HTTPS://APP.example.com"));
        assert!(cors.allows("https://a.example.org"));
        assert!(cors.allows("https://a.b.example.org"));
        assert!(!cors.allows("https://example.org"), "the wildcard needs a label");
        assert!(!cors.allows("https://evilexample.org"));
        assert!(!cors.allows("http://a.example.org"), "the scheme must match");
        assert!(!cors.allows("https://app.example.com.evil.net"));
    }

    #[test]
    fn managed_policies_by_name_and_id() {
        assert_eq!(managed("67f7725c-6f97-4210-82d7-5512b31e9d03").unwrap().name, "SecurityHeadersPolicy");
        assert!(managed("SimpleCORS").unwrap().cors.as_ref().unwrap().answers_any_origin());
        assert!(managed("Nope").is_none());
        assert!(unremovable("X-Amz-Cf-Id") && unremovable("Content-Length") && !unremovable("server"));
    }
}

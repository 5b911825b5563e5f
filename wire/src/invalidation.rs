//! CloudFront invalidation paths (docs/cloudfront.md, "Invalidations"): case-sensitive, starting with
//! `/`, at most one `*` and only as the last character (`/images/*`, `/file.*`, `/*`). Outside input (the
//! admin API, `verge invalidate`, the fleet's stream): fuzzed (`fuzz/`).

/// A validated invalidation path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidationPath {
    /// Exactly this path (and query, if given).
    Exact(String),
    /// Every object whose path (with query) starts with this prefix.
    Prefix(String),
}

impl InvalidationPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("`{text}`: invalidation paths start with `/`"));
        }
        if text.len() > 4000 {
            return Err(format!("`{text}`: longer than 4,000 characters"));
        }
        // No request path holds these (verge refuses them, or they end the request line), so such an
        // invalidation could never match anything: refused rather than silently accepted.
        if text.bytes().any(|b| b <= b' ' || b == 0x7f) || text.to_ascii_lowercase().contains("%00") {
            return Err(format!("{text:?}: invalidation paths have no spaces, control characters or %00"));
        }
        match text.find('*') {
            None => Ok(Self::Exact(text.to_string())),
            Some(i) if i == text.len() - 1 => Ok(Self::Prefix(text[..i].to_string())),
            Some(_) => Err(format!("`{text}`: `*` is allowed only as the last character")),
        }
    }

    pub fn matches(&self, object_path: &str) -> bool {
        match self {
            Self::Exact(p) => p == object_path,
            Self::Prefix(p) => object_path.starts_with(p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudfront_path_rules() {
        let p = |s| InvalidationPath::parse(s).unwrap();
        assert!(p("/a/b.jpg").matches("/a/b.jpg"));
        assert!(!p("/a/b.jpg").matches("/a/b.jpg?w=1"), "query variants need a wildcard");
        assert!(p("/a/b.jpg*").matches("/a/b.jpg?w=1"));
        assert!(p("/images/*").matches("/images/x/y.png"));
        assert!(!p("/images/*").matches("/Images/x.png"), "case-sensitive");
        assert!(p("/*").matches("/anything"));
        assert!(p("/file.*").matches("/file.css"));
        assert!(InvalidationPath::parse("/a/*/b").is_err());
        assert!(InvalidationPath::parse("a/b").is_err());
        for never_a_request_path in ["/a b", "/%00", "/a%00b", "/tab\there", "/nul\0"] {
            assert!(InvalidationPath::parse(never_a_request_path).is_err(), "{never_a_request_path:?}");
        }
    }
}

//! CloudFront path patterns: case-sensitive globs where `*` matches any run (across `/`) and `?` one char.

/// A compiled path pattern, anchored at the start of the path and at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    /// The pattern with its leading `/` restored, as bytes (leading `/` is optional in the file).
    glob: Vec<u8>,
}

/// Characters CloudFront accepts in a path pattern (docs/cloudfront.md, "Cache behaviors").
pub fn is_pattern_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-.*$/~\"'@:+&?".contains(c)
}

impl PathPattern {
    pub fn new(source: &str) -> Self {
        let mut glob = Vec::with_capacity(source.len() + 1);
        if !source.starts_with('/') && !source.starts_with('*') {
            glob.push(b'/');
        }
        glob.extend_from_slice(source.as_bytes());
        Self { source: source.to_string(), glob }
    }

    /// The pattern as written in the distribution file.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when `path` (no query string) matches. Iterative glob with single backtrack point:
    /// linear in practice, no allocation, no regex engine.
    pub fn matches(&self, path: &str) -> bool {
        let (p, s) = (self.glob.as_slice(), path.as_bytes());
        let (mut pi, mut si) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) && p[pi] != b'*' {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
            } else if let Some((star_pi, star_si)) = star {
                pi = star_pi + 1;
                si = star_si + 1;
                star = Some((star_pi, star_si + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

#[cfg(test)]
mod tests {
    use super::PathPattern;

    fn m(pattern: &str, path: &str) -> bool {
        PathPattern::new(pattern).matches(path)
    }

    #[test]
    fn cloudfront_examples() {
        assert!(m("/images/*", "/images/a/b.jpg"));
        assert!(m("images/*.jpg", "/images/a/b.jpg"), "leading slash optional, * crosses /");
        assert!(!m("*.jpg", "/LOGO.JPG"), "case-sensitive");
        assert!(m("*.doc*", "/a/b.doc"));
        assert!(m("*.doc*", "/a/b.docx"));
        assert!(!m("*.doc?", "/a/b.doc"));
        assert!(m("*.doc?", "/a/b.docx"));
        assert!(m("a*.jpg", "/abc.jpg"), "anchored at the start");
        assert!(!m("a*.jpg", "/x/abc.jpg"));
        assert!(m("*", "/"));
        assert!(m("/api/v?/users", "/api/v2/users"));
        assert!(!m("/api/v?/users", "/api/v22/users"));
        assert!(!m("/images/*", "/img/x"));
    }
}

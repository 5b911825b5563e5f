//! The request path as verge matches, keys and forwards it: one normalised form, so a behavior (and the
//! function or method rule on it) cannot be stepped around by spelling the same path another way that
//! the origin resolves (docs/cloudfront.md, "Request paths").
//!
//! - percent-encoded unreserved characters are decoded (`/%73ecret` is `/secret`, `%2e` is `.`);
//! - dot segments are removed (`/a/./b/../c` is `/a/c`), never above the root;
//! - runs of `/` become one (`//secret` is `/secret`), as nginx's default `merge_slashes` resolves them;
//! - a path that could mean another path once an origin decodes it is refused (400): an encoded `/` or
//!   `\` (`%2F`, `%5C`), a raw `\`, an encoded or raw NUL or control character, or a bad `%` escape.
//!
//! Everything else (reserved characters, other escapes, the query string) is passed on as sent.

use std::borrow::Cow;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// `%2F`, `%5C` or `\`: a separator an origin may read as `/`.
    EncodedSeparator,
    /// A NUL or another control character, raw or encoded.
    ControlCharacter,
    /// `%` not followed by two hex digits.
    BadEscape,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` may need work (almost every path does not: one pass over its bytes, no allocation).
fn needs_work(path: &[u8]) -> bool {
    let mut previous = 0u8;
    for (i, &b) in path.iter().enumerate() {
        if b == b'%' || b == b'\\' || b < 0x20 || b == 0x7f {
            return true;
        }
        if b == b'/' && previous == b'/' {
            return true;
        }
        // A dot segment: `/.` followed by `/`, the end, or `./`.
        if b == b'.' && previous == b'/' {
            let rest = &path[i + 1..];
            if rest.is_empty() || rest[0] == b'/' || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/')) {
                return true;
            }
        }
        previous = b;
    }
    false
}

/// The normalised form of an origin-form path (it starts with `/`; no query string).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, BadPath> {
    if !needs_work(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    // 1. Decode unreserved escapes; refuse the dangerous ones.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) =
                    (bytes.get(i + 1).and_then(|&c| hex(c)), bytes.get(i + 2).and_then(|&c| hex(c)))
                else {
                    return Err(BadPath::BadEscape);
                };
                let value = h << 4 | l;
                match value {
                    b'/' | b'\\' => return Err(BadPath::EncodedSeparator),
                    0..=0x1f | 0x7f => return Err(BadPath::ControlCharacter),
                    v if is_unreserved(v) => decoded.push(v as char),
                    // Other escapes stay as sent (upper-cased hex is not needed: kept byte for byte).
                    _ => decoded.push_str(&path[i..i + 3]),
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(BadPath::EncodedSeparator),
            0..=0x1f | 0x7f => return Err(BadPath::ControlCharacter),
            _ => {}
        }
        // Copy the run up to the next `%`, `\` or control byte (keeps UTF-8 sequences whole).
        let run_end = bytes[i..]
            .iter()
            .position(|&c| c == b'%' || c == b'\\' || c < 0x20 || c == 0x7f)
            .map_or(bytes.len(), |n| i + n);
        decoded.push_str(&path[i..run_end]);
        i = run_end;
    }
    // 2. Merge slashes and remove dot segments (RFC 3986 §5.2.4 on `/`-separated segments).
    let trailing_slash = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (trailing_slash && !out.ends_with('/')) {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_path_become_one_path() {
        for (raw, normal) in [
            ("/secret/x", "/secret/x"),
            ("/public/../secret/x", "/secret/x"),
            ("/public/%2e%2e/secret/x", "/secret/x"),
            ("/public/%2E%2E/secret/x", "/secret/x"),
            ("//secret/x", "/secret/x"),
            ("/./secret/x", "/secret/x"),
            ("/%73ecret/x", "/secret/x"),
            ("/a/b/./c/../d/", "/a/b/d/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/..", "/"),
            ("/", "/"),
            ("/a%20b/caf%C3%A9", "/a%20b/caf%C3%A9"),
            ("/dir/.hidden/..x", "/dir/.hidden/..x"),
            ("/ünïcode/../x", "/x"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(normal), "{raw}");
        }
    }

    #[test]
    fn ordinary_paths_cost_no_allocation() {
        assert!(matches!(normalize("/images/cat.jpg"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a.b/c..d/.e"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(normalize("/public%2F..%2Fsecret/x"), Err(BadPath::EncodedSeparator));
        assert_eq!(normalize("/a%5cb"), Err(BadPath::EncodedSeparator));
        assert_eq!(normalize("/a\\..\\secret"), Err(BadPath::EncodedSeparator));
        assert_eq!(normalize("/a%00b"), Err(BadPath::ControlCharacter));
        assert_eq!(normalize("/a%zz"), Err(BadPath::BadEscape));
        assert_eq!(normalize("/a%2"), Err(BadPath::BadEscape));
    }
}

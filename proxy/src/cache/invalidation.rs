//! CloudFront invalidation paths (docs/cloudfront.md, "Invalidations") and the path index that finds every stored variant of a path.
//!
//! Paths are case-sensitive, start with `/`, and may end with one `*` (`/images/*`, `/file.*`, `/*`). An
//! object's path is its URL path plus the query strings its cache policy keys on (`/a.jpg?w=100`).

use std::collections::HashMap;
use std::sync::Mutex;

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

/// The URL path without its query.
pub fn bare(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// Bare path → stored objects `(storage key, generation)`. Generations let an eviction remove exactly
/// the entry it evicted, never a newer object stored under the same key.
#[derive(Default)]
pub struct PathIndex {
    by_path: Mutex<HashMap<Box<str>, Vec<StoredObject>>>,
}

/// `(storage key, generation)` of one stored object.
type StoredObject = (u128, u64);

impl PathIndex {
    pub fn add(&self, path: &str, key: u128, generation: u64) {
        let mut map = self.by_path.lock().unwrap_or_else(|e| e.into_inner());
        let items = map.entry(bare(path).into()).or_default();
        items.retain(|(k, _)| *k != key);
        items.push((key, generation));
    }

    pub fn remove(&self, path: &str, key: u128, generation: u64) {
        let mut map = self.by_path.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(items) = map.get_mut(bare(path)) {
            items.retain(|item| *item != (key, generation));
            if items.is_empty() {
                map.remove(bare(path));
            }
        }
    }

    /// Storage keys stored under exactly this bare path.
    pub fn keys_for(&self, bare_path: &str) -> Vec<u128> {
        let map = self.by_path.lock().unwrap_or_else(|e| e.into_inner());
        map.get(bare_path).map(|items| items.iter().map(|(k, _)| *k).collect()).unwrap_or_default()
    }

    /// Storage keys whose bare path could match `path` (the caller checks the full path).
    pub fn candidates(&self, path: &InvalidationPath) -> Vec<u128> {
        match path {
            InvalidationPath::Exact(p) => self.keys_for(bare(p)),
            InvalidationPath::Prefix(prefix) if prefix.contains('?') => self.keys_for(bare(prefix)),
            InvalidationPath::Prefix(prefix) => {
                let map = self.by_path.lock().unwrap_or_else(|e| e.into_inner());
                map.iter()
                    .filter(|(p, _)| p.starts_with(prefix.as_str()))
                    .flat_map(|(_, items)| items.iter().map(|(k, _)| *k))
                    .collect()
            }
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

    #[test]
    fn index_tracks_generations() {
        let index = PathIndex::default();
        index.add("/a?x=1", 1, 10);
        index.add("/a", 2, 11);
        index.add("/b/c", 3, 12);
        assert_eq!(index.keys_for("/a").len(), 2);
        index.add("/a", 2, 13); // the same key stored again
        index.remove("/a", 2, 11); // late eviction of the old generation keeps the new one
        assert_eq!(index.keys_for("/a"), vec![1, 2]);
        let prefix = InvalidationPath::parse("/b/*").unwrap();
        assert_eq!(index.candidates(&prefix), vec![3]);
    }
}

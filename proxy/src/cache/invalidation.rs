//! The path index that finds every stored variant of a path, for CloudFront invalidations (the paths
//! themselves are parsed by `verge_wire::invalidation`). An object's path is its URL path plus the query
//! strings its cache policy keys on (`/a.jpg?w=100`).

use std::collections::HashMap;
use std::sync::Mutex;

pub use verge_wire::invalidation::InvalidationPath;

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

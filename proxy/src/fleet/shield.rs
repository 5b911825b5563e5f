//! The shield tier: nodes with the shield role form a ring (pingora-ketama, nginx-compatible consistent
//! hashing) over the cache key; on a miss for an origin with `origin_shield`, an edge node forwards the
//! request to the shield that owns the key instead of the origin, so the whole fleet fetches each object
//! from the origin once. The hop carries the fleet's secret in `x-verge-shield-hop` (a shield believes
//! the viewer address and the edge's `CloudFront-*` headers only from a request that carries it, and a
//! shield never forwards again: no loops) and the viewer's address in `x-verge-viewer`.
//!
//! The ring and the secret are set by the node's agent (from the live nodes in `verge_nodes`, every
//! heartbeat) and read by the proxy per miss: one atomic load.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use pingora_ketama::{Bucket, Continuum};

pub const HOP_HEADER: &str = "x-verge-shield-hop";
pub const VIEWER_HEADER: &str = "x-verge-viewer";
/// The same names parsed once: every request is looked up for them, and a `&str` key is parsed on
/// each lookup.
pub static HOP_NAME: http::HeaderName = http::HeaderName::from_static(HOP_HEADER);
pub static VIEWER_NAME: http::HeaderName = http::HeaderName::from_static(VIEWER_HEADER);

/// The shields this edge forwards to, by their HTTP listener.
pub struct ShieldRing {
    continuum: Continuum,
    pub shields: Vec<SocketAddr>,
}

impl ShieldRing {
    /// `None` for no shields.
    pub fn new(mut shields: Vec<SocketAddr>) -> Option<Self> {
        if shields.is_empty() {
            return None;
        }
        shields.sort_unstable();
        let buckets: Vec<Bucket> = shields.iter().map(|addr| Bucket::new(*addr, 1)).collect();
        Some(Self { continuum: Continuum::new(&buckets), shields })
    }

    /// The shield that owns `key` (the cache key's hash).
    pub fn owner(&self, key: &[u8]) -> Option<SocketAddr> {
        self.continuum.node(key)
    }
}

static RING: ArcSwapOption<ShieldRing> = ArcSwapOption::const_empty();
static SECRET: ArcSwapOption<String> = ArcSwapOption::const_empty();

/// The ring in force (none outside a fleet, on shields, or without live shields).
pub fn ring() -> Option<Arc<ShieldRing>> {
    RING.load_full()
}

/// Replaces the ring when its members changed; says whether they did.
pub fn install(ring: Option<ShieldRing>) -> bool {
    let current = RING.load();
    let same = match (current.as_deref(), &ring) {
        (Some(a), Some(b)) => a.shields == b.shields,
        (None, None) => true,
        _ => false,
    };
    if !same {
        RING.store(ring.map(Arc::new));
    }
    !same
}

pub fn set_secret(secret: String) {
    SECRET.store(Some(Arc::new(secret)));
}

pub fn secret() -> Option<Arc<String>> {
    SECRET.load_full()
}

/// Whether a request's hop header carries the fleet's secret (compared in constant time).
pub fn is_hop(value: Option<&http::HeaderValue>) -> bool {
    let (Some(value), Some(secret)) = (value, SECRET.load_full()) else { return false };
    let (a, b) = (value.as_bytes(), secret.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes as hex, for a fleet's first hop secret.
pub fn new_secret() -> Result<String, String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_shield_that_leaves_moves_only_its_own_keys() {
        let three = ShieldRing::new(vec![addr(1), addr(2), addr(3)]).unwrap();
        let two = ShieldRing::new(vec![addr(1), addr(3)]).unwrap();
        let keys: Vec<[u8; 16]> = (0u32..3000).map(|i| (u128::from(i) * 0x9e37_79b9_7f4a_7c15).to_le_bytes()).collect();
        let mut moved = 0;
        let mut owned_by_leaver = 0;
        for key in &keys {
            let before = three.owner(key).unwrap();
            let after = two.owner(key).unwrap();
            if before == addr(2) {
                owned_by_leaver += 1;
                assert_ne!(after, addr(2));
            } else if before != after {
                moved += 1;
            }
        }
        assert_eq!(moved, 0, "keys of the shields that stay do not move");
        assert!((600..1400).contains(&owned_by_leaver), "about a third of the keys: {owned_by_leaver}");
    }

    #[test]
    fn the_hop_header_must_carry_the_secret() {
        assert!(!is_hop(Some(&http::HeaderValue::from_static("anything"))), "no secret yet: nothing is a hop");
        set_secret("s3cret".to_string());
        assert!(is_hop(Some(&http::HeaderValue::from_static("s3cret"))));
        assert!(!is_hop(Some(&http::HeaderValue::from_static("s3cres"))));
        assert!(!is_hop(None));
    }
}

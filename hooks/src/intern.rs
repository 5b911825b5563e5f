//! Header names and values a warm instance passed before, looked up by their bytes.
//!
//! A hook sets the same constant headers on every call (security headers, cache-control); after the
//! first call each one is a comparison and a reference-count increment, not a parse, a validation and
//! a copy. Dynamic values (a cookie with a timestamp) simply miss: the table stops growing at its cap.

use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue};

use crate::header_block::HeaderBlock;
use crate::validate::NameRules;

/// Entries kept per table, and the longest value kept (a long value is rarely a constant).
const CAP: usize = 32;
const MAX_VALUE: usize = 256;
/// The longest header block kept (a security-headers block is ~300 bytes).
const MAX_BLOCK: usize = 8192;

/// A header name from the guest, with what functions may do with it (docs/cloudfront.md, "What a
/// function may change"), worked out when the name was first seen.
#[derive(Clone)]
pub struct Name {
    pub name: HeaderName,
    pub rules: NameRules,
}

#[derive(Default)]
pub struct Interned {
    names: Table<Name>,
    values: Table<HeaderValue>,
    blocks: Table<Arc<HeaderBlock>>,
    shared: SharedBlocks,
    /// Blocks the guest registered (`verge.header_block_register`), by the number it was given: a
    /// registered block is named by that number on later calls, its bytes neither read nor compared.
    registered: Vec<Arc<HeaderBlock>>,
}

/// A function's header blocks, across its instances: a block an instance has not seen is looked up
/// here before it is parsed, so the same bytes are the same block (and `HeaderBlock::id`) in every
/// instance. A proxy caches per stored object whether a block's lines can be appended to its head, by
/// that id.
#[derive(Default, Clone)]
pub struct SharedBlocks(Arc<Mutex<Seen<Arc<HeaderBlock>>>>);

/// Items with the bytes they were made from.
type Seen<T> = Vec<(Box<[u8]>, T)>;

/// Entries in the order first seen, and where the next lookup probably lands: a hook makes the same
/// calls in the same order every time, so the entry after the last hit is tried first (one compare
/// per call instead of a scan).
struct Table<T> {
    entries: Seen<T>,
    next: usize,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table { entries: Vec::new(), next: 0 }
    }
}

impl<T: Clone> Table<T> {
    fn get(&mut self, raw: &[u8]) -> Option<T> {
        let at = match self.entries.get(self.next) {
            Some((seen, _)) if **seen == *raw => self.next,
            _ => self.entries.iter().position(|(seen, _)| **seen == *raw)?,
        };
        // Past the last entry, the next call (of the next invocation) starts over at the first.
        self.next = if at + 1 == self.entries.len() { 0 } else { at + 1 };
        Some(self.entries[at].1.clone())
    }

    fn keep(&mut self, raw: &[u8], item: &T) {
        if self.entries.len() < CAP {
            self.entries.push((raw.into(), item.clone()));
            self.next = 0;
        }
    }
}

impl Interned {
    /// `raw` as a header name (lower-cased), or `None` when it is not one.
    pub fn name(&mut self, raw: &[u8]) -> Option<Name> {
        if let Some(name) = self.names.get(raw) {
            return Some(name);
        }
        let name = HeaderName::from_bytes(raw).ok()?;
        let name = Name { rules: NameRules::of(name.as_str()), name };
        self.names.keep(raw, &name);
        Some(name)
    }

    /// `raw` as a header value, or `None` when it is not one.
    pub fn value(&mut self, raw: &[u8]) -> Option<HeaderValue> {
        if let Some(value) = self.values.get(raw) {
            return Some(value);
        }
        let value = HeaderValue::from_bytes(raw).ok()?;
        if raw.len() <= MAX_VALUE {
            self.values.keep(raw, &value);
        }
        Some(value)
    }

    pub fn with_shared_blocks(shared: SharedBlocks) -> Self {
        Interned { shared, ..Default::default() }
    }

    /// `raw` as a header block, or the reason it is not one.
    pub fn block(&mut self, raw: &[u8]) -> Result<Arc<HeaderBlock>, String> {
        if let Some(block) = self.blocks.get(raw) {
            return Ok(block);
        }
        if raw.len() > MAX_BLOCK {
            return HeaderBlock::parse(raw).map(Arc::new);
        }
        let block = {
            // Held only while a block is first seen by an instance.
            let mut shared = self.shared.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match shared.iter().find(|(seen, _)| **seen == *raw) {
                Some((_, block)) => block.clone(),
                None => {
                    let block = Arc::new(HeaderBlock::parse(raw)?);
                    if shared.len() < CAP {
                        shared.push((raw.into(), block.clone()));
                    }
                    block
                }
            }
        };
        self.blocks.keep(raw, &block);
        Ok(block)
    }
}

impl Interned {
    /// Registers `raw` as a block for this instance: its number, the same for the same bytes (a guest
    /// that registers on every call does not fill the table), or `None` when it is not a block or
    /// `CAP` blocks are registered already (the guest then passes the bytes each time).
    pub fn register_block(&mut self, raw: &[u8]) -> Option<u32> {
        let block = self.block(raw).ok()?;
        if let Some(at) = self.registered.iter().position(|known| Arc::ptr_eq(known, &block)) {
            return Some(at as u32);
        }
        if self.registered.len() >= CAP {
            return None;
        }
        self.registered.push(block);
        Some(self.registered.len() as u32 - 1)
    }

    /// The block registered as `number`.
    #[inline]
    pub fn registered_block(&self, number: u32) -> Option<&Arc<HeaderBlock>> {
        self.registered.get(number as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_results_match_parsing_and_invalid_input_stays_invalid() {
        let mut interned = Interned::default();
        for _ in 0..2 {
            let frame = interned.name(b"X-Frame-Options").unwrap();
            assert_eq!((frame.name, frame.rules.disallowed), (http::header::X_FRAME_OPTIONS, false));
            let custom = interned.name(b"x-custom").unwrap();
            assert_eq!((custom.name, custom.rules.disallowed), (HeaderName::from_static("x-custom"), false));
            assert!(interned.name(b"Connection").unwrap().rules.disallowed);
            assert_eq!(interned.name(b"Via").unwrap().rules, NameRules::of("via"));
            assert_eq!(interned.value(b"DENY"), Some(HeaderValue::from_static("DENY")));
            assert!(interned.name(b"bad name").is_none());
            assert_eq!(interned.value(b"bad\nvalue"), None);
        }
        for i in 0..100 {
            let value = format!("v{i}");
            assert_eq!(interned.value(value.as_bytes()).unwrap(), value.as_str(), "past the cap, still parsed");
        }
        assert_eq!(interned.values.entries.len(), CAP);
    }

    #[test]
    fn a_block_seen_again_is_the_same_block_and_a_bad_one_stays_bad() {
        let mut interned = Interned::default();
        let first = interned.block(b"x-a: 1\nx-b: 2").unwrap();
        let again = interned.block(b"x-a: 1\nx-b: 2").unwrap();
        assert!(Arc::ptr_eq(&first, &again), "parsed once");
        assert_ne!(interned.block(b"x-a: 1\nx-b: 3").unwrap().fields(), first.fields());
        for _ in 0..2 {
            assert!(interned.block(b"x-a 1").is_err());
        }
        assert_eq!(interned.blocks.entries.len(), 2, "refused blocks are not kept");

        // Another instance of the same function gets the same block; another function's, its own.
        let mut sibling = Interned::with_shared_blocks(interned.shared.clone());
        assert!(Arc::ptr_eq(&sibling.block(b"x-a: 1\nx-b: 2").unwrap(), &first));
        let other = Interned::default().block(b"x-a: 1\nx-b: 2").unwrap();
        assert_ne!(other.id(), first.id());
    }

    #[test]
    fn lookups_in_any_order_find_the_right_entry() {
        let mut interned = Interned::default();
        let names: [&[u8]; 3] = [b"x-a", b"x-b", b"x-c"];
        for order in [[0, 1, 2], [0, 1, 2], [2, 0, 1], [1, 1, 0], [2, 2, 2]] {
            for i in order {
                assert_eq!(interned.name(names[i]).unwrap().name.as_str().as_bytes(), names[i]);
            }
        }
        assert_eq!(interned.names.entries.len(), 3, "each name kept once");
    }

    #[test]
    fn a_registered_block_is_named_by_its_number() {
        let mut interned = Interned::default();
        let first = interned.register_block(b"x-a: 1\nx-b: 2").unwrap();
        assert_eq!(interned.register_block(b"x-a: 1\nx-b: 2"), Some(first), "the same bytes, the same number");
        let second = interned.register_block(b"x-c: 3").unwrap();
        assert_ne!(first, second);
        let interned_block = interned.block(b"x-a: 1\nx-b: 2").unwrap();
        assert!(Arc::ptr_eq(interned.registered_block(first).unwrap(), &interned_block), "the interned block");
        assert_eq!(interned.registered_block(second).unwrap().fields()[0].0.as_str(), "x-c");
        assert!(interned.registered_block(second + 1).is_none());
        assert_eq!(interned.register_block(b"x-a 1"), None, "not a block");
        for i in 0..100 {
            let raw = format!("x-n: {i}");
            let registered = interned.register_block(raw.as_bytes());
            assert_eq!(registered.is_some(), i < CAP - 2, "{i}: the table stops at its cap");
        }
    }
}

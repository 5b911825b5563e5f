//! Header names and values a warm instance passed before, looked up by their bytes.
//!
//! A hook sets the same constant headers on every call (security headers, cache-control); after the
//! first call each one is a comparison and a reference-count increment, not a parse, a validation and
//! a copy. Dynamic values (a cookie with a timestamp) simply miss: the table stops growing at its cap.

use http::{HeaderName, HeaderValue};

use crate::validate::is_disallowed;

/// Entries kept per table, and the longest value kept (a long value is rarely a constant).
const CAP: usize = 32;
const MAX_VALUE: usize = 256;

/// A header name from the guest, with whether functions may see or set it (docs/cloudfront.md, "What a function may change").
#[derive(Clone)]
pub struct Name {
    pub name: HeaderName,
    pub disallowed: bool,
}

#[derive(Default)]
pub struct Interned {
    names: Vec<(Box<[u8]>, Name)>,
    values: Vec<(Box<[u8]>, HeaderValue)>,
}

impl Interned {
    /// `raw` as a header name (lower-cased), or `None` when it is not one.
    pub fn name(&mut self, raw: &[u8]) -> Option<Name> {
        if let Some((_, name)) = self.names.iter().find(|(seen, _)| **seen == *raw) {
            return Some(name.clone());
        }
        let name = HeaderName::from_bytes(raw).ok()?;
        let name = Name { disallowed: is_disallowed(name.as_str()), name };
        if self.names.len() < CAP {
            self.names.push((raw.into(), name.clone()));
        }
        Some(name)
    }

    /// `raw` as a header value, or `None` when it is not one.
    pub fn value(&mut self, raw: &[u8]) -> Option<HeaderValue> {
        if let Some((_, value)) = self.values.iter().find(|(seen, _)| **seen == *raw) {
            return Some(value.clone());
        }
        let value = HeaderValue::from_bytes(raw).ok()?;
        if self.values.len() < CAP && raw.len() <= MAX_VALUE {
            self.values.push((raw.into(), value.clone()));
        }
        Some(value)
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
            assert_eq!((frame.name, frame.disallowed), (http::header::X_FRAME_OPTIONS, false));
            let custom = interned.name(b"x-custom").unwrap();
            assert_eq!((custom.name, custom.disallowed), (HeaderName::from_static("x-custom"), false));
            assert!(interned.name(b"Connection").unwrap().disallowed);
            assert_eq!(interned.value(b"DENY"), Some(HeaderValue::from_static("DENY")));
            assert!(interned.name(b"bad name").is_none());
            assert_eq!(interned.value(b"bad\nvalue"), None);
        }
        for i in 0..100 {
            let value = format!("v{i}");
            assert_eq!(interned.value(value.as_bytes()).unwrap(), value.as_str(), "past the cap, still parsed");
        }
        assert_eq!(interned.values.len(), CAP);
    }
}

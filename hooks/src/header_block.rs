//! A block of header fields a function sets in one host call (`verge.header_set_block`): parsed, checked
//! for form and rendered once per warm instance, then passed along as one change.
//!
//! A hook that sets the same constant headers on every call (the security-headers kind) pays, per field,
//! a host-call entry, two intern-table lookups, a rules check, a recorded change and, on a hit, a
//! search of the stored head and a line written (~0.9k instructions each). As a block it pays one host
//! call, one compare of the block's bytes, one rules check for the whole block and, on a hit whose
//! stored head lacks every name (checked once per stored object and block, then remembered by the
//! block's `id`), one copy of its rendered lines.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderName, HeaderValue};

use crate::validate::NameRules;

/// The fields of a block, in order, each as `header_set` would have made it.
#[derive(Debug)]
pub struct HeaderBlock {
    /// Unique in the process, never 0: what a stored object remembers a block by (a pointer could be
    /// reused by another block once this one is dropped).
    id: u64,
    fields: Box<[(HeaderName, HeaderValue)]>,
    /// `name: value\r\n` for each field, names in their wire case (`http`'s lower case, as a single
    /// `header_set` sends them).
    wire: Box<[u8]>,
    /// No name appears twice (a second `Set` of a name replaces the first: not a line to append).
    distinct: bool,
    /// The union of the names' rules: one check for the block when it allows everything.
    rules: NameRules,
    per_name: Box<[NameRules]>,
}

/// Two blocks are equal when they set the same fields (whatever their ids).
impl PartialEq for HeaderBlock {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl Eq for HeaderBlock {}

impl HeaderBlock {
    /// Parses `name: value` lines (`\n` or `\r\n` after each, the last may go without; blank lines
    /// skipped; spaces and tabs around the value dropped, as HTTP drops them). The reason when a line is
    /// not a valid field.
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        let mut fields = Vec::new();
        for line in raw.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err("a header block line has no ':'".to_string());
            };
            let name = HeaderName::from_bytes(&line[..colon]).map_err(|_| "invalid header name".to_string())?;
            let value = line[colon + 1..].trim_ascii();
            let value = HeaderValue::from_bytes(value).map_err(|_| "invalid header value".to_string())?;
            fields.push((name, value));
        }
        let per_name: Box<[NameRules]> = fields.iter().map(|(name, _)| NameRules::of(name.as_str())).collect();
        let rules = per_name.iter().fold(NameRules::default(), |all, rules| all.union(*rules));
        let mut wire = Vec::with_capacity(raw.len() + 2 * fields.len());
        for (name, value) in &fields {
            wire.extend_from_slice(name.as_str().as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(value.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        let distinct = fields.iter().enumerate().all(|(i, (name, _))| fields[..i].iter().all(|(seen, _)| seen != name));
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(HeaderBlock { id, fields: fields.into(), wire: wire.into(), distinct, rules, per_name })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn fields(&self) -> &[(HeaderName, HeaderValue)] {
        &self.fields
    }

    /// The fields as a head's lines, `\r\n` after each.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    pub fn distinct(&self) -> bool {
        self.distinct
    }

    pub(crate) fn rules(&self) -> NameRules {
        self.rules
    }

    /// Each field's name with its rules (for the reason when the block as a whole is refused).
    pub(crate) fn names_with_rules(&self) -> impl Iterator<Item = (&HeaderName, NameRules)> {
        self.fields.iter().map(|(name, _)| name).zip(self.per_name.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_its_lines_as_single_sets_would_make_them() {
        let block =
            HeaderBlock::parse(b"X-Frame-Options: DENY\r\n\r\nx-custom:\t a b \nstrict-transport-security:max-age=1")
                .unwrap();
        let fields: Vec<(&str, &str)> = block.fields().iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(
            fields,
            [("x-frame-options", "DENY"), ("x-custom", "a b"), ("strict-transport-security", "max-age=1")]
        );
        assert_eq!(block.wire(), b"x-frame-options: DENY\r\nx-custom: a b\r\nstrict-transport-security: max-age=1\r\n");
        assert!(block.distinct());
        assert_ne!(block.id(), HeaderBlock::parse(b"x-frame-options: DENY").unwrap().id());
        assert_eq!(block.rules(), NameRules::default(), "none of these names is restricted");

        assert!(!HeaderBlock::parse(b"x-a: 1\nX-A: 2").unwrap().distinct());
        let restricted = HeaderBlock::parse(b"x-a: 1\nvia: 2").unwrap();
        assert_eq!(restricted.rules(), NameRules::of("via"));
        assert!(HeaderBlock::parse(b"").unwrap().fields().is_empty());
    }

    #[test]
    fn malformed_lines_are_refused_with_a_reason() {
        assert_eq!(HeaderBlock::parse(b"x-a 1").unwrap_err(), "a header block line has no ':'");
        assert_eq!(HeaderBlock::parse(b"bad name: 1").unwrap_err(), "invalid header name");
        assert_eq!(HeaderBlock::parse(b": 1").unwrap_err(), "invalid header name");
        assert_eq!(HeaderBlock::parse(b"x-a: 1\rx").unwrap_err(), "invalid header value");
        assert_eq!(HeaderBlock::parse(b"x-a: \x00").unwrap_err(), "invalid header value");
    }
}

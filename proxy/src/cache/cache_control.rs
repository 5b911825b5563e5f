//! The `Cache-Control` directives of an origin response that the TTL algorithm reads (RFC 9111 §5.2.2),
//! parsed in one pass over the fields' bytes.
//!
//! It reads what pingora-cache's `CacheControl` reads, by the same permissive grammar, so that which
//! objects are stored and for how long did not change when it replaced that parser (a regex run plus a
//! map of every directive, ~4.9k instructions per stored miss; this is a few hundred). The grammar:
//! directives separated by `,` or `;` with optional whitespace around; a name is a token (any byte but
//! controls, space and the separators), compared without case; a value is a token or a quoted string
//! (backslash escapes); a field's first directive starts at its first byte; bytes that fit nowhere are
//! skipped up to the next separator. A later directive of the same name replaces an earlier one.
//! `private` and `no-cache` count only without a value (their `="field"` forms name fields, not the
//! response); `no-store`, `must-revalidate` and `proxy-revalidate` count in any form; a delta-seconds
//! value may be quoted, a larger one than `u32` is `i32::MAX` (RFC 9111 §1.2.2), anything else is no
//! value. The tests compare it with pingora's parser field by field, and so does the `cache_headers`
//! fuzz target.

use pingora_http::ResponseHeader;

/// What the TTL algorithm needs from `Cache-Control`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheDirectives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub max_age: Option<u32>,
    pub s_maxage: Option<u32>,
    pub stale_while_revalidate: Option<u32>,
    pub stale_if_error: Option<u32>,
}

/// The value a delta-seconds directive too large for `u32` takes (RFC 9111 §1.2.2).
const DELTA_SECONDS_OVERFLOW: u32 = i32::MAX as u32;

/// The directives of every `Cache-Control` field of `resp`, in order; all absent when it has none.
pub fn cache_directives(resp: &ResponseHeader) -> CacheDirectives {
    let mut found = Found::default();
    for field in resp.headers.get_all(http::header::CACHE_CONTROL) {
        each_directive(field.as_bytes(), |name, value| found.set(name, value));
    }
    found.directives()
}

/// The last value seen per directive name that matters (`Some(None)`: present without a value).
#[derive(Default)]
struct Found<'a> {
    no_store: bool,
    must_revalidate: bool,
    proxy_revalidate: bool,
    no_cache: Option<Option<&'a [u8]>>,
    private: Option<Option<&'a [u8]>>,
    max_age: Option<Option<&'a [u8]>>,
    s_maxage: Option<Option<&'a [u8]>>,
    stale_while_revalidate: Option<Option<&'a [u8]>>,
    stale_if_error: Option<Option<&'a [u8]>>,
}

impl<'a> Found<'a> {
    fn set(&mut self, name: &[u8], value: Option<&'a [u8]>) {
        // ASCII case is enough: no Unicode letter lowercases to one of these names' letters (pingora
        // lowercased by Unicode rules; only the Kelvin sign becomes ASCII, and no name has a `k`).
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        if is("max-age") {
            self.max_age = Some(value);
        } else if is("no-cache") {
            self.no_cache = Some(value);
        } else if is("no-store") {
            self.no_store = true;
        } else if is("private") {
            self.private = Some(value);
        } else if is("s-maxage") {
            self.s_maxage = Some(value);
        } else if is("must-revalidate") {
            self.must_revalidate = true;
        } else if is("proxy-revalidate") {
            self.proxy_revalidate = true;
        } else if is("stale-while-revalidate") {
            self.stale_while_revalidate = Some(value);
        } else if is("stale-if-error") {
            self.stale_if_error = Some(value);
        }
    }

    fn directives(&self) -> CacheDirectives {
        CacheDirectives {
            no_store: self.no_store,
            no_cache: self.no_cache == Some(None),
            private: self.private == Some(None),
            must_revalidate: self.must_revalidate,
            proxy_revalidate: self.proxy_revalidate,
            max_age: delta_seconds(self.max_age),
            s_maxage: delta_seconds(self.s_maxage),
            stale_while_revalidate: delta_seconds(self.stale_while_revalidate),
            stale_if_error: delta_seconds(self.stale_if_error),
        }
    }
}

/// A delta-seconds value: its quotes (a pair) removed, then digits; `None` when absent or unreadable.
fn delta_seconds(value: Option<Option<&[u8]>>) -> Option<u32> {
    let value = value??;
    let unquoted = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
    match std::str::from_utf8(unquoted).ok()?.parse::<u32>() {
        Ok(secs) => Some(secs),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Some(DELTA_SECONDS_OVERFLOW),
        Err(_) => None,
    }
}

/// Whitespace as the grammar's `\s` (ASCII: includes the vertical tab, which `is_ascii_whitespace` does not).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// `is_token_byte` as a table: one load a byte (a search of the separators was ~40 instructions a
/// byte, most of a stored miss's `Cache-Control` read).
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let separators = b"()<>@,;:\\\"/[]?={}";
    let mut b = 0x21;
    while b < 256 {
        let mut token = b != 0x7f;
        let mut i = 0;
        while i < separators.len() {
            if separators[i] as usize == b {
                token = false;
            }
            i += 1;
        }
        table[b] = token;
        b += 1;
    }
    table
};

fn token_len(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| is_token_byte(**b)).count()
}

/// The length of the quoted string `bytes` starts with, if it starts with a whole one.
fn quoted_len(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some(i + 1),
            // An escape takes the next byte, whatever it is but a line feed (which no field holds).
            b'\\' if i + 1 < bytes.len() && bytes[i + 1] != b'\n' => i += 2,
            b'\\' => return None,
            _ => i += 1,
        }
    }
    None
}

/// Calls `each(name, value)` for every directive of one field, in order.
fn each_directive<'a>(field: &'a [u8], mut each: impl FnMut(&'a [u8], Option<&'a [u8]>)) {
    let mut pos = 0;
    let mut first = true;
    loop {
        // Where the next name starts: the field's first byte for its first directive, else after the
        // next separator (and the whitespace after it) that a name follows.
        let start = if first && token_len(field) > 0 {
            0
        } else {
            let mut from = pos;
            loop {
                let Some(sep) = field[from..].iter().position(|b| *b == b',' || *b == b';') else {
                    return;
                };
                let after = from + sep + 1;
                let name = after + field[after..].iter().take_while(|b| is_space(**b)).count();
                if token_len(&field[name..]) > 0 {
                    break name;
                }
                from = after;
            }
        };
        first = false;
        let name_end = start + token_len(&field[start..]);
        let mut end = name_end;
        let mut value = None;
        if field.get(name_end) == Some(&b'=') {
            let rest = &field[name_end + 1..];
            let len = match token_len(rest) {
                0 => quoted_len(rest),
                n => Some(n),
            };
            if let Some(len) = len {
                value = Some(&rest[..len]);
                end = name_end + 1 + len;
            }
        }
        each(&field[start..name_end], value);
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::cache_control::CacheControl;

    #[test]
    fn the_token_table_holds_exactly_the_token_bytes() {
        for b in 0..=u8::MAX {
            let expected = b > 0x20 && b != 0x7f && !b"()<>@,;:\\\"/[]?={}".contains(&b);
            assert_eq!(is_token_byte(b), expected, "byte {b:#04x}");
        }
    }

    fn response(fields: &[&str]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for field in fields {
            resp.append_header("cache-control", http::HeaderValue::from_bytes(field.as_bytes()).unwrap()).unwrap();
        }
        resp
    }

    /// pingora-cache's reading of the same fields, the parser this one replaced.
    fn pingora(resp: &ResponseHeader) -> CacheDirectives {
        let Some(cc) = CacheControl::from_resp_headers(resp) else { return CacheDirectives::default() };
        CacheDirectives {
            no_store: cc.no_store(),
            no_cache: cc.no_cache(),
            private: cc.private(),
            must_revalidate: cc.must_revalidate(),
            proxy_revalidate: cc.proxy_revalidate(),
            max_age: cc.max_age().ok().flatten(),
            s_maxage: cc.s_maxage().ok().flatten(),
            stale_while_revalidate: cc.stale_while_revalidate().ok().flatten(),
            stale_if_error: cc.stale_if_error().ok().flatten(),
        }
    }

    #[test]
    fn reads_the_directives_the_ttl_algorithm_uses() {
        let d = cache_directives(&response(&["public, max-age=60, s-maxage=\"120\"", "stale-while-revalidate=5"]));
        assert_eq!(
            (d.max_age, d.s_maxage, d.stale_while_revalidate, d.stale_if_error),
            (Some(60), Some(120), Some(5), None)
        );
        assert!(!d.no_store && !d.no_cache && !d.private);
        let d = cache_directives(&response(&["Private, NO-CACHE;no-store", "must-revalidate"]));
        assert!(d.private && d.no_cache && d.no_store && d.must_revalidate && !d.proxy_revalidate);
        // Qualified forms name fields; they do not make the response private or no-cache.
        let d = cache_directives(&response(&["private=\"set-cookie, x-a\", no-cache=x-b, max-age=9"]));
        assert!(!d.private && !d.no_cache);
        assert_eq!(d.max_age, Some(9));
        // The last of a repeated directive counts; too large is i32::MAX; not digits is nothing.
        let d = cache_directives(&response(&["max-age=5, max-age=99999999999", "s-maxage=-1, stale-if-error=1.5"]));
        assert_eq!((d.max_age, d.s_maxage, d.stale_if_error), (Some(i32::MAX as u32), None, None));
        assert_eq!(cache_directives(&response(&[])), CacheDirectives::default());
    }

    #[test]
    fn reads_what_pingoras_parser_reads() {
        let fields = [
            "max-age=60",
            "max-age=60, private",
            " max-age=60",
            "garbage max-age=60",
            "garbage, max-age=60",
            "max-age =60, no-store",
            "max-age= 60",
            "max-age=\"60\"",
            "max-age=\"6\\\"0\"",
            "max-age=\"60",
            "private=\"a, max-age=7",
            "private=\"a\\\", b\", max-age=8",
            "=x, no-cache",
            ",,, ;; no-cache ,",
            "no-cache=, max-age=1",
            "no-cache=\"\"",
            "a=b=c, max-age=3",
            "max-age=+5",
            "max-age=0005",
            "max-age=4294967295",
            "max-age=4294967296",
            "max-age=\"\"",
            "max-age",
            "MAX-AGE=1, Max-Age=2",
            "private, private=x",
            "private=x, private",
            "s-maxage=1;stale-if-error=2;stale-while-revalidate=3",
            "proxy-revalidate=1, must-revalidate=\"x\"",
            "no-store=yes",
            "\tno-store",
            "max-age=1\t,\tno-cache",
            "max-age=1 ; s-maxage=2",
            "ünïcode, max-age=4",
            "max-age=٣",
            "x=\"\\",
            "max-age=1, x=\"unterminated, s-maxage=2",
        ];
        for field in fields {
            let resp = response(&[field]);
            assert_eq!(cache_directives(&resp), pingora(&resp), "{field:?}");
        }
        let two = response(&["max-age=1, private=x", "private, max-age=2"]);
        assert_eq!(cache_directives(&two), pingora(&two));
    }
}

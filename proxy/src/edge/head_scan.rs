//! One pass over an origin's response head written the way nearly every server writes one, for the
//! pass exchange (`origin_head.rs`): `HTTP/1.x DDD reason`, then `Name: value` lines (a name of
//! letters, digits and dashes, one space after the colon, no space after the value), all ending in
//! CRLF. Such a head's viewer copy is its own bytes less a few whole lines, so the scan notes only what
//! decides framing and which lines to drop. Anything else — a head not whole yet, bare LF, folded
//! lines, other spacing, a tab, a control byte, obs-text in the reason, other name bytes, more than
//! `MAX_DROPPED` lines to drop, more than `MAX_FIELDS` fields — is left to httparse: a head this scan takes, httparse takes too, with
//! the same parts (`agrees_with_httparse`, checked by the tests and by the `origin_head` fuzz target
//! on every input it makes). The point is cost: names and values are checked eight bytes at a time,
//! and no field list is built.

use super::origin_head::{classify, read_field, Framed, Named, MAX_FIELDS};

/// Lines a head may need dropped for the scan to take it (more go to httparse).
pub(super) const MAX_DROPPED: usize = 8;

/// A head the scan took.
#[derive(Debug)]
pub(super) struct Scanned<'a> {
    pub(super) code: u16,
    pub(super) http10: bool,
    /// The status line after `HTTP/1.x `, CRLF included (the viewer's is the same after `HTTP/1.1 `).
    pub(super) status_rest: &'a [u8],
    /// Where the fields start and the head's length, blank line included.
    pub(super) fields_at: usize,
    pub(super) length: usize,
    pub(super) framed: Framed<'a>,
    /// Lines (start, end) the viewer does not get, in order: `Connection` and the edge's own fields
    /// always, a `Content-Length` (`only_without_te` true) when there is a `Transfer-Encoding`.
    pub(super) dropped: [(u32, u32, bool); MAX_DROPPED],
    pub(super) dropped_count: usize,
}

impl Scanned<'_> {
    /// The dropped lines that apply.
    pub(super) fn drops(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let te = self.framed.transfer_encoding.is_some();
        self.dropped[..self.dropped_count]
            .iter()
            .filter(move |(_, _, length)| !length || te)
            .map(|&(from, to, _)| (from as usize, to as usize))
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Scans the head at the front of `buf`; `None` leaves it to httparse.
pub(super) fn scan(buf: &[u8]) -> Option<Scanned<'_>> {
    // The status line: `HTTP/1.` version digit, space, three digits, space, reason.
    let line = buf.get(..13)?;
    if &line[..7] != b"HTTP/1." || line[8] != b' ' || line[12] != b' ' {
        return None;
    }
    let http10 = match line[7] {
        b'0' => true,
        b'1' => false,
        _ => return None,
    };
    let mut code = 0u16;
    for digit in &line[9..12] {
        if !digit.is_ascii_digit() {
            return None;
        }
        code = code * 10 + u16::from(digit - b'0');
    }
    let fields_at = line_end(buf, 13, false)? + 2;
    let mut scanned = Scanned {
        code,
        http10,
        status_rest: &buf[9..fields_at],
        fields_at,
        length: 0,
        framed: Framed::default(),
        dropped: [(0, 0, false); MAX_DROPPED],
        dropped_count: 0,
    };
    let mut at = fields_at;
    // httparse refuses a head with more fields than it has slots: so must a head this scan takes.
    for _ in 0..=MAX_FIELDS {
        if *buf.get(at)? == b'\r' {
            if *buf.get(at + 1)? != b'\n' {
                return None;
            }
            scanned.length = at + 2;
            return Some(scanned);
        }
        let name_end = name_end(buf, at)?;
        // `: ` then a value not starting with a space (an empty one is `Name: ` CRLF).
        if buf.get(name_end + 1..name_end + 2)? != b" " {
            return None;
        }
        let value_at = name_end + 2;
        let value_end = line_end(buf, value_at, true)?;
        if value_end > value_at && (buf[value_at] == b' ' || buf[value_end - 1] == b' ') {
            return None;
        }
        let named = classify(&buf[at..name_end]);
        let next = value_end + 2;
        if named != Named::Other {
            read_field(&mut scanned.framed, named, &buf[value_at..value_end]);
        }
        if let Some(only_without_te) = dropped(named) {
            let slot = scanned.dropped.get_mut(scanned.dropped_count)?;
            *slot = (at as u32, next as u32, only_without_te);
            scanned.dropped_count += 1;
        }
        at = next;
    }
    None
}

/// Whether the viewer may not get a field: `Some(false)` never (`Connection`, the edge's `Via`,
/// `X-Cache`, `X-Amz-Cf-Id`), `Some(true)` not beside a `Transfer-Encoding` (`Content-Length`).
fn dropped(named: Named) -> Option<bool> {
    match named {
        Named::Connection | Named::Edge => Some(false),
        Named::ContentLength => Some(true),
        _ => None,
    }
}

/// The colon ending a name of letters, digits and dashes (one at least) from `from`; `None` for any
/// other byte first. Eight bytes at a time: below 0x80, `v + (0x80 - lo)` has its high bit set when
/// `v >= lo` and no carry leaves the byte, so ranges are tested per byte with adds and masks; a byte
/// from 0x80 is marked on its own, and any carry it makes only reaches bytes above it.
fn name_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(chunk) = buf.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().ok()?);
        let lower = x | (ONES * 0x20);
        let at_least = |v: u64, lo: u64| v.wrapping_add(ONES * (0x80 - lo));
        let letter = at_least(lower, 0x61) & !at_least(lower, 0x7b);
        let digit = at_least(x, 0x30) & !at_least(x, 0x3a);
        let not_dash = (x ^ (ONES * 0x2d)).wrapping_add(ONES * 0x7f);
        // A control byte becomes a letter or dash under `| 0x20`: those are tested on `x` alone.
        let control = !at_least(x, 0x20);
        let good = (letter | digit | !not_dash) & !control & !x & HIGH;
        let bad = !good & HIGH;
        if bad == 0 {
            at += 8;
            continue;
        }
        at += (bad.trailing_zeros() / 8) as usize;
        return (at > from && buf[at] == b':').then_some(at);
    }
    while let Some(&b) = buf.get(at) {
        if !(b.is_ascii_alphanumeric() || b == b'-') {
            return (at > from && b == b':').then_some(at);
        }
        at += 1;
    }
    None
}

/// The position of the CRLF ending the line from `from`, whose bytes must all be SP or visible ASCII
/// (or, in a field value when `obs_text`, bytes from 0x80); `None` for anything else or no CRLF yet.
fn line_end(buf: &[u8], from: usize, obs_text: bool) -> Option<usize> {
    let mut at = from;
    // A byte is below 0x20 where `(x - 0x20..) & !x & 0x80..` sets its high bit, DEL where `x ^ 0x7f..`
    // is zero. Borrows only mark bytes above a marked one, so the lowest mark is exact: the only one used.
    while let Some(chunk) = buf.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().ok()?);
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let del = x ^ (ONES * 0x7f);
        let is_del = del.wrapping_sub(ONES) & !del & HIGH;
        let high = if obs_text { 0 } else { x & HIGH };
        let marks = below_space | is_del | high;
        if marks == 0 {
            at += 8;
            continue;
        }
        at += (marks.trailing_zeros() / 8) as usize;
        return crlf_at(buf, at);
    }
    while let Some(&b) = buf.get(at) {
        if b < 0x20 || b == 0x7f || (b >= 0x80 && !obs_text) {
            return crlf_at(buf, at);
        }
        at += 1;
    }
    None
}

fn crlf_at(buf: &[u8], at: usize) -> Option<usize> {
    (buf.get(at..at + 2)? == b"\r\n").then_some(at)
}

/// Whether httparse, with pingora's client settings, reads `buf` as the scan did (same length, status,
/// version, reason, fields) wherever the scan takes it, and the scan dropped exactly the lines of the
/// fields the viewer does not get. For the tests and the fuzz target.
pub fn agrees_with_httparse(buf: &[u8]) -> bool {
    let Some(scanned) = scan(buf) else { return true };
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut fields);
    let mut config = httparse::ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    config.allow_obsolete_multiline_headers_in_responses(true);
    let Ok(httparse::Status::Complete(length)) = config.parse_response(&mut response, buf) else { return false };
    let reason = &scanned.status_rest[4..scanned.status_rest.len() - 2];
    let same_head = length == scanned.length
        && response.code == Some(scanned.code)
        && response.version == Some(u8::from(!scanned.http10))
        && response.reason.map(str::as_bytes) == Some(reason);
    // Every field's line, rebuilt as `Name: value` CRLF, is the next piece of the head; the ones
    // dropped are the ones listed.
    let mut at = scanned.fields_at;
    let mut drops = scanned.dropped[..scanned.dropped_count].iter();
    let same_fields = response.headers.iter().all(|field| {
        let line = [field.name.as_bytes(), b": ", field.value, b"\r\n"].concat();
        let here = buf.get(at..at + line.len()) == Some(&line[..]);
        let listed = dropped(classify(field.name.as_bytes())).is_none_or(|only_without_te| {
            drops.next() == Some(&(at as u32, (at + line.len()) as u32, only_without_te))
        });
        at += line.len();
        here && listed
    });
    same_head && same_fields && at + 2 == scanned.length && drops.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_usual_head_whole() {
        let head = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 28 Nov 2026 20:41:36 GMT\r\n\
                     Content-Length: 1024\r\nConnection: keep-alive\r\nETag: \"5f-400\"\r\nX-Empty: \r\n\r\nbody";
        let scanned = scan(head).expect("a usual head");
        assert_eq!((scanned.code, scanned.http10, scanned.fields_at), (200, false, 17));
        assert_eq!(scanned.length, head.len() - 4);
        assert_eq!(scanned.status_rest, b"200 OK\r\n");
        assert!(scanned.framed.has_date);
        assert_eq!(scanned.framed.content_length, Some(Ok(1024)));
        let drops: Vec<_> = scanned.drops().map(|(from, to)| &head[from..to]).collect();
        assert_eq!(drops, [&b"Connection: keep-alive\r\n"[..]]);
        assert!(agrees_with_httparse(head));
        let chunked = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        let drops: Vec<_> = scan(chunked).unwrap().drops().map(|(from, to)| &chunked[from..to]).collect();
        assert_eq!(drops, [&b"Content-Length: 3\r\n"[..]]);
    }

    #[test]
    fn leaves_other_forms_to_httparse() {
        for head in [
            &b"HTTP/1.1 200 OK\r\nServer: nginx\r\n"[..],
            b"HTTP/1.1 200 OK\nServer: nginx\n\n",
            b"HTTP/1.1 200 OK\r\nServer : nginx\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nServer:nginx\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nServer:  nginx\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nServer: nginx \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nServer:\tnginx\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nServer: a\r\n b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX_Under: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX\rY: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n: a\r\n\r\n",
            b"HTTP/1.1 200 \xe9t\xe9\r\n\r\n",
            b"HTTP/1.1 200\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\x7fb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        ] {
            assert!(scan(head).is_none(), "{:?}", String::from_utf8_lossy(head));
        }
        let many: String = (0..=MAX_DROPPED).map(|_| "Via: 1.1 x\r\n").collect();
        assert!(scan(format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes()).is_none());
        // As many fields as httparse has slots for are taken; one more is not (httparse refuses it).
        for (count, taken) in [(MAX_FIELDS, true), (MAX_FIELDS + 1, false)] {
            let fields: String = (0..count).map(|_| "a: b\r\n").collect();
            let head = format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
            assert_eq!(scan(head.as_bytes()).is_some(), taken, "{count} fields");
            assert!(agrees_with_httparse(head.as_bytes()), "{count} fields");
        }
    }

    /// Heads made by cutting, repeating and changing bytes of real ones: wherever the scan takes one,
    /// httparse reads it the same.
    #[test]
    fn agrees_with_httparse_on_changed_heads() {
        let seeds: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\nServer: nginx/1.22\r\nContent-Length: 12\r\nX-A: \xc3\xa9t\xc3\xa9\r\n\r\n",
            b"HTTP/1.0 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nCache-Control: max-age=60, public\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nVia: 1.1 a\r\nX-Cache: Hit\r\nx-amz-cf-id: q\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        let specials =
            [b'\r', b'\n', b' ', b'\t', b':', 0x7f, 0x80, 0xff, 0, b'a', b'-', b'_', b'Z', b'@', 0x0d | 0x20];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut taken = 0;
        for round in 0..40_000 {
            let mut head = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 3 + 1) {
                if head.is_empty() {
                    break;
                }
                let at = (next() as usize) % head.len();
                match next() % 4 {
                    0 => head[at] = specials[(next() as usize) % specials.len()],
                    1 => head.insert(at, specials[(next() as usize) % specials.len()]),
                    2 => {
                        head.remove(at);
                    }
                    _ => head.truncate(at),
                }
            }
            taken += usize::from(scan(&head).is_some());
            assert!(agrees_with_httparse(&head), "{:?}", String::from_utf8_lossy(&head));
        }
        assert!(taken > 2_000, "the scan took only {taken} changed heads");
    }
}

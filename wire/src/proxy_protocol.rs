//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on listeners behind an L4 load balancer: the
//! header that opens each connection gives the real client address, which then stands in for the
//! socket's peer address everywhere (logs, `X-Forwarded-For`, `CloudFront-Viewer-Address`, events).
//! A connection without a valid header is closed: a PROXY listener never guesses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// v2's 12-byte signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1 headers are at most 107 bytes; v2 headers here at most this (addresses and a few TLVs).
pub const MAX_HEADER: usize = 4096;

/// A parsed header.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// The client's and the balancer-side addresses.
    Proxied { source: SocketAddr, destination: SocketAddr },
    /// A connection of the balancer's own (v2 LOCAL, v1 UNKNOWN): keep the socket's addresses.
    Local,
}

/// Parses a header at the start of `buf`: `Ok(Some((header, length)))`, `Ok(None)` when more bytes are
/// needed, or why the bytes are not a PROXY header.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, &'static str> {
    if buf.len() < V2_SIGNATURE.len() {
        let v1_prefix = &b"PROXY "[..buf.len().min(6)];
        let v2_prefix = &V2_SIGNATURE[..buf.len()];
        return if buf == v2_prefix || buf.starts_with(v1_prefix) { Ok(None) } else { Err("not a PROXY header") };
    }
    if buf.starts_with(V2_SIGNATURE) {
        parse_v2(buf)
    } else if buf.starts_with(b"PROXY ") {
        parse_v1(buf)
    } else {
        Err("not a PROXY header")
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, &'static str> {
    let Some(end) = buf.windows(2).take(107).position(|w| w == b"\r\n") else {
        return if buf.len() >= 107 { Err("PROXY v1 header longer than 107 bytes") } else { Ok(None) };
    };
    let line = std::str::from_utf8(&buf[6..end]).map_err(|_| "PROXY v1 header is not ASCII")?;
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        return Ok(Some((Header::Local, end + 2)));
    }
    let mut next = || fields.next().ok_or("PROXY v1 header has too few fields");
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err("PROXY v1 header has too many fields");
    }
    let ip = |text: &str| -> Result<IpAddr, &'static str> {
        match family {
            "TCP4" => text.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| "PROXY v1: bad IPv4 address"),
            "TCP6" => text.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| "PROXY v1: bad IPv6 address"),
            _ => Err("PROXY v1: family is not TCP4, TCP6 or UNKNOWN"),
        }
    };
    let port = |text: &str| -> Result<u16, &'static str> {
        // Decimal without leading zeros or signs (the spec's form).
        let ok =
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
        ok.then(|| text.parse().ok()).flatten().ok_or("PROXY v1: bad port")
    };
    let source = SocketAddr::new(ip(src)?, port(sport)?);
    let destination = SocketAddr::new(ip(dst)?, port(dport)?);
    Ok(Some((Header::Proxied { source, destination }, end + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, &'static str> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err("PROXY v2: unknown version");
    }
    let length = 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if length > MAX_HEADER {
        return Err("PROXY v2 header too long");
    }
    if buf.len() < length {
        return Ok(None);
    }
    let body = &buf[16..length];
    let header = match (version_command & 0x0f, buf[13]) {
        (0x0, _) => Header::Local,
        (0x1, 0x11) if body.len() >= 12 => {
            let v4 = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Header::Proxied {
                source: SocketAddr::new(IpAddr::V4(v4(0)), port(8)),
                destination: SocketAddr::new(IpAddr::V4(v4(4)), port(10)),
            }
        }
        (0x1, 0x21) if body.len() >= 36 => {
            let v6 = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Header::Proxied {
                source: SocketAddr::new(IpAddr::V6(v6(0)), port(32)),
                destination: SocketAddr::new(IpAddr::V6(v6(16)), port(34)),
            }
        }
        // UNSPEC, UDP or UNIX from a PROXY command: nothing verge can use as a TCP client address.
        (0x1, _) => Header::Local,
        _ => return Err("PROXY v2: unknown command"),
    };
    Ok(Some((header, length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied { source: src.parse().unwrap(), destination: dst.parse().unwrap() }
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse(line).unwrap(), Some((proxied("203.0.113.7:51234", "10.0.0.1:443"), 43)));
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert_eq!(parse(line).unwrap().unwrap().0, proxied("[2001:db8::1]:1", "[2001:db8::2]:2"));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), Some((Header::Local, 15)));
    }

    #[test]
    fn v1_incomplete_and_bad() {
        assert_eq!(parse(b"PRO").unwrap(), None);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4").unwrap(), None);
        assert!(parse(b"GET / HTTP/1.1\r\n").is_err());
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n").is_err());
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n").is_err());
        assert!(parse(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n").is_err());
        assert!(parse(&[b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat()).is_err());
    }

    #[test]
    fn v2_tcp4_tcp6_local() {
        let mut v4 = V2_SIGNATURE.to_vec();
        v4.extend_from_slice(&[0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb]);
        v4.extend_from_slice(b"rest");
        assert_eq!(parse(&v4).unwrap(), Some((proxied("198.51.100.9:8080", "10.0.0.1:443"), 28)));
        assert_eq!(parse(&v4[..20]).unwrap(), None);
        let mut v6 = V2_SIGNATURE.to_vec();
        v6.extend_from_slice(&[0x21, 0x21, 0, 36]);
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
        v6.extend_from_slice(&[0, 80, 0, 81]);
        assert_eq!(parse(&v6).unwrap().unwrap().0, proxied("[::1]:80", "[::]:81"));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).unwrap(), Some((Header::Local, 16)));
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x31, 0x11, 0, 0]);
        assert!(parse(&bad).is_err());
    }
}

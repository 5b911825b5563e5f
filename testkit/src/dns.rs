//! A tiny authoritative DNS server on loopback UDP for tests: answers A queries for the names it is
//! given (addresses in order, a TTL), SERVFAIL for a name marked failing, NXDOMAIN for the rest, and an
//! empty answer to every other query type. Enough for a resolver to follow a changing name.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// What the server says about one name.
#[derive(Clone, Debug)]
pub enum Answer {
    A { addrs: Vec<Ipv4Addr>, ttl: u32 },
    ServFail,
}

#[derive(Clone)]
pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<HashMap<String, Answer>>>,
}

impl DnsServer {
    /// Starts the server on a thread of its own (it lives as long as the process).
    pub fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind DNS");
        let addr = socket.local_addr().unwrap();
        let zone: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let served = zone.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if let Some(reply) = answer(&buf[..n], &served.lock().unwrap()) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Self { addr, zone }
    }

    pub fn set(&self, name: &str, answer: Answer) {
        self.zone.lock().unwrap().insert(name.to_ascii_lowercase(), answer);
    }
}

fn answer(query: &[u8], zone: &HashMap<String, Answer>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    let name = labels.join(".");
    let (rcode, records): (u8, Vec<Ipv4Addr>) = match zone.get(&name) {
        None => (3, Vec::new()),
        Some(Answer::ServFail) => (2, Vec::new()),
        Some(Answer::A { addrs, .. }) if qtype == 1 => (0, addrs.clone()),
        Some(Answer::A { .. }) => (0, Vec::new()),
    };
    let ttl = match zone.get(&name) {
        Some(Answer::A { ttl, .. }) => *ttl,
        _ => 0,
    };
    let mut reply = Vec::with_capacity(question_end + records.len() * 16);
    reply.extend_from_slice(&query[..2]);
    reply.extend_from_slice(&[0x84 | (query[2] & 0x01), 0x80 | rcode]);
    reply.extend_from_slice(&[0, 1]);
    reply.extend_from_slice(&(records.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(query.get(12..question_end)?);
    for ip in records {
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        reply.extend_from_slice(&ttl.to_be_bytes());
        reply.extend_from_slice(&[0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}

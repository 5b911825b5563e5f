//! Per-request state, in small parts: the route (behavior, origin, failover), what origin-request did,
//! the bodies verge holds, and how the response ends. The snapshot is loaded once, so a request never
//! sees two configurations.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use verge_config::model::{EventType, Target};
use verge_hooks::{Call, HookError};

use crate::edge::generated::GeneratedOrigin;
use crate::edge::outcome::Outcome;
use crate::edge::request_id::RequestId;
use crate::snapshot::Snapshot;

/// Parts few requests use (an origin override, the request kept for origin-response, a compressor) are
/// boxed: the context lives in every request's future, so its size is paid by every request (it is
/// built per request and moved with the future; docs/performance.md).
pub struct RequestContext {
    pub snapshot: Arc<Snapshot>,
    pub request_id: RequestId,
    pub started: Instant,
    /// The viewer's IP, for functions and X-Forwarded-For; formatted on first use (hits without
    /// functions never need it).
    pub client_ip: String,
    /// The connection's peer when `client_ip` came from a trusted proxy's `X-Forwarded-For`: what the
    /// origin's `X-Forwarded-For` gets appended.
    pub xff_peer: Option<String>,
    pub route: Route,
    pub origin_request: OriginRequestState,
    pub bodies: Bodies,
    /// The request as sent to the origin, for the origin-response function.
    pub sent_request: Option<Box<pingora_http::RequestHeader>>,
    pub ending: Ending,
    /// The triggers whose functions ran, in order (the access line shows them).
    pub functions_ran: Trail,
    /// How the request ended, once its response head is decided (the access log and metrics read it).
    pub outcome: Option<Outcome>,
    /// The behavior's response headers policy and what it needs of the request (none without a policy).
    pub response_policy: Option<super::response_policy::PolicyRequest>,
    /// Milliseconds from the request's start to the origin's response head (a miss), for Server-Timing.
    pub origin_millis: Option<u64>,
    /// When the response head was handed to the viewer's connection (the log's time-to-first-byte).
    pub response_started: Option<std::time::Duration>,
    /// Compressing the origin's body on its way to the cache (`edge/compress.rs`).
    pub compressor: Option<Box<super::compress::Compressor>>,
    /// This request is an edge node's miss forwarded to this node as the fleet's shield: the edge ran the
    /// viewer-facing part (viewer triggers, policies, redirects, error pages), this node runs the rest.
    pub from_edge: bool,
    /// A miss fetched through a shield that had the object (`OriginShieldHit`).
    pub shield_hit: bool,
    /// The origin's `304` to a revalidation, kept for the stored header's update (`cache::stored_header`).
    pub not_modified: Option<Box<pingora_http::ResponseHeader>>,
    /// A fresh hit sent from its rendered head (`edge/fresh_hit.rs`): what the logs read of it.
    pub served_hit: Option<ServedHit>,
    /// The cache key `fresh_hit` worked out and did not find, for pingora's lookup.
    pub cache_key: Option<Box<crate::cache::key::KeyedRequest>>,
    /// A pass miss verge exchanged with the origin itself (pass_through.rs): what the logs read of it.
    pub served_pass: Option<ServedPass>,
}

/// A response passed on from the origin as bytes (pass_through.rs): the logs read its fields from the
/// origin's head and the size of the head the viewer got.
pub struct ServedPass {
    /// The origin's response head as it arrived, kept only when a CloudFront or real-time log may
    /// read its fields (`observe::first_byte_logged`).
    pub head: Option<Bytes>,
    /// The response head's bytes on the wire, status line and fields.
    pub head_bytes: usize,
}

/// A hit sent from its rendered head (`fresh_hit.rs`): the logs read the stored header and the head's
/// size from it.
pub struct ServedHit {
    pub hit: crate::cache::storage::FreshHit,
    /// The response head's bytes on the wire, status line and fields (CloudFront's sc-bytes count them).
    pub head_bytes: usize,
}

/// Where the request goes.
pub struct Route {
    pub behavior: usize,
    /// Index of the origin currently tried.
    pub origin: usize,
    pub on_secondary: bool,
    /// Connection attempts made to the current origin.
    pub attempts: u8,
    /// Where an origin-request function re-targeted the request: peer and origin path.
    pub origin_override: Option<Box<(HttpPeer, String)>>,
    /// The viewer came over HTTPS (a TLS listener or a trusted proxy's word): `match-viewer` origins
    /// are then reached over TLS.
    pub viewer_https: bool,
    /// The fleet's shield this miss is fetched through (`fleet/shield.rs`), instead of the origin.
    pub shield: Option<std::net::SocketAddr>,
    /// The shield could not be reached: this request goes to the origin itself.
    pub shield_skipped: bool,
}

/// What the origin-request function did (it runs once per origin tried, before connecting).
pub enum OriginRequestState {
    NotRun,
    /// It ran for origin `origin` and changed the request (replayed on the origin request).
    Ran {
        origin: usize,
        changes: Option<Box<Call>>,
    },
    /// It answered: pingora fetches the answer from memory and caches it like an origin response.
    Generated(GeneratedOrigin),
}

/// Request and response bodies verge holds for this request.
#[derive(Default)]
pub struct Bodies {
    /// The viewer's request body (IncludeBody), read once.
    pub request: Option<Bytes>,
    /// The body to send to the origin in place of the viewer's (IncludeBody read it already).
    pub forward: Option<Bytes>,
    /// Whether this attempt's origin request already carries `forward`.
    pub forward_sent: bool,
    /// A body an origin-response function put in place of the origin's.
    pub origin_replacement: Option<Bytes>,
}

/// How the response to the viewer ends, beyond passing on what the origin or the cache sent.
pub enum Ending {
    Proxied,
    /// verge answered the request itself (already written).
    Answered,
    /// A function failed inside a pingora phase: `fail_to_proxy` sends its error page.
    FunctionFailed(HookError),
    /// A body-less origin error with a custom error response: `fail_to_proxy` sends the page.
    CustomErrorPage {
        status: u16,
    },
    /// The custom error page's body replaces the error's own on the way out.
    ReplacingBody(Option<Bytes>),
}

/// Triggers in the order their functions ran; the first eight are kept (failover runs the origin
/// triggers at most twice, so a request has at most six). No allocation: this lives in every request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Trail {
    events: [u8; 8],
    len: u8,
}

impl Trail {
    pub fn push(&mut self, event: EventType) {
        if let Some(slot) = self.events.get_mut(self.len as usize) {
            *slot = event.index() as u8;
            self.len += 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = EventType> + '_ {
        self.events[..self.len as usize].iter().map(|&i| EventType::ALL[i as usize])
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl RequestContext {
    pub fn new(snapshot: Arc<Snapshot>, request_id: RequestId) -> Self {
        RequestContext {
            snapshot,
            request_id,
            started: Instant::now(),
            client_ip: String::new(),
            xff_peer: None,
            route: Route {
                behavior: 0,
                origin: 0,
                on_secondary: false,
                attempts: 0,
                origin_override: None,
                viewer_https: false,
                shield: None,
                shield_skipped: false,
            },
            origin_request: OriginRequestState::NotRun,
            bodies: Bodies::default(),
            sent_request: None,
            ending: Ending::Proxied,
            functions_ran: Trail::default(),
            response_policy: None,
            origin_millis: None,
            response_started: None,
            compressor: None,
            outcome: None,
            from_edge: false,
            shield_hit: false,
            not_modified: None,
            served_hit: None,
            cache_key: None,
            served_pass: None,
        }
    }

    /// Notes that the response head is going out now, for the logs' time to first byte: a clock read
    /// per response, made only when a log that writes it is on.
    pub fn mark_response_started(&mut self) {
        if crate::observe::first_byte_logged() {
            self.response_started = Some(self.started.elapsed());
        }
    }

    /// Formats the viewer's IP once.
    pub fn ensure_client_ip(&mut self, session: &pingora_proxy::Session) {
        if self.client_ip.is_empty() {
            if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
                self.client_ip = ip_text(addr.ip());
            }
        }
    }

    /// Moves to the group's secondary origin when this request may fail over (GET/HEAD/OPTIONS).
    pub fn try_failover(&mut self, method: &http::Method) -> bool {
        let Target::Group(g) = self.snapshot.behavior(self.route.behavior).target else { return false };
        let eligible = matches!(*method, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
        if self.route.on_secondary || !eligible {
            return false;
        }
        self.route.origin = self.snapshot.dist.origin_groups[g].secondary;
        self.route.on_secondary = true;
        self.route.attempts = 0;
        true
    }

    pub fn failover_codes(&self) -> &[u16] {
        match self.snapshot.behavior(self.route.behavior).target {
            Target::Group(g) if !self.route.on_secondary => &self.snapshot.dist.origin_groups[g].failover_status_codes,
            _ => &[],
        }
    }

    /// Whether an origin-request function answered this request.
    pub fn is_generated_by_origin_request(&self) -> bool {
        matches!(self.origin_request, OriginRequestState::Generated(_))
    }
}

/// An IP address as text, as `Display` writes it; an IPv4 address by hand (through the formatter it
/// cost ~1.3k instructions, on every miss and every hooked request).
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

#[cfg(test)]
mod ip_text {
    #[test]
    fn writes_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.9.99",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
    }
}

#[cfg(test)]
mod size {
    /// Every request builds a context and carries it in its future (twice over in pingora's
    /// `process_request`): keep it from growing unnoticed (docs/performance.md).
    #[test]
    fn the_request_context_stays_small() {
        let size = std::mem::size_of::<super::RequestContext>();
        println!("RequestContext: {size} bytes");
        assert!(size <= 640, "RequestContext is {size} bytes: box what few requests use");
    }
}

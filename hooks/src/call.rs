//! One invocation's state, the same for every ABI: what the function is shown (only what it can read,
//! see `Reads`) and what it changed, as a list of header operations, a new uri, a generated response, a
//! replaced body or a re-targeted origin. The proxy builds a `Call`, `Function::invoke` runs it on
//! whichever ABI the module speaks, and the proxy replays the changes on its own request or response.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use verge_config::model::EventType;

use crate::header_block::HeaderBlock;

/// A header change, replayed by the proxy in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    Set(HeaderName, HeaderValue),
    Add(HeaderName, HeaderValue),
    Remove(HeaderName),
    /// A `Set` of each of the block's fields, in order (`verge.header_set_block`).
    SetBlock(Arc<HeaderBlock>),
}

impl HeaderOp {
    /// The one name this change is about (`None` for a block: see its fields).
    pub fn name(&self) -> Option<&HeaderName> {
        match self {
            HeaderOp::Set(n, _) | HeaderOp::Add(n, _) | HeaderOp::Remove(n) => Some(n),
            HeaderOp::SetBlock(_) => None,
        }
    }

    /// How many header changes this is (a block counts its fields).
    pub fn count(&self) -> usize {
        match self {
            HeaderOp::SetBlock(block) => block.fields().len(),
            _ => 1,
        }
    }
}

/// Which message a header change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// The custom origin of an origin-request call (Lambda@Edge's `origin.custom`). A function may change
/// the domain name, port and path; the rest is shown for the JSON event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOrigin {
    pub domain_name: String,
    pub port: u16,
    pub path: String,
    pub protocol: &'static str,
    pub read_timeout_secs: u64,
    pub keepalive_timeout_secs: u64,
    /// Origin custom headers as configured (name, value).
    pub custom_headers: Vec<(String, String)>,
}

/// Everything one invocation sees and changes.
#[derive(Debug, Default, Clone)]
pub struct Call {
    pub event: Option<EventType>,
    /// distributionDomainName, distributionId (shared per snapshot).
    pub distribution: Option<std::sync::Arc<[String; 2]>>,
    pub request_id: String,
    pub method: String,
    pub client_ip: String,
    pub uri: String,
    pub querystring: String,
    pub request_headers: HeaderMap,
    pub response_status: Option<u16>,
    pub response_headers: HeaderMap,
    /// Set when the function changed the uri or query string.
    pub uri_changed: bool,
    pub request_ops: Vec<HeaderOp>,
    pub response_ops: Vec<HeaderOp>,
    /// Header changes made (a block's fields each count): bounded by `MAX_HEADER_CHANGES`.
    pub(crate) header_changes: usize,
    /// A request trigger answered with this status; `response_headers` and `body` are its response.
    pub generated_status: Option<u16>,
    /// A body set by the function: of the generated response, of the origin response (origin-response),
    /// or replacing the request body (request triggers with IncludeBody).
    pub body: Option<Vec<u8>>,
    /// IncludeBody (request triggers): the viewer's body as exposed, cut at the trigger's limit.
    pub request_body: Option<bytes::Bytes>,
    /// Whether `request_body` was cut (Lambda@Edge's `inputTruncated`).
    pub request_body_truncated: bool,
    /// origin-request: the origin the request goes to; the function may change it.
    pub origin: Option<CallOrigin>,
    /// Set when the function changed `origin`.
    pub origin_changed: bool,
    /// The first rule the function broke; the call then fails validation.
    pub violation: Option<String>,
    /// The function's own error message.
    pub error: Option<String>,
    /// Keep `request_headers`/`response_headers` current as changes are made (needed when the function
    /// can read headers back, and to print a result).
    pub track_headers: bool,
    /// While an inline call runs: what to go back to if it must run again (inline.rs).
    pub(crate) retry: Option<RetryPoint>,
}

/// The call as it was before an inline attempt: the lengths of the change lists (changes are appended)
/// and the first rule broken and error, and, from the first change that rewrites something in place (a
/// tracked header map, the uri, the origin, the status, the body), a copy of the whole call. A function
/// that only appends header changes (the common kind) costs no copy.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryPoint {
    request_ops: usize,
    response_ops: usize,
    header_changes: usize,
    violation: Option<String>,
    error: Option<String>,
    before: Option<Box<Call>>,
}

impl Call {
    /// A call for `event` with nothing to show yet.
    pub fn new(event: EventType) -> Box<Self> {
        // Built in its box (`Box::new(Self { .. })` built it on the stack and copied ~600 bytes).
        let mut call = Box::<Self>::default();
        call.event = Some(event);
        call
    }

    pub fn event(&self) -> EventType {
        self.event.unwrap_or(EventType::ViewerRequest)
    }

    pub fn is_request_trigger(&self) -> bool {
        matches!(self.event(), EventType::ViewerRequest | EventType::OriginRequest)
    }

    /// Records the first rule broken; host calls return -1 for it.
    pub(crate) fn violate(&mut self, reason: String) -> i32 {
        if self.violation.is_none() {
            self.violation = Some(reason);
        }
        verge_abi::fast::ABSENT
    }

    pub(crate) fn map(&mut self, side: Side) -> &mut HeaderMap {
        match side {
            Side::Response => &mut self.response_headers,
            Side::Request => &mut self.request_headers,
        }
    }

    /// The response changes (status and header changes) moved into a call of their own, to be replayed
    /// once this one is gone (it may be a warm instance's, `Function::invoke_in_place`).
    pub fn take_response_changes(&mut self) -> Box<Call> {
        let mut changes = Call::new(self.event());
        changes.response_status = self.response_status;
        changes.response_ops = std::mem::take(&mut self.response_ops);
        changes
    }

    /// Empties a call that lives in a warm instance's store (`Function::invoke_in_place`) for the
    /// instance's next invocation, keeping its allocations (the change lists' above all: a hook's first
    /// call allocates them, later calls reuse them). Every field is named, so a field added to `Call`
    /// cannot be forgotten here.
    pub(crate) fn reset_for_reuse(&mut self) {
        let Call {
            event,
            distribution,
            request_id,
            method,
            client_ip,
            uri,
            querystring,
            request_headers,
            response_status,
            response_headers,
            uri_changed,
            request_ops,
            response_ops,
            header_changes,
            generated_status,
            body,
            request_body,
            request_body_truncated,
            origin,
            origin_changed,
            violation,
            error,
            track_headers,
            retry,
        } = self;
        // Each field checked before it is written: most calls leave most of them as they were, and a
        // check is cheaper than a drop and a write (a `HeaderMap::clear` of an empty map is ~30
        // instructions).
        *event = None;
        if distribution.is_some() {
            *distribution = None;
        }
        for text in [request_id, method, client_ip, uri, querystring] {
            text.clear();
        }
        for map in [request_headers, response_headers] {
            if !map.is_empty() {
                map.clear();
            }
        }
        *response_status = None;
        *uri_changed = false;
        request_ops.clear();
        response_ops.clear();
        *header_changes = 0;
        *generated_status = None;
        if body.is_some() {
            *body = None;
        }
        if request_body.is_some() {
            *request_body = None;
        }
        *request_body_truncated = false;
        if origin.is_some() {
            *origin = None;
        }
        *origin_changed = false;
        if violation.is_some() {
            *violation = None;
        }
        if error.is_some() {
            *error = None;
        }
        *track_headers = false;
        if retry.is_some() {
            *retry = None;
        }
    }

    /// Marks where an inline attempt starts (`roll_back` returns here).
    pub(crate) fn set_retry_point(&mut self) {
        self.retry = Some(RetryPoint {
            request_ops: self.request_ops.len(),
            response_ops: self.response_ops.len(),
            header_changes: self.header_changes,
            violation: self.violation.clone(),
            error: self.error.clone(),
            before: None,
        });
    }

    /// Keeps a copy of the call before its first change in place during an inline attempt. Every host
    /// call that changes something other than the change lists, the violation or the error calls this
    /// first.
    pub(crate) fn before_rewrite(&mut self) {
        if self.retry.as_ref().is_some_and(|r| r.before.is_none()) {
            let mut copy = Box::new(self.clone());
            copy.retry = None;
            copy.roll_back_lists(self.retry.as_ref().expect("checked above"));
            if let Some(retry) = self.retry.as_mut() {
                retry.before = Some(copy);
            }
        }
    }

    fn roll_back_lists(&mut self, point: &RetryPoint) {
        self.request_ops.truncate(point.request_ops);
        self.response_ops.truncate(point.response_ops);
        self.header_changes = point.header_changes;
        self.violation.clone_from(&point.violation);
        self.error.clone_from(&point.error);
    }

    /// The call as it was at `set_retry_point`.
    pub(crate) fn roll_back(mut self: Box<Self>) -> Box<Self> {
        let Some(point) = self.retry.take() else { return self };
        match point.before {
            Some(before) => before,
            None => {
                self.roll_back_lists(&point);
                self
            }
        }
    }

    /// Ends an inline attempt that stands.
    pub(crate) fn clear_retry_point(&mut self) {
        self.retry = None;
    }

    /// Records a validated change (and applies it to the shown map when tracking).
    pub(crate) fn apply(&mut self, side: Side, op: HeaderOp) {
        if self.track_headers {
            self.before_rewrite();
            let map = self.map(side);
            match &op {
                HeaderOp::Set(n, v) => {
                    map.insert(n.clone(), v.clone());
                }
                HeaderOp::Add(n, v) => {
                    map.append(n.clone(), v.clone());
                }
                HeaderOp::Remove(n) => {
                    map.remove(n);
                }
                HeaderOp::SetBlock(block) => {
                    for (n, v) in block.fields() {
                        map.insert(n.clone(), v.clone());
                    }
                }
            }
        }
        self.header_changes += op.count();
        let ops = match side {
            Side::Response => &mut self.response_ops,
            Side::Request => &mut self.request_ops,
        };
        // One allocation for a typical hook's changes instead of a grow at the fifth.
        if ops.capacity() == 0 {
            ops.reserve(8);
        }
        ops.push(op);
    }

    /// The number of header changes made so far.
    pub(crate) fn changes(&self) -> usize {
        self.header_changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &'static str, value: &'static str) -> HeaderOp {
        HeaderOp::Set(HeaderName::from_static(name), HeaderValue::from_static(value))
    }

    #[test]
    fn a_call_reset_for_reuse_is_a_new_call() {
        let mut call = Call::new(EventType::OriginRequest);
        call.distribution = Some(Arc::new(["d.verge.test".into(), "E1".into()]));
        for text in [&mut call.request_id, &mut call.method, &mut call.client_ip, &mut call.uri, &mut call.querystring]
        {
            text.push_str("shown");
        }
        call.track_headers = true;
        call.request_headers.insert("x-a", HeaderValue::from_static("1"));
        call.response_headers.insert("x-b", HeaderValue::from_static("2"));
        call.response_status = Some(200);
        call.set_retry_point();
        call.apply(Side::Request, set("x-c", "3"));
        call.apply(Side::Response, set("x-d", "4"));
        call.before_rewrite();
        call.uri_changed = true;
        call.generated_status = Some(302);
        call.body = Some(b"body".to_vec());
        call.request_body = Some(bytes::Bytes::from_static(b"viewer body"));
        call.request_body_truncated = true;
        call.origin = Some(CallOrigin::default());
        call.origin_changed = true;
        call.violate("broken".into());
        call.error = Some("failed".into());
        call.reset_for_reuse();
        assert_eq!(format!("{call:?}"), format!("{:?}", Call::default()));
    }

    #[test]
    fn a_rolled_back_call_is_the_call_before_the_attempt() {
        let mut call = Call::new(EventType::ViewerRequest);
        call.uri = "/a".into();
        call.apply(Side::Request, set("x-before", "1"));

        // Changes appended to the lists only: no copy is made, the lists are cut back.
        call.set_retry_point();
        call.apply(Side::Request, set("x-during", "1"));
        call.apply(Side::Response, set("x-during", "1"));
        call.violate("broken".into());
        call.error = Some("failed".into());
        assert!(call.retry.as_ref().is_some_and(|r| r.before.is_none()));
        let call = call.roll_back();
        assert_eq!((call.request_ops.len(), call.response_ops.len()), (1, 0));
        assert_eq!((call.violation.as_deref(), call.error.as_deref()), (None, None));

        // A change in place copies the call first (lists as at the retry point), once.
        let mut call = call;
        call.track_headers = true;
        call.set_retry_point();
        call.apply(Side::Request, set("x-during", "1"));
        call.before_rewrite();
        call.uri = "/b".into();
        call.before_rewrite();
        call.uri = "/c".into();
        call.body = Some(b"new".to_vec());
        let call = call.roll_back();
        assert_eq!((call.uri.as_str(), call.body.as_ref()), ("/a", None));
        assert_eq!(call.request_ops, [set("x-before", "1")]);
        assert!(call.request_headers.get("x-during").is_none(), "the tracked map as it was");
        assert!(call.retry.is_none());
    }
}

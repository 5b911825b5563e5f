//! The one validator of what a function may do, shared by every ABI: the fast ABI checks each host call
//! with it as the call is made, the JSON ABIs check the result with it (as the same list of changes).
//! The rules are CloudFront's (docs/cloudfront.md, "What a function may change").

use verge_config::model::EventType;

use crate::call::{Call, Side};

/// Headers never shown to functions and never writable by them. Called for every header a hook
/// touches, so it dispatches on the first byte before comparing names.
pub fn is_disallowed(name: &str) -> bool {
    match name.as_bytes().first() {
        Some(b'c') => name == "connection",
        Some(b'e') => name == "expect",
        Some(b'k') => name == "keep-alive",
        Some(b'p') => matches!(name, "proxy-authenticate" | "proxy-authorization" | "proxy-connection"),
        Some(b't') => name == "trailer",
        Some(b'u') => name == "upgrade",
        Some(b'x') => {
            name.starts_with("x-amz-cf-")
                || name.starts_with("x-edge-")
                || matches!(
                    name,
                    "x-accel-buffering"
                        | "x-accel-charset"
                        | "x-accel-limit-rate"
                        | "x-accel-redirect"
                        | "x-amzn-auth"
                        | "x-amzn-cf-billing"
                        | "x-amzn-cf-id"
                        | "x-amzn-cf-xff"
                        | "x-amzn-errortype"
                        | "x-amzn-fle-profile"
                        | "x-amzn-header-count"
                        | "x-amzn-header-order"
                        | "x-amzn-lambda-integration-tag"
                        | "x-amzn-requestid"
                        | "x-cache"
                        | "x-forwarded-proto"
                        | "x-real-ip"
                )
        }
        _ => false,
    }
}

/// Headers a function may read but not add, change or delete, per trigger.
pub fn read_only(event: EventType) -> &'static [&'static str] {
    match event {
        EventType::ViewerRequest => &["content-length", "host", "transfer-encoding", "via"],
        EventType::OriginRequest => &[
            "accept-encoding",
            "content-length",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "transfer-encoding",
            "via",
        ],
        // Framing is verge's: a response whose length a function removed would go out undelimited.
        EventType::OriginResponse => &["content-length", "transfer-encoding", "via"],
        EventType::ViewerResponse => &["content-length", "transfer-encoding", "warning", "via"],
    }
}

/// What a header change does, for the reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add,
    Modify,
    Delete,
}

impl Change {
    fn verb(self) -> &'static str {
        match self {
            Change::Add => "add",
            Change::Modify => "change",
            Change::Delete => "delete",
        }
    }
}

/// What the rules say about one header name, whatever the call: worked out once per name (the fast
/// ABI's intern table keeps it, so a warm instance's constant headers are checked by a few bit tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameRules {
    /// Never shown, never writable (`is_disallowed`).
    pub disallowed: bool,
    /// Bit `EventType::index()` set: read-only in that trigger (`read_only`).
    read_only: u8,
    /// `cloudfront-viewer-country`: the edge's to say in viewer-request.
    viewer_country: bool,
}

impl NameRules {
    /// The rules for a lower-case header name.
    pub fn of(name: &str) -> Self {
        let read_only = EventType::ALL
            .iter()
            .filter(|event| read_only(**event).contains(&name))
            .fold(0, |bits, event| bits | 1 << event.index());
        NameRules { disallowed: is_disallowed(name), read_only, viewer_country: name == "cloudfront-viewer-country" }
    }

    /// What either name's rules forbid: a block of names passes one check with the union when it
    /// forbids nothing (`header_block.rs`).
    pub fn union(self, other: Self) -> Self {
        NameRules {
            disallowed: self.disallowed || other.disallowed,
            read_only: self.read_only | other.read_only,
            viewer_country: self.viewer_country || other.viewer_country,
        }
    }
}

/// May the function of `call` make `change` to header `name` on `side`? Request triggers change the
/// request, or the response they generate; response triggers change the response. Read-only rules
/// apply to the message a trigger passes on, not to a response it generates (a new message, whose
/// framing verge sets itself).
pub fn header_change(call: &Call, side: Side, name: &str, change: Change) -> Result<(), String> {
    header_change_by_rules(call, side, name, NameRules::of(name), change)
}

/// `header_change` with the name's rules already worked out.
#[inline]
pub fn header_change_by_rules(
    call: &Call,
    side: Side,
    name: &str,
    rules: NameRules,
    change: Change,
) -> Result<(), String> {
    // The common case in a few compares, inline: names no rule restricts, changed on the side the
    // trigger may change (a subset of what `header_change_checked` allows).
    let plainly_allowed = rules == NameRules::default()
        && match side {
            Side::Response => !call.is_request_trigger(),
            Side::Request => call.is_request_trigger() && call.generated_status.is_none(),
        };
    if plainly_allowed {
        return Ok(());
    }
    header_change_checked(call, side, name, rules, change)
}

/// Every rule `header_change_by_rules` stands for, with the reason for the first one broken.
fn header_change_checked(call: &Call, side: Side, name: &str, rules: NameRules, change: Change) -> Result<(), String> {
    let event = call.event();
    if rules.disallowed {
        return Err(format!("the function tried to add a disallowed header: {name}"));
    }
    let generated = call.generated_status.is_some();
    match side {
        Side::Response if call.is_request_trigger() && !generated => {
            return Err("set a response header only after generating a response".to_string())
        }
        Side::Request if !call.is_request_trigger() => {
            return Err(format!("{} functions cannot change the request", event.as_str()))
        }
        Side::Request if generated => return Err("the request cannot change after a response was generated".into()),
        _ => {}
    }
    let passes_on = !(side == Side::Response && call.is_request_trigger());
    // Lambda@Edge: the viewer's country is the edge's to say; a viewer-request function adding it fails.
    if rules.viewer_country && event == EventType::ViewerRequest && side == Side::Request {
        return Err("the function tried to add read-only header, headerName : cloudfront-viewer-country".to_string());
    }
    if passes_on && rules.read_only & (1 << event.index()) != 0 {
        return Err(format!("the function tried to {} read-only header, headerName : {name}", change.verb()));
    }
    Ok(())
}

/// A status a function sets: 200-599; viewer-response keeps the status it was given.
pub fn status(call: &Call, status: u32) -> Result<u16, String> {
    if !(200..=599).contains(&status) {
        return Err(format!("status {status} is outside 200-599"));
    }
    if call.event() == EventType::ViewerResponse && call.response_status != Some(status as u16) {
        return Err("viewer-response functions cannot change the status".to_string());
    }
    Ok(status as u16)
}

/// A new uri or query string (request triggers).
pub fn request_target(call: &Call, uri: &str, querystring: &str) -> Result<(), String> {
    if !call.is_request_trigger() {
        return Err(format!("{} functions cannot change the request", call.event().as_str()));
    }
    if !uri.starts_with('/') {
        return Err("uri must start with /".to_string());
    }
    let bad = |s: &str| s.chars().any(|c| c.is_control() || c == ' ' || c == '#');
    if bad(uri) || bad(querystring) {
        return Err("uri and query string may not contain spaces, control characters or #".to_string());
    }
    if uri.len() + querystring.len() + 1 >= 8192 {
        return Err("uri and query string must be shorter than 8,192 characters".to_string());
    }
    Ok(())
}

/// origin-request only: the custom origin's domain name (a host name or IPv4 address).
pub fn origin_domain_name(call: &Call, domain_name: &str) -> Result<(), String> {
    origin_trigger(call)?;
    let valid = !domain_name.is_empty()
        && domain_name.len() <= 253
        && domain_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err("origin domain name must be a host name".to_string())
    }
}

pub fn origin_port(call: &Call, port: u64) -> Result<u16, String> {
    origin_trigger(call)?;
    match u16::try_from(port) {
        Ok(port) if port == 80 || port == 443 || port >= 1024 => Ok(port),
        _ => Err("origin port must be 80, 443 or 1024-65535".to_string()),
    }
}

pub fn origin_path(call: &Call, path: &str) -> Result<(), String> {
    origin_trigger(call)?;
    if !path.is_empty() && (!path.starts_with('/') || path.ends_with('/') || path.contains(['?', '#', ' '])) {
        return Err("origin path must start with / and not end with /".to_string());
    }
    Ok(())
}

fn origin_trigger(call: &Call) -> Result<(), String> {
    if call.event() != EventType::OriginRequest {
        return Err("only origin-request functions can change the origin".to_string());
    }
    if call.origin.is_none() {
        return Err("no origin to change".to_string());
    }
    Ok(())
}

/// A body a function sets: the generated response's, the origin response's (origin-response), or the
/// request body sent on in place of the viewer's (request triggers, IncludeBody, up to its limit).
pub fn body(call: &Call, len: usize) -> Result<(), String> {
    let event = call.event();
    if call.is_request_trigger() && call.generated_status.is_none() {
        if call.request_body.is_none() {
            return Err("the request body can be replaced only with include_body".to_string());
        }
        let limit = event.limits().max_body_bytes;
        if len > limit {
            return Err(format!("the replacement body is over {limit} bytes"));
        }
    } else if event == EventType::ViewerResponse {
        return Err("viewer-response functions cannot replace the body".to_string());
    } else if len > event.limits().max_generated_response_bytes {
        let limit = event.limits().max_generated_response_bytes;
        return Err(format!("the body is {len} bytes, over the {limit}-byte limit for {}", event.as_str()));
    }
    Ok(())
}

/// The whole result, once the function returned: a generated response within its trigger's size, and
/// no body on a 204 from viewer-request.
pub fn finished(call: &Call) -> Result<(), String> {
    let Some(status) = call.generated_status else { return Ok(()) };
    let event = call.event();
    let body_len = call.body.as_ref().map_or(0, Vec::len);
    let header_len: usize = call.response_headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    let limit = event.limits().max_generated_response_bytes;
    if body_len + header_len > limit {
        return Err(format!(
            "the generated response is {} bytes, over the {limit}-byte limit for {}",
            body_len + header_len,
            event.as_str()
        ));
    }
    if status == 204 && body_len > 0 && event == EventType::ViewerRequest {
        return Err("a 204 response cannot have a body".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_check_agrees_with_every_rule() {
        let names = ["x-custom", "via", "connection", "cloudfront-viewer-country", "content-length", "host", "server"];
        for event in EventType::ALL {
            for generated in [None, Some(200)] {
                let mut call = Call::new(event);
                call.generated_status = generated;
                for side in [Side::Request, Side::Response] {
                    for name in names {
                        for change in [Change::Add, Change::Modify, Change::Delete] {
                            let rules = NameRules::of(name);
                            assert_eq!(
                                header_change_by_rules(&call, side, name, rules, change),
                                header_change_checked(&call, side, name, rules, change),
                                "{event:?} {generated:?} {side:?} {name}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn disallowed_headers() {
        for name in ["connection", "x-cache", "x-amz-cf-pop", "x-edge-location", "proxy-authorization", "x-real-ip"] {
            assert!(is_disallowed(name), "{name}");
        }
        for name in ["content-type", "x-custom", "cache-control", "proxy", "x-amzn-other"] {
            assert!(!is_disallowed(name), "{name}");
        }
    }

    #[test]
    fn read_only_rules_apply_to_what_is_passed_on_not_to_generated_responses() {
        let mut call = Call::new(EventType::ViewerRequest);
        let err = header_change(&call, Side::Request, "host", Change::Delete).unwrap_err();
        assert_eq!(err, "the function tried to delete read-only header, headerName : host");
        assert!(header_change(&call, Side::Response, "x-a", Change::Add).is_err(), "no response yet");
        call.generated_status = Some(200);
        assert!(header_change(&call, Side::Response, "via", Change::Add).is_ok());
        assert!(header_change(&call, Side::Response, "x-cache", Change::Add).is_err());
        let vrsp = Call::new(EventType::ViewerResponse);
        assert!(header_change(&vrsp, Side::Response, "content-length", Change::Delete).is_err());
        assert!(header_change(&vrsp, Side::Request, "x-a", Change::Add).is_err());
    }

    #[test]
    fn only_origin_facing_functions_may_add_the_viewer_country() {
        let viewer = Call::new(EventType::ViewerRequest);
        assert!(header_change(&viewer, Side::Request, "cloudfront-viewer-country", Change::Add).is_err());
        assert!(header_change(&viewer, Side::Request, "cloudfront-is-mobile-viewer", Change::Add).is_ok());
        let origin = Call::new(EventType::OriginRequest);
        assert!(header_change(&origin, Side::Request, "cloudfront-viewer-country", Change::Modify).is_ok());
    }

    #[test]
    fn statuses() {
        let mut call = Call::new(EventType::ViewerResponse);
        call.response_status = Some(200);
        assert!(status(&call, 404).is_err());
        assert_eq!(status(&call, 200), Ok(200));
        let call = Call::new(EventType::OriginResponse);
        assert!(status(&call, 99).is_err() && status(&call, 600).is_err() && status(&call, 302).is_ok());
    }
}

//! A Lambda@Edge-style handler (`fn(Event) -> Result<Outcome, String>`) over the fast ABI: the event is
//! read through host calls, and the outcome is applied as the host calls that change what was read. The
//! host checks each call as it always does, so the same handler gets the same verdicts on every ABI.

use base64::Engine as _;

use crate::fast::{Ctx, Trigger};
use crate::{Body, Config, Event, HeaderEntry, Headers, Outcome, Request, Response};

fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn headers(names: Vec<String>, values: impl Fn(&str) -> Vec<String>) -> Headers {
    let mut map = Headers::default();
    for name in names {
        for value in values(&name) {
            map.0
                .entry(name.clone())
                .or_default()
                .push(HeaderEntry { key: Some(crate::headers::canonical(&name)), value });
        }
    }
    map
}

/// The event as the JSON ABIs would have shown it.
fn read_event(ctx: &Ctx) -> Event {
    let request_trigger = matches!(ctx.trigger(), Trigger::ViewerRequest | Trigger::OriginRequest);
    let config = Config {
        distribution_domain_name: ctx.distribution_domain_name(),
        distribution_id: ctx.distribution_id(),
        event_type: ctx.event_type(),
        request_id: ctx.request_id(),
    };
    let body = ctx.body().map(|bytes| Body {
        input_truncated: ctx.body_truncated(),
        action: "read-only".to_string(),
        encoding: "base64".to_string(),
        data: base64_encode(&bytes),
    });
    let origin = ctx.origin_domain_name().map(|domain| {
        serde_json::json!({ "custom": {
            "domainName": domain,
            "port": ctx.origin_port().unwrap_or(80),
            "path": ctx.origin_path().unwrap_or_default(),
            "protocol": "http",
        }})
    });
    let request = Request {
        client_ip: ctx.client_ip(),
        method: ctx.method(),
        uri: ctx.uri(),
        querystring: ctx.querystring(),
        headers: headers(ctx.request_header_names(), |n| ctx.request_header_all(n)),
        body,
        origin,
    };
    let response = (!request_trigger).then(|| Response {
        status: ctx.status().map(|s| s.to_string()).unwrap_or_default(),
        status_description: None,
        headers: headers(ctx.response_header_names(), |n| ctx.response_header_all(n)),
        body: None,
        body_encoding: None,
    });
    Event { config, request, response }
}

fn values(headers: &Headers, name: &str) -> Vec<String> {
    headers.get_all(name).map(str::to_string).collect()
}

/// The header calls that turn `before` into `after`: removals, then a set (and adds) per changed name.
fn apply_headers(
    before: &Headers,
    after: &Headers,
    remove: impl Fn(&str),
    set: impl Fn(&str, &str),
    add: impl Fn(&str, &str),
) {
    for name in before.0.keys().filter(|n| !after.0.contains_key(*n)) {
        remove(name);
    }
    for name in after.0.keys() {
        let new = values(after, name);
        if new == values(before, name) {
            continue;
        }
        let mut new = new.iter();
        if let Some(first) = new.next() {
            set(name, first);
        }
        for value in new {
            add(name, value);
        }
    }
}

fn decode(data: &str, encoding: Option<&str>) -> Result<Vec<u8>, String> {
    match encoding.unwrap_or("text") {
        "base64" => base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| format!("bad base64 body: {e}")),
        _ => Ok(data.as_bytes().to_vec()),
    }
}

fn apply_request(ctx: &mut Ctx, before: &Request, after: Request) -> Result<(), String> {
    if after.uri != before.uri {
        ctx.set_uri(&after.uri);
    }
    if after.querystring != before.querystring {
        ctx.set_querystring(&after.querystring);
    }
    let cell = std::cell::RefCell::new(&mut *ctx);
    apply_headers(
        &before.headers,
        &after.headers,
        |n| cell.borrow_mut().remove_request_header(n),
        |n, v| cell.borrow_mut().set_request_header(n, v),
        |n, v| cell.borrow_mut().add_request_header(n, v),
    );
    if let Some(body) = after.body.filter(|b| b.action == "replace") {
        ctx.set_body(&decode(&body.data, Some(body.encoding.as_str()))?);
    }
    if after.origin != before.origin {
        let custom = after.origin.as_ref().and_then(|o| o.get("custom"));
        let field = |name: &str| custom.and_then(|c| c.get(name));
        let old = |name: &str| before.origin.as_ref().and_then(|o| o.get("custom")).and_then(|c| c.get(name)).cloned();
        if let Some(domain) = field("domainName").filter(|v| Some(*v) != old("domainName").as_ref()) {
            ctx.set_origin_domain_name(domain.as_str().unwrap_or(""));
        }
        if let Some(port) = field("port").filter(|v| Some(*v) != old("port").as_ref()) {
            ctx.set_origin_port(port.as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0));
        }
        if let Some(path) = field("path").filter(|v| Some(*v) != old("path").as_ref()) {
            ctx.set_origin_path(path.as_str().unwrap_or(""));
        }
    }
    Ok(())
}

fn apply_response(ctx: &mut Ctx, before: Option<&Response>, after: Response) -> Result<(), String> {
    // A status that is not a number becomes one outside 200-599, which the host refuses.
    let status = after.status.trim().parse::<u16>().unwrap_or(0);
    let empty = Headers::default();
    let shown = match before {
        Some(original) => {
            if after.status != original.status {
                ctx.respond(status);
            }
            &original.headers
        }
        None => {
            ctx.respond(status);
            &empty
        }
    };
    let cell = std::cell::RefCell::new(&mut *ctx);
    apply_headers(
        shown,
        &after.headers,
        |n| cell.borrow_mut().remove_response_header(n),
        |n, v| cell.borrow_mut().set_response_header(n, v),
        |n, v| cell.borrow_mut().add_response_header(n, v),
    );
    if let Some(body) = &after.body {
        ctx.set_body(&decode(body, after.body_encoding.as_deref())?);
    }
    Ok(())
}

/// Runs `handle` on the event read from the host and applies its outcome.
pub fn run(ctx: &mut Ctx, handle: fn(Event) -> Result<Outcome, String>) -> Result<(), String> {
    let event = read_event(ctx);
    let (before_request, before_response) = (event.request.clone(), event.response.clone());
    match handle(event)? {
        Outcome::Request(request) => apply_request(ctx, &before_request, request),
        Outcome::Response(response) => apply_response(ctx, before_response.as_ref(), response),
    }
}

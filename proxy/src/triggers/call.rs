//! One invocation's `Call`, built from pingora's request/response (only what the function can read), and
//! the function's changes replayed on them.

use std::sync::Arc;

use pingora_http::{RequestHeader, ResponseHeader};
use verge_config::model::{EventType, Origin};
use verge_hooks::{Call, CallOrigin, Function};

/// IncludeBody: the viewer's body as the function sees it, cut at the trigger's limit.
pub fn expose_body(call: &mut Call, body: bytes::Bytes, event: EventType) {
    let limit = event.limits().max_body_bytes;
    call.request_body_truncated = body.len() > limit;
    call.request_body = Some(body.slice(..body.len().min(limit)));
}

/// `origin.custom` as a function sees it (origin-request).
pub fn call_origin(origin: &Origin, tls: bool) -> CallOrigin {
    CallOrigin {
        domain_name: origin.domain_name.clone(),
        port: if tls { origin.https_port } else { origin.http_port },
        path: origin.origin_path.clone(),
        protocol: if tls { "https" } else { "http" },
        read_timeout_secs: origin.read_timeout_secs,
        keepalive_timeout_secs: origin.keepalive_timeout_secs,
        custom_headers: origin.custom_headers.clone(),
    }
}

/// Sets `prefix + uri [? querystring]` as the request's uri.
fn set_uri(req: &mut RequestHeader, prefix: &str, path: &str, querystring: &str) -> pingora_error::Result<()> {
    let mut uri = String::with_capacity(prefix.len() + path.len() + querystring.len() + 1);
    uri.push_str(prefix);
    uri.push_str(path);
    if !querystring.is_empty() {
        uri.push('?');
        uri.push_str(querystring);
    }
    let parsed = uri.parse().map_err(|e| {
        pingora_error::Error::because(pingora_error::ErrorType::InvalidHTTPHeader, "uri from function", e)
    })?;
    req.set_uri(parsed);
    Ok(())
}

/// The response a request trigger generated, as a pingora header plus body.
pub fn generated_response(call: &Call) -> pingora_error::Result<(ResponseHeader, bytes::Bytes)> {
    let body = bytes::Bytes::from(call.body.clone().unwrap_or_default());
    let status = call.generated_status.unwrap_or(200);
    let mut resp = ResponseHeader::build(status, Some(call.response_headers.len() + 4))?;
    for (name, value) in &call.response_headers {
        resp.append_header(crate::edge::header_names::case_name(name), value.clone())?;
    }
    resp.remove_header(&http::header::TRANSFER_ENCODING);
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    Ok((resp, body))
}

/// The call for one invocation, copied from pingora's request (and response) -- only the parts the
/// function can read or change (`Function::reads`: everything for the JSON ABIs, what its imports
/// reach for the fast ABI).
pub fn new_call(
    distribution: &Arc<[String; 2]>,
    function: &Function,
    event: EventType,
    request_id: &crate::edge::request_id::RequestId,
    client_ip: &str,
    req: &RequestHeader,
    resp: Option<&ResponseHeader>,
) -> Box<Call> {
    let mut call = Call::new(event);
    fill_call(&mut call, distribution, function, request_id, client_ip, req, resp);
    call
}

/// Writes into `call` what the function is shown of pingora's request (and response): `new_call`'s
/// work on a call that exists already (`Function::invoke_in_place`).
pub fn fill_call(
    call: &mut Call,
    distribution: &Arc<[String; 2]>,
    function: &Function,
    request_id: &crate::edge::request_id::RequestId,
    client_ip: &str,
    req: &RequestHeader,
    resp: Option<&ResponseHeader>,
) {
    let reads = function.reads;
    call.response_status = resp.map(|r| r.status.as_u16());
    if reads.uri {
        call.uri = req.uri.path().to_string();
        call.querystring = req.uri.query().unwrap_or("").to_string();
    }
    if reads.fields {
        call.distribution = Some(distribution.clone());
        call.request_id = request_id.as_str().to_string();
        call.method = req.method.as_str().to_string();
        call.client_ip = client_ip.to_string();
    }
    if reads.headers {
        call.track_headers = true;
        call.request_headers = req.headers.clone();
        call.response_headers = resp.map(|r| r.headers.clone()).unwrap_or_default();
    }
}

/// Replays a fast-ABI call's request changes (uri, query string, headers) on a pingora request.
pub fn replay_request(req: &mut RequestHeader, call: &Call, path_prefix: &str) -> pingora_error::Result<()> {
    use verge_hooks::HeaderOp;
    // Unchanged, the uri verge built (with the origin path) stands; a new origin path rebuilds it.
    if call.uri_changed || call.origin_changed {
        set_uri(req, path_prefix, &call.uri, &call.querystring)?;
    }
    use crate::edge::header_names::case_name;
    for op in &call.request_ops {
        match op {
            HeaderOp::Set(n, v) => req.insert_header(case_name(n), v.clone())?,
            HeaderOp::Add(n, v) => {
                req.append_header(case_name(n), v.clone())?;
            }
            HeaderOp::Remove(n) => {
                req.remove_header(n);
            }
            HeaderOp::SetBlock(block) => {
                for (n, v) in block.fields() {
                    req.insert_header(case_name(n), v.clone())?;
                }
            }
        }
    }
    Ok(())
}

/// Replays a fast-ABI call's response changes (status, headers) on a pingora response.
pub fn replay_response(resp: &mut ResponseHeader, call: &mut Call) -> pingora_error::Result<()> {
    use verge_hooks::HeaderOp;
    if let Some(status) = call.response_status {
        if status != resp.status.as_u16() {
            resp.set_status(status)?;
        }
    }
    let ops = std::mem::take(&mut call.response_ops);
    if !resp.has_case() {
        replay_on_map(resp, ops)?;
        return Ok(());
    }
    use crate::edge::header_names::case_name;
    for op in ops {
        match op {
            HeaderOp::Set(n, v) => resp.insert_header(case_name(&n), v)?,
            HeaderOp::Add(n, v) => {
                resp.append_header(case_name(&n), v)?;
            }
            HeaderOp::Remove(n) => {
                resp.remove_header(&n);
            }
            HeaderOp::SetBlock(block) => {
                for (n, v) in block.fields() {
                    resp.insert_header(case_name(n), v.clone())?;
                }
            }
        }
    }
    Ok(())
}

/// Applies header changes straight to the header map of a response that keeps no header case (every
/// cache hit: verge stores headers without pingora's case map). pingora's own insert copies and
/// re-parses the name on each call; here each change is one map operation, after one reserve.
fn replay_on_map(resp: &mut ResponseHeader, ops: Vec<verge_hooks::HeaderOp>) -> pingora_error::Result<()> {
    use verge_hooks::HeaderOp;
    let custom_reason =
        resp.get_reason_phrase().filter(|r| Some(*r) != resp.status.canonical_reason()).map(str::to_string);
    // A header-less placeholder costs no allocation; the parts come back below.
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(resp, placeholder));
    // The non-panicking forms: a map at http's size limit is an error, never an abort.
    let mut result = parts.headers.try_reserve(ops.iter().map(HeaderOp::count).sum()).map(|_| ());
    for op in ops {
        result = result.and_then(|()| match op {
            HeaderOp::Set(n, v) => parts.headers.try_insert(n, v).map(|_| ()),
            HeaderOp::Add(n, v) => parts.headers.try_append(n, v).map(|_| ()),
            HeaderOp::Remove(n) => {
                parts.headers.remove(n);
                Ok(())
            }
            HeaderOp::SetBlock(block) => {
                block.fields().iter().try_for_each(|(n, v)| parts.headers.try_insert(n.clone(), v.clone()).map(|_| ()))
            }
        });
    }
    *resp = ResponseHeader::from(parts);
    pingora_error::OrErr::or_err(result, pingora_error::ErrorType::InvalidHTTPHeader, "too many response headers")?;
    if custom_reason.is_some() {
        resp.set_reason_phrase(custom_reason.as_deref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use verge_hooks::{Call, HeaderOp};

    fn ops() -> Box<Call> {
        let op = |n: &str, v: &str| (n.parse().unwrap(), v.parse().unwrap());
        let (a, b) = op("x-frame-options", "DENY");
        let (c, d) = op("x-custom", "1");
        let (e, f) = op("x-custom", "2");
        let mut call = Box::<Call>::default();
        call.response_ops = vec![
            HeaderOp::Set(a, b),
            HeaderOp::Add(c, d),
            HeaderOp::Add(e, f),
            HeaderOp::Remove("server".parse().unwrap()),
        ];
        call
    }

    /// Cache hits (no case map) take the direct path, responses from the origin pingora's own; both
    /// must end with the same headers, and the direct path keeps a custom reason phrase.
    #[test]
    fn replay_gives_the_same_headers_with_and_without_a_case_map() {
        let mut no_case = ResponseHeader::build_no_case(200, None).unwrap();
        let mut with_case = ResponseHeader::build(200, None).unwrap();
        for resp in [&mut no_case, &mut with_case] {
            resp.insert_header("server", "origin").unwrap();
            resp.insert_header("x-frame-options", "SAMEORIGIN").unwrap();
            resp.set_reason_phrase(Some("Fine")).unwrap();
            replay_response(resp, &mut ops()).unwrap();
        }
        assert!(!no_case.has_case() && with_case.has_case());
        for resp in [&no_case, &with_case] {
            assert_eq!(resp.headers["x-frame-options"], "DENY");
            let custom: Vec<_> = resp.headers.get_all("x-custom").iter().collect();
            assert_eq!(custom, ["1", "2"]);
            assert!(resp.headers.get("server").is_none());
            assert_eq!(resp.get_reason_phrase(), Some("Fine"));
        }
    }
}

//! Lambda@Edge functions in the proxy: loading the distribution's function versions, building each
//! invocation's `Call` from pingora's request/response, and replaying what the function changed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pingora_http::{RequestHeader, ResponseHeader};
use verge_config::model::{Distribution, EventType, Origin};
use verge_hooks::{Call, CallOrigin, Function, FunctionStore, HookEngine, Limits};

/// Every behavior's functions, indexed like `Distribution::behaviors` and then by `EventType::index`.
#[derive(Default)]
pub struct LoadedFunctions {
    by_behavior: Vec<[Option<Arc<Function>>; 4]>,
    /// Each loaded version by ARN, with the sha256 of its module (for reuse by the next reload).
    by_arn: HashMap<String, (String, Arc<Function>)>,
}

impl LoadedFunctions {
    /// Verifies, compiles and checks every associated function version once. A version `previous`
    /// (the running snapshot's functions, on reload) already loaded from the same bytes with the same
    /// limits is reused as it is: no compile, and its warm instances stay warm across the deploy.
    pub fn load(
        dist: &Distribution,
        base_dir: &Path,
        engine: Option<&HookEngine>,
        previous: Option<&LoadedFunctions>,
    ) -> Result<Self, String> {
        let mut by_behavior = Vec::with_capacity(dist.behaviors.len());
        let mut compiled: HashMap<String, (String, Arc<Function>)> = HashMap::new();
        // The package limit of a function is that of its strictest trigger.
        let mut package_limit: HashMap<String, u64> = HashMap::new();
        for a in dist.behaviors.iter().flat_map(|b| b.functions.iter().flatten()) {
            let limit = package_limit.entry(a.arn.to_string()).or_insert(u64::MAX);
            *limit = (*limit).min(a.event_type.limits().max_package_bytes);
        }
        for behavior in &dist.behaviors {
            let mut slots: [Option<Arc<Function>>; 4] = Default::default();
            for a in behavior.functions.iter().flatten() {
                let key = a.arn.to_string();
                if let Some((_, f)) = compiled.get(&key) {
                    slots[a.event_type.index()] = Some(f.clone());
                    continue;
                }
                let engine = engine.ok_or("functions are associated but no hook engine was started")?;
                let store_dir = base_dir.join(dist.functions.store.as_deref().unwrap_or("functions"));
                let store = FunctionStore::new(store_dir);
                let bytes = store.load(&a.arn)?;
                let settings = dist.functions.settings.get(&a.arn.name);
                let limits = Limits {
                    timeout: Duration::from_millis(settings.map_or(5_000, |s| s.timeout_ms)),
                    memory_bytes: (settings.map_or(128, |s| s.memory_mb) as usize) << 20,
                    env: settings.map(|s| s.env.clone()).unwrap_or_default(),
                    per_request: settings.is_some_and(|s| s.isolation == verge_config::model::Isolation::PerRequest),
                };
                let sha = verge_hooks::sha256_hex(&bytes);
                let reusable = previous.and_then(|p| p.by_arn.get(&key)).filter(|(previous_sha, f)| {
                    *previous_sha == sha && f.limits == limits && bytes.len() as u64 <= package_limit[&key]
                });
                let function = match reusable {
                    Some((_, f)) => f.clone(),
                    None => Arc::new(engine.load(&key, &bytes, package_limit[&key], limits)?),
                };
                compiled.insert(key, (sha, function.clone()));
                slots[a.event_type.index()] = Some(function);
            }
            by_behavior.push(slots);
        }
        Ok(Self { by_behavior, by_arn: compiled })
    }

    /// Every loaded function version (for metrics).
    pub fn versions(&self) -> Vec<&Arc<Function>> {
        self.by_arn.values().map(|(_, f)| f).collect()
    }

    pub fn get(&self, behavior: usize, event: EventType) -> Option<&Arc<Function>> {
        self.by_behavior.get(behavior)?[event.index()].as_ref()
    }

    pub fn any(&self) -> bool {
        self.by_behavior.iter().any(|slots| slots.iter().any(Option::is_some))
    }
}

/// IncludeBody: the viewer's body as the function sees it, cut at the trigger's limit.
pub fn expose_body(call: &mut Call, body: bytes::Bytes, event: EventType) {
    let limit = event.limits().max_body_bytes;
    call.request_body_truncated = body.len() > limit;
    call.request_body = Some(body.slice(..body.len().min(limit)));
}

/// `origin.custom` as a function sees it (origin-request).
pub fn call_origin(origin: &Origin) -> CallOrigin {
    CallOrigin {
        domain_name: origin.domain_name.clone(),
        port: origin.http_port,
        path: origin.origin_path.clone(),
        protocol: "http",
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
        resp.append_header(crate::header_names::case_name(name), value.clone())?;
    }
    resp.remove_header(&http::header::TRANSFER_ENCODING);
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    Ok((resp, body))
}

/// The call for one invocation, copied from pingora's request (and response) -- only the parts the
/// function can read or change (`Function::reads`: everything for the JSON ABIs, what its imports
/// reach for the fast ABI).
pub fn new_call(
    snapshot: &crate::snapshot::Snapshot,
    function: &Function,
    event: EventType,
    request_id: &str,
    client_ip: &str,
    req: &RequestHeader,
    resp: Option<&ResponseHeader>,
) -> Box<Call> {
    let reads = function.reads;
    let mut call = Call::new(event);
    call.response_status = resp.map(|r| r.status.as_u16());
    if reads.uri {
        call.uri = req.uri.path().to_string();
        call.querystring = req.uri.query().unwrap_or("").to_string();
    }
    if reads.fields {
        call.distribution = Some(snapshot.event_distribution.clone());
        call.request_id = request_id.to_string();
        call.method = req.method.as_str().to_string();
        call.client_ip = client_ip.to_string();
    }
    if reads.headers {
        call.track_headers = true;
        call.request_headers = req.headers.clone();
        call.response_headers = resp.map(|r| r.headers.clone()).unwrap_or_default();
    }
    call
}

/// Replays a fast-ABI call's request changes (uri, query string, headers) on a pingora request.
pub fn replay_request(req: &mut RequestHeader, call: &Call, path_prefix: &str) -> pingora_error::Result<()> {
    use verge_hooks::HeaderOp;
    // Unchanged, the uri verge built (with the origin path) stands; a new origin path rebuilds it.
    if call.uri_changed || call.origin_changed {
        set_uri(req, path_prefix, &call.uri, &call.querystring)?;
    }
    use crate::header_names::case_name;
    for op in &call.request_ops {
        match op {
            HeaderOp::Set(n, v) => req.insert_header(case_name(n), v.clone())?,
            HeaderOp::Add(n, v) => {
                req.append_header(case_name(n), v.clone())?;
            }
            HeaderOp::Remove(n) => {
                req.remove_header(n);
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
    use crate::header_names::case_name;
    for op in ops {
        match op {
            HeaderOp::Set(n, v) => resp.insert_header(case_name(&n), v)?,
            HeaderOp::Add(n, v) => {
                resp.append_header(case_name(&n), v)?;
            }
            HeaderOp::Remove(n) => {
                resp.remove_header(&n);
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
    let mut result = parts.headers.try_reserve(ops.len()).map(|_| ());
    for op in ops {
        result = result.and_then(|()| match op {
            HeaderOp::Set(n, v) => parts.headers.try_insert(n, v).map(|_| ()),
            HeaderOp::Add(n, v) => parts.headers.try_append(n, v).map(|_| ()),
            HeaderOp::Remove(n) => {
                parts.headers.remove(n);
                Ok(())
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
        Box::new(Call {
            response_ops: vec![
                HeaderOp::Set(a, b),
                HeaderOp::Add(c, d),
                HeaderOp::Add(e, f),
                HeaderOp::Remove("server".parse().unwrap()),
            ],
            ..Default::default()
        })
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

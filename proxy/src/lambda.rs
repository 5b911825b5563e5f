//! Lambda@Edge triggers in the proxy: loading the distribution's functions, building each trigger's
//! event from pingora's request/response, and applying what the function returned (docs/abi.md).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pingora_http::{RequestHeader, ResponseHeader};
use serde_json::json;
use verge_config::model::{Distribution, EventType, Origin};
use verge_hooks::event::{
    self, EventBody, EventConfig, EventRequest, EventResponse, HeaderEntry, HeaderMap, HookOutput,
};
use verge_hooks::{Function, FunctionStore, HookEngine, HookError, Limits};

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
                    memory_bytes: (settings.map_or(128, |s| s.memory_mb).min(4096) as usize) << 20,
                    env: settings.map(|s| s.env.clone()).unwrap_or_default(),
                    per_request: settings.is_some_and(|s| s.isolation == verge_config::model::Isolation::PerRequest),
                };
                let sha = verge_hooks::store::sha256_hex(&bytes);
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

/// Headers as the event shows them: lower-case names, disallowed ones left out.
pub fn event_headers(headers: &http::HeaderMap) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if event::is_disallowed(name) {
            continue;
        }
        map.entry(name.to_string()).or_default().push(HeaderEntry {
            key: Some(canonical(name)),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        });
    }
    map
}

/// `x-my-header` -> `X-My-Header`.
fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

pub fn event_request(req: &RequestHeader, client_ip: &str) -> EventRequest {
    EventRequest {
        client_ip: client_ip.to_string(),
        method: req.method.as_str().to_string(),
        uri: req.uri.path().to_string(),
        querystring: req.uri.query().unwrap_or("").to_string(),
        headers: event_headers(&req.headers),
        body: None,
        origin: None,
    }
}

pub fn event_response(resp: &ResponseHeader) -> EventResponse {
    EventResponse {
        status: resp.status.as_u16().to_string(),
        status_description: resp.status.canonical_reason().map(str::to_string),
        headers: event_headers(&resp.headers),
    }
}

/// `cf.request.origin` for an origin event.
pub fn event_origin(origin: &Origin) -> serde_json::Value {
    let custom_headers: serde_json::Map<String, serde_json::Value> = origin
        .custom_headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), json!([{ "key": n, "value": v }])))
        .collect();
    json!({ "custom": {
        "domainName": origin.domain_name,
        "port": origin.http_port,
        "protocol": "http",
        "path": origin.origin_path,
        "sslProtocols": ["TLSv1.2"],
        "readTimeout": origin.read_timeout_secs,
        "keepaliveTimeout": origin.keepalive_timeout_secs,
        "customHeaders": custom_headers,
    }})
}

/// IncludeBody for a fast-ABI call: raw bytes, cut at the trigger's limit.
pub fn expose_body(call: &mut verge_hooks::fast::FastCall, body: bytes::Bytes, event: EventType) {
    let limit = event.limits().max_body_bytes;
    call.request_body_truncated = body.len() > limit;
    call.request_body = Some(body.slice(..body.len().min(limit)));
}

/// The body as IncludeBody exposes it: base64, cut at the trigger's limit.
pub fn event_body(body: &[u8], event: EventType) -> EventBody {
    use base64::Engine as _;
    let limit = event.limits().max_body_bytes;
    let shown = &body[..body.len().min(limit)];
    EventBody {
        input_truncated: body.len() > limit,
        action: "read-only".to_string(),
        encoding: "base64".to_string(),
        data: base64::engine::general_purpose::STANDARD.encode(shown),
    }
}

/// The body a function asked to send on, if it replaced it.
pub fn replaced_body(body: &Option<EventBody>) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body = body.as_ref().filter(|b| b.action == "replace")?;
    if body.encoding == "base64" {
        base64::engine::general_purpose::STANDARD.decode(&body.data).ok()
    } else {
        Some(body.data.clone().into_bytes())
    }
}

/// One debug line per invocation (with its duration) and one warning per failure, with the ARN.
/// The start of an invocation, when the debug log that reports its duration is on.
fn debug_timed() -> Option<std::time::Instant> {
    tracing::enabled!(target: "verge::hooks", tracing::Level::DEBUG).then(std::time::Instant::now)
}

fn log_outcome(function: &Function, event: EventType, request_id: &str, micros: u64, error: Option<&HookError>) {
    tracing::debug!(
        target: "verge::hooks",
        arn = %function.arn,
        event_type = event.as_str(),
        request_id = %request_id,
        micros,
        "invoked"
    );
    if let Some(e) = error {
        tracing::warn!(
            target: "verge::hooks",
            arn = %function.arn,
            event_type = event.as_str(),
            request_id = %request_id,
            result_type = e.result_type(),
            reason = %e.reason,
            "function failed"
        );
    }
}

pub struct Invocation<'a> {
    pub function: &'a Function,
    pub event: EventType,
    pub config: &'a EventConfig,
}

impl Invocation<'_> {
    /// Runs the function and validates its result; failures are logged here, once, with the ARN.
    /// Boxed: the JSON path's future is large, and inline it would enlarge the future of every proxy
    /// callback that can run a hook, hooked or not, fast ABI or not.
    pub fn run<'a>(
        &'a self,
        request: &'a EventRequest,
        response: Option<&'a EventResponse>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<HookOutput, HookError>> + Send + 'a>> {
        Box::pin(self.run_inline(request, response))
    }

    async fn run_inline(
        &self,
        request: &EventRequest,
        response: Option<&EventResponse>,
    ) -> Result<HookOutput, HookError> {
        let input = event::encode(self.config, request, response);
        let started = std::time::Instant::now();
        let result = match self.function.invoke(&input, &self.config.request_id).await {
            Ok(output) => event::parse_output(self.event, &output, request, response),
            Err(e) => Err(e),
        };
        let micros = started.elapsed().as_micros() as u64;
        // The JSON ABIs' invoke does not know the trigger: counted here, result validation included.
        self.function.stats.record(self.event.index(), micros, result.as_ref().err().map(|e| e.kind));
        log_outcome(self.function, self.event, &self.config.request_id, micros, result.as_ref().err());
        result
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

/// Replaces the request's uri, query string and headers with what a request trigger returned.
/// Disallowed headers (never shown to the function) are kept as they were.
pub fn apply_request(req: &mut RequestHeader, result: &EventRequest, path_prefix: &str) -> pingora_error::Result<()> {
    set_uri(req, path_prefix, &result.uri, &result.querystring)?;
    let names: Vec<http::HeaderName> =
        req.headers.keys().filter(|n| !event::is_disallowed(n.as_str())).cloned().collect();
    for name in names {
        req.remove_header(&name);
    }
    for (name, entries) in &result.headers {
        for entry in entries {
            req.append_header(entry.key.clone().unwrap_or_else(|| canonical(name)), entry.value.as_str())?;
        }
    }
    Ok(())
}

/// Replaces a response's headers (and status) with what a response trigger returned.
pub fn apply_response(resp: &mut ResponseHeader, result: &event::HookResponse) -> pingora_error::Result<()> {
    resp.set_status(result.status)?;
    let names: Vec<http::HeaderName> =
        resp.headers.keys().filter(|n| !event::is_disallowed(n.as_str())).cloned().collect();
    for name in names {
        resp.remove_header(&name);
    }
    for (name, entries) in &result.headers {
        for entry in entries {
            resp.append_header(entry.key.clone().unwrap_or_else(|| canonical(name)), entry.value.as_str())?;
        }
    }
    Ok(())
}

/// A generated response as a pingora header plus body.
pub fn generated(result: &event::HookResponse) -> pingora_error::Result<(ResponseHeader, bytes::Bytes)> {
    let body = bytes::Bytes::from(result.body.clone().unwrap_or_default());
    let mut resp = ResponseHeader::build(result.status, Some(result.headers.len() + 4))?;
    for (name, entries) in &result.headers {
        for entry in entries {
            resp.append_header(entry.key.clone().unwrap_or_else(|| canonical(name)), entry.value.as_str())?;
        }
    }
    resp.remove_header(&http::header::TRANSFER_ENCODING);
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    Ok((resp, body))
}

/// The state of a fast-ABI call, copied from pingora's request (and response) -- only the parts the
/// function can read or change (`Function::reads`, from its imports).
pub fn fast_call(
    snapshot: &crate::snapshot::Snapshot,
    function: &Function,
    event: EventType,
    request_id: &str,
    client_ip: &str,
    req: &RequestHeader,
    resp: Option<&ResponseHeader>,
) -> Box<verge_hooks::fast::FastCall> {
    let reads = function.reads;
    let mut call = Box::new(verge_hooks::fast::FastCall {
        event: Some(event),
        response_status: resp.map(|r| r.status.as_u16()),
        ..Default::default()
    });
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
pub fn replay_request(
    req: &mut RequestHeader,
    call: &verge_hooks::fast::FastCall,
    path_prefix: &str,
) -> pingora_error::Result<()> {
    use verge_hooks::fast::HeaderOp;
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
pub fn replay_response(resp: &mut ResponseHeader, call: &mut verge_hooks::fast::FastCall) -> pingora_error::Result<()> {
    use verge_hooks::fast::HeaderOp;
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
fn replay_on_map(resp: &mut ResponseHeader, ops: Vec<verge_hooks::fast::HeaderOp>) -> pingora_error::Result<()> {
    use verge_hooks::fast::HeaderOp;
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

/// The response a fast-ABI request trigger generated.
pub fn fast_generated(call: &verge_hooks::fast::FastCall) -> Option<event::HookResponse> {
    let status = call.generated_status?;
    let mut headers = HeaderMap::new();
    for (name, value) in &call.response_headers {
        headers.entry(name.as_str().to_string()).or_default().push(HeaderEntry {
            key: Some(canonical(name.as_str())),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        });
    }
    Some(event::HookResponse { status, status_description: None, headers, body: call.body.clone() })
}

/// Runs a fast-ABI function; failures are logged here, once, with the ARN.
pub async fn run_fast(
    function: &Function,
    event: EventType,
    request_id: &str,
    call: Box<verge_hooks::fast::FastCall>,
) -> Result<Box<verge_hooks::fast::FastCall>, HookError> {
    {
        // `invoke_fast` counts the call in the function's stats; the clock is read here only for the
        // debug log.
        let started = debug_timed();
        let result = function.invoke_fast(call, request_id).await;
        let micros = started.map_or(0, |s| s.elapsed().as_micros() as u64);
        log_outcome(function, event, request_id, micros, result.as_ref().err());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verge_hooks::fast::{FastCall, HeaderOp};

    fn ops() -> Box<FastCall> {
        let op = |n: &str, v: &str| (n.parse().unwrap(), v.parse().unwrap());
        let (a, b) = op("x-frame-options", "DENY");
        let (c, d) = op("x-custom", "1");
        let (e, f) = op("x-custom", "2");
        Box::new(FastCall {
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

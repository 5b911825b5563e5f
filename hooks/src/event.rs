//! The Lambda@Edge JSON event (byte-compatible with AWS's) for the two JSON ABIs: built from a `Call`, and
//! the function's JSON result read back into the same `Call` as changes, checked by `validate`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::call::{Call, CallOrigin, HeaderOp, Side};
use crate::error::HookError;
use crate::validate::{self, is_disallowed, Change};
use http::HeaderValue;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
}

/// Lower-case name -> values in order.
pub type HeaderMap = BTreeMap<String, Vec<HeaderEntry>>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventConfig {
    pub distribution_domain_name: String,
    pub distribution_id: String,
    pub event_type: String,
    pub request_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventBody {
    pub input_truncated: bool,
    pub action: String,
    pub encoding: String,
    pub data: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventRequest {
    pub client_ip: String,
    pub method: String,
    pub uri: String,
    pub querystring: String,
    pub headers: HeaderMap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<EventBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventResponse {
    #[serde(deserialize_with = "status_text")]
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_description: Option<String>,
    pub headers: HeaderMap,
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("{what}: {e}"))
}

fn status_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom("status must be a string or a number")),
    }
}

/// Reads a sample event (AWS's format): its config, request and response.
pub fn decode(event: &[u8]) -> Result<(EventConfig, EventRequest, Option<EventResponse>), String> {
    let value: Value = serde_json::from_slice(event).map_err(|e| format!("the event is not JSON: {e}"))?;
    let cf = value.pointer("/Records/0/cf").ok_or("the event has no Records[0].cf")?;
    let config: EventConfig = match cf.get("config") {
        Some(c) => parse(c, "cf.config")?,
        None => EventConfig::default(),
    };
    let request: EventRequest = parse(cf.get("request").ok_or("the event has no cf.request")?, "cf.request")?;
    let response = match cf.get("response") {
        Some(r) => Some(parse(r, "cf.response")?),
        None => None,
    };
    Ok((config, request, response))
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "Records")]
    records: [Record<'a>; 1],
}

#[derive(Serialize)]
struct Record<'a> {
    cf: Cf<'a>,
}

#[derive(Serialize)]
struct Cf<'a> {
    config: &'a EventConfig,
    request: &'a EventRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a EventResponse>,
}

/// The event JSON handed to the function.
pub fn encode(config: &EventConfig, request: &EventRequest, response: Option<&EventResponse>) -> Vec<u8> {
    let envelope = Envelope { records: [Record { cf: Cf { config, request, response } }] };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// Headers as the event shows them: lower-case names with CloudFront's `key`, disallowed ones left out.
pub fn event_headers(headers: &http::HeaderMap) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if is_disallowed(name) {
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
pub fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

/// `cf.request.origin` for an origin-request event.
pub fn origin_json(origin: &CallOrigin) -> Value {
    let custom_headers: serde_json::Map<String, Value> = origin
        .custom_headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), json!([{ "key": n, "value": v }])))
        .collect();
    json!({ "custom": {
        "domainName": origin.domain_name,
        "port": origin.port,
        "protocol": origin.protocol,
        "path": origin.path,
        "sslProtocols": ["TLSv1.2"],
        "readTimeout": origin.read_timeout_secs,
        "keepaliveTimeout": origin.keepalive_timeout_secs,
        "customHeaders": custom_headers,
    }})
}

/// The event parts of a call: config, request, and (response triggers) response.
pub fn event_of(call: &Call) -> (EventConfig, EventRequest, Option<EventResponse>) {
    let [domain, id] = call.distribution.as_deref().cloned().unwrap_or_default();
    let config = EventConfig {
        distribution_domain_name: domain,
        distribution_id: id,
        event_type: call.event().as_str().to_string(),
        request_id: call.request_id.clone(),
    };
    let body = call.request_body.as_ref().map(|body| EventBody {
        input_truncated: call.request_body_truncated,
        action: "read-only".to_string(),
        encoding: "base64".to_string(),
        data: base64::engine::general_purpose::STANDARD.encode(body),
    });
    let request = EventRequest {
        client_ip: call.client_ip.clone(),
        method: call.method.clone(),
        uri: call.uri.clone(),
        querystring: call.querystring.clone(),
        headers: event_headers(&call.request_headers),
        body,
        origin: call.origin.as_ref().map(origin_json),
    };
    let response = call.response_status.filter(|_| !call.is_request_trigger()).map(|status| EventResponse {
        status: status.to_string(),
        status_description: http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map(String::from),
        headers: event_headers(&call.response_headers),
    });
    (config, request, response)
}

/// The event JSON handed to a JSON-ABI function for `call`.
pub fn encode_call(call: &Call) -> Vec<u8> {
    let (config, request, response) = event_of(call);
    encode(&config, &request, response.as_ref())
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// A header map of the JSON result as an `http` map, after checking its form.
fn parse_headers(value: Option<&Value>) -> Result<http::HeaderMap, HookError> {
    let headers: HeaderMap = match value {
        None => HeaderMap::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| HookError::validation(format!("headers must map names to [{{key, value}}]: {e}")))?,
    };
    let mut map = http::HeaderMap::new();
    for (name, entries) in &headers {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(HookError::validation(format!("header map keys must be lower-case: `{name}`")));
        }
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HookError::validation(format!("`{name}` is not a valid header name")))?;
        for entry in entries {
            if let Some(key) = &entry.key {
                if !key.eq_ignore_ascii_case(name) {
                    return Err(HookError::validation(format!("header key `{key}` does not match `{name}`")));
                }
            }
            let value = http::HeaderValue::from_str(&entry.value)
                .map_err(|_| HookError::validation(format!("invalid value for header {name}")))?;
            map.append(header.clone(), value);
        }
    }
    Ok(map)
}

/// The operations that turn the visible headers of `before` into `after` (names a function may not see
/// are left alone): a removal for each name gone, a set (and adds) for each name whose values differ.
pub fn header_diff(before: &http::HeaderMap, after: &http::HeaderMap) -> Vec<HeaderOp> {
    let mut ops = Vec::new();
    for name in before.keys() {
        if !is_disallowed(name.as_str()) && !after.contains_key(name) {
            ops.push(HeaderOp::Remove(name.clone()));
        }
    }
    for name in after.keys() {
        let old: Vec<&HeaderValue> = before.get_all(name).iter().collect();
        let new: Vec<&HeaderValue> = after.get_all(name).iter().collect();
        if old == new {
            continue;
        }
        let mut values = new.into_iter();
        if let Some(first) = values.next() {
            ops.push(HeaderOp::Set(name.clone(), first.clone()));
        }
        ops.extend(values.map(|v| HeaderOp::Add(name.clone(), v.clone())));
    }
    ops
}

/// Records the changes from the shown `before` map to the result's `after` map, each one checked.
fn apply_header_changes(
    call: &mut Call,
    side: Side,
    before: &http::HeaderMap,
    after: &http::HeaderMap,
) -> Result<(), HookError> {
    for op in header_diff(before, after) {
        let Some(name) = op.name().map(http::HeaderName::as_str) else { continue };
        let change = match &op {
            HeaderOp::Remove(_) => Change::Delete,
            _ if before.contains_key(name) => Change::Modify,
            _ => Change::Add,
        };
        validate::header_change(call, side, name, change).map_err(HookError::validation)?;
        call.apply(side, op);
    }
    Ok(())
}

fn parse_status(obj: &serde_json::Map<String, Value>) -> Result<u32, HookError> {
    match field(obj, "status") {
        Some(Value::String(s)) => s.trim().parse::<u32>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
    .ok_or_else(|| HookError::validation("status must be a number 200-599 (as a string)"))
}

fn parse_body(obj: &serde_json::Map<String, Value>) -> Result<Option<Vec<u8>>, HookError> {
    match field(obj, "body") {
        None => Ok(None),
        Some(Value::String(text)) => match field(obj, "bodyEncoding").and_then(Value::as_str).unwrap_or("text") {
            "text" => Ok(Some(text.clone().into_bytes())),
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Some)
                .map_err(|e| HookError::validation(format!("body is not valid base64: {e}"))),
            other => Err(HookError::validation(format!("bodyEncoding `{other}` is not text or base64"))),
        },
        Some(_) => Err(HookError::validation("body must be a string")),
    }
}

/// A response the function returned: generated (request triggers) or changed (response triggers).
fn apply_response(call: &mut Call, obj: &serde_json::Map<String, Value>) -> Result<(), HookError> {
    let status = parse_status(obj)?;
    if field(obj, "statusDescription").is_some_and(|d| !d.is_string()) {
        return Err(HookError::validation("statusDescription must be a string"));
    }
    let headers = parse_headers(field(obj, "headers"))?;
    let body = parse_body(obj)?;
    if call.is_request_trigger() {
        // A generated response: a new message, its headers checked only against the disallowed list.
        if !(200..=599).contains(&status) {
            return Err(HookError::validation(format!("status {status} is outside 200-599")));
        }
        call.generated_status = Some(status as u16);
        if let Some(name) = headers.keys().find(|n| is_disallowed(n.as_str())) {
            return Err(HookError::validation(format!("the function tried to add a disallowed header: {name}")));
        }
        call.response_headers = headers;
    } else {
        let status = validate::status(call, status).map_err(HookError::validation)?;
        call.response_status = Some(status);
        let before = std::mem::take(&mut call.response_headers);
        call.track_headers = true;
        call.response_headers = before.clone();
        apply_header_changes(call, Side::Response, &before, &headers)?;
    }
    if let Some(body) = body {
        validate::body(call, body.len()).map_err(HookError::validation)?;
        call.body = Some(body);
    }
    Ok(())
}

/// A request the function returned (request triggers): uri, query string, headers, body, origin.
fn apply_request(
    call: &mut Call,
    obj: &serde_json::Map<String, Value>,
    shown_origin: Option<Value>,
) -> Result<(), HookError> {
    let uri = match field(obj, "uri") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(HookError::validation("uri must be a string starting with /")),
    };
    let querystring = match field(obj, "querystring") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(HookError::validation("querystring must be a string")),
    };
    if uri != call.uri || querystring != call.querystring {
        validate::request_target(call, &uri, &querystring).map_err(HookError::validation)?;
        call.uri = uri;
        call.querystring = querystring;
        call.uri_changed = true;
    }
    if field(obj, "method").and_then(Value::as_str).is_some_and(|m| m != call.method) {
        return Err(HookError::validation("the request method is read-only"));
    }
    let headers = parse_headers(field(obj, "headers"))?;
    let before = std::mem::take(&mut call.request_headers);
    call.track_headers = true;
    call.request_headers = before.clone();
    apply_header_changes(call, Side::Request, &before, &headers)?;
    if let Some(v) = field(obj, "body") {
        let body: EventBody = serde_json::from_value(v.clone())
            .map_err(|e| HookError::validation(format!("body must be {{action, encoding, data}}: {e}")))?;
        if body.action == "replace" {
            let bytes = if body.encoding == "base64" {
                base64::engine::general_purpose::STANDARD
                    .decode(&body.data)
                    .map_err(|_| HookError::validation("the replacement body is not valid base64"))?
            } else {
                body.data.into_bytes()
            };
            validate::body(call, bytes.len()).map_err(HookError::validation)?;
            call.body = Some(bytes);
        }
    }
    if let Some(origin) = field(obj, "origin").filter(|o| Some(*o) != shown_origin.as_ref()) {
        apply_origin(call, origin)?;
    }
    Ok(())
}

/// A changed `origin` (origin-request): only a custom origin's domain name, port and path can change.
fn apply_origin(call: &mut Call, origin: &Value) -> Result<(), HookError> {
    let invalid = |reason: String| HookError::validation(reason);
    let custom = origin
        .get("custom")
        .ok_or_else(|| HookError::validation("origin must have a `custom` object (s3 origins are not supported)"))?;
    let domain = custom.get("domainName").and_then(Value::as_str).unwrap_or("");
    validate::origin_domain_name(call, domain).map_err(invalid)?;
    let port =
        validate::origin_port(call, custom.get("port").and_then(Value::as_u64).unwrap_or(80)).map_err(invalid)?;
    let path = custom.get("path").and_then(Value::as_str).unwrap_or("");
    validate::origin_path(call, path).map_err(invalid)?;
    let protocol = match custom.get("protocol").and_then(Value::as_str).unwrap_or("http") {
        "http" => "http",
        "https" => "https",
        other => return Err(HookError::validation(format!("origin protocol `{other}` is not http or https"))),
    };
    if let Some(target) = call.origin.as_mut() {
        target.protocol = protocol;
        target.domain_name = domain.to_string();
        target.port = port;
        target.path = path.to_string();
    }
    call.origin_changed = true;
    Ok(())
}

/// Reads what a JSON-ABI function returned into `call`, checking every change.
pub fn apply_output(call: &mut Call, output: &[u8]) -> Result<(), HookError> {
    let value: Value = serde_json::from_slice(output)
        .map_err(|e| HookError::validation(format!("the function result is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(HookError::validation("the function result must be a request or a response object"));
    };
    let is_response = obj.contains_key("status");
    if call.is_request_trigger() {
        if is_response {
            apply_response(call, &obj)
        } else {
            let shown_origin = call.origin.as_ref().map(origin_json);
            apply_request(call, &obj, shown_origin)
        }
    } else if is_response {
        apply_response(call, &obj)
    } else {
        Err(HookError::validation(format!("{} functions must return the response", call.event().as_str())))
    }
}

/// A call for a sample event (`verge invoke`): the event's request, response, origin and body, shown
/// to the function exactly as the proxy would show them.
pub fn call_from_event(
    event: verge_config::model::EventType,
    config: &EventConfig,
    request: &EventRequest,
    response: Option<&EventResponse>,
) -> Box<Call> {
    let mut call = Call::new(event);
    call.distribution =
        Some(std::sync::Arc::new([config.distribution_domain_name.clone(), config.distribution_id.clone()]));
    call.request_id = config.request_id.clone();
    call.method = request.method.clone();
    call.client_ip = request.client_ip.clone();
    call.uri = request.uri.clone();
    call.querystring = request.querystring.clone();
    call.request_headers = http_headers(&request.headers);
    call.track_headers = true;
    if let Some(response) = response.filter(|_| !call.is_request_trigger()) {
        call.response_status = response.status.parse().ok();
        call.response_headers = http_headers(&response.headers);
    }
    if let Some(body) = &request.body {
        let bytes = match body.encoding.as_str() {
            "base64" => base64::engine::general_purpose::STANDARD.decode(&body.data).unwrap_or_default(),
            _ => body.data.clone().into_bytes(),
        };
        call.request_body = Some(bytes.into());
        call.request_body_truncated = body.input_truncated;
    }
    if let Some(custom) = request.origin.as_ref().and_then(|o| o.get("custom")) {
        let text = |name: &str| custom.get(name).and_then(Value::as_str).unwrap_or("").to_string();
        let number = |name: &str| custom.get(name).and_then(Value::as_u64).unwrap_or(0);
        call.origin = Some(CallOrigin {
            domain_name: text("domainName"),
            port: u16::try_from(number("port")).unwrap_or(80),
            path: text("path"),
            protocol: if text("protocol") == "https" { "https" } else { "http" },
            read_timeout_secs: number("readTimeout"),
            keepalive_timeout_secs: number("keepaliveTimeout"),
            custom_headers: Vec::new(),
        });
    }
    call
}

fn http_headers(headers: &HeaderMap) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, entries) in headers {
        let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) else { continue };
        for entry in entries {
            if let Ok(value) = http::HeaderValue::from_str(&entry.value) {
                map.append(name.clone(), value);
            }
        }
    }
    map
}

/// What a finished call amounts to, as the Lambda@Edge JSON a handler would have returned: the
/// generated or changed response, or the request to continue with. `true`: a response.
pub fn result_json(call: &Call) -> (bool, Value) {
    let status = call.generated_status.or(call.response_status.filter(|_| !call.is_request_trigger()));
    let (is_request, value) = match status {
        Some(status) => {
            let mut value = json!({ "status": status.to_string(), "headers": event_headers(&call.response_headers) });
            if let Some(body) = &call.body {
                value["body"] = String::from_utf8_lossy(body).into_owned().into();
            }
            (false, value)
        }
        None => {
            let mut value = json!({
                "clientIp": call.client_ip, "method": call.method, "uri": call.uri,
                "querystring": call.querystring, "headers": event_headers(&call.request_headers),
            });
            if let Some(origin) = &call.origin {
                value["origin"] = origin_json(origin);
            }
            if let Some(body) = &call.body {
                value["body"] =
                    json!({ "action": "replace", "encoding": "text", "data": String::from_utf8_lossy(body) });
            }
            (true, value)
        }
    };
    (!is_request, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use verge_config::model::EventType;

    fn call(event: EventType) -> Box<Call> {
        let mut call = Call::new(event);
        call.method = "GET".into();
        call.uri = "/a".into();
        call.request_headers.insert("host", "d.example".parse().unwrap());
        call
    }

    #[test]
    fn request_results_become_checked_changes() {
        let mut ok = call(EventType::ViewerRequest);
        apply_output(
            &mut ok,
            br#"{"uri":"/b","querystring":"x=1","headers":{"host":[{"key":"Host","value":"d.example"}],"x-new":[{"value":"1"}]}}"#,
        )
        .unwrap();
        assert!(ok.uri_changed && ok.uri == "/b" && ok.querystring == "x=1");
        assert_eq!(ok.request_ops, [HeaderOp::Set("x-new".parse().unwrap(), "1".parse().unwrap())]);
        let e = apply_output(&mut call(EventType::ViewerRequest), br#"{"uri":"/b","headers":{}}"#).unwrap_err();
        assert_eq!(e.reason, "the function tried to delete read-only header, headerName : host");
        let e = apply_output(
            &mut call(EventType::ViewerRequest),
            br#"{"uri":"/b","headers":{"host":[{"value":"d.example"}],"x-cache":[{"value":"x"}]}}"#,
        )
        .unwrap_err();
        assert!(e.reason.contains("disallowed header: x-cache"));
        assert!(apply_output(&mut call(EventType::ViewerRequest), b"not json").is_err());
        assert!(apply_output(&mut call(EventType::ViewerRequest), br#"{"uri":"no-slash"}"#).is_err());
    }

    #[test]
    fn generated_responses_are_checked() {
        let mut generated = call(EventType::ViewerRequest);
        apply_output(&mut generated, br#"{"status":"302","headers":{"location":[{"value":"/x"}]}}"#).unwrap();
        assert_eq!(generated.generated_status, Some(302));
        let mut numeric = call(EventType::OriginRequest);
        apply_output(&mut numeric, br#"{"status":200,"body":"aGk=","bodyEncoding":"base64"}"#).unwrap();
        assert_eq!(numeric.body.as_deref(), Some(&b"hi"[..]));
        for bad in [
            &br#"{"status":"99"}"#[..],
            br#"{"status":"600"}"#,
            br#"{"status":"200","body":"%%","bodyEncoding":"base64"}"#,
        ] {
            let e = apply_output(&mut call(EventType::ViewerRequest), bad).unwrap_err();
            assert_eq!(e.status(), 502, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn viewer_response_cannot_change_status() {
        let mut vrsp = call(EventType::ViewerResponse);
        vrsp.response_status = Some(200);
        let e = apply_output(&mut vrsp, br#"{"status":"404"}"#).unwrap_err();
        assert!(e.reason.contains("cannot change the status"));
        let mut vrsp = call(EventType::ViewerResponse);
        vrsp.response_status = Some(200);
        apply_output(&mut vrsp, br#"{"status":"200","headers":{"x-a":[{"value":"1"}]}}"#).unwrap();
        assert_eq!(vrsp.response_ops.len(), 1);
    }

    fn map(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut m = http::HeaderMap::new();
        for (n, v) in pairs {
            m.append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn diff_names_only_what_changed() {
        let before = map(&[("a", "1"), ("b", "2"), ("connection", "close"), ("c", "x")]);
        let after = map(&[("a", "1"), ("c", "y"), ("c", "z"), ("d", "4")]);
        let ops = header_diff(&before, &after);
        let text: Vec<String> = ops
            .iter()
            .map(|op| match op {
                HeaderOp::Set(n, v) => format!("set {n}={}", v.to_str().unwrap()),
                HeaderOp::Add(n, v) => format!("add {n}={}", v.to_str().unwrap()),
                HeaderOp::Remove(n) => format!("remove {n}"),
                HeaderOp::SetBlock(_) => unreachable!("a diff makes single changes"),
            })
            .collect();
        assert_eq!(text, ["remove b", "set c=y", "add c=z", "set d=4"]);
    }
}

//! The Lambda@Edge event the host builds (byte-compatible with AWS's JSON) and the validation of what a
//! function returns, per trigger (SPEC §2, §3, §6).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use verge_config::model::EventType;

use crate::error::HookError;

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

/// Headers never shown to functions and never writable by them (SPEC §6.1). Called for every header a
/// hook touches, so it dispatches on the first byte before comparing names.
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

/// Headers a function may read but not add, change or delete, per trigger (SPEC §6.1).
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
        EventType::OriginResponse => &["transfer-encoding", "via"],
        EventType::ViewerResponse => &["warning", "via"],
    }
}

/// A response a function generated (VR/OR) or returned (ORsp/VRsp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResponse {
    pub status: u16,
    pub status_description: Option<String>,
    pub headers: HeaderMap,
    /// `None`: keep the original body (response triggers); `Some`: the new body.
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub enum HookOutput {
    /// Continue with this request (request triggers only).
    Request(EventRequest),
    Response(HookResponse),
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers.get(name).map(|v| v.iter().map(|e| e.value.clone()).collect()).unwrap_or_default()
}

fn check_headers(event: EventType, before: &HeaderMap, after: &mut HeaderMap) -> Result<(), HookError> {
    for (name, entries) in after.iter_mut() {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(HookError::validation(format!("header map keys must be lower-case: `{name}`")));
        }
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(HookError::validation(format!("`{name}` is not a valid header name")));
        }
        if is_disallowed(name) {
            return Err(HookError::validation(format!("the function tried to add a disallowed header: {name}")));
        }
        for entry in entries.iter_mut() {
            if http::HeaderValue::from_str(&entry.value).is_err() {
                return Err(HookError::validation(format!("invalid value for header {name}")));
            }
            if let Some(key) = &entry.key {
                if !key.eq_ignore_ascii_case(name) {
                    return Err(HookError::validation(format!("header key `{key}` does not match `{name}`")));
                }
            }
        }
    }
    for name in read_only(event) {
        if values(before, name) != values(after, name) {
            let verb = if !after.contains_key(*name) {
                "delete"
            } else if !before.contains_key(*name) {
                "add"
            } else {
                "change"
            };
            return Err(HookError::validation(format!(
                "the function tried to {verb} read-only header, headerName : {name}"
            )));
        }
    }
    Ok(())
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn parse_headers(value: Option<&Value>) -> Result<HeaderMap, HookError> {
    match value {
        None => Ok(HeaderMap::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| HookError::validation(format!("headers must map names to [{{key, value}}]: {e}"))),
    }
}

fn parse_response(
    event: EventType,
    obj: &serde_json::Map<String, Value>,
    input: Option<&EventResponse>,
    max_bytes: usize,
) -> Result<HookResponse, HookError> {
    let status = match field(obj, "status") {
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
    .ok_or_else(|| HookError::validation("status must be a number 200-599 (as a string)"))?;
    if !(200..=599).contains(&status) {
        return Err(HookError::validation(format!("status {status} is outside 200-599")));
    }
    if let Some(original) = input {
        if event == EventType::ViewerResponse && original.status != status.to_string() {
            return Err(HookError::validation("viewer-response functions cannot change the status"));
        }
    }
    let status_description = match field(obj, "statusDescription") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(HookError::validation("statusDescription must be a string")),
    };
    let mut headers = parse_headers(field(obj, "headers"))?;
    let empty = HeaderMap::new();
    check_headers(event, input.map_or(&empty, |r| &r.headers), &mut headers)?;
    let body = match field(obj, "body") {
        None => None,
        Some(Value::String(text)) => {
            if event == EventType::ViewerResponse {
                return Err(HookError::validation("viewer-response functions cannot replace the body"));
            }
            match field(obj, "bodyEncoding").and_then(Value::as_str).unwrap_or("text") {
                "text" => Some(text.clone().into_bytes()),
                "base64" => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| HookError::validation(format!("body is not valid base64: {e}")))?,
                ),
                other => return Err(HookError::validation(format!("bodyEncoding `{other}` is not text or base64"))),
            }
        }
        Some(_) => return Err(HookError::validation("body must be a string")),
    };
    if event == EventType::ViewerRequest && status == 204 && body.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(HookError::validation("a 204 response cannot have a body"));
    }
    let generated = matches!(event, EventType::ViewerRequest | EventType::OriginRequest);
    if generated || body.is_some() {
        let header_bytes: usize =
            headers.iter().flat_map(|(n, v)| v.iter().map(move |e| n.len() + e.value.len() + 4)).sum();
        let size = header_bytes + body.as_ref().map_or(0, Vec::len);
        if size > max_bytes {
            return Err(HookError::validation(format!(
                "the generated response is {size} bytes, over the {max_bytes}-byte limit for {}",
                event.as_str()
            )));
        }
    }
    Ok(HookResponse { status, status_description, headers, body })
}

fn parse_request(
    event: EventType,
    obj: &serde_json::Map<String, Value>,
    input: &EventRequest,
    max_body: usize,
) -> Result<EventRequest, HookError> {
    let uri = match field(obj, "uri") {
        Some(Value::String(s)) if s.starts_with('/') => s.clone(),
        _ => return Err(HookError::validation("uri must be a string starting with /")),
    };
    let querystring = match field(obj, "querystring") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(HookError::validation("querystring must be a string")),
    };
    if uri.len() + querystring.len() + 1 >= 8192 {
        return Err(HookError::validation("uri and query string must be shorter than 8,192 characters"));
    }
    let bad = |s: &str| s.chars().any(|c| c.is_control() || c == ' ' || c == '#');
    if bad(&uri) || bad(&querystring) {
        return Err(HookError::validation("uri and query string may not contain spaces, control characters or #"));
    }
    if field(obj, "method").and_then(Value::as_str).is_some_and(|m| m != input.method) {
        return Err(HookError::validation("the request method is read-only"));
    }
    let mut headers = parse_headers(field(obj, "headers"))?;
    check_headers(event, &input.headers, &mut headers)?;
    let body = match field(obj, "body") {
        None => input.body.clone(),
        Some(v) => {
            let body: EventBody = serde_json::from_value(v.clone())
                .map_err(|e| HookError::validation(format!("body must be {{action, encoding, data}}: {e}")))?;
            if body.action == "replace" {
                let limit = if body.encoding == "base64" { max_body * 133 / 100 } else { max_body };
                if body.data.len() > limit {
                    return Err(HookError::validation(format!("the replacement body is over {limit} bytes")));
                }
                if body.encoding == "base64" && base64::engine::general_purpose::STANDARD.decode(&body.data).is_err() {
                    return Err(HookError::validation("the replacement body is not valid base64"));
                }
            }
            Some(body)
        }
    };
    let origin = match event {
        EventType::OriginRequest => field(obj, "origin").cloned().or_else(|| input.origin.clone()),
        _ => input.origin.clone(),
    };
    Ok(EventRequest {
        client_ip: input.client_ip.clone(),
        method: input.method.clone(),
        uri,
        querystring,
        headers,
        body,
        origin,
    })
}

/// Parses and validates what a function returned for `event`.
pub fn parse_output(
    event: EventType,
    output: &[u8],
    request: &EventRequest,
    response: Option<&EventResponse>,
) -> Result<HookOutput, HookError> {
    let value: Value = serde_json::from_slice(output)
        .map_err(|e| HookError::validation(format!("the function result is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(HookError::validation("the function result must be a request or a response object"));
    };
    let limits = event.limits();
    let is_response = obj.contains_key("status");
    match event {
        EventType::ViewerRequest | EventType::OriginRequest => {
            if is_response {
                parse_response(event, &obj, None, limits.max_generated_response_bytes).map(HookOutput::Response)
            } else {
                parse_request(event, &obj, request, limits.max_body_bytes).map(HookOutput::Request)
            }
        }
        EventType::OriginResponse | EventType::ViewerResponse => {
            if !is_response {
                return Err(HookError::validation(format!("{} functions must return the response", event.as_str())));
            }
            parse_response(event, &obj, response, 1 << 20).map(HookOutput::Response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> EventRequest {
        let mut headers = HeaderMap::new();
        headers.insert("host".into(), vec![HeaderEntry { key: Some("Host".into()), value: "d.example".into() }]);
        EventRequest { method: "GET".into(), uri: "/a".into(), headers, ..Default::default() }
    }

    #[test]
    fn request_results_are_validated() {
        let ok = parse_output(
            EventType::ViewerRequest,
            br#"{"uri":"/b","querystring":"x=1","headers":{"host":[{"key":"Host","value":"d.example"}],"x-new":[{"value":"1"}]}}"#,
            &req(),
            None,
        );
        assert!(matches!(ok, Ok(HookOutput::Request(r)) if r.uri == "/b" && r.querystring == "x=1"));
        let readonly = parse_output(EventType::ViewerRequest, br#"{"uri":"/b","headers":{}}"#, &req(), None);
        assert_eq!(readonly.unwrap_err().reason, "the function tried to delete read-only header, headerName : host");
        let disallowed = parse_output(
            EventType::ViewerRequest,
            br#"{"uri":"/b","headers":{"host":[{"value":"d.example"}],"x-cache":[{"value":"x"}]}}"#,
            &req(),
            None,
        );
        assert!(disallowed.unwrap_err().reason.contains("disallowed header: x-cache"));
        assert!(parse_output(EventType::ViewerRequest, b"not json", &req(), None).is_err());
        assert!(parse_output(EventType::ViewerRequest, br#"{"uri":"no-slash"}"#, &req(), None).is_err());
    }

    #[test]
    fn generated_responses_are_validated() {
        let r = parse_output(
            EventType::ViewerRequest,
            br#"{"status":"302","headers":{"location":[{"value":"/x"}]}}"#,
            &req(),
            None,
        );
        assert!(matches!(r, Ok(HookOutput::Response(r)) if r.status == 302));
        let numeric = parse_output(
            EventType::OriginRequest,
            br#"{"status":200,"body":"aGk=","bodyEncoding":"base64"}"#,
            &req(),
            None,
        );
        assert!(matches!(numeric, Ok(HookOutput::Response(r)) if r.body.as_deref() == Some(&b"hi"[..])));
        for bad in [
            &br#"{"status":"99"}"#[..],
            br#"{"status":"600"}"#,
            br#"{"status":"204","body":"x"}"#,
            br#"{"status":"200","body":"%%","bodyEncoding":"base64"}"#,
        ] {
            let e = parse_output(EventType::ViewerRequest, bad, &req(), None).unwrap_err();
            assert_eq!(e.status(), 502, "{}", String::from_utf8_lossy(bad));
        }
        let big = format!(r#"{{"status":"200","body":"{}"}}"#, "x".repeat(41 * 1024));
        assert!(parse_output(EventType::ViewerRequest, big.as_bytes(), &req(), None)
            .unwrap_err()
            .reason
            .contains("over the 40960-byte limit"));
        assert!(
            parse_output(EventType::OriginRequest, big.as_bytes(), &req(), None).is_ok(),
            "1 MB for origin-request"
        );
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
    fn viewer_response_cannot_change_status() {
        let resp = EventResponse { status: "200".into(), ..Default::default() };
        let e = parse_output(EventType::ViewerResponse, br#"{"status":"404"}"#, &req(), Some(&resp)).unwrap_err();
        assert!(e.reason.contains("cannot change the status"));
        assert!(parse_output(
            EventType::ViewerResponse,
            br#"{"status":"200","headers":{"x-a":[{"value":"1"}]}}"#,
            &req(),
            Some(&resp)
        )
        .is_ok());
    }
}

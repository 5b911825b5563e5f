//! The Lambda@Edge event and results, byte-compatible with AWS's JSON (see docs/abi.md).

use serde::{Deserialize, Serialize};

use crate::Headers;

/// What a handler gets: the single record's `config`, `request` and (response events) `response`.
#[derive(Debug, Clone)]
pub struct Event {
    pub config: Config,
    pub request: Request,
    pub response: Option<Response>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub distribution_domain_name: String,
    #[serde(default)]
    pub distribution_id: String,
    #[serde(default)]
    pub event_type: String,
    #[serde(default)]
    pub request_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    #[serde(default)]
    pub client_ip: String,
    #[serde(default)]
    pub method: String,
    pub uri: String,
    #[serde(default)]
    pub querystring: String,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Body {
    #[serde(default)]
    pub input_truncated: bool,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub encoding: String,
    #[serde(default)]
    pub data: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// A string in the event (`"200"`); numbers are accepted too.
    #[serde(deserialize_with = "status_from_any")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_description: Option<String>,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<String>,
}

fn status_from_any<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom("status must be a string or a number")),
    }
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self { status: status.to_string(), ..Default::default() }
    }
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }
}

/// What a handler returns: the (possibly changed) request to continue, or a response.
#[derive(Debug, Clone)]
pub enum Outcome {
    Request(Request),
    Response(Response),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Records")]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    cf: Cf,
}

#[derive(Deserialize)]
struct Cf {
    #[serde(default)]
    config: Config,
    request: Request,
    #[serde(default)]
    response: Option<Response>,
}

impl Event {
    pub fn from_json(input: &[u8]) -> Result<Self, String> {
        let envelope: Envelope = serde_json::from_slice(input).map_err(|e| format!("bad event: {e}"))?;
        let record = envelope.records.into_iter().next().ok_or("event has no record")?;
        Ok(Event { config: record.cf.config, request: record.cf.request, response: record.cf.response })
    }
}

impl Outcome {
    pub fn to_json(&self) -> Result<Vec<u8>, String> {
        match self {
            Outcome::Request(r) => serde_json::to_vec(r),
            Outcome::Response(r) => serde_json::to_vec(r),
        }
        .map_err(|e| e.to_string())
    }
}

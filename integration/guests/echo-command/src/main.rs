//! Test fixture: a WASI command hook with no SDK (only serde_json): event on stdin, result on stdout.
//! Adds `x-command: <event type>` to the request (request events) or the response (response events).

use std::io::{Read, Write};

fn main() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).expect("read stdin");
    let event: serde_json::Value = serde_json::from_slice(&input).expect("event json");
    let cf = &event["Records"][0]["cf"];
    let event_type = cf["config"]["eventType"].as_str().unwrap_or("").to_string();
    let mut out = if cf.get("response").is_some() { cf["response"].clone() } else { cf["request"].clone() };
    out["headers"]["x-command"] = serde_json::json!([{"key": "X-Command", "value": event_type}]);
    eprintln!("echo-command handled {event_type}");
    std::io::stdout().write_all(&serde_json::to_vec(&out).unwrap()).unwrap();
}

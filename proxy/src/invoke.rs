//! `verge invoke`: runs one function on an event file with the proxy's limits and validation, and
//! prints the result (or the CloudFront error class and reason).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use verge_config::arn::FunctionArn;
use verge_config::model::EventType;
use verge_hooks::event::{self, HookOutput};
use verge_hooks::fast::FastCall;
use verge_hooks::{Abi, FunctionStore, HookEngine, Limits};

use crate::cli::EXIT_CONFIG;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("verge: {message}");
    ExitCode::from(EXIT_CONFIG)
}

pub fn run(
    event_type: &str,
    function: Option<PathBuf>,
    arn: Option<String>,
    store: Option<PathBuf>,
    event_file: &Path,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
) -> ExitCode {
    let Some(event_type) = EventType::parse(event_type) else {
        return fail(format!(
            "`{event_type}` is not one of viewer-request, origin-request, origin-response, viewer-response"
        ));
    };
    let limits = event_type.limits();
    let (label, bytes) = match (function, arn) {
        (Some(path), _) => match std::fs::read(&path) {
            Ok(b) => (path.display().to_string(), b),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        },
        (None, Some(arn)) => {
            let parsed = match FunctionArn::parse(&arn) {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            match FunctionStore::new(store.unwrap_or_else(|| PathBuf::from("functions"))).load(&parsed) {
                Ok(b) => (arn, b),
                Err(e) => return fail(e),
            }
        }
        (None, None) => return fail("give --function FILE or --arn ARN --store DIR"),
    };
    let timeout = timeout_ms.unwrap_or(limits.max_timeout_ms.min(5_000));
    let memory = memory_mb.unwrap_or(128);
    if timeout > limits.max_timeout_ms || memory > limits.max_memory_mb {
        return fail(format!(
            "{} functions may run at most {} ms with {} MB",
            event_type.as_str(),
            limits.max_timeout_ms,
            limits.max_memory_mb
        ));
    }
    let input = match std::fs::read(event_file) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", event_file.display())),
    };
    let (config, request, response) = match event::decode(&input) {
        Ok(parts) => parts,
        Err(e) => return fail(format!("{}: {e}", event_file.display())),
    };
    // The trigger asked for wins over the sample's own eventType.
    let config = event::EventConfig { event_type: event_type.as_str().to_string(), ..config };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    runtime.block_on(async move {
        let engine = match HookEngine::new(None) {
            Ok(e) => e,
            Err(e) => return fail(e),
        };
        let limits = Limits {
            timeout: Duration::from_millis(timeout),
            memory_bytes: (memory.min(4096) as usize) << 20,
            env: Vec::new(),
            per_request: true,
        };
        let function = match engine.load(&label, &bytes, event_type.limits().max_package_bytes, limits) {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        let result = if function.abi == Abi::Fast {
            let call = fast_call(event_type, &config, &request, response.as_ref());
            function.invoke_fast(Box::new(call), &config.request_id).await.map(|call| fast_output(event_type, &call))
        } else {
            let encoded = event::encode(&config, &request, response.as_ref());
            match function.invoke(&encoded, &config.request_id).await {
                Ok(output) => {
                    event::parse_output(event_type, &output, &request, response.as_ref()).map(|parsed| (output, parsed))
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok((output, parsed)) => {
                let kind = match parsed {
                    HookOutput::Request(_) => "request (continue)",
                    HookOutput::Response(_) => "response",
                };
                let pretty = serde_json::from_slice::<serde_json::Value>(&output)
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or_else(|_| String::from_utf8_lossy(&output).into_owned());
                eprintln!("verge: {} returned a {kind}", event_type.as_str());
                println!("{pretty}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("verge: {e} (viewer would get HTTP {})", e.status());
                ExitCode::FAILURE
            }
        }
    })
}

fn header_map(headers: &event::HeaderMap) -> http::HeaderMap {
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

/// The fast-ABI call for a sample event.
fn fast_call(
    event_type: EventType,
    config: &event::EventConfig,
    request: &event::EventRequest,
    response: Option<&event::EventResponse>,
) -> FastCall {
    FastCall {
        event: Some(event_type),
        distribution: Some(std::sync::Arc::new([
            config.distribution_domain_name.clone(),
            config.distribution_id.clone(),
        ])),
        request_id: config.request_id.clone(),
        method: request.method.clone(),
        client_ip: request.client_ip.clone(),
        uri: request.uri.clone(),
        querystring: request.querystring.clone(),
        request_headers: header_map(&request.headers),
        response_status: response.and_then(|r| r.status.parse().ok()),
        response_headers: response.map(|r| header_map(&r.headers)).unwrap_or_default(),
        // The printed result is built from these maps.
        track_headers: true,
        ..Default::default()
    }
}

fn json_headers(headers: &http::HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        let entry = serde_json::json!({ "key": name.as_str(), "value": String::from_utf8_lossy(value.as_bytes()) });
        match map.get_mut(name.as_str()) {
            Some(serde_json::Value::Array(list)) => list.push(entry),
            _ => {
                map.insert(name.as_str().to_string(), serde_json::Value::Array(vec![entry]));
            }
        }
    }
    serde_json::Value::Object(map)
}

/// What a fast-ABI call amounts to, in the JSON a Lambda@Edge handler would have returned.
fn fast_output(event_type: EventType, call: &FastCall) -> (Vec<u8>, HookOutput) {
    let (value, output) = if let Some(status) = call.generated_status.or(match event_type {
        EventType::OriginResponse | EventType::ViewerResponse => call.response_status,
        _ => None,
    }) {
        let mut value =
            serde_json::json!({ "status": status.to_string(), "headers": json_headers(&call.response_headers) });
        if let Some(body) = &call.body {
            value["body"] = String::from_utf8_lossy(body).into_owned().into();
        }
        let response = event::HookResponse {
            status,
            status_description: None,
            headers: Default::default(),
            body: call.body.clone(),
        };
        (value, HookOutput::Response(response))
    } else {
        let value = serde_json::json!({
            "clientIp": call.client_ip, "method": call.method, "uri": call.uri,
            "querystring": call.querystring, "headers": json_headers(&call.request_headers),
        });
        (value, HookOutput::Request(event::EventRequest::default()))
    };
    (serde_json::to_vec(&value).unwrap_or_default(), output)
}

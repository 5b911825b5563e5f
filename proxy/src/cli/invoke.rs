//! `verge invoke`: runs one function on an event file with the proxy's limits and validation, and
//! prints the result (or the CloudFront error class and reason).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use verge_config::arn::FunctionArn;
use verge_config::model::{EventType, FunctionSettings};
use verge_hooks::event;
use verge_hooks::{FunctionStore, HookEngine, Limits};

use super::EXIT_CONFIG;

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
    let timeout = timeout_ms.unwrap_or(limits.max_timeout_ms.min(FunctionSettings::DEFAULT_TIMEOUT_MS));
    let memory = memory_mb.unwrap_or(FunctionSettings::DEFAULT_MEMORY_MB);
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
            memory_bytes: (memory as usize) << 20,
            env: Vec::new(),
            per_request: true,
        };
        let function = match engine.load(&label, &bytes, event_type.limits().max_package_bytes, limits) {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        // The same call the proxy makes: built from the event, run on the module's ABI, checked by the
        // same validator.
        let call = event::call_from_event(event_type, &config, &request, response.as_ref());
        match function.invoke(call, &config.request_id).await {
            Ok(call) => {
                let (is_response, value) = event::result_json(&call);
                let kind = if is_response { "response" } else { "request (continue)" };
                let pretty = serde_json::to_string_pretty(&value).unwrap_or_default();
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

//! Per-invocation latency of the security-headers hook on a viewer-response event through
//! `Function::invoke` (the result read back and checked, as in the proxy): fast ABI with warm instances,
//! fast ABI with a fresh instance per call, and the WASI-command ABI. Prints p50/p99 in µs.
//! Run: `cargo bench -p verge-hooks --bench invoke` (builds the guests first).

use std::time::{Duration, Instant};

use verge_config::model::EventType;
use verge_hooks::{event, Call, HookEngine, Limits};

const EVENT: &str = r#"{"Records":[{"cf":{"config":{"distributionDomainName":"d111111abcdef8.verge.local","distributionId":"EDFDVBD6EXAMPLE","eventType":"viewer-response","requestId":"4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ=="},"request":{"clientIp":"203.0.113.178","headers":{"host":[{"key":"Host","value":"d111111abcdef8.verge.local"}],"user-agent":[{"key":"User-Agent","value":"curl/8.5.0"}],"accept":[{"key":"Accept","value":"*/*"}]},"method":"GET","querystring":"","uri":"/1k.bin"},"response":{"headers":{"cache-control":[{"key":"Cache-Control","value":"max-age=3600"}],"content-length":[{"key":"Content-Length","value":"1024"}],"content-type":[{"key":"Content-Type","value":"application/octet-stream"}],"age":[{"key":"Age","value":"12"}]},"status":"200","statusDescription":"OK"}}}]}"#;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// The call the proxy hands a viewer-response function, built as the proxy builds it: only what the
/// function can read is copied in (the fast security-headers hook reads nothing; the JSON ABIs read all).
fn call(reads: verge_hooks::Reads) -> Box<Call> {
    if !reads.headers && !reads.fields && !reads.uri {
        let mut call = Call::new(EventType::ViewerResponse);
        call.response_status = Some(200);
        return call;
    }
    // The sample event is parsed once; each call is then built as the proxy builds one.
    static PARSED: std::sync::LazyLock<(event::EventConfig, event::EventRequest, Option<event::EventResponse>)> =
        std::sync::LazyLock::new(|| event::decode(EVENT.as_bytes()).unwrap());
    let (config, request, response) = &*PARSED;
    event::call_from_event(EventType::ViewerResponse, config, request, response.as_ref())
}

/// One invocation as the proxy makes it, checked for the hook's effect.
async fn once(function: &verge_hooks::Function) {
    let call = function.invoke(call(function.reads), "bench").await.unwrap();
    let sets_frame_options = |op: &verge_hooks::HeaderOp| match op {
        verge_hooks::HeaderOp::SetBlock(block) => block.fields().iter().any(|(n, _)| n == "x-frame-options"),
        op => op.name().is_some_and(|n| n == "x-frame-options"),
    };
    assert!(call.response_ops.iter().any(sets_frame_options), "the hook ran");
}

async fn measure(engine: &HookEngine, label: &str, module: &str, per_request: bool, calls: usize) {
    let bytes = std::fs::read(verge_testkit::guests::guest_path(module)).unwrap();
    let limits = Limits { timeout: Duration::from_secs(5), memory_bytes: 128 << 20, env: Vec::new(), per_request };
    let function = engine.load(label, &bytes, 1 << 20, limits).unwrap();
    for _ in 0..500 {
        once(&function).await;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        once(&function).await;
        samples.push(started.elapsed());
    }
    samples.sort();
    println!("{label:<40} p50 {:>7.1} µs   p99 {:>7.1} µs", percentile(&samples, 0.5), percentile(&samples, 0.99));
}

fn main() {
    // Cargo passes `--bench`; anything else is a filter we do not need.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let engine = HookEngine::new(None).unwrap();
        measure(&engine, "SDK fast ABI, warm instance", "security_headers", false, 20_000).await;
        measure(&engine, "SDK fast ABI, fresh instance per call", "security_headers", true, 10_000).await;
        measure(&engine, "WASI-command ABI (fresh instance)", "headers-command", false, 10_000).await;
    });
}

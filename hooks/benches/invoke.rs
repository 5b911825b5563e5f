//! Per-invocation latency of the security-headers hook on a viewer-response event: SDK ABI with warm
//! instances, SDK ABI with a fresh instance per call, and the WASI-command ABI. Prints p50/p99 in µs.
//! Run: `cargo bench -p verge-hooks --bench invoke` (builds the guests first).

use std::time::{Duration, Instant};

use verge_config::model::EventType;
use verge_hooks::fast::FastCall;
use verge_hooks::{Abi, HookEngine, Limits};

const EVENT: &str = r#"{"Records":[{"cf":{"config":{"distributionDomainName":"d111111abcdef8.verge.local","distributionId":"EDFDVBD6EXAMPLE","eventType":"viewer-response","requestId":"4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ=="},"request":{"clientIp":"203.0.113.178","headers":{"host":[{"key":"Host","value":"d111111abcdef8.verge.local"}],"user-agent":[{"key":"User-Agent","value":"curl/8.5.0"}],"accept":[{"key":"Accept","value":"*/*"}]},"method":"GET","querystring":"","uri":"/1k.bin"},"response":{"headers":{"cache-control":[{"key":"Cache-Control","value":"max-age=3600"}],"content-length":[{"key":"Content-Length","value":"1024"}],"content-type":[{"key":"Content-Type","value":"application/octet-stream"}],"age":[{"key":"Age","value":"12"}]},"status":"200","statusDescription":"OK"}}}]}"#;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// The state the proxy hands a fast-ABI viewer-response call, built as the proxy builds it: only what
/// the function can read is copied in (the security-headers hook reads nothing).
fn fast_call(reads: verge_hooks::Reads) -> Box<FastCall> {
    if !reads.headers && !reads.fields && !reads.uri {
        return Box::new(FastCall {
            event: Some(EventType::ViewerResponse),
            response_status: Some(200),
            ..Default::default()
        });
    }
    let mut request_headers = http::HeaderMap::new();
    request_headers.insert("host", "d111111abcdef8.verge.local".parse().unwrap());
    request_headers.insert("user-agent", "curl/8.5.0".parse().unwrap());
    request_headers.insert("accept", "*/*".parse().unwrap());
    let mut response_headers = http::HeaderMap::new();
    response_headers.insert("cache-control", "max-age=3600".parse().unwrap());
    response_headers.insert("content-length", "1024".parse().unwrap());
    response_headers.insert("content-type", "application/octet-stream".parse().unwrap());
    response_headers.insert("age", "12".parse().unwrap());
    Box::new(FastCall {
        event: Some(EventType::ViewerResponse),
        distribution: Some(std::sync::Arc::new(["d111111abcdef8.verge.local".into(), "EDFDVBD6EXAMPLE".into()])),
        request_id: "4TyzHTaYWb1GX1qTfsHhEqV6HUDd".into(),
        method: "GET".into(),
        client_ip: "203.0.113.178".into(),
        uri: "/1k.bin".into(),
        request_headers,
        response_status: Some(200),
        response_headers,
        ..Default::default()
    })
}

/// One invocation as the proxy makes it, checked for the hook's effect.
async fn once(function: &verge_hooks::Function) {
    if function.abi == Abi::Fast {
        let call = function.invoke_fast(fast_call(function.reads), "bench").await.unwrap();
        assert_eq!(call.response_ops.len(), 5, "the hook ran");
    } else {
        let out = function.invoke(EVENT.as_bytes(), "bench").await.unwrap();
        assert!(out.windows(9).any(|w| w == b"x-frame-o"), "the hook ran");
    }
}

async fn measure(engine: &HookEngine, label: &str, module: &str, per_request: bool, calls: usize) {
    let bytes = std::fs::read(verge_hooks::testing::guest_path(module)).unwrap();
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

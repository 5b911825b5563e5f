//! The wasmtime host against real guest modules: every ABI through `Function::invoke`, warm reuse, and
//! every failure class.

use std::time::{Duration, Instant};

use verge_config::model::EventType;
use verge_hooks::{event, Abi, Call, Function, HookEngine, HookError, HookErrorKind, Limits};

fn limits(timeout_ms: u64) -> Limits {
    Limits { timeout: Duration::from_millis(timeout_ms), memory_bytes: 128 << 20, env: Vec::new(), per_request: false }
}

fn event(uri: &str, event_type: &str) -> Vec<u8> {
    format!(
        r#"{{"Records":[{{"cf":{{"config":{{"distributionDomainName":"d.verge.test","distributionId":"E1","eventType":"{event_type}","requestId":"r1"}},"request":{{"clientIp":"127.0.0.1","method":"GET","uri":"{uri}","querystring":"","headers":{{"host":[{{"key":"Host","value":"d.verge.test"}}]}}}}}}}}]}}"#
    )
    .into_bytes()
}

/// Runs `f` on the sample event for `uri` at `event_type`; the result as Lambda@Edge JSON.
async fn run(f: &Function, uri: &str, event_type: &str) -> Result<serde_json::Value, HookError> {
    let (config, request, response) = event::decode(&event(uri, event_type)).unwrap();
    let trigger = EventType::parse(event_type).unwrap();
    let call = f.invoke(event::call_from_event(trigger, &config, &request, response.as_ref()), "r1").await?;
    Ok(event::result_json(&call).1)
}

fn guest(name: &str) -> Vec<u8> {
    std::fs::read(verge_testkit::guests::guest_path(name)).unwrap()
}

fn engine() -> HookEngine {
    HookEngine::new(None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_abi_runs_and_reuses_warm_instances() {
    let f = engine().load("arn:test:misbehave:1", &guest("misbehave"), 1 << 20, limits(5000)).unwrap();
    assert_eq!(f.abi, Abi::Sdk);
    let out = run(&f, "/x", "viewer-request").await.unwrap();
    assert_eq!(out["headers"]["x-misbehave"][0]["value"], "viewer-request", "{out}");
    // Globals persist in a warm instance, as in a Lambda execution environment.
    let first = run(&f, "/count", "viewer-request").await.unwrap();
    let second = run(&f, "/count", "viewer-request").await.unwrap();
    let count = |v: &serde_json::Value| v["body"].as_str().unwrap().parse::<u32>().unwrap();
    assert_eq!(count(&second), count(&first) + 1);

    let fresh = engine()
        .load("arn:test:misbehave:1", &guest("misbehave"), 1 << 20, Limits { per_request: true, ..limits(5000) })
        .unwrap();
    let a = run(&fresh, "/count", "viewer-request").await.unwrap();
    let b = run(&fresh, "/count", "viewer-request").await.unwrap();
    assert_eq!((count(&a), count(&b)), (1, 1), "per-request isolation: a fresh instance every call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_abi_and_hand_written_wat() {
    let f = engine().load("arn:test:echo:1", &guest("echo-command"), 1 << 20, limits(5000)).unwrap();
    assert_eq!(f.abi, Abi::Command);
    let out = run(&f, "/x", "origin-request").await.unwrap();
    assert_eq!(out["headers"]["x-command"][0]["value"], "origin-request", "{out}");

    // A WASI command written by hand: ignores its input and prints a fixed request.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 64) "{\"uri\":\"/from-wat\",\"headers\":{\"host\":[{\"value\":\"d.verge.test\"}]}}")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const 65))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
    let f = engine().load("arn:test:wat:1", wat.as_bytes(), 1 << 20, limits(5000)).unwrap();
    let out = run(&f, "/x", "viewer-request").await.unwrap();
    assert_eq!(
        (out["uri"].as_str(), out["headers"]["host"][0]["value"].as_str()),
        (Some("/from-wat"), Some("d.verge.test"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified_and_never_crash_the_host() {
    let f = engine().load("arn:test:misbehave:1", &guest("misbehave"), 1 << 20, limits(300)).unwrap();
    let started = Instant::now();
    let spin = run(&f, "/spin", "viewer-request").await.unwrap_err();
    assert_eq!((spin.kind, spin.reason.as_str()), (HookErrorKind::LimitExceeded, "timed out after 300 ms"));
    assert!(started.elapsed() < Duration::from_secs(5), "cut at its deadline: {:?}", started.elapsed());
    // The other failures under a generous timeout: touching 128 MB can take longer than 300 ms on a
    // loaded machine, and then the memory bomb is a timeout (seen in a CI run).
    let f = engine().load("arn:test:misbehave:1", &guest("misbehave"), 1 << 20, limits(30_000)).unwrap();
    let bomb = run(&f, "/bomb", "viewer-request").await.unwrap_err();
    assert_eq!(bomb.kind, HookErrorKind::LimitExceeded, "{bomb}");
    assert!(bomb.reason.contains("memory limit of 128 MB"), "{bomb}");
    let trap = run(&f, "/trap", "viewer-request").await.unwrap_err();
    assert_eq!(trap.kind, HookErrorKind::Execution, "{trap}");
    let sleep = run(&f, "/sleep", "viewer-request").await.unwrap_err();
    assert_eq!(sleep.kind, HookErrorKind::Execution, "blocking WASI calls are denied: {sleep}");
    let fail = run(&f, "/fail", "viewer-request").await.unwrap_err();
    assert!(fail.reason.contains("fixture returns an error"), "{fail}");
    // And the function still works afterwards.
    assert!(run(&f, "/ok", "viewer-request").await.is_ok());
}

#[test]
fn load_time_checks() {
    let e = engine();
    let misbehave = guest("misbehave");
    let too_big = e.load("arn:test:misbehave:1", &misbehave, 1000, limits(5000)).err().unwrap();
    assert!(too_big.contains("over the 1000-byte package limit"), "{too_big}");
    let garbage = e.load("arn:test:x:1", b"\0asm garbage", 1 << 20, limits(5000)).err().unwrap();
    assert!(garbage.contains("not a valid module"), "{garbage}");
    let foreign = e
        .load(
            "arn:test:x:1",
            br#"(module (import "env" "secret" (func)) (func (export "_start")))"#,
            1 << 20,
            limits(5000),
        )
        .err()
        .unwrap();
    assert!(foreign.contains("imports env::secret"), "{foreign}");
    let no_entry = e.load("arn:test:x:1", b"(module)", 1 << 20, limits(5000)).err().unwrap();
    assert!(no_entry.contains("exports neither"), "{no_entry}");
    // More memory than a pool slot holds is refused, naming the function, not capped.
    let huge = Limits { memory_bytes: verge_hooks::MAX_MEMORY_BYTES + (1 << 20), ..limits(5000) };
    let refused = e.load("arn:test:huge:1", &misbehave, 1 << 20, huge).err().unwrap();
    assert!(refused.starts_with("arn:test:huge:1: memory_mb 4097 is over the 4096 MB"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_see_only_their_configured_environment() {
    let limits = Limits { env: vec![("COOKIE_NAME".into(), "ab_test".into())], ..limits(5000) };
    let f = engine().load("arn:test:misbehave:1", &guest("misbehave"), 1 << 20, limits).unwrap();
    let out = run(&f, "/env", "viewer-request").await.unwrap();
    let body = out["body"].as_str().unwrap().to_string();
    assert_eq!(body, r#"vars=[("COOKIE_NAME", "ab_test")] file=false"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_warm_instance_keeps_working() {
    // 4 KiB of stderr per call, 600 calls on one warm instance: 2.4 MB in all, more than any one
    // buffer holds. Each call's output is logged and dropped, so the guest's writes never fail.
    let f = engine().load("arn:test:misbehave:1", &guest("misbehave"), 1 << 20, limits(5000)).unwrap();
    for call in 1..=600 {
        let out = run(&f, "/chatty", "viewer-request").await.unwrap();
        let body = out["body"].as_str().unwrap().to_string();
        assert_eq!(body, call.to_string(), "the same warm instance answered call {call}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_abi_header_changes_are_bounded() {
    use verge_abi::fast::MAX_HEADER_CHANGES;
    // Adds `x-a: b` 5,000 times: the changes live in host memory, outside the memory limit.
    let wat = r#"(module
      (import "verge" "header_add" (func $add (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-ab")
      (func (export "verge_fast_handle") (param $event i32) (result i32)
        (local $i i32)
        (loop $more
          (drop (call $add (i32.const 1) (i32.const 0) (i32.const 3) (i32.const 3) (i32.const 1)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 5000))))
        (i32.const 0)))"#;
    let f = engine().load("arn:test:fast:1", wat.as_bytes(), 1 << 20, limits(5000)).unwrap();
    let error = f.invoke(Call::new(EventType::ViewerResponse), "r1").await.unwrap_err();
    assert_eq!(error.kind, HookErrorKind::Validation);
    assert!(error.reason.contains(&format!("more than {MAX_HEADER_CHANGES} header changes")), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_abi_changes_are_validated_as_they_are_made() {
    use verge_hooks::HeaderOp;
    // A hand-written fast-ABI hook: sets `x-a: b`; on viewer-request it also tries to change `host`,
    // which is read-only there (and writable in origin-request).
    let wat = r#"(module
      (import "verge" "header_set" (func $set (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-ab")
      (data (i32.const 16) "hostevil")
      (func (export "verge_fast_handle") (param $event i32) (result i32)
        (drop (call $set (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 3) (i32.const 1)))
        (if (i32.eq (local.get $event) (i32.const 0))
          (then (drop (call $set (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 20) (i32.const 4)))))
        (i32.const 0)))"#;
    let f = engine().load("arn:test:fast:1", wat.as_bytes(), 1 << 20, limits(5000)).unwrap();
    assert_eq!(f.abi, Abi::Fast);
    let call = |event| {
        let mut call = Call::new(event);
        call.uri = "/".into();
        call
    };
    let ok = f.invoke(call(EventType::OriginRequest), "r1").await.unwrap();
    assert_eq!(ok.request_ops, [HeaderOp::Set("x-a".parse().unwrap(), "b".parse().unwrap())]);
    let readonly = f.invoke(call(EventType::ViewerRequest), "r2").await.unwrap_err();
    assert_eq!(readonly.kind, HookErrorKind::Validation);
    assert!(readonly.reason.contains("read-only header"), "{readonly}");
    let wrong_side = f.invoke(call(EventType::ViewerResponse), "r3").await.unwrap_err();
    assert!(wrong_side.reason.contains("cannot change the request"), "{wrong_side}");
    // Each call is counted by trigger, failures by class (validation first).
    use EventType::{OriginRequest, OriginResponse, ViewerRequest, ViewerResponse};
    assert_eq!(
        (f.stats.trigger(OriginRequest.index()).calls, f.stats.trigger(OriginRequest.index()).failures),
        (1, [0, 0, 0])
    );
    assert_eq!(f.stats.trigger(ViewerRequest.index()).failures, [1, 0, 0]);
    assert_eq!(f.stats.trigger(ViewerResponse.index()).failures, [1, 0, 0]);
    assert_eq!(f.stats.trigger(OriginResponse.index()).calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_abi_header_blocks_are_single_sets_checked_as_they_are_made() {
    use verge_abi::fast::MAX_HEADER_CHANGES;
    use verge_hooks::HeaderOp;
    // viewer-response: a two-field block on the response, three times (the same block each time);
    // viewer-request and origin-request: a block with `host` on the request (read-only in
    // viewer-request); origin-response: a malformed block; with `x-many` in the request, the two-field
    // block 600 times (1,200 changes).
    let wat = r#"(module
      (import "verge" "header_set_block" (func $block (param i32 i32 i32) (result i32)))
      (import "verge" "header_get" (func $get (param i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-a: 1\r\nX-Frame-Options:  DENY \n")
      (data (i32.const 64) "x-b: 2\nhost: evil")
      (data (i32.const 128) "nocolon")
      (data (i32.const 192) "x-many")
      (func (export "verge_fast_handle") (param $event i32) (result i32)
        (local $i i32)
        (if (i32.ge_s (call $get (i32.const 0) (i32.const 192) (i32.const 6) (i32.const 0) (i32.const 256) (i32.const 16)) (i32.const 0))
          (then
            (loop $more
              (drop (call $block (i32.const 1) (i32.const 0) (i32.const 31)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $more (i32.lt_u (local.get $i) (i32.const 600))))
            (return (i32.const 0))))
        (if (i32.eq (local.get $event) (i32.const 3))
          (then
            (drop (call $block (i32.const 1) (i32.const 0) (i32.const 31)))
            (drop (call $block (i32.const 1) (i32.const 0) (i32.const 31)))
            (drop (call $block (i32.const 1) (i32.const 0) (i32.const 31)))))
        (if (i32.lt_u (local.get $event) (i32.const 2))
          (then (drop (call $block (i32.const 0) (i32.const 64) (i32.const 17)))))
        (if (i32.eq (local.get $event) (i32.const 2))
          (then (drop (call $block (i32.const 1) (i32.const 128) (i32.const 7)))))
        (i32.const 0)))"#;
    let f = engine().load("arn:test:block:1", wat.as_bytes(), 1 << 20, limits(5000)).unwrap();
    let call = |event| {
        let mut call = Call::new(event);
        call.uri = "/".into();
        call.response_status = Some(200);
        // As the proxy makes it for a function that reads headers.
        call.track_headers = true;
        call
    };
    let fields = |op: &HeaderOp| match op {
        HeaderOp::SetBlock(block) => {
            block.fields().iter().map(|(n, v)| format!("{n}={}", v.to_str().unwrap())).collect::<Vec<_>>()
        }
        other => panic!("not a block: {other:?}"),
    };
    for _ in 0..2 {
        let done = f.invoke(call(EventType::ViewerResponse), "r1").await.unwrap();
        assert_eq!(done.response_ops.len(), 3, "one change per block");
        for op in &done.response_ops {
            assert_eq!(fields(op), ["x-a=1", "x-frame-options=DENY"]);
        }
        // The function reads headers, so the shown map is kept current: as three rounds of two sets.
        assert_eq!(done.response_headers.get_all("x-frame-options").iter().count(), 1);
        assert_eq!(done.response_headers["x-a"], "1");
    }
    let to_origin = f.invoke(call(EventType::OriginRequest), "r2").await.unwrap();
    assert_eq!(fields(&to_origin.request_ops[0]), ["x-b=2", "host=evil"]);
    let readonly = f.invoke(call(EventType::ViewerRequest), "r3").await.unwrap_err();
    assert_eq!(readonly.kind, HookErrorKind::Validation);
    assert!(readonly.reason.contains("read-only header, headerName : host"), "{readonly}");
    let malformed = f.invoke(call(EventType::OriginResponse), "r4").await.unwrap_err();
    assert_eq!(
        (malformed.kind, malformed.reason.as_str()),
        (HookErrorKind::Validation, "a header block line has no ':'")
    );
    let mut many = call(EventType::ViewerResponse);
    many.request_headers.insert("x-many", "1".parse().unwrap());
    let error = f.invoke(many, "r5").await.unwrap_err();
    assert!(error.reason.contains(&format!("more than {MAX_HEADER_CHANGES} header changes")), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_header_block_is_set_by_its_number() {
    use verge_hooks::HeaderOp;
    // The first call registers a block (its number + 1 kept at 256), an invalid one (-1 expected, kept at
    // 260) and one out of memory (-2 expected, at 264); viewer-response sets the block by number and fails
    // when a result was not the expected one; other triggers set a number never registered.
    let wat = r#"(module
      (import "verge" "header_block_register" (func $reg (param i32 i32) (result i32)))
      (import "verge" "header_set_registered_block" (func $set (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-a: 1\r\nx-b: 2\r\n")
      (data (i32.const 64) "nocolon")
      (func (export "verge_fast_handle") (param $event i32) (result i32)
        (if (i32.eqz (i32.load (i32.const 256)))
          (then
            (i32.store (i32.const 256) (i32.add (call $reg (i32.const 0) (i32.const 16)) (i32.const 1)))
            (i32.store (i32.const 260) (call $reg (i32.const 64) (i32.const 7)))
            (i32.store (i32.const 264) (call $reg (i32.const 65530) (i32.const 100)))))
        (if (i32.eq (local.get $event) (i32.const 3))
          (then (return (i32.or
            (i32.ne (call $set (i32.const 1) (i32.sub (i32.load (i32.const 256)) (i32.const 1))) (i32.const 0))
            (i32.or (i32.ne (i32.load (i32.const 260)) (i32.const -1)) (i32.ne (i32.load (i32.const 264)) (i32.const -2)))))))
        (drop (call $set (i32.const 1) (i32.const 7)))
        (i32.const 0)))"#;
    let f = engine().load("arn:test:registered:1", wat.as_bytes(), 1 << 20, limits(5000)).unwrap();
    let call = |event| {
        let mut call = Call::new(event);
        call.response_status = Some(200);
        call
    };
    for round in 0..3 {
        let done = f.invoke(call(EventType::ViewerResponse), "r1").await.unwrap();
        let [HeaderOp::SetBlock(block)] = done.response_ops.as_slice() else { panic!("{:?}", done.response_ops) };
        let fields: Vec<String> = block.fields().iter().map(|(n, v)| format!("{n}={}", v.to_str().unwrap())).collect();
        assert_eq!(fields, ["x-a=1", "x-b=2"], "round {round}");
    }
    let unknown = f.invoke(call(EventType::OriginResponse), "r2").await.unwrap_err();
    assert_eq!(
        (unknown.kind, unknown.reason.as_str()),
        (HookErrorKind::Validation, "no header block is registered as 7")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_whose_memory_grew_past_64_mib_is_not_reused() {
    use verge_hooks::HeaderOp;
    // Grows its memory to `pages` on its first call and sets `x-fresh: 1`; a reused instance, already
    // grown, sets `x-fresh: 0`.
    let guest = |pages: u32| {
        format!(
            r#"(module
      (import "verge" "header_set" (func $set (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-fresh10")
      (func (export "verge_fast_handle") (param $event i32) (result i32)
        (if (i32.lt_u (memory.size) (i32.const {pages}))
          (then
            (drop (memory.grow (i32.const {grow})))
            (drop (call $set (i32.const 1) (i32.const 0) (i32.const 7) (i32.const 7) (i32.const 1))))
          (else (drop (call $set (i32.const 1) (i32.const 0) (i32.const 7) (i32.const 8) (i32.const 1)))))
        (i32.const 0)))"#,
            grow = pages - 1
        )
    };
    let fresh = |call: &Call| match call.response_ops.as_slice() {
        [HeaderOp::Set(_, value)] => value.to_str().unwrap().to_string(),
        other => panic!("{other:?}"),
    };
    // 1,100 pages is 68.75 MiB; 32 pages 2 MiB.
    for (pages, second) in [(1100, "1"), (32, "0")] {
        let f = engine().load("arn:test:grow:1", guest(pages).as_bytes(), 1 << 20, limits(5000)).unwrap();
        let first = f.invoke(Call::new(EventType::ViewerResponse), "r1").await.unwrap();
        assert_eq!(fresh(&first), "1");
        let again = f.invoke(Call::new(EventType::ViewerResponse), "r2").await.unwrap();
        assert_eq!(fresh(&again), second, "{pages} pages: the second call's instance");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_place_runs_in_the_warm_instance_and_leaves_nothing_behind() {
    use verge_hooks::InPlace;
    // viewer-response: sets `x-a` and, when the request has `x-fail`, also the read-only `host` (a
    // validation failure).
    let wat = r#"(module
      (import "verge" "header_set" (func $set (param i32 i32 i32 i32 i32) (result i32)))
      (import "verge" "header_get" (func $get (param i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-a1x-failhostevil")
      (func (export "verge_fast_handle") (param $event i32) (result i32)
        (drop (call $set (i32.const 1) (i32.const 0) (i32.const 3) (i32.const 3) (i32.const 1)))
        (if (i32.ge_s (call $get (i32.const 0) (i32.const 4) (i32.const 6) (i32.const 0) (i32.const 256) (i32.const 16)) (i32.const 0))
          (then (drop (call $set (i32.const 0) (i32.const 10) (i32.const 4) (i32.const 14) (i32.const 4)))))
        (i32.const 0)))"#;
    let f = engine().load("arn:test:in-place:1", wat.as_bytes(), 1 << 20, limits(5000)).unwrap();
    let fill = |fail: bool| {
        move |call: &mut Call| {
            call.track_headers = true;
            call.response_status = Some(200);
            if fail {
                call.request_headers.insert("x-fail", "1".parse().unwrap());
            }
        }
    };
    let changes = |call: &mut Call| (call.response_ops.len(), call.response_headers.len(), call.request_ops.len());
    // Each call sees only what `fill` wrote, whatever the calls before it changed or broke.
    for fail in [false, false, true, false] {
        let done = match f.invoke_in_place(EventType::ViewerResponse, &fill(fail), "r1", changes) {
            InPlace::Done(done) => done,
            InPlace::Waits(_) => panic!("a fast-ABI function whose imports never wait runs in place"),
        };
        if fail {
            let error = done.unwrap_err();
            assert_eq!(error.kind, HookErrorKind::Validation, "{error}");
        } else {
            assert_eq!(done.unwrap(), (1, 1, 0));
        }
    }
    assert_eq!(f.stats.trigger(EventType::ViewerResponse.index()).calls, 4);
    assert_eq!(f.stats.trigger(EventType::ViewerResponse.index()).failures, [1, 0, 0]);

    // A JSON-ABI function waits: `invoke_with` runs it on a call `fill` made.
    let sdk = engine().load("arn:test:misbehave:1", &guest("misbehave"), 1 << 20, limits(5000)).unwrap();
    let fill_uri = |call: &mut Call| call.uri = "/x".into();
    let InPlace::Waits(finish) =
        sdk.invoke_in_place(EventType::ViewerRequest, &fill_uri, "r2", |call: &mut Call| call.uri.clone())
    else {
        panic!("a JSON-ABI function runs on a fiber")
    };
    assert_eq!(sdk.invoke_with(EventType::ViewerRequest, fill_uri, "r2", finish).await.unwrap(), "/x");
}

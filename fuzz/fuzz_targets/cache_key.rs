//! Any viewer request (method, target, headers, cookies) under the managed cache policies: building the
//! cache key never panics, is deterministic, and a change to a keyed header's value changes the key
//! (values are length-prefixed, so no two header sets can spell the same key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use verge::fuzzing::primary_key;
use verge_config::model::Selection;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let Some(target) = lines.next() else { return };
    let method = if target.len() % 3 == 0 { "OPTIONS" } else { "GET" };
    let Ok(mut req) = RequestHeader::build(method, target.as_bytes(), None) else { return };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let _ = req.append_header(name.trim().to_string(), value.trim());
    }
    let mut policies: Vec<_> =
        verge_config::managed::cache_policy_names().filter_map(verge_config::managed::cache_policy).collect();
    let mut custom = policies[0].clone();
    custom.headers = Selection::Whitelist(vec!["x-a".into(), "x-b".into()]);
    custom.cookies = Selection::All;
    custom.query_strings = Selection::All;
    policies.push(custom.clone());
    for policy in &policies {
        let key = primary_key("d.verge.test", &req, policy);
        assert_eq!(key, primary_key("d.verge.test", &req, policy), "deterministic");
        assert!(key.starts_with(req.uri.path()), "the key starts with the path");
    }
    let before = primary_key("d.verge.test", &req, &custom);
    let mut changed = req.clone();
    let value = format!("{}z", req.headers.get("x-a").and_then(|v| v.to_str().ok()).unwrap_or(""));
    if changed.insert_header("x-a", value).is_ok() {
        assert_ne!(before, primary_key("d.verge.test", &changed, &custom), "a keyed header's value is in the key");
    }
});

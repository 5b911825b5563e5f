//! Any pattern against any path: building and matching never panic, and `*` matches everything.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verge_config::pattern::PathPattern;

fuzz_target!(|data: (&str, &str)| {
    let (pattern, path) = data;
    let _ = PathPattern::new(pattern).matches(path);
    assert!(PathPattern::new("*").matches(path));
});

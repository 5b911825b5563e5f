//! Any text as a request path: normalising never panics, and an accepted path is already in its one
//! form (normalising it again changes nothing) with no dot segment or empty segment left.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verge_wire::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if !text.starts_with('/') {
        return;
    }
    if let Ok(path) = normalize(text) {
        let again = normalize(&path).expect("a normalised path is accepted");
        assert_eq!(again, path, "normalising is idempotent");
        for segment in path.split('/').skip(1) {
            assert!(segment != "." && segment != "..", "dot segment left in {path:?} from {text:?}");
        }
        assert!(!path.contains("//"), "empty segment left in {path:?} from {text:?}");
    }
});

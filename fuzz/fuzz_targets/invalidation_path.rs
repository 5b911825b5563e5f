//! Any text as an invalidation path (and, after a newline, an object path): parsing never panics, an
//! accepted path starts with `/` and has no space or control character, an exact path matches itself
//! only, and a wildcard path matches its prefix with anything after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verge_wire::invalidation::InvalidationPath;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, object) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(parsed) = InvalidationPath::parse(path) else { return };
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.bytes().any(|b| b <= b' ' || b == 0x7f), "{path:?}");
    match &parsed {
        InvalidationPath::Exact(exact) => {
            assert_eq!(exact, path);
            assert!(parsed.matches(path));
            assert_eq!(parsed.matches(object), object == path);
        }
        InvalidationPath::Prefix(prefix) => {
            assert_eq!(format!("{prefix}*"), path);
            assert!(parsed.matches(&format!("{prefix}{object}")));
        }
    }
});

//! Any text as a distribution file: parsing, the bounds check and validation never panic, and every
//! refusal names a position inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = verge_config::parse_str("fuzz.yaml", text) {
        // YAML counts `\r`, `\n` and `\r\n` as line breaks; a position may be just past the last one.
        let lines = text.matches(['\n', '\r']).count() + 2;
        for e in &errors.0 {
            assert!(e.line <= lines, "error past the end of the file: {e}");
        }
    }
});

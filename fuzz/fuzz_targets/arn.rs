//! Any text as a function ARN: parsing never panics, and an accepted ARN prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verge_config::arn::FunctionArn;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(arn) = FunctionArn::parse(text) {
        assert_eq!(arn.to_string(), text, "an accepted ARN is written back as it was read");
    }
});

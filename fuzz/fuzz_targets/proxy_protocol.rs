//! Any bytes as the start of a PROXY protocol connection: parsing never panics, an accepted header is
//! no longer than the input and parses the same from its own bytes, and "more bytes needed" only comes
//! before the header's bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verge_wire::proxy_protocol::{parse, MAX_HEADER};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Some((header, length))) => {
            assert!(length <= data.len() && length > 0);
            assert_eq!(parse(&data[..length]), Ok(Some((header, length))), "a header parses from its own bytes");
        }
        Ok(None) => assert!(data.len() < MAX_HEADER, "a complete bound's worth of bytes must be decided"),
        Err(_) => {}
    }
});

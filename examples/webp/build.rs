//! A 64 KiB wasm stack instead of Rust's default 1 MiB: the whole initial memory is reset after every
//! fresh instance, so a smaller one makes per-request instances several times cheaper.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg=-zstack-size=65536");
    }
}

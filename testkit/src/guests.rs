//! Builds the guest workspace (examples and fixture hooks) for `wasm32-wasip1` once per test process
//! and finds the modules.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The directory of the built `.wasm` files (`examples/target/wasm32-wasip1/release`).
pub fn guest_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "--target", "wasm32-wasip1", "--manifest-path"])
            .arg(root.join("examples/Cargo.toml"))
            .status()
            .expect("run cargo to build the guest hooks");
        assert!(
            status.success(),
            "building the guest hooks failed (is the wasm32-wasip1 target installed? see scripts/setup)"
        );
        root.join("examples/target/wasm32-wasip1/release")
    })
}

/// The path of one built guest module, e.g. `guest_path("security_headers")`.
pub fn guest_path(name: &str) -> PathBuf {
    guest_dir().join(format!("{name}.wasm"))
}

//! Builds the guest workspace (examples + fixtures) for wasm32-wasip1 once per test binary.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The directory holding the built `.wasm` files.
pub fn guest_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest = root.join("examples/Cargo.toml");
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--release", "--target", "wasm32-wasip1", "--manifest-path"])
            .arg(&manifest)
            .status()
            .expect("run cargo to build the guest hooks");
        assert!(
            status.success(),
            "building the guest hooks failed (is the wasm32-wasip1 target installed? scripts/setup)"
        );
        root.join("examples/target/wasm32-wasip1/release")
    })
}

pub fn guest(name: &str) -> Vec<u8> {
    let path = guest_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

//! The `verge` binary: parses the command line and hands over to the library.

// mimalloc: the proxy allocates many small, short-lived buffers per request; measured +7% on 1 KiB cache hits (70.8k -> 76.0k req/s).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    verge::run()
}

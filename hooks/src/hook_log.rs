//! A hook's stderr: collected per invocation, drained into verge's log after each call.
//!
//! Why not wasmtime-wasi's `MemoryOutputPipe`: a warm instance keeps its pipe for thousands of calls,
//! and that pipe only grows (reading it copies everything written so far) and, once full, fails the
//! guest's writes, which a Rust guest turns into a panic. Here each call starts empty, a call's output
//! past the cap is counted and dropped (never an error to the guest), and a call that wrote nothing
//! costs one atomic load.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: usize,
}

/// One hook instance's stderr (cloned into its WASI context; the host keeps a handle to drain it).
#[derive(Clone)]
pub struct HookLog {
    cap: usize,
    written: Arc<AtomicBool>,
    buffer: Arc<Mutex<Buffer>>,
}

impl HookLog {
    /// Keeps up to `cap` bytes per invocation.
    pub fn new(cap: usize) -> Self {
        Self { cap, written: Arc::default(), buffer: Arc::default() }
    }

    /// What the last invocation wrote, and how many bytes past the cap it dropped; empties the log.
    #[inline]
    pub fn drain(&self) -> Option<(Vec<u8>, usize)> {
        // Most invocations write nothing: a plain load first, the swap (a locked instruction) only when
        // something was written.
        if !self.written.load(Ordering::Relaxed) || !self.written.swap(false, Ordering::Acquire) {
            return None;
        }
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let drained = std::mem::take(&mut *buffer);
        Some((drained.kept, drained.dropped))
    }

    pub(crate) fn append(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.cap.saturating_sub(buffer.kept.len());
        let kept = bytes.len().min(room);
        buffer.kept.extend_from_slice(&bytes[..kept]);
        buffer.dropped += bytes.len() - kept;
        self.written.store(true, Ordering::Release);
    }
}

impl IsTerminal for HookLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for HookLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for HookLog {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accepts: what does not fit is counted, not refused.
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for HookLog {
    async fn ready(&mut self) {}
}

impl AsyncWrite for HookLog {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_drain_returns_one_invocation_capped() {
        let log = HookLog::new(8);
        assert!(log.drain().is_none(), "nothing written");
        let mut writer = log.clone();
        writer.write(Bytes::from_static(b"hello ")).unwrap();
        writer.write(Bytes::from_static(b"world")).unwrap();
        assert_eq!(log.drain(), Some((b"hello wo".to_vec(), 3)));
        assert!(log.drain().is_none(), "drained");
        writer.write(Bytes::from_static(b"again")).unwrap();
        assert_eq!(log.drain(), Some((b"again".to_vec(), 0)), "a new invocation starts empty");
    }
}

// verge: a closed stream, left in a session whose stream was taken out without consuming the session
// (`v1::server::HttpSession::reuse_in_place`). A zero-sized type: boxing it allocates nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::protocols::raw_connect::ProxyDigest;
use crate::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};

/// A stream at its end: reads see the end, writes fail.
#[derive(Debug)]
pub(crate) struct ClosedIo;

impl AsyncRead for ClosedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClosedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Err(std::io::ErrorKind::NotConnected.into()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl Shutdown for ClosedIo {
    async fn shutdown(&mut self) {}
}

impl UniqueID for ClosedIo {
    fn id(&self) -> UniqueIDType {
        Default::default()
    }
}

impl Ssl for ClosedIo {}

impl GetTimingDigest for ClosedIo {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        vec![]
    }
}

impl GetProxyDigest for ClosedIo {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for ClosedIo {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        None
    }
}

impl Peek for ClosedIo {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_closed_stream_reads_its_end_and_refuses_writes() {
        let mut closed: crate::protocols::Stream = Box::new(ClosedIo);
        let mut buf = [0u8; 4];
        assert_eq!(closed.read(&mut buf).await.unwrap(), 0);
        assert!(closed.write_all(b"x").await.is_err());
    }
}

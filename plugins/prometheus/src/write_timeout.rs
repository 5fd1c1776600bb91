//! The page server's write timeout: a connection whose client does not take its response within
//! `write_timeout` fails its next write, so the rendered page it holds is freed.
//!
//! hyper has a timeout for reading a request's headers (which also closes idle keep-alive
//! connections) but none for writing a response. [`WriteTimeout`] wraps a connection's stream: the
//! request handler arms its [`Deadline`] when a response is ready, and every write after that
//! instant fails with [`std::io::ErrorKind::TimedOut`] — also a write that is waiting for the
//! client to read, which is woken at the deadline. The deadline covers the whole response, as Go's
//! `http.Server.WriteTimeout` does: a client reading a few bytes a second cannot hold a page for
//! longer than one that reads nothing.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The deadline of the response being written on one connection, shared by its request handler
/// (which arms it) and its [`WriteTimeout`] stream (which enforces it).
#[derive(Debug)]
pub struct Deadline {
    timeout: Duration,
    at: Mutex<Option<Instant>>,
    expired: AtomicBool,
}

impl Deadline {
    /// A deadline `timeout` after each [`Deadline::arm`].
    pub fn new(timeout: Duration) -> Self {
        Deadline {
            timeout,
            at: Mutex::new(None),
            expired: AtomicBool::new(false),
        }
    }

    /// A response is ready: it must be written within the timeout from now.
    pub fn arm(&self) {
        let at = Instant::now() + self.timeout;
        *self.at.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// Whether a write failed because the deadline passed.
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    fn at(&self) -> Option<Instant> {
        *self.at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A stream whose writes fail once its [`Deadline`] has passed.
pub struct WriteTimeout<S> {
    inner: S,
    deadline: std::sync::Arc<Deadline>,
    /// Wakes a pending write at the deadline.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    /// `inner`, with writes bound by `deadline`.
    pub fn new(inner: S, deadline: std::sync::Arc<Deadline>) -> Self {
        WriteTimeout {
            inner,
            deadline,
            sleep: None,
        }
    }

    /// `Err` once the deadline has passed; otherwise `write` is polled, and when it is pending
    /// the task is woken at the deadline.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        let Some(at) = self.deadline.at() else {
            return write(Pin::new(&mut self.inner), cx);
        };
        if Instant::now() >= at {
            return Poll::Ready(Err(self.expire()));
        }
        let result = write(Pin::new(&mut self.inner), cx);
        if result.is_pending() {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if sleep.deadline() != at {
                sleep.as_mut().reset(at);
            }
            ready!(sleep.as_mut().poll(cx));
            return Poll::Ready(Err(self.expire()));
        }
        result
    }

    fn expire(&self) -> io::Error {
        self.deadline.expired.store(true, Ordering::Relaxed);
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read its response within write_timeout",
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.bounded(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.bounded(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.bounded(cx, |inner, cx| inner.poll_flush(cx))
    }

    /// Bound too: closing a TLS stream writes a last record, which waits for a client that does
    /// not read.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.bounded(cx, |inner, cx| inner.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn a_write_the_peer_does_not_read_fails_at_the_deadline() {
        let (near, _far) = tokio::io::duplex(16);
        let deadline = Arc::new(Deadline::new(Duration::from_millis(200)));
        let mut stream = WriteTimeout::new(near, deadline.clone());
        // Before a response is ready, writes are not bound.
        stream.write_all(&[0; 8]).await.unwrap();
        deadline.arm();
        let started = Instant::now();
        let error = stream.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        assert!(deadline.expired());
    }

    #[tokio::test]
    async fn a_response_read_in_time_is_written_whole() {
        let (near, mut far) = tokio::io::duplex(16);
        let deadline = Arc::new(Deadline::new(Duration::from_secs(5)));
        let mut stream = WriteTimeout::new(near, deadline.clone());
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut far, &mut all)
                .await
                .unwrap();
            all.len()
        });
        deadline.arm();
        stream.write_all(&[1; 4096]).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        assert_eq!(reader.await.unwrap(), 4096);
        assert!(!deadline.expired());
    }
}

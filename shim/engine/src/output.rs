//! Guest stdout/stderr: one writer task per file, any number of guest streams feeding it.
//!
//! Why not wasmtime-wasi's `OutputFile`: it writes synchronously from the executor thread, and
//! containerd's stdio are FIFOs that block when the reader lags. Why not `AsyncStdoutStream`:
//! all its views share one write permit, so concurrent HTTP instances writing logs can see
//! their writes refused. Here every view queues bytes into a channel drained by one task that
//! owns the file (non-blocking for FIFOs, tokio's blocking pool for regular files); a shared
//! byte budget gives backpressure, and `flush` waits until the queue reached the file.

use crate::Output;
use bytes::Bytes;
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Bytes that may be queued but not yet written before guests must wait.
const QUEUE_BUDGET: usize = 1 << 20;

/// A guest output destination, cheap to clone into every store.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    feed: Option<Feed>,
}

/// The sending side: a channel to the writer and the shared accounting.
#[derive(Clone)]
struct Feed {
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
}

/// State shared by the views and the writer task (which must not hold a sender, or the
/// channel would never close).
struct Shared {
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
    /// Signalled each time the writer finished a chunk.
    progress: Notify,
    /// The writer hit an error (reader gone); further output is discarded.
    broken: AtomicBool,
}

/// The writer task; await [`OutputWriter::finish`] to know everything queued was written.
pub(crate) struct OutputWriter {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl GuestOutput {
    /// Start the writer task for `output` (must run inside a tokio runtime).
    pub(crate) fn start(
        output: Output,
        what: &'static str,
    ) -> std::io::Result<(Self, OutputWriter)> {
        let file = match output {
            Output::Null => {
                return Ok((GuestOutput { feed: None }, OutputWriter { task: None }));
            }
            Output::File(file) => file,
        };
        let sink: Pin<Box<dyn AsyncWrite + Send>> = if file.metadata()?.file_type().is_fifo() {
            Box::pin(tokio::net::unix::pipe::Sender::from_file(file)?)
        } else {
            Box::pin(tokio::fs::File::from_std(file))
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            progress: Notify::new(),
            broken: AtomicBool::new(false),
        });
        let task = tokio::spawn(write_loop(rx, sink, Arc::clone(&shared), what));
        Ok((
            GuestOutput {
                feed: Some(Feed { tx, shared }),
            },
            OutputWriter { task: Some(task) },
        ))
    }
}

async fn write_loop(
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    mut sink: Pin<Box<dyn AsyncWrite + Send>>,
    shared: Arc<Shared>,
    what: &'static str,
) {
    // The loop ends when every sender is gone: every `GuestOutput` and guest stream dropped.
    while let Some(chunk) = rx.recv().await {
        let len = chunk.len();
        if !shared.broken.load(Ordering::Relaxed) {
            let written = async {
                sink.write_all(&chunk).await?;
                sink.flush().await
            }
            .await;
            if let Err(e) = written {
                tracing::warn!("guest {what}: write failed, discarding further output: {e}");
                shared.broken.store(true, Ordering::Relaxed);
            }
        }
        shared.queued.fetch_sub(len, Ordering::AcqRel);
        shared.progress.notify_waiters();
    }
    let _ = sink.shutdown().await;
}

impl OutputWriter {
    /// Wait until every byte queued so far is written (or `timeout` passes: a reader that went
    /// away must not hold up the caller forever). Call after the guest's stores are dropped.
    pub(crate) async fn finish(mut self, output: GuestOutput, timeout: Duration) {
        drop(output);
        if let Some(task) = self.task.take()
            && tokio::time::timeout(timeout, task).await.is_err()
        {
            tracing::warn!("guest output not fully written within {timeout:?}");
        }
    }
}

impl Shared {
    fn budget(&self) -> usize {
        QUEUE_BUDGET.saturating_sub(self.queued.load(Ordering::Acquire))
    }

    /// Wait until `ready(self)` holds, re-checking after each chunk the writer completes.
    async fn wait_until(&self, ready: impl Fn(&Shared) -> bool) {
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready(self) || self.broken.load(Ordering::Relaxed) {
                return;
            }
            notified.await;
        }
    }
}

impl Feed {
    fn push(&self, bytes: Bytes) -> StreamResult<()> {
        let shared = &self.shared;
        if bytes.is_empty() || shared.broken.load(Ordering::Relaxed) {
            return Ok(());
        }
        let len = bytes.len();
        shared.queued.fetch_add(len, Ordering::AcqRel);
        if self.tx.send(bytes).is_err() {
            shared.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(StreamError::Closed);
        }
        Ok(())
    }
}

/// One guest-side view of a [`GuestOutput`].
struct GuestStream {
    feed: Option<Feed>,
    /// The guest asked for a flush: readiness now means "queue drained", not "budget left".
    flush_pending: bool,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestStream {
            feed: self.feed.clone(),
            flush_pending: false,
        })
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(GuestStream {
            feed: self.feed.clone(),
            flush_pending: false,
        })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {
        let Some(Feed { shared, .. }) = &self.feed else {
            return;
        };
        if self.flush_pending {
            shared
                .wait_until(|s| s.queued.load(Ordering::Acquire) == 0)
                .await;
            self.flush_pending = false;
        } else {
            shared.wait_until(|s| s.budget() > 0).await;
        }
    }
}

impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        match &self.feed {
            Some(feed) => feed.push(bytes),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.flush_pending = self.feed.is_some();
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let Some(Feed { shared, .. }) = &self.feed else {
            return Ok(QUEUE_BUDGET);
        };
        if shared.broken.load(Ordering::Relaxed) {
            return Ok(QUEUE_BUDGET); // discarded; never block a guest on a dead reader
        }
        if self.flush_pending {
            if shared.queued.load(Ordering::Acquire) > 0 {
                return Ok(0);
            }
            self.flush_pending = false;
        }
        Ok(shared.budget())
    }
}

impl AsyncWrite for GuestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Only wasip3 uses this path; it is not linked today. Accept everything (the writer
        // task drains it) rather than implement a second backpressure protocol.
        let result = match &self.feed {
            Some(feed) => feed
                .push(Bytes::copy_from_slice(buf))
                .map(|()| buf.len())
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
            None => Ok(buf.len()),
        };
        Poll::Ready(result)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

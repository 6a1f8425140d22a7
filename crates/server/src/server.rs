//! Serving: a [`Server`] binds first (so tests can ask for port 0 and learn the real port)
//! and serves until a cancellation token fires, then drains for at most the grace period; a
//! [`Service`] is a service's router bound to its port with its shutdown token and its own
//! shutdown work, what every service's `build` returns.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::CommonArgs;

/// hyper's smallest HTTP/1 write buffer, and the one streamed responses get: with it, a body is
/// asked for its next chunk only once the previous one is in the socket, so a slow reader's
/// backlog stays in the stream, where it can be skipped (hyper's default holds ~400 KB).
pub const MIN_WRITE_BUFFER: usize = 8192;

/// The pause after a failed accept (out of file descriptors, say): long enough not to spin on
/// an error that persists, short enough that a connection waiting in the backlog hardly notices.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A bound listener, ready to serve. Binding is separate from serving so a caller (a test,
/// the all-in-one process) learns the real port before the first request.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    send_buffer: Option<usize>,
    write_buffer: Option<usize>,
}

impl Server {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr, send_buffer: None, write_buffer: None })
    }

    /// Bounds what HTTP/1 buffers for a connection before it stops polling the response body
    /// (hyper's default is about 400 KB, or 16 chunks); at least [`MIN_WRITE_BUFFER`].
    pub fn with_write_buffer(mut self, bytes: usize) -> Self {
        self.write_buffer = Some(bytes.max(MIN_WRITE_BUFFER));
        self
    }

    /// Caps the kernel send buffer of every accepted connection. Without a cap Linux grows it
    /// to megabytes per connection, which a slow reader of a stream fills with stale data
    /// while the service never sees backpressure.
    pub fn with_send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = Some(bytes);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish for at most
    /// `grace`. The cap matters: a long-lived response (a stream) would otherwise hold the
    /// process open forever.
    pub async fn serve(
        self,
        router: Router,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> std::io::Result<()> {
        // The accept loop runs on a worker. Awaited where it is called, it would run in the
        // future `#[tokio::main]` blocks on, on the process's main thread, which is not a
        // worker: every connection would wake that thread from the worker that saw the
        // listener ready, and wake a worker again to run the connection, two thread hand-offs
        // before a request is even read.
        match tokio::spawn(self.accept_until(router, shutdown, grace)).await {
            Ok(served) => served,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    async fn accept_until(
        self,
        router: Router,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> std::io::Result<()> {
        let mut builder = Builder::new(TokioExecutor::new());
        if let Some(bytes) = self.write_buffer {
            builder.http1().max_buf_size(bytes);
        }
        let graceful = GracefulShutdown::new();
        loop {
            let (tcp, _) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            // Responses are small and latency matters more than packet count: no Nagle delay.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            // Linux doubles what it is given (for its own bookkeeping); half is asked for so
            // that the buffer is the configured size.
            if let Some(bytes) = self.send_buffer
                && let Err(e) = socket2::SockRef::from(&tcp).set_send_buffer_size(bytes / 2)
            {
                tracing::warn!(error = %e, bytes, "cannot cap the socket send buffer");
            }
            let service = TowerToHyperService::new(router.clone());
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(SendmsgStream(tcp)), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        // No new connections; open ones finish their requests, for at most `grace`.
        drop(self.listener);
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!(
                ?grace,
                "requests still in flight after the shutdown grace period; exiting anyway"
            );
        }
        Ok(())
    }
}

/// An accepted connection whose vectored writes are `sendmsg` calls. hyper writes every
/// chunk of a streamed body as one vectored write (chunk size, data, CRLF); tokio makes that a
/// `writev`, which goes through the file layer (file position lock, write notifications) on the
/// way to the socket, a cost per call that `sendmsg` does not pay. At fan-out rates, one call
/// per frame per connection, that layer was a twentieth of the server's CPU.
#[derive(Debug)]
struct SendmsgStream(TcpStream);

impl AsyncRead for SendmsgStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendmsgStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let tcp = &self.get_mut().0;
        loop {
            std::task::ready!(tcp.poll_write_ready(cx))?;
            // `try_io` clears the readiness on WouldBlock, so the next poll waits for it again.
            match tcp.try_io(Interest::WRITABLE, || socket2::SockRef::from(tcp).send_vectored(bufs)) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// A service ready to run: its router, bound to its port, tied to a shutdown token.
/// Each service's `build` returns one; the binaries and tests run it.
pub struct Service {
    name: &'static str,
    server: Server,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
    drain: Option<futures::future::BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Service {
    pub async fn bind(
        name: &'static str,
        common: &CommonArgs,
        port: u16,
        router: Router,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let server = Server::bind(SocketAddr::new(common.listen_address, port)).await?;
        Ok(Self { name, server, router, shutdown, grace: common.shutdown_grace, drain: None })
    }

    /// For long streamed responses: cap the socket send buffer and hyper's write buffer, so
    /// a slow reader's backlog is not hoarded below the service (see [`Server`]).
    pub fn with_stream_buffers(mut self, send_buffer: usize) -> Self {
        self.server = self.server.with_send_buffer(send_buffer).with_write_buffer(MIN_WRITE_BUFFER);
        self
    }

    /// Work to finish after the server stopped and before the process may exit (releasing
    /// locks, say), within the same grace period.
    pub fn with_drain(mut self, drain: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        self.drain = Some(Box::pin(drain));
        self
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until the shutdown token is cancelled, then drains within the grace period.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(service = self.name, addr = %self.server.local_addr(), "listening");
        let (token, grace, name) = (self.shutdown.clone(), self.grace, self.name);
        let serve = async {
            let result = self.server.serve(self.router, self.shutdown.clone(), grace).await;
            // A server that failed must not leave the drain waiting for a signal.
            self.shutdown.cancel();
            result
        };
        // The drain starts with the shutdown, beside the HTTP drain, in the same grace period.
        let drain = async move {
            if let Some(drain) = self.drain {
                token.cancelled().await;
                if tokio::time::timeout(grace, drain).await.is_err() {
                    tracing::warn!(service = name, "shutdown work unfinished at the end of the grace period");
                }
            }
        };
        let (served, ()) = tokio::join!(serve, drain);
        served?;
        tracing::info!(service = name, "stopped");
        Ok(())
    }
}

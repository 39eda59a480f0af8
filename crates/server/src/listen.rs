//! The connection layer: the accept loop, a cap on open connections and a timeout on request
//! heads, so stalled or excess connections cannot take the server down.
//!
//! - Connections beyond `max_connections` are closed as soon as they are accepted: accepting
//!   never stops (so the kernel's backlog drains and well-behaved clients keep getting in),
//!   and a flood holds no file descriptors beyond the cap.
//! - A connection must send a whole request head within `header_timeout`, and an idle
//!   keep-alive connection is closed after the same time without a new request (hyper's
//!   header read timer starts whenever it waits for a head).
//! - An accept error (out of file descriptors) is logged and retried after a pause, never
//!   ends the loop.
//! - A request hyper cannot read — a malformed request line or header, a bad
//!   `Content-Length`, a URI too long (414), a head over 64 KiB or too many headers (431) — is
//!   answered by hyper itself with its status, an empty body and `Connection: close`, then the
//!   connection is closed: a whole answer, never half of one, but without the JSON error body
//!   (no handler ever sees such a request).
//! - Shutdown stops accepting, asks every connection to finish its request in flight, and
//!   waits for them.
//! - A client speaking HTTP/2 with prior knowledge (its connection preface over plain TCP)
//!   gets HTTP/2's own refusal, a GOAWAY with `HTTP_1_1_REQUIRED`, rather than a closed
//!   connection without a byte.
//! - With a TLS configuration every connection is TLS: its handshake must finish within
//!   `header_timeout` too; one that fails is closed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Largest request head (request line and headers) read, in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Pause after a failed accept (say, out of file descriptors) before the next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// Serve HTTPS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

pub async fn serve(
    listener: TcpListener,
    app: crate::App,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    // Set when shutdown begins: a connection whose first bytes have not come yet is closed
    // then, as hyper closes one waiting for its first request.
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            tracing::debug!(
                max = limits.max_connections,
                "connection refused: too many open"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Handlers see the client's address (failed authentications are audited per source).
        let service = TowerToHyperService::new(tower_http::add_extension::AddExtension::new(
            app.clone(),
            Peer(Arc::from(peer.ip().to_string())),
        ));
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        let tls = limits.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => match tokio::select! {
                    first = first_bytes(&stream, header_timeout) => first,
                    _ = closed.wait_for(|closing| *closing) => First::Nothing,
                } {
                    First::Http2 => {
                        refuse_http2(stream).await;
                        Ok(())
                    }
                    First::Nothing => Ok(()),
                    First::Http1 => {
                        watcher
                            .watch(connection(stream, service, header_timeout))
                            .await
                    }
                },
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(connection(stream, service, header_timeout))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    graceful.shutdown().await;
    Ok(())
}

/// The start of the preface an HTTP/2 client sends first over plain TCP ("prior knowledge",
/// RFC 9113 §3.3); no HTTP/1.1 request of this API starts so.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes say, looked at without reading them.
enum First {
    Http1,
    /// The start of an HTTP/2 preface.
    Http2,
    /// Nothing within the header timeout (or the connection closed): it is closed, as hyper
    /// would close it.
    Nothing,
}

async fn first_bytes(stream: &tokio::net::TcpStream, header_timeout: Duration) -> First {
    let mut first = [0u8; 4];
    match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n >= 3 && HTTP2_PREFACE.starts_with(&first[..n]) => First::Http2,
        Ok(Ok(n)) if n > 0 => First::Http1,
        // A peek that fails is left to hyper, which reads the same error.
        Ok(Err(_)) => First::Http1,
        Ok(Ok(_)) | Err(_) => First::Nothing,
    }
}

/// Answers an HTTP/2 client in its own protocol that this server speaks HTTP/1.1 only: an
/// empty SETTINGS frame and a GOAWAY with `HTTP_1_1_REQUIRED` (RFC 9113 §7), which clients
/// such as curl take as a cue to retry over HTTP/1.1. Hyper alone closed such a connection
/// without a byte, which read as a crash.
async fn refuse_http2(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const WAIT: Duration = Duration::from_secs(1);
    // What the client sent is read first, so closing does not reset the connection before the
    // client has read the answer.
    let mut preface = [0u8; 24];
    let _ = tokio::time::timeout(WAIT, stream.read(&mut preface)).await;
    let debug = b"this server speaks HTTP/1.1 only";
    let mut frames = Vec::with_capacity(9 + 9 + 8 + debug.len());
    // SETTINGS: length 0, type 0x4, no flags, stream 0.
    frames.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    // GOAWAY: type 0x7, stream 0; last stream 0, error HTTP_1_1_REQUIRED (0xd), debug text.
    let length = u32::try_from(8 + debug.len()).unwrap_or(8).to_be_bytes();
    frames.extend_from_slice(&[length[1], length[2], length[3], 0x7, 0, 0, 0, 0, 0]);
    frames.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0xd]);
    frames.extend_from_slice(debug);
    let _ = tokio::time::timeout(WAIT, async {
        stream.write_all(&frames).await?;
        stream.shutdown().await?;
        // Until the client closes its side (or the wait ends), whatever else it sends is read
        // and dropped.
        let mut rest = [0u8; 1024];
        while stream.read(&mut rest).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// The client's address as text (audit records name the source), written once per
/// connection rather than for each of its requests.
#[derive(Clone, Debug)]
pub(crate) struct Peer(pub(crate) Arc<str>);

/// What serves each connection: the router, with the client's address.
type Service = TowerToHyperService<tower_http::add_extension::AddExtension<crate::App, Peer>>;

/// One HTTP/1.1 connection over `stream` (plain or TLS).
fn connection<S>(
    stream: S,
    service: Service,
    header_timeout: Duration,
) -> http1::Connection<TokioIo<S>, Service>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // A request head past this is refused with 431 (JWTs and cookies fit easily).
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
}

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
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    watcher
                        .watch(connection(stream, service, header_timeout))
                        .await
                }
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
    graceful.shutdown().await;
    Ok(())
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

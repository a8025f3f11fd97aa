//! Serving a router on a TCP listener with limits on connections: how many
//! at once, how many from one address, how long a client may take to send
//! its request head (which is also how long an idle keep-alive connection
//! lives), and how many requests one connection carries.
//!
//! A connection over a limit is answered at once with a 503 problem and
//! closed, without a task or a buffer: a flood of connections costs the
//! node one accept each, and the file descriptors it holds stay bounded.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt as _;

/// The client's address, put in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub connections_max: usize,
    /// Connections open at once from one IP address.
    pub connections_per_address_max: usize,
    /// Time to send a request's head, from the connection's start or the
    /// end of the previous response: a slow or idle client is cut off.
    pub header_read_timeout: Duration,
    /// Requests on one connection; the last answer says `Connection: close`.
    pub requests_per_connection_max: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            connections_max: 1024,
            connections_per_address_max: 256,
            header_read_timeout: Duration::from_secs(10),
            requests_per_connection_max: 10_000,
        }
    }
}

/// Largest read buffer of a connection: the request head must fit in it
/// (the local API refuses heads far smaller with 431).
const READ_BUFFER_BYTES_MAX: usize = 64 * 1024;
/// How long open connections may finish their requests after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after an accept error (such as no file descriptor left), so the
/// loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Connections open now, in all and per address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// A connection's place in [`Open`], given back on drop.
struct Slot {
    open: Arc<Mutex<Open>>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock() {
            open.total = open.total.saturating_sub(1);
            if let Some(count) = open.per_address.get_mut(&self.address) {
                *count -= 1;
                if *count == 0 {
                    open.per_address.remove(&self.address);
                }
            }
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Listener,
    Address,
}

fn admit(
    open: &Arc<Mutex<Open>>,
    address: IpAddr,
    limits: &ConnectionLimits,
) -> Result<Slot, Full> {
    let Ok(mut state) = open.lock() else {
        return Err(Full::Listener);
    };
    if state.total >= limits.connections_max {
        return Err(Full::Listener);
    }
    let from_address = state.per_address.entry(address).or_insert(0);
    if *from_address >= limits.connections_per_address_max {
        return Err(Full::Address);
    }
    *from_address += 1;
    state.total += 1;
    Ok(Slot {
        open: open.clone(),
        address,
    })
}

/// The whole answer to a connection over a limit.
fn over_limit_response(full: Full) -> Vec<u8> {
    let detail = match full {
        Full::Listener => "this node has as many connections open as it allows; retry shortly",
        Full::Address => "too many connections from this address; close some and retry",
    };
    let body = serde_json::json!({
        "type": "urn:quorate:problem:too-many-connections",
        "title": "Service Unavailable",
        "status": 503,
        "detail": detail,
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` under `limits` until `shutdown`
/// resolves; then open connections get [`SHUTDOWN_GRACE`] to finish.
/// With `tls`, every connection is a TLS one: its handshake must finish
/// within the limits' `header_read_timeout`, and one that fails is closed
/// without an answer. Small answers go out at once (`TCP_NODELAY`):
/// without it, Nagle's algorithm and the client's delayed ACK hold
/// keep-alive responses for ~40 ms.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(READ_BUFFER_BYTES_MAX);
    let http = Arc::new(http);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(target: "api", error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match admit(&open, address.ip(), &limits) {
            Ok(slot) => slot,
            Err(full) => {
                // The send buffer of a new socket is empty: this write
                // does not block, and the socket closes on drop. Over TLS
                // the client cannot read it, but the connection is still
                // refused at once, without a handshake's cost.
                let _ = tcp.try_write(&over_limit_response(full));
                tracing::debug!(target: "api", %address, ?full, "connection refused");
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = connection_service(router.clone(), address, &limits);
        // A connection in its TLS handshake is watched too: shutdown
        // waits for it, and for its requests, within the grace.
        let (http, watcher, tls) = (http.clone(), graceful.watcher(), tls.clone());
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    let connection = http.serve_connection(TokioIo::new(tcp), service);
                    watcher.watch(connection).await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(target: "api", %address, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(target: "api", %address, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection = http.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(connection).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(target: "api", error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!(target: "api", "connections still open at shutdown were cut");
    }
    Ok(())
}

/// The service of one connection: `router`, with the client's address
/// in each request and `Connection: close` on the last answer the limits
/// allow.
fn connection_service(
    router: Router,
    address: SocketAddr,
    limits: &ConnectionLimits,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    let served = Arc::new(AtomicU64::new(0));
    let requests_max = limits.requests_per_connection_max.max(1);
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(PeerAddr(address));
        let last = served.fetch_add(1, Ordering::Relaxed) + 1 >= requests_max;
        let router = router.clone();
        async move {
            let mut response = router.oneshot(request).await?;
            if last {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_per_listener_and_per_address_and_gives_back_on_drop() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = ConnectionLimits {
            connections_max: 3,
            connections_per_address_max: 2,
            ..ConnectionLimits::default()
        };
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = admit(&open, a, &limits).unwrap();
        let _a2 = admit(&open, a, &limits).unwrap();
        assert_eq!(admit(&open, a, &limits).err(), Some(Full::Address));
        let _b1 = admit(&open, b, &limits).unwrap();
        assert_eq!(admit(&open, b, &limits).err(), Some(Full::Listener));
        drop(a1);
        let _b2 = admit(&open, b, &limits).unwrap();
        assert_eq!(open.lock().unwrap().total, 3);
    }

    #[test]
    fn the_refusal_is_a_whole_problem_response() {
        let text = String::from_utf8(over_limit_response(Full::Address)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["type"], "urn:quorate:problem:too-many-connections");
    }
}

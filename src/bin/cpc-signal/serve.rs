//! The accept loop: connection limits, a header read timeout and graceful
//! shutdown around the axum router (served by hyper directly, as
//! `axum::serve` has neither limits nor a header timeout).
//!
//! A connection holds its slot (global and per address) for as long as its
//! socket lives, WebSocket included: the slot travels inside the IO that
//! hyper hands to the upgraded socket.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::metrics::{Metrics, OpenGuard, Refusal};
use crate::shutdown;

/// What the server admits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open TCP connections at most, HTTP ones and WebSockets together.
    pub max_connections: usize,
    /// Open connections from one IP address at most.
    pub max_per_address: usize,
    /// A request header must arrive within this long of the connection (or
    /// of the previous response, on a keep-alive connection: an idle one
    /// is closed then, uncounted).
    pub header_timeout: Duration,
    /// After the shutdown begins, how long open connections get to finish.
    pub grace: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`):
    /// a request from one is counted by the room peer's per-address shares
    /// as its client's, not the proxy's. The connection caps count the
    /// proxy all the same (they act before any header is read).
    pub trusted_proxies: Vec<IpAddr>,
}

/// The client of a request that came through a trusted proxy: the last
/// address of its `X-Forwarded-For`, the one that proxy appended (those
/// before it are the client's to write, and prove nothing). `None` when
/// there is none, or it is no address.
pub fn forwarded_client(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim();
    last.parse().ok()
}

/// Whether `ip` is one of the trusted proxies. A dual-stack listener
/// (`HOST=::`) sees an IPv4 proxy as `::ffff:a.b.c.d`, listed as
/// `a.b.c.d`: compared as it was, every client behind it shared the
/// proxy's share.
pub fn trusted(proxies: &[IpAddr], ip: IpAddr) -> bool {
    proxies.contains(&ip.to_canonical())
}

/// Refused connections answered at once (429 or 503) at most; beyond that
/// a refused connection is closed without a word, so refusing stays cheap.
const RESPONDERS: usize = 64;
/// How long a refused connection gets to read its answer.
const RESPONDER_TIME: Duration = Duration::from_secs(1);
/// After `accept` fails (out of file descriptors), wait this long: failing
/// again at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Whom a per-address slot is counted against: an IPv4 address (mapped
/// ones included), or an IPv6 /64, the block one host is usually given:
/// counting IPv6 addresses one by one would let a host pick a new one for
/// each connection.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// The address a request came from, as [`address_key`] groups them: what
/// the room peer's per-client shares count by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub IpAddr);

/// Open connections per address (see [`address_key`]).
#[derive(Debug, Default)]
pub struct AddressCounts {
    open: HashMap<IpAddr, usize>,
}

impl AddressCounts {
    /// Takes a slot for `ip` if fewer than `max` are open.
    pub fn take(&mut self, ip: IpAddr, max: usize) -> bool {
        let open = self.open.entry(ip).or_default();
        if *open >= max {
            if *open == 0 {
                self.open.remove(&ip);
            }
            return false;
        }
        *open += 1;
        true
    }

    pub fn release(&mut self, ip: IpAddr) {
        if let Some(open) = self.open.get_mut(&ip) {
            *open -= 1;
            if *open == 0 {
                self.open.remove(&ip);
            }
        }
    }

    pub fn addresses(&self) -> usize {
        self.open.len()
    }
}

/// Open connections per IP address, shared by the connections (which give
/// their slot back on close) and `/metrics`.
pub type SharedCounts = Arc<Mutex<AddressCounts>>;

pub fn lock(counts: &SharedCounts) -> std::sync::MutexGuard<'_, AddressCounts> {
    counts.lock().unwrap_or_else(|e| e.into_inner())
}

/// An admitted connection's slots, given back on drop.
struct Slots {
    _global: OwnedSemaphorePermit,
    _open: OpenGuard,
    counts: SharedCounts,
    ip: IpAddr,
}

impl Drop for Slots {
    fn drop(&mut self) {
        lock(&self.counts).release(self.ip);
    }
}

/// A TCP stream that holds its connection's slots.
struct Admitted {
    stream: TcpStream,
    _slots: Slots,
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` within `limits` until the shutdown begins,
/// then lets open connections finish (WebSockets close with 1001) for
/// `limits.grace` at most.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    counts: SharedCounts,
    metrics: Arc<Metrics>,
) {
    let global = Arc::new(Semaphore::new(limits.max_connections));
    let responders = Arc::new(Semaphore::new(RESPONDERS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown::requested() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                metrics.refused(Refusal::AcceptError, &e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(global_slot) = global.clone().try_acquire_owned() else {
            metrics.refused(
                Refusal::GlobalCap,
                &format_args!(
                    "{} connections open (MAX_CONNECTIONS)",
                    limits.max_connections
                ),
            );
            refuse(stream, &responders, "503 Service Unavailable");
            continue;
        };
        let key = address_key(peer.ip());
        if !lock(&counts).take(key, limits.max_per_address) {
            drop(global_slot);
            metrics.refused(
                Refusal::PerAddressCap,
                &format_args!(
                    "{} connections open from {key} (MAX_PER_ADDRESS)",
                    limits.max_per_address,
                ),
            );
            refuse(stream, &responders, "429 Too Many Requests");
            continue;
        }
        // Signals are small and wait for no reply: send each at once.
        let _ = stream.set_nodelay(true);
        let io = Admitted {
            stream,
            _slots: Slots {
                _global: global_slot,
                _open: metrics.admitted(),
                counts: counts.clone(),
                ip: key,
            },
        };
        // Whether a request came: a keep-alive connection left idle past
        // the header timeout is closed the same way, but is no refusal.
        let served = Arc::new(AtomicBool::new(false));
        let proxied = trusted(&limits.trusted_proxies, peer.ip());
        let service = app.clone().map_request({
            let served = served.clone();
            move |mut request: axum::http::Request<_>| {
                served.store(true, Ordering::Relaxed);
                let client = proxied
                    .then(|| forwarded_client(request.headers()))
                    .flatten()
                    .map_or(key, address_key);
                request.extensions_mut().insert(ClientAddress(client));
                request
            }
        });
        let connection = http
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
            .with_upgrades();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let outcome = tokio::select! {
                outcome = connection.as_mut() => outcome,
                () = shutdown::requested() => {
                    // Finishes the request in flight, if any, then closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = outcome {
                if e.is_timeout() && !served.load(Ordering::Relaxed) {
                    metrics.refused(Refusal::HeaderTimeout, &TimedOut(peer));
                }
            }
        });
    }
    drop(listener);
    // Every connection holds a slot until it closes: HTTP ones after the
    // request in flight, WebSockets once their sessions said "going away".
    let deadline = tokio::time::Instant::now() + limits.grace;
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout_at(deadline, global.acquire_many(all))
        .await
        .is_err()
    {
        let open = limits.max_connections - global.available_permits();
        eprintln!(
            "cpc-signal: {open} connections still open {} s after the shutdown began: \
             closing them",
            limits.grace.as_secs()
        );
    }
}

struct TimedOut(SocketAddr);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no request header from {} within the timeout", self.0)
    }
}

/// Answers a refused connection with `status` and closes it, if a
/// responder is free; else closes it at once.
fn refuse(mut stream: TcpStream, responders: &Arc<Semaphore>, status: &'static str) {
    let Ok(responder) = responders.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _responder = responder;
        let body = format!("{status}\n");
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Retry-After: 10\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(RESPONDER_TIME, async {
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await?;
            // Read the request the client sent before closing: closing with
            // unread input resets the connection, and the client would see
            // a reset instead of the answer.
            let mut scratch = [0u8; 4096];
            while stream.read(&mut scratch).await? > 0 {}
            io::Result::Ok(())
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_slots_are_counted_and_forgotten_at_zero() {
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut counts = AddressCounts::default();
        assert!(counts.take(a, 2));
        assert!(counts.take(a, 2));
        assert!(!counts.take(a, 2));
        assert!(counts.take(b, 2));
        counts.release(a);
        assert!(counts.take(a, 2));
        for _ in 0..2 {
            counts.release(a);
        }
        counts.release(b);
        assert_eq!(counts.addresses(), 0);
        assert!(!counts.take(a, 0));
        assert_eq!(counts.addresses(), 0);
    }

    #[test]
    fn a_proxy_reached_over_a_dual_stack_listener_is_trusted() {
        let proxies: Vec<IpAddr> =
            vec!["10.0.0.5".parse().unwrap(), "2001:db8::5".parse().unwrap()];
        for ip in ["10.0.0.5", "::ffff:10.0.0.5", "2001:db8::5"] {
            assert!(trusted(&proxies, ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.6", "::ffff:10.0.0.6", "2001:db8::6", "::10.0.0.5"] {
            assert!(!trusted(&proxies, ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ipv6_hosts_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let key = |s: &str| address_key(s.parse().expect("an address"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
    }
}

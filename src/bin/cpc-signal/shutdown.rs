//! The server's shutdown (SIGTERM or Ctrl-C), as a signal any task can wait
//! for. Process-wide, so a WebSocket session needs no handle threaded
//! through the router to notice it: it selects on [`requested`] and closes
//! with 1001 "going away".

use std::sync::LazyLock;

use tokio::sync::watch;

static SHUTDOWN: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// Starts the shutdown: everything waiting in [`requested`] wakes.
pub fn begin() {
    SHUTDOWN.send_replace(true);
}

/// Whether the shutdown has begun.
pub fn begun() -> bool {
    *SHUTDOWN.borrow()
}

/// Resolves once the shutdown has begun (at once if it already has).
pub async fn requested() {
    let mut shutdown = SHUTDOWN.subscribe();
    // The sender is a static: it is never dropped, so this cannot fail.
    let _ = shutdown.wait_for(|begun| *begun).await;
}

/// Listens for SIGTERM and SIGINT (Ctrl-C) from now on; the future
/// begins the shutdown when one comes. Installed before the server says it
/// listens, so a signal sent right after is not missed.
#[cfg(unix)]
pub fn on_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let name = tokio::select! {
            _ = wait(term) => "SIGTERM",
            _ = wait(int) => "SIGINT",
        };
        eprintln!("cpc-signal: {name}: closing connections and rooms");
        begin();
    }
}

#[cfg(not(unix))]
pub fn on_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
        begin();
    }
}

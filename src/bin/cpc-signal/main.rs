//! `cpc-signal`: the signaling + static server of cpc-sync.
//!
//! Serves the page (`www/`) at `/` and the built npm package (`pkg/`) at
//! `/pkg/`, and relays WebRTC signaling per room over WebSocket at
//! `/signal` (see `signaling.rs`); `/.well-known/cpc-signal` tells the page
//! so. Listens on 127.0.0.1:8080; `PORT=n` for another port, `PORT=0` for
//! any free one, `HOST=0.0.0.0` to be reachable from other machines.
//! `CPC_WWW` and `CPC_PKG` override the folders served. `ORIGINS` and
//! `MAX_ROOM` configure signaling (see `signaling.rs`).

mod limits;
mod signaling;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use tower_http::services::ServeDir;

fn folder(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(default))
}

/// Tells a page served from here where to signal (`www/main.js` asks).
async fn discovery() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "signaling": "/signal", "version": cpc_sync::VERSION }))
}

fn app(rooms: Arc<signaling::Rooms>) -> Router {
    Router::new()
        .route("/.well-known/cpc-signal", get(discovery))
        .route("/signal", get(signaling::upgrade))
        .with_state(rooms)
        .nest_service("/pkg", ServeDir::new(folder("CPC_PKG", "pkg")))
        .fallback_service(ServeDir::new(folder("CPC_WWW", "www")))
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let port: u16 = match std::env::var("PORT").map(|p| p.parse()) {
        Err(_) => 8080,
        Ok(Ok(port)) => port,
        Ok(Err(_)) => {
            eprintln!("cpc-signal: PORT must be a number from 0 to 65535");
            return std::process::ExitCode::FAILURE;
        }
    };
    let host: IpAddr = match std::env::var("HOST").map(|h| h.parse()) {
        Err(_) => IpAddr::from([127, 0, 0, 1]),
        Ok(Ok(host)) => host,
        Ok(Err(_)) => {
            eprintln!("cpc-signal: HOST must be an IP address, like 0.0.0.0");
            return std::process::ExitCode::FAILURE;
        }
    };
    let rooms = match signaling::Config::from_env() {
        Ok(config) => Arc::new(signaling::Rooms::new(config)),
        Err(e) => {
            eprintln!("cpc-signal: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(SocketAddr::from((host, port))).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cpc-signal: cannot listen on {host}:{port}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("cpc-signal listening on http://{addr}/");
    if let Err(e) = axum::serve(listener, app(rooms))
        .with_graceful_shutdown(shutdown())
        .await
    {
        eprintln!("cpc-signal: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

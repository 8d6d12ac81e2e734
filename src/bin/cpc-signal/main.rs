//! `cpc-signal`: the signaling + static server of cpc-sync.
//!
//! Serves the page (`www/`) at `/` and the built npm package (`pkg/`) at
//! `/pkg/`, and relays WebRTC signaling per room over WebSocket at
//! `/signal` (see `signaling.rs`); `/.well-known/cpc-signal` tells the page
//! so. Listens on 127.0.0.1:8080; `PORT=n` for another port, `PORT=0` for
//! any free one, `HOST=0.0.0.0` to be reachable from other machines.
//! `CPC_WWW` and `CPC_PKG` override the folders served. `ORIGINS` and
//! `MAX_ROOM` configure signaling (see `signaling.rs`).
//!
//! Operations: `/healthz` answers "ok", `/metrics` the Prometheus text
//! format; at most `MAX_CONNECTIONS` connections (10,000) and
//! `MAX_PER_ADDRESS` (64) from one IP address are open; a request header
//! must arrive within `HEADER_TIMEOUT_MS` (10,000); on SIGTERM open
//! WebSockets are closed with 1001 "going away" and the process exits.

mod keep;
mod limits;
mod metrics;
mod serve;
mod shutdown;
mod signaling;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::services::ServeDir;

use crate::metrics::{Metrics, Reading, ReadingKind};
use crate::serve::Limits;

fn folder(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(default))
}

/// Tells a page served from here where to signal (`www/main.js` asks).
async fn discovery() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "signaling": "/signal", "version": cpc_sync::VERSION }))
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        metrics.render(),
    )
        .into_response()
}

async fn count_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    metrics.request(response.status().as_u16());
    response
}

/// The page's folder and the npm package's, and a warning for each that
/// holds nothing to serve (a binary copied away from its checkout: the
/// defaults are that checkout's folders).
fn page_folders() -> (PathBuf, PathBuf) {
    let (www, pkg) = (folder("CPC_WWW", "www"), folder("CPC_PKG", "pkg"));
    for (dir, file, var) in [
        (&www, "index.html", "CPC_WWW"),
        (&pkg, "cpc_sync.js", "CPC_PKG"),
    ] {
        if !dir.join(file).is_file() {
            eprintln!(
                "cpc-signal: warning: no {file} in {}: the page will not load (set {var})",
                dir.display()
            );
        }
    }
    (www, pkg)
}

fn app(
    rooms: Arc<signaling::Rooms>,
    metrics: Arc<Metrics>,
    (www, pkg): (PathBuf, PathBuf),
) -> Router {
    Router::new()
        .route("/.well-known/cpc-signal", get(discovery))
        .route("/signal", get(signaling::upgrade))
        .with_state(rooms)
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text).with_state(metrics.clone()))
        .nest_service("/pkg", ServeDir::new(pkg))
        .fallback_service(ServeDir::new(www))
        .layer(middleware::from_fn_with_state(metrics, count_request))
}

/// The signaling counters, read at each scrape.
fn signal_readings(stats: &signaling::SignalStats) -> Vec<Reading> {
    let (gauge, counter) = (Reading::gauge, Reading::counter);
    let mut readings = vec![
        gauge("sockets", "Signaling sockets open", stats.sockets),
        gauge("rooms", "Rooms with a peer", stats.rooms),
        gauge(
            "queued_bytes",
            "Bytes waiting in the sockets' outboxes",
            stats.queued_bytes,
        ),
        counter("signals_relayed", "Signals relayed", stats.relayed),
    ];
    for (reason, value) in [
        ("outbox_full", stats.dropped_outbox_full),
        ("no_such_peer", stats.dropped_no_peer),
    ] {
        readings.push(Reading {
            labels: vec![("reason", reason.to_string())],
            ..counter("signals_dropped", "Signals dropped, by reason", value)
        });
    }
    for (reason, value) in &stats.refused {
        readings.push(Reading {
            labels: vec![("reason", reason.to_string())],
            ..counter("signaling_refused", "Signaling refusals, by reason", *value)
        });
    }
    readings.extend([
        counter(
            "sockets_replaced",
            "Sockets replaced by one proving the same id",
            stats.replaced,
        ),
        counter(
            "send_timeouts",
            "Sockets closed: a send did not complete in time",
            stats.send_timeouts,
        ),
        counter(
            "idle_timeouts",
            "Sockets closed: silent too long",
            stats.idle_timeouts,
        ),
    ]);
    readings
}

/// `var` as a number, `default` when unset.
fn env_number<T: FromStr>(var: &str, default: T, what: &str) -> Result<T, String> {
    match std::env::var(var) {
        Err(_) => Ok(default),
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{var} must be {what}, not {text:?}")),
    }
}

fn limits() -> Result<Limits, String> {
    let at_least_one = |n: usize, var: &str| {
        if n == 0 {
            Err(format!("{var} must be 1 or more"))
        } else {
            Ok(n)
        }
    };
    Ok(Limits {
        max_connections: at_least_one(
            env_number("MAX_CONNECTIONS", 10_000, "a number")?,
            "MAX_CONNECTIONS",
        )?,
        max_per_address: at_least_one(
            env_number("MAX_PER_ADDRESS", 64, "a number")?,
            "MAX_PER_ADDRESS",
        )?,
        header_timeout: Duration::from_millis(at_least_one(
            env_number("HEADER_TIMEOUT_MS", 10_000, "a number of milliseconds")?,
            "HEADER_TIMEOUT_MS",
        )? as u64),
        grace: Duration::from_secs(5),
        trusted_proxies: trusted_proxies()?,
    })
}

/// Signaling's, the connections' and the room peer's settings, or the
/// first one that is wrong.
type Settings = (signaling::Config, Limits, Option<keep::KeepConfig>);

fn settings() -> Result<Settings, String> {
    Ok((
        signaling::Config::from_env()?,
        limits()?,
        keep::KeepConfig::from_env().map_err(|e| format!("the room peer: {e}"))?,
    ))
}

/// `TRUSTED_PROXIES`: addresses, comma-separated.
fn trusted_proxies() -> Result<Vec<IpAddr>, String> {
    let Ok(list) = std::env::var("TRUSTED_PROXIES") else {
        return Ok(Vec::new());
    };
    (list.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<IpAddr>().map(|ip| ip.to_canonical()).map_err(|_| {
                format!("TRUSTED_PROXIES: {a:?} is not an IP address (list the proxies' addresses, comma-separated)")
            })
        })
        .collect()
}

/// Raises the soft limit on open files to the hard one: the usual 1,024
/// would refuse sockets long before `MAX_CONNECTIONS`. Warns when even the
/// hard limit is below it.
fn raise_open_files(max_connections: usize) {
    // Files beyond sockets: the listener, static files being sent, stdio.
    let wanted = max_connections as u64 + 64;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => eprintln!(
            "cpc-signal: warning: the open-file limit is {limit}, below MAX_CONNECTIONS \
             ({max_connections}) plus 64; connections beyond it are refused at accept"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("cpc-signal: warning: cannot raise the open-file limit: {e}"),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The protocol core's tables keyed by what peers send (the room
    // peer's frames and snapshots) hash with a seed of this process's.
    let mut seed = [0u8; 8];
    if getrandom::fill(&mut seed).is_ok() {
        cpc_sync::protocol::hashing::seed(u64::from_le_bytes(seed));
    }
    // Every setting is read and checked before anything is made or bound.
    let port: u16 = match std::env::var("PORT") {
        Err(_) => 8080,
        Ok(p) => match p.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                eprintln!("cpc-signal: PORT must be a number from 0 to 65535, not {p:?}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let host: IpAddr = match std::env::var("HOST") {
        Err(_) => IpAddr::from([127, 0, 0, 1]),
        Ok(h) => match h.trim().parse() {
            Ok(host) => host,
            Err(_) => {
                eprintln!("cpc-signal: HOST must be an IP address, like 0.0.0.0, not {h:?}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let (config, limits, keep_config) = match settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("cpc-signal: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let origins = config.origins.to_string();
    let rooms = signaling::Rooms::new(config);
    let keep = match keep_config.map(keep::Keep::open).transpose() {
        Ok(keep) => keep.map(Arc::new),
        Err(e) => {
            eprintln!("cpc-signal: the room peer: {e}");
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
    let rooms = Arc::new(match &keep {
        Some(keep) => {
            eprintln!(
                "cpc-signal: keeping rooms as peer {} in {}",
                keep.peer(),
                keep.folder()
            );
            rooms.with_keep(keep.clone())
        }
        None => {
            eprintln!("cpc-signal: not keeping rooms (KEEP=off): signaling only");
            rooms
        }
    });
    eprintln!("cpc-signal: pages may signal from {origins}");
    let folders = page_folders();
    raise_open_files(limits.max_connections);
    tokio::spawn(shutdown::on_signal());
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("cpc-signal listening on http://{addr}/");
    let counts = serve::SharedCounts::default();
    let metrics = Metrics::new()
        .with_readings({
            let counts = counts.clone();
            move || {
                vec![Reading {
                    name: "addresses",
                    help: "IP addresses with connections open",
                    kind: ReadingKind::Gauge,
                    labels: vec![],
                    value: serve::lock(&counts).addresses() as u64,
                }]
            }
        })
        .with_readings({
            let rooms = rooms.clone();
            move || signal_readings(&rooms.stats())
        })
        .with_readings({
            let rooms = rooms.clone();
            move || rooms.relay_readings()
        })
        .with_readings(move || {
            keep.as_ref()
                .map(|k| keep::readings(&k.stats()))
                .unwrap_or_default()
        });
    let metrics = Arc::new(metrics);
    serve::serve(
        listener,
        app(rooms, metrics.clone(), folders),
        limits,
        counts,
        metrics,
    )
    .await;
    eprintln!("cpc-signal: stopped");
    std::process::ExitCode::SUCCESS
}

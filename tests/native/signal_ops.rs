//! `cpc-signal` run as a process on 127.0.0.1, as an operator runs it:
//! `/healthz`, `/metrics`, the connection limits, the header timeout and
//! the shutdown on SIGTERM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use cpc_sync::protocol::signal::{ClientMessage, ServerMessage};
use cpc_sync::protocol::Identity;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// A `cpc-signal` on a free port, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    async fn start(env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cpc-signal"));
        command
            .env("PORT", "0")
            .env_remove("HOST")
            .env_remove("MAX_CONNECTIONS")
            .env_remove("MAX_PER_ADDRESS")
            .env_remove("HEADER_TIMEOUT_MS")
            // Operating signaling; the room peer has its own tests (keep.rs).
            .env("KEEP", "off")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("cpc-signal starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("cpc-signal says where it listens within 20 s")
            .expect("stdout")
            .expect("a line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        // Keep draining stdout so the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child, addr }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.addr).await.expect("connect")
    }

    /// A whole HTTP/1.1 exchange on a new connection: the response as text.
    async fn get(&self, path: &str) -> String {
        let mut stream = self.connect().await;
        request(&mut stream, path).await
    }

    async fn metrics(&self) -> Vec<(String, f64)> {
        // A slot given back reaches the server a moment after the client
        // saw the close: with a cap of 1, try again for a while.
        let mut response = self.get("/metrics").await;
        let start = Instant::now();
        while !response.starts_with("HTTP/1.1 200") && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            response = self.get("/metrics").await;
        }
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let (head, body) = response.split_once("\r\n\r\n").expect("a body");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        parse_prometheus_text(body)
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }
}

async fn request(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("a response within 5 s")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

/// The samples of a Prometheus text exposition (format 0.0.4), checking
/// each line's shape: `# HELP`/`# TYPE` comments, `name{labels} value`.
fn parse_prometheus_text(body: &str) -> Vec<(String, f64)> {
    let is_name = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    };
    let mut samples = Vec::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (kind, name) = (words.next(), words.next());
            assert!(matches!(kind, Some("HELP" | "TYPE")), "{line}");
            assert!(name.is_some_and(is_name), "{line}");
            if kind == Some("TYPE") {
                let kinds = ["counter", "gauge", "histogram", "summary", "untyped"];
                assert!(words.next().is_some_and(|t| kinds.contains(&t)), "{line}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let name = series.split('{').next().unwrap_or_default();
        assert!(is_name(name), "{line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let labels = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("labels in braces: {line}"));
            for label in labels.split(',') {
                let (key, value) = label.split_once('=').expect("key=value");
                assert!(is_name(key), "{line}");
                assert!(value.starts_with('"') && value.ends_with('"'), "{line}");
            }
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        samples.push((series.to_string(), value));
    }
    samples
}

fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
}

/// Polls `check` every 50 ms until it holds, for `within` at most.
async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn healthz_answers_ok_and_metrics_parse() {
    let server = Server::start(&[]).await;
    let response = server.get("/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("\r\n\r\nok"), "{response}");
    let samples = server.metrics().await;
    // The /healthz request was counted; /metrics answers before it counts.
    assert_eq!(
        sample(&samples, "cpc_signal_http_requests_total{code=\"200\"}"),
        1.0
    );
    // This one, and perhaps /healthz's, closing as the client saw it close.
    let open = sample(&samples, "cpc_signal_connections_open");
    assert!((1.0..=2.0).contains(&open), "{open}");
    for reason in ["global_cap", "per_address_cap", "header_timeout"] {
        let series = format!("cpc_signal_connections_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&samples, &series), 0.0);
    }
    // The signaling counters are there, read from the rooms at the scrape.
    for series in [
        "cpc_signal_sockets",
        "cpc_signal_rooms",
        "cpc_signal_queued_bytes",
        "cpc_signal_signals_relayed_total",
        "cpc_signal_signals_dropped_total{reason=\"outbox_full\"}",
        "cpc_signal_signaling_refused_total{reason=\"bad_proof\"}",
    ] {
        assert_eq!(sample(&samples, series), 0.0, "{series}");
    }
}

/// Once the held connections are closed, their slots come back; the
/// refusal was counted under `reason` (once, or more if a retry came
/// before a slot was back).
async fn slots_come_back_and_the_refusal_was_counted(server: &Server, reason: &str) {
    assert!(
        eventually(Duration::from_secs(5), || async {
            server.get("/healthz").await.starts_with("HTTP/1.1 200")
        })
        .await
    );
    let samples = server.metrics().await;
    let series = format!("cpc_signal_connections_refused_total{{reason=\"{reason}\"}}");
    let refused = sample(&samples, &series);
    assert!(refused >= 1.0, "{refused}");
}

#[tokio::test]
async fn the_connection_over_the_per_address_cap_gets_429_and_is_counted() {
    let server = Server::start(&[("MAX_PER_ADDRESS", "2")]).await;
    let held = [server.connect().await, server.connect().await];
    let refused = server.get("/healthz").await;
    assert!(
        refused.starts_with("HTTP/1.1 429 Too Many Requests"),
        "{refused}"
    );
    drop(held);
    slots_come_back_and_the_refusal_was_counted(&server, "per_address_cap").await;
}

#[tokio::test]
async fn the_connection_over_the_global_cap_gets_503_or_is_closed() {
    let server = Server::start(&[("MAX_CONNECTIONS", "1")]).await;
    let held = server.connect().await;
    let refused = server.get("/healthz").await;
    assert!(
        refused.is_empty() || refused.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{refused}"
    );
    drop(held);
    slots_come_back_and_the_refusal_was_counted(&server, "global_cap").await;
}

#[tokio::test]
async fn a_half_sent_header_is_closed_after_the_header_timeout() {
    let server = Server::start(&[("HEADER_TIMEOUT_MS", "300")]).await;
    let mut slow = server.connect().await;
    let start = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: te")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let closed = timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "still open 5 s later");
    let after = start.elapsed();
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}, before the timeout"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            let samples = server.metrics().await;
            sample(
                &samples,
                "cpc_signal_connections_refused_total{reason=\"header_timeout\"}",
            ) == 1.0
        })
        .await
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout_uncounted() {
    let server = Server::start(&[("HEADER_TIMEOUT_MS", "300")]).await;
    let mut idle = server.connect().await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    let closed = timeout(Duration::from_secs(5), idle.read_to_end(&mut response)).await;
    assert!(closed.is_ok(), "still open 5 s later");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let samples = server.metrics().await;
    assert_eq!(
        sample(
            &samples,
            "cpc_signal_connections_refused_total{reason=\"header_timeout\"}"
        ),
        0.0
    );
}

#[tokio::test]
async fn sigterm_closes_websockets_with_going_away_and_exits_0() {
    let mut server = Server::start(&[]).await;
    let url = format!("ws://{}/signal", server.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("WebSocket");
    // A server that sends Hello first gets a signed join; one that does not
    // gets the same message shape at once.
    let nonce = match timeout(Duration::from_millis(500), socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str(&text) {
            Ok(ServerMessage::Hello { nonce }) => nonce,
            _ => panic!("unexpected first message {text}"),
        },
        _ => String::new(),
    };
    let join = ClientMessage::join(&Identity::from_seed(1), &nonce, "ops").to_text();
    socket.send(Message::text(join)).await.expect("join");
    match timeout(Duration::from_secs(5), socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => assert!(text.contains("\"peers\""), "{text}"),
        other => panic!("no answer to the join: {other:?}"),
    }

    let pid = server.pid().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    let close = timeout(Duration::from_secs(5), async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame;
            }
        }
        None
    })
    .await
    .expect("closed within 5 s")
    .expect("with a close frame");
    assert_eq!(close.code, CloseCode::Away, "{close:?}");
    let status = timeout(Duration::from_secs(5), server.child.wait())
        .await
        .expect("exits within 5 s")
        .expect("wait");
    assert!(status.success(), "{status}");
}

//! A real `cpc-signal` process for the native tests that need one
//! (`signal_server.rs`, `keep.rs`): started on a free port, its output
//! read to the end, killed (`SIGKILL`) on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A `cpc-signal` process, killed on drop.
pub struct Server {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cpc-signal"))
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env_remove("ORIGINS")
            .env_remove("MAX_ROOM")
            // Signaling alone unless a test asks for the room peer (and
            // gives it a DATA_DIR of its own).
            .env("KEEP", "off")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cpc-signal");
        // Both pipes are read to the end, so the server never blocks on them.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("cpc-signal did not say where it listens");
        let addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Server {
            child,
            addr,
            stderr,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `kill -9`: the process ends wherever it is.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `GET /metrics`, the body.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = TcpStream::connect(&self.addr).await.expect("connect");
        let request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        tcp.write_all(request.as_bytes()).await.expect("request");
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.expect("response");
        response
    }

    /// A reading of `/metrics` (the first line that starts with `name`).
    pub async fn reading(&self, name: &str) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    /// The server's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// The server's stderr once a line containing `needle` came (or after
    /// 10 s): a reader thread takes the lines as the server writes them.
    pub async fn stderr_with(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.stderr.lock().unwrap().clone();
            if lines.iter().any(|l| l.contains(needle)) || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn connect(&self, origin: Option<&str>) -> Result<Ws, WsError> {
        let origin = origin.map(|o| ("Origin", o));
        self.connect_with(origin.as_slice()).await
    }

    /// A socket to `/signal` whose upgrade carries `headers`.
    pub async fn connect_with(&self, headers: &[(&'static str, &str)]) -> Result<Ws, WsError> {
        let mut request = format!("ws://{}/signal", self.addr)
            .into_client_request()
            .expect("request");
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, value.parse().expect("a header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(ws)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

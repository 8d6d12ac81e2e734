//! `npm run bench:signal`: `cpc-signal` under load, on loopback.
//!
//! Starts the server (`CPC_SIGNAL_BIN`, default `target/release/cpc-signal`)
//! on a free port, opens 2,000 WebSockets in 200 rooms plus one stalled
//! reader per room (it joins, then never reads again), and has every
//! socket but the stalled ones send 10 signals a second for 30 s: half to
//! its room's stalled reader, half to the other members in turn. Each
//! signal's `data` carries its send time and 2 KiB of padding (an SDP
//! offer's size); the receiver, in this process, takes the relay latency
//! from it. Reports the server's RSS (/proc/<pid>/status) and CPU
//! (/proc/<pid>/stat, utime + stime over the run), p50/p99 relay latency,
//! and drops: signals to readers that keep up that never arrived.
//!
//! `CPC_BENCH_QUICK=1`: 100 sockets in 10 rooms for 5 s. Each figure can be
//! set: `CPC_BENCH_SOCKETS`, `CPC_BENCH_ROOMS`, `CPC_BENCH_SECONDS`,
//! `CPC_BENCH_RATE` (signals per socket per second), `CPC_BENCH_PAYLOAD`
//! (bytes of padding).
//!
//! A server that greets with `{"type":"hello","nonce"}` gets joins signed
//! over its nonce; one that does not gets the same join shape at once.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpc_sync::protocol::signal::{ClientMessage, ServerMessage};
use cpc_sync::protocol::Identity;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

/// Signals still in flight this long after the senders stop are drops.
const DRAIN: Duration = Duration::from_secs(3);
/// Sockets opening at once.
const CONNECTING: usize = 64;

#[derive(Debug, Clone)]
struct Config {
    sockets: usize,
    rooms: usize,
    seconds: u64,
    rate: u32,
    payload: usize,
}

fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Config {
    fn from_env() -> Config {
        let quick = std::env::var("CPC_BENCH_QUICK").is_ok_and(|v| v == "1");
        let (sockets, rooms, seconds) = if quick { (100, 10, 5) } else { (2000, 200, 30) };
        Config {
            sockets: env_or("CPC_BENCH_SOCKETS", sockets),
            rooms: env_or("CPC_BENCH_ROOMS", rooms).max(1),
            seconds: env_or("CPC_BENCH_SECONDS", seconds),
            rate: env_or("CPC_BENCH_RATE", 10).max(1),
            payload: env_or("CPC_BENCH_PAYLOAD", 2048),
        }
    }

    fn per_room(&self) -> usize {
        self.sockets / self.rooms
    }
}

/// Peer ids: socket `i` of room `r` has seed `r * per_room + i`; the
/// stalled reader of room `r` has seed `STALLED + r`.
const STALLED: u64 = 1_000_000;

fn identity(seed: u64) -> (Identity, String) {
    let identity = Identity::from_seed(seed);
    let peer = identity.peer().to_string();
    (identity, peer)
}

/// The server process, killed on drop.
struct Server {
    child: Child,
    addr: String,
    pid: u32,
}

async fn start_server() -> Result<Server, Error> {
    let bin = std::env::var("CPC_SIGNAL_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/cpc-signal").to_string()
    });
    let mut child = Command::new(&bin)
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("MAX_PER_ADDRESS", "100000")
        // Signaling under load: its clients join with made-up ids, and
        // the room peer is measured apart (BENCHMARKS.md, "Issue 18").
        .env("KEEP", "off")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let pid = child.id().ok_or("the server exited")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = timeout(Duration::from_secs(20), lines.next_line())
        .await??
        .ok_or("the server said nothing")?;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix('/'))
        .ok_or_else(|| format!("no address in {line:?}"))?
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Server { child, addr, pid })
}

/// Resident memory of `pid`, KiB: (now, peak).
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time of `pid` so far (user + system).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) close with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf reads a configuration value; no memory is passed.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / per_second)
}

/// The 1-minute load average of the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

/// Connects and joins `room` as the identity of `seed`; `hello`: whether
/// the server greets first with a nonce to sign.
async fn join(url: &str, seed: u64, room: &str, hello: bool) -> Result<Socket, Error> {
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let nonce = if hello {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(&text)? {
                ServerMessage::Hello { nonce } => nonce,
                other => return Err(format!("expected hello, got {other:?}").into()),
            },
            other => return Err(format!("expected hello, got {other:?}").into()),
        }
    } else {
        String::new()
    };
    let (identity, _) = identity(seed);
    let join = ClientMessage::join(&identity, &nonce, room).to_text();
    socket.send(Message::text(join)).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(&text)? {
                ServerMessage::Peers { .. } => return Ok(socket),
                ServerMessage::Error { message } => return Err(message.into()),
                _ => {}
            },
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err("closed before the join was answered".into()),
        }
    }
}

/// Whether the server greets first: waits 2 s for a first message.
async fn greets_first(url: &str) -> Result<bool, Error> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let first = timeout(Duration::from_secs(2), socket.next()).await;
    let _ = socket.close(None).await;
    Ok(matches!(first, Ok(Some(Ok(Message::Text(text)))) if text.contains("\"hello\"")))
}

#[derive(Debug, Default)]
struct Tally {
    sent_to_active: u64,
    sent_to_stalled: u64,
    received: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
}

/// One active socket: sends on its schedule until `stop`, reads until
/// `stop + DRAIN`.
/// The run's clock: latencies count from `epoch`; sends go from `start`
/// (plus each socket's offset) to `stop`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    epoch: Instant,
    start: Instant,
    stop: Instant,
}

async fn run_active(
    mut socket: Socket,
    others: Vec<String>,
    stalled: String,
    config: Arc<Config>,
    schedule: Schedule,
    offset: Duration,
) -> Tally {
    let Schedule { epoch, start, stop } = schedule;
    let mut tally = Tally::default();
    let pad = "x".repeat(config.payload);
    let period = Duration::from_secs(1) / config.rate;
    let mut ticks = tokio::time::interval_at((start + offset).into(), period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = tokio::time::Instant::from(stop + DRAIN);
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick(), if Instant::now() < stop => {
                let to_stalled = sent % 2 == 1;
                let to = if to_stalled {
                    &stalled
                } else {
                    &others[(sent as usize / 2) % others.len()]
                };
                sent += 1;
                let t = epoch.elapsed().as_micros() as u64;
                let text = format!(
                    r#"{{"type":"signal","to":"{to}","data":{{"t":{t},"pad":"{pad}"}}}}"#
                );
                if socket.send(Message::text(text)).await.is_err() {
                    break;
                }
                if to_stalled {
                    tally.sent_to_stalled += 1;
                } else {
                    tally.sent_to_active += 1;
                }
            }
            message = socket.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break,
                };
                let now = epoch.elapsed().as_micros() as u64;
                match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(ServerMessage::Signal { data, .. }) => {
                        tally.received += 1;
                        if let Some(t) = data.get("t").and_then(|t| t.as_u64()) {
                            let us = now.saturating_sub(t).min(u64::from(u32::MAX));
                            tally.latencies_us.push(us as u32);
                        }
                    }
                    Ok(ServerMessage::Error { message }) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(message);
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(end) => break,
        }
    }
    let _ = socket.close(None).await;
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

async fn scrape(addr: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

async fn bench(config: Config) -> Result<(), Error> {
    let config = Arc::new(config);
    let per_room = config.per_room();
    if per_room < 2 {
        return Err("at least 2 sockets per room".into());
    }
    let server = start_server().await?;
    let url = format!("ws://{}/signal", server.addr);
    let hello = greets_first(&url).await?;
    let (rss_idle, _) = rss_kib(server.pid);
    println!(
        "cpc-signal load: {} sockets in {} rooms ({per_room} each) + 1 stalled reader per room, \
         {} signals/s each for {} s, {} B of padding; server pid {}, {}",
        per_room * config.rooms,
        config.rooms,
        config.rate,
        config.seconds,
        config.payload,
        server.pid,
        if hello {
            "signed joins (Hello)"
        } else {
            "no Hello: unsigned joins"
        }
    );

    let connect_start = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut joins = Vec::new();
    for r in 0..config.rooms {
        let room = format!("bench-{r}");
        let seeds = (0..per_room as u64)
            .map(|i| (r * per_room) as u64 + i)
            .chain([STALLED + r as u64]);
        for seed in seeds {
            let (url, room, gate) = (url.clone(), room.clone(), gate.clone());
            joins.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                let joined = timeout(Duration::from_secs(30), join(&url, seed, &room, hello)).await;
                (seed, joined.map_err(Error::from).and_then(|j| j))
            }));
        }
    }
    let mut active = Vec::new();
    let mut stalled = Vec::new();
    for join in joins {
        let (seed, socket) = join.await?;
        let socket = socket.map_err(|e| format!("socket {seed}: {e}"))?;
        if seed >= STALLED {
            stalled.push(socket); // joined; never read again
        } else {
            active.push((seed, socket));
        }
    }
    let connect_time = connect_start.elapsed();
    let (rss_joined, _) = rss_kib(server.pid);

    // Peer ids first: deriving keys is not free, and must not eat into
    // the run's schedule.
    let ids: std::collections::HashMap<u64, String> = (0..config.rooms as u64)
        .flat_map(|r| (0..per_room as u64).map(move |i| r * per_room as u64 + i))
        .chain((0..config.rooms as u64).map(|r| STALLED + r))
        .map(|seed| (seed, identity(seed).1))
        .collect();
    let epoch = Instant::now();
    let start = epoch + Duration::from_millis(200);
    let stop = start + Duration::from_secs(config.seconds);
    let period = Duration::from_secs(1) / config.rate;
    let mut runs = Vec::new();
    for (index, (seed, socket)) in active.into_iter().enumerate() {
        let r = seed as usize / per_room;
        let others = (0..per_room as u64)
            .map(|i| (r * per_room) as u64 + i)
            .filter(|s| *s != seed)
            .map(|s| ids[&s].clone())
            .collect();
        let stalled = ids[&(STALLED + r as u64)].clone();
        // Spread the sends over the period, not all on one tick.
        let offset = period.mul_f64(index as f64 / (per_room * config.rooms) as f64);
        runs.push(tokio::spawn(run_active(
            socket,
            others,
            stalled,
            config.clone(),
            Schedule { epoch, start, stop },
            offset,
        )));
    }
    // RSS every 250 ms through the run and the drain.
    let pid = server.pid;
    let sampler = tokio::spawn(async move {
        let mut peak = 0u64;
        while Instant::now() < stop + DRAIN {
            peak = peak.max(rss_kib(pid).0);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        peak
    });
    tokio::time::sleep_until(start.into()).await;
    let cpu_start = cpu_time(server.pid);
    let own_cpu_start = cpu_time(std::process::id());
    let load_start = load_average();
    tokio::time::sleep_until(stop.into()).await;
    let cpu_run = cpu_time(server.pid).saturating_sub(cpu_start);
    let own_cpu_run = cpu_time(std::process::id()).saturating_sub(own_cpu_start);
    let load_end = load_average();
    let (rss_end_of_run, _) = rss_kib(server.pid);

    let mut total = Tally::default();
    for run in runs {
        let tally = run.await?;
        total.sent_to_active += tally.sent_to_active;
        total.sent_to_stalled += tally.sent_to_stalled;
        total.received += tally.received;
        total.errors += tally.errors;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
        total.latencies_us.extend(tally.latencies_us);
    }
    let rss_peak_sampled = sampler.await?;
    let (rss_after, rss_hwm) = rss_kib(server.pid);
    let metrics = scrape(&server.addr).await;

    // Shutdown with the stalled readers still open.
    let term_start = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &server.pid.to_string()])
        .status()
        .await;
    let mut child = server.child;
    let exited = timeout(Duration::from_secs(15), child.wait()).await;
    let term_time = term_start.elapsed();
    drop(stalled);

    total.latencies_us.sort_unstable();
    let lat = &total.latencies_us;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let run_secs = config.seconds as f64;
    println!("joined in {:.1} s", connect_time.as_secs_f64());
    println!(
        "server RSS: {:.1} MiB idle, {:.1} MiB joined, {:.1} MiB peak sampled (VmHWM {:.1} MiB), \
         {:.1} MiB at the end of the run, {:.1} MiB after the drain",
        mib(rss_idle),
        mib(rss_joined),
        mib(rss_peak_sampled),
        mib(rss_hwm),
        mib(rss_end_of_run),
        mib(rss_after)
    );
    println!(
        "server CPU over the run: {:.1} s in {run_secs:.0} s ({:.0}% of one core)",
        cpu_run.as_secs_f64(),
        100.0 * cpu_run.as_secs_f64() / run_secs
    );
    println!(
        "machine: {} cores; load average {load_start} at the start of the run, {load_end} at its end; \
         the clients (this process) used {:.1} s of CPU over the run",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        own_cpu_run.as_secs_f64()
    );
    println!(
        "relay latency to readers that keep up: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} samples)",
        percentile(lat, 0.50),
        percentile(lat, 0.99),
        percentile(lat, 0.999),
        percentile(lat, 1.0),
        lat.len()
    );
    println!(
        "signals: {} sent to readers that keep up, {} received, {} dropped; {} sent to stalled readers; \
         {} error replies{}",
        total.sent_to_active,
        total.received,
        total.sent_to_active.saturating_sub(total.received),
        total.sent_to_stalled,
        total.errors,
        total
            .first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    println!(
        "SIGTERM with the stalled readers open: {} in {:.2} s",
        match exited {
            Ok(Ok(status)) => format!("exited ({status})"),
            _ => "still running (killed)".to_string(),
        },
        term_time.as_secs_f64()
    );
    let interesting = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && (l.contains("refused") || l.contains("dropped")))
        .collect::<Vec<_>>()
        .join("; ");
    if !interesting.is_empty() {
        println!("server metrics: {interesting}");
    }
    Ok(())
}

fn raise_open_files() {
    match rlimit::increase_nofile_limit(65_536) {
        Ok(limit) if limit < 8_192 => {
            eprintln!("warning: the open-file limit is {limit}; 2,000 sockets need over 4,096")
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the open-file limit: {e}"),
    }
}

fn main() -> std::process::ExitCode {
    // Before the runtime, and before the server starts: it inherits it.
    raise_open_files();
    let config = Config::from_env();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("signal_load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Bounded: setup, the run, the drain and the shutdown, with slack.
    let limit = Duration::from_secs(config.seconds + 180);
    match runtime.block_on(async { timeout(limit, bench(config)).await }) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("signal_load: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("signal_load: over the time limit");
            std::process::ExitCode::FAILURE
        }
    }
}

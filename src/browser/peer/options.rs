//! `Peer.open`'s options, read and checked in one place.

use js_sys::Reflect;
use wasm_bindgen::prelude::*;

use crate::browser::convert::describe;
use crate::browser::error::{Code, PeerError};
use crate::protocol::room::SECRET_ROOM_PREFIX;
use crate::protocol::signal::MAX_NAME;

/// Where a peer keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    IndexedDb,
    Memory,
}

/// The options of `Peer.open`, checked.
pub struct Options {
    pub room: String,
    pub secret: Option<String>,
    /// A `ws:`/`wss:` URL of `cpc-signal`'s `/signal`; `None`: tabs only.
    pub signaling: Option<String>,
    pub storage: StorageKind,
    /// `RTCConfiguration.iceServers`, passed through (`undefined` if unset).
    pub ice_servers: JsValue,
    pub compact_after: Option<usize>,
    /// Open links at most (the rest of a big room is reached by relay).
    pub max_connections: Option<usize>,
    /// How long a WebRTC connection may take to open before it has failed
    /// (`connectTimeoutMs`; the mesh's default if unset).
    pub connect_timeout_ms: Option<u64>,
    /// Warm the receive path while the page is idle after opening
    /// (`warmUp`, default true; see `protocol::sync::warm`).
    pub warm_up: bool,
    /// Web Workers verifying received seals (`verifyWorkers`; 0: on the
    /// page's thread). Started when a batch first needs them.
    pub verify_workers: usize,
}

/// `maxConnections` at most: a browser runs out of peer connections (and
/// of its CPU) long before the protocol would mind.
pub const MAX_CONNECTIONS: usize = 64;

/// `connectTimeoutMs`'s bounds: shorter than a second fails links that a
/// slow network would have opened; longer than two minutes leaves a room
/// with no link (nor relay) for that long.
pub const MIN_CONNECT_TIMEOUT_MS: usize = 1_000;
pub const MAX_CONNECT_TIMEOUT_MS: usize = 120_000;

/// `verifyWorkers` at most, and its default's cap (with the cores the
/// browser reports): verification levels off with the cores, and each
/// worker holds its own instance of the wasm.
pub const MAX_VERIFY_WORKERS: usize = 8;
const DEFAULT_VERIFY_WORKERS: usize = 4;

fn get(options: &JsValue, name: &str) -> JsValue {
    Reflect::get(options, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn absent(value: &JsValue) -> bool {
    value.is_undefined() || value.is_null()
}

/// An optional string option.
fn string(options: &JsValue, name: &str) -> Result<Option<String>, PeerError> {
    let value = get(options, name);
    if absent(&value) {
        return Ok(None);
    }
    let text = value.as_string().ok_or_else(|| {
        PeerError::type_error(Code::InvalidOption, format!("option {name} takes a string"))
    })?;
    // As for keys: a lone surrogate comes out as U+FFFD, and two rooms (or
    // secrets) would be one.
    if !crate::browser::convert::well_formed(&value, &text) {
        return Err(PeerError::type_error(
            Code::InvalidOption,
            format!("option {name} holds a lone surrogate (half of a character)"),
        ));
    }
    Ok(Some(text))
}

/// An optional whole-number option from 1 to `max`.
fn positive(options: &JsValue, name: &str, max: usize) -> Result<Option<usize>, PeerError> {
    whole(options, name, 1, max)
}

/// An optional whole-number option from `min` to `max`.
fn whole(
    options: &JsValue,
    name: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, PeerError> {
    let value = get(options, name);
    if absent(&value) {
        return Ok(None);
    }
    match value.as_f64() {
        Some(n) if n >= min as f64 && n.fract() == 0.0 && n <= max as f64 => Ok(Some(n as usize)),
        Some(_) => Err(PeerError::range_error(
            Code::InvalidOption,
            format!("{name} takes a whole number from {min} to {max}"),
        )),
        None => Err(PeerError::type_error(
            Code::InvalidOption,
            format!("{name} takes a number"),
        )),
    }
}

/// Every option `Peer.open` reads.
const KNOWN: [&str; 10] = [
    "room",
    "secret",
    "signaling",
    "storage",
    "iceServers",
    "compactAfter",
    "maxConnections",
    "connectTimeoutMs",
    "warmUp",
    "verifyWorkers",
];

impl Options {
    pub fn parse(options: &JsValue) -> Result<Options, PeerError> {
        if !options.is_object() {
            return Err(PeerError::type_error(
                Code::InvalidOption,
                "Peer.open takes an options object: { room }",
            ));
        }
        // A misspelt option (`signalling`) would otherwise leave its
        // default in place without a word: tabs only, say, where the app
        // meant a server.
        for name in js_sys::Object::keys(options.unchecked_ref::<js_sys::Object>()).iter() {
            let name = name.as_string().unwrap_or_default();
            if !KNOWN.contains(&name.as_str()) {
                return Err(PeerError::type_error(
                    Code::InvalidOption,
                    format!(
                        "Peer.open has no option \"{name}\"; it takes room, secret, signaling, \
                         storage, iceServers, compactAfter, maxConnections, connectTimeoutMs, \
                         warmUp and verifyWorkers"
                    ),
                ));
            }
        }
        let room = string(options, "room")?
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                PeerError::type_error(Code::InvalidOption, "Peer.open needs { room }")
            })?;
        let secret = match string(options, "secret")? {
            Some(s) if s.is_empty() => {
                return Err(PeerError::range_error(
                    Code::InvalidOption,
                    "secret takes a non-empty string",
                ))
            }
            s => s,
        };
        // A room with a secret goes by `secret-` and an opaque id outside
        // its peers: a room without one named so was never kept by the
        // room peer (it takes it for secret), and could share a secret
        // room's storage in this browser (a review).
        if secret.is_none() && room.starts_with(SECRET_ROOM_PREFIX) {
            return Err(PeerError::range_error(
                Code::InvalidOption,
                format!(
                    "room names starting with {SECRET_ROOM_PREFIX:?} are the ids of rooms with \
                     a secret: pass the room's secret, or choose another name"
                ),
            ));
        }
        // The signaling server refuses longer names: such a room synced
        // between this browser's tabs and met no one else, with one
        // `TRANSPORT` error to tell (a review). A secret room goes by
        // an id of fixed length.
        if secret.is_none() && room.len() > MAX_NAME {
            return Err(PeerError::range_error(
                Code::InvalidOption,
                format!(
                    "a room's name takes at most {MAX_NAME} bytes of UTF-8 (this one {}); a \
                     room with a secret may have a longer one",
                    room.len()
                ),
            ));
        }
        let storage = match string(options, "storage")?.as_deref() {
            None | Some("indexeddb") => StorageKind::IndexedDb,
            Some("memory") => StorageKind::Memory,
            Some(other) => {
                return Err(PeerError::range_error(
                    Code::InvalidOption,
                    format!("unknown storage {other:?}: use \"indexeddb\" or \"memory\""),
                ))
            }
        };
        let compact_after = positive(options, "compactAfter", u32::MAX as usize)?;
        let max_connections = positive(options, "maxConnections", MAX_CONNECTIONS)?;
        let connect_timeout_ms = whole(
            options,
            "connectTimeoutMs",
            MIN_CONNECT_TIMEOUT_MS,
            MAX_CONNECT_TIMEOUT_MS,
        )?
        .map(|ms| ms as u64);
        let warm_up = match get(options, "warmUp") {
            v if absent(&v) => true,
            v => v.as_bool().ok_or_else(|| {
                PeerError::type_error(Code::InvalidOption, "warmUp takes a boolean")
            })?,
        };
        let verify_workers = whole(options, "verifyWorkers", 0, MAX_VERIFY_WORKERS)?
            .unwrap_or_else(default_verify_workers);
        Ok(Options {
            room,
            secret,
            signaling: signaling_url(string(options, "signaling")?)?,
            storage,
            ice_servers: ice_servers(get(options, "iceServers"))?,
            compact_after,
            max_connections,
            connect_timeout_ms,
            warm_up,
            verify_workers,
        })
    }
}

/// `iceServers` as `RTCPeerConnection` takes them, checked by making one
/// (closed at once): a string, or a server of a `http:` URL, was taken,
/// and every connection then failed, told seconds later as `TRANSPORT`
/// errors. Unchecked where the page has no `RTCPeerConnection` (it links
/// through the server then).
fn ice_servers(value: JsValue) -> Result<JsValue, PeerError> {
    if absent(&value) {
        return Ok(JsValue::UNDEFINED);
    }
    let webrtc = web_sys::window()
        .is_some_and(|w| Reflect::has(&w, &"RTCPeerConnection".into()).unwrap_or(false));
    if !webrtc {
        return Ok(value);
    }
    let config = web_sys::RtcConfiguration::new();
    config.set_ice_servers(&value);
    match web_sys::RtcPeerConnection::new_with_configuration(&config) {
        Ok(connection) => {
            connection.close();
            Ok(value)
        }
        Err(e) => Err(PeerError::type_error(
            Code::InvalidOption,
            format!(
                "iceServers as RTCPeerConnection takes them: {}",
                describe(&e)
            ),
        )),
    }
}

/// One worker per core the browser reports, up to
/// [`DEFAULT_VERIFY_WORKERS`]; none without `Worker`.
fn default_verify_workers() -> usize {
    let Some(window) = web_sys::window() else {
        return 0;
    };
    if Reflect::get(&window, &"Worker".into()).map_or(true, |w| w.is_undefined()) {
        return 0;
    }
    let cores = window.navigator().hardware_concurrency();
    (cores as usize).clamp(1, DEFAULT_VERIFY_WORKERS)
}

/// The WebSocket URL of a `signaling` option: `wss:` as is, `ws:`, `http:`/
/// `https:` switched over (`http:` and `ws:` to `wss:` from a page on
/// https, but for a loopback host), a path resolved against this page,
/// without a fragment; `None` for absent or `"none"`.
fn signaling_url(option: Option<String>) -> Result<Option<String>, PeerError> {
    let Some(url) = option.filter(|u| !u.is_empty() && u != "none") else {
        return Ok(None);
    };
    let refused = || {
        PeerError::range_error(
            Code::InvalidOption,
            format!(
                "signaling must be a ws:, wss:, http: or https: URL, a path, or \"none\"; got \
                 {url:?}"
            ),
        )
    };
    // (Bytes, not `str::contains`: its substring searcher is 2 KB of wasm.)
    let scheme = url.as_bytes().windows(3).any(|w| w == b"://");
    if !url.starts_with('/') && !scheme {
        return Err(refused());
    }
    // Resolved as the page's links are: a path, or `//host/path`, on the
    // page's host, and a scheme in any case. An `http:` URL from a page
    // on https goes as `wss:`, as the README says (it went as `ws:`,
    // which the browser refuses there; a review).
    let location = web_sys::window()
        .ok_or_else(|| PeerError::unsupported("window"))?
        .location();
    let base = location.href().unwrap_or_default();
    let resolved = web_sys::Url::new_with_base(&url, &base).map_err(|_| refused())?;
    // A page on https may open `ws:` to a loopback host only (which is
    // as secure as the page: a local cpc-signal in development); `ws:` or
    // `http:` to any other host goes as `wss:`, as the browser refuses it.
    let plain_ok =
        location.protocol().is_ok_and(|p| p != "https:") || loopback(&resolved.hostname());
    let scheme = match resolved.protocol().as_str() {
        "wss:" => None,
        "ws:" | "http:" if plain_ok => Some("ws:"),
        "ws:" | "http:" | "https:" => Some("wss:"),
        _ => return Err(refused()),
    };
    if let Some(scheme) = scheme {
        resolved.set_protocol(scheme);
    }
    // No browser opens a WebSocket URL with a fragment (it throws).
    resolved.set_hash("");
    Ok(Some(resolved.href()))
}

/// Whether a URL's (parsed, so canonical) host is this device's own:
/// `localhost`, `*.localhost`, `127.x.y.z` or `[::1]`.
fn loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || (host.starts_with("127.") && host.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

//! Signaling: how two peers find each other and exchange the WebRTC offers,
//! answers and ICE candidates that open a data channel between them. The
//! messages are JSON text, shared by the browser and the `cpc-signal`
//! server; the browser carries them over a WebSocket to the server, or over
//! a BroadcastChannel between tabs of one browser.

use super::json::{self, Json};
use serde::{de, Deserialize, Deserializer, Serialize};

use super::identity::{peer_id_of, verify, Identity, PublicKey};
use super::room::{hex, unhex, RoomSecret};

/// Longest room or peer name accepted by the server.
pub const MAX_NAME: usize = 128;

/// From a browser to `cpc-signal` (`/signal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    /// Joins `room` as `peer`, proving it holds the key behind the id: `key`
    /// is the Ed25519 public key (hex) the id derives from, `proof` its
    /// signature (hex) over the server's `Hello` nonce, the room and the id
    /// (see [`ClientMessage::join`]).
    Join {
        room: String,
        peer: String,
        key: String,
        proof: String,
    },
    /// Relay `data` to peer `to` of the same room.
    Signal {
        to: String,
        data: Json,
    },
    Leave,
    Ping,
}

/// From `cpc-signal` to a browser.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    /// First on every connection: the nonce a join must sign.
    Hello {
        nonce: String,
    },
    /// The answer to a join: who was in the room before; in a big room
    /// (`sampled`), a random sample of them, so whoever it does not name
    /// may still be there.
    Peers {
        room: String,
        peers: Vec<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sampled: bool,
    },
    Joined {
        peer: String,
    },
    Left {
        peer: String,
    },
    Signal {
        from: String,
        data: Json,
    },
    Error {
        message: String,
    },
    Pong,
    /// The room's server peer (the room peer `cpc-signal` keeps on disk)
    /// is linked to this socket: from now on, binary WebSocket messages
    /// each way are sync frames between the page and that peer.
    Keep {
        peer: String,
    },
    /// The room's server peer hung up on this socket (or will not keep the
    /// room), and why; binary messages are no longer taken.
    Unkeep {
        reason: String,
    },
}

/// What a join's proof signs: the server's nonce, the room and the id, so
/// a proof is good for one connection to one room, under one id.
fn join_message(nonce: &[u8], room: &str, peer: &str) -> Vec<u8> {
    let mut message = b"cpc-signal join v1\0".to_vec();
    message.extend_from_slice(nonce);
    message.extend_from_slice(&(room.len() as u32).to_le_bytes());
    message.extend_from_slice(room.as_bytes());
    message.extend_from_slice(peer.as_bytes());
    message
}

/// Why the server refused a join's proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the key is not a hex Ed25519 public key")]
    BadKey,
    #[error("the peer id is not the one the key derives")]
    NotItsId,
    #[error(
        "the proof is not the key's signature over this connection's nonce, the room and the id"
    )]
    BadProof,
}

impl ClientMessage {
    /// A join of `room` by `identity`, signing the server's `nonce` (hex,
    /// from its `Hello`).
    pub fn join(identity: &Identity, nonce: &str, room: &str) -> ClientMessage {
        let peer = identity.peer().to_string();
        let nonce = unhex(nonce).unwrap_or_default();
        let signature = identity.sign(&join_message(&nonce, room, &peer));
        ClientMessage::Join {
            room: room.to_string(),
            key: hex(&identity.public_key()),
            proof: hex(&signature.concat()),
            peer,
        }
    }
}

/// Checks a join's proof against the `nonce` this connection was sent.
pub fn verify_join(
    nonce: &[u8; 32],
    room: &str,
    peer: &str,
    key: &str,
    proof: &str,
) -> Result<(), JoinError> {
    let key: PublicKey = unhex(key)
        .and_then(|k| k.try_into().ok())
        .ok_or(JoinError::BadKey)?;
    if peer_id_of(&key).to_string() != peer {
        return Err(JoinError::NotItsId);
    }
    let proof = unhex(proof)
        .filter(|p| p.len() == 64)
        .ok_or(JoinError::BadProof)?;
    let mut signature = [[0u8; 32]; 2];
    signature[0].copy_from_slice(&proof[..32]);
    signature[1].copy_from_slice(&proof[32..]);
    if !verify(&key, &join_message(nonce, room, peer), &signature) {
        return Err(JoinError::BadProof);
    }
    Ok(())
}

/// Between tabs of one browser, on the BroadcastChannel of the room: every
/// tab hears every message and keeps those addressed to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TabMessage {
    /// A tab joined; the others answer `Here`.
    Hello {
        from: String,
    },
    Here {
        from: String,
        to: String,
    },
    Signal {
        from: String,
        to: String,
        data: Json,
    },
    Bye {
        from: String,
    },
}

/// The `data` of a signal: one step of the WebRTC negotiation of one
/// connection, named by its `epoch`: a new, larger epoch means the sender
/// started over, so the receiver drops its old connection; smaller ones are
/// late messages of an old connection and are ignored. `reply_to` names
/// the receiver's connection the step belongs to, once the sender has
/// heard from it (an answer, every step after it, an offer in glare): an
/// answer or candidate for a connection the receiver has since replaced
/// is ignored, where it would have paired with the new one (JSON
/// `replyTo`; absent in steps of pages before it, which pair as before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Negotiation {
    /// An SDP offer or answer.
    Description {
        epoch: u64,
        #[serde(rename = "replyTo", skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        #[serde(rename = "type")]
        kind: SdpKind,
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate {
        epoch: u64,
        #[serde(rename = "replyTo", skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        candidate: String,
        #[serde(rename = "sdpMid", default)]
        sdp_mid: Option<String>,
        #[serde(rename = "sdpMLineIndex", default)]
        sdp_m_line_index: Option<u16>,
    },
}

impl Negotiation {
    pub fn epoch(&self) -> u64 {
        match self {
            Negotiation::Description { epoch, .. } | Negotiation::Candidate { epoch, .. } => *epoch,
        }
    }

    /// The receiver's connection this step belongs to, when the sender
    /// knew it.
    pub fn reply_to(&self) -> Option<u64> {
        match self {
            Negotiation::Description { reply_to, .. } | Negotiation::Candidate { reply_to, .. } => {
                *reply_to
            }
        }
    }

    /// Names the receiver's connection the step belongs to.
    pub fn set_reply_to(&mut self, to: Option<u64>) {
        match self {
            Negotiation::Description { reply_to, .. } | Negotiation::Candidate { reply_to, .. } => {
                *reply_to = to
            }
        }
    }

    /// The `data` of a signal carrying this step: its JSON, or in a room
    /// with a secret, the JSON sealed with the room's signal key (a hex
    /// string the server can neither read nor forge). `nonce`: 12 random
    /// bytes, never used twice under one secret. Sealed, it is bound to
    /// the room, `from` and `to` (peer ids as signaled).
    pub fn to_data(
        &self,
        room: Option<&RoomSecret>,
        nonce: [u8; 12],
        from: &str,
        to: &str,
    ) -> Json {
        let json = self.to_json();
        match room {
            None => json,
            Some(room) => {
                Json::String(room.seal_signal(json.to_text().as_bytes(), nonce, from, to))
            }
        }
    }

    /// The step as JSON: `{"description": {...}}` or `{"candidate": {...}}`,
    /// as serde's derive shapes it.
    fn to_json(&self) -> Json {
        let text = |s: &str| Json::String(s.to_owned());
        let (name, fields) = match self {
            Negotiation::Description {
                epoch, kind, sdp, ..
            } => (
                "description",
                vec![
                    ("epoch", Json::U64(*epoch)),
                    ("sdp", text(sdp)),
                    ("type", text(kind.name())),
                ],
            ),
            Negotiation::Candidate {
                epoch,
                candidate,
                sdp_mid,
                sdp_m_line_index,
                ..
            } => (
                "candidate",
                vec![
                    ("candidate", text(candidate)),
                    ("epoch", Json::U64(*epoch)),
                    (
                        "sdpMLineIndex",
                        sdp_m_line_index.map_or(Json::Null, |i| Json::U64(i.into())),
                    ),
                    ("sdpMid", sdp_mid.as_deref().map_or(Json::Null, text)),
                ],
            ),
        };
        let mut fields: Vec<(String, Json)> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Some(to) = self.reply_to() {
            // Keys in order, as serde_json's `Value` sorts them.
            let at = fields.partition_point(|(k, _)| k.as_str() < "replyTo");
            fields.insert(at, ("replyTo".to_owned(), Json::U64(to)));
        }
        Json::Object(vec![(name.to_owned(), Json::Object(fields))])
    }

    /// The step a signal's `data` carries; `None` when it is malformed,
    /// sealed with another secret, altered, or sealed for another sender
    /// or recipient.
    pub fn from_data(
        data: Json,
        room: Option<&RoomSecret>,
        from: &str,
        to: &str,
    ) -> Option<Negotiation> {
        match room {
            None => Negotiation::from_value(data),
            Some(room) => {
                let plain = room.open_signal(data.as_str()?, from, to).ok()?;
                Negotiation::from_value(json::parse(std::str::from_utf8(&plain).ok()?).ok()?)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    Offer,
    Answer,
}

impl SdpKind {
    fn name(self) -> &'static str {
        match self {
            SdpKind::Offer => "offer",
            SdpKind::Answer => "answer",
        }
    }
}

// What a browser reads (server and tab messages, negotiation steps) is
// parsed to a [`Json`] tree and matched by hand: serde's derive for
// internally tagged enums buffers every field in its own generic
// `Content` and costs the wasm some 40 KB, and serde_json's `Value`
// would bring its deserializer back (see `protocol::json`). Unknown
// fields are ignored, as the derive did.

/// A JSON object's fields, taken by name.
struct Fields(Vec<(String, Json)>);

impl Fields {
    fn of(value: Json) -> Option<Fields> {
        match value {
            Json::Object(entries) => Some(Fields(entries)),
            _ => None,
        }
    }

    fn remove(&mut self, key: &str) -> Option<Json> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(at).1)
    }

    fn text(&mut self, key: &str) -> Option<String> {
        match self.remove(key)? {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    /// Absent or `null` is `Some(None)`; another type is `None`.
    fn text_or_null(&mut self, key: &str) -> Option<Option<String>> {
        match self.remove(key) {
            None | Some(Json::Null) => Some(None),
            Some(Json::String(text)) => Some(Some(text)),
            Some(_) => None,
        }
    }

    fn texts(&mut self, key: &str) -> Option<Vec<String>> {
        match self.remove(key)? {
            Json::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Json::String(text) => Some(text),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    fn value(&mut self, key: &str) -> Option<Json> {
        self.remove(key)
    }

    /// An optional boolean: absent is false, anything else not a bool is
    /// malformed.
    fn flag(&mut self, key: &str) -> Option<bool> {
        match self.remove(key) {
            None => Some(false),
            Some(Json::Bool(b)) => Some(b),
            Some(_) => None,
        }
    }

    fn u64(&self, key: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == key)?.1.as_u64()
    }
}

/// Deserializes through [`Json`] with a hand-written `from_value`.
fn through_value<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    from_value: fn(Json) -> Option<T>,
    what: &'static str,
) -> Result<T, D::Error> {
    let value = Json::deserialize(deserializer)?;
    from_value(value).ok_or_else(|| de::Error::custom(what))
}

impl ServerMessage {
    /// The message a JSON value holds, if it is one.
    pub fn from_value(value: Json) -> Option<ServerMessage> {
        let mut f = Fields::of(value)?;
        Some(match f.text("type")?.as_str() {
            "hello" => ServerMessage::Hello {
                nonce: f.text("nonce")?,
            },
            "peers" => ServerMessage::Peers {
                room: f.text("room")?,
                peers: f.texts("peers")?,
                sampled: f.flag("sampled")?,
            },
            "joined" => ServerMessage::Joined {
                peer: f.text("peer")?,
            },
            "left" => ServerMessage::Left {
                peer: f.text("peer")?,
            },
            "signal" => ServerMessage::Signal {
                from: f.text("from")?,
                data: f.value("data")?,
            },
            "error" => ServerMessage::Error {
                message: f.text("message")?,
            },
            "pong" => ServerMessage::Pong,
            "keep" => ServerMessage::Keep {
                peer: f.text("peer")?,
            },
            "unkeep" => ServerMessage::Unkeep {
                reason: f.text("reason")?,
            },
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for ServerMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        through_value(
            deserializer,
            ServerMessage::from_value,
            "not a server message",
        )
    }
}

impl TabMessage {
    /// The message a JSON value holds, if it is one.
    pub fn from_value(value: Json) -> Option<TabMessage> {
        let mut f = Fields::of(value)?;
        Some(match f.text("type")?.as_str() {
            "hello" => TabMessage::Hello {
                from: f.text("from")?,
            },
            "here" => TabMessage::Here {
                from: f.text("from")?,
                to: f.text("to")?,
            },
            "signal" => TabMessage::Signal {
                from: f.text("from")?,
                to: f.text("to")?,
                data: f.value("data")?,
            },
            "bye" => TabMessage::Bye {
                from: f.text("from")?,
            },
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for TabMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        through_value(deserializer, TabMessage::from_value, "not a tab message")
    }
}

impl Negotiation {
    /// The step a JSON value holds, if it is one: an object with one
    /// field, the step's name.
    pub fn from_value(value: Json) -> Option<Negotiation> {
        let Fields(map) = Fields::of(value)?;
        if map.len() != 1 {
            return None;
        }
        let (name, body) = map.into_iter().next()?;
        let mut f = Fields::of(body)?;
        let epoch = f.u64("epoch")?;
        // Absent (a page before it) or null: not known.
        let reply_to = match f.value("replyTo") {
            None | Some(Json::Null) => None,
            Some(to) => Some(to.as_u64()?),
        };
        Some(match name.as_str() {
            "description" => Negotiation::Description {
                epoch,
                reply_to,
                kind: match f.text("type")?.as_str() {
                    "offer" => SdpKind::Offer,
                    "answer" => SdpKind::Answer,
                    _ => return None,
                },
                sdp: f.text("sdp")?,
            },
            "candidate" => Negotiation::Candidate {
                epoch,
                reply_to,
                candidate: f.text("candidate")?,
                sdp_mid: f.text_or_null("sdpMid")?,
                sdp_m_line_index: match f.value("sdpMLineIndex") {
                    None | Some(Json::Null) => None,
                    Some(index) => Some(u16::try_from(index.as_u64()?).ok()?),
                },
            },
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Negotiation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        through_value(
            deserializer,
            Negotiation::from_value,
            "not a negotiation step",
        )
    }
}

impl ServerMessage {
    pub fn to_text(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

// What a browser writes, by hand for the same reason; the bytes serde's
// derive writes (the tag first, then the fields in order).

/// `{"type":tag,...fields}`, strings but for a signal's data.
fn tagged(tag: &str, fields: &[(&str, &str)], data: Option<&Json>) -> String {
    let mut out = String::from("{\"type\":");
    json::write_str(&mut out, tag);
    for (key, value) in fields {
        out.push(',');
        json::write_str(&mut out, key);
        out.push(':');
        json::write_str(&mut out, value);
    }
    if let Some(data) = data {
        out.push_str(",\"data\":");
        data.write(&mut out);
    }
    out.push('}');
    out
}

impl ClientMessage {
    pub fn to_text(&self) -> String {
        match self {
            ClientMessage::Join {
                room,
                peer,
                key,
                proof,
            } => tagged(
                "join",
                &[
                    ("room", room),
                    ("peer", peer),
                    ("key", key),
                    ("proof", proof),
                ],
                None,
            ),
            ClientMessage::Signal { to, data } => tagged("signal", &[("to", to)], Some(data)),
            ClientMessage::Leave => tagged("leave", &[], None),
            ClientMessage::Ping => tagged("ping", &[], None),
        }
    }
}

impl TabMessage {
    pub fn to_text(&self) -> String {
        match self {
            TabMessage::Hello { from } => tagged("hello", &[("from", from)], None),
            TabMessage::Here { from, to } => tagged("here", &[("from", from), ("to", to)], None),
            TabMessage::Signal { from, to, data } => {
                tagged("signal", &[("from", from), ("to", to)], Some(data))
            }
            TabMessage::Bye { from } => tagged("bye", &[("from", from)], None),
        }
    }

    /// The message `text` holds, if it is one.
    pub fn from_text(text: &str) -> Option<TabMessage> {
        TabMessage::from_value(json::parse(text).ok()?)
    }
}

impl ServerMessage {
    /// The message `text` holds, or why it holds none.
    pub fn from_text(text: &str) -> Result<ServerMessage, String> {
        let value = json::parse(text).map_err(|e| e.to_string())?;
        ServerMessage::from_value(value).ok_or_else(|| "not a server message".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::ClientMessage::Join;
    use super::*;

    #[test]
    fn negotiation_json() {
        let offer = Negotiation::Description {
            epoch: 7,
            reply_to: None,
            kind: SdpKind::Offer,
            sdp: "v=0".into(),
        };
        let text = serde_json::to_string(&offer).unwrap();
        assert_eq!(
            text,
            r#"{"description":{"epoch":7,"type":"offer","sdp":"v=0"}}"#
        );
        assert_eq!(serde_json::from_str::<Negotiation>(&text).unwrap(), offer);
        let candidate: Negotiation = serde_json::from_str(
            r#"{"candidate":{"epoch":1,"candidate":"c","sdpMid":"0","sdpMLineIndex":0}}"#,
        )
        .unwrap();
        assert_eq!(candidate.epoch(), 1);
        assert!(matches!(
            candidate,
            Negotiation::Candidate {
                sdp_m_line_index: Some(0),
                ..
            }
        ));
        assert_eq!(candidate.reply_to(), None, "a page before replyTo");
    }

    #[test]
    fn a_step_names_the_connection_it_replies_to() {
        let mut answer = Negotiation::Description {
            epoch: 8,
            reply_to: None,
            kind: SdpKind::Answer,
            sdp: "v=0".into(),
        };
        answer.set_reply_to(Some(7));
        let data = answer.to_data(None, [0; 12], "a", "b");
        assert_eq!(
            data.to_text(),
            r#"{"description":{"epoch":8,"replyTo":7,"sdp":"v=0","type":"answer"}}"#
        );
        assert_eq!(Negotiation::from_data(data, None, "a", "b"), Some(answer));
        let read = |text: &str| Negotiation::from_value(json::parse(text).ok()?);
        let null = read(r#"{"candidate":{"epoch":1,"replyTo":null,"candidate":"c"}}"#);
        assert_eq!(null.map(|s| s.reply_to()), Some(None));
        // Not a number: malformed, as a bad epoch is.
        for bad in [r#""7""#, "-1", "1.5", "{}"] {
            let text = format!(r#"{{"candidate":{{"epoch":1,"replyTo":{bad},"candidate":"c"}}}}"#);
            assert_eq!(read(&text), None, "{text}");
        }
    }

    #[test]
    fn messages_have_the_documented_shape() {
        let join: ClientMessage = serde_json::from_str(
            r#"{"type":"join","room":"r","peer":"p","key":"00","proof":"11"}"#,
        )
        .unwrap();
        assert_eq!(
            join,
            ClientMessage::Join {
                room: "r".into(),
                peer: "p".into(),
                key: "00".into(),
                proof: "11".into(),
            }
        );
        let unproven = r#"{"type":"join","room":"r","peer":"p"}"#;
        assert!(serde_json::from_str::<ClientMessage>(unproven).is_err());
        assert_eq!(ServerMessage::Pong.to_text(), r#"{"type":"pong"}"#);
        let hello = TabMessage::Hello { from: "a".into() };
        assert_eq!(hello.to_text(), r#"{"type":"hello","from":"a"}"#);
    }

    #[test]
    fn what_a_browser_reads_round_trips_and_refuses_what_is_not_one() {
        let data = Json::from(
            serde_json::json!({"description": {"epoch": 1, "type": "answer", "sdp": "v=0"}}),
        );
        let server = [
            ServerMessage::Hello { nonce: "00".into() },
            ServerMessage::Peers {
                room: "r".into(),
                peers: vec!["a".into(), "b".into()],
                sampled: false,
            },
            ServerMessage::Peers {
                room: "r".into(),
                peers: vec!["a".into()],
                sampled: true,
            },
            ServerMessage::Joined { peer: "a".into() },
            ServerMessage::Left { peer: "a".into() },
            ServerMessage::Signal {
                from: "a".into(),
                data: data.clone(),
            },
            ServerMessage::Error {
                message: "no".into(),
            },
            ServerMessage::Pong,
            ServerMessage::Keep { peer: "k".into() },
            ServerMessage::Unkeep {
                reason: "full".into(),
            },
        ];
        for message in server {
            let text = message.to_text();
            assert_eq!(
                serde_json::from_str::<ServerMessage>(&text).unwrap(),
                message
            );
        }
        let tabs = [
            TabMessage::Hello { from: "a".into() },
            TabMessage::Here {
                from: "a".into(),
                to: "b".into(),
            },
            TabMessage::Signal {
                from: "a".into(),
                to: "b".into(),
                data,
            },
            TabMessage::Bye { from: "a".into() },
        ];
        for message in tabs {
            let text = message.to_text();
            assert_eq!(serde_json::from_str::<TabMessage>(&text).unwrap(), message);
        }
        let bare = Negotiation::Candidate {
            epoch: 2,
            reply_to: None,
            candidate: "c".into(),
            sdp_mid: None,
            sdp_m_line_index: None,
        };
        let text = serde_json::to_string(&bare).unwrap();
        assert_eq!(serde_json::from_str::<Negotiation>(&text).unwrap(), bare);
        let absent = r#"{"candidate":{"epoch":2,"candidate":"c"}}"#;
        assert_eq!(serde_json::from_str::<Negotiation>(absent).unwrap(), bare);
        // Unknown fields are ignored, as serde's derive did.
        let extra = r#"{"type":"joined","peer":"a","x":1}"#;
        assert!(serde_json::from_str::<ServerMessage>(extra).is_ok());
        for bad in [
            r#"{"type":"joined"}"#,
            r#"{"type":"joined","peer":1}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":"peers","room":"r","peers":["a",1]}"#,
            r#"{"type":"signal","from":"a"}"#,
            r#""pong""#,
        ] {
            assert!(serde_json::from_str::<ServerMessage>(bad).is_err(), "{bad}");
        }
        for bad in [
            r#"{"type":"here","from":"a"}"#,
            r#"{"type":"hello","from":null}"#,
            r#"{"from":"a"}"#,
        ] {
            assert!(serde_json::from_str::<TabMessage>(bad).is_err(), "{bad}");
        }
        for bad in [
            r#"{"description":{"epoch":1,"type":"pranswer","sdp":"v=0"}}"#,
            r#"{"description":{"epoch":-1,"type":"offer","sdp":"v=0"}}"#,
            r#"{"candidate":{"epoch":1,"candidate":"c","sdpMLineIndex":70000}}"#,
            r#"{"candidate":{"epoch":1,"candidate":"c","sdpMid":3}}"#,
            r#"{"candidate":{"epoch":1,"candidate":"c"},"description":{}}"#,
            r#"{"other":{"epoch":1}}"#,
        ] {
            assert!(serde_json::from_str::<Negotiation>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_join_proves_the_key_behind_the_id_for_one_nonce_and_room() {
        let identity = Identity::from_seed(7);
        let nonce = [5u8; 32];
        let Join {
            room,
            peer,
            key,
            proof,
        } = ClientMessage::join(&identity, &hex(&nonce), "room")
        else {
            unreachable!()
        };
        assert_eq!(peer, identity.peer().to_string());
        assert_eq!(verify_join(&nonce, &room, &peer, &key, &proof), Ok(()));
        // Replayed on another connection, in another room, under another id.
        let other = [6u8; 32];
        let bad = Err(JoinError::BadProof);
        assert_eq!(verify_join(&other, &room, &peer, &key, &proof), bad);
        assert_eq!(verify_join(&nonce, "else", &peer, &key, &proof), bad);
        let stranger = Identity::from_seed(8);
        let theirs = stranger.peer().to_string();
        assert_eq!(
            verify_join(&nonce, &room, &theirs, &key, &proof),
            Err(JoinError::NotItsId)
        );
        // Another key that does derive the claimed id cannot sign for it.
        let forged = hex(&stranger.sign(b"anything").concat());
        let their_key = hex(&stranger.public_key());
        assert_eq!(
            verify_join(&nonce, &room, &theirs, &their_key, &forged),
            bad
        );
        assert_eq!(
            verify_join(&nonce, &room, &peer, "zz", &proof),
            Err(JoinError::BadKey)
        );
    }

    #[test]
    fn signal_data_is_sealed_in_a_room_with_a_secret() {
        let step = Negotiation::Candidate {
            epoch: 3,
            reply_to: None,
            candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        };
        let plain = step.to_data(None, [0; 12], "a", "b");
        assert_eq!(
            Negotiation::from_data(plain, None, "a", "b"),
            Some(step.clone())
        );
        let cost = crate::protocol::room::KdfCost::TEST;
        let room = RoomSecret::with_cost("r", "k", cost);
        let sealed = step.to_data(Some(&room), [1; 12], "a", "b");
        assert!(!sealed.to_string().contains("candidate"));
        assert_eq!(
            Negotiation::from_data(sealed.clone(), Some(&room), "a", "b"),
            Some(step)
        );
        let other = RoomSecret::with_cost("r", "x", cost);
        assert_eq!(
            Negotiation::from_data(sealed.clone(), Some(&other), "a", "b"),
            None
        );
        // A server cannot redirect it, pass it off as another's, or replay
        // it in another room with the same secret.
        for (from, to) in [("a", "c"), ("c", "b"), ("b", "a")] {
            assert_eq!(
                Negotiation::from_data(sealed.clone(), Some(&room), from, to),
                None
            );
        }
        let elsewhere = RoomSecret::with_cost("r2", "k", cost);
        assert_eq!(
            Negotiation::from_data(sealed.clone(), Some(&elsewhere), "a", "b"),
            None
        );
        assert_eq!(Negotiation::from_data(sealed, None, "a", "b"), None);
    }
}

//! One WebRTC connection to one remote peer: an RTCPeerConnection with one
//! reliable, ordered, binary data channel, negotiated with the "perfect
//! negotiation" pattern (both sides may offer at once; the polite one
//! yields), and a send queue that respects `bufferedAmount`.
//!
//! The data channel is pre-negotiated (`negotiated: true, id: 0`): the
//! dialing side creates it at once, which starts the negotiation; the
//! answering side creates it after applying the offer, so it never offers
//! itself. Both end up with the same channel, and no `datachannel` event.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use gloo::events::EventListener;
use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcDataChannelState,
    RtcDataChannelType, RtcIceCandidateInit, RtcPeerConnection, RtcPeerConnectionIceEvent,
    RtcPeerConnectionState, RtcSdpType, RtcSessionDescription, RtcSessionDescriptionInit,
    RtcSignalingState,
};

use crate::protocol::room::Channel;
use crate::protocol::signal::{Negotiation, SdpKind};

#[wasm_bindgen]
extern "C" {
    /// RTCPeerConnection, for the one overload web-sys lacks.
    #[wasm_bindgen(js_name = RTCPeerConnection)]
    type Implicit;
    #[wasm_bindgen(method, js_name = setLocalDescription)]
    fn set_local_description(this: &Implicit) -> Promise;
}

/// `setLocalDescription()` without arguments: makes the offer or answer the
/// signaling state calls for.
fn set_local_description(pc: &RtcPeerConnection) -> Promise {
    pc.unchecked_ref::<Implicit>().set_local_description()
}

/// Above this many bytes buffered in the channel, frames wait in our queue.
pub const HIGH_WATER: u32 = 1024 * 1024;
/// The channel asks for more (`bufferedamountlow`) below this.
pub const LOW_WATER: u32 = 256 * 1024;
/// A peer that leaves this much unread is not keeping up: the connection is
/// closed (anti-entropy catches it up after it reconnects).
pub const MAX_QUEUED: usize = 64 * 1024 * 1024;

/// What happened on a connection, for the transport.
pub enum Happening {
    Open,
    Closed,
    Frame(Vec<u8>),
    /// A negotiation step to signal to the remote peer.
    Signal(Negotiation),
    /// The channel drained below its low-water mark.
    Writable,
}

/// The perfect-negotiation flags, shared with the async steps.
struct Negotiator {
    polite: bool,
    making_offer: Cell<bool>,
    ignore_offer: Cell<bool>,
    answer_pending: Cell<bool>,
}

pub struct Connection {
    /// Names this connection in our signals (the links chose it).
    epoch: u64,
    pc: RtcPeerConnection,
    channel: Option<RtcDataChannel>,
    negotiator: Rc<Negotiator>,
    report: Rc<dyn Fn(Happening)>,
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    /// Whether frames waited in our queue when last asked
    /// ([`backlog_changed`](Self::backlog_changed)).
    said_backlogged: bool,
    listeners: Vec<EventListener>,
}

impl Connection {
    /// A new connection. `dial`: create the channel now, which makes this
    /// side offer; otherwise wait for the remote offer.
    pub fn new(
        epoch: u64,
        polite: bool,
        dial: bool,
        ice_servers: &JsValue,
        report: Rc<dyn Fn(Happening)>,
    ) -> Result<Connection, JsValue> {
        let config = RtcConfiguration::new();
        if !ice_servers.is_undefined() {
            config.set_ice_servers(ice_servers);
        }
        let pc = RtcPeerConnection::new_with_configuration(&config)?;
        let negotiator = Rc::new(Negotiator {
            polite,
            making_offer: Cell::new(false),
            ignore_offer: Cell::new(false),
            answer_pending: Cell::new(false),
        });
        let mut listeners = Vec::new();
        {
            let (pc2, negotiator, report) = (pc.clone(), negotiator.clone(), report.clone());
            listeners.push(EventListener::new(&pc, "negotiationneeded", move |_| {
                let (pc, negotiator, report) = (pc2.clone(), negotiator.clone(), report.clone());
                if pc.current_remote_description().is_some() {
                    return; // one exchange a connection (see `negotiate`)
                }
                wasm_bindgen_futures::spawn_local(async move {
                    negotiator.making_offer.set(true);
                    let made = JsFuture::from(set_local_description(&pc)).await;
                    negotiator.making_offer.set(false);
                    if made.is_ok() {
                        send_description(&pc, epoch, &report);
                    } else {
                        report(Happening::Closed);
                    }
                });
            }));
        }
        {
            let report = report.clone();
            listeners.push(EventListener::new(&pc, "icecandidate", move |event| {
                let Some(candidate) = event
                    .dyn_ref::<RtcPeerConnectionIceEvent>()
                    .and_then(|e| e.candidate())
                else {
                    return; // end of candidates
                };
                // Firefox also reports the end of a generation, as a
                // candidate with an empty string (Chromium does not); it
                // goes to the other side like any, whose `addIceCandidate`
                // (in either engine) takes it as end-of-candidates.
                report(Happening::Signal(Negotiation::Candidate {
                    epoch,
                    reply_to: None,
                    candidate: candidate.candidate(),
                    sdp_mid: candidate.sdp_mid(),
                    sdp_m_line_index: candidate.sdp_m_line_index(),
                }));
            }));
        }
        {
            let (pc2, report) = (pc.clone(), report.clone());
            listeners.push(EventListener::new(
                &pc,
                "connectionstatechange",
                move |_| {
                    if matches!(
                        pc2.connection_state(),
                        RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed
                    ) {
                        report(Happening::Closed);
                    }
                },
            ));
        }
        let mut connection = Connection {
            epoch,
            pc,
            channel: None,
            negotiator,
            report,
            queue: VecDeque::new(),
            queued_bytes: 0,
            said_backlogged: false,
            listeners,
        };
        if dial {
            connection.open_channel()?;
        }
        Ok(connection)
    }

    fn open_channel(&mut self) -> Result<(), JsValue> {
        if self.channel.is_some() {
            return Ok(());
        }
        let init = RtcDataChannelInit::new();
        init.set_negotiated(true);
        init.set_id(0);
        init.set_ordered(true);
        let channel = self
            .pc
            .create_data_channel_with_data_channel_dict("cpc-sync", &init);
        channel.set_binary_type(RtcDataChannelType::Arraybuffer);
        channel.set_buffered_amount_low_threshold(LOW_WATER);
        let report = self.report.clone();
        self.listeners
            .push(EventListener::new(&channel, "open", move |_| {
                report(Happening::Open)
            }));
        let report = self.report.clone();
        self.listeners
            .push(EventListener::new(&channel, "close", move |_| {
                report(Happening::Closed)
            }));
        let report = self.report.clone();
        self.listeners
            .push(EventListener::new(&channel, "message", move |event| {
                let Some(data) = event.dyn_ref::<MessageEvent>().map(|e| e.data()) else {
                    return;
                };
                // Text or anything else is not a frame: an empty frame is
                // refused (and counted) by the decoder like any bad one.
                let bytes = match data.dyn_ref::<js_sys::ArrayBuffer>() {
                    Some(buffer) => Uint8Array::new(buffer).to_vec(),
                    None => Vec::new(),
                };
                report(Happening::Frame(bytes));
            }));
        let report = self.report.clone();
        self.listeners.push(EventListener::new(
            &channel,
            "bufferedamountlow",
            move |_| report(Happening::Writable),
        ));
        self.channel = Some(channel);
        Ok(())
    }

    /// Applies a negotiation step from the remote side (perfect
    /// negotiation: an offer that collides with ours is ignored by the
    /// impolite side; the polite side rolls back and answers).
    pub fn negotiate(&mut self, step: Negotiation) {
        let (pc, negotiator, report, epoch) = (
            self.pc.clone(),
            self.negotiator.clone(),
            self.report.clone(),
            self.epoch,
        );
        match step {
            Negotiation::Description { kind, sdp, .. } => {
                // One exchange a connection: the handshake is bound to the
                // DTLS fingerprints it named, read when the channel opens,
                // and a later offer (which this side never asks for) could
                // name others: whoever routes signals would swap in its
                // own certificate under a bound session.
                // (Set when an exchange completes, and never unset: the
                // guard holds whatever state the connection is in later.)
                if pc.current_remote_description().is_some() {
                    // Its candidates fail too, quietly.
                    negotiator.ignore_offer.set(true);
                    web_sys::console::warn_1(
                        &"cpc-sync: a session description after the connection's own \
                          exchange is ignored"
                            .into(),
                    );
                    return;
                }
                let ready = !negotiator.making_offer.get()
                    && (pc.signaling_state() == RtcSignalingState::Stable
                        || negotiator.answer_pending.get());
                let collision = kind == SdpKind::Offer && !ready;
                negotiator.ignore_offer.set(!negotiator.polite && collision);
                if negotiator.ignore_offer.get() {
                    return;
                }
                // The answering side's channel, created once the offer is
                // applied so that this side never offers on its own.
                let needs_channel = kind == SdpKind::Offer && self.channel.is_none();
                negotiator.answer_pending.set(kind == SdpKind::Answer);
                let init = RtcSessionDescriptionInit::new(match kind {
                    SdpKind::Offer => RtcSdpType::Offer,
                    SdpKind::Answer => RtcSdpType::Answer,
                });
                init.set_sdp(&sdp);
                let applied = pc.set_remote_description(&init);
                let answer = if kind == SdpKind::Offer {
                    if needs_channel && self.open_channel().is_err() {
                        report(Happening::Closed);
                        return;
                    }
                    Some(set_local_description(&pc))
                } else {
                    None
                };
                wasm_bindgen_futures::spawn_local(async move {
                    let applied = JsFuture::from(applied).await;
                    negotiator.answer_pending.set(false);
                    if applied.is_err() {
                        report(Happening::Closed);
                        return;
                    }
                    if let Some(answer) = answer {
                        if JsFuture::from(answer).await.is_err() {
                            report(Happening::Closed);
                            return;
                        }
                        send_description(&pc, epoch, &report);
                    }
                });
            }
            Negotiation::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
                ..
            } => {
                let init = RtcIceCandidateInit::new(&candidate);
                init.set_sdp_mid(sdp_mid.as_deref());
                init.set_sdp_m_line_index(sdp_m_line_index);
                let added = pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
                wasm_bindgen_futures::spawn_local(async move {
                    // Candidates of an ignored offer fail; that is expected.
                    if JsFuture::from(added).await.is_err() && !negotiator.ignore_offer.get() {
                        web_sys::console::warn_1(&"cpc-sync: ICE candidate refused".into());
                    }
                });
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.channel
            .as_ref()
            .is_some_and(|c| c.ready_state() == RtcDataChannelState::Open)
    }

    /// Sends a frame, or queues it while the channel is full. `false`: the
    /// peer is not keeping up and the connection should be dropped.
    pub fn send(&mut self, frame: Vec<u8>) -> bool {
        self.queued_bytes += frame.len();
        self.queue.push_back(frame);
        self.drain();
        self.queued_bytes <= MAX_QUEUED
    }

    /// Moves queued frames into the channel until it is full.
    pub fn drain(&mut self) {
        let Some(channel) = &self.channel else { return };
        if channel.ready_state() != RtcDataChannelState::Open {
            return;
        }
        while channel.buffered_amount() < HIGH_WATER {
            let Some(frame) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= frame.len();
            if channel.send_with_u8_array(&frame).is_err() {
                (self.report)(Happening::Closed);
                return;
            }
        }
    }

    /// Whether frames wait in our queue (the channel's buffer is at
    /// [`HIGH_WATER`]), if that changed since the last call: `Some` once
    /// each time it does.
    pub fn backlog_changed(&mut self) -> Option<bool> {
        let backlogged = !self.queue.is_empty();
        (backlogged != std::mem::replace(&mut self.said_backlogged, backlogged))
            .then_some(backlogged)
    }

    /// What this end sees of the connection's DTLS: its certificate's
    /// fingerprints and the far end's, as the session descriptions name
    /// them (what the room handshake is bound to). `None` when they name
    /// none that can be read: such a connection is closed, not taken as
    /// unbound.
    pub fn channel(&self) -> Option<Channel> {
        let sdp = |d: Option<RtcSessionDescription>| d.map(|d| d.sdp()).unwrap_or_default();
        Channel::from_sdp(
            &sdp(self.pc.current_local_description()),
            &sdp(self.pc.current_remote_description()),
        )
    }

    /// Bytes waiting: in our queue plus in the channel's buffer.
    pub fn buffered(&self) -> usize {
        self.queued_bytes
            + self
                .channel
                .as_ref()
                .map_or(0, |c| c.buffered_amount() as usize)
    }
}

fn send_description(pc: &RtcPeerConnection, epoch: u64, report: &Rc<dyn Fn(Happening)>) {
    let Some(description) = pc.local_description() else {
        return;
    };
    let kind = match description.type_() {
        RtcSdpType::Offer => SdpKind::Offer,
        RtcSdpType::Answer => SdpKind::Answer,
        _ => return,
    };
    report(Happening::Signal(Negotiation::Description {
        epoch,
        reply_to: None,
        kind,
        sdp: description.sdp(),
    }));
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Listeners first, so closing reports nothing.
        self.listeners.clear();
        if let Some(channel) = &self.channel {
            channel.close();
        }
        self.pc.close();
    }
}

//! Batch verification across frames: a browser peer holds received seals
//! for a verification window (`SyncConfig::verify_window_ms`) and verifies
//! them together. What it holds is applied in order, a forgery among them
//! is still named and charged to its sender, and nothing waits past the
//! window, a full batch, or a message of another kind.

use crate::common;

use cpc_sync::protocol::seal::{SealError, BATCH, MAX_RUN};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{
    Refusal, MAX_UNVERIFIED_EVENTS, VERIFY_HOLD_WINDOWS, VERIFY_WINDOW_MS,
};
use cpc_sync::protocol::testing::wire::{self as workload, Receiver};
use cpc_sync::protocol::{JsonValue, Operation, VectorClock};

fn origins(receiver: &Receiver) -> usize {
    receiver.node().engine().clock().iter().count()
}

#[test]
fn seals_of_one_window_are_verified_together() {
    let frames = workload::one_write_each(12, false);
    let mut receiver = Receiver::new();
    for frame in &frames[..10] {
        receiver.receive_at(frame, 0).expect("taken");
    }
    receiver.receive_at(&frames[10], 1).expect("taken");
    assert_eq!(
        origins(&receiver),
        0,
        "held: each came within the window of the last"
    );
    // No frame for a window after the last one: the timer went first.
    receiver.receive_at(&frames[11], 4).expect("taken");
    assert_eq!(origins(&receiver), 11);
    receiver.finish(5).expect("the last one verifies");
    assert_eq!(origins(&receiver), 12);
}

#[test]
fn frames_that_keep_coming_are_held_at_most_a_few_windows() {
    let frames = workload::one_write_each(30, false);
    let mut receiver = Receiver::new();
    let hold = VERIFY_WINDOW_MS * VERIFY_HOLD_WINDOWS;
    for (t, frame) in frames.iter().enumerate() {
        let t = t as u64;
        receiver.receive_at(frame, t).expect("taken");
        if t < hold {
            assert_eq!(origins(&receiver), 0, "at {t} ms: held, frames keep coming");
        }
    }
    // The frame at `hold` found the first ones due: those before it went.
    assert!(origins(&receiver) >= hold as usize);
    receiver.finish(frames.len() as u64).expect("taken");
    assert_eq!(origins(&receiver), frames.len());
}

#[test]
fn a_full_batch_is_verified_without_waiting() {
    let frames = workload::one_write_each(BATCH as u64 + 10, false);
    let mut receiver = Receiver::new();
    for frame in &frames {
        receiver.receive_at(frame, 0).expect("taken");
    }
    assert_eq!(origins(&receiver), BATCH);
    receiver.finish(0).expect("taken");
    assert_eq!(origins(&receiver), BATCH + 10);
}

#[test]
fn held_events_are_bounded_however_few_seals_they_carry() {
    // Each writer's 1,024 updates are one sealed run, a frame each: one
    // seal fills the bound.
    let frames = workload::run_heavy(6, MAX_RUN as u64, 100_000, MAX_RUN as u64);
    let mut receiver = Receiver::new();
    let mut frames = frames.iter();
    for frame in frames.by_ref() {
        receiver.receive_at(frame, 0).expect("taken");
        if origins(&receiver) > 0 {
            break;
        }
    }
    let clock = receiver.node().engine().clock();
    let verified: u64 = clock.iter().map(|(_, n)| n).sum();
    assert!(
        verified as usize >= MAX_UNVERIFIED_EVENTS,
        "verified at the bound"
    );
    assert!(frames.len() > 0, "verified before the window closed");
    for frame in frames {
        receiver.receive_at(frame, 0).expect("taken");
    }
    receiver.finish(0).expect("taken");
    assert_eq!(origins(&receiver), 6);
}

/// A frame whose run was altered after it was sealed, its frame checksum
/// made anew: only the seal can tell.
fn forged(frame: &[u8]) -> Vec<u8> {
    let Ok(Decoded::Message(Message::Events(mut events))) = wire::decode(frame) else {
        panic!("an events frame");
    };
    if let Operation::Register(cpc_sync::protocol::event::RegisterOp::Write { value, .. }) =
        &mut events[0].op
    {
        *value = JsonValue::parse("\"forged\"").unwrap();
    }
    wire::encode(&Message::Events(events), 1).remove(0)
}

#[test]
fn a_forgery_held_with_honest_runs_is_named_and_they_are_taken() {
    let mut frames = workload::one_write_each(40, false);
    let victim = frames[17].clone();
    frames[17] = forged(&victim);
    let mut receiver = Receiver::new();
    for frame in &frames {
        receiver
            .receive_at(frame, 0)
            .expect("held, not yet verified");
    }
    let refusal = receiver.finish(5).expect_err("the forgery is found");
    assert!(
        matches!(refusal, Refusal::Seal(SealError::BadSignature(_))),
        "{refusal}"
    );
    assert_eq!(origins(&receiver), 39, "every honest run is taken");
    let stats = receiver
        .node()
        .sessions()
        .next()
        .expect("the neighbour")
        .1
        .clone();
    assert_eq!(stats.rejected, 1, "charged to the frame's sender");
    assert!(!receiver.node().engine().state_json().contains("forged"));
}

#[test]
fn another_kind_of_message_lets_held_events_in_first() {
    let frames = workload::one_write_each(5, false);
    let mut receiver = Receiver::new();
    for frame in &frames {
        receiver.receive_at(frame, 0).expect("taken");
    }
    assert_eq!(origins(&receiver), 0);
    let verification_due = receiver.node().next_timer();
    let digest = wire::encode(
        &Message::Digest {
            clock: VectorClock::new(),
            root: cpc_sync::protocol::Hash32::ZERO,
        },
        2,
    )
    .remove(0);
    receiver.receive_at(&digest, 0).expect("a digest");
    assert_eq!(
        origins(&receiver),
        5,
        "applied before the digest is answered"
    );
    assert!(
        receiver.node().next_timer() > verification_due,
        "no timer for a verification any more"
    );
}

/// The page learns of held events when the window closes, not at the next
/// gossip round: the tick that verifies them reports what changed.
#[test]
fn the_window_closing_reports_the_changes() {
    use cpc_sync::protocol::sync::{Output, SyncConfig, SyncNode, VERIFY_WINDOW_MS};
    let node = |seed| {
        let config = SyncConfig {
            verify_window_ms: Some(VERIFY_WINDOW_MS),
            ..SyncConfig::default()
        };
        common::signed_node(seed, config)
    };
    let sends = |n: &mut SyncNode| -> Vec<Vec<u8>> {
        n.take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { frame, .. } => Some(frame),
                _ => None,
            })
            .collect()
    };
    let (mut a, mut b) = (node(1), node(2));
    let now = 1_700_000_000_000;
    a.connect(b.peer(), now);
    b.connect(a.peer(), now);
    a.tick(now);
    b.tick(now);
    for _ in 0..3 {
        for f in sends(&mut a) {
            b.receive_frame(a.peer(), &f, now);
        }
        for f in sends(&mut b) {
            a.receive_frame(b.peer(), &f, now);
        }
    }
    a.write(|e| {
        e.set("k", JsonValue::parse("1").unwrap(), now + 10)
            .map(Some)
    })
    .unwrap();
    for f in sends(&mut a) {
        b.receive_frame(a.peer(), &f, now + 10);
    }
    assert_eq!(b.next_timer(), now + 10 + VERIFY_WINDOW_MS);
    b.tick(now + 10 + VERIFY_WINDOW_MS);
    let changed = b
        .take_outputs()
        .into_iter()
        .any(|o| matches!(&o, Output::Changed { keys, .. } if keys.iter().any(|k| &**k == "k")));
    assert!(changed, "the change is reported when the window closes");
}

// --- Seals verified elsewhere (`SyncConfig::offload_seals`: a page's
// Workers). The node hands each batch out, applies batches in the order it
// handed them out whatever order their verdicts come in, and never holds
// more than `MAX_IN_FLIGHT_EVENTS` events for a verifier.

use cpc_sync::protocol::seal::verify_packed;
use cpc_sync::protocol::sync::{MAX_HELD_FOR_VERIFIER, MAX_IN_FLIGHT_EVENTS, MIN_OFFLOADED_SEALS};

#[test]
fn batches_verified_elsewhere_are_applied_in_the_order_handed_out() {
    let frames = workload::one_write_each(2 * BATCH as u64 + 10, false);
    let mut receiver = Receiver::offloading();
    for frame in &frames {
        receiver.receive_at(frame, 0).expect("taken");
    }
    let mut out = receiver.take_verify();
    assert_eq!(out.len(), 2, "two full batches handed out, the rest held");
    assert_eq!(origins(&receiver), 0, "nothing applied before its verdicts");
    let (second, first) = (out.pop().unwrap(), out.pop().unwrap());
    receiver
        .verified(second.0, &verify_packed(&second.1), 1)
        .expect("taken");
    assert_eq!(origins(&receiver), 0, "the second waits for the first");
    receiver
        .verified(first.0, &verify_packed(&first.1), 1)
        .expect("taken");
    assert_eq!(origins(&receiver), 2 * BATCH, "then both, in order");
    // Verdicts again, or for a batch never handed out: nothing happens.
    receiver
        .verified(first.0, &verify_packed(&first.1), 1)
        .expect("ignored");
    receiver.verified(99, &[1; 10], 1).expect("ignored");
    assert_eq!(origins(&receiver), 2 * BATCH);
    receiver.finish(5).expect("the last frames verify");
    assert_eq!(origins(&receiver), frames.len());
    assert_eq!(receiver.node().verifying(), 0);
}

/// A few seals (a lone write's) are verified in place: a message to a
/// Worker and back costs more than they do.
#[test]
fn a_small_batch_is_verified_in_place() {
    let frames = workload::one_write_each(MIN_OFFLOADED_SEALS as u64 - 1, false);
    let mut receiver = Receiver::offloading();
    for frame in &frames {
        receiver.receive_at(frame, 0).expect("held");
    }
    receiver.tick_at(5).expect("the window closes");
    assert!(receiver.take_verify().is_empty());
    assert_eq!(origins(&receiver), frames.len());
}

/// The verifier's verdicts decide, run by run: a forgery it finds is named
/// and charged to the sender; a run it gives no verdict of 1 (too few
/// verdicts) is refused, never taken.
#[test]
fn a_forgery_verified_elsewhere_is_named_and_a_short_answer_takes_nothing_unverified() {
    let mut frames = workload::one_write_each(40, false);
    frames[17] = forged(&frames[17].clone());
    let mut receiver = Receiver::offloading();
    for frame in &frames {
        receiver.receive_at(frame, 0).expect("held");
    }
    receiver.tick_at(5).expect("the window closes: handed out");
    let [(batch, seals)] = &receiver.take_verify()[..] else {
        panic!("one batch");
    };
    let mut verdicts = verify_packed(seals);
    assert_eq!(verdicts[17], 0, "the verifier finds the forgery");
    verdicts.truncate(30);
    let refusal = receiver
        .verified(*batch, &verdicts, 1)
        .expect_err("refused runs");
    assert!(
        matches!(refusal, Refusal::Seal(SealError::BadSignature(_))),
        "{refusal}"
    );
    assert_eq!(origins(&receiver), 29, "the 29 runs with a verdict of 1");
    assert!(!receiver.node().engine().state_json().contains("forged"));
}

/// What an offloading receiver whose verifier never answers made of
/// `frames`: the batches it handed out, the most it held (by `held`, never
/// past `bound`), and how many batches were out when it first applied
/// something (it gave up on them and verified them itself).
struct Stalled {
    receiver: Receiver,
    handed_out: Vec<(u64, Vec<u8>)>,
    most_held: usize,
    out_when_settled: Option<usize>,
}

fn stalled(frames: &[Vec<u8>], bound: usize, held: impl Fn(&Receiver) -> usize) -> Stalled {
    let mut stalled = Stalled {
        receiver: Receiver::offloading(),
        handed_out: Vec::new(),
        most_held: 0,
        out_when_settled: None,
    };
    for frame in frames {
        let receiver = &mut stalled.receiver;
        receiver.receive_at(frame, 0).expect("taken");
        stalled.handed_out.extend(receiver.take_verify());
        let held = held(receiver);
        assert!(held <= bound, "{held} held");
        stalled.most_held = stalled.most_held.max(held);
        if origins(receiver) > 0 && stalled.out_when_settled.is_none() {
            stalled.out_when_settled = Some(stalled.handed_out.len());
        }
    }
    stalled
}

/// A verifier that falls behind gets at most `MAX_IN_FLIGHT_EVENTS`
/// events out: past it the node verifies new batches itself, and they
/// wait, verified, for those out. One that stops answering holds at most
/// `MAX_HELD_FOR_VERIFIER`: past it the node verifies what is out itself,
/// in order. `verify_here` (a page whose Workers failed) settles what is
/// out and verifies everything after it in place.
#[test]
fn a_verifier_that_stops_answering_holds_bounded_events() {
    // Frames of 16 events, one seal each: every batch is 256 of them
    // (`BATCH` seals), `MAX_UNVERIFIED_EVENTS` events.
    assert_eq!(MAX_UNVERIFIED_EVENTS, 16 * BATCH);
    let writers = MAX_HELD_FOR_VERIFIER / 1_024 + 8;
    let frames = workload::run_heavy(writers as u64, 1_024, 100_000, 16);
    let total = writers * 1_024;
    let applied = |r: &Receiver| -> usize {
        let clock = r.node().engine().clock();
        clock.iter().map(|(_, n)| n as usize).sum()
    };
    // Every batch out or waiting for those holds the same events.
    let Stalled {
        mut receiver,
        handed_out,
        most_held,
        out_when_settled,
    } = stalled(&frames, MAX_HELD_FOR_VERIFIER, |r| {
        r.node().verifying() * MAX_UNVERIFIED_EVENTS
    });
    let out_when_settled = out_when_settled.map(|out| out * MAX_UNVERIFIED_EVENTS);
    assert_eq!(
        out_when_settled,
        Some(MAX_IN_FLIGHT_EVENTS),
        "out up to the bound, never past it, until the node gave up on them"
    );
    assert_eq!(most_held, MAX_HELD_FOR_VERIFIER, "held up to the bound");
    assert!(
        applied(&receiver) >= MAX_HELD_FOR_VERIFIER,
        "past it, verified here: {}",
        applied(&receiver)
    );
    receiver.verify_here(1).expect("taken");
    assert!(
        receiver.take_verify().is_empty(),
        "nothing handed out any more"
    );
    assert_eq!(applied(&receiver), total);
    // Late verdicts for batches settled here change nothing.
    for (batch, seals) in handed_out {
        receiver
            .verified(batch, &verify_packed(&seals), 2)
            .expect("ignored");
    }
    assert_eq!(applied(&receiver), total);
    assert_eq!(receiver.node().verifying(), 0);
}

/// A verifier that falls behind and catches up: the batches verified here
/// meanwhile wait for those out, and all are applied in order.
#[test]
fn batches_verified_here_wait_for_those_out() {
    // Frames of 16 events, one seal each: a batch is `MAX_UNVERIFIED_EVENTS`
    // events; the bound's worth out, and two batches more.
    let writers = (MAX_IN_FLIGHT_EVENTS + 2 * MAX_UNVERIFIED_EVENTS) / 1_024;
    let frames = workload::run_heavy(writers as u64, 1_024, 100_000, 16);
    let mut receiver = Receiver::offloading();
    for frame in &frames {
        receiver.receive_at(frame, 0).expect("taken");
    }
    let out = receiver.take_verify();
    assert_eq!(out.len() * MAX_UNVERIFIED_EVENTS, MAX_IN_FLIGHT_EVENTS);
    assert_eq!(
        origins(&receiver),
        0,
        "verified here, waiting for those out"
    );
    assert_eq!(receiver.node().verifying(), out.len() + 2);
    for (batch, seals) in out.into_iter().rev() {
        receiver
            .verified(batch, &verify_packed(&seals), 1)
            .expect("taken");
    }
    assert_eq!(origins(&receiver), writers);
    let clock = receiver.node().engine().clock();
    assert_eq!(
        clock.iter().map(|(_, n)| n as usize).sum::<usize>(),
        writers * 1_024
    );
    assert_eq!(receiver.node().verifying(), 0);
}

use cpc_sync::protocol::sync::{
    Held, MAX_HELD_FOR_VERIFIER_BYTES, MAX_IN_FLIGHT_BYTES, MAX_UNVERIFIED_BYTES,
};

/// One-event runs of large values: what is held for verification is
/// bounded by its bytes as well as its events, for a window
/// (`MAX_UNVERIFIED_BYTES`: a batch), out with a verifier
/// (`MAX_IN_FLIGHT_BYTES`) and for one that stopped answering
/// (`MAX_HELD_FOR_VERIFIER_BYTES`). Counted by seals and events alone, a
/// batch was 256 of these runs, 12 MiB of values and their frames again
/// (at the largest value a message may carry, 4 GiB).
#[test]
fn large_values_held_for_verification_are_bounded_by_bytes() {
    // A frame's worth each (a message of chunks is not a frame the
    // writers' workload hands over).
    let value = wire::MAX_FRAME * 3 / 4;
    let writers = MAX_HELD_FOR_VERIFIER_BYTES / value + 16;
    let frames = workload::one_large_write_each(writers as u64, value);
    // Batches out or waiting for those, and the frames of a window.
    let Stalled {
        mut receiver,
        handed_out,
        most_held,
        out_when_settled,
    } = stalled(
        &frames,
        MAX_HELD_FOR_VERIFIER_BYTES + MAX_UNVERIFIED_BYTES,
        |r| r.node().held_for_verification().bytes,
    );
    // Each value is held twice: decoded, and in the frame kept to be
    // stored as it came.
    let seals = |packed: &Vec<u8>| verify_packed(packed).len();
    assert!(
        handed_out
            .iter()
            .all(|(_, packed)| (1..=MAX_UNVERIFIED_BYTES / (2 * value)).contains(&seals(packed))),
        "each batch within the bound of bytes: {:?}",
        handed_out.iter().map(|(_, p)| seals(p)).collect::<Vec<_>>()
    );
    let out = out_when_settled.expect("the node gave up on the verifier");
    let out_values: usize = handed_out[..out].iter().map(|(_, p)| seals(p)).sum();
    assert!(
        out_values * 2 * value <= MAX_IN_FLIGHT_BYTES,
        "out within the bound: {out_values} values"
    );
    assert!(
        most_held > MAX_IN_FLIGHT_BYTES,
        "held past what is out, verified here and waiting: {most_held}"
    );
    receiver.verify_here(1).expect("taken");
    assert_eq!(origins(&receiver), writers);
    assert_eq!(receiver.node().held_for_verification(), Held::default());
}

//! The room peer of a real `cpc-signal` (`KEEP=on`, a temporary
//! `DATA_DIR`) takes a burst of mutated frames through a page's tunnel
//! (frames of a signed stream and of every message kind, edited, most
//! with their check made right), then serves honest pages to the
//! writers' state, before and after a `kill -9` and a restart from its
//! store; nothing it holds is an event no writer signed. The room peer's
//! task is fuzzed at length in process
//! (`src/bin/cpc-signal/signaling/fuzz_tunnel.rs`); this is the same
//! through the socket, one burst a case.
//!
//! `CPC_FUZZ_CASES=n` for more bursts; the seed is printed and
//! `CPC_SEED=n` replays it.

use crate::common;
use crate::fuzz::{edit, sample_frames, signed_stream, Edit};
use crate::keep::{keeping, DataDir, Page};
use cpc_sync::protocol::testing::mutate::checked_as_ours as checked;

use std::collections::HashMap;

use cpc_sync::protocol::sync::wire::{self, Decoded, Message as WireMessage};
use cpc_sync::protocol::sync::Output;
use cpc_sync::protocol::testing::wire::neighbour;
use cpc_sync::protocol::{EventId, Identity, P2PEvent};
use futures_util::SinkExt;
use proptest::prelude::*;
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "fuzzed";

fn unsealed(e: &P2PEvent) -> P2PEvent {
    P2PEvent {
        seal: None,
        ..e.clone()
    }
}

/// The stream's events as their writers signed them.
fn honest(stream: &[Vec<u8>]) -> HashMap<EventId, P2PEvent> {
    stream
        .iter()
        .filter_map(|f| match wire::decode(f) {
            Ok(Decoded::Message(WireMessage::Events(events))) => Some(events),
            _ => None,
        })
        .flatten()
        .map(|e| (e.id, unsealed(&e)))
        .collect()
}

/// A page that took the whole stream, linked to the room peer.
async fn writer(server: &crate::server::Server, seed: u64) -> Page {
    let mut page = Page::join(server, Identity::from_seed(seed), ROOM).await;
    let now = cpc_sync::protocol::testing::wire::WRITERS_NOW + 1_000_000;
    page.node.connect(neighbour(), now);
    for frame in signed_stream() {
        page.node.receive_frame(neighbour(), &frame, now);
    }
    page.node.disconnect(neighbour());
    // What it owes the room peer goes; what it said to the stream's
    // sender does not.
    let keeper = page.keeper;
    for output in page.node.take_outputs() {
        if let Output::Send { to, frame } = output {
            if Some(to) == keeper {
                let _ = page.ws.send(Message::Binary(frame.into())).await;
            }
        }
    }
    page
}

/// A reader's state, caught up with the room peer, all signed.
async fn read(server: &crate::server::Server, seed: u64) -> Result<String, TestCaseError> {
    let honest = honest(&signed_stream());
    let mut reader = Page::join(server, Identity::from_seed(seed), ROOM).await;
    prop_assert!(reader.keeper.is_some(), "{:?}", reader.unkept);
    prop_assert!(reader.catch_up().await, "a reader never caught up");
    for e in reader.node.engine().log().iter() {
        prop_assert!(
            honest.get(&e.id) == Some(&unsealed(e)),
            "the room peer served an event no writer signed: {:?}",
            e
        );
    }
    Ok(reader.node.engine().state_json())
}

async fn burst(frames: Vec<(prop::sample::Index, Vec<Edit>, bool)>) -> Result<(), TestCaseError> {
    let data = DataDir::new("fuzz-burst");
    // The log unfolded: the restart replays it (folds and their
    // snapshots are fuzzed in process).
    let mut server = keeping(&data, &[]);
    let mut liar = Page::join(&server, Identity::from_seed(70), ROOM).await;
    prop_assert!(liar.keeper.is_some(), "{:?}", liar.unkept);
    let stream = signed_stream();
    let mut pool = stream.clone();
    pool.extend(sample_frames());
    // A forgery first (a signature byte flipped): one refusal at least.
    let mut forged = stream[0].clone();
    let at = forged.len() - 5;
    forged[at] ^= 1;
    let mut sent = vec![checked(forged)];
    for (which, edits, check) in frames {
        let original = &pool[which.index(pool.len())];
        let mut frame = original.clone();
        for e in edits {
            edit(&mut frame, e, original);
        }
        sent.push(if check { checked(frame) } else { frame });
    }
    for frame in sent {
        if liar.ws.send(Message::Binary(frame.into())).await.is_err() {
            break;
        }
    }
    // Until the room peer has taken them all (its count stands still).
    let mut frames_in = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let now = server.reading("cpc_signal_keep_frames_in_total").await;
        if now == frames_in {
            break;
        }
        frames_in = now;
    }
    let rejected = server.reading("cpc_signal_keep_rejected_total").await;
    prop_assert!(rejected >= 1, "the forgery was not counted");
    drop(liar);

    // Honest pages sync through it to the writers' state.
    let mut writer = writer(&server, 71).await;
    let level = writer
        .run_until(|p| {
            let mine = p.node.engine().clock().clone();
            p.keeper
                .and_then(|keeper| p.node.remote_view(keeper))
                .is_some_and(|(theirs, _)| theirs.descends(&mine) && mine.descends(theirs))
        })
        .await;
    prop_assert!(level, "the writer and the room peer never levelled");
    let reference = writer.node.engine().state_json();
    // The writer's view of the room peer counts what it sent: a reader
    // may come before the room peer took it all.
    let mut state = String::new();
    for seed in 100..150 {
        state = read(&server, seed).await?;
        if state == reference {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    prop_assert_eq!(&state, &reference);
    drop(writer);

    // Killed and restarted from its store: the same, signed.
    server.kill();
    let server = keeping(&data, &[]);
    prop_assert_eq!(read(&server, 73).await?, reference);
    Ok(())
}

proptest! {
    #![proptest_config(common::fuzz_config("fuzz_keep", 1))]

    #[test]
    fn a_real_room_peer_takes_a_mutated_burst_and_serves_on(
        frames in prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::collection::vec(
                    (any::<u8>(), any::<prop::sample::Index>(), any::<u8>(), any::<usize>(), any::<prop::sample::Index>()),
                    1..4,
                ),
                prop::bool::weighted(0.8),
            ),
            40..80,
        ),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(burst(frames))?;
    }
}

//! Helpers shared by the native integration tests.

pub mod net;
pub mod slow_link;
pub mod strategies;

use cpc_sync::protocol::event::RegisterOp;
use cpc_sync::protocol::{
    EngineConfig, EventId, JournalEntry, JsonValue, Operation, P2PEvent, PeerId,
    ReconciliationEngine, Timestamp, VectorClock,
};

use cpc_sync::protocol::sync::{SyncConfig, SyncNode};
pub use cpc_sync::protocol::testing::Rng;
use cpc_sync::protocol::Identity;

/// `config` whose folds take every stable event, our own that no peer
/// said it had among them (`keep_unacked: 0`): a host that wrote alone
/// and folded, so that a newcomer is offered a snapshot.
pub fn folds_all(config: SyncConfig) -> SyncConfig {
    SyncConfig {
        keep_unacked: 0,
        ..config
    }
}

/// A node that signs as the identity of `seed`, configured by `config`
/// otherwise.
pub fn signed_node(seed: u64, config: SyncConfig) -> SyncNode {
    let identity = Identity::from_seed(seed);
    let engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    SyncNode::new(
        engine,
        SyncConfig {
            identity: Some(identity),
            ..config
        },
    )
}

/// The seed for a randomized test: `CPC_SEED` replays one, otherwise a
/// fresh one. Either way it is printed first.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("CPC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("{test}: seed {seed} (replay with CPC_SEED={seed})");
    seed
}

/// Runs `run` over consecutive seeds from a printed base: `CPC_SEED=n`
/// replays one seed, `count_var` sets how many run (else `default_count`).
/// A failure names the seed that replays it.
pub fn for_seeds(
    test: &str,
    count_var: &str,
    default_count: u64,
    run: impl Fn(u64) + std::panic::RefUnwindSafe,
) {
    let base = seed(test);
    let count = if std::env::var("CPC_SEED").is_ok() {
        1
    } else {
        std::env::var(count_var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_count)
    };
    for i in 0..count {
        let seed = base.wrapping_add(i);
        if let Err(panic) = std::panic::catch_unwind(|| run(seed)) {
            eprintln!("{test} failed at seed {seed}: replay with CPC_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

pub fn peer(n: u64) -> PeerId {
    PeerId(n)
}

pub fn engine(n: u64) -> ReconciliationEngine {
    let mut e = ReconciliationEngine::new(PeerId(n), EngineConfig::default());
    e.record_apply_order();
    e
}

/// An unsealed register write of `value` (JSON text), with no dependencies
/// and nothing observed, timestamped `ms`.
pub fn register_write(id: EventId, key: &str, value: &str, ms: u64) -> P2PEvent {
    P2PEvent {
        id,
        key: key.into(),
        op: Operation::Register(RegisterOp::Write {
            value: json(value),
            observed: VectorClock::new(),
            resolution: false,
        }),
        deps: VectorClock::new(),
        hlc: Timestamp::new(ms, 0),
        seal: None,
    }
}

pub fn json(text: &str) -> JsonValue {
    JsonValue::parse(text).expect("test JSON")
}

/// Delivers `events` to `to`, expecting each to be taken (applied or held).
pub fn deliver(to: &mut ReconciliationEngine, events: &[P2PEvent], now: u64) {
    for e in events {
        to.receive(e.clone(), now).expect("event taken");
    }
}

/// Checks that `engine` applied no event before its dependencies, using its
/// recorded apply order and its log (events compacted out of the log are
/// not checked).
pub fn assert_causal(engine: &ReconciliationEngine) {
    let mut have = VectorClock::new();
    for (i, entry) in engine.apply_order().iter().enumerate() {
        match entry {
            JournalEntry::Loaded(clock) => have.merge(clock),
            JournalEntry::Applied(id) => {
                if let Some(event) = engine.log().get(*id) {
                    for dep in event.dependencies() {
                        assert!(
                            have.get(dep.peer) >= dep.seq,
                            "peer {}: {id} applied (step {i}) before its dependency {dep}",
                            engine.peer()
                        );
                    }
                }
                have.observe(id.peer, id.seq);
            }
        }
    }
}

/// Asserts that all engines show the same state, clock and digest, and hold
/// nothing.
pub fn assert_converged(engines: &mut [ReconciliationEngine]) {
    let reference = engines[0].state_json();
    let clock = engines[0].clock().clone();
    let digest = engines[0].digest();
    for e in engines.iter_mut() {
        assert_eq!(e.state_json(), reference, "state of {}", e.peer());
        assert_eq!(e.clock(), &clock, "clock of {}", e.peer());
        assert_eq!(e.digest(), digest, "digest of {}", e.peer());
        assert!(
            e.holding().is_empty(),
            "{} still holds {} events",
            e.peer(),
            e.holding().len()
        );
    }
}

/// A fuzz run's proptest configuration: `CPC_FUZZ_CASES` cases (else
/// `cases`), from the printed seed of `test` (`CPC_SEED` replays it).
pub fn fuzz_config(test: &str, cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("CPC_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    proptest::test_runner::Config {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed(test)),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

//! Opening a peer: its identity, its storage, and the node restored from it.

use std::rc::Rc;

use super::options::{Options, StorageKind};
use crate::browser::compress;
use crate::browser::error::{from_js, Code, PeerError};
use crate::browser::identity::{self, Slot};
use crate::browser::storage::Storage;
use crate::protocol::hashing;
use crate::protocol::room::RoomSecret;
use crate::protocol::sync::{SyncConfig, SyncNode, VERIFY_WINDOW_MS};
use crate::protocol::{EngineConfig, Identity, ReconciliationEngine};

/// A peer's node and what it holds open.
pub struct Opened {
    pub node: SyncNode,
    /// `None` with memory storage.
    pub storage: Option<Rc<Storage>>,
    pub slot: Option<Slot>,
    /// The name the room goes by outside its peers: its name, or with a
    /// secret an opaque id derived from it.
    pub public_room: String,
    pub secret: Option<Rc<RoomSecret>>,
    /// The peer's identity, for the transport to sign its server join.
    pub identity: Identity,
}

/// Random bytes from the browser's CSPRNG.
fn random<const N: usize>() -> Result<[u8; N], PeerError> {
    let mut bytes = [0u8; N];
    let crypto = web_sys::window()
        .ok_or_else(|| PeerError::unsupported("window"))?
        .crypto()
        .map_err(|e| from_js(Code::Unsupported, "crypto", e))?;
    crypto
        .get_random_values_with_u8_array(&mut bytes)
        .map_err(|e| from_js(Code::Unsupported, "crypto.getRandomValues", e))?;
    Ok(bytes)
}

pub async fn open(options: &Options) -> Result<Opened, PeerError> {
    // A room with a secret goes by an opaque id everywhere outside its
    // peers: signaling, the BroadcastChannel, storage, the slot locks.
    let secret = options
        .secret
        .as_ref()
        .map(|s| Rc::new(RoomSecret::new(&options.room, s)));
    let public_room = secret
        .as_ref()
        .map_or_else(|| options.room.clone(), |s| s.room_id().to_string());
    // The core's tables keyed by what peers send hash with seeds of this
    // page's (see `protocol::hashing`).
    hashing::seed(u64::from_le_bytes(random()?));
    // Values' numbers read by the browser's correctly rounded parse.
    crate::protocol::json::read_floats_with(js_sys::Number::parse_float);
    let config = EngineConfig {
        hash_seed: u64::from_le_bytes(random()?),
        ..EngineConfig::default()
    };
    let mut sync = SyncConfig {
        room: secret.as_deref().cloned(),
        nonce_seed: random()?,
        durable: options.storage == StorageKind::IndexedDb,
        verify_window_ms: Some(VERIFY_WINDOW_MS),
        offload_seals: options.verify_workers > 0,
        gzip_snapshots: compress::available(),
        ..SyncConfig::default()
    };
    if let Some(n) = options.compact_after {
        sync.compact_after = n;
    }
    let slot = match options.storage {
        StorageKind::Memory => None,
        StorageKind::IndexedDb => identity::claim(&public_room)
            .await
            .map_err(|e| from_js(Code::Storage, "claiming an identity slot", e))?,
    };
    if slot.is_none() && options.storage == StorageKind::IndexedDb {
        // Without Web Locks nothing keeps two tabs off one stored
        // identity: this tab is a new peer each time it opens, kept in
        // memory (its state comes back from its peers).
        web_sys::console::warn_1(
            &"cpc-sync: no Web Locks (this page is not a secure context: serve it over \
              https or from localhost), so this tab keeps its state in memory only"
                .into(),
        );
    }
    let stored = match slot {
        None => None,
        Some(slot) => {
            let name = format!("cpc-sync:{public_room}:slot:{}", slot.index);
            match Storage::open(&name).await {
                Ok(storage) => Some((slot, storage)),
                // No IndexedDB for this page at all: it holds nothing
                // stored, so it goes on in memory as without Web Locks
                // (the slot let go), where `STORAGE` left the app nothing.
                Err(e) if e.refused => {
                    web_sys::console::warn_1(
                        &format!(
                            "cpc-sync: this page may not use IndexedDB ({e}), so this tab \
                             keeps its state in memory only"
                        )
                        .into(),
                    );
                    None
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let (node, storage, slot, identity) = match stored {
        None => {
            let identity = Identity::from_secret(&random()?);
            let engine = ReconciliationEngine::new(identity.peer(), config);
            sync.identity = Some(identity.clone());
            sync.durable = false;
            (SyncNode::new(engine, sync), None, None, identity)
        }
        Some((slot, storage)) => {
            let persisted = storage.load().await?;
            if persisted.damaged > 0 {
                web_sys::console::warn_1(
                    &format!(
                        "cpc-sync: {} stored log records of room {:?} did not decode and were \
                         skipped: other peers' events among them come back from the room, but \
                         this peer's own do not, and its next writes may reuse their numbers",
                        persisted.damaged, options.room
                    )
                    .into(),
                );
            }
            let identity = match &persisted.identity {
                Some(secret) => Identity::from_secret(secret),
                None => {
                    let identity = Identity::from_secret(&random()?);
                    storage.save_identity(&identity.secret()).await?;
                    identity
                }
            };
            let peer = identity.peer();
            sync.identity = Some(identity.clone());
            let node = SyncNode::restore(
                peer,
                config,
                sync,
                persisted.snapshot.as_deref(),
                persisted.events,
            )?;
            (node, Some(Rc::new(storage)), Some(slot), identity)
        }
    };
    Ok(Opened {
        node,
        storage,
        slot,
        public_room,
        secret,
        identity,
    })
}

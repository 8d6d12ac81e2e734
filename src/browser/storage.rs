//! IndexedDB persistence of one peer: its event log and its latest snapshot,
//! in a database of its own.
//!
//! - store `log`: one record per commit, the node's batches of it back to
//!   back ([`P2PEvent::encode_batch`], read with
//!   [`P2PEvent::decode_batch`]), keys auto-incremented, so the log reads
//!   back in append order (one record per event would cap appends at the
//!   browser's rate of IndexedDB requests, some 20k a second);
//! - store `snapshot`: the latest `StateSnapshot` under the key `"state"`,
//!   gzipped by the browser's `CompressionStream` (a snapshot stored by
//!   a migration is not: its magic bytes tell them apart).
//!
//! A batch of events is appended in one transaction, and the future
//! resolves once that transaction has committed (durable). Writing a
//! snapshot clears the log in the same transaction: the snapshot covers it.
//! Callbacks are the `resolve`/`reject` functions of a JS promise, so no
//! Rust closure outlives its request.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbObjectStore, IdbRequest, IdbTransaction, IdbTransactionMode};

use crate::browser::compress;
use crate::browser::convert::describe;
use crate::protocol::codec::{self, legacy};
use crate::protocol::snapshot;
use crate::protocol::sync::Persist;
use crate::protocol::P2PEvent;

const LOG: &str = "log";
const SNAPSHOT: &str = "snapshot";
const STATE_KEY: &str = "state";
const IDENTITY_KEY: &str = "identity";
/// Version 2: events carry seals, and the identity is a secret key.
/// Version 3: snapshots are the signed runs the state rests on, and
/// counter increments carry their running sum.
/// Version 4: log records and snapshots hold events as runs in columns
/// ([`crate::protocol::codec::events`]). A version 3 database is migrated
/// on open ([`codec::legacy`]); an older one is cleared, identity included
/// (a kept identity with a cleared log would reuse its sequence numbers).
/// Version 5: the same stores and forms as 4, with run-coded columns
/// (batch format 2) among them. Builds of version 4 read only format 1:
/// one opening a database a newer build wrote skipped its records as
/// damaged, showed an empty room with the same identity, and reused its
/// sequence numbers (a review of upgrades). IndexedDB refuses to open a
/// database at a version below its own, so a build of an older version
/// now fails to open, touching nothing. Every change of what is stored
/// takes a new version.
const VERSION: u32 = 5;
/// The oldest version whose data is migrated rather than cleared.
const MIGRATES_FROM: u32 = 3;
/// The oldest version whose data is read as it is.
const READS_FROM: u32 = 4;

// What version 5 stores. A build that stores another form must take a
// new version (and read or migrate this one): a build that reads only
// the older form then cannot open the database, where it would skip what
// it cannot read as damaged and reuse the sequence numbers it held.
const _: () = assert!(
    codec::FORMAT == 2 && snapshot::FORMAT == 3 && VERSION == 5,
    "a stored format changed: raise storage::VERSION, and read or migrate the previous one"
);

/// Why storage failed; the message names the IndexedDB operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IndexedDB {operation} failed: {detail}")]
pub struct StorageError {
    pub operation: &'static str,
    pub detail: String,
    /// The browser refuses this page IndexedDB altogether (none at all, a
    /// sandboxed or opaque origin, storage blocked): nothing is stored
    /// here, so nothing stored is hidden by going on in memory.
    pub refused: bool,
}

fn failed(operation: &'static str) -> impl Fn(JsValue) -> StorageError {
    move |e| StorageError {
        operation,
        detail: describe(&e),
        refused: false,
    }
}

/// [`failed`], marked refused where the browser will not let this page
/// use IndexedDB at all: a `SecurityError` (an opaque origin, storage
/// blocked by the user) or an `InvalidStateError` from opening (older
/// Firefox's private windows), or no factory to ask.
fn refused_or_failed(e: JsValue) -> StorageError {
    StorageError {
        refused: refuses(&e),
        ..failed("open")(e)
    }
}

/// Whether `e` is the browser refusing this page IndexedDB
/// ([`refused_or_failed`]).
fn refuses(e: &JsValue) -> bool {
    e.dyn_ref::<js_sys::Error>().is_some_and(|e| {
        matches!(
            String::from(e.name()).as_str(),
            "SecurityError" | "InvalidStateError"
        )
    })
}

/// Waits for a request's `success` (or fails on its `error`).
async fn request(req: &IdbRequest, operation: &'static str) -> Result<JsValue, StorageError> {
    let done = Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    if let Err(event) = JsFuture::from(done).await {
        // The request's error (a DOMException naming what failed), not
        // the event that told of it.
        let error = req.error().ok().flatten().map_or(event, JsValue::from);
        return Err(failed(operation)(error));
    }
    req.result().map_err(failed(operation))
}

/// Waits for a transaction to commit (or fails on `error`/`abort`).
///
/// No `durability` is asked for, and the engines tested agree on the
/// default: "relaxed" in Firefox (since 40) and Chromium (since 121), so
/// `complete` fires once the OS has the data, which a crash of the tab or
/// the browser keeps and a power loss may not.
async fn committed(tx: &IdbTransaction, operation: &'static str) -> Result<(), StorageError> {
    let done = Promise::new(&mut |resolve, reject| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onerror(Some(&reject));
        tx.set_onabort(Some(&reject));
    });
    if let Err(event) = JsFuture::from(done).await {
        // The transaction's error (a QuotaExceededError, say), not the
        // event that told of it (`{"isTrusted":true}`).
        let error = tx.error().map_or(event, JsValue::from);
        return Err(failed(operation)(error));
    }
    Ok(())
}

/// Rewrites a version 3 database's snapshot and log in today's forms
/// inside its upgrade transaction, so the new version and the migrated
/// data commit together or not at all (a page closed mid-way migrates on
/// its next open). Data that cannot be migrated aborts the upgrade, and
/// the open fails with IndexedDB's abort: nothing is dropped unread. Log
/// records that did not decode are dropped and counted into `damaged`.
fn migrate(tx: &IdbTransaction, damaged: Rc<Cell<usize>>) -> Result<(), JsValue> {
    let snapshots = tx.object_store(SNAPSHOT)?;
    let log = tx.object_store(LOG)?;
    let snapshot = snapshots.get(&STATE_KEY.into())?;
    let records = log.get_all()?;
    let tx = tx.clone();
    let read = records.clone();
    // Requests of one transaction complete in order: the snapshot is read
    // by the time the log is.
    let rewrite = Closure::once_into_js(move || {
        let rewritten = (|| -> Result<(), JsValue> {
            let snapshot = snapshot
                .result()?
                .dyn_ref::<Uint8Array>()
                .map(Uint8Array::to_vec);
            let records: Vec<Vec<u8>> = Array::from(&read.result()?)
                .iter()
                .map(|r| {
                    r.dyn_ref::<Uint8Array>()
                        .map(Uint8Array::to_vec)
                        .unwrap_or_default()
                })
                .collect();
            let migrated = legacy::migrate(snapshot.as_deref(), &records)
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            log.clear()?;
            if let Some(bytes) = &migrated.snapshot {
                snapshots.put_with_key(&Uint8Array::from(bytes.as_slice()), &STATE_KEY.into())?;
            }
            if let Some(bytes) = &migrated.record {
                log.add(&Uint8Array::from(bytes.as_slice()))?;
            }
            damaged.set(migrated.damaged);
            Ok(())
        })();
        if rewritten.is_err() {
            let _ = tx.abort();
        }
    });
    records.set_onsuccess(Some(rewrite.unchecked_ref()));
    Ok(())
}

/// What a peer had persisted.
#[derive(Debug, Default)]
pub struct Persisted {
    /// The secret key of the identity this database belongs to, once one
    /// was saved.
    pub identity: Option<[u8; 32]>,
    pub snapshot: Option<Vec<u8>>,
    pub events: Vec<P2PEvent>,
    /// Log records that did not decode (skipped; anti-entropy refetches).
    pub damaged: usize,
}

/// One peer's database.
pub struct Storage {
    db: IdbDatabase,
    name: String,
    /// The connection was closed under the page: the browser deleted the
    /// database (the user cleared the site's data, or a response's
    /// `Clear-Site-Data`). Every later transaction fails.
    lost: Rc<Cell<bool>>,
    _on_close: Closure<dyn FnMut()>,
    /// The identity's secret key as loaded or saved.
    identity: Cell<Option<[u8; 32]>>,
    /// After a [`reopen`](Self::reopen), the identity's key, to be saved
    /// with the first snapshot committed.
    identity_to_save: Cell<Option<[u8; 32]>>,
    /// Log records of the previous form that did not decode when the
    /// database was migrated on open (reported by the first `load`).
    migration_damaged: std::cell::Cell<usize>,
}

impl Drop for Storage {
    /// Closes the connection, its `close` handler first: the handler's
    /// closure is dropped with this, and a forced close later (the site's
    /// data cleared) would call it.
    fn drop(&mut self) {
        self.db.set_onclose(None);
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

impl Storage {
    /// Opens (creating on first use) the database `name`.
    pub async fn open(name: &str) -> Result<Storage, StorageError> {
        let open = failed("open");
        let factory = web_sys::window()
            .ok_or_else(|| open(JsValue::from_str("no window")))?
            .indexed_db()
            .map_err(refused_or_failed)?
            .ok_or_else(|| StorageError {
                refused: true,
                ..open(JsValue::from_str("IndexedDB is not available"))
            })?;
        let req = factory
            .open_with_u32(name, VERSION)
            .map_err(refused_or_failed)?;
        let damaged = Rc::new(Cell::new(0));
        let counted = damaged.clone();
        // Creates the stores on first open; owned here, dropped after.
        let upgrade = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new(
            move |event: web_sys::IdbVersionChangeEvent| {
                let Some(request) = event.target().and_then(|t| t.dyn_into::<IdbRequest>().ok())
                else {
                    return;
                };
                let Some(db) = request
                    .result()
                    .ok()
                    .and_then(|r| r.dyn_into::<IdbDatabase>().ok())
                else {
                    return;
                };
                let old = event.old_version();
                if old == f64::from(MIGRATES_FROM) {
                    if let Some(tx) = request.transaction() {
                        if migrate(&tx, counted.clone()).is_err() {
                            let _ = tx.abort();
                        }
                    }
                    return;
                }
                if old >= f64::from(READS_FROM) {
                    return;
                }
                if old > 0.0 {
                    // Written by an older version: unreadable now.
                    let _ = db.delete_object_store(LOG);
                    let _ = db.delete_object_store(SNAPSHOT);
                }
                let params = web_sys::IdbObjectStoreParameters::new();
                params.set_auto_increment(true);
                let _ = db.create_object_store_with_optional_parameters(LOG, &params);
                let _ = db.create_object_store(SNAPSHOT);
            },
        );
        req.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        // A tab of an older build holding the database open at its version
        // blocks the upgrade until it closes: said, not waited on in silence.
        let blocked = Closure::<dyn FnMut()>::new(|| {
            web_sys::console::warn_1(
                &"cpc-sync: another tab of this site holds this room's database open at an \
                  older version; this peer opens once that tab is closed or reloaded"
                    .into(),
            )
        });
        req.set_onblocked(Some(blocked.as_ref().unchecked_ref()));
        let db = match request(&req, "open").await {
            Ok(db) => db,
            // (Older Firefox's private windows fail the request itself.)
            Err(e) => {
                let error = req.error().ok().flatten().map(JsValue::from);
                return Err(StorageError {
                    refused: error.is_some_and(|error| refuses(&error)),
                    ..e
                });
            }
        };
        req.set_onupgradeneeded(None);
        req.set_onblocked(None);
        drop((upgrade, blocked));
        let db: IdbDatabase = db.dyn_into().map_err(&open)?;
        let lost = Rc::new(Cell::new(false));
        let on_close = Closure::<dyn FnMut()>::new({
            let (lost, db) = (lost.clone(), db.clone());
            move || {
                // Closed by the browser (the site's data cleared), or asked
                // to close: a newer build's tab upgrading the database, or
                // another tab deleting it, would wait on this connection
                // for as long as this tab lives (a review). Either way
                // nothing more commits here: the next commit makes the
                // database anew, as after a deletion, or fails with the
                // newer version's error.
                db.close();
                lost.set(true);
            }
        });
        db.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        db.set_onversionchange(Some(on_close.as_ref().unchecked_ref()));
        let storage = Storage {
            db,
            name: name.to_string(),
            lost,
            _on_close: on_close,
            identity: Cell::new(None),
            identity_to_save: Cell::new(None),
            migration_damaged: Cell::new(0),
        };
        storage.migration_damaged.set(damaged.get());
        Ok(storage)
    }

    /// Whether the database was deleted under the page (its connection
    /// closed by the browser), or another tab asked for it (to upgrade or
    /// delete it): nothing more commits to it.
    pub fn lost(&self) -> bool {
        self.lost.get()
    }

    /// The database made anew, once [`lost`](Self::lost): empty, to be
    /// given the whole state as a snapshot. The identity's key is saved
    /// in the transaction of that snapshot, not before: a page closed in
    /// between would come back as the same identity with none of its
    /// events, and number its next writes again.
    pub async fn reopen(&self) -> Result<Storage, StorageError> {
        let storage = Storage::open(&self.name).await?;
        storage.identity.set(self.identity.get());
        storage.identity_to_save.set(self.identity.get());
        Ok(storage)
    }

    fn store(
        &self,
        tx: &IdbTransaction,
        name: &str,
        operation: &'static str,
    ) -> Result<IdbObjectStore, StorageError> {
        tx.object_store(name).map_err(failed(operation))
    }

    /// Appends events in one transaction; resolves once it has committed.
    pub async fn append(&self, events: &[P2PEvent]) -> Result<(), StorageError> {
        let op = "append";
        let tx = self
            .db
            .transaction_with_str_and_mode(LOG, IdbTransactionMode::Readwrite)
            .map_err(failed(op))?;
        let bytes = Uint8Array::from(P2PEvent::encode_batch(events).as_slice());
        self.store(&tx, LOG, op)?.add(&bytes).map_err(failed(op))?;
        committed(&tx, op).await
    }

    /// Replaces everything persisted by `snapshot` (which covers the log).
    pub async fn write_snapshot(&self, snapshot: &[u8]) -> Result<(), StorageError> {
        let op = "snapshot write";
        let snapshot = if compress::available() {
            compress::gzip(snapshot).await.map_err(failed(op))?
        } else {
            snapshot.to_vec()
        };
        let stores = Array::of2(&LOG.into(), &SNAPSHOT.into());
        let tx = self
            .db
            .transaction_with_str_sequence_and_mode(&stores, IdbTransactionMode::Readwrite)
            .map_err(failed(op))?;
        self.store(&tx, LOG, op)?.clear().map_err(failed(op))?;
        let bytes = Uint8Array::from(snapshot.as_slice());
        self.store(&tx, SNAPSHOT, op)?
            .put_with_key(&bytes, &STATE_KEY.into())
            .map_err(failed(op))?;
        committed(&tx, op).await
    }

    /// Makes the node's persist requests durable, in one transaction, as
    /// [`Persist::commit`] plans them: the last snapshot (gzipped) replaces
    /// everything, and the records after it go as one. Resolves once the
    /// transaction has committed, with the snapshot as gzipped (the node
    /// offers it in that form too).
    pub async fn commit(&self, writes: &[Persist]) -> Result<Option<Vec<u8>>, StorageError> {
        let op = "commit";
        let commit = Persist::commit(writes);
        // Compressed before the transaction opens: it must not wait on
        // anything but its own requests.
        // A browser without `CompressionStream` (Firefox 89-112 run the
        // wasm) stores it raw, as a migration does: its magic bytes tell.
        let gzip = compress::available();
        let snapshot = match commit.snapshot {
            Some(bytes) if gzip => Some(compress::gzip(bytes).await.map_err(failed(op))?),
            Some(bytes) => Some(bytes.to_vec()),
            None => None,
        };
        let stores = Array::of2(&LOG.into(), &SNAPSHOT.into());
        let tx = self
            .db
            .transaction_with_str_sequence_and_mode(&stores, IdbTransactionMode::Readwrite)
            .map_err(failed(op))?;
        let identity = snapshot.as_ref().and(self.identity_to_save.get());
        if let Some(bytes) = &snapshot {
            self.store(&tx, LOG, op)?.clear().map_err(failed(op))?;
            let snapshots = self.store(&tx, SNAPSHOT, op)?;
            snapshots
                .put_with_key(&Uint8Array::from(bytes.as_slice()), &STATE_KEY.into())
                .map_err(failed(op))?;
            if let Some(secret) = identity {
                snapshots
                    .put_with_key(&Uint8Array::from(&secret[..]), &IDENTITY_KEY.into())
                    .map_err(failed(op))?;
            }
        }
        if let Some(record) = commit.record {
            let bytes = Uint8Array::from(record.as_slice());
            self.store(&tx, LOG, op)?.add(&bytes).map_err(failed(op))?;
        }
        committed(&tx, op).await?;
        if identity.is_some() {
            self.identity_to_save.set(None);
        }
        Ok(snapshot.filter(|_| gzip))
    }

    /// Reads the snapshot and the log after it.
    pub async fn load(&self) -> Result<Persisted, StorageError> {
        let op = "load";
        let stores = Array::of2(&LOG.into(), &SNAPSHOT.into());
        let tx = self
            .db
            .transaction_with_str_sequence(&stores)
            .map_err(failed(op))?;
        let snapshot = request(
            &self
                .store(&tx, SNAPSHOT, op)?
                .get(&STATE_KEY.into())
                .map_err(failed(op))?,
            op,
        )
        .await?;
        let records = request(
            &self.store(&tx, LOG, op)?.get_all().map_err(failed(op))?,
            op,
        )
        .await?;
        let identity = request(
            &self
                .store(&tx, SNAPSHOT, op)?
                .get(&IDENTITY_KEY.into())
                .map_err(failed(op))?,
            op,
        )
        .await?;
        let identity = identity
            .dyn_ref::<Uint8Array>()
            .and_then(|b| <[u8; 32]>::try_from(b.to_vec()).ok());
        self.identity.set(identity);
        let mut persisted = Persisted {
            damaged: self.migration_damaged.replace(0),
            identity,
            snapshot: match snapshot.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec) {
                Some(bytes) if compress::is_gzip(&bytes) => {
                    Some(compress::gunzip(&bytes).await.map_err(failed(op))?)
                }
                stored => stored,
            },
            ..Persisted::default()
        };
        for record in Array::from(&records).iter() {
            match record
                .dyn_ref::<Uint8Array>()
                .map(|b| P2PEvent::decode_batch(&b.to_vec()))
            {
                Some(Ok(events)) => persisted.events.extend(events),
                _ => persisted.damaged += 1,
            }
        }
        Ok(persisted)
    }

    /// Records the secret key of the identity this database belongs to.
    /// It is readable by the page's origin, like the data it signs.
    pub async fn save_identity(&self, secret: &[u8; 32]) -> Result<(), StorageError> {
        let op = "identity write";
        let tx = self
            .db
            .transaction_with_str_and_mode(SNAPSHOT, IdbTransactionMode::Readwrite)
            .map_err(failed(op))?;
        self.store(&tx, SNAPSHOT, op)?
            .put_with_key(&Uint8Array::from(&secret[..]), &IDENTITY_KEY.into())
            .map_err(failed(op))?;
        committed(&tx, op).await?;
        self.identity.set(Some(*secret));
        Ok(())
    }

    /// Puts raw bytes in the log, as a damaged record would be (for tests).
    #[doc(hidden)]
    pub async fn append_raw(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let tx = self
            .db
            .transaction_with_str_and_mode(LOG, IdbTransactionMode::Readwrite)
            .map_err(failed("append"))?;
        self.store(&tx, LOG, "append")?
            .add(&Uint8Array::from(bytes))
            .map_err(failed("append"))?;
        committed(&tx, "append").await
    }

    pub fn close(&self) {
        self.db.close();
    }
}

//! The room peer's identity: one Ed25519 key for the server, kept in
//! `DATA_DIR/identity.key`, so it is the same peer after a restart (its
//! sequence numbers go on from what it persisted; a new key would be a new
//! writer every time).

use std::io::Write;
use std::path::Path;

use cpc_sync::protocol::Identity;

pub fn load_or_create(data_dir: &Path) -> Result<Identity, String> {
    let path = data_dir.join("identity.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let secret: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| format!("{} is not a 32-byte key (damaged?)", path.display()))?;
            return Ok(Identity::from_secret(&secret));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness for a key: {e}"))?;
    // Written whole or not at all: a temporary file, synced, renamed.
    let temporary = data_dir.join("identity.key.new");
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(&secret)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Identity::from_secret(&secret))
}

//! The seal: init with admin public keys, quorum unseal, seal (DESIGN.md §2.3, docs/protocol.md §9).
//!
//! At init the root key is split with Shamir (threshold K of N admins; K = 1 gives each admin the
//! whole key) and each share is HPKE-sealed (mode_base) to one admin's X25519 key. The sealed
//! shares, a digest of each share and the public keys form the seal configuration, stored
//! outside the barrier (it is needed while sealed and holds no secret). The root key itself is
//! never stored and never shown.
//!
//! To unseal, each admin fetches their sealed share, opens it locally, and submits it sealed to
//! this boot's unseal key, bound to the current attempt nonce. Shares that do not open, are
//! stale, or do not match their digest are refused and not counted; an admin counts once. When K
//! shares are in, the root key is reconstructed, opens the keyring, and the core starts.

mod cluster;
mod rekey;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sigil_crypto::{
    BarrierKey, EncryptionKey, Envelope, KeyTerm, PublicIdentity, SealInfo, b64url_decode,
    b64url_encode, shamir,
};
use sigil_storage::{Backend, Batch};
use zeroize::Zeroizing;

use crate::audit::DeviceConfig;
use crate::{Core, CoreConfig, CoreError};
use sigil_engine::EngineKinds;

/// Where the seal configuration is stored (plaintext JSON, no secret in it).
pub(crate) use crate::barrier::SEAL_CONFIG_KEY;

/// An admin's entry in the seal configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminShare {
    /// Identity name given at init.
    pub name: String,
    /// `sigil1…`.
    pub public_key: String,
    /// The signing key's keyid.
    pub keyid: String,
    /// The share, HPKE-sealed (mode_base, `sigil/v1/share`) to the admin: base64url `enc`.
    pub enc: String,
    /// … and `ct`.
    pub ct: String,
    /// SHA-256 over a label, the keyid and the share: lets the server refuse a corrupted share
    /// before it is counted. Reveals nothing about the root key.
    pub share_digest: String,
}

/// The seal configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SealConfig {
    /// Shares needed to unseal.
    pub threshold: u8,
    /// One entry per admin.
    pub admins: Vec<AdminShare>,
    /// The server's public identity (`sigil1…`), served while sealed so clients can pin it.
    pub server_public_key: String,
}

pub use sigil_proto::sys::{InitResponse, SealStatus};

pub(crate) enum State {
    Uninitialized,
    Sealed(Arc<SealConfig>),
    Unsealed(Option<Arc<SealConfig>>, Arc<Core>),
}

/// Shares submitted this long ago without reaching the quorum are discarded (a half-finished
/// unseal does not wait forever for the rest).
pub(crate) const UNSEAL_ATTEMPT_TTL: std::time::Duration = std::time::Duration::from_secs(600);

pub(crate) struct Attempt {
    key: EncryptionKey,
    nonce: String,
    /// `(keyid, share)` accepted so far.
    shares: Vec<(String, Zeroizing<Vec<u8>>)>,
    /// When the first share was accepted.
    first: Option<std::time::Instant>,
}

impl Attempt {
    pub(crate) fn new() -> Result<Self, CoreError> {
        Ok(Attempt {
            key: EncryptionKey::generate().map_err(|_| CoreError::rng())?,
            nonce: sigil_crypto::random::nonce().map_err(|_| CoreError::rng())?,
            shares: Vec::new(),
            first: None,
        })
    }

    /// Starts over (a new unseal key and nonce) when its shares are older than `ttl`.
    fn expire(&mut self, ttl: std::time::Duration) -> Result<(), CoreError> {
        if self.first.is_some_and(|t| t.elapsed() >= ttl) {
            tracing::info!(
                discarded = self.shares.len(),
                "unseal progress reset: the quorum was not reached in time"
            );
            *self = Attempt::new()?;
        }
        Ok(())
    }
}

/// A server's seal state machine around its [`Core`].
pub struct Node {
    pub(crate) backend: Arc<dyn Backend>,
    /// Audit devices, started with the core at every unseal.
    audit: Vec<DeviceConfig>,
    /// The engine kinds, given to the core at every unseal.
    engines: EngineKinds,
    pub(crate) state: RwLock<State>,
    pub(crate) attempt: Mutex<Attempt>,
    /// How long an unfinished unseal keeps its shares ([`UNSEAL_ATTEMPT_TTL`]).
    pub(crate) unseal_ttl: std::time::Duration,
    pub(crate) rekey: Mutex<Option<rekey::Proposal>>,
    /// Why the node is sealed, when a fault sealed it or kept it sealed.
    fault: Mutex<Option<String>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("backend", &self.backend.kind())
            .finish_non_exhaustive()
    }
}

fn share_digest(keyid: &str, share: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"sigil/v1/share-digest\0");
    h.update(keyid.as_bytes());
    h.update([0]);
    h.update(share);
    b64url_encode(&h.finalize())
}

/// `{"share":"<base64url>"}`, the plaintext of an unseal submission.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareSubmission {
    share: String,
}

pub(crate) fn rng(_: sigil_crypto::CryptoError) -> CoreError {
    CoreError::rng()
}

/// Checks an admin set and threshold for init or rekey.
pub(crate) fn check_admins(
    admins: &[(String, PublicIdentity)],
    threshold: u8,
) -> Result<(), CoreError> {
    let n = u8::try_from(admins.len()).map_err(|_| CoreError::bad("at most 255 admins"))?;
    if n == 0 {
        return Err(CoreError::bad("at least one admin public key is required"));
    }
    if threshold == 0 || threshold > n {
        return Err(CoreError::bad(format!(
            "threshold must be between 1 and the number of admins ({n})"
        )));
    }
    for (i, (_, a)) in admins.iter().enumerate() {
        if admins[..i].iter().any(|(_, b)| b == a) {
            return Err(CoreError::bad("the same admin key is given twice"));
        }
    }
    Ok(())
}

/// Splits `root` among `admins` (`threshold` needed) and seals each share to its admin.
pub(crate) fn deal(
    root: &BarrierKey,
    admins: &[(String, PublicIdentity)],
    threshold: u8,
) -> Result<Vec<AdminShare>, CoreError> {
    let n = u8::try_from(admins.len()).map_err(|_| CoreError::bad("at most 255 admins"))?;
    let shares = shamir::split(root.expose_secret(), threshold, n).map_err(rng)?;
    let mut entries = Vec::with_capacity(admins.len());
    for ((name, public), share) in admins.iter().zip(&shares) {
        let keyid = public.keyid().to_string();
        let env = sigil_crypto::seal_base_to(public.encryption_key(), SealInfo::Share, b"", share)
            .map_err(|_| CoreError::bad("invalid admin encryption key"))?;
        entries.push(AdminShare {
            name: name.clone(),
            public_key: public.to_string(),
            share_digest: share_digest(&keyid, share),
            keyid,
            enc: b64url_encode(&env.enc),
            ct: b64url_encode(&env.ct),
        });
    }
    Ok(entries)
}

impl Node {
    /// A transient node: initialized and unsealed in memory with `config`'s admins. Its root
    /// key exists only inside the core; it cannot be sealed.
    pub fn transient(backend: Arc<dyn Backend>, config: CoreConfig) -> Result<Self, CoreError> {
        let audit = config.audit.clone();
        let engines = config.engines.clone();
        let core = Core::start_transient(Arc::clone(&backend), config)?;
        Ok(Node {
            backend,
            audit,
            engines,
            state: RwLock::new(State::Unsealed(None, Arc::new(core))),
            attempt: Mutex::new(Attempt::new()?),
            unseal_ttl: UNSEAL_ATTEMPT_TTL,
            rekey: Mutex::new(None),
            fault: Mutex::new(None),
        })
    }

    /// A node over persistent storage: uninitialized, or sealed. `audit` devices start at
    /// every unseal, and `engines` can be mounted.
    pub fn open(
        backend: Arc<dyn Backend>,
        audit: Vec<DeviceConfig>,
        engines: EngineKinds,
    ) -> Result<Self, CoreError> {
        let state = match backend.get(SEAL_CONFIG_KEY)? {
            None => State::Uninitialized,
            Some(bytes) => State::Sealed(Arc::new(
                serde_json::from_slice(&bytes).map_err(|_| CoreError::Integrity)?,
            )),
        };
        Ok(Node {
            backend,
            audit,
            engines,
            state: RwLock::new(state),
            attempt: Mutex::new(Attempt::new()?),
            unseal_ttl: UNSEAL_ATTEMPT_TTL,
            rekey: Mutex::new(None),
            fault: Mutex::new(None),
        })
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The core, when unsealed.
    pub fn core(&self) -> Option<Arc<Core>> {
        match &*self.state() {
            State::Unsealed(_, core) => Some(Arc::clone(core)),
            _ => None,
        }
    }

    /// Whether the node has been initialized.
    pub fn initialized(&self) -> bool {
        !matches!(&*self.state(), State::Uninitialized)
    }

    /// The storage backend kind.
    pub fn storage_kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// The end of a clean shutdown: a final signed checkpoint on every audit device, then
    /// the storage closed (the file backend checkpoints its log into its database). Requests
    /// that arrive afterwards fail; the process is expected to exit.
    pub fn close(&self) {
        if let Some(core) = self.core() {
            core.audit().close();
        }
        self.backend.close();
    }

    fn config(&self) -> Option<Arc<SealConfig>> {
        match &*self.state() {
            State::Sealed(c) | State::Unsealed(Some(c), _) => Some(Arc::clone(c)),
            _ => None,
        }
    }

    /// The server's public identity, if initialized (served sealed or not).
    pub fn server_key(&self) -> Option<PublicIdentity> {
        match &*self.state() {
            State::Uninitialized => None,
            State::Sealed(c) => PublicIdentity::parse(&c.server_public_key).ok(),
            State::Unsealed(_, core) => Some(core.server_identity().public()),
        }
    }

    /// The current seal status.
    pub fn status(&self) -> SealStatus {
        let mut attempt = self.attempt.lock().unwrap_or_else(|e| e.into_inner());
        // A failed random generator leaves the old attempt in place.
        let _ = attempt.expire(self.unseal_ttl);
        let (initialized, sealed, config, core) = match &*self.state() {
            State::Uninitialized => (false, true, None, None),
            State::Sealed(c) => (true, true, Some(Arc::clone(c)), None),
            State::Unsealed(c, core) => (true, false, c.clone(), Some(Arc::clone(core))),
        };
        let (threshold, admins, admin_names) = match (&config, &core) {
            (Some(c), _) => (
                c.threshold,
                c.admins.iter().map(|a| a.keyid.clone()).collect(),
                c.admins.iter().map(|a| a.name.clone()).collect(),
            ),
            (None, Some(core)) => (1, core.admin_keyids(), Vec::new()),
            (None, None) => (0, Vec::new(), Vec::new()),
        };
        let n = u8::try_from(admins.len()).unwrap_or(u8::MAX);
        SealStatus {
            kind: "shamir".into(),
            initialized,
            sealed,
            threshold,
            admins,
            admin_names,
            progress: u8::try_from(attempt.shares.len()).unwrap_or(u8::MAX),
            unseal_key: b64url_encode(&attempt.key.public()),
            attempt: attempt.nonce.clone(),
            t: threshold,
            n,
            storage_type: self.backend.kind().into(),
            version: env!("CARGO_PKG_VERSION").into(),
            storage_error: self.backend.failure(),
            sealed_because: self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Initializes an empty node: splits a new root key among `admins` (`threshold` needed),
    /// seals each share to its admin, stores everything, and stays sealed. Returns public
    /// values only.
    pub fn init(
        &self,
        admins: Vec<(String, PublicIdentity)>,
        threshold: u8,
    ) -> Result<InitResponse, CoreError> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if !matches!(*state, State::Uninitialized) {
            return Err(CoreError::bad("already initialized"));
        }
        check_admins(&admins, threshold)?;
        // Init writes several batches and the seal configuration last. Anything found here is
        // the leftover of an init that did not finish: without a seal configuration no share of
        // it was ever stored, so it can never be opened. Discard it.
        let leftovers = self.backend.list("")?;
        if !leftovers.is_empty() {
            tracing::warn!(
                entries = leftovers.len(),
                "discarding the leftovers of an interrupted init"
            );
            sigil_storage::delete_all(&*self.backend, &leftovers)?;
        }
        let root = BarrierKey::generate(KeyTerm(0)).map_err(rng)?;
        let entries = deal(&root, &admins, threshold)?;
        let n = entries.len();
        // Init does not start the audit devices: the core is dropped right away, sealed.
        let core = Core::create(
            Arc::clone(&self.backend),
            root,
            CoreConfig {
                admins,
                audit: Vec::new(),
                engines: self.engines.clone(),
            },
        )?;
        let server = core.server_identity().public();
        drop(core);
        let config = SealConfig {
            threshold,
            admins: entries,
            server_public_key: server.to_string(),
        };
        let bytes = serde_json::to_vec(&config).expect("seal config serializes");
        self.backend.apply(
            Batch::new()
                .expect(SEAL_CONFIG_KEY, None)
                .put(SEAL_CONFIG_KEY, bytes),
        )?;
        let response = InitResponse {
            server_key: server.to_string(),
            keyid: server.keyid().to_string(),
            admins: config.admins.iter().map(|a| a.keyid.clone()).collect(),
        };
        *state = State::Sealed(Arc::new(config));
        tracing::info!(
            admins = n,
            threshold,
            "initialized; sealed until a quorum of admins unseals"
        );
        Ok(response)
    }

    /// The admin with this keyid (unseal requests are authenticated against the seal
    /// configuration, not the identity store, which is behind the barrier).
    pub fn admin(&self, keyid: &str) -> Option<PublicIdentity> {
        let config = self.config()?;
        let entry = config.admins.iter().find(|a| a.keyid == keyid)?;
        PublicIdentity::parse(&entry.public_key).ok()
    }

    /// The admin's sealed share, `{"keyid","enc","ct"}`.
    pub fn sealed_share(&self, keyid: &str) -> Option<serde_json::Value> {
        let config = self.config()?;
        let a = config.admins.iter().find(|a| a.keyid == keyid)?;
        Some(serde_json::json!({ "keyid": a.keyid, "enc": a.enc, "ct": a.ct }))
    }

    /// Takes one admin's unseal submission (the opened-by-nobody envelope bytes). Returns the new
    /// status; unseals when the threshold is reached.
    pub fn submit_share(&self, keyid: &str, envelope: &[u8]) -> Result<SealStatus, CoreError> {
        // Lock order everywhere: rekey, then attempt, then state.
        let mut attempt = self.attempt.lock().unwrap_or_else(|e| e.into_inner());
        attempt.expire(self.unseal_ttl)?;
        let config = match &*self.state() {
            State::Sealed(c) => Arc::clone(c),
            State::Unsealed(..) => return Err(CoreError::bad("already unsealed")),
            State::Uninitialized => return Err(CoreError::bad("not initialized")),
        };
        let admin = config
            .admins
            .iter()
            .find(|a| a.keyid == keyid)
            .ok_or(CoreError::Forbidden)?;
        let admin_key =
            PublicIdentity::parse(&admin.public_key).map_err(|_| CoreError::Integrity)?;
        let env: serde_json::Value = serde_json::from_slice(envelope)
            .map_err(|_| CoreError::bad("unseal body is not a sealed envelope"))?;
        // `{"reset": true}` from an admin: the shares so far are discarded (Vault's `-reset`).
        if env.get("reset").and_then(serde_json::Value::as_bool) == Some(true) {
            *attempt = Attempt::new()?;
            tracing::info!(admin = keyid, "unseal progress reset by an admin");
            drop(attempt);
            return Ok(self.status());
        }
        let field = |name: &str| {
            env.get(name)
                .and_then(|v| v.as_str())
                .and_then(|s| b64url_decode(s).ok())
                .ok_or_else(|| CoreError::bad("unseal body is not a sealed envelope"))
        };
        let env = Envelope {
            enc: field("enc")?,
            ct: field("ct")?,
        };
        let plain = sigil_crypto::open_from(
            &attempt.key,
            admin_key.encryption_key(),
            SealInfo::Unseal,
            attempt.nonce.as_bytes(),
            &env,
        )
        .map_err(|_| {
            CoreError::bad("unseal submission does not open: it is for another attempt or unseal key (fetch sys/seal-status again)")
        })?;
        let submission: ShareSubmission = serde_json::from_slice(&plain)
            .map_err(|_| CoreError::bad("expected {\"share\":\"<base64url>\"}"))?;
        let encoded = Zeroizing::new(submission.share);
        let share = Zeroizing::new(
            b64url_decode(&encoded).map_err(|_| CoreError::bad("share is not base64url"))?,
        );
        let digest = share_digest(keyid, &share);
        if !sigil_crypto::ct_eq(digest.as_bytes(), admin.share_digest.as_bytes()) {
            return Err(CoreError::bad(
                "this share is not the one issued to this admin; not counted",
            ));
        }
        if !attempt.shares.iter().any(|(k, _)| k == keyid) {
            attempt.shares.push((keyid.to_owned(), share));
            attempt.first.get_or_insert_with(std::time::Instant::now);
        }
        if attempt.shares.len() >= usize::from(config.threshold) {
            let parts: Vec<&[u8]> = attempt.shares.iter().map(|(_, s)| &s[..]).collect();
            let root = shamir::combine(&parts).map_err(|_| CoreError::Integrity)?;
            let mut key = Zeroizing::new([0u8; 32]);
            if root.len() != 32 {
                return Err(CoreError::Integrity);
            }
            key.copy_from_slice(&root);
            *attempt = Attempt::new()?;
            let core = Core::open(
                Arc::clone(&self.backend),
                BarrierKey::from_secret(KeyTerm(0), key),
                &self.audit,
                self.engines.clone(),
            )
            .inspect_err(|e| self.record_fault(e))?;
            *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = None;
            *self.state.write().unwrap_or_else(|e| e.into_inner()) =
                State::Unsealed(Some(config), Arc::new(core));
            tracing::info!("unsealed");
        }
        drop(attempt);
        Ok(self.status())
    }

    /// Remembers why a fatal error keeps or makes the node sealed (`sys/seal-status` says it).
    fn record_fault(&self, e: &CoreError) {
        if let CoreError::Keyring(why) = e {
            tracing::error!(why, "the keyring does not decrypt: the node stays sealed");
            *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
        }
    }

    /// Seals because of `fault` (a keyring that no longer decrypts): as [`Node::seal`], and
    /// `sys/seal-status` says why until the next unseal. A transient node cannot be sealed;
    /// its fault is only logged and reported.
    pub fn seal_for_fault(&self, fault: &CoreError) -> Result<(), CoreError> {
        self.record_fault(fault);
        self.seal()
    }

    /// Seals: drops the core and every key in it; a quorum must unseal again.
    pub fn seal(&self) -> Result<(), CoreError> {
        // Lock order everywhere: rekey, then attempt, then state. An open rekey proposal does not
        // survive a seal.
        let mut rekey = self.rekey.lock().unwrap_or_else(|e| e.into_inner());
        let mut attempt = self.attempt.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let (config, core) = match &*state {
            State::Unsealed(Some(c), core) => (Arc::clone(c), Arc::clone(core)),
            State::Unsealed(None, _) => {
                return Err(CoreError::bad(
                    "a transient server cannot be sealed: its root key exists only in memory and would be lost",
                ));
            }
            _ => return Ok(()),
        };
        *attempt = Attempt::new()?;
        *state = State::Sealed(config);
        *rekey = None;
        drop((state, attempt, rekey));
        // The audit trail of this unseal ends with a signed checkpoint (outside the locks: a
        // device may take up to its timeout).
        core.audit().close();
        tracing::info!("sealed");
        Ok(())
    }
}

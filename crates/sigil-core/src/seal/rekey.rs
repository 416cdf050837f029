//! Rekey: change the admin set and/or the threshold (DESIGN.md §2.3).
//!
//! An admin proposes the new set; the proposal gets a nonce, a deadline and a digest over all of
//! it. A threshold of the *current* admins approve by signing a request that carries the
//! digest, each counted once. With the last approval a new root key is generated, the keyring
//! is re-wrapped under it and the new shares are sealed to the new admins, all in one atomic
//! write. The old shares then reconstruct a root key that opens nothing current.

use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use sigil_crypto::{BarrierKey, KeyTerm, PublicIdentity, b64url_encode};
use sigil_storage::Batch;

use super::{Attempt, Node, SEAL_CONFIG_KEY, SealConfig, State, check_admins, deal, rng};
use crate::CoreError;

/// The longest a proposal may stay open.
const MAX_TTL_SECS: i64 = 7 * 24 * 3600;

/// A pending rekey.
pub(crate) struct Proposal {
    nonce: String,
    deadline: i64,
    admins: Vec<(String, PublicIdentity)>,
    threshold: u8,
    digest: String,
    approvals: Vec<String>,
}

use sigil_proto::sys::RekeyStatus;

fn digest(
    nonce: &str,
    deadline: i64,
    admins: &[(String, PublicIdentity)],
    threshold: u8,
) -> String {
    let mut h = Sha256::new();
    h.update(b"sigil/v1/rekey\0");
    h.update(nonce.as_bytes());
    h.update(format!("\0{deadline}\0{threshold}").as_bytes());
    for (name, public) in admins {
        h.update(format!("\0{name}\0{public}").as_bytes());
    }
    b64url_encode(&h.finalize())
}

impl Node {
    pub(super) fn unsealed_config(&self) -> Result<(Arc<SealConfig>, Arc<crate::Core>), CoreError> {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Unsealed(Some(c), core) => Ok((Arc::clone(c), Arc::clone(core))),
            State::Unsealed(None, _) => Err(CoreError::bad(
                "a transient server has no unseal shares to rekey",
            )),
            _ => Err(CoreError::bad("rekey needs an unsealed server")),
        }
    }

    fn required(&self) -> u8 {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Sealed(c) | State::Unsealed(Some(c), _) => c.threshold,
            _ => 0,
        }
    }

    fn view(&self, p: &Proposal, complete: bool) -> RekeyStatus {
        RekeyStatus {
            started: !complete,
            nonce: p.nonce.clone(),
            deadline: p.deadline,
            digest: p.digest.clone(),
            admins: p.admins.iter().map(|(_, k)| k.to_string()).collect(),
            names: p.admins.iter().map(|(n, _)| n.clone()).collect(),
            threshold: p.threshold,
            approvals: p.approvals.clone(),
            required: self.required(),
            complete,
        }
    }

    /// The open proposal, if any (an expired one is dropped).
    pub fn rekey_status(&self, now: i64) -> RekeyStatus {
        let mut rekey = self.rekey.lock().unwrap_or_else(|e| e.into_inner());
        if rekey.as_ref().is_some_and(|p| now > p.deadline) {
            *rekey = None;
        }
        match rekey.as_ref() {
            Some(p) => self.view(p, false),
            None => RekeyStatus {
                started: false,
                nonce: String::new(),
                deadline: 0,
                digest: String::new(),
                admins: vec![],
                names: vec![],
                threshold: 0,
                approvals: vec![],
                required: self.required(),
                complete: false,
            },
        }
    }

    /// Opens a proposal (replacing any open one) for `admins` with `threshold`, open for
    /// `ttl_secs`.
    pub fn rekey_start(
        &self,
        admins: Vec<(String, PublicIdentity)>,
        threshold: u8,
        ttl_secs: i64,
        now: i64,
    ) -> Result<RekeyStatus, CoreError> {
        self.unsealed_config()?;
        check_admins(&admins, threshold)?;
        if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
            return Err(CoreError::bad(format!(
                "ttl_seconds must be between 1 and {MAX_TTL_SECS}"
            )));
        }
        let nonce = sigil_crypto::random::nonce().map_err(rng)?;
        let deadline = now + ttl_secs;
        let proposal = Proposal {
            digest: digest(&nonce, deadline, &admins, threshold),
            nonce,
            deadline,
            admins,
            threshold,
            approvals: Vec::new(),
        };
        let status = self.view(&proposal, false);
        *self.rekey.lock().unwrap_or_else(|e| e.into_inner()) = Some(proposal);
        tracing::info!(digest = status.digest, "rekey proposed");
        Ok(status)
    }

    /// Drops the open proposal.
    pub fn rekey_cancel(&self) {
        *self.rekey.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Records current admin `keyid`'s approval of the proposal with `digest`. With the last
    /// approval needed, carries out the rekey.
    pub fn rekey_approve(
        &self,
        keyid: &str,
        digest: &str,
        now: i64,
    ) -> Result<RekeyStatus, CoreError> {
        // Lock order everywhere: rekey, then attempt, then state.
        let mut rekey = self.rekey.lock().unwrap_or_else(|e| e.into_inner());
        let (config, _) = self.unsealed_config()?;
        if !config.admins.iter().any(|a| a.keyid == keyid) {
            return Err(CoreError::Forbidden);
        }
        let Some(p) = rekey.as_mut() else {
            return Err(CoreError::bad("no rekey is in progress"));
        };
        if now > p.deadline {
            *rekey = None;
            return Err(CoreError::bad(
                "the rekey proposal has expired; start a new one",
            ));
        }
        if !sigil_crypto::ct_eq(digest.as_bytes(), p.digest.as_bytes()) {
            return Err(CoreError::bad(
                "digest does not match the open proposal; fetch sys/rekey and check it again",
            ));
        }
        if !p.approvals.iter().any(|k| k == keyid) {
            p.approvals.push(keyid.to_owned());
        }
        if p.approvals.len() < usize::from(config.threshold) {
            return Ok(self.view(p, false));
        }

        // Carry it out under the state lock, so a concurrent seal either happens before (and
        // this fails) or after (and seals the rekeyed server).
        let mut attempt = self.attempt.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let State::Unsealed(Some(config), core) = &*state else {
            return Err(CoreError::bad(
                "the server was sealed; the rekey did not happen",
            ));
        };
        let core = Arc::clone(core);
        let new_root = BarrierKey::generate(KeyTerm(0)).map_err(rng)?;
        let entries = deal(&new_root, &p.admins, p.threshold)?;
        let new_config = SealConfig {
            threshold: p.threshold,
            admins: entries,
            server_public_key: config.server_public_key.clone(),
        };
        let old = self.backend.get(SEAL_CONFIG_KEY)?;
        let bytes = serde_json::to_vec(&new_config).expect("seal config serializes");
        core.barrier().replace_root(
            new_root,
            Batch::new()
                .expect(SEAL_CONFIG_KEY, old)
                .put(SEAL_CONFIG_KEY, bytes),
        )?;
        *state = State::Unsealed(Some(Arc::new(new_config)), Arc::clone(&core));
        *attempt = Attempt::new()?;
        drop(state);
        drop(attempt);
        // New admins get identities with the admin policy, as at init. The rekey has already
        // happened: a clash (the name taken by another key) is logged, not undone.
        for (name, public) in &p.admins {
            if let Err(e) = core.ensure_admin(name, public) {
                tracing::warn!(name, error = %e, "rekey: could not create an identity for a new admin");
            }
        }
        let done = self.view(p, true);
        *rekey = None;
        tracing::info!(
            admins = done.admins.len(),
            threshold = done.threshold,
            "rekeyed: new root key; old shares no longer open the current keyring"
        );
        Ok(done)
    }
}

//! Restoring a snapshot into the cluster's storage. Into a new, uninitialized cluster anyone
//! may (as anyone may init it). Over a running cluster it rewrites everything, so a sudo
//! identity stages it and it runs only when a threshold of the seal admins approve it, each
//! signing its digest (as a rekey). Only a snapshot of this cluster (signed by its server key)
//! whose keyring the current root key opens (no rekey since) qualifies. The staged restore
//! lives on the leader until it runs, is cancelled or expires, or leadership moves. A
//! snapshot waits in a private spool (spool.rs), checked as a file, and is written from it in
//! batches: never whole in memory.

use std::sync::Mutex;

use http::StatusCode;
use sha2::{Digest as _, Sha256};
use sigil_core::Node;
use sigil_core::snapshot::{Header, SnapshotError};
use sigil_proto::raft::RestoreStatus;
use sigil_storage::Backend as _;

use crate::error::ApiError;
use crate::node::EntryWriter;
use crate::spool::Spool;
use sigil_raft::ClusterNode;

/// A snapshot received for a restore and checked: its header, the entries that say whether
/// the current root key opens it, and the spool it is written from.
pub(crate) struct Spooled {
    pub(crate) header: Header,
    /// Its keyring and key-usage record.
    pub(crate) keyring: Vec<(String, Vec<u8>)>,
    /// Its largest entry's key and value bytes.
    largest: usize,
    spool: Spool,
}

impl Spooled {
    /// Checks the snapshot in `spool` (format, checksum, signature; the signer when `pinned`)
    /// as it reads it, keeping only its keyring entries.
    pub(crate) fn check(mut spool: Spool, pinned: Option<&str>) -> Result<Self, SnapshotError> {
        let io = |e: std::io::Error| SnapshotError(format!("the spooled snapshot: {e}"));
        spool.rewind().map_err(io)?;
        let keep = [
            sigil_engine::barrier::KEYRING_KEY,
            sigil_engine::key_usage::USAGE_KEY,
        ];
        let mut keyring = Vec::new();
        let mut largest = 0;
        let header = sigil_core::snapshot::read_from(
            std::io::BufReader::new(&mut spool),
            pinned,
            &mut |k, v| {
                if keep.contains(&k) {
                    keyring.push((k.to_owned(), v.to_vec()));
                }
                largest = largest.max(k.len() + v.len());
                Ok(())
            },
        )?;
        Ok(Spooled {
            header,
            keyring,
            largest,
            spool,
        })
    }

    /// Refuses (413) a snapshot with an entry larger than one Raft entry of `raft` may carry,
    /// before anything is written.
    pub(crate) fn fits(&self, raft: &ClusterNode) -> Result<(), ApiError> {
        use sigil_storage::Backend as _;
        let max = raft.max_batch_bytes();
        if self.largest > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the snapshot holds an entry of {} bytes, more than one Raft entry of this cluster may carry ({max}): raise [storage] max_entry_size on every node and restore again",
                    self.largest
                ),
            ));
        }
        Ok(())
    }

    /// Writes every entry through `out` (read from the spool a second time: it was checked
    /// and nobody else can open it) and finishes it.
    fn write_into(mut self, mut out: EntryWriter<'_>) -> Result<(), ApiError> {
        let failed = |e: &dyn std::fmt::Display| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the restore stopped midway ({e}); run it again"),
            )
        };
        self.spool.rewind().map_err(|e| failed(&e))?;
        sigil_core::snapshot::read_from(
            std::io::BufReader::new(&mut self.spool),
            None,
            &mut |k, v| out.add(k, v).map_err(|e| SnapshotError(e.to_string())),
        )
        .map_err(|e| failed(&e))?;
        out.finish().map_err(|e| failed(&e))
    }
}

/// How long a staged restore waits for its approvals.
const TTL_SECS: i64 = 3600;

/// Storage keys a restore over a running cluster keeps: the replay marks of requests carried
/// out since the snapshot (they stay refused).
const KEPT: &str = sigil_engine::replay::PREFIX;

struct Staged {
    digest: String,
    deadline: i64,
    snapshot: Spooled,
    approvals: Vec<String>,
}

/// The restore staged on this leader, if any.
#[derive(Default)]
pub(crate) struct Restores(Mutex<Option<Staged>>);

impl Staged {
    fn status(&self, required: u8, complete: bool) -> RestoreStatus {
        let h = &self.snapshot.header;
        RestoreStatus {
            staged: !complete,
            digest: self.digest.clone(),
            deadline: self.deadline,
            entries: h.entries,
            created: h.created.clone(),
            keyring_term: h.keyring_term,
            approvals: self.approvals.clone(),
            required,
            complete,
        }
    }
}

impl Restores {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Staged>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stages `snapshot` (checked by the caller), replacing a staged one.
    pub(crate) fn stage(
        &self,
        snapshot: Spooled,
        required: u8,
        now: i64,
    ) -> Result<RestoreStatus, ApiError> {
        let nonce = sigil_crypto::random::nonce()
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no randomness"))?;
        let deadline = now + TTL_SECS;
        let mut h = Sha256::new();
        h.update(b"sigil/v1/restore\0");
        h.update(nonce.as_bytes());
        h.update(format!("\0{deadline}\0").as_bytes());
        h.update(snapshot.header.body_sha256.as_bytes());
        let staged = Staged {
            digest: sigil_crypto::b64url_encode(&h.finalize()),
            deadline,
            snapshot,
            approvals: Vec::new(),
        };
        let status = staged.status(required, false);
        *self.lock() = Some(staged);
        Ok(status)
    }

    /// The staged restore (an expired one is dropped).
    pub(crate) fn status(&self, required: u8, now: i64) -> RestoreStatus {
        let mut staged = self.lock();
        if staged.as_ref().is_some_and(|s| now > s.deadline) {
            *staged = None;
        }
        staged.as_ref().map_or_else(
            || RestoreStatus {
                required,
                ..RestoreStatus::default()
            },
            |s| s.status(required, false),
        )
    }

    /// Drops the staged restore.
    pub(crate) fn cancel(&self) {
        *self.lock() = None;
    }

    /// Counts seal admin `keyid`'s approval of `digest` (once); with the `required`th, hands
    /// the snapshot over to be written.
    pub(crate) fn approve(
        &self,
        keyid: &str,
        digest: &str,
        required: u8,
        now: i64,
    ) -> Result<(RestoreStatus, Option<Spooled>), ApiError> {
        let mut staged = self.lock();
        let Some(s) = staged.as_mut() else {
            return Err(ApiError::bad_request("no restore is staged"));
        };
        if now > s.deadline {
            *staged = None;
            return Err(ApiError::bad_request(
                "the staged restore has expired; stage it again",
            ));
        }
        if !sigil_crypto::ct_eq(digest.as_bytes(), s.digest.as_bytes()) {
            return Err(ApiError::bad_request(
                "digest does not match the staged restore; read sys/storage/raft/snapshot/restore and check it again",
            ));
        }
        if !s.approvals.iter().any(|k| k == keyid) {
            s.approvals.push(keyid.to_owned());
        }
        if s.approvals.len() < usize::from(required) {
            return Ok((s.status(required, false), None));
        }
        let done = staged.take().expect("checked above");
        let status = done.status(required, true);
        Ok((status, Some(done.snapshot)))
    }
}

/// Replaces everything in the cluster's storage (but the keys starting with `kept`) by the
/// snapshot's entries, through Raft, the seal configuration last. Not atomic: a leader that
/// dies midway leaves part of it written; run the restore again.
fn replace_storage(
    raft: &ClusterNode,
    snapshot: Spooled,
    kept: Option<&str>,
) -> Result<(), ApiError> {
    let unavailable = |e: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e);
    if !raft.is_leader() {
        return Err(unavailable("this node does not lead its cluster".into()));
    }
    snapshot.fits(raft)?;
    let leftovers: Vec<String> = raft
        .list("")
        .map_err(|e| unavailable(e.to_string()))?
        .into_iter()
        .filter(|k| !kept.is_some_and(|p| k.starts_with(p)))
        .collect();
    sigil_storage::delete_all(raft, &leftovers).map_err(|e| unavailable(e.to_string()))?;
    snapshot.write_into(EntryWriter::new(raft))
}

/// Writes a snapshot into a new cluster: sealed afterwards with the snapshot's admins.
pub(crate) fn into_empty(
    raft: &ClusterNode,
    node: &Node,
    snapshot: Spooled,
) -> Result<(), ApiError> {
    if node.initialized() {
        return Err(ApiError::bad_request(
            "the cluster is initialized: a restore over its data is staged by a sudo identity and approved by its seal admins",
        ));
    }
    replace_storage(raft, snapshot, None)?;
    node.refresh().map_err(ApiError::from)?;
    Ok(())
}

/// Writes an approved snapshot over the running cluster, keeping the replay marks, and starts
/// this leader's core again from it. The keyring then gets a new term, so that nothing
/// encrypted from now on counts on the restored (older) usage record.
pub(crate) fn over_running(
    raft: &ClusterNode,
    node: &Node,
    snapshot: Spooled,
) -> Result<(), ApiError> {
    node.opens(&snapshot.keyring).map_err(ApiError::from)?;
    replace_storage(raft, snapshot, Some(KEPT))?;
    node.reopen().map_err(ApiError::from)?;
    let core = node.core().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the restored keyring did not open: the node is sealed",
        )
    })?;
    core.barrier().rotate().map_err(ApiError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Spooled {
        let server = sigil_crypto::SecretIdentity::generate().unwrap();
        let entries = vec![("k".to_owned(), b"v".to_vec())];
        let bytes = sigil_core::snapshot::encode(
            &entries,
            "raft",
            1,
            "2026-12-06T00:00:00Z".into(),
            &server,
        );
        let mut spool = Spool::new(None).unwrap();
        std::io::Write::write_all(&mut spool, &bytes).unwrap();
        let spooled = Spooled::check(spool, Some(&server.public().to_string())).unwrap();
        assert_eq!(spooled.header.entries, 1);
        spooled
    }

    /// A spooled snapshot is checked as a file: another signer, or a byte changed, refused.
    #[test]
    fn a_spooled_snapshot_is_checked_before_it_is_kept() {
        let server = sigil_crypto::SecretIdentity::generate().unwrap();
        let other = sigil_crypto::SecretIdentity::generate().unwrap();
        let entries = vec![
            (
                sigil_engine::barrier::KEYRING_KEY.to_owned(),
                b"ring".to_vec(),
            ),
            ("secret/x".to_owned(), b"x".to_vec()),
        ];
        let bytes = sigil_core::snapshot::encode(
            &entries,
            "raft",
            1,
            "2026-12-06T00:00:00Z".into(),
            &server,
        );
        let spooled = |bytes: &[u8], pinned: &str| {
            let mut spool = Spool::new(None).unwrap();
            std::io::Write::write_all(&mut spool, bytes).unwrap();
            Spooled::check(spool, Some(pinned))
        };
        let ok = spooled(&bytes, &server.public().to_string()).unwrap();
        assert_eq!(
            ok.keyring,
            vec![entries[0].clone()],
            "only the keyring is kept"
        );
        assert!(spooled(&bytes, &other.public().to_string()).is_err());
        let mut changed = bytes;
        *changed.last_mut().unwrap() ^= 1;
        assert!(spooled(&changed, &server.public().to_string()).is_err());
    }

    #[test]
    fn a_staged_restore_runs_on_the_last_approval_of_its_digest_only() {
        let restores = Restores::default();
        let now = 1_000;
        let staged = restores.stage(snapshot(), 2, now).unwrap();
        assert!(staged.staged && staged.approvals.is_empty() && staged.required == 2);
        // A wrong digest counts for nothing.
        assert!(restores.approve("a", "other", 2, now).is_err());
        // One admin, twice: still one approval.
        for _ in 0..2 {
            let (status, ready) = restores.approve("a", &staged.digest, 2, now).unwrap();
            assert!(ready.is_none());
            assert_eq!(status.approvals, vec!["a".to_owned()]);
        }
        let (status, ready) = restores.approve("b", &staged.digest, 2, now).unwrap();
        assert!(status.complete && !status.staged);
        assert_eq!(ready.unwrap().header.entries, 1);
        // Used: nothing is staged any more.
        assert!(!restores.status(2, now).staged);
        assert!(restores.approve("c", &staged.digest, 2, now).is_err());
    }

    #[test]
    fn a_staged_restore_expires_and_can_be_cancelled() {
        let restores = Restores::default();
        let staged = restores.stage(snapshot(), 1, 0).unwrap();
        assert!(
            restores
                .approve("a", &staged.digest, 1, TTL_SECS + 1)
                .is_err()
        );
        assert!(!restores.status(1, 0).staged);
        let again = restores.stage(snapshot(), 1, 0).unwrap();
        assert_ne!(
            again.digest, staged.digest,
            "each staging has its own digest"
        );
        restores.cancel();
        assert!(restores.approve("a", &again.digest, 1, 0).is_err());
    }
}

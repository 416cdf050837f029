//! The node's life: init, unseal by a quorum of admins, seal, rekey — driven as the API
//! drives it, with shares opened and sealed as an admin's client does (docs/protocol.md §9).

use std::sync::Arc;

use sigil_crypto::{SealInfo, SecretIdentity};
use sigil_storage::MemoryBackend;

use super::*;
use crate::core::test_engines;

fn node() -> Node {
    Node::open(Arc::new(MemoryBackend::new()), Vec::new(), test_engines()).unwrap()
}

fn admins(keys: &[&SecretIdentity]) -> Vec<(String, PublicIdentity)> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| (format!("admin-{i}"), k.public()))
        .collect()
}

/// What `sigil operator unseal` does for `admin`: open its share, seal it to this boot's
/// unseal key for the current attempt, submit it.
fn unseal_as(node: &Node, admin: &SecretIdentity) -> Result<SealStatus, CoreError> {
    let keyid = admin.public().keyid().to_string();
    let status = node.status();
    let share = node.sealed_share(&keyid).ok_or(CoreError::Forbidden)?;
    let part = |name: &str| sigil_crypto::b64url_decode(share[name].as_str().unwrap()).unwrap();
    let envelope = sigil_crypto::Envelope {
        enc: part("enc"),
        ct: part("ct"),
    };
    let opened =
        sigil_crypto::open_base(admin.encryption_key(), SealInfo::Share, b"", &envelope).unwrap();
    let unseal_key: [u8; 32] = sigil_crypto::b64url_decode(&status.unseal_key)
        .unwrap()
        .try_into()
        .unwrap();
    let submission =
        serde_json::to_vec(&serde_json::json!({ "share": sigil_crypto::b64url_encode(&opened) }))
            .unwrap();
    let sealed = sigil_crypto::seal_to(
        admin.encryption_key(),
        &unseal_key,
        SealInfo::Unseal,
        status.attempt.as_bytes(),
        &submission,
    )
    .unwrap();
    let body = serde_json::to_vec(&serde_json::json!({
        "enc": sigil_crypto::b64url_encode(&sealed.enc),
        "ct": sigil_crypto::b64url_encode(&sealed.ct),
    }))
    .unwrap();
    node.submit_share(&keyid, &body)
}

/// A node with admins `a` and `b` (both needed), unsealed; `d` is no admin.
fn unsealed_by_two() -> (Node, SecretIdentity, SecretIdentity, SecretIdentity) {
    let (a, b, d) = (
        SecretIdentity::generate().unwrap(),
        SecretIdentity::generate().unwrap(),
        SecretIdentity::generate().unwrap(),
    );
    let node = node();
    node.init(admins(&[&a, &b]), 2).unwrap();
    unseal_as(&node, &a).unwrap();
    unseal_as(&node, &b).unwrap();
    (node, a, b, d)
}

#[test]
fn a_quorum_unseals_and_data_outlives_a_seal() {
    let (a, b, c) = (
        SecretIdentity::generate().unwrap(),
        SecretIdentity::generate().unwrap(),
        SecretIdentity::generate().unwrap(),
    );
    let node = node();
    assert!(!node.initialized());
    let init = node.init(admins(&[&a, &b, &c]), 2).unwrap();
    assert_eq!(init.admins.len(), 3);
    assert!(node.status().sealed);
    assert!(node.init(admins(&[&a]), 1).is_err(), "initialized once");
    // One share is progress, not an unseal; the same admin twice does not count twice.
    assert_eq!(unseal_as(&node, &a).unwrap().progress, 1);
    let again = unseal_as(&node, &a);
    assert!(again.is_err() || again.unwrap().progress == 1);
    // A stranger has no share.
    let stranger = SecretIdentity::generate().unwrap();
    assert!(matches!(
        unseal_as(&node, &stranger),
        Err(CoreError::Forbidden)
    ));
    let status = unseal_as(&node, &c).unwrap();
    assert!(!status.sealed, "two of three");
    let core = node.core().unwrap();
    assert_eq!(core.server_identity().public().to_string(), init.server_key);
    let admin = core.caller(a.public().keyid().as_str()).unwrap();
    let data = Some(serde_json::json!({ "data": { "v": "kept" } }));
    core.handle(
        &admin,
        crate::Request {
            operation: crate::Operation::Update,
            path: "secret/data/app".into(),
            data,
            query: vec![],
        },
    )
    .unwrap();
    drop(core);
    node.seal().unwrap();
    assert!(node.status().sealed && node.core().is_none());
    unseal_as(&node, &b).unwrap();
    unseal_as(&node, &c).unwrap();
    let core = node.core().unwrap();
    let admin = core.caller(b.public().keyid().as_str()).unwrap();
    let read = core
        .handle(
            &admin,
            crate::Request {
                operation: crate::Operation::Read,
                path: "secret/data/app".into(),
                data: None,
                query: vec![],
            },
        )
        .unwrap();
    assert_eq!(read.data.unwrap()["data"]["v"], "kept");
}

#[test]
fn a_rekey_needs_the_current_quorum_and_retires_old_shares() {
    let (node, a, b, d) = unsealed_by_two();
    let now = 1_000_000;
    let proposal = node.rekey_start(admins(&[&d]), 1, 600, now).unwrap();
    assert!(proposal.started && proposal.required == 2);
    let a_id = a.public().keyid().to_string();
    let b_id = b.public().keyid().to_string();
    // A wrong digest, a non-admin, a late approval: refused, nothing counted.
    assert!(node.rekey_approve(&a_id, "wrong", now).is_err());
    assert!(matches!(
        node.rekey_approve(d.public().keyid().as_str(), &proposal.digest, now),
        Err(CoreError::Forbidden)
    ));
    let first = node.rekey_approve(&a_id, &proposal.digest, now).unwrap();
    assert_eq!(first.approvals, [a_id]);
    assert!(!first.complete);
    let done = node.rekey_approve(&b_id, &proposal.digest, now).unwrap();
    assert!(done.complete);
    assert!(!node.rekey_status(now).started, "no proposal left");
    // After a seal, the old admins have no share; the new one alone unseals.
    node.seal().unwrap();
    assert!(matches!(unseal_as(&node, &a), Err(CoreError::Forbidden)));
    assert!(!unseal_as(&node, &d).unwrap().sealed);
}

#[test]
fn an_expired_rekey_proposal_is_gone() {
    let a = SecretIdentity::generate().unwrap();
    let node = node();
    node.init(admins(&[&a]), 1).unwrap();
    unseal_as(&node, &a).unwrap();
    let p = node.rekey_start(admins(&[&a]), 1, 60, 100).unwrap();
    let late = node.rekey_approve(a.public().keyid().as_str(), &p.digest, 161);
    assert!(late.is_err());
    assert!(!node.rekey_status(161).started);
}

/// Finding 6 of the security review: unseal progress never reset.
#[test]
fn an_unfinished_unseal_starts_over_after_its_time() {
    let mut attempt = Attempt::new().unwrap();
    attempt.expire(UNSEAL_ATTEMPT_TTL).unwrap();
    let nonce = attempt.nonce.clone();
    attempt
        .shares
        .push(("admin".into(), Zeroizing::new(vec![1, 2, 3])));
    attempt.first = Some(std::time::Instant::now());
    attempt.expire(UNSEAL_ATTEMPT_TTL).unwrap();
    assert_eq!(attempt.shares.len(), 1, "not yet");
    assert_eq!(attempt.nonce, nonce);
    attempt.first = std::time::Instant::now().checked_sub(UNSEAL_ATTEMPT_TTL);
    attempt.expire(UNSEAL_ATTEMPT_TTL).unwrap();
    assert!(attempt.shares.is_empty());
    assert_ne!(
        attempt.nonce, nonce,
        "a new attempt: old submissions do not open"
    );
}

#[test]
fn a_keyring_that_does_not_decrypt_keeps_the_node_sealed_and_says_why() {
    let a = SecretIdentity::generate().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let node = Node::open(backend.clone(), Vec::new(), test_engines()).unwrap();
    node.init(admins(&[&a]), 1).unwrap();
    // The stored keyring is damaged (one byte of its ciphertext flipped).
    let key = sigil_engine::barrier::KEYRING_KEY;
    let mut wrapped = backend.get(key).unwrap().unwrap();
    let last = wrapped.len() - 1;
    wrapped[last] ^= 1;
    backend
        .apply(sigil_storage::Batch::new().put(key, wrapped.clone()))
        .unwrap();
    let err = unseal_as(&node, &a).unwrap_err();
    assert!(matches!(err, CoreError::Keyring(_)), "{err}");
    assert_eq!(err.severity(), crate::Severity::Fatal);
    let status = node.status();
    assert!(status.sealed);
    let why = status.sealed_because.expect("the status says why");
    assert!(why.contains("does not decrypt"), "{why}");
    // Repaired, the same admin unseals and the reason is gone.
    wrapped[last] ^= 1;
    backend
        .apply(sigil_storage::Batch::new().put(key, wrapped))
        .unwrap();
    assert!(!unseal_as(&node, &a).unwrap().sealed);
    assert_eq!(node.status().sealed_because, None);
    // A running node told of a keyring fault seals and says why.
    node.seal_for_fault(&CoreError::Keyring("a test fault"))
        .unwrap();
    let status = node.status();
    assert!(status.sealed && status.sealed_because.unwrap().contains("a test fault"));
    assert!(node.core().is_none());
}

#[test]
fn only_seal_admins_count_and_a_keyring_from_before_a_rekey_does_not_open() {
    let (node, a, b, d) = unsealed_by_two();
    assert_eq!(node.admin_quorum(a.public().keyid().as_str()).unwrap(), 2);
    assert!(matches!(
        node.admin_quorum(d.public().keyid().as_str()),
        Err(CoreError::Forbidden)
    ));
    // The storage as a snapshot would hold it: its keyring opens with the root key now...
    let snapshot: Vec<(String, Vec<u8>)> = node
        .backend
        .list("")
        .unwrap()
        .into_iter()
        .map(|k| {
            let v = node.backend.get(&k).unwrap().unwrap();
            (k, v)
        })
        .collect();
    node.opens(&snapshot).unwrap();
    assert!(node.opens(&[]).is_err(), "no keyring, nothing opens");
    // ...and no longer after a rekey (a new root key).
    let now = 1_000_000;
    let p = node.rekey_start(admins(&[&d]), 1, 600, now).unwrap();
    node.rekey_approve(a.public().keyid().as_str(), &p.digest, now)
        .unwrap();
    node.rekey_approve(b.public().keyid().as_str(), &p.digest, now)
        .unwrap();
    assert!(matches!(node.opens(&snapshot), Err(CoreError::Keyring(_))));
}

//! The seal in a cluster: a node that joined finds the seal configuration once replication
//! brings it, is unsealed with the root key the leader sealed to it, and starts its core
//! afresh from storage when it becomes the leader.

use std::sync::Arc;

use sigil_crypto::BarrierKey;

use super::{Node, SEAL_CONFIG_KEY, SealConfig, State};
use crate::{Core, CoreError};

fn read_config(node: &Node) -> Result<Option<SealConfig>, CoreError> {
    match node.backend.get(SEAL_CONFIG_KEY)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| CoreError::Integrity),
    }
}

impl Node {
    /// An uninitialized node whose storage now holds a seal configuration (replicated from
    /// the cluster it joined) becomes sealed; `true` when it changed.
    pub fn refresh(&self) -> Result<bool, CoreError> {
        if !matches!(&*self.state(), State::Uninitialized) {
            return Ok(false);
        }
        let Some(config) = read_config(self)? else {
            return Ok(false);
        };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if !matches!(*state, State::Uninitialized) {
            return Ok(false);
        }
        *state = State::Sealed(Arc::new(config));
        tracing::info!("the cluster's seal configuration arrived: initialized, sealed");
        Ok(true)
    }

    /// A copy of the root key, while unsealed: what the leader seals to a node an admin
    /// admitted to the cluster.
    pub fn root_key(&self) -> Option<BarrierKey> {
        self.core().map(|core| core.barrier().root_copy())
    }

    /// Unseals with the root key itself: a node admitted to a cluster receives it sealed to
    /// its join key instead of shares. A key that does not open the keyring leaves the node
    /// sealed ([`CoreError::Keyring`]).
    pub fn unseal_with_root(&self, root: BarrierKey) -> Result<(), CoreError> {
        self.refresh()?;
        let config = match &*self.state() {
            State::Sealed(c) => Arc::clone(c),
            State::Unsealed(..) => return Ok(()),
            State::Uninitialized => {
                return Err(CoreError::Unavailable(
                    "the cluster's seal configuration has not reached this node yet".into(),
                ));
            }
        };
        let core = Core::open(
            Arc::clone(&self.backend),
            root,
            &self.audit,
            self.engines.clone(),
        )
        .inspect_err(|e| self.record_fault(e))?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) =
            State::Unsealed(Some(config), Arc::new(core));
        tracing::info!("unsealed by the cluster");
        Ok(())
    }

    /// Takes the root key a rekey made on the cluster's leader (it must open the stored
    /// keyring), with the new seal configuration. A sealed node ignores it: its admins unseal
    /// it with their new shares.
    pub fn adopt_root(&self, root: BarrierKey) -> Result<(), CoreError> {
        let Some(core) = self.core() else {
            return Ok(());
        };
        core.barrier().adopt_root(root)?;
        let config = read_config(self)?.map(Arc::new);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let State::Unsealed(c, _) = &mut *state
            && config.is_some()
        {
            *c = config;
        }
        tracing::info!("took the root key of the cluster's rekey");
        Ok(())
    }

    /// How many seal admins must approve what needs their quorum (a restore over the running
    /// cluster), if `keyid` is one of them ([`CoreError::Forbidden`] if not).
    pub fn admin_quorum(&self, keyid: &str) -> Result<u8, CoreError> {
        let (config, _) = self.unsealed_config()?;
        if !config.admins.iter().any(|a| a.keyid == keyid) {
            return Err(CoreError::Forbidden);
        }
        Ok(config.threshold)
    }

    /// Whether the keyring in `entries` (a snapshot's) opens with this node's root key. One
    /// taken before a rekey does not: restoring it over the running cluster would leave every
    /// member with a root key that opens nothing.
    pub fn opens(&self, entries: &[(String, Vec<u8>)]) -> Result<(), CoreError> {
        let root = self
            .root_key()
            .ok_or_else(|| CoreError::bad("the node is sealed"))?;
        let keyring_keys = [
            sigil_engine::barrier::KEYRING_KEY,
            sigil_engine::key_usage::USAGE_KEY,
        ];
        let mut batch = sigil_storage::Batch::new();
        for (k, v) in entries
            .iter()
            .filter(|(k, _)| keyring_keys.contains(&k.as_str()))
        {
            batch = batch.put(k.clone(), v.clone());
        }
        let backend = Arc::new(sigil_storage::MemoryBackend::new());
        sigil_storage::Backend::apply(backend.as_ref(), batch)?;
        sigil_engine::Barrier::open(backend, root).map(|_| ())
    }

    /// Starts the core again from storage with the same root key: a node that becomes the
    /// cluster's leader reads what the previous leader wrote (identities, policies, mounts,
    /// leases) instead of what it had cached. A root key that no longer opens the keyring (a
    /// rekey on another node) seals the node and says why.
    pub fn reopen(&self) -> Result<(), CoreError> {
        let Some(old) = self.core() else {
            return Ok(());
        };
        let root = old.barrier().root_copy();
        let config = read_config(self)?.map(Arc::new);
        old.audit().close();
        match Core::open(
            Arc::clone(&self.backend),
            root,
            &self.audit,
            self.engines.clone(),
        ) {
            Ok(core) => {
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                if matches!(*state, State::Unsealed(..)) {
                    *state = State::Unsealed(config, Arc::new(core));
                }
                Ok(())
            }
            Err(e) => {
                self.record_fault(&e);
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                if let Some(config) = config {
                    *state = State::Sealed(config);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sigil_storage::{Backend, MemoryBackend};

    use super::*;
    use crate::core::test_engines;

    #[test]
    fn a_joined_node_is_sealed_once_the_configuration_arrives_and_unsealed_by_the_root_key() {
        let shared: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        // The leader: initialized and unsealed over the shared storage (as Raft replicates it).
        let admin = sigil_crypto::SecretIdentity::generate().unwrap();
        let leader = Node::transient(
            Arc::clone(&shared),
            crate::CoreConfig {
                admins: vec![("admin".into(), admin.public())],
                audit: Vec::new(),
                engines: test_engines(),
            },
        )
        .unwrap();
        // A transient node keeps no seal configuration; a cluster's has one. Write one as init
        // would (its content is public: admins and the server key).
        let config = SealConfig {
            threshold: 1,
            admins: Vec::new(),
            server_public_key: leader.server_key().unwrap().to_string(),
        };
        shared
            .put(SEAL_CONFIG_KEY, &serde_json::to_vec(&config).unwrap())
            .unwrap();
        let root = leader.root_key().unwrap();

        let joined = Node::open(Arc::clone(&shared), Vec::new(), test_engines()).unwrap();
        assert!(joined.initialized(), "the configuration is already there");
        let fresh = Node::open(Arc::new(MemoryBackend::new()), Vec::new(), test_engines()).unwrap();
        assert!(!fresh.refresh().unwrap(), "nothing arrived");
        assert!(matches!(
            fresh.unseal_with_root(leader.root_key().unwrap()),
            Err(CoreError::Unavailable(_))
        ));

        // A wrong root key does not unseal, and says why.
        let wrong = BarrierKey::generate(sigil_crypto::KeyTerm(0)).unwrap();
        assert!(matches!(
            joined.unseal_with_root(wrong),
            Err(CoreError::Keyring(_))
        ));
        assert!(joined.core().is_none());
        joined.unseal_with_root(root).unwrap();
        let core = joined.core().expect("unsealed");
        assert_eq!(
            core.server_identity().public().to_string(),
            leader.server_key().unwrap().to_string(),
            "the same server key on every node"
        );
        // Reopening starts a new core over the same storage.
        joined.reopen().unwrap();
        assert!(!Arc::ptr_eq(&core, &joined.core().unwrap()));
        // A root key handed over after a rekey is taken only if it opens the keyring.
        let stranger = BarrierKey::generate(sigil_crypto::KeyTerm(0)).unwrap();
        assert!(matches!(
            joined.adopt_root(stranger),
            Err(CoreError::Keyring(_))
        ));
        joined.adopt_root(leader.root_key().unwrap()).unwrap();
        assert!(joined.core().is_some());
        joined.reopen().unwrap();
    }
}

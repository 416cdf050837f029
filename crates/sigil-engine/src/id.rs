//! Random identifiers (ids of identities, mounts, issuers, keys).

use crate::CoreError;

/// A random UUID (v4) as text.
pub fn random_id() -> Result<String, CoreError> {
    sigil_crypto::random::uuid().map_err(|_| CoreError::rng())
}

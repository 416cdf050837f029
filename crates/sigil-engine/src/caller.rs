//! Who is asking: an identity as stored, and the authenticated caller an engine is handed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sigil_crypto::PublicIdentity;
use sigil_proto::e2e::{Author, Certification};

/// A stored identity.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    /// Random id, stable across updates.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The `sigil1…` public identity.
    pub public_key: String,
    /// The keyid of its signing key.
    pub keyid: String,
    /// Attached policy names.
    pub policies: Vec<String>,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// A disabled identity cannot authenticate.
    pub disabled: bool,
    /// RFC 3339.
    pub creation_time: String,
    /// RFC 3339.
    pub last_update_time: String,
    /// An admin's signature binding this name to this public key (docs/e2e.md); clients
    /// check it before they encrypt to the key. Dropped when the key changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certification: Option<Certification>,
}

impl Identity {
    /// As stored, and as `identity/entity/name/<name>` answers.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("identity serializes")
    }

    /// This identity as the author of client-encrypted data.
    pub fn author(&self) -> Author {
        Author {
            name: self.name.clone(),
            certification: self.certification.clone(),
        }
    }
}

/// An authenticated caller: the identity and its parsed public key.
#[derive(Debug)]
pub struct Caller {
    /// The stored identity.
    pub identity: Identity,
    /// Its public key, parsed once.
    pub public: PublicIdentity,
}

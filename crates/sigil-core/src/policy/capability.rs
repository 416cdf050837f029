/// One capability of a policy rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability {
    /// Explicit denial; wins over everything at the same path.
    Deny,
    /// Create a value that does not exist yet.
    Create,
    /// Read.
    Read,
    /// Change an existing value.
    Update,
    /// Partially change an existing value.
    Patch,
    /// Delete.
    Delete,
    /// List keys.
    List,
    /// Access root-protected paths.
    Sudo,
}

impl Capability {
    const ALL: [(Capability, &'static str); 8] = [
        (Capability::Deny, "deny"),
        (Capability::Create, "create"),
        (Capability::Read, "read"),
        (Capability::Update, "update"),
        (Capability::Patch, "patch"),
        (Capability::Delete, "delete"),
        (Capability::List, "list"),
        (Capability::Sudo, "sudo"),
    ];

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Parses a capability name as written in a policy.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }

    /// The name as written in a policy.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, n)| *n)
            .expect("every capability has a name")
    }
}

/// A set of capabilities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities(u16);

impl Capabilities {
    /// The empty set.
    pub const NONE: Capabilities = Capabilities(0);

    /// Adds one.
    pub fn insert(&mut self, cap: Capability) {
        self.0 |= cap.bit();
    }

    /// Whether `cap` is in the set.
    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Whether the set is exactly `deny`-dominated (deny present).
    pub fn is_deny(self) -> bool {
        self.contains(Capability::Deny)
    }

    /// Merges another rule for the same path: union, except that `deny` on either side leaves
    /// only `deny` (Vault's merge).
    pub fn merge(self, other: Capabilities) -> Capabilities {
        if self.is_deny() || other.is_deny() {
            let mut d = Capabilities::NONE;
            d.insert(Capability::Deny);
            d
        } else {
            Capabilities(self.0 | other.0)
        }
    }

    /// Whether the set allows `cap` (deny allows nothing).
    pub fn allows(self, cap: Capability) -> bool {
        !self.is_deny() && self.contains(cap)
    }

    /// Names in Vault's order, `["deny"]` for an empty or denying set.
    pub fn names(self) -> Vec<&'static str> {
        if self.is_deny() || self.0 == 0 {
            return vec!["deny"];
        }
        Capability::ALL
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect()
    }
}

//! An audit entry as a request builds it: its members written as JSON once, as they are added,
//! and the data (a request's body, a response's data) that each device writes with every value
//! replaced by an HMAC under its own key. No JSON tree is built for the log.

use serde_json::Value;

/// The members of one audit entry (`"name":value,…`, no braces) and the data to HMAC.
pub struct Entry<'a> {
    pub(super) members: Vec<u8>,
    pub(super) data: Option<&'a Value>,
}

impl std::fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The members hold no secret, but the data does until a device HMACs it.
        f.debug_struct("Entry")
            .field("members", &String::from_utf8_lossy(&self.members))
            .field("data", &self.data.map(|_| "…"))
            .finish()
    }
}

impl<'a> Entry<'a> {
    /// An entry of type `kind` (`request`, `response`, `checkpoint`).
    pub fn new(kind: &str) -> Self {
        let mut entry = Entry {
            members: Vec::with_capacity(320),
            data: None,
        };
        entry.str("type", kind);
        entry
    }

    fn name(&mut self, name: &str) {
        // The chain writes these; a second one in a line would be read instead of its own.
        debug_assert!(
            !["seq", "prev", "hash", "data"].contains(&name),
            "{name} is a reserved audit member"
        );
        if !self.members.is_empty() {
            self.members.push(b',');
        }
        json_str(&mut self.members, name);
        self.members.push(b':');
    }

    /// A string member.
    pub fn str(&mut self, name: &str, value: &str) -> &mut Self {
        self.name(name);
        json_str(&mut self.members, value);
        self
    }

    /// A number member.
    pub fn num(&mut self, name: &str, value: u64) -> &mut Self {
        self.name(name);
        self.members.extend_from_slice(value.to_string().as_bytes());
        self
    }

    /// A `null` member.
    pub fn null(&mut self, name: &str) -> &mut Self {
        self.name(name);
        self.members.extend_from_slice(b"null");
        self
    }

    /// An object member whose members are strings.
    pub fn object(&mut self, name: &str, members: &[(&str, &str)]) -> &mut Self {
        self.name(name);
        self.members.push(b'{');
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                self.members.push(b',');
            }
            json_str(&mut self.members, k);
            self.members.push(b':');
            json_str(&mut self.members, v);
        }
        self.members.push(b'}');
        self
    }

    /// The current time, in Vault's format (RFC 3339, UTC).
    pub fn now(&mut self, name: &str) -> &mut Self {
        self.str(name, &crate::timefmt::now_rfc3339())
    }

    /// The `data` member, last: each device writes it with every value replaced by its HMAC.
    pub fn data(&mut self, data: &'a Value) -> &mut Self {
        self.data = Some(data);
        self
    }
}

/// Appends `s` as a JSON string (quoted and escaped).
pub(super) fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("a string serializes into a Vec");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_json_in_the_order_added() {
        let mut e = Entry::new("request");
        e.str("path", "a\"b\\c\n")
            .num("status", 403)
            .null("identity")
            .object("signature", &[("signature_input", "x"), ("signature", "y")]);
        let text = format!("{{{}}}", String::from_utf8(e.members.clone()).unwrap());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "request");
        assert_eq!(v["path"], "a\"b\\c\n");
        assert_eq!(v["status"], 403);
        assert!(v["identity"].is_null());
        assert_eq!(v["signature"]["signature"], "y");
        assert!(text.starts_with("{\"type\":\"request\",\"path\":"));
    }
}

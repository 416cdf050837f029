//! What both real drivers share: the operation they run (owned, so it can move onto the
//! drivers' runtime), how long connecting may take, the URL they connect with, and redaction
//! of the passwords they know from the messages they return.

use std::time::Duration;

use crate::driver::Connection;

/// How long connecting may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One operation, owned so it can move onto the drivers' runtime (no `Debug`: it holds
/// passwords).
pub(crate) enum Op {
    Verify,
    Create(Vec<zeroize::Zeroizing<String>>, zeroize::Zeroizing<String>),
    Delete(Vec<zeroize::Zeroizing<String>>, String),
    Renew(Vec<zeroize::Zeroizing<String>>, String, String),
    SetPassword(
        Vec<zeroize::Zeroizing<String>>,
        String,
        zeroize::Zeroizing<String>,
    ),
}

/// The configured URL with its `{{username}}`/`{{password}}` placeholders filled with dummies:
/// drivers set the root credentials through their options, never by pasting them into a URL.
pub(crate) fn url_template(conn: &Connection) -> String {
    conn.url
        .replace("{{username}}", "sigil")
        .replace("{{password}}", "sigil")
}

/// `message` with each of `secrets` replaced, and any run of 6 or more of a secret's
/// characters too: MySQL quotes up to 80 characters of a statement "near" an error, which can
/// cut a password in two.
pub(crate) fn redact(message: impl std::fmt::Display, secrets: &[&str]) -> String {
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 6) {
        for len in (6..=s.len()).rev() {
            for start in 0..=s.len() - len {
                if let Some(part) = s.get(start..start + len)
                    && out.contains(part)
                {
                    out = out.replace(part, "[redacted]");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_and_pieces_of_them_are_redacted() {
        let pw = "Xy7-secretPassw0rd";
        assert_eq!(redact(format!("bad: {pw}"), &[pw]), "bad: [redacted]");
        // MySQL cut the statement in the middle of the password.
        let cut = "syntax error near 'Passw0rd' at line 1";
        assert!(!redact(cut, &[pw]).contains("Passw0rd"));
        assert!(!redact("near 'Xy7-sec", &[pw]).contains("Xy7-sec"));
        assert_eq!(redact("nothing here", &[pw]), "nothing here");
    }
}

//! The server configuration file (TOML). Every key is documented in `docs/configuration.md`.
//!
//! ```toml
//! api_addr = "https://sigil.example.com:8200"   # what clients use (printed as SIGIL_ADDR)
//! disable_mlock = false                        # as Vault; true = --allow-unlocked-memory
//!
//! [storage]
//! type = "file"                                # the embedded redb storage
//! path = "/var/lib/sigil"
//!
//! [listener]
//! address = "0.0.0.0:8200"
//! tls_cert_file = "/etc/sigil/server.pem"      # optional: without both, a CA is generated
//! tls_key_file = "/etc/sigil/server.key"       #   once and kept in <storage.path>/tls
//! tls_ca_file = "/etc/sigil/ca.pem"     # optional: printed as SIGIL_CACERT
//! names = ["sigil.example.com"]                # names clients address; also in the cert
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// A parsed configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerFile {
    pub(crate) storage: Storage,
    #[serde(default)]
    pub(crate) listener: Listener,
    pub(crate) api_addr: Option<toml::Spanned<String>>,
    #[serde(default)]
    pub(crate) disable_mlock: bool,
}

/// `[storage]`. A plain struct (not a tagged enum) so that errors keep their line numbers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Storage {
    #[serde(rename = "type")]
    pub(crate) kind: StorageKind,
    pub(crate) path: PathBuf,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StorageKind {
    /// The embedded redb storage.
    File,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    #[serde(default = "default_address")]
    pub(crate) address: SocketAddr,
    pub(crate) tls_cert_file: Option<toml::Spanned<PathBuf>>,
    pub(crate) tls_key_file: Option<toml::Spanned<PathBuf>>,
    pub(crate) tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) names: Vec<String>,
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            address: default_address(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            names: Vec::new(),
        }
    }
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8200))
}

impl ServerFile {
    /// Reads and checks `path`. Errors name the file, the line and what was expected.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        let file: ServerFile = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let line = |span: std::ops::Range<usize>| {
            text[..span.start.min(text.len())].lines().count().max(1)
        };
        let l = &file.listener;
        match (&l.tls_cert_file, &l.tls_key_file) {
            (Some(one), None) | (None, Some(one)) => bail!(
                "{}: line {}: [listener] needs both tls_cert_file and tls_key_file, or neither (then a CA is generated in the storage path)",
                path.display(),
                line(one.span())
            ),
            _ => {}
        }
        if let Some(addr) = &file.api_addr
            && api_host(addr.get_ref()).is_none()
        {
            bail!(
                "{}: line {}: api_addr must be https://HOST[:PORT]",
                path.display(),
                line(addr.span())
            );
        }
        Ok(file)
    }
}

/// The host of an `https://HOST[:PORT]` address.
pub(crate) fn api_host(addr: &str) -> Option<String> {
    let rest = addr.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
        _ => authority,
    };
    let host = host.trim_matches(['[', ']']);
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<ServerFile> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sigil.toml");
        std::fs::write(&p, text).unwrap();
        ServerFile::load(&p)
    }

    #[test]
    fn full_file_parses() {
        let f = load(
            "api_addr = \"https://s.example:8200\"\ndisable_mlock = true\n[storage]\ntype = \"file\"\npath = \"/var/lib/sigil\"\n[listener]\naddress = \"0.0.0.0:8300\"\nnames = [\"s.example\"]\n",
        )
        .unwrap();
        assert_eq!(f.storage.kind, StorageKind::File);
        assert_eq!(f.storage.path, Path::new("/var/lib/sigil"));
        assert_eq!(f.listener.address.port(), 8300);
        assert!(f.disable_mlock);
    }

    #[test]
    fn fail_bad_files_name_the_line_and_what_was_expected() {
        for (text, needles) in [
            (
                "[storage]\ntype = \"file\"\npath = \"/x\"\nbogus = 1\n",
                &["line 4", "bogus"][..],
            ),
            ("[storage]\ntype = \"s3\"\n", &["line 2", "file"]),
            (
                "[storage]\ntype = \"file\"\npath = \"/x\"\n[listener]\naddress = \"nowhere\"\n",
                &["line 5", "address"],
            ),
            (
                "api_addr = 3\n[storage]\ntype = \"file\"\npath = \"/x\"\n",
                &["line 1", "string"],
            ),
            ("[listener]\naddress = \"127.0.0.1:1\"\n", &["storage"]),
            ("[storage\n", &["line 1"]),
            (
                "[storage]\ntype = \"file\"\npath = \"/x\"\n[listener]\ntls_cert_file = \"/c\"\n",
                &["tls_key_file"],
            ),
            (
                "api_addr = \"http://x\"\n[storage]\ntype = \"file\"\npath = \"/x\"\n",
                &["https://"],
            ),
        ] {
            let e = format!("{:#}", load(text).unwrap_err());
            assert!(e.contains("sigil.toml"), "{e}");
            for n in needles {
                assert!(e.contains(n), "{text:?}: {e} lacks {n}");
            }
        }
    }
}

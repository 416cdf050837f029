//! The agent's configuration file (TOML). Unknown keys are errors, as in the server's file;
//! every key is documented in docs/agent.md.
//!
//! ```toml
//! exit_after_auth = false                  # render the templates once and exit
//! static_secret_render_interval = "5m"     # how often KV secrets are read again
//!
//! [server]                                 # SIGIL_ADDR, SIGIL_CACERT, SIGIL_SERVER_KEY win
//! address = "https://sigil.example.com:8200"
//! ca_cert = "/etc/sigil/ca.pem"
//! server_key = "sigil:…"
//!
//! [auto_auth]
//! key_file = "/etc/sigil/app.key"          # or SIGIL_KEY
//!
//! [listener]                               # the Vault-compatible local API
//! address = "127.0.0.1:8100"               # loopback only
//! # unix_socket = "/run/sigil/agent.sock"  # created 0600
//!
//! [cache]
//! kv_ttl = "5s"                            # KV reads answered from memory this long
//!
//! [wrapping]                               # sys/wrapping/unwrap through the local API
//! trust = ["sigil1…", "<keyid>"]           # senders whose wraps are opened (the server's
//!                                          # response wraps always are)
//!
//! [[template]]
//! source = "/etc/app/config.tpl"           # or contents = "…"
//! destination = "/run/app/config.yaml"
//! perms = "0600"
//! command = "systemctl reload app"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A parsed agent configuration file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// Render every template once, then exit (init containers, CI jobs).
    #[serde(default)]
    pub exit_after_auth: bool,
    /// How often secrets without a lease (KV) are read again; Go duration, default 5m.
    pub static_secret_render_interval: Option<String>,
    /// Where the server is.
    #[serde(default)]
    pub server: ServerSection,
    /// The agent's identity.
    #[serde(default)]
    pub auto_auth: AutoAuth,
    /// The Vault-compatible local API.
    pub listener: Option<ListenerSection>,
    /// The KV read cache.
    #[serde(default)]
    pub cache: CacheSection,
    /// Files rendered from templates.
    #[serde(default)]
    pub template: Vec<TemplateSection>,
    /// Wraps opened through the local API.
    #[serde(default)]
    pub wrapping: WrappingSection,
}

/// `[wrapping]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WrappingSection {
    /// Keys (`sigil1…`, pinned) and keyids (anchors that certify senders) whose wraps the
    /// agent opens, beside the server's response wraps; as `SIGIL_TRUST` for the CLI (which
    /// the agent does not read: what it trusts is in its file).
    #[serde(default)]
    pub trust: Vec<String>,
}

/// `[server]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The server's API address.
    pub address: Option<String>,
    /// The CA certificate to trust (PEM file).
    pub ca_cert: Option<PathBuf>,
    /// The keyid of the server key.
    pub server_key: Option<String>,
}

/// `[auto_auth]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AutoAuth {
    /// The agent's identity key file.
    pub key_file: Option<PathBuf>,
}

/// `[listener]`: exactly one of `address` (loopback) and `unix_socket`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// A loopback TCP address (`127.0.0.1:8100`).
    pub address: Option<SocketAddr>,
    /// A Unix socket path, created with mode 0600.
    pub unix_socket: Option<PathBuf>,
}

/// `[cache]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// How long a KV read is answered from memory (Go duration; default 5s; "0s" turns the
    /// cache off).
    pub kv_ttl: Option<String>,
}

/// `[[template]]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TemplateSection {
    /// The template file.
    pub source: Option<PathBuf>,
    /// The template itself.
    pub contents: Option<String>,
    /// The rendered file.
    pub destination: PathBuf,
    /// Its mode, octal (default "0600").
    pub perms: Option<String>,
    /// Run (with `sh -c`) after the rendered output changed.
    pub command: Option<String>,
    /// Or send `SIGHUP` (or `signal`) to the PID in this file.
    pub pid_file: Option<PathBuf>,
    /// The signal for `pid_file` (`SIGHUP`, `SIGUSR1`, `SIGTERM`, …).
    pub signal: Option<String>,
}

/// Where the local API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A Unix socket (mode 0600).
    Unix(PathBuf),
}

/// A Go duration (`"5m"`, `"90s"`, `"1h30m"`) or a number of seconds.
pub fn duration(text: &str, what: &str) -> Result<Duration, String> {
    sigil_engine::duration::from_text(text, what).map_err(|e| e.to_string())
}

impl AgentFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<AgentFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks a configuration.
    pub fn parse(text: &str) -> Result<AgentFile, String> {
        let file: AgentFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.listen()?;
        file.render_interval()?;
        file.kv_ttl()?;
        for (i, t) in file.template.iter().enumerate() {
            let n = i + 1;
            if t.source.is_some() == t.contents.is_some() {
                return Err(format!(
                    "[[template]] {n}: set exactly one of source and contents"
                ));
            }
            t.mode().map_err(|e| format!("[[template]] {n}: {e}"))?;
            if t.command.is_some() && t.pid_file.is_some() {
                return Err(format!(
                    "[[template]] {n}: set command or pid_file, not both"
                ));
            }
            if let Some(s) = &t.signal {
                crate::template::signal_of(s).map_err(|e| format!("[[template]] {n}: {e}"))?;
            }
        }
        Ok(file)
    }

    /// The local API's address, if any: loopback TCP or a Unix socket, never both, never a
    /// non-loopback address (nothing but the socket's permissions or the pod's network
    /// namespace guards it).
    pub fn listen(&self) -> Result<Option<Listen>, String> {
        let Some(l) = &self.listener else {
            return Ok(None);
        };
        match (&l.address, &l.unix_socket) {
            (Some(_), Some(_)) => Err("[listener]: set address or unix_socket, not both".into()),
            (None, None) => Err("[listener]: set address or unix_socket".into()),
            (Some(a), None) if !a.ip().is_loopback() => Err(format!(
                "[listener] address {a} is not a loopback address: the local API forwards every request as the agent's identity and checks no token, so only this host may reach it (or use unix_socket)"
            )),
            (Some(a), None) => Ok(Some(Listen::Tcp(*a))),
            (None, Some(p)) => Ok(Some(Listen::Unix(p.clone()))),
        }
    }

    /// `static_secret_render_interval`, default 5 minutes.
    pub fn render_interval(&self) -> Result<Duration, String> {
        match &self.static_secret_render_interval {
            None => Ok(Duration::from_secs(300)),
            Some(t) => match duration(t, "static_secret_render_interval")? {
                d if d.is_zero() => Err("static_secret_render_interval must be above 0".into()),
                d => Ok(d),
            },
        }
    }

    /// `[cache] kv_ttl`, default 5 seconds.
    pub fn kv_ttl(&self) -> Result<Duration, String> {
        match &self.cache.kv_ttl {
            None => Ok(Duration::from_secs(5)),
            Some(t) => duration(t, "[cache] kv_ttl"),
        }
    }
}

/// A file mode written in octal (`"0600"`, `"0o640"`), at most 0777.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("perms {text:?} is not an octal mode such as \"0600\""))
}

impl TemplateSection {
    /// The rendered file's mode (default 0600).
    pub fn mode(&self) -> Result<u32, String> {
        self.perms.as_deref().map_or(Ok(0o600), parse_mode)
    }

    /// The template's text.
    pub fn text(&self) -> Result<String, String> {
        match (&self.contents, &self.source) {
            (Some(c), _) => Ok(c.clone()),
            (None, Some(p)) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read template {}: {e}", p.display())),
            (None, None) => Err("a template needs source or contents".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let f = AgentFile::parse(
            r#"
exit_after_auth = true
static_secret_render_interval = "1m"
[server]
address = "https://s:8200"
ca_cert = "/ca.pem"
server_key = "sigil:abc"
[auto_auth]
key_file = "/k"
[listener]
unix_socket = "/run/a.sock"
[cache]
kv_ttl = "0s"
[wrapping]
trust = ["k1"]
[[template]]
contents = "{{ .x }}"
destination = "/out"
perms = "0640"
command = "true"
"#,
        )
        .unwrap();
        assert!(f.exit_after_auth);
        assert_eq!(f.render_interval().unwrap(), Duration::from_secs(60));
        assert_eq!(f.kv_ttl().unwrap(), Duration::ZERO);
        assert_eq!(
            f.listen().unwrap(),
            Some(Listen::Unix("/run/a.sock".into()))
        );
        assert_eq!(f.template[0].mode().unwrap(), 0o640);
        assert_eq!(f.wrapping.trust, ["k1"]);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        for (text, want) in [
            ("bogus = 1", "unknown field"),
            ("[listener]\naddress = \"0.0.0.0:8100\"", "not a loopback"),
            ("[listener]\naddress = \"10.1.2.3:8100\"", "not a loopback"),
            (
                "[listener]\naddress = \"127.0.0.1:1\"\nunix_socket = \"/s\"",
                "not both",
            ),
            ("[listener]\n", "set address or unix_socket"),
            ("[server]\ntoken = \"x\"", "unknown field"),
            ("[[template]]\ndestination = \"/o\"", "exactly one of"),
            (
                "[[template]]\ncontents = \"\"\nsource = \"/s\"\ndestination = \"/o\"",
                "exactly one of",
            ),
            (
                "[[template]]\ncontents = \"\"\ndestination = \"/o\"\nperms = \"rw\"",
                "octal",
            ),
            (
                "[[template]]\ncontents = \"\"\ndestination = \"/o\"\nperms = \"1777\"",
                "octal",
            ),
            (
                "[[template]]\ncontents = \"\"\ndestination = \"/o\"\npid_file = \"/p\"\nsignal = \"SIGNOPE\"",
                "signal",
            ),
            ("static_secret_render_interval = \"soon\"", "static_secret"),
            ("static_secret_render_interval = \"0s\"", "above 0"),
        ] {
            let err = AgentFile::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}

//! What the server will run with: its flags over its configuration file, checked.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;

use crate::args::ServerArgs;
use crate::server_config::{ServerFile, StorageKind, api_authority};

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The names in the TLS certificate: the loopback names, the listen address and `extra`.
pub(super) fn tls_names(listen: &SocketAddr, extra: &[String]) -> Vec<String> {
    let ip = listen.ip();
    let listen_name = (!ip.is_unspecified()).then(|| ip.to_string());
    let mut names: Vec<String> = Vec::new();
    for n in LOOPBACK_NAMES
        .iter()
        .map(|n| (*n).to_owned())
        .chain(listen_name)
        .chain(extra.iter().cloned())
    {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The names a signed request may address the server by, at its listen port: the
/// certificate's, but the loopback names only when it listens on loopback (or on every
/// address) or they were configured.
pub(super) fn host_names(listen: &SocketAddr, extra: &[String]) -> Vec<String> {
    let ip = listen.ip();
    let on_loopback = ip.is_loopback() || ip.is_unspecified();
    tls_names(listen, extra)
        .into_iter()
        .filter(|n| on_loopback || !LOOPBACK_NAMES.contains(&n.as_str()) || extra.contains(n))
        .collect()
}

/// Where data lives and how TLS is set up, from flags or a configuration file.
pub(super) struct Plan {
    /// `None`: transient (with its state directory and admins); `Some`: the data directory.
    pub(super) data_dir: Option<PathBuf>,
    pub(super) listen: SocketAddr,
    /// Certificate chain, key and (optionally) the CA clients trust, from files.
    pub(super) tls_files: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
    /// With certificate files of the operator's: the first of `[listener] names`, which the
    /// printed `SIGIL_ADDR` names when there is no `api_addr` (the bound IP may well not be in
    /// a certificate the operator made; a generated one always holds it).
    pub(super) cert_name: Option<String>,
    pub(super) names: Vec<String>,
    /// The names signed requests may address at the listen port.
    pub(super) hosts: Vec<String>,
    pub(super) api_addr: Option<String>,
    pub(super) allow_unlocked_memory: bool,
    pub(super) audit: Vec<sigil_server::AuditDevice>,
    pub(super) limits: sigil_server::RateLimits,
    pub(super) metrics_listen: Option<SocketAddr>,
    /// The file's `log_level`.
    pub(super) log_level: Option<String>,
}

/// Rate limits: flags over the file over the defaults.
fn limits(
    args: &ServerArgs,
    file: Option<&crate::server_config::Limits>,
) -> anyhow::Result<sigil_server::RateLimits> {
    use sigil_server::Rate;
    let mut l = sigil_server::RateLimits::default();
    let pick = |flag: Option<f64>, file: Option<f64>, slot: &mut Rate| -> anyhow::Result<()> {
        if let Some(r) = flag.or(file) {
            if !(r.is_finite() && r > 0.0) {
                bail!("rate limits must be positive numbers of requests per second");
            }
            *slot = Rate::per_second(r);
        }
        Ok(())
    };
    pick(
        args.limit_identity,
        file.and_then(|f| f.identity),
        &mut l.identity,
    )?;
    pick(
        args.limit_address,
        file.and_then(|f| f.address),
        &mut l.address,
    )?;
    pick(
        args.limit_unauthenticated,
        file.and_then(|f| f.unauthenticated),
        &mut l.unauthenticated,
    )?;
    pick(
        args.limit_auth_failures,
        file.and_then(|f| f.auth_failures),
        &mut l.auth_failures,
    )?;
    if let Some(n) = file.and_then(|f| f.connections_per_address) {
        if n == 0 || n > 4096 {
            bail!("[limits] connections_per_address must be between 1 and 4096");
        }
        l.connections_per_address = n;
    }
    if let Some(n) = args
        .max_request_bytes
        .or(file.and_then(|f| f.max_request_bytes))
    {
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&n) {
            bail!(
                "[limits] max_request_bytes must be between 65536 (64 KiB) and 1073741824 (1 GiB)"
            );
        }
        l.max_request_bytes = n;
    }
    Ok(l)
}

fn flag_audit(args: &ServerArgs) -> Option<sigil_server::AuditDevice> {
    args.audit_file.as_ref().map(|p| sigil_server::AuditDevice {
        name: "file".into(),
        sink: sigil_server::AuditSink::File(p.clone()),
        rotate: None,
    })
}

pub(super) fn plan(args: &ServerArgs) -> anyhow::Result<Plan> {
    if let Some(path) = &args.config {
        let file = ServerFile::load(path)?;
        let data_dir = match file.storage.kind {
            StorageKind::File => file.storage.path,
        };
        let l = file.listener;
        let api_addr = file.api_addr.map(toml::Spanned::into_inner);
        let mut names = l.names.clone();
        // The host clients use must be a name of this server (certificate, @target-uri).
        names.extend(api_addr.as_deref().and_then(api_authority).map(|(h, _)| h));
        let mut audit = Vec::new();
        for a in &file.audit {
            audit.push(
                a.device()
                    .map_err(|e| anyhow::anyhow!("{}: [[audit]] {e}", path.display()))?,
            );
        }
        audit.extend(flag_audit(args));
        return Ok(Plan {
            log_level: file.log_level.map(toml::Spanned::into_inner),
            metrics_listen: args.metrics_listen.or(l.metrics_address),
            limits: limits(args, Some(&file.limits))?,
            audit,
            data_dir: Some(data_dir),
            listen: l.address,
            cert_name: l
                .names
                .first()
                .filter(|_| l.tls_cert_file.is_some())
                .cloned(),
            tls_files: l
                .tls_cert_file
                .zip(l.tls_key_file)
                .map(|(c, k)| (c.into_inner(), k.into_inner(), l.tls_ca_file)),
            names: tls_names(&l.address, &names),
            hosts: host_names(&l.address, &names),
            api_addr,
            allow_unlocked_memory: file.disable_mlock || args.allow_unlocked_memory,
        });
    }
    if !args.transient && args.data_dir.is_none() {
        bail!(
            "say where data lives: `sigil server --transient` (memory), `sigil server --data-dir DIR` (embedded file storage) or `sigil server -c FILE`"
        );
    }
    Ok(Plan {
        log_level: None,
        metrics_listen: args.metrics_listen,
        limits: limits(args, None)?,
        audit: flag_audit(args).into_iter().collect(),
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        tls_files: None,
        cert_name: None,
        names: tls_names(&args.listen, &args.tls_sans),
        hosts: host_names(&args.listen, &args.tls_sans),
        api_addr: None,
        allow_unlocked_memory: args.allow_unlocked_memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_only_when_listening_on_loopback() {
        let names = |listen: &str, extra: &[&str]| {
            let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
            host_names(&listen.parse().unwrap(), &extra)
        };
        assert_eq!(
            names("127.0.0.1:8200", &[]),
            ["localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(
            names("0.0.0.0:8200", &["sigil.example"]),
            ["localhost", "127.0.0.1", "::1", "sigil.example"]
        );
        assert_eq!(
            names("10.1.2.3:8200", &["sigil.example"]),
            ["10.1.2.3", "sigil.example"]
        );
        assert_eq!(
            names("10.1.2.3:8200", &["localhost"]),
            ["localhost", "10.1.2.3"]
        );
        // The certificate keeps the loopback names either way.
        assert!(tls_names(&"10.1.2.3:8200".parse().unwrap(), &[]).contains(&"localhost".into()));
        assert!(tls_names(&"127.0.0.5:8200".parse().unwrap(), &[]).contains(&"127.0.0.5".into()));
    }
}

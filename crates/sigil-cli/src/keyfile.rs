//! Reading and writing key files and public identities on disk.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use sigil_crypto::{PublicIdentity, SecretIdentity};
use zeroize::Zeroizing;

/// Writes a new file readable only by its owner (0600); refuses to replace an existing file.
/// The data is on disk (fsync'd, with its directory) when this returns.
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            if path.exists() {
                format!(
                    "{} already exists; refusing to overwrite it",
                    path.display()
                )
            } else {
                format!("cannot create {}", path.display())
            }
        })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}

/// Reads a key file; warns if others can read it.
pub(crate) fn read_key(path: &Path) -> anyhow::Result<SecretIdentity> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "Warning: key file {} is accessible by other users; run: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?,
    );
    SecretIdentity::from_key_file(&text)
        .with_context(|| format!("{} is not a Sigil key file", path.display()))
}

/// A public identity given as `sigil1…`, or a file holding one (or a key file, whose public
/// half is derived).
pub(crate) fn read_public(value: &str) -> anyhow::Result<PublicIdentity> {
    let value = value.trim();
    if value.to_ascii_lowercase().starts_with("sigil1") {
        return PublicIdentity::parse(value).context("invalid sigil1… public identity");
    }
    let path = Path::new(value);
    let text =
        Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
            format!("{value:?} is neither a sigil1… string nor a readable file")
        })?);
    if text.contains("SIGIL-SECRET-KEY-") {
        return Ok(read_key(path)?.public());
    }
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match line {
        Some(l) => PublicIdentity::parse(l)
            .with_context(|| format!("{} does not hold a sigil1… public identity", path.display())),
        None => bail!("{} is empty", path.display()),
    }
}

/// Public identities from `--admin` values, each named after its file (`alice.pub` →
/// `alice`), or `admin`, `admin-2`, … when given as a literal `sigil1…` string. The same key
/// twice is refused.
pub(crate) fn named_publics(values: &[String]) -> anyhow::Result<Vec<(String, PublicIdentity)>> {
    let mut out: Vec<(String, PublicIdentity)> = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let public = read_public(value)?;
        let literal = value.trim().to_ascii_lowercase().starts_with("sigil1");
        let stem = Path::new(value)
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| !literal)
            .filter(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        let mut name = match stem {
            Some(s) => s.to_owned(),
            None if i == 0 => "admin".into(),
            None => format!("admin-{}", i + 1),
        };
        if out.iter().any(|(n, _)| *n == name) {
            name = format!("{name}-{}", i + 1);
        }
        if out.iter().any(|(_, p)| *p == public) {
            bail!("--admin {value}: the same key is given twice");
        }
        out.push((name, public));
    }
    Ok(out)
}

//! Reading and writing key files and public identities on disk.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use sigil_crypto::age::passphrase::{self, PassphraseError};
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

/// The environment variable naming a file that holds the passphrase of a protected key file
/// (for automation; on a terminal Sigil asks).
pub(crate) const PASSPHRASE_FILE_ENV: &str = "SIGIL_KEY_PASSPHRASE_FILE";
/// The new passphrase for `sigil key passwd` without a terminal.
pub(crate) const NEW_PASSPHRASE_FILE_ENV: &str = "SIGIL_KEY_NEW_PASSPHRASE_FILE";

/// Reads a key file, plain or passphrase-protected; warns if others can read it.
pub(crate) fn read_key(path: &Path) -> anyhow::Result<SecretIdentity> {
    parse(path, &read_key_text(path)?.0)
}

/// Reads a key file's text (opened if passphrase-protected) and checks it holds a key; also
/// says whether it was protected.
pub(crate) fn read_key_text(path: &Path) -> anyhow::Result<(Zeroizing<String>, bool)> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "Warning: key file {} is accessible by other users; run: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let bytes = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("cannot read key file {}", path.display()))?,
    );
    let protected = passphrase::is_age_file(&bytes);
    let text = if protected {
        open_protected(path, &bytes)?
    } else {
        // Copied only once it is known to be text: a refused copy is not left unzeroized.
        std::str::from_utf8(&bytes)
            .map(|t| Zeroizing::new(t.to_owned()))
            .map_err(|_| anyhow::anyhow!("{} is not a Sigil key file", path.display()))?
    };
    parse(path, &text)?;
    Ok((text, protected))
}

fn parse(path: &Path, text: &str) -> anyhow::Result<SecretIdentity> {
    SecretIdentity::from_key_file(text)
        .with_context(|| format!("{} is not a Sigil key file", path.display()))
}

/// The key file text inside a passphrase-protected file (age, armored or binary).
fn open_protected(path: &Path, bytes: &[u8]) -> anyhow::Result<Zeroizing<String>> {
    let file = if bytes.trim_ascii_start().starts_with(b"-----") {
        passphrase::dearmor(bytes)
            .with_context(|| format!("{} is not a valid protected key file", path.display()))?
    } else {
        bytes.to_vec()
    };
    let pass = ask_passphrase(
        &format!("Passphrase for {}: ", path.display()),
        PASSPHRASE_FILE_ENV,
        false,
    )?;
    let text =
        passphrase::decrypt(pass.as_bytes(), &file, passphrase::MAX_WORK_FACTOR).map_err(|e| {
            match e {
                PassphraseError::Wrong => {
                    anyhow::anyhow!("wrong passphrase for key file {}", path.display())
                }
                e => anyhow::anyhow!("{} is not a valid protected key file: {e}", path.display()),
            }
        })?;
    std::str::from_utf8(&text)
        .map(|t| Zeroizing::new(t.to_owned()))
        .map_err(|_| anyhow::anyhow!("{} does not hold a Sigil key file", path.display()))
}

/// Encrypts a key file's text with a passphrase: age's scrypt recipient, armored.
pub(crate) fn protect(text: &str, pass: &str) -> anyhow::Result<String> {
    let file = passphrase::encrypt(
        pass.as_bytes(),
        text.as_bytes(),
        passphrase::DEFAULT_WORK_FACTOR,
    )
    .context("cannot encrypt the key file")?;
    Ok(passphrase::armor(&file))
}

/// A passphrase from the file named by `env`, else asked on the terminal (twice when
/// `confirm`: a new passphrase). Never from the command line. One trailing newline of the
/// file is not part of it; an empty passphrase is refused.
pub(crate) fn ask_passphrase(
    prompt: &str,
    env: &str,
    confirm: bool,
) -> anyhow::Result<Zeroizing<String>> {
    let pass = if let Some(file) = std::env::var_os(env) {
        let text = Zeroizing::new(std::fs::read_to_string(&file).with_context(|| {
            format!(
                "cannot read the passphrase file {env}={}",
                file.to_string_lossy()
            )
        })?);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        Zeroizing::new(line.strip_suffix('\r').unwrap_or(line).to_owned())
    } else {
        let first = Zeroizing::new(rpassword::prompt_password(prompt).map_err(|_| {
            anyhow::anyhow!(
                "a passphrase is needed: run on a terminal, or set {env} to a file holding it"
            )
        })?);
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("Repeat the passphrase: ")
                    .context("cannot read the passphrase")?,
            );
            if *again != *first {
                bail!("the passphrases do not match");
            }
        }
        first
    };
    if pass.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(pass)
}

/// Replaces `path` with `contents` and permissions `mode`: written beside it (a new file,
/// created 0600, only then given `mode`), synced, then renamed over it, so a crash leaves the
/// old file or the new one.
pub(crate) fn replace_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write beside {}", path.display()))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
        })
        .with_context(|| format!("cannot write beside {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    Ok(())
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
    if text.contains("SIGIL-SECRET-KEY-") || passphrase::is_age_file(text.as_bytes()) {
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

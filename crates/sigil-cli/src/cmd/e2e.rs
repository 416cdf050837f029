//! `sigil e2e put|get`, `sigil wrap`, `sigil wrap status`, `sigil unwrap`: data encrypted on
//! this machine (docs/e2e.md).

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value};
use sigil_client::ClientError;
use sigil_client::e2e::Trust;
use sigil_crypto::PublicIdentity;

use crate::args::{ClientArgs, E2eCommand, Format, TrustArgs, VersionRead, WrapArgs, WrapStatus};
use crate::{config, output};

/// What the caller trusts: its own key and `SIGIL_TRUST` (`sigil1…` keys are pinned whole;
/// keyids vouch only through certifications).
fn trust(args: &TrustArgs, me: &PublicIdentity) -> anyhow::Result<Trust> {
    Trust::parse(me, args.trust.iter().map(String::as_str))
        .map_err(|e| anyhow::anyhow!("SIGIL_TRUST: {e}"))
}

pub(crate) async fn run(cmd: E2eCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        E2eCommand::Put {
            at,
            to,
            pairs,
            cas,
            trust: t,
            client,
        } => {
            let (mount, path) = super::kv::split(&at, &client).await?;
            let data = super::pairs::parse_pairs(&pairs)?;
            let c = config::client(&client)?;
            let trust = trust(&t, &c.public()?)?;
            let recipients = c
                .resolve_recipients(&to, &trust)
                .await
                .map_err(|e| super::data::missing_as(e, || no_recipient(&to)))?;
            let resp = c.e2e_put(&mount, &path, &data, &recipients, cas).await?;
            let version = resp
                .body
                .as_ref()
                .and_then(|b| b.pointer("/data/version"))
                .cloned()
                .unwrap_or(Value::Null);
            let names: Vec<&str> = recipients.iter().map(|r| r.label.as_str()).collect();
            println!(
                "Success! Version {} of {mount}/{path} encrypted to you and: {}",
                output::cell(&version),
                names.join(", ")
            );
        }
        E2eCommand::Get {
            at,
            read:
                VersionRead {
                    field,
                    version,
                    format,
                },
            trust: t,
            client,
        } => {
            let (mount, path) = super::kv::split(&at, &client).await?;
            let c = config::client(&client)?;
            let trust = trust(&t, &c.public()?)?;
            let opened = match c.e2e_get(&mount, &path, version, &trust).await {
                Ok(o) => o,
                Err(ClientError::Api { status: 404, .. }) => {
                    return Ok(super::data::not_found(&format!("{mount}/{path}")));
                }
                Err(e) => return Err(e.into()),
            };
            let data: Map<String, Value> = serde_json::from_slice(&opened.data)
                .context("the decrypted secret is not a JSON object")?;
            if let Some(f) = field {
                match data.get(&f) {
                    Some(v) => println!("{}", output::cell(v)),
                    None => bail!("field {f:?} not present in secret"),
                }
                return Ok(ExitCode::SUCCESS);
            }
            match format {
                Format::Json | Format::Yaml => output::structured(
                    format,
                    &serde_json::json!({
                        "data": data,
                        "metadata": opened.metadata,
                        "author": opened.author,
                        "recipients": opened.recipients,
                    }),
                ),
                Format::Table => {
                    output::header("Secret Path", 20);
                    println!("{mount}/{path}\n");
                    output::header("Metadata", 24);
                    let mut rows = output::rows(Some(&opened.metadata));
                    rows.push(("written_by".into(), opened.author));
                    rows.push(("recipients".into(), opened.recipients.join(", ")));
                    output::table(&rows);
                    println!();
                    output::header("Data", 18);
                    output::table(&output::rows(Some(&Value::Object(data))));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn wrap(args: WrapArgs) -> anyhow::Result<ExitCode> {
    if let Some(WrapStatus::Status { id, format, client }) = args.status {
        let c = config::client(&client)?;
        let info = c.wrap_status(&id).await?;
        match format {
            Format::Json | Format::Yaml => output::structured(format, &info),
            Format::Table => output::table(&output::rows(Some(&info))),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let to = args.to.context("--to is required")?;
    let plaintext = zeroize::Zeroizing::new(match args.input.as_deref() {
        None => read_stdin()?,
        Some(p) if p.as_os_str() == "-" => read_stdin()?,
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
    });
    let c = config::client(&args.client)?;
    let trust = trust(&args.trust, &c.public()?)?;
    let recipient = c
        .resolve_recipients(std::slice::from_ref(&to), &trust)
        .await
        .map_err(|e| super::data::missing_as(e, || no_recipient(std::slice::from_ref(&to))))?
        .pop()
        .context("no recipient")?;
    let info = c.wrap(&recipient, &plaintext, args.ttl.as_deref()).await?;
    super::data::print_wrap_info(&info, Format::Table);
    Ok(ExitCode::SUCCESS)
}

/// Writes a fetched wrap to `sigil-wrap-<id>.json` in `dir` (the current directory when
/// unwrapping), 0600, never over an existing file.
fn keep_wrap(
    dir: &std::path::Path,
    id: &str,
    fetched: &Value,
) -> anyhow::Result<std::path::PathBuf> {
    let safe: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    let path = dir.join(format!("sigil-wrap-{safe}.json"));
    crate::keyfile::write_private_file(&path, serde_json::to_string_pretty(fetched)?.as_bytes())
        .context("cannot keep the fetched wrap")?;
    Ok(path)
}

/// The message for recipients the server does not know.
fn no_recipient(to: &[String]) -> String {
    format!(
        "No identity or group found for {} (recipients are identity names, group:NAME or sigil1… keys)",
        to.join(", ")
    )
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("cannot read standard input")?;
    Ok(buf)
}

/// `sigil unwrap ID`: the sender is checked against `SIGIL_TRUST` from the wrap's lookup
/// before anything is fetched, so an untrusted sender leaves the wrap in place. Should the
/// fetched wrap still fail its checks (a server that lied in the lookup), its signed envelope
/// is kept in a 0600 file for `sigil unwrap --saved FILE`: fetching consumed it.
pub(crate) async fn unwrap(
    id: Option<&str>,
    saved: Option<&std::path::Path>,
    format: Format,
    trust_args: &TrustArgs,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = config::client(client)?;
    let trust = trust(trust_args, &c.public()?)?;
    let w = match (id, saved) {
        (_, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let kept: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a saved wrap", file.display()))?;
            let id = kept["id"]
                .as_str()
                .with_context(|| format!("{} is not a saved wrap", file.display()))?;
            c.open_wrap(id, &kept, &trust).await?
        }
        (Some(id), None) => {
            c.check_wrap_sender(id, &trust).await.map_err(|e| {
                anyhow::anyhow!("{e}\nThe wrap was not fetched and is still there: set SIGIL_TRUST (or --trust) to a key that vouches for the sender and run this again.")
            })?;
            let fetched = c.fetch_wrap(id).await?;
            match c.open_wrap(id, &fetched, &trust).await {
                Ok(w) => w,
                Err(e) => {
                    let file = keep_wrap(std::path::Path::new(""), id, &fetched)?;
                    anyhow::bail!(
                        "{e}\nThe wrap was fetched (the server no longer holds it) but not opened. Its signed envelope, still encrypted to your key, is in {}: open it with `sigil unwrap --saved {}` once its sender is trusted.",
                        file.display(),
                        file.display()
                    );
                }
            }
        }
        (None, None) => anyhow::bail!("give a wrap id, or --saved FILE"),
    };
    eprintln!("Unwrapped: sent by {}", w.sender);
    if w.content_type == "application/json" {
        let body: Value =
            serde_json::from_slice(&w.plaintext).context("the wrapped response is not JSON")?;
        match format {
            Format::Json | Format::Yaml => output::structured(format, &body),
            // A wrapped KV read: its data and metadata, as `sigil kv get` prints them.
            Format::Table => match body.pointer("/data/data") {
                Some(d) if d.is_object() => output::table(&output::rows(Some(d))),
                _ => output::table(&output::rows(body.get("data"))),
            },
        }
    } else {
        std::io::stdout()
            .write_all(&w.plaintext)
            .context("cannot write to standard output")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file a fetched-but-unopened wrap is kept in: owner-only, named after the id (hex
    /// only, so an id cannot pick the path), never overwritten, and holding what
    /// `unwrap --saved` reads back (the whole fetched wrap, its id included).
    #[test]
    fn a_kept_wrap_is_private_and_reads_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let fetched = serde_json::json!({ "id": "ab12", "envelope": "x", "sender": "s" });
        let path = keep_wrap(dir.path(), "../ab12", &fetched).unwrap();
        assert_eq!(path, dir.path().join("sigil-wrap-ab12.json"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, fetched);
        assert!(
            keep_wrap(dir.path(), "ab12", &fetched).is_err(),
            "never overwritten"
        );
    }
}

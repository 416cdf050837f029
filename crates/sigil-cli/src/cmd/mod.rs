//! One module per command group.

mod audit;
mod e2e;
mod generic;
mod group;
mod identity;
mod key;
mod kv;
mod lease;
mod operator;
mod policy;
mod secrets;
mod server;

use std::process::ExitCode;

use crate::args::{Cli, Command};

pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Key(c) => key::run(c),
        Command::Server(c) => server::run(c).await,
        Command::Identity(c) => identity::run(c).await,
        Command::Group(c) => group::run(c).await,
        Command::Policy(c) => policy::run(c).await,
        Command::Kv(c) => kv::run(c).await,
        Command::Secrets(c) => secrets::run(c).await,
        Command::E2e(c) => e2e::run(c).await,
        Command::Wrap(w) => e2e::wrap(w).await,
        Command::Unwrap {
            id,
            saved,
            format,
            trust,
            client,
        } => e2e::unwrap(id.as_deref(), saved.as_deref(), format, &trust, &client).await,
        Command::Operator(c) => operator::run(c).await,
        Command::Status { format, client } => operator::status(format, &client).await,
        Command::Version => {
            println!("Sigil v{}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            use std::io::Write as _;
            // Into memory first: clap_complete panics when it cannot write (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut crate::args::Cli::command(),
                "sigil",
                &mut script,
            );
            // A closed pipe (`| head`) is not an error.
            let _ = std::io::stdout().write_all(&script);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(c) => audit::run(c).await,
        Command::Lease(c) => lease::run(c).await,
        Command::Read {
            path,
            format,
            field,
            wrap,
            client,
        } => generic::read(&path, format, field.as_deref(), &wrap, &client).await,
        Command::Write {
            path,
            pairs,
            force,
            format,
            field,
            wrap,
            client,
        } => {
            if pairs.is_empty() && !force {
                anyhow::bail!(
                    "give data (key=value, key=@FILE, - for JSON on standard input) or use -force to write with none"
                );
            }
            generic::write(&path, &pairs, format, field.as_deref(), &wrap, &client).await
        }
        Command::List { path, show, client } => generic::list(&path, &show, &client).await,
        Command::Delete { path, client } => generic::delete(&path, &client).await,
    }
}

/// `?k=v&…` (percent-encoded), or nothing.
pub(crate) fn query_string(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut q = form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// `path` with the response-wrapping query parameters, if any were asked for.
pub(crate) fn wrapped_path(path: &str, wrap: &crate::args::ResponseWrap) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(to) = &wrap.wrap_to {
        q.append_pair("wrap_to", to);
    }
    if let Some(ttl) = &wrap.wrap_ttl {
        q.append_pair("wrap_ttl", ttl);
    }
    let q = q.finish();
    match (q.is_empty(), path.contains('?')) {
        (true, _) => path.to_owned(),
        (false, true) => format!("{path}&{q}"),
        (false, false) => format!("{path}?{q}"),
    }
}

/// A wrap's info, as `vault` prints a wrapping token.
pub(crate) fn print_wrap_info(info: &serde_json::Value, format: crate::args::Format) {
    match format {
        crate::args::Format::Json | crate::args::Format::Yaml => {
            crate::output::structured(format, info)
        }
        crate::args::Format::Table => {
            let cell =
                |k: &str| crate::output::cell(info.get(k).unwrap_or(&serde_json::Value::Null));
            crate::output::table(&[
                ("wrap_id".into(), cell("id")),
                ("wrap_ttl".into(), format!("{}s", cell("ttl"))),
                ("wrap_expiration_time".into(), cell("expiration_time")),
                ("wrap_creation_path".into(), cell("creation_path")),
                ("wrap_recipient".into(), cell("recipient")),
            ]);
        }
    }
}

/// RFC 3339 now, for key file comments.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `LIST path`, printed as Vault prints keys (`-format=json|yaml`: the keys as a list).
pub(crate) async fn list_keys(
    client: &crate::args::ClientArgs,
    path: &str,
    show: &crate::args::ListArgs,
) -> anyhow::Result<()> {
    let c = crate::config::client(client)?;
    let resp = c.request("LIST", path, None).await?;
    print_keys(&resp.body.unwrap_or_default(), show.format);
    Ok(())
}

/// A LIST answer: `Keys` and one per line, or the keys as a JSON or YAML list.
pub(crate) fn print_keys(body: &serde_json::Value, format: crate::args::Format) {
    match format {
        crate::args::Format::Table => crate::output::keys(body),
        format => crate::output::structured(
            format,
            body.pointer("/data/keys")
                .unwrap_or(&serde_json::Value::Array(Vec::new())),
        ),
    }
}

/// Prints one field of an answer's `data` (as `vault read|write -field`): strings as they are,
/// with a newline unless they end in one.
pub(crate) fn print_field(data: &serde_json::Value, field: &str) -> anyhow::Result<()> {
    let value = data
        .get(field)
        .ok_or_else(|| anyhow::anyhow!("field {field:?} not present in the answer"))?;
    let text = crate::output::cell(value);
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
    Ok(())
}

/// Prints an answer's `data` as `show` asks: one field as it is, JSON, YAML or a table.
pub(crate) fn print_data(
    data: &serde_json::Value,
    show: &crate::args::ShowArgs,
) -> anyhow::Result<()> {
    if let Some(field) = &show.field {
        return print_field(data, field);
    }
    match show.format {
        crate::args::Format::Table => crate::output::table(&crate::output::rows(Some(data))),
        format => crate::output::structured(format, data),
    }
    Ok(())
}

/// `GET path`, its `data` printed as a table.
/// Something a command was asked about does not exist: printed as it is, with exit code 2
/// (docs/cli.md, "Exit codes").
#[derive(Debug)]
pub(crate) struct Missing(pub(crate) String);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Missing {}

/// A 404 from the server as [`Missing`] with `what` (e.g. `No policy named: nope`); any other
/// error as it is.
pub(crate) fn missing_as(
    e: sigil_client::ClientError,
    what: impl FnOnce() -> String,
) -> anyhow::Error {
    if e.status() == Some(404) {
        Missing(what()).into()
    } else {
        e.into()
    }
}

/// `GET path`, its data printed as `show` asks; a 404 says "No <what> named: <name>".
pub(crate) async fn read_data(
    client: &crate::args::ClientArgs,
    path: &str,
    what: &str,
    show: &crate::args::ShowArgs,
) -> anyhow::Result<()> {
    let c = crate::config::client(client)?;
    let name = path.rsplit('/').next().unwrap_or(path);
    let resp = c
        .request("GET", path, None)
        .await
        .map_err(|e| missing_as(e, || format!("No {what} named: {name}")))?;
    print_data(resp.data(), show)
}

/// `DELETE path`, then `Success! Deleted <what>: <name>`.
pub(crate) async fn delete(
    client: &crate::args::ClientArgs,
    path: &str,
    what: &str,
    name: &str,
) -> anyhow::Result<()> {
    let c = crate::config::client(client)?;
    c.request("DELETE", path, None).await?;
    println!("Success! Deleted {what}: {name}");
    Ok(())
}

/// `KEY=VALUE` flag values (`--metadata`, `-custom-metadata`) as a map of strings.
pub(crate) fn string_pairs(
    flag: &str,
    pairs: &[String],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.into())),
            None => Err(anyhow::anyhow!("{flag} {pair:?} is not KEY=VALUE")),
        })
        .collect()
}

/// `key=value` pairs into a JSON object, as Vault's CLI reads them:
///
/// - `key=@FILE` reads the value from a file, `key=-` from standard input (as it is, a final
///   newline included: `echo -n` or `printf` leave none);
/// - a lone `@FILE` or `-` is a JSON object (from the file, or from standard input) whose
///   members are added with their JSON types.
///
/// Standard input is read once: by one `key=-` or one `-`. When it is a terminal, `-` is an
/// error rather than a prompt or a literal `-`. A key given twice takes the later value.
pub(crate) fn parse_pairs(
    pairs: &[String],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    parse_pairs_from(pairs, &mut Stdin::default())
}

/// Standard input, read at most once.
#[derive(Default)]
pub(crate) struct Stdin {
    used_by: Option<String>,
    /// For tests: what "standard input" holds (`None`: the process's).
    fake: Option<Vec<u8>>,
}

impl Stdin {
    fn read(&mut self, by: &str) -> anyhow::Result<Vec<u8>> {
        use std::io::{IsTerminal as _, Read as _};
        if let Some(first) = &self.used_by {
            anyhow::bail!("{by} reads standard input, which {first} already read");
        }
        self.used_by = Some(by.to_owned());
        if let Some(fake) = self.fake.take() {
            return Ok(fake);
        }
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            anyhow::bail!(
                "{by} reads standard input, which is a terminal: pipe the value in (printf %s \"$VALUE\" | sigil …), or use @FILE"
            );
        }
        let mut out = Vec::new();
        stdin.lock().read_to_end(&mut out)?;
        Ok(out)
    }
}

fn parse_pairs_from(
    pairs: &[String],
    stdin: &mut Stdin,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    use anyhow::{Context as _, bail};
    let object = |bytes: &[u8], from: &str| -> anyhow::Result<serde_json::Map<_, _>> {
        match serde_json::from_slice(bytes) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => bail!("{from} holds JSON, but not an object ({{\"key\": \"value\", …}})"),
            Err(e) => bail!("{from} is not a JSON object: {e}"),
        }
    };
    let mut data = serde_json::Map::new();
    for pair in pairs {
        if pair == "-" {
            data.extend(object(&stdin.read("-")?, "standard input")?);
            continue;
        }
        let Some((k, v)) = pair.split_once('=') else {
            if let Some(file) = pair.strip_prefix('@') {
                let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
                data.extend(object(&bytes, file)?);
                continue;
            }
            bail!("{pair:?} is not key=value (or @FILE, or - for a JSON object on standard input)");
        };
        if k.is_empty() {
            bail!("{pair:?} has an empty key");
        }
        let bytes = if v == "-" {
            let bytes = stdin.read(&format!("{k}=-"))?;
            if bytes.is_empty() {
                bail!("{k}=- read nothing from standard input (for an empty value, write {k}=)");
            }
            bytes
        } else if let Some(file) = v.strip_prefix('@') {
            std::fs::read(file).with_context(|| format!("cannot read {file}"))?
        } else {
            v.as_bytes().to_vec()
        };
        let value = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("the value of {k} is not UTF-8 text"))?;
        data.insert(k.to_owned(), serde_json::Value::String(value));
    }
    Ok(data)
}

/// Vault's "No value found at …", exit code 2.
pub(crate) fn not_found(path: &str) -> ExitCode {
    eprintln!("No value found at {path}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[&str], stdin: Option<&str>) -> anyhow::Result<serde_json::Value> {
        let pairs: Vec<String> = pairs.iter().map(|p| (*p).to_owned()).collect();
        let mut input = Stdin {
            used_by: None,
            fake: stdin.map(|s| s.as_bytes().to_vec()),
        };
        parse_pairs_from(&pairs, &mut input).map(serde_json::Value::Object)
    }

    #[test]
    fn values_come_from_arguments_files_and_standard_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v");
        std::fs::write(&file, "from-file\n").unwrap();
        let json = dir.path().join("d.json");
        std::fs::write(&json, r#"{"n": 3, "b": true}"#).unwrap();
        let at = format!("f=@{}", file.display());
        let obj = format!("@{}", json.display());
        assert_eq!(
            parse(&["a=1", &at, "s=-", &obj], Some("s3cr3t")).unwrap(),
            serde_json::json!({"a": "1", "f": "from-file\n", "s": "s3cr3t", "n": 3, "b": true})
        );
        assert_eq!(
            parse(&["-", "a=2"], Some(r#"{"a": "1", "x": [1]}"#)).unwrap(),
            serde_json::json!({"a": "2", "x": [1]})
        );
    }

    #[test]
    fn fail_ambiguous_or_malformed() {
        for (pairs, stdin, needle) in [
            (&["a=-", "b=-"][..], Some("x"), "already read"),
            (&["-", "b=-"][..], Some("{}"), "already read"),
            (&["-"][..], Some("[1]"), "not an object"),
            (&["-"][..], Some("nope"), "not a JSON object"),
            (&["novalue"][..], None, "is not key=value"),
            (&["=v"][..], None, "empty key"),
            (&["a=-"][..], Some(""), "read nothing"),
            (&["a=@/nonexistent/file"][..], None, "cannot read"),
        ] {
            let e = parse(pairs, stdin).unwrap_err();
            assert!(e.to_string().contains(needle), "{pairs:?}: {e}");
        }
    }
}

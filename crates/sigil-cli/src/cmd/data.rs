//! What several commands share: reading, printing, listing and deleting data at a path,
//! response wrapping, and Vault's "No value found" exit.

use std::process::ExitCode;

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

/// Vault's "No value found at …", exit code 2.
pub(crate) fn not_found(path: &str) -> ExitCode {
    eprintln!("No value found at {path}");
    ExitCode::from(2)
}

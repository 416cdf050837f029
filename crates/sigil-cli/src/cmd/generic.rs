//! `sigil read|write|list|delete PATH`: any API path, as `vault read|write|list|delete`.

use std::process::ExitCode;

use serde_json::Value;
use sigil_client::ClientError;

use crate::args::{ClientArgs, Format, ResponseWrap, StaleRead};
use crate::{config, output};

/// Endpoints anyone may read, answered in plain JSON (docs/protocol.md §12).
const PUBLIC_READS: &[&str] = &[
    "sys/health",
    "sys/seal-status",
    "sys/server-key",
    "sys/openapi.json",
    "sys/rekey",
    "sys/init",
    "sys/leader",
    "sys/storage/raft/peers",
];

pub(crate) async fn read(
    path: &str,
    format: Format,
    field: Option<&str>,
    stale: StaleRead,
    wrap: &ResponseWrap,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    // The public endpoints answer plain JSON to anyone (nothing secret, nothing sealed):
    // read them as such, without a key.
    let public = PUBLIC_READS.contains(&path.trim_matches('/')) && wrap.wrap_to.is_none();
    let body = if public {
        let c = config::client_with(client, config::Needs::Nothing)?;
        match c.plain("GET", path.trim_matches('/'), None).await {
            Ok(r) => serde_json::json!({ "data": r.body.unwrap_or_default() }),
            Err(e) => return Err(e.into()),
        }
    } else {
        let c = config::client(client)?;
        let target = match (stale.stale, path.contains('?')) {
            (false, _) => path.to_owned(),
            (true, true) => format!("{path}&stale=true"),
            (true, false) => format!("{path}?stale=true"),
        };
        match c
            .request("GET", &super::data::wrapped_path(&target, wrap), None)
            .await
        {
            Ok(r) => r.body.unwrap_or_default(),
            Err(ClientError::Api { status: 404, .. }) => return Ok(super::data::not_found(path)),
            Err(e) => return Err(e.into()),
        }
    };
    if wrap.wrap_to.is_some() {
        super::data::print_wrap_info(body.get("data").unwrap_or(&Value::Null), format);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(f) = field {
        super::data::print_field(body.get("data").unwrap_or(&Value::Null), f)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::warnings(&body);
    match format {
        Format::Json | Format::Yaml => output::structured(format, &body),
        Format::Table => output::table(&output::answer_rows(&body)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `key=value` pairs, or `-` for a JSON object on standard input.
pub(crate) async fn write(
    path: &str,
    pairs: &[String],
    format: Format,
    field: Option<&str>,
    wrap: &ResponseWrap,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let body = Value::Object(super::pairs::parse_pairs(pairs)?);
    let c = config::client(client)?;
    let resp = c
        .request("POST", &super::data::wrapped_path(path, wrap), Some(&body))
        .await?;
    if wrap.wrap_to.is_some() {
        let body = resp.body.unwrap_or_default();
        super::data::print_wrap_info(body.get("data").unwrap_or(&Value::Null), format);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(f) = field {
        let body = resp.body.unwrap_or_default();
        super::data::print_field(body.get("data").unwrap_or(&Value::Null), f)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(b) = &resp.body {
        output::warnings(b);
    }
    match resp.body {
        Some(b) if format != Format::Table => output::structured(format, &b),
        Some(b)
            if b.get("data").is_some_and(|d| !d.is_null())
                || b.get("lease_id").is_some_and(|l| l != "") =>
        {
            output::table(&output::answer_rows(&b));
        }
        _ => println!("Success! Data written to: {path}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn list(
    path: &str,
    show: &crate::args::ListArgs,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = config::client(client)?;
    match c.request("LIST", path, None).await {
        Ok(r) => super::data::print_keys(&r.body.unwrap_or_default(), show.format),
        Err(ClientError::Api { status: 404, .. }) => return Ok(super::data::not_found(path)),
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn delete(path: &str, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    let c = config::client(client)?;
    c.request("DELETE", path, None).await?;
    println!("Success! Data deleted (if it existed) at: {path}");
    Ok(ExitCode::SUCCESS)
}

//! `sigil lease renew|revoke|lookup|list|tidy`, as `vault lease …`.

use std::process::ExitCode;

use serde_json::Value;
use sigil_proto::sys::LeaseRequest;

use crate::args::{Format, LeaseCommand};
use crate::{config, output};

pub(crate) async fn run(cmd: LeaseCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LeaseCommand::Renew {
            id,
            increment,
            format,
            client,
        } => {
            let body = serde_json::to_value(LeaseRequest {
                lease_id: id,
                increment,
            })?;
            let c = config::client(&client)?;
            let resp = c.request("PUT", "sys/leases/renew", Some(&body)).await?;
            let b = resp.body.unwrap_or_default();
            output::warnings(&b);
            match format {
                Format::Json | Format::Yaml => output::structured(format, &b),
                Format::Table => output::table(&output::answer_rows(&b)),
            }
        }
        LeaseCommand::Revoke {
            id,
            prefix,
            force,
            client,
        } => {
            let c = config::client(&client)?;
            let id = id.trim_matches('/');
            if force {
                c.request("PUT", &format!("sys/leases/revoke-force/{id}"), None)
                    .await?;
                println!("Success! Force revoked any leases with prefix: {id}");
            } else if prefix {
                c.request("PUT", &format!("sys/leases/revoke-prefix/{id}"), None)
                    .await?;
                println!("Success! Revoked any leases with prefix: {id}");
            } else {
                c.request("PUT", "sys/leases/revoke", Some(&lease(id)?))
                    .await?;
                println!("Success! Revoked lease: {id}");
            }
        }
        LeaseCommand::Lookup { id, format, client } => {
            let c = config::client(&client)?;
            let resp = c
                .request("PUT", "sys/leases/lookup", Some(&lease(&id)?))
                .await?;
            let b = resp.body.unwrap_or_default();
            match format {
                Format::Json | Format::Yaml => output::structured(format, &b),
                Format::Table => output::table(&output::rows(b.get("data"))),
            }
        }
        LeaseCommand::List {
            prefix,
            show,
            client,
        } => {
            let path = format!("sys/leases/lookup/{}/", prefix.trim_matches('/'));
            return super::generic::list(&path, &show, &client).await;
        }
        LeaseCommand::Tidy { client } => {
            let c = config::client(&client)?;
            let resp = c.request("PUT", "sys/leases/tidy", None).await?;
            let b = resp.body.unwrap_or(Value::Null);
            output::table(&output::rows(b.get("data")));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The body naming lease `id`.
fn lease(id: &str) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(LeaseRequest {
        lease_id: id.to_owned(),
        increment: None,
    })?)
}

//! `sigil secrets enable|disable|list|tune`, as `vault secrets …` (the `sys/mounts` API).

use std::process::ExitCode;

use serde_json::{Map, Value, json};

use crate::args::{Format, MountTtls, SecretsCommand};
use crate::{config, output};

fn mount_path(path: &str) -> String {
    format!("{}/", path.trim_matches('/'))
}

fn ttls(t: &MountTtls, into: &mut Map<String, Value>) {
    if let Some(d) = &t.default_lease_ttl {
        into.insert("default_lease_ttl".into(), json!(d));
    }
    if let Some(m) = &t.max_lease_ttl {
        into.insert("max_lease_ttl".into(), json!(m));
    }
}

pub(crate) async fn run(cmd: SecretsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SecretsCommand::Enable {
            path,
            description,
            ttls: t,
            r#type,
            client,
        } => {
            let path = mount_path(path.as_deref().unwrap_or(&r#type));
            let mut config = Map::new();
            ttls(&t, &mut config);
            let body = json!({
                "type": r#type,
                "description": description.unwrap_or_default(),
                "config": config,
            });
            let c = config::client(&client)?;
            c.request("POST", &format!("sys/mounts/{path}"), Some(&body))
                .await?;
            println!("Success! Enabled the {} secrets engine at: {path}", r#type);
        }
        SecretsCommand::Disable { path, client } => {
            let path = mount_path(&path);
            let c = config::client(&client)?;
            c.request("DELETE", &format!("sys/mounts/{path}"), None)
                .await?;
            println!("Success! Disabled the secrets engine (if it existed) at: {path}");
        }
        SecretsCommand::List {
            format,
            detailed,
            client,
        } => {
            let c = config::client(&client)?;
            let body = c
                .request("GET", "sys/mounts", None)
                .await?
                .body
                .unwrap_or_default();
            match format {
                Format::Json | Format::Yaml => {
                    output::structured(format, body.get("data").unwrap_or(&Value::Null))
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = body
                        .get("data")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                        .map(|(path, m)| {
                            let at = |p: &str| output::cell(m.pointer(p).unwrap_or(&Value::Null));
                            let mut row = vec![path.clone(), at("/type"), at("/accessor")];
                            if detailed {
                                row.push(at("/config/default_lease_ttl"));
                                row.push(at("/config/max_lease_ttl"));
                                row.push(match m.get("options") {
                                    Some(o) if !o.is_null() => o.to_string(),
                                    _ => "n/a".to_owned(),
                                });
                            }
                            row.push(at("/description"));
                            row
                        })
                        .collect();
                    let header: &[&str] = if detailed {
                        &[
                            "Path",
                            "Type",
                            "Accessor",
                            "Default TTL",
                            "Max TTL",
                            "Options",
                            "Description",
                        ]
                    } else {
                        &["Path", "Type", "Accessor", "Description"]
                    };
                    output::columns(header, &rows);
                }
            }
        }
        SecretsCommand::Tune {
            description,
            ttls: t,
            path,
            client,
        } => {
            let path = mount_path(&path);
            let mut body = Map::new();
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            ttls(&t, &mut body);
            let c = config::client(&client)?;
            c.request(
                "POST",
                &format!("sys/mounts/{path}tune"),
                Some(&Value::Object(body)),
            )
            .await?;
            println!("Success! Tuned the secrets engine at: {path}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

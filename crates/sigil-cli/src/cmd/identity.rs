use std::process::ExitCode;

use anyhow::bail;
use serde_json::json;
use sigil_client::e2e::Certification;

use crate::args::IdentityCommand;
use crate::{config, keyfile, output};

pub(crate) async fn run(cmd: IdentityCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IdentityCommand::Create {
            name,
            public_key,
            policies,
            metadata,
            client,
        } => {
            let public = keyfile::read_public(&public_key)?;
            let c = config::client(&client)?;
            // Lists not given keep their stored values on an update. The key comes from your
            // hands, so you certify it for the name (docs/e2e.md).
            let mut body = json!({
                "public_key": public.to_string(),
                "certification": Certification::sign(c.key()?, &name, &public),
            });
            if !policies.is_empty() {
                body["policies"] = json!(policies);
            }
            if !metadata.is_empty() {
                body["metadata"] = super::pairs::string_pairs("--metadata", &metadata)?.into();
            }
            let resp = c
                .request("POST", &format!("identity/entity/name/{name}"), Some(&body))
                .await?;
            output::warnings(&resp.body.unwrap_or_default());
            println!("Success! Identity {name} ({}) saved.", public.keyid());
        }
        IdentityCommand::Certify {
            name,
            public_key,
            client,
        } => {
            let expected = keyfile::read_public(&public_key)?;
            let c = config::client(&client)?;
            let path = format!("identity/entity/name/{name}");
            let stored = c
                .request("GET", &path, None)
                .await?
                .body
                .and_then(|b| b.pointer("/data/public_key").cloned())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            if stored != expected.to_string() {
                bail!(
                    "identity {name} has another key on the server than the one you gave: not certifying"
                );
            }
            let body = json!({ "certification": Certification::sign(c.key()?, &name, &expected) });
            c.request("POST", &path, Some(&body)).await?;
            println!("Success! Identity {name} ({}) certified.", expected.keyid());
        }
        IdentityCommand::List { show, client } => {
            super::data::list_keys(&client, "identity/entity/name", &show).await?
        }
        IdentityCommand::Read { name, show, client } => {
            super::data::read_data(
                &client,
                &format!("identity/entity/name/{name}"),
                "identity",
                &show,
            )
            .await?;
        }
        IdentityCommand::Delete { name, client } => {
            super::data::delete(
                &client,
                &format!("identity/entity/name/{name}"),
                "identity",
                &name,
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

use std::process::ExitCode;

use serde_json::json;

use crate::args::IdentityCommand;
use crate::{config, keyfile};

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
            // Lists not given keep their stored values on an update.
            let mut body = json!({ "public_key": public.to_string() });
            if !policies.is_empty() {
                body["policies"] = json!(policies);
            }
            if !metadata.is_empty() {
                body["metadata"] = super::string_pairs("--metadata", &metadata)?.into();
            }
            let c = config::client(&client)?;
            c.request("POST", &format!("identity/entity/name/{name}"), Some(&body))
                .await?;
            println!("Success! Identity {name} ({}) saved.", public.keyid());
        }
        IdentityCommand::List { client } => {
            super::list_keys(&client, "identity/entity/name").await?
        }
        IdentityCommand::Read { name, client } => {
            super::read_table(&client, &format!("identity/entity/name/{name}")).await?;
        }
        IdentityCommand::Delete { name, client } => {
            super::delete(
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

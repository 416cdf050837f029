use std::process::ExitCode;

use serde_json::json;

use crate::args::IdentityCommand;
use crate::{config, keyfile, output};

pub(crate) async fn run(cmd: IdentityCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IdentityCommand::Create {
            name,
            public_key,
            policies,
            client,
        } => {
            let public = keyfile::read_public(&public_key)?;
            let c = config::client(&client)?;
            c.request(
                "POST",
                &format!("identity/entity/name/{name}"),
                Some(&json!({ "public_key": public.to_string(), "policies": policies })),
            )
            .await?;
            println!("Success! Identity {name} ({}) saved.", public.keyid());
        }
        IdentityCommand::List { client } => {
            let c = config::client(&client)?;
            let resp = c.request("LIST", "identity/entity/name", None).await?;
            output::keys(&resp.body.unwrap_or_default());
        }
        IdentityCommand::Read { name, client } => {
            let c = config::client(&client)?;
            let resp = c
                .request("GET", &format!("identity/entity/name/{name}"), None)
                .await?;
            output::table(&output::rows(
                resp.body.as_ref().and_then(|b| b.get("data")),
            ));
        }
        IdentityCommand::Delete { name, client } => {
            let c = config::client(&client)?;
            c.request("DELETE", &format!("identity/entity/name/{name}"), None)
                .await?;
            println!("Success! Deleted identity: {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

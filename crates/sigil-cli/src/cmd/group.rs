use std::process::ExitCode;

use serde_json::json;

use crate::args::GroupCommand;
use crate::{config, output};

pub(crate) async fn run(cmd: GroupCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GroupCommand::Create {
            name,
            policies,
            members,
            client,
        } => {
            let c = config::client(&client)?;
            c.request(
                "POST",
                &format!("identity/group/name/{name}"),
                Some(&json!({ "policies": policies, "members": members })),
            )
            .await?;
            println!("Success! Group {name} saved.");
        }
        GroupCommand::List { client } => {
            let c = config::client(&client)?;
            let resp = c.request("LIST", "identity/group/name", None).await?;
            output::keys(&resp.body.unwrap_or_default());
        }
        GroupCommand::Read { name, client } => {
            let c = config::client(&client)?;
            let resp = c
                .request("GET", &format!("identity/group/name/{name}"), None)
                .await?;
            output::table(&output::rows(
                resp.body.as_ref().and_then(|b| b.get("data")),
            ));
        }
        GroupCommand::Delete { name, client } => {
            let c = config::client(&client)?;
            c.request("DELETE", &format!("identity/group/name/{name}"), None)
                .await?;
            println!("Success! Deleted group: {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

use std::process::ExitCode;

use serde_json::json;

use crate::args::GroupCommand;
use crate::config;

pub(crate) async fn run(cmd: GroupCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GroupCommand::Create {
            name,
            policies,
            members,
            client,
        } => {
            let c = config::client(&client)?;
            let resp = c
                .request(
                    "POST",
                    &format!("identity/group/name/{name}"),
                    Some(&json!({ "policies": policies, "members": members })),
                )
                .await?;
            crate::output::warnings(&resp.body.unwrap_or_default());
            println!("Success! Group {name} saved.");
        }
        GroupCommand::List { show, client } => {
            super::data::list_keys(&client, "identity/group/name", &show).await?
        }
        GroupCommand::Read { name, show, client } => {
            super::data::read_data(
                &client,
                &format!("identity/group/name/{name}"),
                "group",
                &show,
            )
            .await?;
        }
        GroupCommand::Delete { name, client } => {
            super::data::delete(
                &client,
                &format!("identity/group/name/{name}"),
                "group",
                &name,
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

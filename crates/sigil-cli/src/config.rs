//! Building an SDK client from flags and environment variables.

use anyhow::{Context as _, bail};
use sigil_client::{Client, ClientConfig};

use crate::args::ClientArgs;
use crate::keyfile;

/// What a command needs from the client configuration.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Only the address and CA (unauthenticated calls).
    Nothing,
    /// The caller's key (signed calls that are not sealed, e.g. unseal).
    Key,
    /// The key and the pinned server key (every sealed call).
    KeyAndServer,
}

pub(crate) fn client_with(args: &ClientArgs, needs: Needs) -> anyhow::Result<Client> {
    let key = match (&args.key, needs) {
        (Some(path), Needs::Key | Needs::KeyAndServer) => Some(keyfile::read_key(path)?),
        (None, Needs::Key | Needs::KeyAndServer) => bail!(
            "no key: set SIGIL_KEY (or --key) to your key file; create one with `sigil key generate -o FILE`"
        ),
        (_, Needs::Nothing) => None,
    };
    if needs == Needs::KeyAndServer && args.server_key.is_none() {
        bail!(
            "the server key is not pinned: set SIGIL_SERVER_KEY (or --server-key) to the keyid the server printed at start"
        );
    }
    let ca_pem = match &args.ca_cert {
        Some(p) => Some(
            std::fs::read(p)
                .with_context(|| format!("cannot read CA certificate {}", p.display()))?,
        ),
        None => None,
    };
    let client = Client::new(ClientConfig {
        addr: args.addr.clone(),
        key,
        ca_pem,
        server_keyid: args.server_key.clone(),
    })?;
    Ok(if args.output_policy {
        client.output_policy()
    } else {
        client
    })
}

/// A client for signed and sealed calls.
pub(crate) fn client(args: &ClientArgs) -> anyhow::Result<Client> {
    client_with(args, Needs::KeyAndServer)
}

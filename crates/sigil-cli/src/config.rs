//! Building an SDK client from flags and environment variables.

use anyhow::{Context as _, bail};
use sigil_client::{Client, ClientConfig};

use crate::args::ClientArgs;
use crate::keyfile;

pub(crate) fn client(args: &ClientArgs) -> anyhow::Result<Client> {
    let Some(key_path) = &args.key else {
        bail!(
            "no key: set SIGIL_KEY (or --key) to your key file; create one with `sigil key generate -o FILE`"
        );
    };
    let Some(server_key) = &args.server_key else {
        bail!(
            "the server key is not pinned: set SIGIL_SERVER_KEY (or --server-key) to the keyid the server printed at start"
        );
    };
    let key = keyfile::read_key(key_path)?;
    let ca_pem = match &args.ca_cert {
        Some(p) => Some(
            std::fs::read(p)
                .with_context(|| format!("cannot read CA certificate {}", p.display()))?,
        ),
        None => None,
    };
    Ok(Client::new(ClientConfig {
        addr: args.addr.clone(),
        key,
        ca_pem,
        server_keyid: server_key.clone(),
    })?)
}

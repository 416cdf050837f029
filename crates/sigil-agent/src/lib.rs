//! `sigil agent`: lets applications written for Vault use Sigil unchanged while the key never
//! leaves the agent. A Vault-compatible local API ([`proxy`]), templates rendered to files
//! ([`template`], [`runner`]), and what `sigil run` and `sigil inject` share.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod csi;
pub mod envelope;
pub mod exec;
pub mod gotemplate;
pub mod listen;
pub mod proxy;
pub mod reference;
pub mod runner;
pub mod template;
pub mod wrapping;

use std::sync::Arc;

use sigil_client::Client;

use crate::config::AgentFile;

/// Runs the agent `file` describes, as `client`'s identity: with `exit_after_auth`, renders
/// every template once and returns (an error if any did not render); otherwise serves the
/// local API and keeps the templates current until `shutdown` completes.
pub async fn run(
    file: &AgentFile,
    client: Arc<Client>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let mut runner =
        runner::Runner::new(Arc::clone(&client), &file.template, file.render_interval()?)?;
    if file.exit_after_auth {
        let failed: Vec<String> = runner
            .render_all()
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        return match failed.is_empty() {
            true => Ok(()),
            false => Err(failed.join("; ")),
        };
    }
    let bound = match file.listen()? {
        Some(listen) => Some(listen::bind(&listen).await?),
        None => None,
    };
    let templates = tokio::spawn(runner.run());
    let result = match bound {
        Some(bound) => {
            let proxy = Arc::new(
                proxy::Proxy::new(
                    client,
                    cache::KvCache::new(file.kv_ttl()?),
                    &file.wrapping.trust,
                    matches!(bound, listen::Bound::Tcp(_)),
                )
                .map_err(|e| e.to_string())?,
            );
            tracing::info!(listen = %bound.describe(), "sigil agent: the local API is ready");
            bound.serve(proxy, shutdown).await
        }
        None => {
            shutdown.await;
            Ok(())
        }
    };
    templates.abort();
    result
}

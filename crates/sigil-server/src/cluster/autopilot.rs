//! Autopilot, as Vault's: the health of each member, and the cleanup of dead servers — a voter
//! the leader has not heard from for `dead_server_last_contact_threshold` is removed, as long
//! as at least `min_quorum` voters remain. The configuration is stored in the replicated
//! storage (outside the barrier: it holds no secret), so every leader applies the same.

use std::time::{Duration, Instant};

use sigil_proto::raft::{AutopilotConfig, AutopilotServer, AutopilotState};
use sigil_storage::Backend as _;

use super::Cluster;

/// Where the configuration is kept (plain JSON; not under the barrier's prefixes).
const CONFIG_KEY: &str = "raft/autopilot";

/// A Go duration (`"24h"`, `"90s"`, `"1h30m"`) or a number of seconds.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    sigil_engine::duration::from_text(text, "duration").map_err(|e| e.to_string())
}

impl Cluster {
    /// The stored configuration, or the defaults.
    pub(crate) fn autopilot_config(&self) -> AutopilotConfig {
        match self.raft.get(CONFIG_KEY) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            _ => AutopilotConfig::default(),
        }
    }

    /// Stores `config` (on the leader) after checking its durations.
    pub(crate) fn set_autopilot_config(&self, config: &AutopilotConfig) -> Result<(), String> {
        duration(&config.dead_server_last_contact_threshold)?;
        duration(&config.last_contact_threshold)?;
        if config.min_quorum < 1 {
            return Err("min_quorum must be at least 1".into());
        }
        let bytes = serde_json::to_vec(config).expect("a configuration serializes");
        self.raft.put(CONFIG_KEY, &bytes).map_err(|e| e.to_string())
    }

    /// Each member's health as this node (the leader) sees it. `silent_since`: when this
    /// node started leading (a member it never heard from has been silent since then).
    pub(crate) fn autopilot_state(&self, leading_since: Option<Instant>) -> AutopilotState {
        let config = self.autopilot_config();
        let healthy_within =
            duration(&config.last_contact_threshold).unwrap_or(Duration::from_secs(10));
        let dead_after = duration(&config.dead_server_last_contact_threshold)
            .unwrap_or(Duration::from_secs(86_400));
        let status = self.raft.status();
        let leader = status
            .leader
            .as_ref()
            .map(|l| l.name.clone())
            .unwrap_or_default();
        let mut servers = std::collections::BTreeMap::new();
        let mut voters = Vec::new();
        let mut healthy_voters = 0u32;
        for p in &status.peers {
            let silent = silence(p.last_contact_ms, leading_since);
            let healthy = silent.is_some_and(|s| s < healthy_within);
            if p.voter {
                voters.push(p.member.name.clone());
                healthy_voters += u32::from(healthy);
            }
            servers.insert(
                p.member.name.clone(),
                AutopilotServer {
                    id: p.member.name.clone(),
                    name: p.member.name.clone(),
                    address: p.member.cluster_addr.clone(),
                    node_status: if silent.is_some_and(|s| s >= dead_after) {
                        "left"
                    } else {
                        "alive"
                    }
                    .into(),
                    last_contact: silent.map_or("unknown".into(), |s| {
                        sigil_engine::duration::go_format(s.as_secs())
                    }),
                    last_index: p.matched.unwrap_or(0),
                    healthy,
                    status: match (p.leader, p.voter) {
                        (true, _) => "leader",
                        (false, true) => "voter",
                        (false, false) => "non-voter",
                    }
                    .into(),
                },
            );
        }
        let quorum = voters.len() as u32 / 2 + 1;
        AutopilotState {
            healthy: healthy_voters as usize == voters.len(),
            failure_tolerance: healthy_voters.saturating_sub(quorum),
            leader,
            voters,
            servers,
        }
    }

    /// On the leader: removes the voters silent past the dead-server threshold while at least
    /// `min_quorum` voters remain. Returns the names removed. Blocking.
    pub(crate) fn cleanup_dead_servers(&self, leading_since: Instant) -> Vec<String> {
        let config = self.autopilot_config();
        if !config.cleanup_dead_servers || !self.raft.is_leader() {
            return Vec::new();
        }
        let Ok(dead_after) = duration(&config.dead_server_last_contact_threshold) else {
            return Vec::new();
        };
        let status = self.raft.status();
        let mut voters = status.peers.iter().filter(|p| p.voter).count() as u32;
        let mut removed = Vec::new();
        for p in status.peers.iter().filter(|p| p.voter && !p.leader) {
            let silent = silence(p.last_contact_ms, Some(leading_since));
            if silent.is_none_or(|s| s < dead_after) || voters <= config.min_quorum {
                continue;
            }
            match self.raft.remove(&p.member.name) {
                Ok(()) => {
                    tracing::warn!(
                        node = %p.member.name,
                        silent_secs = silent.map_or(0, |s| s.as_secs()),
                        "autopilot removed a dead server"
                    );
                    voters -= 1;
                    removed.push(p.member.name.clone());
                }
                Err(e) => {
                    tracing::warn!(node = %p.member.name, error = %e, "autopilot could not remove a dead server")
                }
            }
        }
        removed
    }
}

/// How long a member has been silent: since it last answered, or — never heard from by this
/// leader — since this node started leading.
fn silence(last_contact_ms: Option<u64>, leading_since: Option<Instant>) -> Option<Duration> {
    match last_contact_ms {
        Some(ms) => Some(Duration::from_millis(ms)),
        None => leading_since.map(|t| t.elapsed()),
    }
}

//! The audit log: one JSON line per request and per response on every configured device, secret
//! values replaced by HMAC-SHA256 under a per-device key, each line chained to the previous one
//! by hash, and a checkpoint signed by the server key every [`CHECKPOINT_EVERY`] entries and at
//! shutdown (`sigil audit verify`).
//!
//! Fail-closed: a request that no device records in time is refused. Each device has a bounded
//! queue; a socket device has its own writer thread, so a slow socket costs a request at most
//! [`WAIT`], never a hang; a file device is written by the requests whose entries it queues.

mod chain;
mod device;
mod entry;
mod inline;

use std::sync::Arc;
use std::time::Duration;

use sigil_crypto::SecretIdentity;
use zeroize::Zeroizing;

pub use chain::{SetError, VerifyError, VerifySummary, verify, verify_files};
pub use device::{DeviceConfig, Rotation, Sink};
pub use entry::Entry;

use crate::CoreError;
use device::Device;

/// How long a request waits for its entry to be written before it is refused.
pub const WAIT: Duration = Duration::from_secs(2);
/// Entries between signed checkpoints.
pub const CHECKPOINT_EVERY: u64 = 100;

/// The audit devices of an unsealed core.
pub struct Broker {
    devices: Vec<Device>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field(
                "devices",
                &self.devices.iter().map(|d| &d.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Broker {
    /// Starts a writer per device. `key` gives each device's HMAC key.
    pub(crate) fn start(
        configs: &[DeviceConfig],
        mut key: impl FnMut(&str) -> Result<Zeroizing<[u8; 32]>, CoreError>,
        server: &Arc<SecretIdentity>,
    ) -> Result<Broker, CoreError> {
        let mut devices = Vec::with_capacity(configs.len());
        for c in configs {
            let device = Device::start(c, key(&c.name)?, Arc::clone(server), CHECKPOINT_EVERY)
                .map_err(|e| CoreError::bad(format!("audit device {}: {e}", c.name)))?;
            devices.push(device);
        }
        Ok(Broker { devices })
    }

    /// Whether any device is configured.
    pub fn enabled(&self) -> bool {
        !self.devices.is_empty()
    }

    /// Records `entry` on every device; succeeds if at least one wrote it within [`WAIT`]
    /// (always, when no device is configured). The entry is encoded for each device (its data
    /// HMAC-ed under the device's key) here, on the request's thread; each device's writer
    /// thread only chains the lines and writes what was queued while it wrote the last batch
    /// in one go.
    pub async fn log(&self, entry: Entry<'_>) -> Result<(), CoreError> {
        if self.devices.is_empty() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        let pending: Vec<_> = self.devices.iter().map(|d| (d, d.submit(&entry))).collect();
        drop(entry);
        let mut written = false;
        for (device, answer) in pending {
            let result = match answer {
                None => Err("queue full".to_owned()),
                Some(answer) => match tokio::time::timeout_at(deadline, answer).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => Err("the writer stopped".to_owned()),
                    Err(_) => Err("timed out".to_owned()),
                },
            };
            match result {
                Ok(()) => written = true,
                Err(e) => tracing::warn!(device = device.name, error = e, "audit device failed"),
            }
        }
        if written {
            Ok(())
        } else {
            Err(CoreError::AuditUnavailable)
        }
    }

    /// Entries waiting on each device.
    pub fn queue_depths(&self) -> Vec<(String, usize)> {
        self.devices
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    d.depth.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The HMAC of `value` under device `name`'s key, as it appears in that device's log.
    pub fn hash(&self, name: &str, value: &str) -> Option<String> {
        self.devices
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.hash(value))
    }

    /// Writes a final signed checkpoint on every device.
    pub fn close(&self) {
        for d in &self.devices {
            d.close(WAIT);
        }
    }

    /// Ends each device's current file with a signed checkpoint and opens its path again
    /// (SIGHUP): a file that `logrotate` moved away is complete and verifiable, and the chain
    /// goes on in a new file at the same path (`sigil audit verify --continued`). Sockets
    /// reconnect. Returns how many devices there are.
    pub fn reopen(&self) -> usize {
        for d in &self.devices {
            d.reopen(WAIT);
        }
        self.devices.len()
    }
}

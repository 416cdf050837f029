//! Shredding on a Raft node: a change that asked for its old bytes to leave storage
//! ([`sigil_storage::Batch::shred`]) deletes them from the state machine when it is applied,
//! but the bytes are still in the log entry that wrote them, in the last snapshot file and in
//! the pages redb freed. Each node, once it has applied such a change, builds a snapshot that
//! covers it (the older snapshot files are removed), purges its log up to that snapshot, and
//! compacts `raft.redb` and `raft-log.redb`. The node that took the write waits for its own shredding before it
//! answers; the others shred as they apply the entry.

use std::time::Duration;

use tokio::sync::watch;

use crate::store::RaftFile;
use crate::types::Raft;

/// How long one round may wait for openraft to build the snapshot and purge the log.
const ROUND: Duration = Duration::from_secs(60);
/// How long after a failed round the next one starts.
const RETRY: Duration = Duration::from_secs(5);

/// How far this node has shredded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Every shredding change up to this log index is shredded.
    pub(crate) done: u64,
    /// The last round that failed: the index it aimed at and why.
    pub(crate) failed: Option<(u64, String)>,
}

/// Shreds what the state machine asks for, for as long as the node runs.
pub(crate) async fn run(raft: Raft, file: RaftFile, progress: watch::Sender<Progress>) {
    let mut wanted = file.shred_wanted();
    loop {
        let target = *wanted.borrow_and_update();
        if target > progress.borrow().done {
            let started = std::time::Instant::now();
            match through(&raft, &file, target).await {
                Ok(()) => {
                    tracing::info!(
                        index = target,
                        ms = started.elapsed().as_millis() as u64,
                        "shredded: snapshot, log purged, raft.redb and raft-log.redb compacted"
                    );
                    progress.send_modify(|p| {
                        p.done = target;
                        p.failed = None;
                    });
                }
                Err(e) => {
                    tracing::warn!(index = target, error = %e, "shredding failed; retrying");
                    progress.send_modify(|p| p.failed = Some((target, e)));
                    tokio::time::sleep(RETRY).await;
                }
            }
            continue;
        }
        if wanted.changed().await.is_err() {
            return;
        }
    }
}

/// One round: a snapshot covering `target`, the log purged up to it, the file compacted.
async fn through(raft: &Raft, file: &RaftFile, target: u64) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + ROUND;
    let mut metrics = raft.metrics();
    let fatal = |e: openraft::error::Fatal<crate::types::NodeId>| e.to_string();
    loop {
        let snapshot = metrics.borrow_and_update().snapshot.map(|l| l.index);
        if snapshot >= Some(target) {
            break;
        }
        raft.trigger().snapshot().await.map_err(fatal)?;
        changed(&mut metrics, deadline, "a snapshot").await?;
    }
    loop {
        let (snapshot, purged) = {
            let m = metrics.borrow_and_update();
            (m.snapshot.map_or(0, |l| l.index), m.purged.map(|l| l.index))
        };
        if purged >= Some(target) {
            break;
        }
        raft.trigger().purge_log(snapshot).await.map_err(fatal)?;
        changed(&mut metrics, deadline, "the log purge").await?;
    }
    let file = file.clone();
    let patience = deadline.saturating_duration_since(tokio::time::Instant::now());
    tokio::task::spawn_blocking(move || file.compact(patience))
        .await
        .map_err(|e| e.to_string())?
}

/// Waits for the node's metrics to change, until `deadline`.
async fn changed<T: Clone>(
    metrics: &mut watch::Receiver<T>,
    deadline: tokio::time::Instant,
    what: &str,
) -> Result<(), String> {
    match tokio::time::timeout_at(deadline, metrics.changed()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("the node is shutting down".into()),
        Err(_) => Err(format!("{what} did not come within {} s", ROUND.as_secs())),
    }
}

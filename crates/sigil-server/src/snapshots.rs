//! Scheduled snapshots (`[[snapshot]]`): every `interval`, the active node (in a cluster, the
//! leader) writes a snapshot of the whole storage — the signed, checksummed backup of
//! `sigil operator backup` — into a directory, and keeps the newest `retain` of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sigil_core::Core;

/// One schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSchedule {
    /// Where the files go (`sigil-<UTC time>.snap`, 0600).
    pub dir: PathBuf,
    /// How often.
    pub every: Duration,
    /// How many of the newest files are kept.
    pub retain: usize,
}

impl SnapshotSchedule {
    /// A schedule from its settings: `interval` a Go duration (`"1h"`, `"90s"`) of at least a
    /// second, `retain` at least 1.
    pub fn new(dir: PathBuf, interval: &str, retain: usize) -> Result<Self, String> {
        let secs = sigil_engine::duration::seconds(
            &serde_json::Value::String(interval.into()),
            "interval",
        )
        .map_err(|e| e.to_string())?;
        if secs == 0 {
            return Err("interval must be at least 1s".into());
        }
        if retain == 0 {
            return Err("retain must be at least 1".into());
        }
        Ok(SnapshotSchedule {
            dir,
            every: Duration::from_secs(secs),
            retain,
        })
    }
}

/// Starts one task per schedule; `active` gives the core when this node may take them.
pub(crate) fn spawn(
    schedules: Vec<SnapshotSchedule>,
    active: impl Fn() -> Option<Arc<Core>> + Clone + Send + Sync + 'static,
) {
    for schedule in schedules {
        let active = active.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + schedule.every;
            let mut tick = tokio::time::interval_at(start, schedule.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(core) = active() else {
                    continue;
                };
                let schedule = schedule.clone();
                let taken = tokio::task::spawn_blocking(move || take(&core, &schedule)).await;
                match taken {
                    Ok(Ok(path)) => {
                        tracing::info!(file = %path.display(), "scheduled snapshot written")
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "scheduled snapshot failed"),
                    Err(_) => tracing::error!("scheduled snapshot panicked"),
                }
            }
        });
    }
}

/// Writes one snapshot and removes the oldest beyond `retain`. The entries stream from the
/// storage into a temporary file (the store is never held in memory), then the file is
/// written — header, entries — synced and renamed into place.
fn take(core: &Core, schedule: &SnapshotSchedule) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = &schedule.dir;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let now = time::OffsetDateTime::now_utc();
    let name = format!(
        "sigil-{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z.snap",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    );
    let path = dir.join(&name);
    let body = dir.join(format!(".{name}.entries"));
    let tmp = dir.join(format!(".{name}.new"));
    let written = write(core, &body, &tmp);
    let _ = std::fs::remove_file(&body);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    prune(dir, schedule.retain)?;
    Ok(path)
}

/// An I/O error on `path`, as the operator reads it.
fn at(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// The snapshot's entries into `body`, then the whole file into `tmp`, synced.
fn write(core: &Core, body: &Path, tmp: &Path) -> Result<(), String> {
    use std::io::Write as _;
    let entries = std::io::BufWriter::new(private_file(body).map_err(at(body))?);
    let (header, entries) = core.snapshot_to(entries).map_err(|e| e.to_string())?;
    entries.into_inner().map_err(|e| at(body)(e.into_error()))?;
    let mut out = private_file(tmp).map_err(at(tmp))?;
    out.write_all(&header.prefix()).map_err(at(tmp))?;
    let mut entries = std::fs::File::open(body).map_err(at(body))?;
    std::io::copy(&mut entries, &mut out).map_err(at(tmp))?;
    out.sync_all().map_err(at(tmp))
}

/// A new file only its owner may read.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Removes all but the newest `retain` snapshot files (their names sort by time).
fn prune(dir: &Path, retain: usize) -> Result<(), String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sigil-") && n.ends_with(".snap"))
        })
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(retain);
    for old in &files[..excess] {
        std::fs::remove_file(old).map_err(|e| format!("{}: {e}", old.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_checked() {
        let dir = PathBuf::from("/x");
        let s = SnapshotSchedule::new(dir.clone(), "1h30m", 24).unwrap();
        assert_eq!(s.every, Duration::from_secs(5400));
        assert!(SnapshotSchedule::new(dir.clone(), "0s", 1).is_err());
        assert!(SnapshotSchedule::new(dir.clone(), "soon", 1).is_err());
        assert!(SnapshotSchedule::new(dir, "1h", 0).is_err());
    }

    #[test]
    fn pruning_keeps_the_newest_and_nothing_else_of_the_directory_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "sigil-20261206T100000.000Z.snap",
            "sigil-20261206T110000.000Z.snap",
            "sigil-20261206T120000.000Z.snap",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        prune(dir.path(), 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt",
                "sigil-20261206T110000.000Z.snap",
                "sigil-20261206T120000.000Z.snap"
            ]
        );
    }
}

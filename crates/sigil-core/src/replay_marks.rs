//! The stored replay marks (`sys/replay/<bucket>/<digest>`, written by the barrier with the
//! first write of a signed request: `sigil_engine::replay`): loaded into the server's replay
//! cache at unseal, and purged a bucket at a time once they no longer matter.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::CoreError;
use crate::barrier::View;
use crate::replay::{BUCKET_SECS, ReplayMark};

/// The stored marks, and the oldest bucket that may still hold some.
#[derive(Debug)]
pub(crate) struct ReplayMarks {
    view: View,
    /// `i64::MIN` until the first [`ReplayMarks::load`].
    oldest: AtomicI64,
}

impl ReplayMarks {
    /// The marks kept in `view`.
    pub(crate) fn new(view: View) -> Self {
        ReplayMarks {
            view,
            oldest: AtomicI64::new(i64::MIN),
        }
    }

    /// Every stored mark still in force at `now` (read once, at unseal). Read a bucket at a
    /// time, and the keys of a bucket that has ended not at all: after a busy minute the
    /// marks number in the hundreds of thousands.
    pub(crate) fn load(&self, now: i64) -> Result<Vec<ReplayMark>, CoreError> {
        let mut oldest = now;
        let mut live = Vec::new();
        for folder in self.view.list_children("")? {
            let Some(bucket) = folder.strip_suffix('/').and_then(|b| b.parse::<i64>().ok()) else {
                continue;
            };
            oldest = oldest.min(bucket);
            if bucket <= now {
                // Every mark in it was in force until the bucket's end at the latest.
                continue;
            }
            live.extend(
                self.view
                    .list(&folder)?
                    .iter()
                    .filter_map(|k| ReplayMark::from_key(k))
                    .filter(|m| m.until > now),
            );
        }
        self.oldest.fetch_min(oldest, Ordering::AcqRel);
        if self.oldest.load(Ordering::Acquire) == i64::MIN {
            self.oldest.store(oldest, Ordering::Release);
        }
        Ok(live)
    }

    /// Deletes the marks of every bucket that ended by `now`, a bucket at a time from the
    /// oldest; returns how many.
    pub(crate) fn purge(&self, now: i64) -> Result<usize, CoreError> {
        let mut bucket = self.oldest.load(Ordering::Acquire);
        if bucket == i64::MIN {
            self.load(now)?;
            bucket = self.oldest.load(Ordering::Acquire);
        }
        bucket = ReplayMark::bucket(bucket - 1);
        let mut n = 0;
        while bucket <= now {
            let prefix = format!("{:012}/", bucket.max(0));
            let keys = self.view.list(&prefix)?;
            // A busy bucket holds tens of thousands of marks: more than one Raft entry takes.
            self.view.delete_all(&keys, false)?;
            n += keys.len();
            bucket += BUCKET_SECS;
            self.oldest.store(bucket, Ordering::Release);
        }
        Ok(n)
    }
}

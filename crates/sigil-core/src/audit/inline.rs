//! A file device written by the requests themselves. The first entry that finds no write
//! under way writes everything queued — its own line and those queued meanwhile — in one go and
//! answers each; entries queued while it writes wait for it. A request that has led for
//! [`ROUNDS`] batches and still finds entries waiting hands the lead to a thread of its own, so
//! that it can answer; that thread writes until the queue is empty.
//!
//! Why not a writer thread, as sockets have (device.rs): each request waits for two entries,
//! and handing each to a thread and back cost more than writing them — the signed read's
//! server time fell by about a fifth without it (docs/performance.md). Appending to a local
//! file does not wait on anything but the page cache; a socket can hang, so sockets keep their
//! thread and its timeout.

use std::sync::{Arc, Mutex, MutexGuard};

use super::device::{Job, QUEUE, Writer};

/// Batches a request writes before it hands the lead on.
const ROUNDS: usize = 4;

pub(super) struct Inline {
    queue: Mutex<Queue>,
    writer: Mutex<Writer>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Whether someone is writing (and will look at the queue again before it stops).
    leading: bool,
    /// The device was closed: entries are refused.
    closed: bool,
}

/// A lock that a panic elsewhere does not make unusable: the queue stays consistent, and the
/// writer's chain only moves on after a write succeeded.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inline {
    pub(super) fn new(writer: Writer) -> Arc<Inline> {
        Arc::new(Inline {
            queue: Mutex::new(Queue::default()),
            writer: Mutex::new(writer),
        })
    }

    /// Queues `job` and, if nobody is writing, writes. `false`: refused (the device is closed
    /// or its queue is full), and `job` was dropped.
    pub(super) fn submit(self: &Arc<Self>, job: Job) -> bool {
        let mut queue = lock(&self.queue);
        let entry = matches!(job, Job::Entry(..));
        if entry && (queue.closed || queue.jobs.len() >= QUEUE) {
            return false;
        }
        queue.jobs.push(job);
        if queue.leading {
            return true;
        }
        queue.leading = true;
        drop(queue);
        self.lead(ROUNDS);
        true
    }

    /// Writes what is queued, batch after batch, at most `rounds` times; hands the lead on if
    /// entries still wait then (or if a batch panics).
    fn lead(self: &Arc<Self>, rounds: usize) {
        let mut guard = Lead(Some(self));
        for _ in 0..rounds {
            let mut jobs = {
                let mut queue = lock(&self.queue);
                if queue.jobs.is_empty() {
                    queue.leading = false;
                    guard.0 = None;
                    return;
                }
                std::mem::take(&mut queue.jobs)
            };
            if lock(&self.writer).run_batch(&mut jobs) {
                // Closed: what came after the close is refused, as a stopped thread would.
                let mut queue = lock(&self.queue);
                queue.closed = true;
                queue.leading = false;
                guard.0 = None;
                let rest = std::mem::take(&mut queue.jobs);
                drop(queue);
                lock(&self.writer).refuse(rest);
                return;
            }
        }
    }
}

/// The lead, held while writing; dropped before the queue is empty (too many rounds, or a
/// panic), it starts a thread that writes on until the queue is empty.
struct Lead<'a>(Option<&'a Arc<Inline>>);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let Some(inline) = self.0.take() else {
            return;
        };
        let next = Arc::clone(inline);
        let write_on = move || next.lead(usize::MAX);
        // A thread of the runtime's blocking pool when there is a runtime (reused), else one
        // of its own.
        let spawned = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(write_on);
                true
            }
            Err(_) => std::thread::Builder::new()
                .name("sigil-audit-lead".into())
                .spawn(write_on)
                .is_ok(),
        };
        if !spawned {
            // No thread to be had: the next entry leads (without one, the waiting entries
            // time out and their requests are refused: fail-closed).
            tracing::error!("audit: no thread to write the queued entries; the next entry will");
            lock(&inline.queue).leading = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::audit::device::Sink;

    fn inline(path: &std::path::Path) -> (Arc<Inline>, Arc<std::sync::atomic::AtomicUsize>) {
        let server = Arc::new(sigil_crypto::SecretIdentity::generate().unwrap());
        let writer = Writer::for_tests(Sink::File(path.to_owned()), server);
        let depth = writer.depth_for_tests();
        (Inline::new(writer), depth)
    }

    fn lines(path: &std::path::Path) -> usize {
        std::fs::read_to_string(path).unwrap().lines().count()
    }

    /// An entry that finds nobody writing writes at once, before `submit` returns.
    #[test]
    fn the_first_entry_writes_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (inline, depth) = inline(&path);
        let (jobs, mut answers) = lock(&inline.writer).queued(["a"]);
        for job in jobs {
            assert!(inline.submit(job));
        }
        answers.remove(0).try_recv().unwrap().unwrap();
        assert_eq!(lines(&path), 1);
        assert_eq!(depth.load(Ordering::Relaxed), 0);
        assert!(!lock(&inline.queue).leading);
    }

    /// A lead that stops with entries still queued (here after no round at all; in service
    /// after `ROUNDS`, or a panic) hands them to a thread that writes them all.
    #[test]
    fn a_lead_that_stops_early_hands_the_queue_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (inline, depth) = inline(&path);
        let (jobs, answers) = lock(&inline.writer).queued(["a", "b", "c", "d"]);
        {
            let mut queue = lock(&inline.queue);
            queue.jobs = jobs;
            queue.leading = true;
        }
        inline.lead(0);
        for answer in answers {
            answer.blocking_recv().unwrap().unwrap();
        }
        // a b c checkpoint d
        assert_eq!(lines(&path), 5);
        assert_eq!(depth.load(Ordering::Relaxed), 0);
        for _ in 0..200 {
            if !lock(&inline.queue).leading {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the thread that took over never gave the lead back");
    }

    /// After a close, entries are refused (not queued, not counted as waiting) and the file
    /// ends with the close's checkpoint.
    #[test]
    fn entries_after_a_close_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (inline, depth) = inline(&path);
        let (jobs, _answers) = lock(&inline.writer).queued(["a"]);
        inline.submit(jobs.into_iter().next().unwrap());
        let (done, closed) = std::sync::mpsc::sync_channel(1);
        assert!(inline.submit(Job::Close(done)));
        closed.try_recv().unwrap();
        let (jobs, _refused) = lock(&inline.writer).queued(["after"]);
        depth.fetch_sub(1, Ordering::Relaxed); // `Device::submit` uncounts a refused entry
        assert!(!inline.submit(jobs.into_iter().next().unwrap()));
        assert_eq!(lines(&path), 2, "the entry and the closing checkpoint");
        assert_eq!(depth.load(Ordering::Relaxed), 0);
    }
}

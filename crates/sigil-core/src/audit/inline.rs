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

/// Batches a request writes before it hands the lead on.
const ROUNDS: usize = 4;

/// What an inline device writes with (the device's writer, device.rs).
pub(super) trait Batches: Send + 'static {
    /// An entry, or a control (close, reopen).
    type Job: Send + 'static;
    /// Whether `job` is an entry: the queue's bound and a close refuse entries, not controls.
    fn is_entry(job: &Self::Job) -> bool;
    /// Writes `jobs` and answers each; `true` if one of them closed the device.
    fn run_batch(&mut self, jobs: &mut Vec<Self::Job>) -> bool;
    /// Answers jobs that came after a close.
    fn refuse(&self, jobs: Vec<Self::Job>);
}

pub(super) struct Inline<W: Batches> {
    queue: Mutex<Queue<W::Job>>,
    writer: Mutex<W>,
    /// Entries that may wait; more are refused.
    bound: usize,
}

struct Queue<J> {
    jobs: Vec<J>,
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

impl<W: Batches> Inline<W> {
    /// Writes with `writer`, at most `bound` entries waiting.
    pub(super) fn new(writer: W, bound: usize) -> Arc<Self> {
        Arc::new(Inline {
            queue: Mutex::new(Queue {
                jobs: Vec::new(),
                leading: false,
                closed: false,
            }),
            writer: Mutex::new(writer),
            bound,
        })
    }

    /// Queues `job` and, if nobody is writing, writes. `false`: refused (the device is closed
    /// or its queue is full), and `job` was dropped.
    pub(super) fn submit(self: &Arc<Self>, job: W::Job) -> bool {
        let mut queue = lock(&self.queue);
        if W::is_entry(&job) && (queue.closed || queue.jobs.len() >= self.bound) {
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
struct Lead<'a, W: Batches>(Option<&'a Arc<Inline<W>>>);

impl<W: Batches> Drop for Lead<'_, W> {
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
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
    use std::time::Duration;

    use super::*;

    /// Entries are numbers, answered on their channel when written; `None` closes.
    type Job = (Option<u32>, SyncSender<bool>);

    #[derive(Default)]
    struct Log {
        written: Vec<u32>,
        batches: usize,
    }

    impl Batches for Log {
        type Job = Job;
        fn is_entry(job: &Job) -> bool {
            job.0.is_some()
        }
        fn run_batch(&mut self, jobs: &mut Vec<Job>) -> bool {
            self.batches += 1;
            let mut closed = false;
            for (entry, answer) in jobs.drain(..) {
                match entry {
                    Some(n) if !closed => self.written.push(n),
                    Some(_) => {
                        let _ = answer.send(false);
                        continue;
                    }
                    None => closed = true,
                }
                let _ = answer.send(true);
            }
            closed
        }
        fn refuse(&self, jobs: Vec<Job>) {
            for (_, answer) in jobs {
                let _ = answer.send(false);
            }
        }
    }

    fn job(entry: Option<u32>) -> (Job, Receiver<bool>) {
        let (tx, rx) = sync_channel(1);
        ((entry, tx), rx)
    }

    /// An entry that finds nobody writing writes at once, before `submit` returns.
    #[test]
    fn the_first_entry_writes_itself() {
        let inline = Inline::new(Log::default(), 10);
        let (j, answer) = job(Some(1));
        assert!(inline.submit(j));
        assert!(answer.try_recv().unwrap());
        assert_eq!(lock(&inline.writer).written, [1]);
        assert!(!lock(&inline.queue).leading);
    }

    /// Entries queued while someone leads wait for that lead; one that stops with entries
    /// still queued (here after no round at all; in service after `ROUNDS`, or a panic) hands
    /// them to a thread that writes them all in one batch and gives the lead back.
    #[test]
    fn a_lead_that_stops_early_hands_the_queue_on() {
        let inline = Inline::new(Log::default(), 10);
        lock(&inline.queue).leading = true;
        let answers: Vec<_> = (0..4)
            .map(|n| {
                let (j, answer) = job(Some(n));
                assert!(inline.submit(j));
                answer
            })
            .collect();
        assert!(answers[0].try_recv().is_err(), "waiting for the lead");
        inline.lead(0);
        for answer in answers {
            assert!(answer.recv_timeout(Duration::from_secs(5)).unwrap());
        }
        for _ in 0..200 {
            if !lock(&inline.queue).leading {
                let log = lock(&inline.writer);
                assert_eq!(
                    (log.written.as_slice(), log.batches),
                    (&[0, 1, 2, 3][..], 1)
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the thread that took over never gave the lead back");
    }

    /// A full queue and a closed device refuse entries; a close is never refused.
    #[test]
    fn entries_beyond_the_bound_or_after_a_close_are_refused() {
        let inline = Inline::new(Log::default(), 2);
        lock(&inline.queue).leading = true;
        let (a, _) = job(Some(1));
        let (b, _) = job(Some(2));
        let (c, _) = job(Some(3));
        assert!(inline.submit(a) && inline.submit(b));
        assert!(!inline.submit(c), "the queue holds two");
        lock(&inline.queue).leading = false;
        let (close, closed) = job(None);
        assert!(inline.submit(close));
        assert!(closed.try_recv().unwrap());
        assert!(lock(&inline.queue).closed);
        let (d, _) = job(Some(4));
        assert!(!inline.submit(d));
        assert_eq!(lock(&inline.writer).written, [1, 2]);
    }

    /// Many threads at once: every entry written exactly once, in batches.
    #[test]
    fn concurrent_entries_are_each_written_once() {
        let inline = Inline::new(Log::default(), 10_000);
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let inline = Arc::clone(&inline);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let (j, answer) = job(Some(t * 1000 + i));
                        assert!(inline.submit(j));
                        assert!(answer.recv_timeout(Duration::from_secs(5)).unwrap());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut written = lock(&inline.writer).written.clone();
        written.sort_unstable();
        let expected: Vec<u32> = (0..4)
            .flat_map(|t| (0..500).map(move |i| t * 1000 + i))
            .collect();
        assert_eq!(written, expected);
    }
}

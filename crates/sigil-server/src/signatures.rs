//! Request signatures verified in batches (issue 22). A request hands its prepared signature
//! to the node's queue. If fewer requests are verifying than the runtime has workers, it
//! becomes a verifier: it lets the requests that are ready with it add theirs (one yield to the
//! runtime), then verifies everything waiting, up to [`MAX_BATCH`], with one check
//! ([`sigil_crypto::verify_batch`]: a bad signature makes its batch verify each one alone) and
//! answers each. If more arrived meanwhile, a task of its own goes on verifying until the queue
//! is empty. Under load a batch holds several signatures and costs each about half; a lone
//! request verifies its own, after one yield; a few at once keep every worker verifying (one
//! verifier would leave the other cores waiting for its batch).

use std::sync::{Arc, Mutex, OnceLock};

use sigil_crypto::{Signed, verify_batch};
use tokio::sync::oneshot;

/// At most this many signatures in one batch: past 16 a batch costs no less per signature
/// (performance.md), and a batch holds its worker for about 15 µs per signature.
const MAX_BATCH: usize = 32;

type Job = (Signed, oneshot::Sender<bool>);

/// The node's signature verifier.
#[derive(Debug, Default)]
pub(crate) struct Verifier {
    queue: Arc<Mutex<Queue>>,
    /// The runtime's workers: at most this many verify at once (read at the first request).
    workers: OnceLock<usize>,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Job>,
    /// How many verify what is waiting (each until the queue is empty).
    verifiers: usize,
}

impl Verifier {
    /// Whether `signed` verifies.
    pub(crate) async fn verify(&self, signed: Signed) -> bool {
        let workers = *self
            .workers
            .get_or_init(|| tokio::runtime::Handle::current().metrics().num_workers());
        let (answer, wait) = oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().expect("verifier queue");
            queue.waiting.push((signed, answer));
            let lead = queue.verifiers < workers;
            queue.verifiers += usize::from(lead);
            lead
        };
        if lead {
            // Whoever takes the lead owes the queue a verifier until it is empty, even if this
            // request goes away while it yields (or a round panics).
            let mut lead = Lead(Some(self.queue.clone()));
            tokio::task::yield_now().await;
            // One round (this request's own signature is in it, unless another verifier took
            // it first); what is left goes to a task when the lead is dropped.
            lead.round();
        }
        // Every job taken is answered; a closed channel means the job was lost (a round that
        // panicked, or the runtime shutting down): refused.
        wait.await.unwrap_or(false)
    }
}

/// A place among the queue's verifiers. Dropped while it still counts (the queue not empty, its
/// request gone, or a round that panicked), it hands the queue to a task of its own.
struct Lead(Option<Arc<Mutex<Queue>>>);

impl Lead {
    /// Verifies one batch. `false` once the queue is empty and this lead is given up.
    fn round(&mut self) -> bool {
        let Some(queue) = &self.0 else {
            return false;
        };
        let more = verify_round(queue);
        if !more {
            self.0 = None;
        }
        more
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if let Some(queue) = self.0.take() {
            hand_over(queue);
        }
    }
}

/// Runs the queue to empty on a task of its own (or, with no runtime left, gives the place up
/// and, if it was the last verifier, drops the waiting jobs: their requests are refused).
fn hand_over(queue: Arc<Mutex<Queue>>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                let mut lead = Lead(Some(queue));
                loop {
                    tokio::task::yield_now().await;
                    if !lead.round() {
                        break;
                    }
                }
            });
        }
        Err(_) => {
            let mut queue = queue.lock().expect("verifier queue");
            queue.verifiers -= 1;
            if queue.verifiers == 0 {
                queue.waiting.clear();
            }
        }
    }
}

/// Verifies and answers up to [`MAX_BATCH`] waiting signatures. `true` when more are waiting
/// (the caller is still a verifier); `false` when the queue is empty and the caller no longer
/// counts as a verifier.
fn verify_round(queue: &Mutex<Queue>) -> bool {
    let jobs: Vec<Job> = {
        let mut queue = queue.lock().expect("verifier queue");
        let n = queue.waiting.len().min(MAX_BATCH);
        queue.waiting.drain(..n).collect()
    };
    if !jobs.is_empty() {
        let (batch, answers): (Vec<Signed>, Vec<oneshot::Sender<bool>>) = jobs.into_iter().unzip();
        crate::telemetry::signature_batch(batch.len());
        let results = verify_batch(&batch);
        for (answer, ok) in answers.into_iter().zip(results) {
            // A request that went away no longer listens.
            let _ = answer.send(ok);
        }
    }
    let mut queue = queue.lock().expect("verifier queue");
    if queue.waiting.is_empty() {
        queue.verifiers -= 1;
        false
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_crypto::SecretIdentity;

    fn signed(id: &SecretIdentity, message: &[u8], good: bool) -> Signed {
        let mut sig = id.sign(message);
        if !good {
            sig[40] ^= 1;
        }
        Signed::new(&id.public(), message.to_vec(), &sig).unwrap()
    }

    /// Many requests at once, some with bad signatures: each gets its own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_each_get_their_own_answer() {
        let verifier = Arc::new(Verifier::default());
        let id = Arc::new(SecretIdentity::generate().unwrap());
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let (verifier, id) = (verifier.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let good = i % 7 != 3;
                let ok = verifier.verify(signed(&id, &i.to_be_bytes(), good)).await;
                (good, ok)
            }));
        }
        for task in tasks {
            let (good, ok) = task.await.unwrap();
            assert_eq!(good, ok);
        }
        // One alone, after the rush.
        assert!(verifier.verify(signed(&id, b"alone", true)).await);
        assert!(!verifier.verify(signed(&id, b"alone", false)).await);
    }

    /// A request that stops waiting, even one that took the lead, does not stop the others'
    /// answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_goes_away_leaves_the_verifier_working() {
        let verifier = Arc::new(Verifier::default());
        let id = SecretIdentity::generate().unwrap();
        for i in 0..50u32 {
            let gone = verifier.verify(signed(&id, &i.to_be_bytes(), true));
            // Polled once (queued), then dropped.
            let _ = tokio::time::timeout(std::time::Duration::ZERO, gone).await;
        }
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            verifier.verify(signed(&id, b"still here", true)),
        );
        assert!(answer.await.expect("the queue still has a verifier"));
    }
}

//! A linearizability checker for recorded histories (Wing & Gong's search with Lowe's cache of
//! visited configurations, as Porcupine does it): is there one order of the operations, each
//! placed somewhere between its call and its return, in which a sequential model gives every
//! recorded answer?
//!
//! An operation whose outcome is unknown (a timeout, a dropped connection) has no return: it
//! may take effect at any point after its call, or never (placed last, it changes nothing
//! anyone saw). Check each key on its own: a history is linearizable if and only if every
//! key's history is (linearizability is compositional).

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash;
    /// An operation with its recorded answer.
    type Op;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// The state after `op` in `state`, if `op`'s recorded answer is what `state` gives.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One recorded operation: when it was called and when it returned (`None`: unknown outcome),
/// on any clock shared by all clients.
#[derive(Debug, Clone)]
pub struct Recorded<O> {
    pub call: u64,
    pub ret: Option<u64>,
    pub op: O,
}

const HEAD: usize = 0;

/// `Ok` if `history` is linearizable under `model`, else which operation could not be placed.
pub fn check<M: Model>(model: &M, history: &[Recorded<M::Op>]) -> Result<(), String>
where
    M::Op: std::fmt::Debug,
{
    // Events: index 0 is the list's head; then a call and a return per operation, in time
    // order. At equal times a call sorts first (the two overlap: nothing is assumed).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * history.len());
    for (i, r) in history.iter().enumerate() {
        events.push((r.call, false, i));
        events.push((r.ret.unwrap_or(u64::MAX), true, i));
    }
    events.sort_by_key(|&(time, is_return, i)| (time, is_return, i));
    let n = events.len() + 1;
    let mut next: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
    next[n - 1] = usize::MAX;
    let mut return_of = vec![0usize; history.len()];
    for (pos, &(_, is_return, i)) in events.iter().enumerate() {
        if is_return {
            return_of[i] = pos + 1;
        }
    }
    let event = |e: usize| events[e - 1];
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        next[prev[e]] = next[e];
        if next[e] != usize::MAX {
            prev[next[e]] = prev[e];
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        next[prev[e]] = e;
        if next[e] != usize::MAX {
            prev[next[e]] = e;
        }
    };

    let words = history.len().div_ceil(64);
    let mut placed = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut furthest = 0;
    let mut entry = next[HEAD];
    while entry != usize::MAX {
        let (_, is_return, i) = event(entry);
        if !is_return {
            if let Some(after) = model.step(&state, &history[i].op) {
                placed[i / 64] |= 1 << (i % 64);
                if seen.insert((placed.clone(), after.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, after)));
                    furthest = furthest.max(stack.len());
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, return_of[i]);
                    entry = next[HEAD];
                    continue;
                }
                placed[i / 64] &= !(1 << (i % 64));
            }
            entry = next[entry];
        } else {
            // Operation `i` returned before anything placed it: undo the last placement.
            let Some((call, before)) = stack.pop() else {
                return Err(format!(
                    "not linearizable: no order places {:?} (at most {furthest} of {} operations \
                     were placed)",
                    history[i].op,
                    history.len()
                ));
            };
            let (_, _, j) = event(call);
            placed[j / 64] &= !(1 << (j % 64));
            state = before;
            relink(&mut next, &mut prev, return_of[j]);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Ok(())
}

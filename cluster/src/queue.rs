//! A bounded queue that is FIFO per key and round-robin across keys, so that one submitter
//! with a thousand tasks queued cannot starve another's single task.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

pub(crate) struct FairQueue<K, T> {
    lanes: HashMap<K, VecDeque<T>>,
    /// Keys with queued items, in the order they get their next turn.
    turns: VecDeque<K>,
    len: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, T> FairQueue<K, T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            lanes: HashMap::new(),
            turns: VecDeque::new(),
            len: 0,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// At or past its capacity. Admission asks before it pushes; work admitted once already
    /// (a rerun after a restart) is pushed regardless.
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Queues `item` behind `key`'s earlier items.
    pub fn push(&mut self, key: K, item: T) {
        let lane = self.lanes.entry(key.clone()).or_default();
        if lane.is_empty() {
            self.turns.push_back(key);
        }
        lane.push_back(item);
        self.len += 1;
    }

    /// Items queued behind `key`.
    pub fn lane_len(&self, key: &K) -> usize {
        self.lanes.get(key).map_or(0, VecDeque::len)
    }

    /// The next item of the key whose turn it is; that key then goes to the back.
    #[cfg(test)]
    pub fn pop(&mut self) -> Option<T> {
        self.pop_eligible(|_, _| true)
    }

    /// The head item of the first key, in turn order, for which `eligible(key, head)` holds;
    /// that key then goes to the back. Keys passed over keep their place, so a submitter held
    /// back by a cap is first in line once the cap allows it again.
    pub fn pop_eligible(&mut self, eligible: impl Fn(&K, &T) -> bool) -> Option<T> {
        let at = self.turns.iter().position(|key| {
            self.lanes
                .get(key)
                .and_then(VecDeque::front)
                .is_some_and(|head| eligible(key, head))
        })?;
        let key = self.turns.remove(at)?;
        let lane = self.lanes.get_mut(&key)?;
        let item = lane.pop_front();
        if lane.is_empty() {
            self.lanes.remove(&key);
        } else {
            self.turns.push_back(key);
        }
        self.len -= usize::from(item.is_some());
        item
    }

    /// Takes out the first of `key`'s items that matches.
    pub fn remove(&mut self, key: &K, matches: impl Fn(&T) -> bool) -> Option<T> {
        let lane = self.lanes.get_mut(key)?;
        let item = lane.remove(lane.iter().position(matches)?)?;
        if lane.is_empty() {
            self.lanes.remove(key);
            self.turns.retain(|k| k != key);
        }
        self.len -= 1;
        Some(item)
    }

    /// Empties the queue, in no particular order.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.turns.clear();
        self.len = 0;
        self.lanes.drain().flat_map(|(_, lane)| lane)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_within_a_key_round_robin_across_keys() {
        let mut q = FairQueue::new(100);
        for i in 0..3 {
            q.push("a", ("a", i));
        }
        q.push("b", ("b", 0));
        q.push("c", ("c", 0));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("a", 2)]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn the_queue_says_when_it_is_full() {
        let mut q = FairQueue::new(2);
        q.push(1, 'x');
        assert!(!q.is_full());
        q.push(2, 'y');
        assert!(q.is_full());
        q.pop();
        assert!(!q.is_full());
    }

    #[test]
    fn keys_passed_over_keep_their_turn() {
        let mut q = FairQueue::new(10);
        q.push("a", 1);
        q.push("a", 2);
        q.push("b", 10);
        q.push("c", 20);
        assert_eq!(q.pop_eligible(|k, _| *k != "a"), Some(10));
        assert_eq!(q.pop_eligible(|_, &i| i > 100), None);
        assert_eq!(q.lane_len(&"a"), 2);
        // "a" was passed over, not sent to the back: it is still first.
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), Some(20));
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn remove_keeps_the_rest_in_order() {
        let mut q = FairQueue::new(10);
        q.push("a", 1);
        q.push("a", 2);
        q.push("b", 3);
        assert_eq!(q.remove(&"a", |&i| i == 1), Some(1));
        assert_eq!(q.remove(&"b", |&i| i == 3), Some(3));
        assert_eq!(q.remove(&"b", |&i| i == 3), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), None);
    }
}

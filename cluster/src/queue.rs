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

    /// Queues `item` behind `key`'s earlier items; gives it back when the queue is full.
    pub fn push(&mut self, key: K, item: T) -> Result<(), T> {
        if self.len >= self.capacity {
            return Err(item);
        }
        let lane = self.lanes.entry(key.clone()).or_default();
        if lane.is_empty() {
            self.turns.push_back(key);
        }
        lane.push_back(item);
        self.len += 1;
        Ok(())
    }

    /// The next item of the key whose turn it is; that key then goes to the back.
    pub fn pop(&mut self) -> Option<T> {
        let key = self.turns.pop_front()?;
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
            q.push("a", ("a", i)).unwrap();
        }
        q.push("b", ("b", 0)).unwrap();
        q.push("c", ("c", 0)).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("a", 2)]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn full_queue_gives_the_item_back() {
        let mut q = FairQueue::new(2);
        q.push(1, 'x').unwrap();
        q.push(2, 'y').unwrap();
        assert_eq!(q.push(1, 'z'), Err('z'));
        q.pop();
        assert!(q.push(1, 'z').is_ok());
    }

    #[test]
    fn remove_keeps_the_rest_in_order() {
        let mut q = FairQueue::new(10);
        q.push("a", 1).unwrap();
        q.push("a", 2).unwrap();
        q.push("b", 3).unwrap();
        assert_eq!(q.remove(&"a", |&i| i == 1), Some(1));
        assert_eq!(q.remove(&"b", |&i| i == 3), Some(3));
        assert_eq!(q.remove(&"b", |&i| i == 3), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), None);
    }
}

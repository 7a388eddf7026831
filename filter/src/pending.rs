//! What a stream's request phase leaves for its response phase, keyed by proxy-wasm context id.
//!
//! Context ids are handed out in sequence, and nearly every stream is answered before a few
//! hundred newer ones start, so a small direct-mapped table (slot = id modulo its size) holds
//! them with one array access each way. A stream still waiting when a newer one needs its slot
//! moves to a map, which is bounded too: a stream whose response never comes (the client went
//! away before it) would otherwise stay forever. Beyond the bound the oldest half is dropped;
//! a stream dropped that way is answered with no state, which the filter treats as a stream it
//! did not see — its response is not counted, nothing worse.

use std::collections::HashMap;

pub struct PendingStreams<T> {
    slots: Vec<Option<(u32, T)>>,
    spilled: HashMap<u32, T>,
    max_spilled: usize,
}

impl<T> PendingStreams<T> {
    pub fn new(slots: usize, max_spilled: usize) -> Self {
        PendingStreams {
            slots: (0..slots.max(1)).map(|_| None).collect(),
            spilled: HashMap::new(),
            max_spilled: max_spilled.max(2),
        }
    }

    fn slot(&self, id: u32) -> usize {
        id as usize % self.slots.len()
    }

    pub fn insert(&mut self, id: u32, value: T) {
        let slot = self.slot(id);
        if let Some((older, waiting)) = self.slots[slot].replace((id, value)) {
            if older != id {
                self.spill(id, older, waiting);
            }
        }
    }

    pub fn take(&mut self, id: u32) -> Option<T> {
        let slot = self.slot(id);
        match &self.slots[slot] {
            Some((held, _)) if *held == id => self.slots[slot].take().map(|(_, value)| value),
            _ => self.spilled.remove(&id),
        }
    }

    /// Streams waiting, wherever they are kept.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count() + self.spilled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn spill(&mut self, newest: u32, id: u32, value: T) {
        if self.spilled.len() >= self.max_spilled {
            // Ids are handed out in sequence (and wrap around): age = distance to the newest.
            let mut ages: Vec<u32> = self
                .spilled
                .keys()
                .map(|&k| newest.wrapping_sub(k))
                .collect();
            ages.sort_unstable();
            let keep_below = ages[ages.len() / 2];
            self.spilled
                .retain(|&k, _| newest.wrapping_sub(k) < keep_below);
        }
        self.spilled.insert(id, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_answered_in_any_order_find_their_state() {
        let mut p = PendingStreams::new(4, 100);
        for id in 1..=10 {
            p.insert(id, id * 10);
        }
        assert_eq!(p.len(), 10);
        for id in [3, 10, 1, 7, 2, 9, 4, 8, 6, 5] {
            assert_eq!(p.take(id), Some(id * 10), "{id}");
            assert_eq!(p.take(id), None);
        }
        assert!(p.is_empty());
    }

    #[test]
    fn abandoned_streams_do_not_pile_up() {
        let mut p = PendingStreams::new(4, 8);
        for id in 0..1_000u32 {
            p.insert(id, ());
        }
        assert!(p.len() <= 4 + 8, "{}", p.len());
        // The newest are still there.
        assert_eq!(p.take(999), Some(()));
        assert_eq!(p.take(995), Some(()));
        assert_eq!(p.take(0), None);
    }

    #[test]
    fn ids_wrap_around() {
        let mut p = PendingStreams::new(2, 4);
        for id in (u32::MAX - 20)..=u32::MAX {
            p.insert(id, id);
        }
        for id in 0..20u32 {
            p.insert(id, id);
        }
        assert_eq!(p.take(19), Some(19));
        assert_eq!(p.take(u32::MAX - 20), None);
    }
}

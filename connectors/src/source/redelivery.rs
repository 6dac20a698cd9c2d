//! Dropping redeliveries of messages this process already holds or has acked.
//!
//! Brokers redeliver: Pulsar what was unacked on a connection that dropped, and after a broker
//! crash what was acked but not yet persisted (docs/local-brokers.md); Pub/Sub after a lease
//! expires. Writing a redelivered message again would be a legal
//! at-least-once duplicate, but it is wasted work and noise for consumers; a message that is
//! still in flight, or was acked moments ago, is dropped instead (and re-acked if acked).

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// What the filter knows about a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// First time seen (now tracked as in flight): process it.
    New,
    /// The same message is being processed: drop this copy.
    InFlight,
    /// The message was acked recently: ack this copy again, then drop it.
    AlreadyAcked,
}

pub(crate) struct RedeliveryFilter<K> {
    in_flight: HashSet<K>,
    acked: HashSet<K>,
    acked_order: VecDeque<K>,
    acked_capacity: usize,
}

impl<K: Hash + Eq + Clone> RedeliveryFilter<K> {
    /// Remembers up to `acked_capacity` acked messages (oldest forgotten first).
    pub(crate) fn new(acked_capacity: usize) -> Self {
        Self {
            in_flight: HashSet::new(),
            acked: HashSet::new(),
            acked_order: VecDeque::new(),
            acked_capacity,
        }
    }

    pub(crate) fn delivered(&mut self, id: &K) -> Delivery {
        if self.acked.contains(id) {
            Delivery::AlreadyAcked
        } else if !self.in_flight.insert(id.clone()) {
            Delivery::InFlight
        } else {
            Delivery::New
        }
    }

    pub(crate) fn acked(&mut self, id: K) {
        self.in_flight.remove(&id);
        if self.acked_capacity == 0 || !self.acked.insert(id.clone()) {
            return;
        }
        self.acked_order.push_back(id);
        if self.acked_order.len() > self.acked_capacity
            && let Some(oldest) = self.acked_order.pop_front()
        {
            self.acked.remove(&oldest);
        }
    }

    /// The message was nacked or dropped unprocessed: a later delivery is new again.
    pub(crate) fn released(&mut self, id: &K) {
        self.in_flight.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_new_in_flight_and_acked_apart() {
        let mut filter = RedeliveryFilter::new(2);
        assert_eq!(filter.delivered(&1), Delivery::New);
        assert_eq!(filter.delivered(&1), Delivery::InFlight);
        filter.acked(1);
        assert_eq!(filter.delivered(&1), Delivery::AlreadyAcked);
        assert_eq!(filter.delivered(&2), Delivery::New);
        filter.released(&2);
        assert_eq!(
            filter.delivered(&2),
            Delivery::New,
            "a released message counts as new"
        );
    }

    #[test]
    fn forgets_the_oldest_acked_beyond_capacity() {
        let mut filter = RedeliveryFilter::new(2);
        for id in 1..=3 {
            assert_eq!(filter.delivered(&id), Delivery::New);
            filter.acked(id);
        }
        assert_eq!(filter.delivered(&1), Delivery::New, "forgotten");
        assert_eq!(filter.delivered(&3), Delivery::AlreadyAcked);
    }
}

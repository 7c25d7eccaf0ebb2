//! A shard's expiry queue: terminal jobs in the order they must be dropped.
//!
//! Owns the completion instants of terminal jobs. Completions happen in time
//! order on a shard, so a FIFO of `(completed, id)` *is* the timing wheel, and
//! because every job shares one TTL (changeable at run time), the due jobs are
//! always a prefix: each sweep pops `completed + ttl <= now` only, O(expired),
//! and a new TTL applies at once to every job already retained. Entries of
//! jobs deleted earlier are popped and ignored by the job table. It knows
//! nothing of the job table.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::QueryId;

#[derive(Default)]
pub(crate) struct ExpiryQueue {
    due: VecDeque<(Instant, QueryId)>,
}

impl ExpiryQueue {
    /// Schedules `id`, completed at `completed` (clamped so the queue stays sorted).
    pub fn push(&mut self, completed: Instant, id: QueryId) {
        let completed = match self.due.back() {
            Some(&(last, _)) if last > completed => last,
            _ => completed,
        };
        self.due.push_back((completed, id));
    }

    /// The next id completed at least `ttl` before `now`.
    pub fn pop_due(&mut self, now: Instant, ttl: Duration) -> Option<QueryId> {
        match self.due.front() {
            Some(&(c, _)) if c + ttl <= now => self.due.pop_front().map(|(_, id)| id),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_only_what_is_due_in_order_under_any_ttl() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = ExpiryQueue::default();
        let ids: Vec<QueryId> = (0..4).map(|_| uuid::Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            q.push(t0 + ms(10 * i as u64), *id);
        }
        let ttl = ms(100);
        assert_eq!(q.pop_due(t0 + ms(115), ttl), Some(ids[0]));
        assert_eq!(q.pop_due(t0 + ms(115), ttl), Some(ids[1]));
        assert_eq!(q.pop_due(t0 + ms(115), ttl), None);
        assert_eq!(q.len(), 2);
        // A shorter TTL applies at once to what is already queued.
        assert_eq!(q.pop_due(t0 + ms(25), ms(0)), Some(ids[2]));
        // An out-of-order push is clamped, never reordered.
        q.push(t0, ids[0]);
        assert_eq!(q.pop_due(t0 + ms(30), ms(0)), Some(ids[3]));
        assert_eq!(q.pop_due(t0 + ms(30), ms(0)), Some(ids[0]));
        assert_eq!(q.pop_due(t0 + ms(30), ms(0)), None);
    }
}

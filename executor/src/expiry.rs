//! A shard's expiry queue: terminal jobs in the order they must be dropped.
//!
//! Owns the deadlines `completed_at + QUERY_RESULT_TTL`. Because the TTL is
//! one constant per engine and completions happen in time order on a shard,
//! deadlines are pushed in non-decreasing order: a FIFO *is* the timing wheel,
//! with one slot per job and no rounding. Each sweep pops only what is due —
//! O(expired) — and never scans live jobs. Entries of jobs deleted earlier are
//! popped at their deadline and ignored by the shard. It knows nothing of the
//! job table.

use std::collections::VecDeque;
use std::time::Instant;

use crate::QueryId;

#[derive(Default)]
pub(crate) struct ExpiryQueue {
    due: VecDeque<(Instant, QueryId)>,
}

impl ExpiryQueue {
    /// Schedules `id` to expire at `deadline` (clamped so the queue stays sorted).
    pub fn push(&mut self, deadline: Instant, id: QueryId) {
        let deadline = match self.due.back() {
            Some(&(last, _)) if last > deadline => last,
            _ => deadline,
        };
        self.due.push_back((deadline, id));
    }

    /// The next id whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<QueryId> {
        match self.due.front() {
            Some(&(d, _)) if d <= now => self.due.pop_front().map(|(_, id)| id),
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
    use std::time::Duration;

    #[test]
    fn pops_only_what_is_due_in_order() {
        let t0 = Instant::now();
        let mut q = ExpiryQueue::default();
        let ids: Vec<QueryId> = (0..4).map(|_| uuid::Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            q.push(t0 + Duration::from_millis(10 * i as u64), *id);
        }
        assert_eq!(q.pop_due(t0 + Duration::from_millis(15)), Some(ids[0]));
        assert_eq!(q.pop_due(t0 + Duration::from_millis(15)), Some(ids[1]));
        assert_eq!(q.pop_due(t0 + Duration::from_millis(15)), None);
        assert_eq!(q.len(), 2);
        // An out-of-order push is clamped, never reordered.
        q.push(t0, ids[0]);
        assert_eq!(q.pop_due(t0 + Duration::from_millis(25)), Some(ids[2]));
        assert_eq!(q.pop_due(t0 + Duration::from_millis(25)), None);
        assert_eq!(q.pop_due(t0 + Duration::from_millis(30)), Some(ids[3]));
        assert_eq!(q.pop_due(t0 + Duration::from_millis(30)), Some(ids[0]));
    }
}

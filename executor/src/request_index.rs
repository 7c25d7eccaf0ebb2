//! The engine's one request-id index: request id -> the job it created.
//!
//! Owns idempotency across shards: a submit with a request id is created on
//! whichever shard received it (like any other job), and this index decides
//! which of several racing submits of one request id wins. It is one
//! concurrent map (papaya) shared by every shard's job table. Lookups,
//! claims and releases are atomic operations on the table, with no lock a
//! reactor could queue behind, and a resize is incremental (a writer copies
//! a chunk of 64 entries to the new table and goes on). papaya's one wait: a
//! write meeting the very entry another thread is copying during a resize
//! spins (rarely parks) until that one entry is copied. Memory
//! of removed entries is reclaimed by epochs (seize), built without the
//! `fast-barrier` feature so that is fences, never a syscall; a thread frees
//! its removed entries in batches (seize: 32, or the CPU count if larger), so
//! at most a batch of released request ids per shard thread outlive their jobs (each at
//! most a request body long).
//!
//! Written only by the job tables' transitions (`table.rs`): a claim when a
//! job is added, a compare-and-release when it leaves its table (delete,
//! expiry, consumed drop, shutdown). An entry therefore always names a job
//! that is in its owner's table, or one leaving it on its owner's thread at
//! that very moment, and the index holds at most one entry per retained job.
//! It never touches jobs, the feed or DuckDB.

use std::sync::Arc;

use papaya::HashMap;

use crate::QueryId;

/// Request id -> query id, for every retained job that has a request id.
pub(crate) struct RequestIndex {
    map: HashMap<Arc<str>, QueryId>,
}

impl RequestIndex {
    pub fn new() -> RequestIndex {
        RequestIndex {
            map: HashMap::new(),
        }
    }

    /// The job `rid` created, if it is still retained.
    pub fn get(&self, rid: &str) -> Option<QueryId> {
        self.map.pin().get(rid).copied()
    }

    /// Makes `id` the job of `rid`, unless `rid` already names a job: then
    /// nothing changes and that job's id comes back. Of racing claims for one
    /// request id, on any threads, exactly one wins.
    pub fn claim(&self, rid: Arc<str>, id: QueryId) -> Result<(), QueryId> {
        match self.map.pin().try_insert(rid, id) {
            Ok(_) => Ok(()),
            Err(taken) => Err(*taken.current),
        }
    }

    /// Forgets `rid` if it still names `id` (compare-and-remove), so a job
    /// leaving its table never drops an entry that a newer job now owns.
    /// True when the entry was removed.
    pub fn release(&self, rid: &str, id: QueryId) -> bool {
        matches!(self.map.pin().remove_if(rid, |_, v| *v == id), Ok(Some(_)))
    }

    /// Request ids held: one per retained job that has one.
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn id() -> QueryId {
        uuid::Uuid::new_v4()
    }

    #[test]
    fn first_claim_wins_and_release_compares() {
        let ix = RequestIndex::new();
        let (a, b) = (id(), id());
        assert_eq!(ix.claim("r".into(), a), Ok(()));
        assert_eq!(ix.claim("r".into(), b), Err(a));
        assert_eq!(ix.get("r"), Some(a));
        // A job that lost (or an older one) never removes the winner's entry.
        assert!(!ix.release("r", b));
        assert_eq!(ix.get("r"), Some(a));
        assert!(ix.release("r", a));
        assert_eq!((ix.get("r"), ix.len()), (None, 0));
        // Reused after its job left: a new job takes it.
        assert_eq!(ix.claim("r".into(), b), Ok(()));
        assert_eq!(ix.get("r"), Some(b));
    }

    #[test]
    fn racing_claims_on_many_threads_have_one_winner_each() {
        const THREADS: usize = 8;
        const RIDS: usize = 2000;
        let ix = Arc::new(RequestIndex::new());
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let ix = ix.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..RIDS)
                        .map(|k| {
                            let mine = id();
                            match ix.claim(format!("rid-{k}").into(), mine) {
                                Ok(()) => (k, mine, true),
                                Err(winner) => (k, winner, false),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        for k in 0..RIDS {
            let seen: Vec<_> = all.iter().filter(|(r, _, _)| *r == k).collect();
            assert_eq!(seen.iter().filter(|(_, _, won)| *won).count(), 1, "rid-{k}");
            assert!(seen.iter().all(|(_, i, _)| *i == seen[0].1), "rid-{k}");
            assert_eq!(ix.get(&format!("rid-{k}")), Some(seen[0].1));
        }
        assert_eq!(ix.len(), RIDS);
        for k in 0..RIDS {
            let rid = format!("rid-{k}");
            let winner = ix.get(&rid).unwrap();
            assert!(ix.release(&rid, winner));
        }
        assert_eq!(ix.len(), 0);
    }
}

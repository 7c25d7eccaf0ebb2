//! Which shard owns what: query ids to shard indexes.
//!
//! Owns the stable hash of a query id and the id drawing that makes a new
//! job's id hash back to the shard creating it. (Request ids are not routed:
//! a job with one is created where any other job would be, and the engine's
//! request-id index finds it.) Pure functions: no state, no I/O.

use crate::QueryId;

/// A 64-bit finalizer (splitmix64): spreads any input over all bits so that
/// `% shards` is fair even for hand-made ids.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The shard that owns query `id`.
#[inline]
pub fn owner_of_query(id: QueryId, shards: usize) -> usize {
    let (hi, lo) = id.as_u64_pair();
    (mix(hi ^ mix(lo)) % shards as u64) as usize
}

/// A fresh random (v4) id owned by `shard`. Draws until one hashes there:
/// `shards` draws on average.
pub fn new_id_for(shard: usize, shards: usize) -> QueryId {
    loop {
        let id = uuid::Uuid::new_v4();
        if owner_of_query(id, shards) == shard {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_ids_hash_back_and_spread() {
        for shards in 1..6 {
            let mut per = vec![0usize; shards];
            for s in 0..shards {
                for _ in 0..200 {
                    let id = new_id_for(s, shards);
                    assert_eq!(owner_of_query(id, shards), s);
                    assert_eq!(id.get_version_num(), 4);
                }
            }
            // Random ids spread fairly over the shards.
            for _ in 0..2000 {
                per[owner_of_query(uuid::Uuid::new_v4(), shards)] += 1;
            }
            assert!(per.iter().all(|&c| c > 2000 / shards / 2), "{per:?}");
        }
    }
}

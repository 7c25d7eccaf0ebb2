//! Seeded pseudo-random numbers for reproducible operation mixes.
//!
//! Owns: a SplitMix64 generator and weighted choice. Hand-written so a given
//! `--seed` yields the same mix in every version of loadgen (library RNGs
//! do not promise stable streams). Never used for anything secret.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator for one worker: independent streams from one seed.
    pub fn for_worker(seed: u64, worker: usize) -> Rng {
        let mut r = Rng(seed ^ (worker as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by Lemire's multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// A fixed set of weighted choices, sampled by cumulative weight.
#[derive(Debug, Clone)]
pub struct Weighted {
    cumulative: Vec<u64>,
}

impl Weighted {
    /// `None` when no weight is positive.
    pub fn new(weights: &[u64]) -> Option<Weighted> {
        let mut acc = 0u64;
        let cumulative: Vec<u64> = weights
            .iter()
            .map(|w| {
                acc += w;
                acc
            })
            .collect();
        (acc > 0).then_some(Weighted { cumulative })
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().expect("non-empty by construction");
        let x = rng.below(total);
        self.cumulative.partition_point(|&c| c <= x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_workers_differ() {
        let a: Vec<u64> = {
            let mut r = Rng::for_worker(7, 0);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::for_worker(7, 0);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::for_worker(7, 1);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn weighted_pick_follows_weights_and_skips_zero() {
        let w = Weighted::new(&[1, 0, 3]).unwrap();
        let mut r = Rng::new(42);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[w.pick(&mut r)] += 1;
        }
        assert_eq!(counts[1], 0);
        let ratio = f64::from(counts[2]) / f64::from(counts[0]);
        assert!((2.7..3.3).contains(&ratio), "ratio {ratio}");
        assert!(Weighted::new(&[0, 0]).is_none());
    }
}

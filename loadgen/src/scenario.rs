//! What a run sends: the operation kinds and the weighted mix of them.
//!
//! Owns: naming scenarios and parsing `--mix`. The operations themselves live
//! in `ops`; this module never does I/O.

use crate::rng::{Rng, Weighted};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// GET /health.
    Health,
    /// POST /execute (synchronous SQL).
    Execute,
    /// POST /queries -> wait for terminal -> fetch every page -> DELETE.
    Lifecycle,
    /// GET /queries/{id} of jobs created before the run.
    Status,
    /// POST /v1/query to a gateway (bearer token): its one-shot query route.
    Gateway,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Health,
        Kind::Execute,
        Kind::Lifecycle,
        Kind::Status,
        Kind::Gateway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Health => "health",
            Kind::Execute => "execute",
            Kind::Lifecycle => "lifecycle",
            Kind::Status => "status",
            Kind::Gateway => "gateway",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MixError {
    #[error("mix entry {0:?} is not kind=weight")]
    Entry(String),
    #[error("unknown scenario {0:?} in mix (health, execute, lifecycle, status, gateway)")]
    Kind(String),
    #[error("mix weights must be positive integers somewhere")]
    Weights,
}

/// The kinds a run draws from, with weights.
#[derive(Debug, Clone)]
pub struct Mix {
    pub entries: Vec<(Kind, u64)>,
    chooser: Weighted,
}

impl Mix {
    pub fn single(kind: Kind) -> Mix {
        Mix::new(vec![(kind, 1)]).expect("one positive weight")
    }

    pub fn new(entries: Vec<(Kind, u64)>) -> Result<Mix, MixError> {
        let weights: Vec<u64> = entries.iter().map(|e| e.1).collect();
        let chooser = Weighted::new(&weights).ok_or(MixError::Weights)?;
        Ok(Mix { entries, chooser })
    }

    /// Parses "lifecycle=5,status=3,execute=1,health=1".
    pub fn parse(s: &str) -> Result<Mix, MixError> {
        let mut entries = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, w) = part
                .split_once('=')
                .ok_or_else(|| MixError::Entry(part.to_string()))?;
            let kind = Kind::ALL
                .into_iter()
                .find(|x| x.name() == k.trim())
                .ok_or_else(|| MixError::Kind(k.trim().to_string()))?;
            let w: u64 = w
                .trim()
                .parse()
                .map_err(|_| MixError::Entry(part.to_string()))?;
            entries.push((kind, w));
        }
        Mix::new(entries)
    }

    pub fn pick(&self, rng: &mut Rng) -> Kind {
        self.entries[self.chooser.pick(rng)].0
    }

    pub fn contains(&self, kind: Kind) -> bool {
        self.entries.iter().any(|e| e.0 == kind && e.1 > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mix() {
        let m = Mix::parse("lifecycle=5, status=3,health=0").unwrap();
        assert!(m.contains(Kind::Lifecycle) && m.contains(Kind::Status));
        assert!(!m.contains(Kind::Health));
        let mut r = Rng::new(1);
        assert!((0..100).all(|_| m.pick(&mut r) != Kind::Health));
    }

    #[test]
    fn gateway_is_a_kind_of_its_own() {
        let m = Mix::parse("gateway=3,health=1").unwrap();
        assert!(m.contains(Kind::Gateway) && !m.contains(Kind::Execute));
        assert_eq!(Kind::Gateway.name(), "gateway");
        assert!(Kind::ALL.iter().enumerate().all(|(i, k)| k.index() == i));
    }

    #[test]
    fn rejects_bad_mix() {
        assert_eq!(Mix::parse("x=1").unwrap_err(), MixError::Kind("x".into()));
        assert_eq!(
            Mix::parse("health").unwrap_err(),
            MixError::Entry("health".into())
        );
        assert_eq!(Mix::parse("health=0").unwrap_err(), MixError::Weights);
    }
}

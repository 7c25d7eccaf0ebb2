//! The SQL a run sends: named statements with weights, from `--sql` flags or
//! a TOML workload file.
//!
//! Owns: loading and validating the workload and encoding each statement's
//! JSON body once (and, for a statement with `{seq}`, the per-operation
//! body with that placeholder filled in). Never talks to the network.
//!
//! File format:
//! ```toml
//! [[statement]]
//! name = "point"
//! sql = "SELECT 1"
//! weight = 3          # optional, default 1
//! ```
//!
//! `{seq}` anywhere in a statement's SQL is replaced by a number unique to
//! each operation of the run, so every request carries a text of its own
//! (`SELECT {seq} AS x`): what a server that caches by text (the gateway's
//! rewrite cache) sees from callers whose literals differ.

use crate::rng::{Rng, Weighted};
use serde::Deserialize;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("cannot read workload file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid workload file {path}: {source}")]
    Toml {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("workload has no statements")]
    Empty,
    #[error("statement {0:?} has empty SQL")]
    EmptySql(String),
    #[error("every statement has weight 0")]
    ZeroWeights,
    #[error("duplicate statement name {0:?}")]
    Duplicate(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    statement: Vec<FileStatement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStatement {
    name: String,
    sql: String,
    #[serde(default = "one")]
    weight: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub name: String,
    pub sql: String,
    pub weight: u64,
    /// `{"sql": "..."}` encoded once.
    pub body: Vec<u8>,
    /// The SQL contains `{seq}`: each operation's body is built by `body_for`.
    templated: bool,
}

/// The per-operation placeholder in a statement's SQL.
pub const SEQ_PLACEHOLDER: &str = "{seq}";

impl Statement {
    /// The request body for one operation: `body`, or for a statement with
    /// `{seq}`, `body` with every `{seq}` replaced by `unique`. (JSON encodes
    /// the placeholder's characters as they are, so replacing in the encoded
    /// body is the same as encoding the replaced SQL.)
    pub fn body_for(&self, unique: u64) -> std::borrow::Cow<'_, [u8]> {
        if !self.templated {
            return std::borrow::Cow::Borrowed(&self.body);
        }
        let text = std::str::from_utf8(&self.body).expect("JSON is UTF-8");
        std::borrow::Cow::Owned(
            text.replace(SEQ_PLACEHOLDER, &unique.to_string())
                .into_bytes(),
        )
    }
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub statements: Vec<Statement>,
    chooser: Weighted,
}

impl Workload {
    /// From `--sql` values; each may be `name=weight:SQL`-free plain SQL, named
    /// `q1`, `q2`, ... with weight 1.
    pub fn from_sql(sqls: &[String]) -> Result<Workload, WorkloadError> {
        let items = sqls
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("q{}", i + 1), s.clone(), 1))
            .collect();
        Workload::build(items)
    }

    pub fn from_file(path: &Path) -> Result<Workload, WorkloadError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Read {
            path: p.clone(),
            source,
        })?;
        Workload::from_toml(&text).map_err(|e| match e {
            WorkloadError::Toml { source, .. } => WorkloadError::Toml { path: p, source },
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Workload, WorkloadError> {
        let f: File = toml::from_str(text).map_err(|e| WorkloadError::Toml {
            path: "<inline>".into(),
            source: Box::new(e),
        })?;
        Workload::build(
            f.statement
                .into_iter()
                .map(|s| (s.name, s.sql, s.weight))
                .collect(),
        )
    }

    fn build(items: Vec<(String, String, u64)>) -> Result<Workload, WorkloadError> {
        if items.is_empty() {
            return Err(WorkloadError::Empty);
        }
        let mut statements: Vec<Statement> = Vec::with_capacity(items.len());
        for (name, sql, weight) in items {
            if sql.trim().is_empty() {
                return Err(WorkloadError::EmptySql(name));
            }
            if statements.iter().any(|s| s.name == name) {
                return Err(WorkloadError::Duplicate(name));
            }
            let body = serde_json::to_vec(&serde_json::json!({ "sql": sql }))
                .expect("a string always encodes");
            statements.push(Statement {
                templated: sql.contains(SEQ_PLACEHOLDER),
                name,
                sql,
                weight,
                body,
            });
        }
        let weights: Vec<u64> = statements.iter().map(|s| s.weight).collect();
        let chooser = Weighted::new(&weights).ok_or(WorkloadError::ZeroWeights)?;
        Ok(Workload {
            statements,
            chooser,
        })
    }

    pub fn pick(&self, rng: &mut Rng) -> &Statement {
        &self.statements[self.pick_index(rng)]
    }

    pub fn pick_index(&self, rng: &mut Rng) -> usize {
        self.chooser.pick(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_weighted_statements() {
        let w = Workload::from_toml(
            "[[statement]]\nname = \"a\"\nsql = \"SELECT 1\"\nweight = 3\n[[statement]]\nname = \"b\"\nsql = \"SELECT \\\"x\\\"\"\n",
        )
        .unwrap();
        assert_eq!(w.statements.len(), 2);
        assert_eq!(w.statements[0].weight, 3);
        assert_eq!(w.statements[1].weight, 1);
        let v: serde_json::Value = serde_json::from_slice(&w.statements[1].body).unwrap();
        assert_eq!(v["sql"], "SELECT \"x\"");
    }

    #[test]
    fn seq_placeholder_gives_each_operation_its_own_text() {
        let w = Workload::from_sql(&[
            "SELECT {seq} AS x, '\"{seq}\"' AS y".into(),
            "SELECT 1".into(),
        ])
        .unwrap();
        let body = |i: usize, n: u64| {
            serde_json::from_slice::<serde_json::Value>(&w.statements[i].body_for(n)).unwrap()
                ["sql"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(body(0, 17), "SELECT 17 AS x, '\"17\"' AS y");
        assert_eq!(body(0, 18), "SELECT 18 AS x, '\"18\"' AS y");
        // Without the placeholder the body is the one encoded at load.
        assert!(matches!(
            w.statements[1].body_for(5),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(body(1, 5), "SELECT 1");
    }

    #[test]
    fn same_seed_same_sequence() {
        let w =
            Workload::from_sql(&["SELECT 1".into(), "SELECT 2".into(), "SELECT 3".into()]).unwrap();
        let seq = |seed| {
            let mut r = Rng::for_worker(seed, 0);
            (0..50)
                .map(|_| w.pick(&mut r).name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(seq(9), seq(9));
        assert_ne!(seq(9), seq(10));
    }

    #[test]
    fn rejects_bad_workloads() {
        assert!(matches!(Workload::from_sql(&[]), Err(WorkloadError::Empty)));
        assert!(matches!(
            Workload::from_sql(&["  ".into()]),
            Err(WorkloadError::EmptySql(_))
        ));
        assert!(matches!(
            Workload::from_toml("[[statement]]\nname=\"a\"\nsql=\"x\"\nweight=0\n"),
            Err(WorkloadError::ZeroWeights)
        ));
        assert!(matches!(
            Workload::from_toml(
                "[[statement]]\nname=\"a\"\nsql=\"x\"\n[[statement]]\nname=\"a\"\nsql=\"y\"\n"
            ),
            Err(WorkloadError::Duplicate(_))
        ));
        assert!(matches!(
            Workload::from_toml("[[statement]]\nnome=\"a\"\n"),
            Err(WorkloadError::Toml { .. })
        ));
    }
}

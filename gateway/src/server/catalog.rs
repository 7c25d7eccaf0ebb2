//! The rewriter's catalog, per engine: the columns of every table as the
//! engine that will run the query has them (local DuckDB or an agent), read
//! from its `information_schema.columns` through the same [`Executor`] the
//! query uses, cached, and re-read after [`CATALOG_TTL`](super::config) or
//! when a query names a table the cached list lacks.
//!
//! Owns the cache and the catalog query. It never invents a column: a table
//! is known only when its engine listed it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{ClientError, Executor, Value};

use crate::policy::TableKey;

/// The catalog query (every column of every table and view, in order).
pub const CATALOG_SQL: &str = "SELECT table_catalog, table_schema, table_name, column_name \
     FROM information_schema.columns \
     ORDER BY table_catalog, table_schema, table_name, ordinal_position";

/// One engine's tables.
#[derive(Debug)]
pub struct EngineCatalog {
    pub tables: HashMap<TableKey, Vec<String>>,
    pub fetched_at: Instant,
}

impl crate::rewrite::Catalog for EngineCatalog {
    fn columns(&self, table: &TableKey) -> Option<&[String]> {
        self.tables.get(table).map(Vec::as_slice)
    }
}

/// The cache, keyed by engine name (`local` or the endpoint's name).
pub struct Catalogs {
    ttl: Duration,
    by_engine: Mutex<HashMap<String, Arc<EngineCatalog>>>,
}

impl Catalogs {
    pub fn new(ttl: Duration) -> Catalogs {
        Catalogs {
            ttl,
            by_engine: Mutex::new(HashMap::new()),
        }
    }

    /// The engine's catalog: the cached one unless it is older than the TTL.
    pub async fn get(
        &self,
        engine: &dyn Executor,
        deadline: Instant,
    ) -> Result<Arc<EngineCatalog>, ClientError> {
        let cached = self.cached(engine.name());
        if let Some(c) = cached {
            if c.fetched_at.elapsed() < self.ttl {
                return Ok(c);
            }
        }
        self.refresh(engine, deadline).await
    }

    fn cached(&self, name: &str) -> Option<Arc<EngineCatalog>> {
        self.by_engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Reads the engine's catalog now and caches it.
    pub async fn refresh(
        &self,
        engine: &dyn Executor,
        deadline: Instant,
    ) -> Result<Arc<EngineCatalog>, ClientError> {
        let rows = engine.run(CATALOG_SQL, deadline).await?.collect().await?;
        let mut tables: HashMap<TableKey, Vec<String>> = HashMap::new();
        for r in rows {
            let text = |i: usize| match r.get(i) {
                Some(Value::Text(s)) => Some(s.to_lowercase()),
                _ => None,
            };
            let (Some(catalog), Some(schema), Some(table), Some(column)) =
                (text(0), text(1), text(2), text(3))
            else {
                continue;
            };
            tables
                .entry(TableKey {
                    catalog,
                    schema,
                    table,
                })
                .or_default()
                .push(column);
        }
        let c = Arc::new(EngineCatalog {
            tables,
            fetched_at: Instant::now(),
        });
        self.by_engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(engine.name().to_string(), c.clone());
        Ok(c)
    }

    /// Forgets every cached catalog (after an endpoint changed).
    pub fn clear(&self) {
        self.by_engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

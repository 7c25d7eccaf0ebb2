//! The rewriter's catalog, per engine: the columns (and their types) of
//! every table as the engine that will run the query has them (local DuckDB
//! or an agent), and the functions its own catalog defines, read through the
//! same [`Executor`] the query uses, cached, and re-read after
//! [`CATALOG_TTL`](crate::server::config) or when a query names a table the cached
//! list lacks. Each catalog also carries the shadow database the binder
//! check binds statements in ([`crate::verify::Shadow`]), built on first
//! use, off the runtime's threads.
//!
//! Owns the cache and the catalog query. It never invents a column: a table
//! is known only when its engine listed it. A catalog read again with the
//! same contents keeps its version (and its shadow), so a refresh on the TTL
//! does not empty the rewrite cache.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use client::{ClientError, Executor, Value};

use crate::access::{fold, TableKey};
use crate::verify::{Shadow, ShadowTable, VerifyError};

/// The catalog query: every column of every table and view, in order, with
/// its type; then every function or macro the engine's own catalog defines
/// (not DuckDB's built-ins), which a call of the same name could reach.
pub const CATALOG_SQL: &str = "SELECT 0 AS kind, table_catalog, table_schema, table_name, \
     column_name, data_type, ordinal_position FROM information_schema.columns \
     UNION ALL SELECT 1, database_name, schema_name, function_name, NULL, NULL, 0 \
     FROM duckdb_functions() WHERE NOT internal \
     ORDER BY 1, 2, 3, 4, 7";

/// One engine's tables and functions.
#[derive(Debug)]
pub struct EngineCatalog {
    /// Column names per table, in order.
    pub tables: HashMap<TableKey, Vec<String>>,
    /// Column types per table, in the same order.
    pub types: HashMap<TableKey, Vec<String>>,
    /// Folded names of the functions and macros the engine's catalog defines.
    pub functions: HashSet<String>,
    /// Unique in the process: a catalog read with other contents gets a new
    /// one, so a cached rewrite never outlives the column lists it was made
    /// from.
    pub version: u64,
    shadow: OnceLock<Result<Arc<Shadow>, VerifyError>>,
}

/// The next [`EngineCatalog::version`].
static NEXT_VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl crate::rewrite::Catalog for EngineCatalog {
    fn columns(&self, table: &TableKey) -> Option<&[String]> {
        self.tables.get(table).map(Vec::as_slice)
    }

    fn defines_function(&self, name: &str) -> bool {
        self.functions.contains(name)
    }
}

impl EngineCatalog {
    /// A catalog of these contents (a new version).
    pub fn new(
        tables: HashMap<TableKey, Vec<String>>,
        types: HashMap<TableKey, Vec<String>>,
        functions: HashSet<String>,
    ) -> EngineCatalog {
        EngineCatalog {
            tables,
            types,
            functions,
            version: NEXT_VERSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            shadow: OnceLock::new(),
        }
    }

    fn same_contents(&self, other: &EngineCatalog) -> bool {
        self.tables == other.tables
            && self.types == other.types
            && self.functions == other.functions
    }

    /// The shadow database of this catalog, built on first use. Blocks on
    /// DuckDB: call it off the runtime's threads.
    pub fn shadow(&self, default_catalog: &str) -> Result<Arc<Shadow>, VerifyError> {
        self.shadow
            .get_or_init(|| {
                Shadow::build(default_catalog, &self.table_columns(|_| true)).map(Arc::new)
            })
            .clone()
    }

    /// The tables `keep` keeps, in key order, each with its columns and
    /// their DuckDB type names (`VARCHAR` where the engine did not say).
    pub fn table_columns(&self, keep: impl Fn(&TableKey) -> bool) -> Vec<ShadowTable> {
        let mut tables: Vec<ShadowTable> = self
            .tables
            .iter()
            .filter(|(key, _)| keep(key))
            .map(|(key, cols)| {
                let types = self.types.get(key);
                ShadowTable {
                    key: key.clone(),
                    columns: cols
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let ty = types
                                .and_then(|t| t.get(i))
                                .cloned()
                                .unwrap_or_else(|| "VARCHAR".into());
                            (c.clone(), ty)
                        })
                        .collect(),
                }
            })
            .collect();
        tables.sort_by(|a, b| a.key.cmp(&b.key));
        tables
    }
}

/// The cache, keyed by engine name (`local` or the endpoint's name), with
/// when each was read.
pub struct Catalogs {
    ttl: Duration,
    by_engine: Mutex<HashMap<String, (Instant, Arc<EngineCatalog>)>>,
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
        let cached = self
            .by_engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(engine.name())
            .cloned();
        if let Some((at, c)) = cached {
            if at.elapsed() < self.ttl {
                return Ok(c);
            }
        }
        self.refresh(engine, deadline).await
    }

    /// Reads the engine's catalog now and caches it.
    pub async fn refresh(
        &self,
        engine: &dyn Executor,
        deadline: Instant,
    ) -> Result<Arc<EngineCatalog>, ClientError> {
        let rows = engine.run(CATALOG_SQL, deadline).await?.collect().await?;
        let mut tables: HashMap<TableKey, Vec<String>> = HashMap::new();
        let mut types: HashMap<TableKey, Vec<String>> = HashMap::new();
        let mut functions: HashSet<String> = HashSet::new();
        for r in rows {
            let text = |i: usize| match r.get(i) {
                Some(Value::Text(s)) => Some(s.as_str()),
                _ => None,
            };
            let is_function = matches!(r.first(), Some(Value::Int(1)));
            if is_function {
                if let Some(name) = text(3) {
                    functions.insert(fold(name));
                }
                continue;
            }
            let (Some(catalog), Some(schema), Some(table), Some(column)) =
                (text(1), text(2), text(3), text(4))
            else {
                continue;
            };
            let key = TableKey::new(catalog, schema, table);
            types
                .entry(key.clone())
                .or_default()
                .push(text(5).unwrap_or("VARCHAR").to_string());
            tables.entry(key).or_default().push(column.to_string());
        }
        let fresh = EngineCatalog::new(tables, types, functions);
        let mut by_engine = self.by_engine.lock().unwrap_or_else(|p| p.into_inner());
        let keep = by_engine
            .get(engine.name())
            .filter(|(_, old)| old.same_contents(&fresh))
            .map(|(_, old)| old.clone());
        let c = keep.unwrap_or_else(|| Arc::new(fresh));
        by_engine.insert(engine.name().to_string(), (Instant::now(), c.clone()));
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

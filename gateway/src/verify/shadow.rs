//! The shadow database: an in-memory DuckDB holding every catalog, schema
//! and table of one engine's catalog, with the same columns and no rows, in
//! which statements are bound and their plans read back as JSON.
//!
//! Owns its connections (a small pool, one per concurrent check) and the
//! reference plans of the derived queries it has bound (by their text).
//! Locked like the agents' engines: no file, no network, no extension loaded
//! on demand, and no setting can change after it is built.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::plan::{self, Reference};
use super::VerifyError;
use crate::access::TableKey;

/// One table of the engine's catalog: its key and its columns with their
/// DuckDB type names, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowTable {
    pub key: TableKey,
    pub columns: Vec<(String, String)>,
}

/// Most connections kept idle; more are opened under load and closed after.
const IDLE_CONNECTIONS: usize = 8;

/// See the module doc.
pub struct Shadow {
    root: Mutex<duckdb::Connection>,
    idle: Mutex<Vec<duckdb::Connection>>,
    references: Mutex<HashMap<String, Arc<Reference>>>,
}

/// The statement the check runs: the plan of `$1`, bound, not optimized.
const SERIALIZE_SQL: &str =
    "SELECT json_serialize_plan($1::VARCHAR, skip_null := true, skip_empty := true)";

fn shadow_err(e: impl std::fmt::Display) -> VerifyError {
    VerifyError::Shadow(e.to_string())
}

/// `name` as a quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow").finish_non_exhaustive()
    }
}

/// The statements that give an empty in-memory database `tables` with
/// their columns (and `default_catalog` as the connection's default), each
/// with the statement to run instead when it fails: a column type the
/// database cannot create (one defined in the engine's own catalog) made
/// `VARCHAR`. The shadow and the PostgreSQL door's catalog sandbox are
/// built from it.
pub fn catalog_ddl(default_catalog: &str, tables: &[ShadowTable]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut catalogs: Vec<&str> = tables.iter().map(|t| t.key.catalog.as_str()).collect();
    catalogs.push(default_catalog);
    catalogs.sort_unstable();
    catalogs.dedup();
    for c in catalogs.into_iter().filter(|c| *c != "memory") {
        out.push((format!("ATTACH ':memory:' AS {}", ident(c)), None));
    }
    out.push((format!("USE {}", ident(default_catalog)), None));
    let mut schemas: Vec<(&str, &str)> = tables
        .iter()
        .map(|t| (t.key.catalog.as_str(), t.key.schema.as_str()))
        .collect();
    schemas.sort_unstable();
    schemas.dedup();
    for (c, s) in schemas {
        out.push((
            format!("CREATE SCHEMA IF NOT EXISTS {}.{}", ident(c), ident(s)),
            None,
        ));
    }
    for t in tables {
        let name = format!(
            "{}.{}.{}",
            ident(&t.key.catalog),
            ident(&t.key.schema),
            ident(&t.key.table)
        );
        let cols = |typed: bool| {
            t.columns
                .iter()
                .map(|(c, ty)| format!("{} {}", ident(c), if typed { ty } else { "VARCHAR" }))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push((
            format!("CREATE TABLE {name} ({})", cols(true)),
            Some(format!("CREATE TABLE {name} ({})", cols(false))),
        ));
    }
    out
}

impl Shadow {
    /// Builds the shadow of an engine whose default catalog is
    /// `default_catalog` and whose tables are `tables`. A column whose type
    /// the shadow cannot create (a type defined in the engine's catalog) is
    /// made `VARCHAR`: the check reads which tables are scanned and how,
    /// which no column type changes.
    pub fn build(default_catalog: &str, tables: &[ShadowTable]) -> Result<Shadow, VerifyError> {
        let cfg = duckdb::Config::default()
            .enable_autoload_extension(false)
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .map_err(shadow_err)?;
        // With icu, as the engines: it binds what they bind (AT TIME ZONE,
        // TIMESTAMPTZ arithmetic, collations) to the functions they run.
        let icu = duckdb_icu::register();
        let conn = duckdb::Connection::open_in_memory_with_flags(cfg).map_err(shadow_err)?;
        icu.map_err(shadow_err)?;
        for (sql, fallback) in catalog_ddl(default_catalog, tables) {
            if let Err(e) = conn.execute_batch(&sql) {
                conn.execute_batch(fallback.as_deref().ok_or(e).map_err(shadow_err)?)
                    .map_err(shadow_err)?;
            }
        }
        conn.execute_batch("SET enable_external_access = false; SET lock_configuration = true;")
            .map_err(shadow_err)?;
        Ok(Shadow {
            root: Mutex::new(conn),
            idle: Mutex::new(Vec::new()),
            references: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `f` on a connection of the pool.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&duckdb::Connection) -> Result<T, VerifyError>,
    ) -> Result<T, VerifyError> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match taken {
            Some(c) => c,
            None => self
                .root
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_clone()
                .map_err(shadow_err)?,
        };
        let out = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
        out
    }

    /// The bound, unoptimized plans of `sql`, one per statement, as DuckDB
    /// serializes them; a bind or parse failure as [`VerifyError::Bind`].
    pub fn plans(&self, sql: &str) -> Result<Vec<Value>, VerifyError> {
        let text: String = self.with_conn(|c| {
            let mut stmt = c.prepare_cached(SERIALIZE_SQL).map_err(shadow_err)?;
            stmt.query_row([sql], |r| r.get::<_, String>(0))
                .map_err(shadow_err)
        })?;
        let mut doc: Value = serde_json::from_str(&text).map_err(shadow_err)?;
        if doc.get("error").and_then(Value::as_bool) != Some(false) {
            let message = doc
                .get("error_message")
                .and_then(Value::as_str)
                .unwrap_or("the statement does not bind");
            let kind = doc.get("error_type").and_then(Value::as_str).unwrap_or("");
            return Err(VerifyError::Bind(plan::error_text(kind, message)));
        }
        match doc.get_mut("plans").map(Value::take) {
            Some(Value::Array(plans)) => Ok(plans),
            _ => Err(VerifyError::Shadow("a plan without plans".into())),
        }
    }

    /// The names and DuckDB type names of the columns a statement (already
    /// proven) answers, with `params` placeholders bound to NULL. Runs it
    /// under `LIMIT 0` on the empty shadow: nothing is read or computed but
    /// the result's shape.
    pub fn describe(&self, sql: &str, params: usize) -> Result<Vec<(String, String)>, VerifyError> {
        self.with_conn(|c| {
            let wrapped = format!("SELECT * FROM ({sql}) LIMIT 0");
            let mut stmt = c
                .prepare(&wrapped)
                .map_err(|e| VerifyError::Bind(e.to_string()))?;
            let nulls = vec![duckdb::types::Value::Null; params];
            let rows = stmt
                .query(duckdb::params_from_iter(nulls.iter()))
                .map_err(|e| VerifyError::Bind(e.to_string()))?;
            let st = rows
                .as_ref()
                .ok_or_else(|| VerifyError::Shadow("no statement".into()))?;
            Ok(st
                .column_names()
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n, client::local::duckdb_type_name(&st.column_type(i))))
                .collect())
        })
    }

    /// The reference subtree of one derived query, bound once per text.
    fn reference(&self, derived_sql: &str) -> Result<Arc<Reference>, VerifyError> {
        if let Some(r) = self
            .references
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(derived_sql)
        {
            return Ok(r.clone());
        }
        let mut plans = self.plans(derived_sql).map_err(|e| match e {
            VerifyError::Bind(m) => {
                VerifyError::Mismatch(format!("a derived query does not bind: {m}"))
            }
            e => e,
        })?;
        if plans.len() != 1 {
            return Err(VerifyError::Mismatch(
                "a derived query is not one statement".into(),
            ));
        }
        let r = Arc::new(Reference::of(plans.remove(0))?);
        self.references
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(derived_sql.to_string(), r.clone());
        Ok(r)
    }

    /// Binds `sql` and proves it against the derived query of each table
    /// it may read (`derived`: the principal's granted tables the rewrite
    /// touched, each with the text [`crate::rewrite::derived_sql`] gives).
    pub fn check(&self, sql: &str, derived: &[(TableKey, String)]) -> Result<(), VerifyError> {
        let mut plans = self.plans(sql)?;
        if plans.len() != 1 {
            return Err(VerifyError::Mismatch(format!(
                "{} statements bound: exactly one is allowed",
                plans.len()
            )));
        }
        let mut refs: Vec<(&TableKey, Arc<Reference>)> = Vec::with_capacity(derived.len());
        for (key, text) in derived {
            refs.push((key, self.reference(text)?));
        }
        plan::prove(&plans.remove(0), &|key: &TableKey| {
            refs.iter().find(|(k, _)| *k == key).map(|(_, r)| r.clone())
        })
    }
}

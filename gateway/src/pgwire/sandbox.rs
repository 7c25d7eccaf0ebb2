//! The catalog sandbox: how the PostgreSQL door answers the catalog queries
//! clients send on connect and for schema browsing (psql's `\d`, DBeaver's
//! and psycopg's `pg_catalog` and `information_schema` lookups) from the
//! principal's granted tables only.
//!
//! A sandbox is an in-memory DuckDB holding exactly the tables the
//! principal is granted, under their own catalog and schema names, with
//! their columns and types and no rows: a database that holds only what the
//! user may see, less the data. DuckDB's own `pg_catalog` and
//! `information_schema` then answer as DuckDB would, listing nothing else.
//! Owns which statements go there ([`is_catalog_statement`]) and the
//! sandboxes (one per principal, policy and engine catalog, a bounded
//! number kept). A sandbox has no file or network access and its
//! configuration is locked; nothing in it is secret, so a statement that
//! reaches it can learn only the names and types of the granted tables.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use client::{LocalExecutor, QueryRows};
use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, visit_relations, BinaryOperator, Expr,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Statement, TableFactor,
    TableFunctionArgs, VisitMut, VisitorMut,
};

use crate::access::fold;
use crate::query::{QueryError, VisibleTable};

/// Most sandboxes kept (the least recently used go).
const KEPT: usize = 64;

/// Functions a client calls to learn about its session, answered by the
/// sandbox (never by an engine).
const SESSION_FUNCTIONS: &[&str] = &[
    "version",
    "current_schema",
    "current_schemas",
    "current_database",
    "current_catalog",
    "pg_backend_pid",
    "pg_is_in_recovery",
    "pg_encoding_to_char",
    "format_type",
    "obj_description",
    "col_description",
    "shobj_description",
    "pg_get_userbyid",
    "pg_table_is_visible",
    "pg_get_expr",
    "pg_get_constraintdef",
    "pg_get_viewdef",
    "has_table_privilege",
    "has_schema_privilege",
    "has_database_privilege",
];

/// PostgreSQL catalog functions DuckDB lacks, as macros of the sandbox
/// (`name`, then its overloads' parameters and bodies): what psql, DBeaver
/// and psycopg call while browsing, answered with a plain constant where
/// the gateway has nothing truer to say (owners, sizes, definitions).
const CATALOG_MACROS: &[(&str, &str)] = &[
    ("pg_get_userbyid", "(id) AS 'compute_gateway'"),
    ("pg_encoding_to_char", "(e) AS 'UTF8'"),
    ("pg_backend_pid", "() AS 0"),
    ("pg_is_in_recovery", "() AS false"),
    ("pg_get_indexdef", "(i) AS NULL, (i, c, p) AS NULL"),
    ("pg_get_triggerdef", "(t) AS NULL, (t, p) AS NULL"),
    ("pg_get_ruledef", "(r) AS NULL, (r, p) AS NULL"),
    ("pg_relation_is_publishable", "(r) AS false"),
    ("pg_get_partkeydef", "(r) AS NULL"),
    ("pg_tablespace_location", "(t) AS ''"),
    ("pg_relation_size", "(r) AS 0, (r, f) AS 0"),
    ("pg_total_relation_size", "(r) AS 0"),
    ("pg_table_size", "(r) AS 0"),
    ("pg_indexes_size", "(r) AS 0"),
    ("pg_database_size", "(d) AS 0"),
    ("pg_get_function_result", "(f) AS NULL"),
    ("pg_get_function_arguments", "(f) AS NULL"),
    ("pg_get_function_identity_arguments", "(f) AS NULL"),
    ("pg_get_serial_sequence", "(t, c) AS NULL"),
    ("pg_get_statisticsobjdef_columns", "(s) AS NULL"),
    ("pg_get_keywords", "() AS TABLE SELECT NULL::VARCHAR AS word, NULL::VARCHAR AS catcode, NULL::VARCHAR AS catdesc WHERE false"),
    ("quote_ident", "(s) AS '\"' || replace(s, '\"', '\"\"') || '\"'"),
    ("array_upper", "(a, d) AS len(a)"),
    ("array_lower", "(a, d) AS 1"),
    ("to_regclass", "(n) AS (SELECT min(oid) FROM pg_catalog.pg_class WHERE relname = n)"),
];

/// PostgreSQL catalog views DuckDB's `pg_catalog` lacks (or lacks columns
/// of), as table macros of the sandbox (`name`, then the macro's query): a
/// statement that reads `pg_catalog.name` reads `gw_name()` instead. Table
/// macros, not views, so that they list nowhere (`\d`, `information_schema`).
const CATALOG_VIEWS: &[(&str, &str)] = &[
    (
        "pg_database",
        "SELECT d.oid, d.datname, 0 AS datdba, 6 AS encoding, 'C' AS datcollate, 'C' AS datctype, \
         NULL::VARCHAR AS daticulocale, 'c' AS datlocprovider, NULL::VARCHAR[] AS datacl, \
         false AS datistemplate, true AS datallowconn, -1 AS datconnlimit, 0 AS dattablespace \
         FROM pg_catalog.pg_database d",
    ),
    (
        "pg_class",
        "SELECT * REPLACE (CAST(reloptions AS VARCHAR[]) AS reloptions, \
         CAST(relacl AS VARCHAR[]) AS relacl), false AS relforcerowsecurity \
         FROM pg_catalog.pg_class",
    ),
    (
        "pg_auth_members",
        "SELECT 0 AS oid, 0 AS roleid, 0 AS member, 0 AS grantor, false AS admin_option, \
         false AS inherit_option, false AS set_option WHERE false",
    ),
    (
        "pg_roles",
        "SELECT 0 AS oid, 'compute_gateway' AS rolname, false AS rolsuper, false AS rolinherit, \
         false AS rolcreaterole, false AS rolcreatedb, true AS rolcanlogin, false AS rolreplication, \
         false AS rolbypassrls, -1 AS rolconnlimit, NULL::TIMESTAMP AS rolvaliduntil, \
         NULL::VARCHAR[] AS rolconfig",
    ),
];

/// PostgreSQL catalog tables that are always empty here (no policies,
/// triggers, rules, inheritance, partitions, publications, extended
/// statistics or foreign tables), with their columns (`b` boolean, `i`
/// integer, `t` text, `a` text array, `o` number array), as empty table macros like
/// [`CATALOG_VIEWS`]: what psql's `\d` and DBeaver read of a table.
const EMPTY_CATALOGS: &[(&str, &str)] = &[
    ("pg_policy", "oid:i polname:t polrelid:i polcmd:t polpermissive:b polroles:o polqual:t polwithcheck:t"),
    ("pg_statistic_ext", "oid:i stxrelid:i stxname:t stxnamespace:i stxowner:i stxstattarget:i stxkeys:o stxkind:a stxexprs:t"),
    ("pg_publication", "oid:i pubname:t pubowner:i puballtables:b pubinsert:b pubupdate:b pubdelete:b pubtruncate:b pubviaroot:b"),
    ("pg_publication_rel", "oid:i prpubid:i prrelid:i prqual:t prattrs:o"),
    ("pg_publication_namespace", "oid:i pnpubid:i pnnspid:i"),
    ("pg_inherits", "inhrelid:i inhparent:i inhseqno:i inhdetachpending:b"),
    ("pg_trigger", "oid:i tgrelid:i tgparentid:i tgname:t tgfoid:i tgtype:i tgenabled:t tgisinternal:b tgconstrrelid:i tgconstrindid:i tgconstraint:i tgdeferrable:b tginitdeferred:b tgnargs:i tgattr:o tgargs:t tgqual:t tgoldtable:t tgnewtable:t"),
    ("pg_rewrite", "oid:i rulename:t ev_class:i ev_type:t ev_enabled:t is_instead:b ev_qual:t ev_action:t"),
    ("pg_partitioned_table", "partrelid:i partstrat:t partnatts:i partdefid:i partattrs:o partclass:o partcollation:o partexprs:t"),
    ("pg_foreign_table", "ftrelid:i ftserver:i ftoptions:a"),
    ("pg_event_trigger", "oid:i evtname:t evtevent:t evtowner:i evtfoid:i evtenabled:t evttags:a"),
    ("pg_extension", "oid:i extname:t extowner:i extnamespace:i extrelocatable:b extversion:t extconfig:a extcondition:a"),
    ("pg_stat_activity", "datid:i datname:t pid:i usename:t application_name:t client_addr:t state:t query:t backend_start:t"),
];

/// An [`EMPTY_CATALOGS`] column list as an empty query.
fn empty_query(columns: &str) -> String {
    let cols: Vec<String> = columns
        .split_whitespace()
        .map(|c| {
            let (name, ty) = c.split_once(':').unwrap_or((c, "t"));
            let ty = match ty {
                "b" => "BOOLEAN",
                "i" => "BIGINT",
                "a" => "VARCHAR[]",
                "o" => "BIGINT[]",
                _ => "VARCHAR",
            };
            format!("NULL::{ty} AS {name}")
        })
        .collect();
    format!("SELECT {} WHERE false", cols.join(", "))
}

/// PostgreSQL's `OPERATOR(pg_catalog.op)` spelling of an operator DuckDB
/// writes plainly.
fn plain_operator(op: &BinaryOperator) -> Option<BinaryOperator> {
    let BinaryOperator::PGCustomBinaryOperator(parts) = op else {
        return None;
    };
    Some(match parts.last()?.as_str() {
        "~" => BinaryOperator::PGRegexMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        _ => return None,
    })
}

/// PostgreSQL's object-identifier and catalog types, and any type spelled
/// `pg_catalog.x`, as DuckDB names them (an oid type as its number).
fn plain_type(t: &sqlparser::ast::DataType) -> Option<sqlparser::ast::DataType> {
    use sqlparser::ast::{ArrayElemTypeDef as A, DataType as T};
    if let T::Array(A::SquareBracket(inner, size)) = t {
        return plain_type(inner).map(|p| T::Array(A::SquareBracket(Box::new(p), *size)));
    }
    let T::Custom(name, modifiers) = t else {
        return None;
    };
    let last = match name.0.last()? {
        ObjectNamePart::Identifier(i) => fold(&i.value),
        _ => return None,
    };
    Some(match last.as_str() {
        "regtype" | "regclass" | "regproc" | "regprocedure" | "regnamespace" | "regrole"
        | "regoper" | "regconfig" | "oid" | "xid" | "cid" | "tid" => T::BigInt(None),
        "name" | "char" | "bpchar" => T::Varchar(None),
        _ if name.0.len() == 2 => T::Custom(ObjectName(vec![name.0[1].clone()]), modifiers.clone()),
        _ => return None,
    })
}

/// A catalog statement as the sandbox runs it: calls to
/// `pg_catalog.f` of a [`CATALOG_MACROS`] function name the sandbox's macro,
/// and `COLLATE pg_catalog.default` (PostgreSQL's own collation name) is
/// dropped. Only ever run in a sandbox, which holds nothing secret.
pub fn sandbox_sql(mut stmt: Statement) -> String {
    let _ = visit_expressions_mut(&mut stmt, |e| {
        match e {
            Expr::Function(f) => {
                if let [ObjectNamePart::Identifier(schema), ObjectNamePart::Identifier(name)] =
                    f.name.0.as_slice()
                {
                    // DuckDB finds its pg_catalog functions unqualified too
                    // (pg_catalog is on its search path), and the sandbox's
                    // macros only so.
                    if fold(&schema.value) == "pg_catalog" {
                        f.name = ObjectName(vec![ObjectNamePart::Identifier(name.clone())]);
                    }
                }
                // pg_get_expr's pretty-print flag: DuckDB's takes two arguments.
                let is_get_expr = f.name.0.last().is_some_and(|p| match p {
                    ObjectNamePart::Identifier(i) => fold(&i.value) == "pg_get_expr",
                    _ => false,
                });
                if let (true, FunctionArguments::List(list)) = (is_get_expr, &mut f.args) {
                    list.args.truncate(2);
                }
            }
            Expr::Collate { expr, collation } => {
                let default = collation.0.last().is_some_and(|p| match p {
                    ObjectNamePart::Identifier(i) => fold(&i.value) == "default",
                    _ => false,
                });
                if default {
                    *e = (**expr).clone();
                }
            }
            Expr::Cast { data_type, .. } => {
                if let Some(plain) = plain_type(data_type) {
                    *data_type = plain;
                }
            }
            Expr::BinaryOp { op, .. } => {
                if let Some(plain) = plain_operator(op) {
                    *op = plain;
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = stmt.visit(&mut CatalogViews);
    stmt.to_string()
}

/// Reads of a [`CATALOG_VIEWS`] name as calls of its table macro.
struct CatalogViews;

impl VisitorMut for CatalogViews {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, args, .. } = factor else {
            return ControlFlow::Continue(());
        };
        if args.is_some() {
            // A table function: DuckDB's are found unqualified.
            if let [ObjectNamePart::Identifier(schema), function] = name.0.as_slice() {
                if fold(&schema.value) == "pg_catalog" {
                    *name = ObjectName(vec![function.clone()]);
                }
            }
            return ControlFlow::Continue(());
        }
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => fold(&i.value),
                other => other.to_string(),
            })
            .collect();
        let view = match parts.as_slice() {
            [one] => Some(one),
            [schema, one] if schema == "pg_catalog" => Some(one),
            _ => None,
        }
        .and_then(|one| {
            CATALOG_VIEWS
                .iter()
                .chain(EMPTY_CATALOGS)
                .find(|(v, _)| v == one)
        });
        if let Some((v, _)) = view {
            *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(format!(
                "gw_{v}"
            )))]);
            *args = Some(TableFunctionArgs {
                args: Vec::new(),
                settings: None,
            });
        }
        ControlFlow::Continue(())
    }
}

/// Whether a relation name is one of the catalog's (`pg_catalog.x`,
/// `information_schema.x`, `pg_x`, `duckdb_x`).
fn is_catalog_relation(name: &ObjectName) -> bool {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => fold(&i.value),
            other => other.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [one] => one.starts_with("pg_") || one.starts_with("duckdb_"),
        [.., schema, _] => schema == "pg_catalog" || schema == "information_schema",
        _ => false,
    }
}

/// Whether a statement is a catalog or session query for the sandbox: it
/// reads a catalog relation, or reads no relation and calls a session
/// function.
pub fn is_catalog_statement(stmt: &Statement) -> bool {
    let mut any_relation = false;
    let mut catalog_relation = false;
    let _ = visit_relations(stmt, |name| {
        any_relation = true;
        if is_catalog_relation(name) {
            catalog_relation = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if catalog_relation {
        return true;
    }
    if any_relation {
        return false;
    }
    let mut session = false;
    let _ = visit_expressions(stmt, |e| {
        if let Expr::Function(f) = e {
            if let Some(ObjectNamePart::Identifier(id)) = f.name.0.last() {
                if SESSION_FUNCTIONS.contains(&fold(&id.value).as_str()) {
                    session = true;
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    });
    session
}

/// Which sandbox: the principal, and what its tables were read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SandboxKey {
    pub user: String,
    pub groups: Vec<String>,
    /// The policy's and the engine catalog's process-unique numbers.
    pub generation: (u64, u64),
}

/// The sandboxes.
#[derive(Default)]
pub struct Sandboxes {
    kept: Mutex<HashMap<SandboxKey, (Instant, Arc<LocalExecutor>)>>,
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Sandboxes {
    /// The sandbox of `key`, built from `tables` the first time. Blocks on
    /// DuckDB: call it off the runtime's threads.
    pub fn get(
        &self,
        key: SandboxKey,
        default_catalog: &str,
        tables: &[VisibleTable],
    ) -> Result<Arc<LocalExecutor>, QueryError> {
        if let Some((_, s)) = self
            .kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&key)
            .map(|e| {
                e.0 = Instant::now();
                e.clone()
            })
        {
            return Ok(s);
        }
        let sandbox = build(default_catalog, tables)?;
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT {
            if let Some(oldest) = kept
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
            {
                kept.remove(&oldest);
            }
        }
        kept.insert(key, (Instant::now(), sandbox.clone()));
        Ok(sandbox)
    }
}

/// One sandbox (see the module doc).
fn build(default_catalog: &str, tables: &[VisibleTable]) -> Result<Arc<LocalExecutor>, QueryError> {
    let fail = |e: client::ClientError| QueryError::internal(format!("the catalog sandbox: {e}"));
    let db = LocalExecutor::open_sandbox().map_err(fail)?;
    for (sql, fallback) in crate::verify::catalog_ddl(default_catalog, tables) {
        if let Err(e) = db.execute_batch(&sql) {
            db.execute_batch(fallback.as_deref().ok_or(e).map_err(fail)?)
                .map_err(fail)?;
        }
    }
    let mut sql = String::new();
    // What a PostgreSQL client reads of its session.
    sql.push_str(&format!(
        "CREATE MACRO {}.main.version() AS {};\n",
        ident(default_catalog),
        literal(super::VERSION_STRING),
    ));
    for (name, query) in CATALOG_VIEWS {
        sql.push_str(&format!(
            "CREATE MACRO {}.main.gw_{name}() AS TABLE {query};\n",
            ident(default_catalog)
        ));
    }
    for (name, columns) in EMPTY_CATALOGS {
        sql.push_str(&format!(
            "CREATE MACRO {}.main.gw_{name}() AS TABLE {};\n",
            ident(default_catalog),
            empty_query(columns)
        ));
    }
    for (name, body) in CATALOG_MACROS {
        sql.push_str(&format!(
            "CREATE MACRO {}.main.{name}{body};\n",
            ident(default_catalog)
        ));
    }
    // Then nothing of the host is reachable and nothing can be changed back.
    sql.push_str("SET enable_external_access = false;\nSET lock_configuration = true;\n");
    db.execute_batch(&sql).map_err(fail)?;
    // USE is a connection's: each statement's connection takes it again.
    db.set_session_sql(&format!("USE {}", ident(default_catalog)));
    Ok(db)
}

/// Runs a catalog statement in a sandbox; see [`LocalExecutor::run`].
pub async fn run(
    sandbox: &LocalExecutor,
    sql: &str,
    deadline: Instant,
) -> Result<QueryRows, QueryError> {
    sandbox.run(sql, deadline).await.map_err(QueryError::from)
}

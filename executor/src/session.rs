//! Every job starts on a clean session: what a statement may leave behind on
//! its connection, and putting the connection back the way it was.
//!
//! Owns the classification of SQL text into "cannot change session state"
//! (one plain query or DML statement: most traffic, costs nothing after it)
//! and "may have" (anything else: transactions, `USE`, `SET`, temporary
//! objects, prepared statements, variables, several statements), and the
//! reset run on the worker after the latter: roll back what is open, drop the
//! session's temporary objects, prepared statements and variables, and put
//! back the session settings, database and schema the connection had after
//! `DUCKDB_INIT_SQL`. It never touches shard state and runs only on a worker
//! thread (it calls DuckDB).
//!
//! Shared by design (database-level, like in any database): tables, views,
//! sequences, macros and types created outside the `temp` catalog, data
//! written, databases ATTACHed or DETACHed, extensions loaded, and global
//! settings (a plain `SET` of most DuckDB settings is global; the agent locks
//! the configuration after the init SQL so jobs cannot make such changes).
//! Never carried over: an open transaction, `USE`, session settings (`SET
//! SESSION ...`, `search_path`, `schema`, ...), temporary tables, views,
//! sequences, macros and types, `PREPARE`d statements and `SET VARIABLE`
//! variables.

use crate::duckdb::{Connection, DbError};

/// First keywords of statements that cannot change session state when they
/// are the only statement of a text. Everything else takes the reset path, so
/// a keyword missing here costs time, never correctness.
const NEUTRAL_FIRST_WORDS: &[&str] = &[
    "SELECT",
    "WITH",
    "FROM",
    "VALUES",
    "TABLE",
    "INSERT",
    "UPDATE",
    "DELETE",
    "DESCRIBE",
    "SHOW",
    "SUMMARIZE",
    "EXPLAIN",
    "PIVOT",
    "UNPIVOT",
];

/// True when `sql` may leave state on its connection that the next job would
/// see. Conservative: unterminated quotes, several statements or an unknown
/// first word all answer true.
pub(crate) fn may_leave_state(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut first: Option<&str> = None;
    let mut after_semicolon = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => match find(b, i + 2, b"*/") {
                Some(end) => i = end + 2,
                None => return true,
            },
            _ if after_semicolon => return true, // a second statement
            b';' => {
                after_semicolon = true;
                i += 1;
            }
            b'\'' | b'"' => match skip_quoted(b, i, c) {
                Some(end) => i = end,
                None => return true,
            },
            b'$' => {
                // Dollar quoting: $tag$ ... $tag$ (tag may be empty).
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|&x| x == b'$')
                    .map(|p| i + 1 + p);
                match tag_end {
                    Some(te)
                        if b[i + 1..te]
                            .iter()
                            .all(|x| x.is_ascii_alphanumeric() || *x == b'_') =>
                    {
                        let tag = &b[i..=te];
                        match find(b, te + 1, tag) {
                            Some(end) => i = end + tag.len(),
                            None => return true,
                        }
                    }
                    _ => i += 1, // a parameter like $1
                }
            }
            _ if first.is_none() => {
                if c == b'(' {
                    first = Some("(");
                    i += 1;
                    continue;
                }
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
                    i += 1;
                }
                if i == start {
                    return true;
                }
                first = Some(&sql[start..i]);
            }
            _ => i += 1,
        }
    }
    match first {
        None => false, // only whitespace and comments
        Some("(") => false,
        Some(w) => !NEUTRAL_FIRST_WORDS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(w)),
    }
}

fn find(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    if from > b.len() {
        return None;
    }
    b[from..]
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| from + p)
}

/// Index just past the quoted run starting at `i` (doubled quotes escape).
fn skip_quoted(b: &[u8], mut i: usize, q: u8) -> Option<usize> {
    i += 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// What a session holds, as `(kind, name, value)` rows, sorted.
type SessionState = Vec<(String, String, String)>;

/// The query that lists everything a session can hold. One statement, so a
/// reset costs a rollback, this query, and a statement per difference.
const STATE_SQL: &str = "\
SELECT kind, name, value FROM (\
 SELECT 'table' AS kind, table_name AS name, '' AS value FROM duckdb_tables() WHERE temporary AND NOT internal \
 UNION ALL SELECT 'view', view_name, '' FROM duckdb_views() WHERE temporary AND NOT internal \
 UNION ALL SELECT 'sequence', sequence_name, '' FROM duckdb_sequences() WHERE temporary \
 UNION ALL SELECT DISTINCT CASE WHEN function_type = 'table_macro' THEN 'table_macro' ELSE 'macro' END, function_name, '' \
   FROM duckdb_functions() WHERE database_name = 'temp' AND NOT internal AND function_type IN ('macro', 'table_macro') \
 UNION ALL SELECT 'type', type_name, '' FROM duckdb_types() WHERE database_name = 'temp' AND NOT internal \
 UNION ALL SELECT 'prepared', name, '' FROM duckdb_prepared_statements() WHERE name NOT LIKE 'duckdb_prepare_internal_%' \
 UNION ALL SELECT 'variable', name, CAST(value AS VARCHAR) FROM duckdb_variables() \
 UNION ALL SELECT 'setting', name, COALESCE(value, '') FROM duckdb_settings() WHERE scope = 'LOCAL' \
 UNION ALL SELECT 'use', current_database(), current_schema()) ORDER BY kind, name";

/// A connection's state right after it was opened and `DUCKDB_INIT_SQL` ran:
/// what a reset returns it to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Baseline {
    state: SessionState,
}

/// Why a reset could not restore the baseline; the worker then replaces the
/// connection.
#[derive(Debug)]
pub(crate) struct ResetFailed(pub String);

impl Baseline {
    /// Reads the state of a freshly initialised connection.
    pub fn capture(conn: &mut Connection) -> Result<Baseline, String> {
        read_state(conn)
            .map(|state| Baseline { state })
            .map_err(|e| match e {
                DbError::Failed(m) => m,
                DbError::Interrupted => "interrupted".into(),
            })
    }

    /// Puts `conn` back to this baseline: rolls back an open transaction and
    /// undoes every difference in session state. Two passes at most: undoing
    /// `USE` also moves `search_path`, which the second pass puts back.
    pub fn restore(&self, conn: &mut Connection) -> Result<(), ResetFailed> {
        // Fails harmlessly ("no transaction is active") in the common case.
        let _ = conn.query("ROLLBACK");
        for _ in 0..2 {
            let now = read_state(conn).map_err(|e| ResetFailed(format!("{e:?}")))?;
            if now == self.state {
                return Ok(());
            }
            for stmt in self.undo(&now)? {
                conn.query(&stmt)
                    .map_err(|e| ResetFailed(format!("{stmt}: {e:?}")))?;
            }
        }
        let after = read_state(conn).map_err(|e| ResetFailed(format!("{e:?}")))?;
        if after == self.state {
            return Ok(());
        }
        let extra: Vec<_> = after
            .iter()
            .filter(|r| !self.state.contains(r))
            .take(4)
            .collect();
        let missing: Vec<_> = self
            .state
            .iter()
            .filter(|r| !after.contains(r))
            .take(4)
            .collect();
        Err(ResetFailed(format!(
            "session state still differs from the baseline after the reset (now {extra:?}, expected {missing:?})"
        )))
    }

    /// The statements that take `now` back to the baseline, `USE` first.
    fn undo(&self, now: &SessionState) -> Result<Vec<String>, ResetFailed> {
        let mut undo = Vec::new();
        if let Some(target) = self.state.iter().find(|(k, _, _)| k == "use") {
            let current = now.iter().find(|(k, _, _)| k == "use");
            if current != Some(target) {
                undo.push(format!(
                    "USE {}.{}",
                    quote_ident(&target.1),
                    quote_ident(&target.2)
                ));
            }
        }
        for (kind, name, value) in now {
            let known = self
                .state
                .iter()
                .find(|(k, n, _)| k == kind && n == name)
                .map(|(_, _, v)| v);
            if known == Some(value) {
                continue;
            }
            let ident = quote_ident(name);
            let stmt = match (kind.as_str(), known) {
                ("use", _) => continue,
                ("table", None) => format!("DROP TABLE IF EXISTS temp.main.{ident}"),
                ("view", None) => format!("DROP VIEW IF EXISTS temp.main.{ident}"),
                ("sequence", None) => format!("DROP SEQUENCE IF EXISTS temp.main.{ident}"),
                ("macro", None) => format!("DROP MACRO IF EXISTS temp.main.{ident}"),
                ("table_macro", None) => format!("DROP MACRO TABLE IF EXISTS temp.main.{ident}"),
                ("type", None) => format!("DROP TYPE IF EXISTS temp.main.{ident}"),
                ("prepared", None) => format!("DEALLOCATE {ident}"),
                ("variable", None) => format!("RESET VARIABLE {ident}"),
                ("setting", Some(v)) => format!("SET SESSION {ident} = {}", quote_literal(v)),
                ("setting", None) => format!("RESET SESSION {ident}"),
                _ => {
                    return Err(ResetFailed(format!(
                        "cannot restore {kind} {name} to its state after the init SQL"
                    )))
                }
            };
            undo.push(stmt);
        }
        // A dropped baseline entry (e.g. a setting the job RESET) comes back too.
        for (kind, name, value) in &self.state {
            if kind == "setting" && !now.iter().any(|(k, n, _)| k == kind && n == name) {
                undo.push(format!(
                    "SET SESSION {} = {}",
                    quote_ident(name),
                    quote_literal(value)
                ));
            }
        }
        Ok(undo)
    }
}

fn read_state(conn: &mut Connection) -> Result<SessionState, DbError> {
    let rows = conn.query_strings(STATE_SQL)?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            let value = r.pop().flatten().unwrap_or_default();
            let name = r.pop().flatten().unwrap_or_default();
            let kind = r.pop().flatten().unwrap_or_default();
            (kind, name, value)
        })
        .collect())
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::may_leave_state;

    #[test]
    fn plain_queries_are_neutral() {
        for sql in [
            "SELECT 1",
            "  select * from t where x = ';BEGIN'",
            "WITH a AS (SELECT 1) SELECT * FROM a;",
            "-- comment\nFROM t",
            "/* BEGIN; */ SELECT 1 ; -- trailing\n",
            "(SELECT 1) UNION (SELECT 2)",
            "INSERT INTO t VALUES ('a;b')",
            "SELECT $$;USE x$$",
            "SELECT \"we;ird\" FROM t",
            "",
        ] {
            assert!(!may_leave_state(sql), "{sql}");
        }
    }

    #[test]
    fn state_changers_and_unknowns_are_not() {
        for sql in [
            "BEGIN",
            "begin transaction",
            "USE memory",
            "SET search_path = 'x'",
            "CREATE TEMP TABLE t AS SELECT 1",
            "PREPARE p AS SELECT 1",
            "SET VARIABLE x = 1",
            "SELECT 1; SELECT 2",
            "SELECT 1; BEGIN",
            "SELECT 'unterminated",
            "SELECT 1 /* open",
            "CALL pragma_version()",
            "PRAGMA enable_profiling",
            "RESET search_path",
            "CHECKPOINT",
            "ATTACH ':memory:' AS x",
            "{",
        ] {
            assert!(may_leave_state(sql), "{sql}");
        }
    }
}

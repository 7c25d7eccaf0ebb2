//! Bounds on SQL text, checked before DuckDB sees a statement.
//!
//! Owns [`check_sql`]: the size of a text and how deeply it nests brackets
//! (`(`, `[`, `{`), counting the nesting inside string literals too, because
//! DuckDB parses some of them again (a type string such as `from_json(j,
//! 'STRUCT(a STRUCT(...))')`, a JSON literal), on the same thread and stack.
//! DuckDB parses, binds and plans on the calling thread and recurses once or
//! more per nesting level; a text past these bounds is refused with a clear
//! error instead of reaching a recursion that could overflow the SQL
//! thread's stack and abort the process.
//!
//! The scan mirrors DuckDB 2.0's tokenizer (`base_tokenizer.cpp`) for what
//! decides whether a bracket is code, literal or comment: `'...'` with `''`,
//! `E'...'` with backslash escapes, `"..."` and `` `...` `` identifiers,
//! `$tag$...$tag$`, `--` comments and nested `/* */` comments. Brackets in
//! comments do not count; brackets in a literal count on top of the depth
//! where the literal stands and never leak out of it.
//!
//! It runs on a reactor (one pass over at most `max_bytes` bytes, no
//! allocation); it never calls DuckDB and never blocks.

use std::fmt;

/// Default for [`crate::EngineConfig::max_sql_bytes`]: the longest SQL text
/// accepted (see `docs/runbook.md`, "SQL bounds", for the measurements).
pub const DEFAULT_MAX_SQL_BYTES: usize = 256 << 10;

/// Default for [`crate::EngineConfig::max_sql_nesting`]: the deepest bracket
/// nesting accepted, literals included.
pub const DEFAULT_MAX_SQL_NESTING: usize = 256;

/// Why a SQL text was refused before it ran. `Display` is one line for the
/// client (the agent answers 400 `VALIDATION_ERROR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlRejected {
    /// The text is longer than `limit` bytes.
    TooLong { bytes: usize, limit: usize },
    /// Brackets nest deeper than `limit` (at byte `at`).
    TooDeep { limit: usize, at: usize },
}

impl fmt::Display for SqlRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlRejected::TooLong { bytes, limit } => write!(
                f,
                "sql is {bytes} bytes, more than the limit of {limit} bytes (MAX_SQL_BYTES)"
            ),
            SqlRejected::TooDeep { limit, at } => write!(
                f,
                "sql nests brackets deeper than the limit of {limit} (MAX_SQL_NESTING), at byte {at}; \
                 brackets inside string literals count too"
            ),
        }
    }
}

impl std::error::Error for SqlRejected {}

/// Checks `sql` against the bounds; 0 turns a bound off.
pub fn check_sql(sql: &str, max_bytes: usize, max_nesting: usize) -> Result<(), SqlRejected> {
    if max_bytes > 0 && sql.len() > max_bytes {
        return Err(SqlRejected::TooLong {
            bytes: sql.len(),
            limit: max_bytes,
        });
    }
    if max_nesting == 0 {
        return Ok(());
    }
    match scan(sql.as_bytes(), max_nesting).over_at {
        Some(at) => Err(SqlRejected::TooDeep {
            limit: max_nesting,
            at,
        }),
        None => Ok(()),
    }
}

/// The deepest nesting in `sql` (code and literal brackets as [`check_sql`]
/// counts them). For tests and measurements.
pub fn nesting_depth(sql: &str) -> usize {
    scan(sql.as_bytes(), 0).max
}

struct Scan {
    /// The deepest nesting seen (up to the stop, if any).
    max: usize,
    /// Where the nesting first passed the limit.
    over_at: Option<usize>,
}

/// True when `sql` is one `SELECT` without `FROM` and without anything that
/// could make it return more than one row (`UNNEST`, set operations, CTEs,
/// `VALUES`, ...): its result is one row at most, so materializing it costs
/// nothing a stream would save, and the worker may run it through DuckDB's
/// one-call `duckdb_query` (twice the rate of prepare-then-stream for
/// trivial statements). Conservative: a listed word anywhere in the text,
/// literals and comments included, answers false. The one way around it is a
/// scalar macro whose body unnests; its rows are then materialized inside
/// DuckDB (its memory limit applies) and still encoded under the cap.
pub(crate) fn is_one_row_select(sql: &str) -> bool {
    const MULTI_ROW: &[&[u8]] = &[
        b"from",
        b"unnest",
        b"union",
        b"intersect",
        b"except",
        b"with",
        b"values",
        b"table",
        b"pivot",
        b"unpivot",
        b"recursive",
        b"generate_subscripts",
    ];
    let b = sql.as_bytes();
    let word_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let mut first = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b';' {
            // Only a trailing semicolon: one statement.
            if !b[i + 1..].iter().all(|c| c.is_ascii_whitespace()) {
                return false;
            }
            break;
        }
        if !word_char(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && word_char(b[i]) {
            i += 1;
        }
        let w = &b[start..i];
        if first {
            if !w.eq_ignore_ascii_case(b"select") {
                return false;
            }
            first = false;
        } else if MULTI_ROW.iter().any(|m| w.eq_ignore_ascii_case(m)) {
            return false;
        }
    }
    !first
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Standard,
    /// A number: DuckDB's tokenizer treats `e`/`E` in it specially, which
    /// decides whether a following `'` opens an `E'...'` string.
    Numeric,
    Keyword,
    Operator,
    /// A string literal; `true` = backslash escapes (`E'...'`).
    Str(bool),
    QuotedIdent(u8),
    LineComment,
    BlockComment,
    Dollar,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// DuckDB's `StringUtil::CharacterIsOperator`.
fn is_operator_class(c: u8) -> bool {
    c != b'_' && (matches!(c, b'!'..=b'/') || matches!(c, b':'..=b'@') || matches!(c, b'['..=b'`'))
        || matches!(c, b'{'..=b'~')
}

/// DuckDB's `Tokenizer::CharacterIsOperator` (characters that continue an operator).
fn is_operator_char(c: u8) -> bool {
    matches!(
        c,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'^'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'&'
            | b'|'
    )
}

/// DuckDB's `CharacterIsKeyword`: anything that is not an operator, space or
/// control-flow character (`'`, `;`, `"`, `.`).
fn is_keyword_char(c: u8) -> bool {
    !is_operator_class(c) && !is_space(c) && !matches!(c, b'\'' | b';' | b'"' | b'.')
}

fn is_initial_number(c: u8) -> bool {
    c.is_ascii_digit() || c == b'.'
}

fn is_dollar_tag_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn is_open(c: u8) -> bool {
    matches!(c, b'(' | b'[' | b'{')
}

fn is_close(c: u8) -> bool {
    matches!(c, b')' | b']' | b'}')
}

impl Scan {
    /// Records an opening bracket at `pos` reaching depth `d`; true = stop.
    #[inline]
    fn open(&mut self, limit: usize, pos: usize, d: usize) -> bool {
        self.max = self.max.max(d);
        if limit > 0 && d > limit {
            self.over_at = Some(pos);
            return true;
        }
        false
    }
}

/// The tokenizer walk: the deepest nesting, stopping at the first opening
/// bracket (in code or in a literal) that passes `limit` (0 = no limit).
fn scan(sql: &[u8], limit: usize) -> Scan {
    let mut out = Scan {
        max: 0,
        over_at: None,
    };
    let n = sql.len();
    let mut state = State::Standard;
    // Code depth, and the depth inside the current literal (on top of it).
    let mut depth = 0usize;
    let mut inner = 0usize;
    let mut comment_depth = 0usize;
    let mut marker: &[u8] = &[];
    let mut last_pos = 0usize;
    let mut i = 0usize;
    while i < n {
        let c = sql[i];
        match state {
            // The order of these tests is DuckDB's.
            State::Standard => {
                if c == b'\'' {
                    state = State::Str(false);
                    inner = 0;
                } else if c == b'"' || c == b'`' {
                    state = State::QuotedIdent(c);
                    inner = 0;
                } else if c == b';' {
                    // DuckDB parses each statement on its own, but they run
                    // one after the other on one stack, so keep counting
                    // across them (an unbalanced text only counts deeper).
                } else if c == b'$' {
                    // `$tag$` opens a dollar-quoted string; `$1` and `$name`
                    // are parameters.
                    if i + 1 < n && !sql[i + 1].is_ascii_digit() {
                        let mut next_dollar = None;
                        for (j, &b) in sql.iter().enumerate().skip(i + 1) {
                            if b == b'$' {
                                next_dollar = Some(j);
                                break;
                            }
                            if !is_dollar_tag_char(b) {
                                break;
                            }
                        }
                        if let Some(j) = next_dollar {
                            marker = &sql[i + 1..j];
                            state = State::Dollar;
                            inner = 0;
                            i = j;
                        }
                    }
                } else if c == b'-' && i + 1 < n && sql[i + 1] == b'-' {
                    i += 1;
                    state = State::LineComment;
                } else if c == b'/' && i + 1 < n && sql[i + 1] == b'*' {
                    i += 1;
                    state = State::BlockComment;
                    comment_depth = 1;
                } else if is_space(c) {
                } else if is_open(c) {
                    depth += 1;
                    if out.open(limit, i, depth) {
                        return out;
                    }
                } else if is_close(c) {
                    depth = depth.saturating_sub(1);
                } else if matches!(c, b',' | b':' | b'?' | b'#') {
                    // DuckDB's other single-byte operators.
                } else if is_initial_number(c) {
                    state = State::Numeric;
                    last_pos = i;
                } else if matches!(c, b'N' | b'n' | b'X' | b'x' | b'E' | b'e' | b'B' | b'b')
                    && i + 1 < n
                    && sql[i + 1] == b'\''
                {
                    state = State::Str(matches!(c, b'E' | b'e'));
                    inner = 0;
                    i += 1;
                } else if is_operator_class(c) {
                    state = State::Operator;
                } else {
                    state = State::Keyword;
                }
            }
            State::Numeric => {
                let digit_sep = c == b'_'
                    && sql[i - 1].is_ascii_digit()
                    && i + 1 < n
                    && sql[i + 1].is_ascii_digit();
                let scientific = matches!(c, b'e' | b'E')
                    && !matches!(sql[i - 1], b'e' | b'E')
                    && (sql[last_pos].is_ascii_digit() || sql[i - 1].is_ascii_digit());
                let exp_sign = matches!(c, b'+' | b'-') && matches!(sql[i - 1], b'e' | b'E');
                if !(is_initial_number(c) || digit_sep || scientific || exp_sign) {
                    // End of the number: DuckDB backs up to its last digit or
                    // dot and tokenizes the rest (a trailing `e` included) anew.
                    while !is_initial_number(sql[i - 1]) {
                        i -= 1;
                    }
                    state = State::Standard;
                    continue;
                }
            }
            State::Keyword => {
                if c != b'$' && !is_keyword_char(c) {
                    state = State::Standard;
                    continue;
                }
            }
            State::Operator => {
                if (c == b'-' && i + 1 < n && sql[i + 1] == b'-')
                    || (c == b'/' && i + 1 < n && sql[i + 1] == b'*')
                    || !is_operator_char(c)
                {
                    state = State::Standard;
                    continue;
                }
            }
            State::Str(escapes) => {
                if escapes && c == b'\\' && i + 1 < n {
                    i += 1;
                } else if c == b'\'' {
                    if i + 1 < n && sql[i + 1] == b'\'' {
                        i += 1;
                    } else {
                        state = State::Standard;
                    }
                } else if literal_bracket(&mut out, limit, c, depth, &mut inner, i) {
                    return out;
                }
            }
            State::QuotedIdent(delim) => {
                if c == delim {
                    if i + 1 < n && sql[i + 1] == delim {
                        i += 1;
                    } else {
                        state = State::Standard;
                    }
                } else if literal_bracket(&mut out, limit, c, depth, &mut inner, i) {
                    return out;
                }
            }
            State::LineComment => {
                if c == b'\n' || c == b'\r' {
                    state = State::Standard;
                }
            }
            State::BlockComment => {
                if c == b'/' && i + 1 < n && sql[i + 1] == b'*' {
                    i += 1;
                    comment_depth += 1;
                } else if c == b'*' && i + 1 < n && sql[i + 1] == b'/' {
                    i += 1;
                    comment_depth -= 1;
                    if comment_depth == 0 {
                        state = State::Standard;
                    }
                }
            }
            State::Dollar => {
                if c == b'$' && i + 1 < n {
                    let start = i + 1;
                    if let Some(p) = sql[start..].iter().position(|&b| b == b'$') {
                        if &sql[start..start + p] == marker {
                            state = State::Standard;
                            i = start + p + 1;
                            continue;
                        }
                    }
                } else if literal_bracket(&mut out, limit, c, depth, &mut inner, i) {
                    return out;
                }
            }
        }
        i += 1;
    }
    out
}

/// A bracket inside a literal: counts on top of the code depth; true = stop.
#[inline]
fn literal_bracket(
    out: &mut Scan,
    limit: usize,
    c: u8,
    depth: usize,
    inner: &mut usize,
    pos: usize,
) -> bool {
    if is_open(c) {
        *inner += 1;
        return out.open(limit, pos, depth + *inner);
    }
    if is_close(c) {
        *inner = inner.saturating_sub(1);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_depth() {
        assert_eq!(nesting_depth("SELECT 1"), 0);
        assert_eq!(nesting_depth("SELECT (1)"), 1);
        assert_eq!(nesting_depth("SELECT ((1)), [[2]], {'a': {'b': 1}}"), 2);
        assert_eq!(nesting_depth("SELECT f(g(h(1)))"), 3);
        let deep = format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300));
        assert_eq!(nesting_depth(&deep), 300);
    }

    #[test]
    fn literals_count_on_top_and_do_not_leak() {
        assert_eq!(nesting_depth("SELECT '((('"), 3);
        assert_eq!(nesting_depth("SELECT f('(((')"), 4);
        // Unbalanced brackets in a literal do not change the code depth after it.
        assert_eq!(nesting_depth("SELECT '(((' , '(' , (1)"), 3);
        assert_eq!(nesting_depth("SELECT ')))' , (((1)))"), 3);
        assert_eq!(
            nesting_depth("SELECT from_json(j, 'STRUCT(a STRUCT(b INT))')"),
            3
        );
        // '' inside a literal, E'' with backslash escapes.
        assert_eq!(nesting_depth("SELECT 'it''s ((' , 1"), 2);
        assert_eq!(nesting_depth(r"SELECT E'\'((' , 1"), 2);
        // In a plain literal a backslash is a character: the literal ends at the next quote.
        assert_eq!(nesting_depth(r"SELECT '\' , ((1))"), 2);
        // Dollar quoting, with and without a tag; $1 is a parameter.
        assert_eq!(nesting_depth("SELECT $$(((($$, (1)"), 4);
        assert_eq!(nesting_depth("SELECT $t$ $$ ((( $t$, 1"), 3);
        assert_eq!(nesting_depth("SELECT $1 + (2)"), 1);
        // Quoted identifiers.
        assert_eq!(nesting_depth("SELECT 1 AS \"((\", `(`"), 2);
    }

    #[test]
    fn comments_do_not_count() {
        assert_eq!(nesting_depth("SELECT 1 -- ((((\n, (2)"), 1);
        assert_eq!(nesting_depth("SELECT 1 /* (( /* ((( */ (( */ , (2)"), 1);
        // A closing bracket in a comment does not hide code nesting.
        assert_eq!(nesting_depth("SELECT ((( /* ))) */ (1)))) "), 4);
    }

    #[test]
    fn closing_brackets_in_literals_do_not_hide_code_nesting() {
        // The attack on a naive counter: closers inside literals.
        let sql = format!(
            "SELECT {}')))', '))]]', $$)))$$ 1{}",
            "(".repeat(50),
            ")".repeat(50)
        );
        assert_eq!(nesting_depth(&sql), 50);
        let sql = format!("SELECT {}E'\\')))' 1{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(nesting_depth(&sql), 40);
    }

    #[test]
    fn e_prefix_rules_follow_duckdb() {
        // `name'..'` is a keyword followed by a plain literal (no escapes).
        assert_eq!(nesting_depth(r"SELECT name'\' , ((1))"), 2);
        // After a number DuckDB backs up to the `e`, which then opens E'...'.
        assert_eq!(nesting_depth(r"SELECT 1e'\'((' , 1"), 2);
    }

    #[test]
    fn one_row_selects() {
        for yes in [
            "SELECT 1",
            "select 42 AS answer;",
            "SELECT (SELECT 1), 'x' || 'y'",
            " SELECT repeat('x', 10)",
        ] {
            assert!(is_one_row_select(yes), "{yes}");
        }
        for no in [
            "SELECT * FROM t",
            "FROM t",
            "SELECT unnest(range(10))",
            "SELECT 1 UNION ALL SELECT 2",
            "WITH a AS (SELECT 1) SELECT 2",
            "SELECT 1; SELECT 2",
            "CREATE TABLE t (a INT)",
            "VALUES (1), (2)",
            "SELECT 'from'",
            "select 1 except select 2",
            "",
        ] {
            assert!(!is_one_row_select(no), "{no}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(check_sql("SELECT 1", 8, 0), Ok(()));
        assert_eq!(
            check_sql("SELECT 1 ", 8, 0),
            Err(SqlRejected::TooLong { bytes: 9, limit: 8 })
        );
        assert_eq!(check_sql("SELECT ((1))", 0, 2), Ok(()));
        assert_eq!(
            check_sql("SELECT (((1)))", 0, 2),
            Err(SqlRejected::TooDeep { limit: 2, at: 9 })
        );
        let e = check_sql("SELECT '((('", 0, 2).unwrap_err();
        assert!(e.to_string().contains("MAX_SQL_NESTING"), "{e}");
    }
}

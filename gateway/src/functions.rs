//! The function allow list: every function, macro and operator the bundled
//! DuckDB lists in `duckdb_functions()`, classified once, by hand, in
//! `functions.list` beside this file (plus the few names sqlparser reads as
//! a call that DuckDB binds as a construct of its own, such as `columns`).
//!
//! Owns the verdict on a function name: allowed in expressions, allowed as
//! a table function in FROM, or refused with the reason (it reads the
//! catalog, settings, plans, statistics, files, variables, sequences,
//! secrets, the network or the engine's state; it delays; it raises on
//! purpose). A name the list does not know is refused: an engine upgrade
//! that adds a function opens nothing until someone classifies it, and the
//! test `every_engine_function_is_classified` fails until they do. Both the
//! rewriter (on the names a user writes) and the binder check (on the names
//! the engine binds, macros expanded and operators included) ask here.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Where a function is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionUse {
    /// In an expression: scalar, aggregate, window, macro or operator.
    Scalar,
    /// In FROM, as a table function.
    Table,
}

/// The verdict on one name, as `functions.list` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed in expressions only.
    Expr,
    /// Allowed in FROM only.
    From,
    /// Allowed in both.
    Both,
    /// Allowed where the binder puts it (casts, internal helpers of a
    /// construct the user wrote), refused where a user writes it.
    Bound,
    /// Refused, with the reason.
    Refused(&'static str),
}

/// What each refusal category of `functions.list` means to a user.
const REASONS: &[(&str, &str)] = &[
    ("catalog", "it reads the engine's catalog"),
    ("settings", "it reads the engine's settings"),
    ("plan", "it reads or runs a statement's plan"),
    ("statistics", "it reads the base table's statistics"),
    ("files", "it reads files or other databases"),
    ("variables", "it reads session variables"),
    ("sequences", "it reads or moves sequences"),
    ("delay", "it delays on purpose"),
    ("state", "it reads or changes the engine's state"),
    ("raises", "it raises an error on purpose"),
    ("secrets", "it reads the engine's secrets"),
    ("logs", "it reads or writes the engine's logs"),
    ("sql", "it runs or parses SQL text of its own"),
    ("internal", "it is internal to the engine"),
    ("test", "it is a test function of the engine"),
];

/// The classified list, by folded name.
fn list() -> &'static HashMap<&'static str, Verdict> {
    static LIST: OnceLock<HashMap<&'static str, Verdict>> = OnceLock::new();
    LIST.get_or_init(|| parse(include_str!("functions.list")))
}

/// One line of `functions.list`: `verdict: name`, the verdict one of
/// `expr`, `from`, `both`, `bound` or `refused(<category>)`; `#` starts a
/// comment line. `None` for a blank or comment line; `Err` for a malformed
/// one (the test suite parses every line, so none reaches a release).
fn parse_line(line: &'static str) -> Result<Option<(&'static str, Verdict)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (verdict, name) = line
        .split_once(": ")
        .ok_or_else(|| format!("no `verdict: name` in {line:?}"))?;
    let name = name.trim();
    if name.is_empty() || name != name.to_ascii_lowercase() {
        return Err(format!("name not folded in {line:?}"));
    }
    let v = match verdict {
        "expr" => Verdict::Expr,
        "from" => Verdict::From,
        "both" => Verdict::Both,
        "bound" => Verdict::Bound,
        other => {
            let category = other
                .strip_prefix("refused(")
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("unknown verdict in {line:?}"))?;
            let (_, why) = REASONS
                .iter()
                .find(|(c, _)| *c == category)
                .ok_or_else(|| format!("unknown refusal category in {line:?}"))?;
            Verdict::Refused(why)
        }
    };
    Ok(Some((name, v)))
}

fn parse(text: &'static str) -> HashMap<&'static str, Verdict> {
    let mut out = HashMap::new();
    for line in text.lines() {
        match parse_line(line) {
            Ok(Some((name, v))) => {
                out.insert(name, v);
            }
            Ok(None) => {}
            // Fail closed: a line that does not parse refuses its name.
            Err(_) => {
                if let Some((_, name)) = line.trim().split_once(": ") {
                    out.insert(
                        name.trim(),
                        Verdict::Refused("misclassified in the allow list"),
                    );
                }
            }
        }
    }
    out
}

/// The verdict on a folded name, `None` when the list does not know it.
pub fn verdict(name: &str) -> Option<Verdict> {
    list().get(name).copied()
}

/// `Ok` when a user may write a call of `name` (folded) as `usage`; else
/// why not.
pub fn check(name: &str, usage: FunctionUse) -> Result<(), &'static str> {
    match (verdict(name), usage) {
        (None, _) => Err("it is not on the gateway's allow list of functions"),
        (Some(Verdict::Refused(why)), _) => Err(why),
        (Some(Verdict::Bound), _) => Err("it is internal to the engine"),
        (Some(Verdict::Expr | Verdict::Both), FunctionUse::Scalar)
        | (Some(Verdict::From | Verdict::Both), FunctionUse::Table) => Ok(()),
        (Some(Verdict::Expr), FunctionUse::Table) => {
            Err("it is not a table function the gateway allows in FROM")
        }
        (Some(Verdict::From), FunctionUse::Scalar) => {
            Err("it is a table function: call it in FROM")
        }
    }
}

/// `Ok` when the engine's binder may have bound `name` (folded) into an
/// expression of a statement the gateway sends.
pub fn check_bound(name: &str) -> Result<(), &'static str> {
    match verdict(name) {
        Some(Verdict::Expr | Verdict::Both | Verdict::Bound) => Ok(()),
        Some(Verdict::From) => Err("it is a table function"),
        Some(Verdict::Refused(why)) => Err(why),
        None => Err("it is not on the gateway's allow list of functions"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_parses_and_every_line_is_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for line in include_str!("functions.list").lines() {
            match parse_line(line) {
                Ok(Some((name, _))) => assert!(seen.insert(name), "classified twice: {name}"),
                Ok(None) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(seen.len() > 800, "{} names", seen.len());
    }

    /// The engine this workspace builds lists no function the list does not
    /// classify: an upgrade that adds one fails here until someone decides.
    #[test]
    fn every_engine_function_is_classified() {
        // The engines run with icu: list its functions too.
        duckdb_icu::register().unwrap();
        let c = duckdb::Connection::open_in_memory().unwrap();
        let mut st = c
            .prepare("SELECT DISTINCT function_name FROM duckdb_functions() ORDER BY 1")
            .unwrap();
        let names: Vec<String> = st
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(names.len() > 500, "{} functions", names.len());
        let unknown: Vec<&String> = names
            .iter()
            .filter(|n| verdict(&crate::access::fold(n)).is_none())
            .collect();
        assert!(
            unknown.is_empty(),
            "functions.list does not classify {unknown:?}"
        );
    }

    #[test]
    fn unknown_and_refused_names_are_refused() {
        assert!(check("no_such_function_anywhere", FunctionUse::Scalar).is_err());
        for n in [
            "current_setting",
            "json_serialize_plan",
            "stats",
            "current_query",
            "getvariable",
            "read_csv",
            "nextval",
            "duckdb_tables",
        ] {
            assert!(check(n, FunctionUse::Scalar).is_err(), "{n}");
            assert!(check(n, FunctionUse::Table).is_err(), "{n}");
        }
        assert!(check("lower", FunctionUse::Scalar).is_ok());
        assert!(check("range", FunctionUse::Table).is_ok());
        assert!(check("lower", FunctionUse::Table).is_err());
    }
}

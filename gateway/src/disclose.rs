//! What of an engine's error message a user may read.
//!
//! The engine ran the rewritten statement, not the user's: its messages can
//! quote that text back (`LINE 1: SELECT ... WHERE (region = 'EU') ...` with
//! a caret under it) and so show the policy's predicates and masks, which
//! are not the user's to see. Owns the rule: DuckDB's message about the
//! user's own text is kept; the quoted context is cut; a message that still
//! names a part of the policy (a filter or mask expression, a derived table,
//! a table's full quoted name that only the rewrite wrote) is replaced by a
//! message that says so and nothing more. It never adds to a message.

use crate::access::{AccessControl, Principal, TableKey};
use crate::rewrite::{derived_sql, Catalog};

/// What a user reads instead of a message that would show the policy.
pub const WITHHELD: &str = "the engine refused the statement; its message is withheld because it \
     quotes the access policy applied to your query";

/// The parts of the rewritten statement a user's error must not show: the
/// policy's filter and mask expressions and the derived queries as printed,
/// and the full quoted names the rewrite gave the granted tables.
#[derive(Debug, Default, Clone)]
pub struct PolicyText {
    fragments: Vec<String>,
}

impl PolicyText {
    /// Adds one fragment (ignored when too short to mean anything by itself,
    /// such as a mask `'x'`: those appear in answers anyway).
    pub fn add(&mut self, fragment: impl Into<String>) {
        let f: String = fragment.into();
        if f.trim().len() >= 4 {
            self.fragments.push(f.to_ascii_lowercase());
        }
    }

    fn shown_in(&self, message: &str) -> bool {
        let m = message.to_ascii_lowercase();
        self.fragments.iter().any(|f| m.contains(f.as_str()))
    }
}

/// The policy text of a statement rewritten for `who` that reads `tables`:
/// each table's derived query, filter and masks, and its full quoted name.
pub fn policy_text(
    access: &dyn AccessControl,
    who: &Principal,
    tables: &[TableKey],
    catalog: &dyn Catalog,
) -> PolicyText {
    let mut t = PolicyText::default();
    for key in tables {
        t.add(format!(
            "\"{}\".\"{}\".\"{}\"",
            key.catalog, key.schema, key.table
        ));
        let Some(grant) = access.access(who, key) else {
            continue;
        };
        if let Some(f) = &grant.filter {
            t.add(f.to_string());
        }
        for m in &grant.masks {
            t.add(m.expr.to_string());
        }
        if let Ok(Some(d)) = derived_sql(access, who, key, catalog) {
            t.add(d);
        }
    }
    t
}

/// The message a user reads for an engine error `message` raised while
/// running a statement rewritten under `policy`.
pub fn engine_message(message: &str, policy: &PolicyText) -> String {
    let kept = without_context(message);
    if policy.shown_in(kept) {
        return WITHHELD.to_string();
    }
    kept.to_string()
}

/// The message without DuckDB's quoted context: everything from the first
/// `LINE <n>:` line on (the statement's text and the caret under it).
pub fn without_context(message: &str) -> &str {
    let mut cut = message.len();
    let mut at = 0;
    for line in message.split_inclusive('\n') {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("LINE ") {
            if rest
                .split_once(':')
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                cut = at;
                break;
            }
        }
        at += line.len();
    }
    message[..cut].trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quoted_statement_is_cut() {
        let m = "Binder Error: Referenced column \"nme\" not found in FROM clause!\n\
                 Candidate bindings: \"users.name\"\n\nLINE 1: SELECT nme FROM (SELECT * FROM \"memory\"...\n               ^";
        let p = PolicyText::default();
        assert_eq!(
            engine_message(m, &p),
            "Binder Error: Referenced column \"nme\" not found in FROM clause!\nCandidate bindings: \"users.name\""
        );
        assert_eq!(
            without_context("Parser Error: syntax error at or near \"x\""),
            "Parser Error: syntax error at or near \"x\""
        );
    }

    #[test]
    fn a_message_naming_the_policy_is_withheld() {
        let mut p = PolicyText::default();
        p.add("(region = 'EU')");
        p.add("'x'");
        let m = "Binder Error: Cannot compare values in (region = 'EU')";
        assert_eq!(engine_message(m, &p), WITHHELD);
        // Too short to be a fragment: kept.
        assert_eq!(
            engine_message("Conversion Error: 'x'", &p),
            "Conversion Error: 'x'"
        );
        // Case does not hide it.
        assert_eq!(engine_message("... (REGION = 'EU') ...", &p), WITHHELD);
    }
}

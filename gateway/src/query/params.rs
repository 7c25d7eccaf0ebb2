//! Statement parameters: placeholders in a user's SQL whose values a door
//! binds as values (Flight SQL's prepared statements), never as text.
//!
//! Owns [`number_placeholders`]: DuckDB numbers `?` placeholders by their
//! order in the text it is given, and the rewriter prints its own text,
//! whose clause order may differ from the user's (`OFFSET ? LIMIT ?` is
//! printed `LIMIT ... OFFSET ...`). So every `?` is numbered `$1`, `$2`, ...
//! by its place in the user's own text before the statement enters the
//! query path, and the numbers survive the rewrite. It never touches
//! anything but the `?` tokens, and refuses what it cannot number
//! unambiguously: named parameters (`$name`), and `?` mixed with `$n`.

use std::borrow::Cow;

use sqlparser::dialect::DuckDbDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{ErrorKind, QueryError};

fn refused(message: impl Into<String>) -> QueryError {
    QueryError::new(ErrorKind::Refused, "SQL_REFUSED", message)
}

/// `sql` with each `?` placeholder written `$n`, `n` its place among the
/// `?` of the text (the text itself when it has none). A text the tokenizer
/// refuses is handed back unchanged, for the rewriter to refuse with its
/// own reason.
pub fn number_placeholders(sql: &str) -> Result<Cow<'_, str>, QueryError> {
    let dialect = DuckDbDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return Ok(Cow::Borrowed(sql));
    };
    let mut anonymous = Vec::new();
    let mut numbered = false;
    for t in &tokens {
        let Token::Placeholder(p) = &t.token else {
            continue;
        };
        if p == "?" {
            anonymous.push(t.span.start);
        } else if p.len() > 1 && p.starts_with('$') && p[1..].bytes().all(|b| b.is_ascii_digit()) {
            numbered = true;
        } else {
            return Err(refused(format!(
                "the parameter {p}: use positional parameters ($1, $2, ... or ?)"
            )));
        }
    }
    if anonymous.is_empty() {
        return Ok(Cow::Borrowed(sql));
    }
    if numbered {
        return Err(refused(
            "parameters written both as ? and as $n: use one form",
        ));
    }
    // Byte offset of each line's start (the tokenizer counts lines and
    // characters from 1).
    let mut line_starts = vec![0usize];
    line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    let mut out = String::with_capacity(sql.len() + anonymous.len() * 2);
    let mut from = 0;
    for (n, at) in anonymous.iter().enumerate() {
        let offset = usize::try_from(at.line)
            .ok()
            .and_then(|l| line_starts.get(l.checked_sub(1)?))
            .and_then(|start| {
                let col = usize::try_from(at.column).ok()?.checked_sub(1)?;
                sql[*start..]
                    .char_indices()
                    .nth(col)
                    .map(|(i, _)| start + i)
            });
        match offset {
            Some(o) if o >= from && sql[o..].starts_with('?') => {
                out.push_str(&sql[from..o]);
                out.push_str(&format!("${}", n + 1));
                from = o + 1;
            }
            _ => return Err(refused("cannot number the statement's ? parameters")),
        }
    }
    out.push_str(&sql[from..]);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_question_marks_by_their_place_in_the_text() {
        assert_eq!(
            number_placeholders(
                "SELECT ? , '?' AS q,\n  \"?\" FROM t WHERE a = ? -- ?\n OFFSET ? LIMIT ?"
            )
            .unwrap(),
            "SELECT $1 , '?' AS q,\n  \"?\" FROM t WHERE a = $2 -- ?\n OFFSET $3 LIMIT $4"
        );
        assert_eq!(
            number_placeholders("SELECT 'é', ? /* ünï */, ?").unwrap(),
            "SELECT 'é', $1 /* ünï */, $2"
        );
        assert!(matches!(
            number_placeholders("SELECT $1, $2").unwrap(),
            Cow::Borrowed("SELECT $1, $2")
        ));
        assert!(number_placeholders("SELECT ?, $1").is_err());
        assert!(number_placeholders("SELECT $name").is_err());
        assert_eq!(number_placeholders("SELECT 1").unwrap(), "SELECT 1");
    }
}

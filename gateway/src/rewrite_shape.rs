//! Statement shapes and rewrite templates: a statement that differs from one
//! seen before only in its plain literals (a dashboard's date range, an
//! application's bound ids) is rewritten by putting its literals into the
//! rewrite of that shape instead of a parse, a walk and a print.
//!
//! Owns what a shape is (a statement's tokens with its plain literals left as
//! holes), how a template is built and proven, and how it is filled. A
//! template is only ever kept when it is proven: the rewrite of the shape
//! with a unique sentinel in every hole must hold each sentinel exactly once,
//! read the same tables, and, filled with the statement's own literals,
//! reproduce that statement's full rewrite byte for byte. The rewriter never
//! looks at a literal's value (it parses, checks names and splices derived
//! tables), and the parser's choices depend on a token's kind, not its value,
//! for the two kinds left as holes; where either is not so for a shape, the
//! sentinel rewrite fails or differs and no template is kept.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::policy::TableKey;
use crate::rewrite::{RewriteError, Rewritten};

/// A literal a shape leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Hole {
    /// A `'...'` string; [`crate::rewrite::tokenize`] has already refused any
    /// value the printer would not write back with its quotes doubled.
    Str,
    /// A plain integer (see [`is_plain_int`]), with or without DuckDB's `L`.
    Int { long: bool },
}

/// The hole a token leaves in its statement's shape, if it is a plain literal.
pub(crate) fn hole_of(t: &Token) -> Option<Hole> {
    match t {
        Token::SingleQuotedString(_) => Some(Hole::Str),
        Token::Number(n, long) if is_plain_int(n) => Some(Hole::Int { long: *long }),
        _ => None,
    }
}

/// `0`, or up to 18 digits without a leading zero: a number that every
/// integer type the parser may read it into prints back as written.
fn is_plain_int(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 18
        && b.iter().all(u8::is_ascii_digit)
        && (b[0] != b'0' || b.len() == 1)
}

/// One token of a shape: a hole, or a token kept as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Hole(Hole),
    Token(Token),
}

/// Hashes a shape the same way whether it is held ([`Shape`]) or read off a
/// statement's tokens: the count, then per token a tag and the hole or token.
fn hash_pieces<'a, H: Hasher>(h: &mut H, n: usize, pieces: impl Iterator<Item = PieceRef<'a>>) {
    h.write_usize(n);
    for p in pieces {
        match p {
            PieceRef::Hole(k) => {
                h.write_u8(0);
                k.hash(h);
            }
            PieceRef::Token(t) => {
                h.write_u8(1);
                t.hash(h);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum PieceRef<'a> {
    Hole(Hole),
    Token(&'a Token),
}

fn piece_of(t: &Token) -> PieceRef<'_> {
    match hole_of(t) {
        Some(k) => PieceRef::Hole(k),
        None => PieceRef::Token(t),
    }
}

/// A statement's shape, held as a cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape(Box<[Piece]>);

impl Shape {
    pub(crate) fn of(tokens: &[TokenWithSpan]) -> Shape {
        Shape(
            tokens
                .iter()
                .map(|t| match hole_of(&t.token) {
                    Some(k) => Piece::Hole(k),
                    None => Piece::Token(t.token.clone()),
                })
                .collect(),
        )
    }

    /// Whether `tokens` have this shape.
    pub(crate) fn matches(&self, tokens: &[TokenWithSpan]) -> bool {
        self.0.len() == tokens.len()
            && self
                .0
                .iter()
                .zip(tokens)
                .all(|(p, t)| match (p, piece_of(&t.token)) {
                    (Piece::Hole(a), PieceRef::Hole(b)) => *a == b,
                    (Piece::Token(a), PieceRef::Token(b)) => a == b,
                    _ => false,
                })
    }

    /// Bytes held, roughly: the token table and the text inside tokens.
    pub(crate) fn weight(&self) -> u64 {
        let text: usize = self
            .0
            .iter()
            .map(|p| match p {
                Piece::Token(Token::Word(w)) => w.value.len(),
                Piece::Token(Token::Number(n, _)) => n.len(),
                _ => 0,
            })
            .sum();
        (self.0.len() * std::mem::size_of::<Piece>() + text) as u64
    }

    pub(crate) fn hash_into<H: Hasher>(&self, h: &mut H) {
        hash_pieces(
            h,
            self.0.len(),
            self.0.iter().map(|p| match p {
                Piece::Hole(k) => PieceRef::Hole(*k),
                Piece::Token(t) => PieceRef::Token(t),
            }),
        );
    }
}

/// Hashes the shape of `tokens` as [`Shape::hash_into`] hashes it held.
pub(crate) fn hash_shape_of<H: Hasher>(h: &mut H, tokens: &[TokenWithSpan]) {
    hash_pieces(h, tokens.len(), tokens.iter().map(|t| piece_of(&t.token)));
}

/// The literals in the holes of `tokens`, in order.
pub(crate) fn literals(tokens: &[TokenWithSpan]) -> Vec<&Token> {
    tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| hole_of(t).is_some())
        .collect()
}

/// One piece of a template's text.
#[derive(Debug)]
enum Part {
    Text(Box<str>),
    /// The n-th literal of the statement.
    Literal(usize),
}

/// The rewrite of a shape, with a place for each of its literals.
#[derive(Debug)]
pub(crate) struct Template {
    parts: Box<[Part]>,
    holes: usize,
    text_len: usize,
    tables: Vec<TableKey>,
}

/// Sentinel integers: 19 digits, outside the plain integers (at most 18), and
/// within `i64`, so any integer position of the parser takes them.
const INT_SENTINEL_BASE: u64 = 7_316_000_000_000_000_000;

/// A per-process tag in string sentinels, so user text cannot aim at one
/// (and a sentinel found twice voids the template anyway).
fn string_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        use std::hash::BuildHasher;
        let n = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        format!("gw{n:016x}s")
    })
}

fn sentinel(i: usize, hole: Hole) -> Token {
    match hole {
        Hole::Str => Token::SingleQuotedString(format!("{}{i}q", string_tag())),
        Hole::Int { long } => Token::Number((INT_SENTINEL_BASE + i as u64).to_string(), long),
    }
}

/// Where sentinel `i` sits in `sql`: its byte range, when it occurs exactly
/// once as a whole token.
fn find_sentinel(sql: &str, i: usize, hole: Hole) -> Option<(usize, usize)> {
    let (needle, ident_edges) = match hole {
        Hole::Str => (format!("'{}{i}q'", string_tag()), false),
        Hole::Int { long } => (
            format!(
                "{}{}",
                INT_SENTINEL_BASE + i as u64,
                if long { "L" } else { "" }
            ),
            true,
        ),
    };
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '.' || c == '$';
    let mut found = None;
    for (at, _) in sql.match_indices(&needle) {
        let end = at + needle.len();
        if ident_edges
            && (sql[..at].chars().next_back().is_some_and(word)
                || sql[end..].chars().next().is_some_and(word))
        {
            // Inside a longer word or number: not the sentinel, but the text
            // holds something the template could not tell apart from it.
            return None;
        }
        if found.replace((at, end)).is_some() {
            return None;
        }
    }
    found
}

/// Writes a literal as the printer does: a string with each quote doubled
/// (the only escape left, see [`Hole::Str`]), a number as written.
fn write_literal(out: &mut String, t: &Token) {
    match t {
        Token::SingleQuotedString(s) => {
            out.push('\'');
            for c in s.chars() {
                if c == '\'' {
                    out.push('\'');
                }
                out.push(c);
            }
            out.push('\'');
        }
        Token::Number(n, long) => {
            out.push_str(n);
            if *long {
                out.push('L');
            }
        }
        // hole_of admits no other kind.
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

impl Template {
    /// Builds and proves the template of the shape of `tokens`, whose full
    /// rewrite is `full`; `rewrite` rewrites a token list the same way.
    /// `None` when the shape has no holes or the proof fails.
    pub(crate) fn build(
        tokens: &[TokenWithSpan],
        full: &Rewritten,
        rewrite: impl FnOnce(Vec<TokenWithSpan>) -> Result<Rewritten, RewriteError>,
    ) -> Option<Template> {
        let mut holes = Vec::new();
        let sentinels: Vec<TokenWithSpan> = tokens
            .iter()
            .map(|t| match hole_of(&t.token) {
                Some(k) => {
                    holes.push(k);
                    TokenWithSpan::new(sentinel(holes.len() - 1, k), t.span)
                }
                None => t.clone(),
            })
            .collect();
        if holes.is_empty() {
            return None;
        }
        let shaped = rewrite(sentinels).ok()?;
        if shaped.tables != full.tables {
            return None;
        }
        let mut at: Vec<(usize, usize, usize)> = Vec::with_capacity(holes.len());
        for (i, k) in holes.iter().enumerate() {
            let (start, end) = find_sentinel(&shaped.sql, i, *k)?;
            at.push((start, end, i));
        }
        at.sort_unstable();
        let mut parts = Vec::with_capacity(2 * at.len() + 1);
        let mut from = 0;
        for (start, end, i) in at {
            if start < from {
                return None;
            }
            if start > from {
                parts.push(Part::Text(shaped.sql[from..start].into()));
            }
            parts.push(Part::Literal(i));
            from = end;
        }
        if from < shaped.sql.len() {
            parts.push(Part::Text(shaped.sql[from..].into()));
        }
        let template = Template {
            text_len: parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.len(),
                    Part::Literal(_) => 0,
                })
                .sum(),
            parts: parts.into_boxed_slice(),
            holes: holes.len(),
            tables: shaped.tables,
        };
        (template.fill(&literals(tokens))? == *full).then_some(template)
    }

    /// The rewrite of a statement of this shape with these literals (in hole
    /// order); `None` when the count does not match.
    pub(crate) fn fill(&self, literals: &[&Token]) -> Option<Rewritten> {
        if literals.len() != self.holes {
            return None;
        }
        let mut sql = String::with_capacity(self.text_len + 16 * literals.len());
        for p in self.parts.iter() {
            match p {
                Part::Text(t) => sql.push_str(t),
                Part::Literal(i) => write_literal(&mut sql, literals[*i]),
            }
        }
        Some(Rewritten {
            sql,
            tables: self.tables.clone(),
        })
    }

    /// Bytes held, roughly.
    pub(crate) fn weight(&self) -> u64 {
        (self.text_len + self.parts.len() * std::mem::size_of::<Part>()) as u64
    }
}

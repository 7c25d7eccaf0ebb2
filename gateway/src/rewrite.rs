//! The SQL rewriter: parses a user's SQL (sqlparser, DuckDB dialect), finds
//! every table reference, refuses the statement when any is not granted, and
//! replaces each granted table by a derived table that applies the
//! principal's row filter and column masks under the original alias.
//!
//! Owns the decision of what SQL may travel to an engine. It must never pass
//! through a construct it does not understand: every AST node kind it does
//! not handle explicitly is a typed refusal, as are several statements, any
//! statement but a query, table functions and file readers, and input that
//! is too large or nested too deeply. It never panics on hostile input.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::OnceLock;

use sqlparser::ast::{
    AccessExpr, Distinct, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, GroupByExpr, Ident, JoinConstraint, JoinOperator, LimitClause,
    NamedWindowExpr, ObjectName, ObjectNamePart, OrderByExpr, OrderByKind, Query, Select,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, Subscript, TableAlias,
    TableFactor, TableWithJoins, WildcardAdditionalOptions, WindowFrameBound, WindowSpec,
    WindowType,
};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::policy::{Policy, Principal, TableAccess, TableKey};

/// Deepest nesting the parser accepts (parentheses, subqueries, ...).
pub const MAX_DEPTH: usize = 48;
/// Deepest AST the rewriter walks. Larger than [`MAX_DEPTH`] because a flat
/// chain such as `a AND b AND c ...` parses shallowly but makes a deep tree.
pub const MAX_WALK_DEPTH: usize = 256;
/// Largest SQL text accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 256 * 1024;

/// The columns of each table, in order, as the engine has them. The caller
/// provides it (the engine's catalog); masks need the full column list so
/// that `SELECT *` sees exactly the masked projection.
pub trait Catalog {
    /// The table's columns in order; `None` when the table is unknown.
    fn columns(&self, table: &TableKey) -> Option<&[String]>;
}

impl Catalog for HashMap<TableKey, Vec<String>> {
    fn columns(&self, table: &TableKey) -> Option<&[String]> {
        self.get(table).map(Vec::as_slice)
    }
}

/// Why a statement was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error("SQL is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("SQL does not parse: {0}")]
    Parse(String),
    #[error("no statement in the SQL")]
    Empty,
    #[error("{0} statements: exactly one query is accepted")]
    MultipleStatements(usize),
    #[error("only a query may run, not {0}")]
    NotAQuery(String),
    #[error("table functions and file readers are refused: {0}")]
    TableFunction(String),
    #[error("not supported by the policy rewriter: {0}")]
    Unsupported(String),
    #[error("nested more than {0} levels deep")]
    TooDeep(usize),
    #[error("access denied: no grant on {0}")]
    NotGranted(TableKey),
    #[error("bad table name {0}")]
    BadName(String),
    #[error("the catalog does not list table {0}")]
    UnknownTable(TableKey),
    #[error("a mask on {table} names column {column}, which the catalog does not list")]
    MaskOnUnknownColumn { table: TableKey, column: String },
    #[error("a row filter or mask on {table} uses {column}, which the catalog does not list")]
    PolicyUsesUnknownColumn { table: TableKey, column: String },
}

type R<T = ()> = Result<T, RewriteError>;

/// A rewritten query and what it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The SQL to send to the engine.
    pub sql: String,
    /// Every table read, canonical, sorted, once each (for audit).
    pub tables: Vec<TableKey>,
}

/// Rewrites `sql` for `who` under `policy`; see the module doc.
pub fn rewrite(
    sql: &str,
    policy: &Policy,
    who: &Principal,
    catalog: &dyn Catalog,
) -> Result<Rewritten, RewriteError> {
    rewrite_tokens(tokenize(sql)?, policy, who, catalog)
}

/// The tokens of `sql` as the rewriter's parser reads them (DuckDB dialect,
/// string escapes resolved), refusing text over [`MAX_SQL_BYTES`].
pub(crate) fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, RewriteError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(RewriteError::TooLarge {
            len: sql.len(),
            max: MAX_SQL_BYTES,
        });
    }
    let tokens = Tokenizer::new(&DuckDbDialect {}, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| RewriteError::Parse(e.to_string()))?;
    for t in &tokens {
        check_quoting(&t.token)?;
    }
    Ok(tokens)
}

/// Refuses a token that the printer could not write back as the same token.
///
/// sqlparser prints a quoted value by doubling each quote character *except*
/// one preceded by a backslash or followed by another quote (it takes those
/// for escapes already made). DuckDB does not take a backslash as an escape,
/// so the value `x\'` prints as `'x\''`, a literal DuckDB reads as still open:
/// the text after it, written by the user as the inside of another literal,
/// would run as SQL outside every derived table. A quoted value holding
/// either sequence is refused, and so is every literal or identifier quoting
/// this check does not know, so that each string that reaches the engine
/// reads back exactly as the rewriter parsed it.
pub(crate) fn check_quoting(t: &Token) -> R {
    match t {
        Token::SingleQuotedString(s) => check_quoted_value(s, '\'', "a string literal"),
        Token::Word(w) => match w.quote_style {
            None => Ok(()),
            Some('"') => check_quoted_value(&w.value, '"', "a quoted identifier"),
            Some(q) => Err(RewriteError::Unsupported(format!(
                "identifiers quoted with {q}: quote identifiers with \""
            ))),
        },
        // The tokenizer ends these at the first `$tag$`, so their value
        // cannot hold the delimiter.
        Token::DollarQuotedString(_) => Ok(()),
        Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_) => Err(RewriteError::Unsupported(format!(
            "the literal {t}: write strings as '...' (quotes doubled) or $$...$$"
        ))),
        _ => Ok(()),
    }
}

/// See [`check_quoting`]: `value` (escapes resolved) must print back with
/// every `quote` doubled.
fn check_quoted_value(value: &str, quote: char, what: &str) -> R {
    let mut prev = None;
    for c in value.chars() {
        if c == quote && (prev == Some(quote) || prev == Some('\\')) {
            return Err(RewriteError::Unsupported(format!(
                "{what} holding {}{quote}: the printer cannot write it back unambiguously",
                prev.unwrap_or_default()
            )));
        }
        prev = Some(c);
    }
    Ok(())
}

/// [`rewrite`] of text already split by [`tokenize`].
pub(crate) fn rewrite_tokens(
    tokens: Vec<TokenWithSpan>,
    policy: &Policy,
    who: &Principal,
    catalog: &dyn Catalog,
) -> Result<Rewritten, RewriteError> {
    let dialect = DuckDbDialect {};
    let mut stmts = Parser::new(&dialect)
        .with_recursion_limit(MAX_DEPTH)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| RewriteError::Parse(e.to_string()))?;
    match stmts.len() {
        0 => return Err(RewriteError::Empty),
        1 => {}
        n => return Err(RewriteError::MultipleStatements(n)),
    }
    let mut query = match stmts.pop() {
        Some(Statement::Query(q)) => q,
        Some(other) => return Err(RewriteError::NotAQuery(statement_kind(&other))),
        None => return Err(RewriteError::Empty),
    };
    let mut w = Walker {
        ctx: Some(Ctx {
            policy,
            who,
            catalog,
        }),
        ctes: Vec::new(),
        tables: Vec::new(),
        idents: Vec::new(),
        depth: 0,
    };
    w.query(&mut query)?;
    let mut tables = w.tables;
    tables.sort();
    tables.dedup();
    Ok(Rewritten {
        sql: query.to_string(),
        tables,
    })
}

/// Checks a policy expression (filter or mask): the same walk, with no
/// subquery or table reference allowed.
/// Returns the column names it uses (lower-case), which must all be columns
/// of the table the expression is attached to: an unknown name would
/// otherwise resolve to a column of an outer query, which the user controls.
pub(crate) fn check_policy_expr(e: &Expr) -> R<Vec<String>> {
    let mut e = e.clone();
    let mut w = Walker {
        ctx: None,
        ctes: Vec::new(),
        tables: Vec::new(),
        idents: Vec::new(),
        depth: 0,
    };
    w.expr(&mut e)?;
    w.idents.sort();
    w.idents.dedup();
    Ok(w.idents)
}

/// A short name for a statement kind: `Copy`, `Pragma`, `Set`, ...
fn statement_kind(s: &Statement) -> String {
    kind_of(s).to_uppercase()
}

/// The variant name of an AST node, from its Debug form.
fn kind_of<T: Debug>(t: &T) -> String {
    let d = format!("{t:?}");
    d.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn unsupported<T: Debug>(what: &str, t: &T) -> RewriteError {
    RewriteError::Unsupported(format!("{what} {}", kind_of(t)))
}

/// Functions that read files, other databases or the engine's state: refused
/// in FROM (where every function is refused) and in expressions.
fn is_outside_reader(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "glob",
        "query",
        "query_table",
        "sniff_csv",
        "iceberg_scan",
        "iceberg_metadata",
        "iceberg_snapshots",
        "delta_scan",
        "getenv",
        "getvariable",
        "current_setting",
        "sqlite_scan",
        "postgres_scan",
        "postgres_query",
        "mysql_scan",
        "mysql_query",
        "load_extension",
    ];
    name.starts_with("read_")
        || name.starts_with("parquet_")
        || name.starts_with("duckdb_")
        || name.starts_with("pragma_")
        || EXACT.contains(&name)
}

struct Ctx<'a> {
    policy: &'a Policy,
    who: &'a Principal,
    catalog: &'a dyn Catalog,
}

struct Walker<'a> {
    /// `None` when checking a policy expression: no table may appear.
    ctx: Option<Ctx<'a>>,
    /// CTE names in scope, lower-case, innermost last.
    ctes: Vec<String>,
    tables: Vec<TableKey>,
    /// Policy mode only: the column names an expression uses.
    idents: Vec<String>,
    depth: usize,
}

// The walk recurses; `recursive` (stacker, already used by sqlparser's
// parser) grows the stack on demand, so a deep tree within MAX_WALK_DEPTH
// never overflows a small thread stack.
impl Walker<'_> {
    fn enter(&mut self) -> R {
        self.depth += 1;
        if self.depth > MAX_WALK_DEPTH {
            return Err(RewriteError::TooDeep(MAX_WALK_DEPTH));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    #[recursive::recursive]
    fn query(&mut self, q: &mut Query) -> R {
        self.enter()?;
        if self.ctx.is_none() {
            return Err(RewriteError::Unsupported(
                "a subquery in a policy expression".into(),
            ));
        }
        if !q.locks.is_empty() {
            return Err(RewriteError::Unsupported("locking clause".into()));
        }
        if q.for_clause.is_some()
            || q.settings.is_some()
            || q.format_clause.is_some()
            || !q.pipe_operators.is_empty()
        {
            return Err(RewriteError::Unsupported(
                "FOR, SETTINGS, FORMAT or pipe clause".into(),
            ));
        }
        let mark = self.ctes.len();
        if let Some(with) = &mut q.with {
            if with.recursive {
                // Every CTE of a recursive WITH sees all of them.
                for cte in &with.cte_tables {
                    self.ctes.push(cte.alias.name.value.to_lowercase());
                }
            }
            for cte in &mut with.cte_tables {
                if cte.from.is_some() {
                    return Err(RewriteError::Unsupported("CTE with FROM".into()));
                }
                // A non-recursive CTE's body sees the CTEs before it only; a
                // reference to its own name there is the real table.
                self.query(&mut cte.query)?;
                if !with.recursive {
                    self.ctes.push(cte.alias.name.value.to_lowercase());
                }
            }
        }
        self.set_expr(&mut q.body)?;
        if let Some(ob) = &mut q.order_by {
            if ob.interpolate.is_some() {
                return Err(RewriteError::Unsupported("INTERPOLATE".into()));
            }
            match &mut ob.kind {
                OrderByKind::All(_) => {}
                OrderByKind::Expressions(v) => self.order_by(v)?,
            }
        }
        match &mut q.limit_clause {
            None => {}
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if let Some(l) = limit {
                    self.expr(l)?;
                }
                if let Some(o) = offset {
                    self.expr(&mut o.value)?;
                }
                self.exprs(limit_by)?;
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                self.expr(offset)?;
                self.expr(limit)?;
            }
        }
        if let Some(f) = &mut q.fetch {
            if let Some(e) = &mut f.quantity {
                self.expr(e)?;
            }
        }
        self.ctes.truncate(mark);
        self.leave();
        Ok(())
    }

    #[recursive::recursive]
    fn set_expr(&mut self, s: &mut SetExpr) -> R {
        self.enter()?;
        match s {
            SetExpr::Select(sel) => self.select(sel)?,
            SetExpr::Query(q) => self.query(q)?,
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left)?;
                self.set_expr(right)?;
            }
            SetExpr::Values(v) => {
                for row in &mut v.rows {
                    self.exprs(&mut row.content)?;
                }
            }
            SetExpr::Insert(st)
            | SetExpr::Update(st)
            | SetExpr::Delete(st)
            | SetExpr::Merge(st) => return Err(RewriteError::NotAQuery(statement_kind(st))),
            other => return Err(unsupported("set expression", other)),
        }
        self.leave();
        Ok(())
    }

    fn select(&mut self, s: &mut Select) -> R {
        if !s.optimizer_hints.is_empty()
            || s.select_modifiers.is_some()
            || s.top.is_some()
            || s.exclude.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || s.value_table_mode.is_some()
        {
            return Err(RewriteError::Unsupported(
                "a SELECT clause outside the supported set (TOP, hints, PREWHERE, CONNECT BY, ...)"
                    .into(),
            ));
        }
        if s.into.is_some() {
            return Err(RewriteError::NotAQuery("SELECT INTO".into()));
        }
        for twj in &mut s.from {
            self.table_with_joins(twj)?;
        }
        if let Some(Distinct::On(v)) = &mut s.distinct {
            self.exprs(v)?;
        }
        for item in &mut s.projection {
            match item {
                SelectItem::UnnamedExpr(e)
                | SelectItem::ExprWithAlias { expr: e, .. }
                | SelectItem::ExprWithAliases { expr: e, .. } => self.expr(e)?,
                SelectItem::QualifiedWildcard(kind, opts) => {
                    if let SelectItemQualifiedWildcardKind::Expr(e) = kind {
                        self.expr(e)?;
                    }
                    self.wildcard_opts(opts)?;
                }
                SelectItem::Wildcard(opts) => self.wildcard_opts(opts)?,
            }
        }
        if let Some(e) = &mut s.selection {
            self.expr(e)?;
        }
        match &mut s.group_by {
            GroupByExpr::All(_) => {}
            GroupByExpr::Expressions(v, _) => self.exprs(v)?,
        }
        if let Some(e) = &mut s.having {
            self.expr(e)?;
        }
        for w in &mut s.named_window {
            match &mut w.1 {
                NamedWindowExpr::NamedWindow(_) => {}
                NamedWindowExpr::WindowSpec(spec) => self.window_spec(spec)?,
            }
        }
        if let Some(e) = &mut s.qualify {
            self.expr(e)?;
        }
        Ok(())
    }

    fn table_with_joins(&mut self, t: &mut TableWithJoins) -> R {
        self.factor(&mut t.relation)?;
        for j in &mut t.joins {
            self.factor(&mut j.relation)?;
            let constraint = match &mut j.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::Semi(c)
                | JoinOperator::LeftSemi(c)
                | JoinOperator::RightSemi(c)
                | JoinOperator::Anti(c)
                | JoinOperator::LeftAnti(c)
                | JoinOperator::RightAnti(c) => c,
                JoinOperator::AsOf {
                    match_condition,
                    constraint,
                } => {
                    self.expr(match_condition)?;
                    constraint
                }
                other => return Err(unsupported("join", other)),
            };
            match constraint {
                JoinConstraint::On(e) => self.expr(e)?,
                JoinConstraint::Using(_)
                | JoinConstraint::UsingAlias(_, _)
                | JoinConstraint::Natural
                | JoinConstraint::None => {}
            }
        }
        Ok(())
    }

    #[recursive::recursive]
    fn factor(&mut self, f: &mut TableFactor) -> R {
        self.enter()?;
        match f {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_directives,
                inheritance,
            } => {
                if args.is_some() {
                    return Err(RewriteError::TableFunction(name.to_string()));
                }
                if !with_hints.is_empty()
                    || version.is_some()
                    || *with_ordinality
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                    || !index_directives.is_empty()
                    || inheritance.is_some()
                {
                    return Err(RewriteError::Unsupported(format!(
                        "table options (hints, time travel, sample, partitions) on {name}"
                    )));
                }
                if self.is_cte(name) {
                    self.leave();
                    return Ok(());
                }
                let derived = self.secure_table(name, alias.take())?;
                *f = derived;
            }
            TableFactor::Derived {
                subquery, sample, ..
            } => {
                if sample.is_some() {
                    return Err(RewriteError::Unsupported("sample on a subquery".into()));
                }
                self.query(subquery)?;
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins)?,
            TableFactor::TableFunction { expr, .. } => {
                return Err(RewriteError::TableFunction(expr.to_string()))
            }
            TableFactor::Function { name, .. } => {
                return Err(RewriteError::TableFunction(name.to_string()))
            }
            TableFactor::UNNEST { .. } => return Err(RewriteError::TableFunction("UNNEST".into())),
            other => return Err(unsupported("table factor", other)),
        }
        self.leave();
        Ok(())
    }

    /// Whether an unqualified name is a CTE in scope.
    fn is_cte(&self, name: &ObjectName) -> bool {
        match name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => {
                let n = id.value.to_lowercase();
                self.ctes.contains(&n)
            }
            _ => false,
        }
    }

    /// The derived table that stands for a granted table.
    fn secure_table(&mut self, name: &ObjectName, alias: Option<TableAlias>) -> R<TableFactor> {
        let Some(ctx) = &self.ctx else {
            return Err(RewriteError::Unsupported(
                "a table in a policy expression".into(),
            ));
        };
        let key = ctx
            .policy
            .key_of(name)
            .ok_or_else(|| RewriteError::BadName(name.to_string()))?;
        let access = ctx
            .policy
            .access(ctx.who, &key)
            .ok_or_else(|| RewriteError::NotGranted(key.clone()))?;
        let subquery = derived_query(ctx, &key, access)?;
        let alias = match alias {
            Some(a) => a,
            None => {
                let last = match name.0.last() {
                    Some(ObjectNamePart::Identifier(id)) => id.clone(),
                    _ => return Err(RewriteError::BadName(name.to_string())),
                };
                TableAlias {
                    explicit: true,
                    name: last,
                    columns: vec![],
                    at: None,
                }
            }
        };
        self.tables.push(key);
        Ok(TableFactor::Derived {
            lateral: false,
            subquery: Box::new(subquery),
            alias: Some(alias),
            sample: None,
        })
    }

    fn order_by(&mut self, v: &mut [OrderByExpr]) -> R {
        for o in v {
            if o.with_fill.is_some() {
                return Err(RewriteError::Unsupported("WITH FILL".into()));
            }
            self.expr(&mut o.expr)?;
        }
        Ok(())
    }

    fn exprs(&mut self, v: &mut [Expr]) -> R {
        for e in v {
            self.expr(e)?;
        }
        Ok(())
    }

    fn opt(&mut self, e: &mut Option<Box<Expr>>) -> R {
        match e {
            Some(e) => self.expr(e),
            None => Ok(()),
        }
    }

    fn wildcard_opts(&mut self, o: &mut WildcardAdditionalOptions) -> R {
        if let Some(r) = &mut o.opt_replace {
            for item in &mut r.items {
                self.expr(&mut item.expr)?;
            }
        }
        Ok(())
    }

    fn window_spec(&mut self, w: &mut WindowSpec) -> R {
        self.exprs(&mut w.partition_by)?;
        self.order_by(&mut w.order_by)?;
        if let Some(frame) = &mut w.window_frame {
            for b in std::iter::once(&mut frame.start_bound).chain(frame.end_bound.as_mut()) {
                match b {
                    WindowFrameBound::CurrentRow => {}
                    WindowFrameBound::Preceding(e) | WindowFrameBound::Following(e) => {
                        self.opt(e)?
                    }
                }
            }
        }
        Ok(())
    }

    fn function(&mut self, f: &mut Function) -> R {
        let mut last = None;
        for part in &f.name.0 {
            match part {
                ObjectNamePart::Identifier(id) => last = Some(id.value.to_lowercase()),
                other => return Err(unsupported("function name", other)),
            }
        }
        if let Some(n) = &last {
            if is_outside_reader(n) {
                return Err(RewriteError::TableFunction(n.clone()));
            }
        }
        if !matches!(f.parameters, FunctionArguments::None) {
            return Err(RewriteError::Unsupported("parametric function".into()));
        }
        match &mut f.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(q) => self.query(q)?,
            FunctionArguments::List(list) => {
                for a in &mut list.args {
                    let arg = match a {
                        FunctionArg::Named { arg, .. } => arg,
                        FunctionArg::ExprNamed { name, arg, .. } => {
                            self.expr(name)?;
                            arg
                        }
                        FunctionArg::Unnamed(arg) => arg,
                    };
                    match arg {
                        FunctionArgExpr::Expr(e) => self.expr(e)?,
                        FunctionArgExpr::QualifiedWildcard(_) | FunctionArgExpr::Wildcard => {}
                        FunctionArgExpr::WildcardWithOptions(o) => self.wildcard_opts(o)?,
                    }
                }
                for c in &mut list.clauses {
                    match c {
                        FunctionArgumentClause::IgnoreOrRespectNulls(_) => {}
                        FunctionArgumentClause::Where(e) | FunctionArgumentClause::Limit(e) => {
                            self.expr(e)?
                        }
                        FunctionArgumentClause::OrderBy(v) => self.order_by(v)?,
                        other => return Err(unsupported("function clause", other)),
                    }
                }
            }
        }
        self.order_by(&mut f.within_group)?;
        self.opt(&mut f.filter)?;
        match &mut f.over {
            None | Some(WindowType::NamedWindow(_)) => {}
            Some(WindowType::WindowSpec(spec)) => self.window_spec(spec)?,
        }
        Ok(())
    }

    #[recursive::recursive]
    fn expr(&mut self, e: &mut Expr) -> R {
        self.enter()?;
        match e {
            Expr::Identifier(id) => {
                if self.ctx.is_none() {
                    self.idents.push(id.value.to_lowercase());
                }
            }
            Expr::CompoundIdentifier(_) if self.ctx.is_none() => {
                return Err(RewriteError::Unsupported(
                    "a qualified column in a policy expression".into(),
                ))
            }
            Expr::CompoundIdentifier(_)
            | Expr::Value(_)
            | Expr::TypedString(_)
            | Expr::Wildcard(_)
            | Expr::QualifiedWildcard(_, _) => {}
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.expr(root)?;
                for a in access_chain {
                    match a {
                        AccessExpr::Dot(e) => self.expr(e)?,
                        AccessExpr::Subscript(Subscript::Index { index }) => self.expr(index)?,
                        AccessExpr::Subscript(Subscript::Slice {
                            lower_bound,
                            upper_bound,
                            stride,
                        }) => {
                            for b in [lower_bound, upper_bound, stride].into_iter().flatten() {
                                self.expr(b)?;
                            }
                        }
                    }
                }
            }
            Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x)
            | Expr::Nested(x)
            | Expr::UnaryOp { expr: x, .. }
            | Expr::Cast { expr: x, .. }
            | Expr::Extract { expr: x, .. }
            | Expr::Ceil { expr: x, .. }
            | Expr::Floor { expr: x, .. }
            | Expr::Collate { expr: x, .. }
            | Expr::Named { expr: x, .. }
            | Expr::Prefixed { value: x, .. } => self.expr(x)?,
            Expr::IsDistinctFrom(a, b)
            | Expr::IsNotDistinctFrom(a, b)
            | Expr::BinaryOp {
                left: a, right: b, ..
            }
            | Expr::AnyOp {
                left: a, right: b, ..
            }
            | Expr::AllOp {
                left: a, right: b, ..
            }
            | Expr::AtTimeZone {
                timestamp: a,
                time_zone: b,
            }
            | Expr::Position { expr: a, r#in: b }
            | Expr::RLike {
                expr: a,
                pattern: b,
                ..
            } => {
                self.expr(a)?;
                self.expr(b)?;
            }
            Expr::Like {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::SimilarTo {
                expr,
                pattern,
                escape_char,
                ..
            } => {
                self.expr(expr)?;
                self.expr(pattern)?;
                self.opt(escape_char)?;
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.expr(expr)?;
                self.expr(low)?;
                self.expr(high)?;
            }
            Expr::In { expr, target, .. } => {
                self.expr(expr)?;
                match target {
                    sqlparser::ast::InTarget::List(v) => self.exprs(v)?,
                    sqlparser::ast::InTarget::Subquery(q) => self.query(q)?,
                    other => return Err(unsupported("IN target", other)),
                }
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                self.expr(expr)?;
                self.opt(substring_from)?;
                self.opt(substring_for)?;
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                self.expr(expr)?;
                self.opt(trim_what)?;
                if let Some(v) = trim_characters {
                    self.exprs(v)?;
                }
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                self.expr(expr)?;
                self.expr(overlay_what)?;
                self.expr(overlay_from)?;
                self.opt(overlay_for)?;
            }
            Expr::Function(f) => self.function(f)?,
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                self.opt(operand)?;
                for c in conditions {
                    self.expr(&mut c.condition)?;
                    self.expr(&mut c.result)?;
                }
                self.opt(else_result)?;
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => self.query(subquery)?,
            Expr::GroupingSets(vv) | Expr::Cube(vv) | Expr::Rollup(vv) => {
                for v in vv {
                    self.exprs(v)?;
                }
            }
            Expr::Tuple(v) => self.exprs(v)?,
            Expr::Struct { values, .. } => self.exprs(values)?,
            Expr::Dictionary(fields) => {
                for f in fields {
                    self.expr(&mut f.value)?;
                }
            }
            Expr::Map(m) => {
                for en in &mut m.entries {
                    self.expr(&mut en.key)?;
                    self.expr(&mut en.value)?;
                }
            }
            Expr::Array(a) => self.exprs(&mut a.elem)?,
            Expr::Interval(i) => self.expr(&mut i.value)?,
            Expr::Lambda(l) => self.expr(&mut l.body)?,
            other => return Err(unsupported("expression", other)),
        }
        self.leave();
        Ok(())
    }
}

/// `SELECT <projection> FROM <table> WHERE <filter>`, parsed once and cloned.
fn template(masked: bool) -> &'static Query {
    static STAR: OnceLock<Query> = OnceLock::new();
    static LIST: OnceLock<Query> = OnceLock::new();
    let (cell, sql) = if masked {
        (&LIST, "SELECT a FROM t WHERE TRUE")
    } else {
        (&STAR, "SELECT * FROM t WHERE TRUE")
    };
    cell.get_or_init(|| {
        let dialect = DuckDbDialect {};
        match Parser::parse_sql(&dialect, sql)
            .ok()
            .and_then(|mut v| v.pop())
        {
            Some(Statement::Query(q)) => *q,
            _ => unreachable!("the template is a fixed, valid query"),
        }
    })
}

/// The derived table's query for one granted table.
fn derived_query(ctx: &Ctx<'_>, key: &TableKey, access: TableAccess) -> R<Query> {
    let masked = !access.masks.is_empty();
    let mut q = template(masked).clone();
    let SetExpr::Select(sel) = q.body.as_mut() else {
        unreachable!("the template is a plain SELECT")
    };
    let mut parts = Vec::with_capacity(3);
    if key.catalog != ctx.policy.default_catalog() {
        parts.push(quoted(&key.catalog)?);
    }
    parts.push(quoted(&key.schema)?);
    parts.push(quoted(&key.table)?);
    if let TableFactor::Table { name, .. } = &mut sel.from[0].relation {
        *name = ObjectName(parts);
    }
    // Only tables the catalog lists are sent: a name the engine does not
    // know could reach something else (DuckDB's replacement scans read a
    // file for an unknown name such as "data.csv").
    let cols = ctx
        .catalog
        .columns(key)
        .ok_or_else(|| RewriteError::UnknownTable(key.clone()))?;
    for used in &access.uses {
        if !cols.iter().any(|c| c.eq_ignore_ascii_case(used)) {
            return Err(RewriteError::PolicyUsesUnknownColumn {
                table: key.clone(),
                column: used.clone(),
            });
        }
    }
    sel.selection = access.filter;
    if masked {
        for m in &access.masks {
            if !cols.iter().any(|c| c.to_lowercase() == m.column) {
                return Err(RewriteError::MaskOnUnknownColumn {
                    table: key.clone(),
                    column: m.column.clone(),
                });
            }
        }
        sel.projection = cols
            .iter()
            .map(|c| {
                let lc = c.to_lowercase();
                let id = quoted_ident(c)?;
                Ok(match access.masks.iter().find(|m| m.column == lc) {
                    Some(m) => SelectItem::ExprWithAlias {
                        expr: m.expr.clone(),
                        alias: id,
                    },
                    None => SelectItem::UnnamedExpr(Expr::Identifier(id)),
                })
            })
            .collect::<R<_>>()?;
    }
    Ok(q)
}

/// A catalog name as a quoted identifier; refused when the printer could not
/// write it back (see [`check_quoting`]): names come from the engine, where
/// whoever creates tables chooses them.
fn quoted_ident(s: &str) -> R<Ident> {
    check_quoted_value(s, '"', "a catalog name")?;
    Ok(Ident::with_quote('"', s))
}

fn quoted(s: &str) -> R<ObjectNamePart> {
    quoted_ident(s).map(ObjectNamePart::Identifier)
}

//! The SQL rewriter: parses a user's SQL (sqlparser, DuckDB dialect), finds
//! every table reference, refuses the statement when any is not granted, and
//! replaces each granted table by a derived table that applies the
//! principal's row filter and column masks under the original alias.
//!
//! Owns the decision of what SQL may travel to an engine. It must never pass
//! through a construct it does not understand: every AST node kind it does
//! not handle explicitly is a typed refusal, as are several statements, any
//! statement but a query, functions off the allow list ([`crate::functions`]),
//! table functions but a few pure generators, and input that is too large or
//! nested too deeply. Every AST node it reads is destructured without `..`,
//! so that a sqlparser upgrade that adds a field fails to compile here
//! instead of being skipped. It never panics on hostile input. Which names
//! are CTEs is [`scope`]'s rule, which table a name means is [`names`]'; the
//! policy is read only through [`AccessControl`]. What it produces is proven
//! again by the engine's binder ([`crate::verify`]) before it runs.

mod names;
mod scope;

pub use names::{dotted_key, function_name, table_key, DEFAULT_SCHEMA};

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::OnceLock;

use sqlparser::ast::{
    AccessExpr, Array, CaseWhen, Cte, DictionaryField, Distinct, Expr, Fetch, Function,
    FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArgumentList, FunctionArguments,
    GroupByExpr, Ident, Interval, Join, JoinConstraint, JoinOperator, LambdaFunction, LimitClause,
    Map, MapEntry, NamedWindowDefinition, NamedWindowExpr, ObjectName, Offset, OrderBy,
    OrderByExpr, OrderByKind, Query, ReplaceSelectElement, ReplaceSelectItem, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, Subscript, TableAlias, TableFactor,
    TableFunctionArgs, TableWithJoins, Values, WildcardAdditionalOptions, WindowFrame,
    WindowFrameBound, WindowSpec, WindowType, With,
};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::access::{AccessControl, Principal, TableAccess, TableKey};
use crate::functions::{self, FunctionUse};
use scope::{RecursiveBody, Scopes};

/// Deepest nesting the parser accepts (parentheses, subqueries, ...).
pub const MAX_DEPTH: usize = 48;
/// Deepest AST the rewriter walks. Larger than [`MAX_DEPTH`] because a flat
/// chain such as `a AND b AND c ...` parses shallowly but makes a deep tree.
pub const MAX_WALK_DEPTH: usize = 256;
/// Largest SQL text accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 256 * 1024;

/// The columns of each table, in order, as the engine has them, and the
/// functions its catalog defines. The caller provides it (the engine's
/// catalog); masks need the full column list so that `SELECT *` sees exactly
/// the masked projection.
pub trait Catalog {
    /// The table's columns in order; `None` when the table is unknown.
    fn columns(&self, table: &TableKey) -> Option<&[String]>;

    /// Whether the engine's catalog defines a function or macro of this
    /// (folded) name itself: a call by that name could reach it instead of
    /// the built-in the allow list classified.
    fn defines_function(&self, _name: &str) -> bool {
        false
    }
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
    #[error("the function {name} is refused: {reason}")]
    Function { name: String, reason: String },
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

/// Rewrites `sql` for `who` under `access`; see the module doc.
pub fn rewrite(
    sql: &str,
    access: &dyn AccessControl,
    who: &Principal,
    catalog: &dyn Catalog,
) -> Result<Rewritten, RewriteError> {
    rewrite_tokens(tokenize(sql)?, access, who, catalog)
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
    access: &dyn AccessControl,
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
            access,
            who,
            catalog,
        }),
        scopes: Scopes::default(),
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
/// subquery or table reference allowed and functions held to the same allow
/// list. Returns the column names it uses (folded), which must all be
/// columns of the table the expression is attached to: an unknown name would
/// otherwise resolve to a column of an outer query, which the user controls.
pub(crate) fn check_policy_expr(e: &Expr) -> R<Vec<String>> {
    let mut e = e.clone();
    let mut w = Walker {
        ctx: None,
        scopes: Scopes::default(),
        tables: Vec::new(),
        idents: Vec::new(),
        depth: 0,
    };
    w.expr(&mut e)?;
    w.idents.sort();
    w.idents.dedup();
    Ok(w.idents)
}

/// The derived query that stands for `table` when `who` reads it (what
/// [`rewrite`] splices in for every reference): the reference the binder
/// check compares the engine's plan with. `None` when it is not granted.
pub fn derived_sql(
    access: &dyn AccessControl,
    who: &Principal,
    table: &TableKey,
    catalog: &dyn Catalog,
) -> R<Option<String>> {
    let Some(grant) = access.access(who, table) else {
        return Ok(None);
    };
    let ctx = Ctx {
        access,
        who,
        catalog,
    };
    Ok(Some(derived_query(&ctx, table, grant)?.to_string()))
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

fn unsupported_if(cond: bool, what: &str) -> R {
    if cond {
        Err(RewriteError::Unsupported(what.to_string()))
    } else {
        Ok(())
    }
}

struct Ctx<'a> {
    access: &'a dyn AccessControl,
    who: &'a Principal,
    catalog: &'a dyn Catalog,
}

struct Walker<'a> {
    /// `None` when checking a policy expression: no table may appear.
    ctx: Option<Ctx<'a>>,
    /// CTE names in scope.
    scopes: Scopes,
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
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = q;
        unsupported_if(!locks.is_empty(), "locking clause")?;
        unsupported_if(
            for_clause.is_some()
                || settings.is_some()
                || format_clause.is_some()
                || !pipe_operators.is_empty(),
            "FOR, SETTINGS, FORMAT or pipe clause",
        )?;
        let mark = self.scopes.mark();
        if let Some(with) = with {
            self.with(with)?;
        }
        self.set_expr(body)?;
        self.query_tail(order_by, limit_clause, fetch)?;
        self.scopes.leave(mark);
        self.leave();
        Ok(())
    }

    /// ORDER BY, LIMIT/OFFSET and FETCH of a query, in the query's scope.
    fn query_tail(
        &mut self,
        order_by: &mut Option<OrderBy>,
        limit_clause: &mut Option<LimitClause>,
        fetch: &mut Option<Fetch>,
    ) -> R {
        if let Some(OrderBy { kind, interpolate }) = order_by {
            unsupported_if(interpolate.is_some(), "INTERPOLATE")?;
            match kind {
                OrderByKind::All(_) => {}
                OrderByKind::Expressions(v) => self.order_by(v)?,
            }
        }
        match limit_clause {
            None => {}
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if let Some(l) = limit {
                    self.expr(l)?;
                }
                if let Some(Offset { value, rows: _ }) = offset {
                    self.expr(value)?;
                }
                self.exprs(limit_by)?;
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                self.expr(offset)?;
                self.expr(limit)?;
            }
        }
        if let Some(Fetch {
            with_ties: _,
            percent: _,
            quantity: Some(e),
        }) = fetch
        {
            self.expr(e)?;
        }
        Ok(())
    }

    /// The CTEs of a WITH, each walked in the scope DuckDB binds it in
    /// ([`scope`]) and then declared for the rest of the query.
    fn with(&mut self, with: &mut With) -> R {
        let With {
            with_token: _,
            recursive,
            cte_tables,
        } = with;
        for cte in cte_tables {
            let Cte {
                alias,
                query,
                from,
                materialized: _,
                closing_paren_token: _,
            } = cte;
            unsupported_if(from.is_some(), "CTE with FROM")?;
            let name = alias.name.value.clone();
            let self_visible =
                *recursive && matches!(scope::recursive_body(query), RecursiveBody::Union);
            if self_visible {
                self.recursive_union(query, &name)?;
            } else {
                // The body sees the CTEs before it only; its own name there
                // is the real table.
                self.query(query)?;
            }
            self.scopes.declare(&name);
        }
        Ok(())
    }

    /// The body `anchor UNION [ALL] recursive` of a recursive CTE `name`:
    /// its own WITH on both sides, `name` visible on the right only.
    fn recursive_union(&mut self, q: &mut Query, name: &str) -> R {
        self.enter()?;
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = q;
        unsupported_if(
            !locks.is_empty()
                || for_clause.is_some()
                || settings.is_some()
                || format_clause.is_some()
                || !pipe_operators.is_empty(),
            "FOR, SETTINGS, FORMAT, pipe or locking clause",
        )?;
        let mark = self.scopes.mark();
        if let Some(with) = with {
            self.with(with)?;
        }
        let SetExpr::SetOperation {
            left,
            op: _,
            set_quantifier: _,
            right,
        } = body.as_mut()
        else {
            return Err(RewriteError::Unsupported(
                "a recursive CTE body that is not a UNION".into(),
            ));
        };
        self.set_expr(left)?;
        let inner = self.scopes.mark();
        self.scopes.declare(name);
        self.set_expr(right)?;
        self.query_tail(order_by, limit_clause, fetch)?;
        self.scopes.leave(inner);
        self.scopes.leave(mark);
        self.leave();
        Ok(())
    }

    #[recursive::recursive]
    fn set_expr(&mut self, s: &mut SetExpr) -> R {
        self.enter()?;
        match s {
            SetExpr::Select(sel) => self.select(sel)?,
            SetExpr::Query(q) => self.query(q)?,
            SetExpr::SetOperation {
                left,
                op: _,
                set_quantifier: _,
                right,
            } => {
                self.set_expr(left)?;
                self.set_expr(right)?;
            }
            SetExpr::Values(Values {
                explicit_row: _,
                value_keyword: _,
                rows,
            }) => {
                for row in rows {
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
        let Select {
            select_token: _,
            optimizer_hints,
            distinct,
            select_modifiers,
            top,
            top_before_distinct: _,
            projection,
            exclude,
            into,
            from,
            lateral_views,
            prewhere,
            selection,
            connect_by,
            group_by,
            cluster_by,
            distribute_by,
            sort_by,
            having,
            named_window,
            qualify,
            window_before_qualify: _,
            value_table_mode,
            flavor: _,
        } = s;
        unsupported_if(
            !optimizer_hints.is_empty()
                || select_modifiers.is_some()
                || top.is_some()
                || exclude.is_some()
                || !lateral_views.is_empty()
                || prewhere.is_some()
                || !connect_by.is_empty()
                || !cluster_by.is_empty()
                || !distribute_by.is_empty()
                || !sort_by.is_empty()
                || value_table_mode.is_some(),
            "a SELECT clause outside the supported set (TOP, hints, PREWHERE, CONNECT BY, ...)",
        )?;
        if into.is_some() {
            return Err(RewriteError::NotAQuery("SELECT INTO".into()));
        }
        for twj in from {
            self.table_with_joins(twj)?;
        }
        match distinct {
            None | Some(Distinct::Distinct) | Some(Distinct::All) => {}
            Some(Distinct::On(v)) => self.exprs(v)?,
        }
        for item in projection.iter_mut() {
            if let SelectItem::UnnamedExpr(e) = item {
                // DuckDB names an unnamed column after its expression's text:
                // once a granted table inside it is replaced by its derived
                // query, that text would show the policy (filter, masks) in
                // the column's name. Such a column keeps the name of the
                // text the user wrote.
                let written = e.clone();
                let spliced = self.tables.len();
                self.expr(e)?;
                if self.tables.len() > spliced {
                    let name = written.to_string().replace('"', "");
                    *item = SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: Ident::with_quote('"', name),
                    };
                }
                continue;
            }
            match item {
                SelectItem::UnnamedExpr(e)
                | SelectItem::ExprWithAlias { expr: e, alias: _ }
                | SelectItem::ExprWithAliases {
                    expr: e,
                    aliases: _,
                } => self.expr(e)?,
                SelectItem::QualifiedWildcard(kind, opts) => {
                    match kind {
                        SelectItemQualifiedWildcardKind::Expr(e) => self.expr(e)?,
                        SelectItemQualifiedWildcardKind::ObjectName(_) => {}
                    }
                    self.wildcard_opts(opts)?;
                }
                SelectItem::Wildcard(opts) => self.wildcard_opts(opts)?,
            }
        }
        if let Some(e) = selection {
            self.expr(e)?;
        }
        match group_by {
            GroupByExpr::All(_) => {}
            GroupByExpr::Expressions(v, modifiers) => {
                unsupported_if(!modifiers.is_empty(), "GROUP BY modifiers")?;
                self.exprs(v)?
            }
        }
        if let Some(e) = having {
            self.expr(e)?;
        }
        for NamedWindowDefinition(_, w) in named_window {
            match w {
                NamedWindowExpr::NamedWindow(_) => {}
                NamedWindowExpr::WindowSpec(spec) => self.window_spec(spec)?,
            }
        }
        if let Some(e) = qualify {
            self.expr(e)?;
        }
        Ok(())
    }

    fn table_with_joins(&mut self, t: &mut TableWithJoins) -> R {
        let TableWithJoins { relation, joins } = t;
        self.factor(relation)?;
        for Join {
            relation,
            global,
            join_operator,
        } in joins
        {
            unsupported_if(*global, "GLOBAL join")?;
            self.factor(relation)?;
            let constraint = match join_operator {
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
                if let Some(TableFunctionArgs { args, settings }) = args {
                    unsupported_if(settings.is_some(), "SETTINGS on a table function")?;
                    self.table_function(name, args)?;
                } else if !self.scopes.is_cte(name) {
                    let derived = self.secure_table(name, alias.take())?;
                    *f = derived;
                }
            }
            TableFactor::Derived {
                lateral: _,
                subquery,
                alias: _,
                sample,
            } => {
                unsupported_if(sample.is_some(), "sample on a subquery")?;
                self.query(subquery)?;
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: _,
            } => self.table_with_joins(table_with_joins)?,
            TableFactor::UNNEST {
                alias: _,
                array_exprs,
                with_offset,
                with_offset_alias,
                with_ordinality,
            } => {
                unsupported_if(
                    *with_offset || with_offset_alias.is_some() || *with_ordinality,
                    "UNNEST WITH OFFSET or ORDINALITY",
                )?;
                self.function_allowed("unnest", FunctionUse::Table)?;
                self.exprs(array_exprs)?;
            }
            TableFactor::TableFunction { expr, alias: _ } => {
                return Err(RewriteError::TableFunction(expr.to_string()))
            }
            TableFactor::Function {
                lateral: _,
                name,
                args: _,
                with_ordinality: _,
                alias: _,
            } => return Err(RewriteError::TableFunction(name.to_string())),
            other => return Err(unsupported("table factor", other)),
        }
        self.leave();
        Ok(())
    }

    /// `FROM name(args)`: only a table function on the allow list (pure
    /// generators such as `range`), with its arguments walked.
    fn table_function(&mut self, name: &ObjectName, args: &mut [FunctionArg]) -> R {
        let Some(n) = function_name(name) else {
            return Err(RewriteError::TableFunction(name.to_string()));
        };
        self.function_allowed(&n, FunctionUse::Table)
            .map_err(|e| match e {
                RewriteError::Function { .. } => RewriteError::TableFunction(n.clone()),
                e => e,
            })?;
        self.function_args(args)
    }

    /// Refuses a call the allow list does not allow, or whose name the
    /// engine's own catalog defines (a macro there would be reached instead).
    fn function_allowed(&self, name: &str, usage: FunctionUse) -> R {
        if let Some(ctx) = &self.ctx {
            if ctx.catalog.defines_function(name) {
                return Err(RewriteError::Function {
                    name: name.to_string(),
                    reason: "the engine's catalog defines a function of that name".into(),
                });
            }
        }
        functions::check(name, usage).map_err(|reason| RewriteError::Function {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    }

    /// The derived table that stands for a granted table.
    fn secure_table(&mut self, name: &ObjectName, alias: Option<TableAlias>) -> R<TableFactor> {
        let Some(ctx) = &self.ctx else {
            return Err(RewriteError::Unsupported(
                "a table in a policy expression".into(),
            ));
        };
        let key = table_key(ctx.access.default_catalog(), name)
            .ok_or_else(|| RewriteError::BadName(name.to_string()))?;
        let access = ctx
            .access
            .access(ctx.who, &key)
            .ok_or_else(|| RewriteError::NotGranted(key.clone()))?;
        let subquery = derived_query(ctx, &key, access)?;
        let alias = match alias {
            Some(a) => a,
            None => {
                let last = match name.0.last() {
                    Some(sqlparser::ast::ObjectNamePart::Identifier(id)) => id.clone(),
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
        for OrderByExpr {
            expr,
            options: _,
            with_fill,
        } in v
        {
            unsupported_if(with_fill.is_some(), "WITH FILL")?;
            self.expr(expr)?;
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
        let WildcardAdditionalOptions {
            wildcard_token: _,
            opt_ilike,
            opt_exclude: _,
            opt_except,
            opt_replace,
            opt_rename: _,
            opt_alias,
        } = o;
        unsupported_if(
            opt_ilike.is_some() || opt_except.is_some() || opt_alias.is_some(),
            "ILIKE, EXCEPT or AS on a wildcard (use EXCLUDE)",
        )?;
        if let Some(ReplaceSelectItem { items }) = opt_replace {
            for item in items {
                let ReplaceSelectElement {
                    expr,
                    column_name: _,
                    as_keyword: _,
                } = item.as_mut();
                self.expr(expr)?;
            }
        }
        Ok(())
    }

    fn window_spec(&mut self, w: &mut WindowSpec) -> R {
        let WindowSpec {
            window_name: _,
            partition_by,
            order_by,
            window_frame,
        } = w;
        self.exprs(partition_by)?;
        self.order_by(order_by)?;
        if let Some(WindowFrame {
            units: _,
            start_bound,
            end_bound,
        }) = window_frame
        {
            for b in std::iter::once(start_bound).chain(end_bound.as_mut()) {
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

    fn function_args(&mut self, args: &mut [FunctionArg]) -> R {
        for a in args {
            let arg = match a {
                FunctionArg::Named {
                    name: _,
                    arg,
                    operator: _,
                } => arg,
                FunctionArg::ExprNamed {
                    name,
                    arg,
                    operator: _,
                } => {
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
        Ok(())
    }

    fn function(&mut self, f: &mut Function) -> R {
        let Function {
            name,
            uses_odbc_syntax,
            parameters,
            args,
            within_group,
            filter,
            null_treatment: _,
            over,
        } = f;
        unsupported_if(*uses_odbc_syntax, "ODBC function syntax")?;
        let n = function_name(name).ok_or_else(|| RewriteError::Function {
            name: name.to_string(),
            reason: "call functions by their plain name".into(),
        })?;
        self.function_allowed(&n, FunctionUse::Scalar)?;
        unsupported_if(
            !matches!(parameters, FunctionArguments::None),
            "parametric function",
        )?;
        match args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(q) => self.query(q)?,
            FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: _,
                args,
                clauses,
            }) => {
                self.function_args(args)?;
                for c in clauses {
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
        self.order_by(within_group)?;
        self.opt(filter)?;
        match over {
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
                    self.idents.push(crate::access::fold(&id.value));
                }
            }
            Expr::CompoundIdentifier(_) if self.ctx.is_none() => {
                return Err(RewriteError::Unsupported(
                    "a qualified column in a policy expression".into(),
                ))
            }
            // A placeholder in a filter or mask would take its value from the
            // parameters a user binds to their own statement (Flight SQL's
            // prepared statements): the user would write the policy.
            Expr::Value(v)
                if self.ctx.is_none()
                    && matches!(v.value, sqlparser::ast::Value::Placeholder(_)) =>
            {
                return Err(RewriteError::Unsupported(
                    "a parameter placeholder in a policy expression".into(),
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
            | Expr::UnaryOp { op: _, expr: x }
            | Expr::Cast {
                kind: _,
                expr: x,
                data_type: _,
                format: None,
            }
            | Expr::Extract {
                field: _,
                syntax: _,
                expr: x,
            }
            | Expr::Ceil { expr: x, field: _ }
            | Expr::Floor { expr: x, field: _ }
            | Expr::Collate {
                expr: x,
                collation: _,
            }
            | Expr::Named { expr: x, name: _ } => self.expr(x)?,
            Expr::IsDistinctFrom(a, b)
            | Expr::IsNotDistinctFrom(a, b)
            | Expr::BinaryOp {
                left: a,
                op: _,
                right: b,
            }
            | Expr::AnyOp {
                left: a,
                compare_op: _,
                right: b,
                is_some: _,
            }
            | Expr::AllOp {
                left: a,
                compare_op: _,
                right: b,
            }
            | Expr::AtTimeZone {
                timestamp: a,
                time_zone: b,
            }
            | Expr::Position { expr: a, r#in: b }
            | Expr::RLike {
                negated: _,
                expr: a,
                pattern: b,
                regexp: _,
            } => {
                self.expr(a)?;
                self.expr(b)?;
            }
            Expr::Like {
                negated: _,
                any,
                expr,
                pattern,
                escape_char,
            }
            | Expr::ILike {
                negated: _,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                unsupported_if(*any, "LIKE ANY")?;
                self.expr(expr)?;
                self.expr(pattern)?;
                self.opt(escape_char)?;
            }
            Expr::SimilarTo {
                negated: _,
                expr,
                pattern,
                escape_char,
            } => {
                self.expr(expr)?;
                self.expr(pattern)?;
                self.opt(escape_char)?;
            }
            Expr::Between {
                expr,
                negated: _,
                low,
                high,
            } => {
                self.expr(expr)?;
                self.expr(low)?;
                self.expr(high)?;
            }
            Expr::In {
                expr,
                target,
                negated: _,
                global,
            } => {
                unsupported_if(*global, "GLOBAL IN")?;
                self.expr(expr)?;
                match target {
                    sqlparser::ast::InTarget::List(v) => self.exprs(v)?,
                    sqlparser::ast::InTarget::Subquery(q) => self.query(q)?,
                    sqlparser::ast::InTarget::Unnest(e) => self.expr(e)?,
                    other => return Err(unsupported("IN target", other)),
                }
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                special: _,
                shorthand: _,
            } => {
                self.expr(expr)?;
                self.opt(substring_from)?;
                self.opt(substring_for)?;
            }
            Expr::Trim {
                trim_where: _,
                trim_what,
                expr,
                trim_characters,
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
                case_token: _,
                end_token: _,
                operand,
                conditions,
                else_result,
            } => {
                self.opt(operand)?;
                for CaseWhen { condition, result } in conditions {
                    self.expr(condition)?;
                    self.expr(result)?;
                }
                self.opt(else_result)?;
            }
            Expr::Exists {
                subquery,
                negated: _,
            }
            | Expr::Subquery(subquery) => self.query(subquery)?,
            Expr::GroupingSets(vv) | Expr::Cube(vv) | Expr::Rollup(vv) => {
                for v in vv {
                    self.exprs(v)?;
                }
            }
            Expr::Tuple(v) => self.exprs(v)?,
            Expr::Dictionary(fields) => {
                for DictionaryField { key: _, value } in fields {
                    self.expr(value)?;
                }
            }
            Expr::Map(Map { entries }) => {
                for MapEntry { key, value } in entries {
                    self.expr(key)?;
                    self.expr(value)?;
                }
            }
            Expr::Array(Array { elem, named: _ }) => self.exprs(elem)?,
            Expr::Interval(Interval {
                value,
                leading_field: _,
                leading_precision: _,
                last_field: _,
                fractional_seconds_precision: _,
            }) => self.expr(value)?,
            Expr::Lambda(LambdaFunction {
                params: _,
                body,
                syntax: _,
            }) => self.expr(body)?,
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

/// The derived table's query for one granted table: its full name, its
/// filter, its masked projection.
fn derived_query(ctx: &Ctx<'_>, key: &TableKey, access: TableAccess) -> R<Query> {
    let TableAccess {
        filter,
        masks,
        uses,
    } = access;
    let masked = !masks.is_empty();
    let mut q = template(masked).clone();
    let SetExpr::Select(sel) = q.body.as_mut() else {
        unreachable!("the template is a plain SELECT")
    };
    if let TableFactor::Table { name, .. } = &mut sel.from[0].relation {
        *name = names::full_name(key, quoted_ident)?;
    }
    // Only tables the catalog lists are sent: a name the engine does not
    // know could reach something else (DuckDB's replacement scans read a
    // file for an unknown name such as "data.csv").
    let cols = ctx
        .catalog
        .columns(key)
        .ok_or_else(|| RewriteError::UnknownTable(key.clone()))?;
    let has = |name: &str| cols.iter().any(|c| crate::access::fold(c) == name);
    for used in &uses {
        if !has(used) {
            return Err(RewriteError::PolicyUsesUnknownColumn {
                table: key.clone(),
                column: used.clone(),
            });
        }
    }
    sel.selection = filter;
    if masked {
        for m in &masks {
            if !has(&m.column) {
                return Err(RewriteError::MaskOnUnknownColumn {
                    table: key.clone(),
                    column: m.column.clone(),
                });
            }
        }
        sel.projection = cols
            .iter()
            .map(|c| {
                let folded = crate::access::fold(c);
                let id = quoted_ident(c)?;
                Ok(match masks.iter().find(|m| m.column == folded) {
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

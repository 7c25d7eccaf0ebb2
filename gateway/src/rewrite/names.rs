//! Name resolution: which table a name in a FROM clause means, and how the
//! rewriter names a granted table in the SQL it sends.
//!
//! Owns the mapping of a written name (`t`, `schema.t`, `catalog.schema.t`,
//! quoted or not, any case) to one [`TableKey`]: the default catalog and the
//! schema `main` filled in, each part folded as DuckDB folds identifiers.
//! A written name only ever selects which grant applies; what reaches the
//! engine is always the full, quoted `"catalog"."schema"."table"` of the
//! granted table ([`full_name`]), so the engine's search path (a temporary
//! table, a system view, another catalog of the same name) never chooses for
//! it. It refuses a name it cannot read: no part, more than three parts, an
//! empty part, or a quoting it does not know.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use crate::access::{fold, TableKey};

/// The schema an unqualified table name lives in.
pub const DEFAULT_SCHEMA: &str = "main";

/// The key of a name written in a query, or `None` when it cannot be read.
pub fn table_key(default_catalog: &str, name: &ObjectName) -> Option<TableKey> {
    let mut parts: Vec<&str> = Vec::with_capacity(name.0.len());
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(Ident {
                value,
                quote_style: None | Some('"'),
                span: _,
            }) => parts.push(value),
            _ => return None,
        }
    }
    key_from_parts(default_catalog, &parts)
}

/// The key of a dotted name as the admin API writes one (`Main.Users`, no
/// quoting).
pub fn dotted_key(default_catalog: &str, name: &str) -> Option<TableKey> {
    let parts: Vec<&str> = name.split('.').map(str::trim).collect();
    key_from_parts(default_catalog, &parts)
}

fn key_from_parts(default_catalog: &str, parts: &[&str]) -> Option<TableKey> {
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let (catalog, schema, table) = match parts {
        [t] => (default_catalog, DEFAULT_SCHEMA, *t),
        [s, t] => (default_catalog, *s, *t),
        [c, s, t] => (*c, *s, *t),
        _ => return None,
    };
    Some(TableKey::new(catalog, schema, table))
}

/// The name a granted table is sent under: all three parts, each quoted.
/// `quote` refuses a part the printer could not write back.
pub(super) fn full_name<E>(
    key: &TableKey,
    quote: impl Fn(&str) -> Result<Ident, E>,
) -> Result<ObjectName, E> {
    Ok(ObjectName(vec![
        ObjectNamePart::Identifier(quote(&key.catalog)?),
        ObjectNamePart::Identifier(quote(&key.schema)?),
        ObjectNamePart::Identifier(quote(&key.table)?),
    ]))
}

/// The one name of an unqualified function call, folded; `None` for a
/// qualified name (`main.f`, `system.main.f`), which could reach a macro of
/// the same name in another schema, or a name part that is not an
/// identifier.
pub fn function_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(Ident {
            value,
            quote_style: None | Some('"'),
            span: _,
        })] => Some(fold(value)),
        _ => None,
    }
}

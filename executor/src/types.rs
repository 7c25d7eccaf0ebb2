//! Result column types: the encoder's plan per column and DuckDB's type names.
//!
//! Owns the translation of a DuckDB logical type into [`Kind`] (how to read the
//! vector and which JSON form to write) and into the type name exactly as
//! DuckDB prints it (`DECIMAL(18,3)`, `INTEGER[]`, `STRUCT(a INTEGER)`, ...).
//! It reads type descriptors only; it never reads data.

use std::collections::HashSet;

use libduckdb_sys as ffi;

use crate::duckdb::LogicalType;

/// The physical integer width behind DECIMAL and ENUM values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phys {
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
}

/// How a column's values are read and written.
#[derive(Debug, Clone)]
pub enum Kind {
    Null,
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    I128,
    U128,
    F32,
    F64,
    Decimal {
        scale: u8,
        phys: Phys,
    },
    Varchar,
    Blob,
    Bit,
    Date,
    Time,
    TimeNs,
    TimeTz,
    /// `per_sec` units per second, `digits` fractional digits, `utc` for TIMESTAMPTZ.
    Timestamp {
        per_sec: i64,
        digits: usize,
        utc: bool,
    },
    Interval,
    Uuid,
    /// Labels pre-encoded as JSON strings.
    Enum {
        phys: Phys,
        labels: Vec<Box<[u8]>>,
    },
    List(Box<Kind>),
    Array(Box<Kind>, usize),
    /// Field names pre-encoded as JSON strings (with the trailing colon).
    Struct(Vec<(Box<[u8]>, Kind)>),
    /// A MAP is a LIST of STRUCT(key, value).
    Map(Box<Kind>, Box<Kind>),
    /// Member names pre-encoded like struct keys; child 0 of the vector is the tag.
    Union(Vec<(Box<[u8]>, Kind)>),
    /// A type without a JSON form here (e.g. BIGNUM, VARIANT).
    Unsupported(String),
}

impl Kind {
    /// The first unsupported type inside this one, if any.
    pub fn unsupported(&self) -> Option<&str> {
        match self {
            Kind::Unsupported(n) => Some(n),
            Kind::List(k) | Kind::Array(k, _) => k.unsupported(),
            Kind::Map(k, v) => k.unsupported().or_else(|| v.unsupported()),
            Kind::Struct(f) | Kind::Union(f) => f.iter().find_map(|(_, k)| k.unsupported()),
            _ => None,
        }
    }
}

fn key_json(name: &str) -> Box<[u8]> {
    let mut v = Vec::with_capacity(name.len() + 3);
    crate::json::write_str(&mut v, name.as_bytes());
    v.push(b':');
    v.into_boxed_slice()
}

fn phys_of(t: ffi::DUCKDB_TYPE) -> Phys {
    match t {
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT => Phys::I16,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => Phys::I32,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => Phys::I64,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT => Phys::U8,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT => Phys::U16,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => Phys::U32,
        _ => Phys::I128,
    }
}

/// Builds the encoding plan for a column type.
pub fn kind_of(t: &LogicalType) -> Kind {
    use Kind::*;
    match t.id() {
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_SQLNULL => Null,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => Bool,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TINYINT => I8,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT => I16,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => I32,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => I64,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT => U8,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT => U16,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => U32,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT => U64,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_HUGEINT => I128,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UHUGEINT => U128,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT => F32,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => F64,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_DECIMAL => Decimal {
            scale: t.decimal_scale(),
            phys: phys_of(t.decimal_internal()),
        },
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => Varchar,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BLOB => Blob,
        // A GEOMETRY value is its WKB bytes (the same string_t layout as
        // BLOB), so it gets BLOB's lossless form: base64 of the WKB.
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_GEOMETRY => Blob,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIT => Bit,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_DATE => Date,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIME => Time,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIME_NS => TimeNs,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIME_TZ => TimeTz,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP => Timestamp {
            per_sec: 1_000_000,
            digits: 6,
            utc: false,
        },
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_S => Timestamp {
            per_sec: 1,
            digits: 0,
            utc: false,
        },
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_MS => Timestamp {
            per_sec: 1_000,
            digits: 3,
            utc: false,
        },
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_NS => Timestamp {
            per_sec: 1_000_000_000,
            digits: 9,
            utc: false,
        },
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ => Timestamp {
            per_sec: 1_000_000,
            digits: 6,
            utc: true,
        },
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ_NS => Timestamp {
            per_sec: 1_000_000_000,
            digits: 9,
            utc: true,
        },
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTERVAL => Interval,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UUID => Uuid,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_ENUM => Enum {
            phys: phys_of(t.enum_internal()),
            labels: t
                .enum_values()
                .iter()
                .map(|l| {
                    let mut v = Vec::with_capacity(l.len() + 2);
                    crate::json::write_str(&mut v, l.as_bytes());
                    v.into_boxed_slice()
                })
                .collect(),
        },
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_LIST => List(Box::new(kind_of(&t.list_child()))),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY => {
            Array(Box::new(kind_of(&t.array_child())), t.array_size())
        }
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_MAP => Map(
            Box::new(kind_of(&t.map_key())),
            Box::new(kind_of(&t.map_value())),
        ),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT => Struct(
            t.struct_children()
                .iter()
                .map(|(n, c)| (key_json(n), kind_of(c)))
                .collect(),
        ),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UNION => Union(
            t.union_members()
                .iter()
                .map(|(n, c)| (key_json(n), kind_of(c)))
                .collect(),
        ),
        _ => Unsupported(type_name(t, &HashSet::new())),
    }
}

/// DuckDB's `KeywordHelper::WriteOptionallyQuoted` rule for struct field and
/// union member names: quote unless a plain lower-case identifier that is not
/// a keyword (`keywords` comes from `duckdb_keywords()` at open).
fn ident(name: &str, keywords: &HashSet<String>) -> String {
    let b = name.as_bytes();
    // `_1` would read as a decimal literal after a dot, so DuckDB quotes it.
    let digit_after_underscore = b.len() > 1 && b[0] == b'_' && b[1].is_ascii_digit();
    let plain = !b.is_empty()
        && !digit_after_underscore
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_lowercase() || b == b'_' || (i > 0 && b.is_ascii_digit()))
        && !keywords.contains(name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The type's name as DuckDB prints it (what `typeof()` returns).
pub fn type_name(t: &LogicalType, keywords: &HashSet<String>) -> String {
    if let Some(alias) = t.alias() {
        return alias;
    }
    let simple = match t.id() {
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_SQLNULL => "\"NULL\"",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => "BOOLEAN",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TINYINT => "TINYINT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT => "SMALLINT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => "INTEGER",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => "BIGINT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT => "UTINYINT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT => "USMALLINT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => "UINTEGER",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT => "UBIGINT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_HUGEINT => "HUGEINT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UHUGEINT => "UHUGEINT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT => "FLOAT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => "DOUBLE",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => "VARCHAR",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BLOB => "BLOB",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIT => "BIT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_DATE => "DATE",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIME => "TIME",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIME_NS => "TIME_NS",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIME_TZ => "TIME WITH TIME ZONE",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP => "TIMESTAMP",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_S => "TIMESTAMP_S",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_MS => "TIMESTAMP_MS",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_NS => "TIMESTAMP_NS",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ => "TIMESTAMP WITH TIME ZONE",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ_NS => "TIMESTAMPTZ_NS",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTERVAL => "INTERVAL",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UUID => "UUID",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGNUM => "BIGNUM",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_GEOMETRY => "GEOMETRY",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARIANT => "VARIANT",
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_ANY => "ANY",
        _ => "",
    };
    if !simple.is_empty() {
        return simple.to_string();
    }
    match t.id() {
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_DECIMAL => {
            format!("DECIMAL({},{})", t.decimal_width(), t.decimal_scale())
        }
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_ENUM => {
            let labels: Vec<String> = t
                .enum_values()
                .iter()
                .map(|l| format!("'{}'", l.replace('\'', "''")))
                .collect();
            format!("ENUM({})", labels.join(", "))
        }
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_LIST => format!("{}[]", type_name(&t.list_child(), keywords)),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY => {
            format!(
                "{}[{}]",
                type_name(&t.array_child(), keywords),
                t.array_size()
            )
        }
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_MAP => {
            format!(
                "MAP({}, {})",
                type_name(&t.map_key(), keywords),
                type_name(&t.map_value(), keywords)
            )
        }
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT | ffi::DUCKDB_TYPE_DUCKDB_TYPE_UNION => {
            let is_struct = t.id() == ffi::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT;
            let children = if is_struct {
                t.struct_children()
            } else {
                t.union_members()
            };
            let head = if is_struct { "STRUCT" } else { "UNION" };
            if children.is_empty() {
                return head.to_string();
            }
            let parts: Vec<String> = children
                .iter()
                .map(|(n, c)| format!("{} {}", ident(n, keywords), type_name(c, keywords)))
                .collect();
            format!("{head}({})", parts.join(", "))
        }
        other => format!("TYPE#{other}"),
    }
}

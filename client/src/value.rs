//! Typed values: DuckDB's type names (`column_types`) mapped to Rust types, and each
//! JSON cell of a page decoded by its column's type (value forms: docs/api.md).
//!
//! Owns the mapping. A cell that does not fit its declared type (an older agent, a
//! type added later, infinite dates) is kept losslessly as text or JSON rather than
//! failing the query, and nothing here panics on any input. No I/O.

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::value::RawValue;

/// A column's type, from DuckDB's name for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    /// TINYINT, SMALLINT, INTEGER, BIGINT.
    Int,
    /// UTINYINT, USMALLINT, UINTEGER, UBIGINT.
    UInt,
    HugeInt,
    UHugeInt,
    /// FLOAT, DOUBLE.
    Float,
    /// DECIMAL(p,s): kept as its exact decimal text.
    Decimal,
    /// VARCHAR, ENUM, BIT, TIME WITH TIME ZONE: strings.
    Text,
    /// BLOB, GEOMETRY (WKB): base64 on the wire.
    Blob,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    /// LIST and ARRAY of the element type.
    List(Box<ColumnType>),
    /// STRUCT, MAP, UNION and anything unknown: kept as JSON.
    Json,
}

impl ColumnType {
    /// Maps DuckDB's printed type name; unknown names are [`ColumnType::Json`] (a string
    /// cell of such a column still comes back as [`Value::Text`]).
    pub fn parse(name: &str) -> ColumnType {
        let n = name.trim();
        if let Some(prefix) = strip_array_suffix(n) {
            return ColumnType::List(Box::new(ColumnType::parse(prefix)));
        }
        let upper = n.to_ascii_uppercase();
        let base = upper.split('(').next().unwrap_or("").trim();
        match base {
            "BOOLEAN" | "BOOL" => ColumnType::Boolean,
            "TINYINT" | "SMALLINT" | "INTEGER" | "INT" | "BIGINT" => ColumnType::Int,
            "UTINYINT" | "USMALLINT" | "UINTEGER" | "UBIGINT" => ColumnType::UInt,
            "HUGEINT" => ColumnType::HugeInt,
            "UHUGEINT" => ColumnType::UHugeInt,
            "FLOAT" | "DOUBLE" | "REAL" => ColumnType::Float,
            "DECIMAL" | "NUMERIC" => ColumnType::Decimal,
            "BLOB" | "GEOMETRY" | "BYTEA" => ColumnType::Blob,
            "DATE" => ColumnType::Date,
            "TIME" | "TIME_NS" => ColumnType::Time,
            "TIMESTAMP" | "TIMESTAMP_S" | "TIMESTAMP_MS" | "TIMESTAMP_NS" | "DATETIME" => {
                ColumnType::Timestamp
            }
            "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => ColumnType::TimestampTz,
            "INTERVAL" => ColumnType::Interval,
            "UUID" => ColumnType::Uuid,
            "ENUM" | "BIT" | "BITSTRING" | "TIME WITH TIME ZONE" | "TIMETZ" => ColumnType::Text,
            b if b.starts_with("VARCHAR") || b == "TEXT" || b == "STRING" => ColumnType::Text,
            "LIST" => ColumnType::List(Box::new(ColumnType::Json)),
            _ => ColumnType::Json,
        }
    }
}

/// `T[]` or `T[N]` → `T`.
fn strip_array_suffix(n: &str) -> Option<&str> {
    let rest = n.strip_suffix(']')?;
    let open = rest.rfind('[')?;
    let inside = &rest[open + 1..];
    if inside.bytes().all(|b| b.is_ascii_digit()) && open > 0 {
        Some(rest[..open].trim_end())
    } else {
        None
    }
}

/// One typed cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    HugeInt(i128),
    UHugeInt(u128),
    Float(f64),
    /// DECIMAL's exact text, e.g. `"123.450"`.
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    Uuid(uuid::Uuid),
    List(Vec<Value>),
    Json(serde_json::Value),
}

/// A row: one value per column.
pub type Row = Vec<Value>;

/// A value bound to a statement's placeholder (`$1`, `?`): sent beside the
/// SQL text as a JSON scalar (the agent's `params`), never spliced into it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// Decodes the text of one JSON cell as `ty`. Never fails: a cell that does not fit
/// comes back as text (JSON strings) or JSON.
pub fn decode(ty: &ColumnType, raw: &str) -> Value {
    let raw = raw.trim();
    if raw == "null" {
        return Value::Null;
    }
    typed(ty, raw).unwrap_or_else(|| generic(raw))
}

fn typed(ty: &ColumnType, raw: &str) -> Option<Value> {
    Some(match ty {
        ColumnType::Boolean => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return None,
        },
        ColumnType::Int => Value::Int(raw.parse().ok()?),
        ColumnType::UInt => Value::UInt(raw.parse().ok()?),
        ColumnType::HugeInt => Value::HugeInt(raw.parse().ok()?),
        ColumnType::UHugeInt => Value::UHugeInt(raw.parse().ok()?),
        ColumnType::Float => match raw {
            "\"NaN\"" => Value::Float(f64::NAN),
            "\"Infinity\"" => Value::Float(f64::INFINITY),
            "\"-Infinity\"" => Value::Float(f64::NEG_INFINITY),
            _ if raw.starts_with('"') => return None,
            _ => Value::Float(raw.parse().ok()?),
        },
        ColumnType::Decimal => {
            let ok = !raw.is_empty()
                && raw
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'e' | b'E' | b'+'));
            if !ok {
                return None;
            }
            Value::Decimal(raw.to_string())
        }
        ColumnType::Text => Value::Text(string(raw)?),
        ColumnType::Blob => Value::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(string(raw)?)
                .ok()?,
        ),
        ColumnType::Date => Value::Date(date(raw)?),
        ColumnType::Time => {
            Value::Time(NaiveTime::parse_from_str(&string(raw)?, "%H:%M:%S%.f").ok()?)
        }
        ColumnType::Timestamp => Value::Timestamp(
            NaiveDateTime::parse_from_str(&string(raw)?, "%Y-%m-%dT%H:%M:%S%.f").ok()?,
        ),
        ColumnType::TimestampTz => {
            let s = string(raw)?;
            let naive =
                NaiveDateTime::parse_from_str(s.strip_suffix('Z')?, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
            Value::TimestampTz(naive.and_utc())
        }
        ColumnType::Interval => {
            #[derive(serde::Deserialize)]
            struct Iv {
                months: i32,
                days: i32,
                micros: i64,
            }
            let iv: Iv = serde_json::from_str(raw).ok()?;
            Value::Interval {
                months: iv.months,
                days: iv.days,
                micros: iv.micros,
            }
        }
        ColumnType::Uuid => Value::Uuid(uuid::Uuid::try_parse(&string(raw)?).ok()?),
        ColumnType::List(elem) => {
            let cells: Vec<&RawValue> = serde_json::from_str(raw).ok()?;
            Value::List(cells.iter().map(|c| decode(elem, c.get())).collect())
        }
        ColumnType::Json => return None,
    })
}

/// A DATE cell: `"YYYY-MM-DD"` (the agent's usual form) read directly, anything else
/// (years beyond 9999, BC) through chrono's parser.
fn date(raw: &str) -> Option<NaiveDate> {
    let b = raw.as_bytes();
    if b.len() == 12 && b[0] == b'"' && b[11] == b'"' && b[5] == b'-' && b[8] == b'-' {
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            b[r].iter().try_fold(0u32, |v, &c| {
                c.is_ascii_digit().then(|| v * 10 + u32::from(c - b'0'))
            })
        };
        if let (Some(y), Some(m), Some(d)) = (num(1..5), num(6..8), num(9..11)) {
            return NaiveDate::from_ymd_opt(y as i32, m, d);
        }
    }
    NaiveDate::parse_from_str(&string(raw)?, "%Y-%m-%d").ok()
}

/// A JSON string's contents, or `None` for anything else.
fn string(raw: &str) -> Option<String> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') && !inner.contains('"') {
        return Some(inner.to_string());
    }
    serde_json::from_str(raw).ok()
}

/// A cell whose declared type did not fit: strings as text, the rest as JSON.
fn generic(raw: &str) -> Value {
    if let Some(s) = string(raw) {
        return Value::Text(s);
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v) => Value::Json(v),
        // Not JSON at all (cannot happen with a page that parsed): keep the text.
        Err(_) => Value::Text(raw.to_string()),
    }
}

/// Decodes a page's raw rows by the columns' types (missing types: JSON).
pub fn decode_rows(types: &[ColumnType], rows: &[Vec<&RawValue>]) -> Vec<Row> {
    rows.iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, cell)| decode(types.get(i).unwrap_or(&ColumnType::Json), cell.get()))
                .collect()
        })
        .collect()
}

impl Value {
    /// The value in the agent's JSON form (for JSON-lines output).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            // Beyond 64 bits JSON numbers lose precision in most readers: a string.
            Value::HugeInt(i) => {
                i64::try_from(*i).map_or_else(|_| J::String(i.to_string()), J::from)
            }
            Value::UHugeInt(u) => {
                u64::try_from(*u).map_or_else(|_| J::String(u.to_string()), J::from)
            }
            Value::Float(f) if f.is_finite() => {
                serde_json::Number::from_f64(*f).map_or(J::Null, J::Number)
            }
            Value::Float(_) => J::String(self.to_string()),
            Value::Decimal(d) => J::String(d.clone()),
            Value::Text(s) => J::String(s.clone()),
            Value::Json(v) => v.clone(),
            Value::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Interval {
                months,
                days,
                micros,
            } => serde_json::json!({"months": months, "days": days, "micros": micros}),
            other => J::String(other.to_string()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::HugeInt(i) => write!(f, "{i}"),
            Value::UHugeInt(u) => write!(f, "{u}"),
            Value::Float(x) if x.is_nan() => f.write_str("NaN"),
            Value::Float(x) if x.is_infinite() => {
                f.write_str(if *x > 0.0 { "Infinity" } else { "-Infinity" })
            }
            Value::Float(x) => write!(f, "{x}"),
            Value::Decimal(d) => f.write_str(d),
            Value::Text(s) => f.write_str(s),
            Value::Bytes(b) => f.write_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Value::Time(t) => write!(f, "{}", t.format("%H:%M:%S%.f")),
            Value::Timestamp(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.f")),
            Value::TimestampTz(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.fZ")),
            Value::Interval {
                months,
                days,
                micros,
            } => write!(f, "{months} months {days} days {micros} us"),
            Value::Uuid(u) => write!(f, "{u}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Json(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ty: &str, raw: &str) -> Value {
        decode(&ColumnType::parse(ty), raw)
    }

    #[test]
    fn types_map() {
        assert_eq!(ColumnType::parse("DECIMAL(18,3)"), ColumnType::Decimal);
        assert_eq!(
            ColumnType::parse("INTEGER[]"),
            ColumnType::List(Box::new(ColumnType::Int))
        );
        assert_eq!(
            ColumnType::parse("VARCHAR[3][]"),
            ColumnType::List(Box::new(ColumnType::List(Box::new(ColumnType::Text))))
        );
        assert_eq!(ColumnType::parse("STRUCT(a INTEGER[])"), ColumnType::Json);
        assert_eq!(ColumnType::parse("ENUM('a', 'b')"), ColumnType::Text);
        assert_eq!(
            ColumnType::parse("TIMESTAMP WITH TIME ZONE"),
            ColumnType::TimestampTz
        );
        assert_eq!(ColumnType::parse("[]"), ColumnType::Json);
        assert_eq!(ColumnType::parse(""), ColumnType::Json);
    }

    #[test]
    fn cells_decode() {
        assert_eq!(d("BIGINT", "-5"), Value::Int(-5));
        assert_eq!(d("UBIGINT", "18446744073709551615"), Value::UInt(u64::MAX));
        assert_eq!(
            d("HUGEINT", "-170141183460469231731687303715884105728"),
            Value::HugeInt(i128::MIN)
        );
        assert!(matches!(d("DOUBLE", "\"NaN\""), Value::Float(x) if x.is_nan()));
        assert_eq!(d("DECIMAL(5,3)", "12.450"), Value::Decimal("12.450".into()));
        assert_eq!(d("VARCHAR", r#""a\"\n""#), Value::Text("a\"\n".into()));
        assert_eq!(d("BLOB", r#""qrs=""#), Value::Bytes(vec![0xaa, 0xbb]));
        assert_eq!(
            d("DATE", r#""2024-02-29""#),
            Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())
        );
        assert_eq!(d("DATE", r#""infinity""#), Value::Text("infinity".into()));
        assert_eq!(
            d("DATE", r#""2023-02-29""#),
            Value::Text("2023-02-29".into())
        );
        assert_eq!(
            d("DATE", r#""20x4-02-01""#),
            Value::Text("20x4-02-01".into())
        );
        assert!(matches!(
            d("TIMESTAMP", r#""2024-02-29T13:45:30.5""#),
            Value::Timestamp(_)
        ));
        assert!(matches!(
            d("TIMESTAMP WITH TIME ZONE", r#""2024-02-29T13:45:30Z""#),
            Value::TimestampTz(_)
        ));
        assert!(matches!(d("TIME", r#""13:45:30.123456""#), Value::Time(_)));
        assert_eq!(
            d("INTERVAL", r#"{"months":1,"days":2,"micros":3}"#),
            Value::Interval {
                months: 1,
                days: 2,
                micros: 3
            }
        );
        assert_eq!(
            d("INTEGER[]", "[1,null]"),
            Value::List(vec![Value::Int(1), Value::Null])
        );
        assert_eq!(d("BIGNUM", "12"), Value::Json(serde_json::json!(12)));
        assert_eq!(d("INTEGER", r#""x""#), Value::Text("x".into()));
        assert_eq!(d("INTEGER", "null"), Value::Null);
        // Hostile cells never panic.
        for raw in ["", "\"", "[", "{", "\"\\u12\"", "1e999999", "--1"] {
            for ty in [
                "INTEGER",
                "DOUBLE",
                "DATE",
                "INTERVAL",
                "INTEGER[]",
                "UUID",
                "DECIMAL(2,1)",
            ] {
                let _ = d(ty, raw);
            }
        }
    }
}

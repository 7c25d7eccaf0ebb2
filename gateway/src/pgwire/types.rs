//! PostgreSQL types for DuckDB's: the row description a client sees for a
//! column of each DuckDB type name, and each value encoded in the format
//! the client asked for (text, or PostgreSQL's binary forms).
//!
//! Owns the mapping. Integers, floats, numerics, text, booleans, dates,
//! times, timestamps (with and without time zone), intervals, UUIDs, blobs
//! (`bytea`), JSON and one-level arrays of those get their PostgreSQL type;
//! nested and composite types (STRUCT, MAP, UNION, lists of lists) travel as
//! `json`. A value that does not fit its column's declared type is sent as
//! its text in text format, and refused with an error in binary format; it
//! never panics.

use std::sync::Arc;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use client::value::Value;
use pgwire::api::results::{CopyEncoder, DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};

/// How a column travels: its PostgreSQL type and the encoding its values use.
#[derive(Debug, Clone, PartialEq)]
pub enum PgColumn {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Varchar,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    Json,
    /// A one-level list of a scalar column kind.
    Array(Box<PgColumn>),
}

impl PgColumn {
    /// The column kind for DuckDB's type name (as `column_types` and
    /// `DESCRIBE` print it).
    pub fn of_duckdb(name: &str) -> PgColumn {
        let upper = name.trim().to_ascii_uppercase();
        if let Some(inner) = upper.strip_suffix("[]") {
            let elem = PgColumn::of_duckdb(inner);
            return match elem {
                PgColumn::Array(_) | PgColumn::Json => PgColumn::Json,
                e => PgColumn::Array(Box::new(e)),
            };
        }
        let base = upper.split('(').next().unwrap_or("").trim();
        match base {
            "BOOLEAN" | "BOOL" => PgColumn::Bool,
            "TINYINT" | "SMALLINT" | "UTINYINT" => PgColumn::Int2,
            "INTEGER" | "INT" | "USMALLINT" => PgColumn::Int4,
            "BIGINT" | "UINTEGER" => PgColumn::Int8,
            "UBIGINT" | "HUGEINT" | "UHUGEINT" | "DECIMAL" | "NUMERIC" => PgColumn::Numeric,
            "FLOAT" | "REAL" => PgColumn::Float4,
            "DOUBLE" => PgColumn::Float8,
            "VARCHAR" => PgColumn::Varchar,
            "TEXT" | "STRING" | "ENUM" => PgColumn::Text,
            "BLOB" | "BYTEA" => PgColumn::Bytea,
            "DATE" => PgColumn::Date,
            "TIME" | "TIME_NS" => PgColumn::Time,
            "TIMESTAMP" | "TIMESTAMP_S" | "TIMESTAMP_MS" | "TIMESTAMP_NS" | "DATETIME" => {
                PgColumn::Timestamp
            }
            "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => PgColumn::TimestampTz,
            "INTERVAL" => PgColumn::Interval,
            "UUID" => PgColumn::Uuid,
            "JSON" | "STRUCT" | "MAP" | "UNION" | "LIST" => PgColumn::Json,
            _ => PgColumn::Text,
        }
    }

    /// The PostgreSQL type a client is told.
    pub fn pg_type(&self) -> Type {
        match self {
            PgColumn::Bool => Type::BOOL,
            PgColumn::Int2 => Type::INT2,
            PgColumn::Int4 => Type::INT4,
            PgColumn::Int8 => Type::INT8,
            PgColumn::Float4 => Type::FLOAT4,
            PgColumn::Float8 => Type::FLOAT8,
            PgColumn::Numeric => Type::NUMERIC,
            PgColumn::Text => Type::TEXT,
            PgColumn::Varchar => Type::VARCHAR,
            PgColumn::Bytea => Type::BYTEA,
            PgColumn::Date => Type::DATE,
            PgColumn::Time => Type::TIME,
            PgColumn::Timestamp => Type::TIMESTAMP,
            PgColumn::TimestampTz => Type::TIMESTAMPTZ,
            PgColumn::Interval => Type::INTERVAL,
            PgColumn::Uuid => Type::UUID,
            PgColumn::Json => Type::JSON,
            PgColumn::Array(e) => match **e {
                PgColumn::Bool => Type::BOOL_ARRAY,
                PgColumn::Int2 => Type::INT2_ARRAY,
                PgColumn::Int4 => Type::INT4_ARRAY,
                PgColumn::Int8 => Type::INT8_ARRAY,
                PgColumn::Float4 => Type::FLOAT4_ARRAY,
                PgColumn::Float8 => Type::FLOAT8_ARRAY,
                PgColumn::Numeric => Type::NUMERIC_ARRAY,
                PgColumn::Varchar => Type::VARCHAR_ARRAY,
                PgColumn::Bytea => Type::BYTEA_ARRAY,
                PgColumn::Date => Type::DATE_ARRAY,
                PgColumn::Time => Type::TIME_ARRAY,
                PgColumn::Timestamp => Type::TIMESTAMP_ARRAY,
                PgColumn::TimestampTz => Type::TIMESTAMPTZ_ARRAY,
                PgColumn::Interval => Type::INTERVAL_ARRAY,
                PgColumn::Uuid => Type::UUID_ARRAY,
                _ => Type::TEXT_ARRAY,
            },
        }
    }
}

/// The row description of `columns` (names and DuckDB type names), every
/// column in `format`.
pub fn fields(
    names: &[String],
    duckdb_types: &[String],
    format: impl Fn(usize) -> FieldFormat,
) -> (Arc<Vec<FieldInfo>>, Vec<PgColumn>) {
    let kinds: Vec<PgColumn> = duckdb_types
        .iter()
        .map(|t| PgColumn::of_duckdb(t))
        .collect();
    let fields = names
        .iter()
        .zip(&kinds)
        .enumerate()
        .map(|(i, (n, k))| FieldInfo::new(n.clone(), None, None, k.pg_type(), format(i)))
        .collect();
    (Arc::new(fields), kinds)
}

/// A value as one column of kind `kind`, ready for the row encoder: typed
/// where it fits, its text where it does not.
enum Cell {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Numeric(String),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Interval(pg_interval::Interval),
    Uuid(uuid::Uuid),
    Json(serde_json::Value),
    Array(Vec<Cell>),
}

fn cell(v: &Value, kind: &PgColumn) -> Cell {
    match (v, kind) {
        (Value::Null, _) => Cell::Null,
        (Value::Bool(b), PgColumn::Bool) => Cell::Bool(*b),
        (Value::Int(i), PgColumn::Int2) => {
            i16::try_from(*i).map_or(Cell::Text(i.to_string()), Cell::I16)
        }
        (Value::Int(i), PgColumn::Int4) => {
            i32::try_from(*i).map_or(Cell::Text(i.to_string()), Cell::I32)
        }
        (Value::Int(i), PgColumn::Int8) => Cell::I64(*i),
        (Value::UInt(u), PgColumn::Int2) => {
            i16::try_from(*u).map_or(Cell::Text(u.to_string()), Cell::I16)
        }
        (Value::UInt(u), PgColumn::Int4) => {
            i32::try_from(*u).map_or(Cell::Text(u.to_string()), Cell::I32)
        }
        (Value::UInt(u), PgColumn::Int8) => {
            i64::try_from(*u).map_or(Cell::Text(u.to_string()), Cell::I64)
        }
        (Value::Int(i), PgColumn::Numeric) => Cell::Numeric(i.to_string()),
        (Value::UInt(u), PgColumn::Numeric) => Cell::Numeric(u.to_string()),
        (Value::HugeInt(i), PgColumn::Numeric) => Cell::Numeric(i.to_string()),
        (Value::UHugeInt(u), PgColumn::Numeric) => Cell::Numeric(u.to_string()),
        (Value::Decimal(d), PgColumn::Numeric) => Cell::Numeric(d.clone()),
        (Value::Float(f), PgColumn::Float4) => Cell::F32(*f as f32),
        (Value::Float(f), PgColumn::Float8) => Cell::F64(*f),
        (Value::Text(s), PgColumn::Text | PgColumn::Varchar) => Cell::Text(s.clone()),
        (Value::Bytes(b), PgColumn::Bytea) => Cell::Bytes(b.clone()),
        (Value::Date(d), PgColumn::Date) => Cell::Date(*d),
        (Value::Time(t), PgColumn::Time) => Cell::Time(*t),
        (Value::Timestamp(t), PgColumn::Timestamp) => Cell::Timestamp(*t),
        (Value::TimestampTz(t), PgColumn::TimestampTz) => Cell::TimestampTz(*t),
        (
            Value::Interval {
                months,
                days,
                micros,
            },
            PgColumn::Interval,
        ) => Cell::Interval(pg_interval::Interval::new(*months, *days, *micros)),
        (Value::Uuid(u), PgColumn::Uuid) => Cell::Uuid(*u),
        (Value::Text(s), PgColumn::Uuid) => match uuid::Uuid::parse_str(s) {
            Ok(u) => Cell::Uuid(u),
            Err(_) => Cell::Text(s.clone()),
        },
        (Value::List(items), PgColumn::Array(elem)) => {
            Cell::Array(items.iter().map(|i| cell(i, elem)).collect())
        }
        // A JSON value arrives as its text from an agent (DuckDB's JSON is a
        // VARCHAR underneath): the document itself, not a string holding it.
        // Written as it came (a parse and print would reorder its keys).
        (Value::Text(s), PgColumn::Json) => Cell::Text(s.clone()),
        (v, PgColumn::Json) => Cell::Json(v.to_json()),
        (v, _) => Cell::Text(text_of(v)),
    }
}

/// A value's text, for a cell that does not fit its column's type.
fn text_of(v: &Value) -> String {
    match v {
        Value::Text(s) | Value::Decimal(s) => s.clone(),
        other => match other.to_json() {
            serde_json::Value::String(s) => s,
            j => j.to_string(),
        },
    }
}

/// Where a row's fields are encoded: a `DataRow`, or a `COPY ... TO STDOUT`
/// line.
pub trait FieldEncoder {
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()>;
}

impl FieldEncoder for DataRowEncoder {
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()> {
        self.encode_field(value)
    }
}

impl FieldEncoder for CopyEncoder {
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()> {
        self.encode_field(value)
    }
}

/// Encodes one row of `kinds` into the encoder.
pub fn encode_row<E: FieldEncoder>(
    enc: &mut E,
    row: &[Value],
    kinds: &[PgColumn],
) -> PgWireResult<()> {
    for (v, k) in row.iter().zip(kinds) {
        let c = cell(v, k);
        match c {
            Cell::Null => enc.put(&None::<i32>)?,
            Cell::Bool(b) => enc.put(&b)?,
            Cell::I16(i) => enc.put(&i)?,
            Cell::I32(i) => enc.put(&i)?,
            Cell::I64(i) => enc.put(&i)?,
            Cell::F32(f) => enc.put(&f)?,
            Cell::F64(f) => enc.put(&f)?,
            Cell::Numeric(s) => enc.put(&Numeric(s))?,
            Cell::Text(s) => enc.put(&s)?,
            Cell::Bytes(b) => enc.put(&b)?,
            Cell::Date(d) => enc.put(&d)?,
            Cell::Time(t) => enc.put(&t)?,
            Cell::Timestamp(t) => enc.put(&t)?,
            Cell::TimestampTz(t) => enc.put(&t)?,
            Cell::Interval(i) => enc.put(&i)?,
            Cell::Uuid(u) => enc.put(&PgUuid(u))?,
            Cell::Json(j) => enc.put(&j)?,
            Cell::Array(items) => encode_array(enc, items, k)?,
        }
    }
    Ok(())
}

fn encode_array<E: FieldEncoder>(
    enc: &mut E,
    items: Vec<Cell>,
    kind: &PgColumn,
) -> PgWireResult<()> {
    let PgColumn::Array(elem) = kind else {
        return Err(PgWireError::ApiError(
            "an array cell in a scalar column".into(),
        ));
    };
    macro_rules! typed {
        ($variant:ident, $t:ty) => {{
            let v: Vec<Option<$t>> = items
                .into_iter()
                .map(|c| match c {
                    Cell::$variant(x) => Some(x),
                    _ => None,
                })
                .collect();
            enc.put(&v)
        }};
    }
    match **elem {
        PgColumn::Bool => typed!(Bool, bool),
        PgColumn::Int2 => typed!(I16, i16),
        PgColumn::Int4 => typed!(I32, i32),
        PgColumn::Int8 => typed!(I64, i64),
        PgColumn::Float4 => typed!(F32, f32),
        PgColumn::Float8 => typed!(F64, f64),
        PgColumn::Date => typed!(Date, NaiveDate),
        PgColumn::Timestamp => typed!(Timestamp, NaiveDateTime),
        PgColumn::TimestampTz => typed!(TimestampTz, DateTime<Utc>),
        _ => {
            let v: Vec<Option<String>> = items
                .into_iter()
                .map(|c| match c {
                    Cell::Null => None,
                    Cell::Text(s) | Cell::Numeric(s) => Some(s),
                    Cell::Uuid(u) => Some(u.to_string()),
                    other => Some(format!("{other:?}")),
                })
                .collect();
            enc.put(&v)
        }
    }
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Time(t) => write!(f, "{t}"),
            Cell::Interval(i) => write!(f, "{}", i.to_postgres()),
            Cell::Bytes(b) => {
                f.write_str("\\x")?;
                b.iter().try_for_each(|x| write!(f, "{x:02x}"))
            }
            Cell::Json(j) => write!(f, "{j}"),
            _ => write!(f, "?"),
        }
    }
}

/// A NUMERIC from DuckDB's exact decimal text: the text as it is in text
/// format, `rust_decimal`'s binary form in binary format.
#[derive(Debug)]
struct Numeric(String);

impl ToSql for Numeric {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let d: rust_decimal::Decimal = self.0.parse()?;
        d.to_sql(ty, out)
    }
    postgres_types::accepts!(NUMERIC);
    postgres_types::to_sql_checked!();
}

impl ToSqlText for Numeric {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// A UUID: 16 bytes in binary format, its hyphenated text in text format.
#[derive(Debug)]
struct PgUuid(uuid::Uuid);

impl ToSql for PgUuid {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    postgres_types::accepts!(UUID);
    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgUuid {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.hyphenated().to_string().as_bytes());
        Ok(IsNull::No)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duckdb_type_names_map_to_postgres_types() {
        for (duck, pg) in [
            ("INTEGER", Type::INT4),
            ("BIGINT", Type::INT8),
            ("SMALLINT", Type::INT2),
            ("DOUBLE", Type::FLOAT8),
            ("DECIMAL(18,3)", Type::NUMERIC),
            ("HUGEINT", Type::NUMERIC),
            ("VARCHAR", Type::VARCHAR),
            ("BOOLEAN", Type::BOOL),
            ("DATE", Type::DATE),
            ("TIME", Type::TIME),
            ("TIMESTAMP", Type::TIMESTAMP),
            ("TIMESTAMP_NS", Type::TIMESTAMP),
            ("TIMESTAMP WITH TIME ZONE", Type::TIMESTAMPTZ),
            ("INTERVAL", Type::INTERVAL),
            ("UUID", Type::UUID),
            ("BLOB", Type::BYTEA),
            ("JSON", Type::JSON),
            ("INTEGER[]", Type::INT4_ARRAY),
            ("VARCHAR[]", Type::VARCHAR_ARRAY),
            ("INTEGER[][]", Type::JSON),
            ("STRUCT(a INTEGER, b VARCHAR)", Type::JSON),
            ("MAP(VARCHAR, INTEGER)", Type::JSON),
            ("ENUM('a', 'b')", Type::TEXT),
            ("BIT", Type::TEXT),
        ] {
            assert_eq!(PgColumn::of_duckdb(duck).pg_type(), pg, "{duck}");
        }
    }

    #[test]
    fn a_value_that_does_not_fit_travels_as_text() {
        assert!(matches!(
            cell(&Value::Int(70_000), &PgColumn::Int2),
            Cell::Text(_)
        ));
        assert!(matches!(
            cell(&Value::Int(7), &PgColumn::Int2),
            Cell::I16(7)
        ));
        assert!(matches!(
            cell(&Value::UInt(u64::MAX), &PgColumn::Int8),
            Cell::Text(_)
        ));
    }
}

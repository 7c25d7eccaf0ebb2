//! Parameter values a Flight SQL client binds to a prepared statement
//! (`DoPut` of `CommandPreparedStatementQuery`): one Arrow row, column `i`
//! the value of `$i+1`, read into the query path's typed [`Value`]s, which
//! the engine binds as values, never as SQL text.
//!
//! Owns the Arrow types this door takes as parameters and the refusal of
//! the rest, with a message naming the column and its type. It never writes
//! a value into a statement.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveTime};
use client::Value;

/// Most parameters one statement may take.
pub const MAX_PARAMETERS: usize = 1024;

/// The values of a parameter batch's only row (no row: no parameters).
pub fn values(batches: &[RecordBatch]) -> Result<Vec<Value>, String> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    if rows > 1 {
        return Err(format!(
            "{rows} rows of parameters were bound: a query takes one row of parameters per execution"
        ));
    }
    if batch.num_columns() > MAX_PARAMETERS {
        return Err(format!(
            "{} parameters: at most {MAX_PARAMETERS}",
            batch.num_columns()
        ));
    }
    let schema = batch.schema();
    batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            value(c.as_ref(), 0).ok_or_else(|| {
                format!(
                    "parameter {:?} has type {}, which this gateway cannot bind: cast it to a \
                     number, string, boolean, date, time, timestamp or binary",
                    f.name(),
                    f.data_type()
                )
            })
        })
        .collect()
}

fn micros(unit: &TimeUnit, v: i64) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v / 1_000,
    }
}

fn time_of_day(us: i64) -> Option<NaiveTime> {
    NaiveTime::from_num_seconds_from_midnight_opt(
        u32::try_from(us / 1_000_000).ok()?,
        u32::try_from((us % 1_000_000) * 1_000).ok()?,
    )
}

/// Row `i` of `a`; `None` for a type this door does not bind.
fn value(a: &dyn Array, i: usize) -> Option<Value> {
    if a.is_null(i) {
        return Some(Value::Null);
    }
    Some(match a.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
        DataType::Int8 => Value::Int(a.as_primitive::<Int8Type>().value(i).into()),
        DataType::Int16 => Value::Int(a.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int32 => Value::Int(a.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int64 => Value::Int(a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => Value::UInt(a.as_primitive::<UInt8Type>().value(i).into()),
        DataType::UInt16 => Value::UInt(a.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt32 => Value::UInt(a.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt64 => Value::UInt(a.as_primitive::<UInt64Type>().value(i)),
        DataType::Float16 => Value::Float(a.as_primitive::<Float16Type>().value(i).to_f64()),
        DataType::Float32 => Value::Float(a.as_primitive::<Float32Type>().value(i).into()),
        DataType::Float64 => Value::Float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Decimal128(_, scale) => Value::Decimal(Decimal128Type::format_decimal(
            a.as_primitive::<Decimal128Type>().value(i),
            38,
            *scale,
        )),
        DataType::Utf8 => Value::Text(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::Text(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::Text(a.as_string_view().value(i).to_string()),
        DataType::Binary => Value::Bytes(a.as_binary::<i32>().value(i).to_vec()),
        DataType::LargeBinary => Value::Bytes(a.as_binary::<i64>().value(i).to_vec()),
        DataType::BinaryView => Value::Bytes(a.as_binary_view().value(i).to_vec()),
        DataType::Date32 => {
            let days = a.as_primitive::<Date32Type>().value(i);
            Value::Date(NaiveDate::from_num_days_from_ce_opt(
                days.checked_add(719_163)?,
            )?)
        }
        DataType::Date64 => {
            let ms = a.as_primitive::<Date64Type>().value(i);
            Value::Date(DateTime::from_timestamp_millis(ms)?.date_naive())
        }
        DataType::Time32(unit) => {
            let v: i64 = match unit {
                TimeUnit::Second => a.as_primitive::<Time32SecondType>().value(i).into(),
                _ => a.as_primitive::<Time32MillisecondType>().value(i).into(),
            };
            Value::Time(time_of_day(micros(unit, v))?)
        }
        DataType::Time64(unit) => {
            let v = match unit {
                TimeUnit::Microsecond => a.as_primitive::<Time64MicrosecondType>().value(i),
                _ => a.as_primitive::<Time64NanosecondType>().value(i),
            };
            Value::Time(time_of_day(micros(unit, v))?)
        }
        DataType::Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i),
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i),
            };
            let t = DateTime::from_timestamp_micros(micros(unit, v))?;
            if tz.is_some() {
                Value::TimestampTz(t)
            } else {
                Value::Timestamp(t.naive_utc())
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray, StructArray};
    use std::sync::Arc;

    #[test]
    fn one_row_of_values_and_clear_refusals() {
        let b = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![Some(7)])) as _),
            ("b", Arc::new(StringArray::from(vec![None::<&str>])) as _),
        ])
        .unwrap();
        assert_eq!(
            values(std::slice::from_ref(&b)).unwrap(),
            vec![Value::Int(7), Value::Null]
        );
        assert_eq!(values(&[]).unwrap(), Vec::<Value>::new());
        assert!(values(&[b.clone(), b]).unwrap_err().contains("one row"));
        let s = StructArray::from(vec![(
            Arc::new(arrow_schema::Field::new("x", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![1])) as _,
        )]);
        let b = RecordBatch::try_from_iter(vec![("s", Arc::new(s) as _)]).unwrap();
        assert!(values(&[b]).unwrap_err().contains("cannot bind"));
    }
}

//! Rows to JSON bytes, written straight from the typed values (no
//! intermediate JSON tree for the common types), in the agent's value forms
//! (`client::Value::to_json`).
//!
//! Owns only encoding; never fails on a value (a float that is not finite is a
//! string, as the agent writes it).

use client::{Row, Value};

/// Appends one value.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa_i64(*i).as_bytes()),
        Value::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Value::Text(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, &other.to_json());
        }
    }
}

fn itoa_i64(i: i64) -> String {
    i.to_string()
}

/// Appends rows as JSON arrays separated by commas; `first` says whether a
/// comma is needed before the first row.
pub fn write_rows(out: &mut Vec<u8>, rows: &[Row], mut first: bool) {
    for r in rows {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'[');
        for (i, v) in r.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_value(out, v);
        }
        out.push(b']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_the_agent_writes_them() {
        let mut out = Vec::new();
        write_rows(
            &mut out,
            &[
                vec![Value::Int(-3), Value::Text("a\"b".into()), Value::Null],
                vec![
                    Value::Float(f64::NAN),
                    Value::Bool(true),
                    Value::HugeInt(1 << 70),
                ],
            ],
            true,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[-3,"a\"b",null],["NaN",true,"1180591620717411303424"]"#
        );
    }
}

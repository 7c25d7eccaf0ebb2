//! The JSON encoder: DuckDB data chunks straight into a [`QueryResult`] arena.
//!
//! Owns reading DuckDB's vectors (data buffers, validity bitmaps, list / array /
//! struct children) and writing each row as a JSON array into the arena, with
//! the result-size limit checked per row. Runs only on a shard's worker
//! thread; it never touches shard state.

use std::collections::HashSet;

use crate::duckdb::{self, DbError, LogicalType, QueryOutput, Vector};
use crate::json;
use crate::result::{QueryResult, ResultBuilder, TooLarge, PAD};
use crate::types::{kind_of, type_name, Kind, Phys};

/// Why encoding stopped.
#[derive(Debug)]
pub enum EncodeError {
    /// DuckDB failed (or was interrupted) while producing chunks.
    Db(DbError),
    /// The arena passed the configured limit.
    TooLarge,
    /// A column has a type without a JSON form here.
    Unsupported { column: String, type_name: String },
}

/// A result's column heads, read once from DuckDB for either encoding.
pub(crate) struct ColumnHeads {
    /// The column names as a JSON array (the answer's `columns`).
    pub json: Vec<u8>,
    pub names: Vec<String>,
    pub types: Vec<LogicalType>,
    /// DuckDB's type names (the answer's `column_types`).
    pub type_names: Vec<String>,
}

pub(crate) fn column_heads(out: &mut QueryOutput, keywords: &HashSet<String>) -> ColumnHeads {
    let ncols = out.column_count();
    let mut heads = ColumnHeads {
        json: Vec::with_capacity(2 + ncols * 8),
        names: Vec::with_capacity(ncols),
        types: Vec::with_capacity(ncols),
        type_names: Vec::with_capacity(ncols),
    };
    heads.json.push(b'[');
    for c in 0..ncols {
        if c > 0 {
            heads.json.push(b',');
        }
        let name = out.column_name(c);
        json::write_str_checked(&mut heads.json, name.as_bytes());
        let t = out.column_type(c);
        heads.type_names.push(type_name(&t, keywords));
        heads.types.push(t);
        heads.names.push(name);
    }
    heads.json.push(b']');
    heads
}

/// Encodes a whole result. `limit` = 0 means unlimited.
pub fn encode(
    out: &mut QueryOutput,
    limit: usize,
    keywords: &HashSet<String>,
) -> Result<QueryResult, EncodeError> {
    let heads = column_heads(out, keywords);
    let mut kinds = Vec::with_capacity(heads.types.len());
    for (c, t) in heads.types.iter().enumerate() {
        let kind = kind_of(t);
        if kind.unsupported().is_some() {
            return Err(EncodeError::Unsupported {
                column: heads.names[c].clone(),
                type_name: heads.type_names[c].clone(),
            });
        }
        kinds.push(kind);
    }

    let total_rows = out.row_count_hint();
    let mut b = ResultBuilder::new(limit);
    let mut rows_done = 0;
    while let Some(chunk) = out.next_chunk().map_err(EncodeError::Db)? {
        let len = chunk.len();
        let cols: Vec<Col<'_>> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| Col::new(chunk.vector(i), k))
            .collect();
        for row in 0..len {
            write_row(&mut b, &kinds, &cols, row).map_err(|_| EncodeError::TooLarge)?;
        }
        if b.over_limit() {
            return Err(EncodeError::TooLarge);
        }
        rows_done += len;
        b.reserve_for(total_rows, rows_done);
    }
    Ok(b.finish(heads.json, heads.type_names))
}

/// Reads a result to its end without keeping anything (a statement whose
/// rows are not the answer still has to complete).
pub fn drain(out: &mut QueryOutput) -> Result<(), DbError> {
    while out.next_chunk()?.is_some() {}
    Ok(())
}

#[inline]
fn write_row(
    b: &mut ResultBuilder,
    kinds: &[Kind],
    cols: &[Col<'_>],
    row: usize,
) -> Result<(), TooLarge> {
    b.room(PAD)?;
    b.rows.push(b'[');
    for (i, (k, col)) in kinds.iter().zip(cols).enumerate() {
        if i > 0 {
            b.rows.push(b',');
        }
        write_value(b, k, col, row)?;
    }
    b.rows.push(b']');
    b.end_row()
}

/// A vector's buffers, resolved once per chunk, with its children.
struct Col<'c> {
    data: *const u8,
    validity: *const u64,
    children: Vec<Col<'c>>,
    _v: std::marker::PhantomData<Vector<'c>>,
}

impl<'c> Col<'c> {
    fn new(v: Vector<'c>, kind: &Kind) -> Col<'c> {
        let children = match kind {
            Kind::List(k) => vec![Col::new(v.list_child(), k)],
            Kind::Array(k, _) => vec![Col::new(v.array_child(), k)],
            Kind::Struct(fields) => fields
                .iter()
                .enumerate()
                .map(|(i, (_, k))| Col::new(v.struct_child(i), k))
                .collect(),
            Kind::Map(kk, vk) => {
                let entries = v.list_child();
                vec![
                    Col::new(entries.struct_child(0), kk),
                    Col::new(entries.struct_child(1), vk),
                ]
            }
            Kind::Union(members) => {
                // Child 0 is the UTINYINT tag; member i is child i + 1.
                let mut c = vec![Col::new(v.struct_child(0), &Kind::U8)];
                c.extend(
                    members
                        .iter()
                        .enumerate()
                        .map(|(i, (_, k))| Col::new(v.struct_child(i + 1), k)),
                );
                c
            }
            _ => Vec::new(),
        };
        Col {
            data: v.data(),
            validity: v.validity(),
            children,
            _v: std::marker::PhantomData,
        }
    }

    #[inline]
    fn valid(&self, row: usize) -> bool {
        if self.validity.is_null() {
            return true;
        }
        // SAFETY: DuckDB's validity mask has one bit per row of the vector, and
        // `row` is within the vector (chunk row, or an offset DuckDB gave us).
        unsafe { *self.validity.add(row / 64) >> (row % 64) & 1 == 1 }
    }

    /// Reads element `row` as `T`.
    ///
    /// # Safety
    /// `T` is the physical type DuckDB stores for this vector's logical type,
    /// and `row` is within the vector.
    #[inline]
    unsafe fn get<T: Copy>(&self, row: usize) -> T {
        // SAFETY: caller contract; DuckDB aligns vector buffers for their type,
        // but read_unaligned costs nothing extra on x86 and removes the assumption.
        unsafe { (self.data as *const T).add(row).read_unaligned() }
    }

    /// # Safety
    /// This is a HUGEINT-backed vector and `row` is within it.
    #[inline]
    unsafe fn i128_at(&self, row: usize) -> i128 {
        // SAFETY: hugeint_t is {lower: u64, upper: i64}, 16 bytes (caller contract).
        let (lower, upper): (u64, i64) =
            unsafe { (self.get::<u64>(row * 2), self.get::<i64>(row * 2 + 1)) };
        ((upper as i128) << 64) | lower as i128
    }

    /// # Safety
    /// A string-backed vector (VARCHAR/BLOB/BIT), valid `row` within it.
    #[inline]
    unsafe fn bytes(&self, row: usize) -> &'c [u8] {
        // SAFETY: caller contract; the chunk outlives 'c.
        unsafe { duckdb::string_at(self.data, row) }
    }

    /// # Safety
    /// A LIST/MAP vector and `row` within it.
    #[inline]
    unsafe fn list_entry(&self, row: usize) -> (usize, usize) {
        // SAFETY: list_entry_t is {offset: u64, length: u64} (caller contract).
        unsafe {
            (
                self.get::<u64>(row * 2) as usize,
                self.get::<u64>(row * 2 + 1) as usize,
            )
        }
    }
}

#[inline]
fn phys_int(col: &Col<'_>, phys: Phys, row: usize) -> i128 {
    // SAFETY: `phys` is the storage type DuckDB reported for this DECIMAL/ENUM
    // column, and row is within the vector.
    unsafe {
        match phys {
            Phys::I16 => col.get::<i16>(row) as i128,
            Phys::I32 => col.get::<i32>(row) as i128,
            Phys::I64 => col.get::<i64>(row) as i128,
            Phys::I128 => col.i128_at(row),
            Phys::U8 => col.get::<u8>(row) as i128,
            Phys::U16 => col.get::<u16>(row) as i128,
            Phys::U32 => col.get::<u32>(row) as i128,
        }
    }
}

/// Writes one value (or `null`) of `col` at `row`, or stops with `TooLarge`
/// before writing a value that would pass the limit: fixed-size values check
/// the arena's length first (they fit in the spare [`PAD`]); strings, blobs,
/// bits, enum labels and key names check their exact encoded size (a
/// string's worst case, 6 bytes per byte, first: the exact size is counted
/// only when the worst case does not fit).
fn write_value(
    b: &mut ResultBuilder,
    kind: &Kind,
    col: &Col<'_>,
    row: usize,
) -> Result<(), TooLarge> {
    if b.over_limit() {
        return Err(TooLarge);
    }
    b.room(PAD)?;
    if !col.valid(row) {
        b.rows.extend_from_slice(b"null");
        return Ok(());
    }
    // SAFETY (all reads below): `kind` was derived from this column's logical
    // type, so each arm reads the physical type DuckDB stores for it, and `row`
    // is a row of this vector (a chunk row, or a child index DuckDB produced).
    unsafe {
        match kind {
            Kind::Null => b.rows.extend_from_slice(b"null"),
            Kind::Bool => b.rows.extend_from_slice(if col.get::<u8>(row) != 0 {
                b"true"
            } else {
                b"false"
            }),
            Kind::I8 => json::write_int(&mut b.rows, col.get::<i8>(row)),
            Kind::I16 => json::write_int(&mut b.rows, col.get::<i16>(row)),
            Kind::I32 => json::write_int(&mut b.rows, col.get::<i32>(row)),
            Kind::I64 => json::write_int(&mut b.rows, col.get::<i64>(row)),
            Kind::U8 => json::write_int(&mut b.rows, col.get::<u8>(row)),
            Kind::U16 => json::write_int(&mut b.rows, col.get::<u16>(row)),
            Kind::U32 => json::write_int(&mut b.rows, col.get::<u32>(row)),
            Kind::U64 => json::write_int(&mut b.rows, col.get::<u64>(row)),
            Kind::I128 => json::write_int(&mut b.rows, col.i128_at(row)),
            Kind::U128 => {
                let (lower, upper) = (col.get::<u64>(row * 2), col.get::<u64>(row * 2 + 1));
                json::write_int(&mut b.rows, ((upper as u128) << 64) | lower as u128)
            }
            Kind::F32 => json::write_f32(&mut b.rows, col.get::<f32>(row)),
            Kind::F64 => json::write_f64(&mut b.rows, col.get::<f64>(row)),
            Kind::Decimal { scale, phys } => {
                json::write_decimal(&mut b.rows, phys_int(col, *phys, row), *scale)
            }
            Kind::Varchar => {
                let s = col.bytes(row);
                if b.fits(json::str_worst_len(s.len())).is_err() {
                    b.fits(json::str_len_checked(s))?;
                }
                json::write_str_checked(&mut b.rows, s)
            }
            Kind::Blob => {
                let s = col.bytes(row);
                b.fits(json::base64_len(s.len()))?;
                json::write_base64(&mut b.rows, s)
            }
            Kind::Bit => {
                let s = col.bytes(row);
                b.fits(json::bit_len(s))?;
                json::write_bit(&mut b.rows, s)
            }
            Kind::Date => json::write_date(&mut b.rows, col.get::<i32>(row)),
            Kind::Time => json::write_time(&mut b.rows, col.get::<i64>(row), 1_000_000, 6),
            Kind::TimeNs => json::write_time(&mut b.rows, col.get::<i64>(row), 1_000_000_000, 9),
            Kind::TimeTz => json::write_time_tz(&mut b.rows, col.get::<u64>(row)),
            Kind::Timestamp {
                per_sec,
                digits,
                utc,
            } => json::write_timestamp(&mut b.rows, col.get::<i64>(row), *per_sec, *digits, *utc),
            Kind::Interval => {
                // interval_t is {months: i32, days: i32, micros: i64}: 16 bytes.
                let base = row * 2;
                let md = col.get::<u64>(base);
                json::write_interval(
                    &mut b.rows,
                    md as u32 as i32,
                    (md >> 32) as u32 as i32,
                    col.get::<i64>(base + 1),
                )
            }
            Kind::Uuid => json::write_uuid(
                &mut b.rows,
                col.get::<u64>(row * 2),
                col.get::<i64>(row * 2 + 1),
            ),
            Kind::Enum { phys, labels } => {
                let idx = phys_int(col, *phys, row) as usize;
                match labels.get(idx) {
                    Some(l) => {
                        b.fits(l.len())?;
                        b.rows.extend_from_slice(l)
                    }
                    None => b.rows.extend_from_slice(b"null"),
                }
            }
            Kind::List(k) => {
                let (off, len) = col.list_entry(row);
                write_seq(b, k, &col.children[0], off, len)?;
            }
            Kind::Array(k, size) => write_seq(b, k, &col.children[0], row * size, *size)?,
            Kind::Struct(fields) => {
                b.rows.push(b'{');
                for (i, ((key, k), child)) in fields.iter().zip(&col.children).enumerate() {
                    b.fits(key.len() + 1)?;
                    if i > 0 {
                        b.rows.push(b',');
                    }
                    b.rows.extend_from_slice(key);
                    write_value(b, k, child, row)?;
                }
                b.room(PAD)?;
                b.rows.push(b'}');
            }
            Kind::Map(kk, vk) => {
                let (off, len) = col.list_entry(row);
                b.rows.push(b'[');
                for j in off..off + len {
                    b.room(PAD)?;
                    if j > off {
                        b.rows.push(b',');
                    }
                    b.rows.extend_from_slice(b"{\"key\":");
                    write_value(b, kk, &col.children[0], j)?;
                    b.room(PAD)?;
                    b.rows.extend_from_slice(b",\"value\":");
                    write_value(b, vk, &col.children[1], j)?;
                    b.room(PAD)?;
                    b.rows.push(b'}');
                }
                b.room(PAD)?;
                b.rows.push(b']');
            }
            Kind::Union(members) => {
                let tag = col.children[0].get::<u8>(row) as usize;
                match members.get(tag) {
                    Some((key, k)) => {
                        b.fits(key.len() + 1)?;
                        b.rows.push(b'{');
                        b.rows.extend_from_slice(key);
                        write_value(b, k, &col.children[tag + 1], row)?;
                        b.room(PAD)?;
                        b.rows.push(b'}');
                    }
                    None => b.rows.extend_from_slice(b"null"),
                }
            }
            // Rejected before any row is read (see `encode`).
            Kind::Unsupported(_) => b.rows.extend_from_slice(b"null"),
        }
    }
    Ok(())
}

fn write_seq(
    b: &mut ResultBuilder,
    kind: &Kind,
    child: &Col<'_>,
    off: usize,
    len: usize,
) -> Result<(), TooLarge> {
    b.rows.push(b'[');
    for j in off..off + len {
        if j > off {
            b.room(PAD)?;
            b.rows.push(b',');
        }
        write_value(b, kind, child, j)?;
    }
    b.room(PAD)?;
    b.rows.push(b']');
    Ok(())
}

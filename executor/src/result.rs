//! The encoded result arena: JSON row bytes plus a row index, or an Arrow
//! result (`arrow.rs`) for a job that asked for Arrow.
//!
//! Owns [`QueryResult`] (immutable once built, shared by `Arc`) and its
//! JSON builder. Rows are stored as `row,row,...,` — each row's JSON array followed
//! by a comma — so any page `[a, b)` is one contiguous slice and writing it is
//! one `memcpy` plus the brackets. The row index ([`RowIndex`]) costs about
//! 1.1 bytes per row. It never re-encodes and never calls DuckDB.

use std::ops::Range;
use std::sync::Arc;

use crate::arrow::{ArrowResult, ResultFormat};

/// Where each row starts in the arena, in about 1.1 bytes per row: a row's
/// length in one byte (255: the length is in `long`), and the start of every
/// [`CHECKPOINT_EVERY`]th row in full. A row's start is its checkpoint plus
/// the lengths after it (at most 63 bytes summed). Plain `u32` offsets cost 4
/// bytes per row: 18% on top of the JSON of a typical two-column row, which
/// the retained-memory goal (1.3 resident bytes per JSON byte) cannot afford.
#[derive(Debug)]
struct RowIndex {
    /// `lens[i]`: row i's length in bytes, or `LONG` when it is 255 or more.
    lens: Vec<u8>,
    /// (row, length) of each row of `LONG` length, by row.
    long: Vec<(usize, usize)>,
    /// `checkpoints[k]`: start of row `k * CHECKPOINT_EVERY`.
    checkpoints: Vec<usize>,
    /// End of the last row (the arena's length).
    end: usize,
}

/// Rows per checkpoint of a [`RowIndex`].
const CHECKPOINT_EVERY: usize = 64;
/// The length byte of a row whose length is in [`RowIndex::long`].
const LONG: u8 = u8::MAX;

impl RowIndex {
    fn new() -> RowIndex {
        RowIndex {
            lens: Vec::new(),
            long: Vec::new(),
            checkpoints: Vec::new(),
            end: 0,
        }
    }

    /// Rows indexed.
    fn rows(&self) -> usize {
        self.lens.len()
    }

    fn len_of(&self, row: usize) -> usize {
        match self.lens[row] {
            LONG => {
                let at = self
                    .long
                    .binary_search_by_key(&row, |&(r, _)| r)
                    .expect("a long row is recorded");
                self.long[at].1
            }
            n => n as usize,
        }
    }

    /// Start of row `i` in the arena; `i == rows()` gives the end.
    fn start(&self, i: usize) -> usize {
        if i >= self.rows() {
            return self.end;
        }
        let k = i / CHECKPOINT_EVERY;
        let mut at = self.checkpoints[k];
        for row in k * CHECKPOINT_EVERY..i {
            at += self.len_of(row);
        }
        at
    }

    /// Records the next row, which ends at `end` (it starts where the
    /// previous one ended).
    fn push(&mut self, end: usize) {
        let row = self.rows();
        if row.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoints.push(self.end);
        }
        let len = end - self.end;
        if len >= LONG as usize {
            self.lens.push(LONG);
            self.long.push((row, len));
        } else {
            self.lens.push(len as u8);
        }
        self.end = end;
    }

    fn reserve_rows(&mut self, total_rows: usize) {
        if self.lens.capacity() < total_rows {
            let _ = self.lens.try_reserve_exact(total_rows - self.lens.len());
            let checkpoints = total_rows.div_ceil(CHECKPOINT_EVERY);
            let _ = self
                .checkpoints
                .try_reserve_exact(checkpoints.saturating_sub(self.checkpoints.len()));
        }
    }

    fn heap_bytes(&self) -> usize {
        self.lens.capacity()
            + self.long.capacity() * std::mem::size_of::<(usize, usize)>()
            + self.checkpoints.capacity() * std::mem::size_of::<usize>()
    }

    fn shrink(&mut self) {
        self.lens.shrink_to_fit();
        self.long.shrink_to_fit();
        self.checkpoints.shrink_to_fit();
    }
}

/// A statement's result, encoded to JSON once.
#[derive(Debug)]
pub struct QueryResult {
    columns_json: Box<[u8]>,
    column_types_json: Box<[u8]>,
    column_types: Box<[String]>,
    /// `row,row,...,` (every row followed by one comma); empty for Arrow.
    rows: Vec<u8>,
    /// Where each row starts in `rows`.
    index: RowIndex,
    /// The rows as Arrow, when the job asked for Arrow (then `rows` is empty).
    arrow: Option<Box<ArrowResult>>,
}

impl QueryResult {
    /// Column names as a JSON array, e.g. `["id","name"]`.
    pub fn columns_json(&self) -> &[u8] {
        &self.columns_json
    }

    /// DuckDB's type names as a JSON array, e.g. `["BIGINT","VARCHAR"]`.
    pub fn column_types_json(&self) -> &[u8] {
        &self.column_types_json
    }

    /// DuckDB's type names, one per column.
    pub fn column_types(&self) -> &[String] {
        &self.column_types
    }

    pub fn column_count(&self) -> usize {
        self.column_types.len()
    }

    pub fn row_count(&self) -> usize {
        match &self.arrow {
            Some(a) => a.row_count(),
            None => self.index.rows(),
        }
    }

    /// The Arrow rows of a job that asked for Arrow.
    pub fn arrow(&self) -> Option<&ArrowResult> {
        self.arrow.as_deref()
    }

    pub fn format(&self) -> ResultFormat {
        if self.arrow.is_some() {
            ResultFormat::Arrow
        } else {
            ResultFormat::Json
        }
    }

    /// An Arrow result with its column metadata.
    pub(crate) fn from_arrow(
        columns_json: Vec<u8>,
        column_types: Vec<String>,
        arrow: ArrowResult,
    ) -> QueryResult {
        QueryResult {
            columns_json: columns_json.into_boxed_slice(),
            column_types_json: types_json(&column_types),
            column_types: column_types.into_boxed_slice(),
            rows: Vec::new(),
            index: RowIndex::new(),
            arrow: Some(Box::new(arrow)),
        }
    }

    /// Appends `[row,row,...]` for the rows in `range` (clamped to the result).
    pub fn write_rows(&self, range: Range<usize>, out: &mut Vec<u8>) {
        let n = self.row_count();
        let end = range.end.min(n);
        let start = range.start.min(end);
        out.push(b'[');
        if start < end {
            let a = self.index.start(start);
            // Drop the comma that follows the last row of the page.
            let b = self.index.start(end) - 1;
            out.extend_from_slice(&self.rows[a..b]);
        }
        out.push(b']');
    }

    /// The encoded rows in `range` (clamped to the result) as they sit in
    /// the arena: `row,row,...,row`, without brackets and without the comma
    /// after the last row; empty for an empty range. Borrowed, never copied,
    /// so a response can send it straight from the shared result.
    pub fn rows_slice(&self, range: Range<usize>) -> &[u8] {
        let n = self.row_count();
        let end = range.end.min(n);
        let start = range.start.min(end);
        if start < end {
            &self.rows[self.index.start(start)..self.index.start(end) - 1]
        } else {
            &[]
        }
    }

    /// Bytes `write_rows(range, ..)` appends, without writing them.
    pub fn rows_json_len(&self, range: Range<usize>) -> usize {
        let n = self.row_count();
        let end = range.end.min(n);
        let start = range.start.min(end);
        if start < end {
            2 + self.index.start(end) - 1 - self.index.start(start)
        } else {
            2
        }
    }

    /// Bytes the rows take encoded: JSON (all rows, with separators), or
    /// the whole Arrow IPC stream.
    pub fn encoded_bytes(&self) -> usize {
        match &self.arrow {
            Some(a) => a.ipc_bytes(),
            None => self.rows.len(),
        }
    }

    /// Heap bytes this result keeps alive (rows, row index, column metadata).
    pub fn retained_bytes(&self) -> usize {
        self.rows.capacity()
            + self.index.heap_bytes()
            + self.columns_json.len()
            + self.column_types_json.len()
            + self
                .column_types
                .iter()
                .map(|t| t.capacity() + 24)
                .sum::<usize>()
            + std::mem::size_of::<Self>()
            + self.arrow.as_ref().map_or(0, |a| a.retained_bytes())
    }
}

/// A slice of a result: rows `offset..end` of `result`.
#[derive(Debug, Clone)]
pub struct Page {
    pub result: Arc<QueryResult>,
    pub offset: usize,
    pub end: usize,
}

impl Page {
    /// True when rows remain after this page (`next_page_token` is due).
    pub fn has_more(&self) -> bool {
        self.end < self.result.row_count()
    }

    /// Appends this page's rows as a JSON array.
    pub fn write_rows(&self, out: &mut Vec<u8>) {
        self.result.write_rows(self.offset..self.end, out);
    }
}

/// Builds a [`QueryResult`] row by row; used by the encoder on the worker.
///
/// The limit is a real bound on the arena: the encoder asks for room
/// ([`ResultBuilder::fits`]) before it writes any value whose size is not
/// small and fixed, with the value's exact encoded size, so a value that would
/// pass the limit is never written; fixed-size values and punctuation are
/// covered by [`PAD`] bytes that every request for room leaves spare.
pub(crate) struct ResultBuilder {
    pub rows: Vec<u8>,
    index: RowIndex,
    limit: usize,
}

/// The arena would pass `max_result_bytes`.
#[derive(Debug)]
pub(crate) struct TooLarge;

/// Spare capacity every request for room leaves, for fixed-size values (the
/// longest, an INTERVAL, is 75 bytes) and the punctuation between values.
pub(crate) const PAD: usize = 128;

/// An arena that must grow past this size while under a limit reserves the
/// whole limit at once (address space only: pages it never writes cost no
/// memory), so it never moves again. A move copies the arena into a new
/// allocation and holds both at once: twice the arena at its largest, which
/// would put the real peak of an over-limit result at twice the limit.
const RESERVE_LIMIT_ABOVE: usize = 4 << 20;

impl ResultBuilder {
    /// `limit` = 0 means unlimited.
    pub fn new(limit: usize) -> Self {
        ResultBuilder {
            rows: Vec::new(),
            index: RowIndex::new(),
            limit: if limit == 0 { usize::MAX } else { limit },
        }
    }

    /// Checks that `bytes` more fit under the limit and makes room for them
    /// (plus [`PAD`]). An allocation failure counts as too large: the arena
    /// never aborts the process.
    #[inline]
    pub fn fits(&mut self, bytes: usize) -> Result<(), TooLarge> {
        let end = self.rows.len().saturating_add(bytes);
        if end > self.limit {
            return Err(TooLarge);
        }
        self.room(bytes.saturating_add(PAD))
    }

    /// Makes room for `bytes` more without checking the limit (the caller
    /// checked it, or `bytes` is small and fixed).
    #[inline]
    pub fn room(&mut self, bytes: usize) -> Result<(), TooLarge> {
        if self.rows.capacity() - self.rows.len() >= bytes {
            return Ok(());
        }
        self.grow(bytes)
    }

    #[cold]
    fn grow(&mut self, bytes: usize) -> Result<(), TooLarge> {
        let len = self.rows.len();
        let need = len.saturating_add(bytes);
        if self.limit != usize::MAX && need > RESERVE_LIMIT_ABOVE {
            let whole = self.limit.saturating_add(2 * PAD);
            if whole >= need && self.rows.try_reserve_exact(whole - len).is_ok() {
                return Ok(());
            }
        }
        // Small arenas (and unlimited ones) grow the usual way: doubling.
        self.rows.try_reserve(bytes).map_err(|_| TooLarge)
    }

    /// Closes the row the encoder just wrote into `rows` (which must end in `]`).
    #[inline]
    pub fn end_row(&mut self) -> Result<(), TooLarge> {
        self.room(1)?;
        self.rows.push(b',');
        // The limit counts what the client would receive; row index is
        // bookkeeping and are not part of it.
        if self.rows.len() > self.limit {
            return Err(TooLarge);
        }
        self.index.push(self.rows.len());
        Ok(())
    }

    /// Sizes the arena for `total_rows` (known for a materialized result,
    /// 0 for a streaming one) from the bytes per row seen so far (called after
    /// each chunk), growing it in exact steps instead of doubling, so a large
    /// result does not keep up to half its size as empty capacity or pay for
    /// repeated copies. Never beyond the size limit.
    pub fn reserve_for(&mut self, total_rows: usize, rows_done: usize) {
        if rows_done == 0 || total_rows <= rows_done {
            return;
        }
        let want = (self.rows.len() as u128 * total_rows as u128 / rows_done as u128) as usize;
        let want = want
            .saturating_add(want / 16)
            .min(self.limit.saturating_add(2 * PAD));
        if want > self.rows.capacity() {
            // Best effort: a failure here only means growing later.
            let _ = self.rows.try_reserve_exact(want - self.rows.len());
        }
        self.index.reserve_rows(total_rows);
    }

    /// Checked between chunks so a single huge chunk cannot run far past the limit.
    pub fn over_limit(&self) -> bool {
        self.rows.len() > self.limit
    }

    pub fn finish(mut self, columns_json: Vec<u8>, column_types: Vec<String>) -> QueryResult {
        self.rows.shrink_to_fit();
        self.index.shrink();
        QueryResult {
            columns_json: columns_json.into_boxed_slice(),
            column_types_json: types_json(&column_types),
            column_types: column_types.into_boxed_slice(),
            rows: self.rows,
            index: self.index,
            arrow: None,
        }
    }
}

/// DuckDB's type names as a JSON array.
fn types_json(column_types: &[String]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(column_types.iter().map(|t| t.len() + 3).sum::<usize>() + 2);
    out.push(b'[');
    for (i, t) in column_types.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        crate::json::write_str(&mut out, t.as_bytes());
    }
    out.push(b']');
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(rows: &[&str]) -> QueryResult {
        let mut b = ResultBuilder::new(0);
        for r in rows {
            b.rows.extend_from_slice(r.as_bytes());
            b.end_row().unwrap();
        }
        b.finish(b"[\"a\"]".to_vec(), vec!["INTEGER".into()])
    }

    #[test]
    fn pages_are_slices_of_the_whole() {
        let r = build(&["[1]", "[22]", "[333]"]);
        assert_eq!(r.row_count(), 3);
        let mut all = Vec::new();
        r.write_rows(0..3, &mut all);
        assert_eq!(all, b"[[1],[22],[333]]");
        for a in 0..=3 {
            for b in a..=4 {
                let mut out = Vec::new();
                r.write_rows(a..b, &mut out);
                assert_eq!(out.len(), r.rows_json_len(a..b));
                let want: Vec<&str> = ["[1]", "[22]", "[333]"][a.min(3)..b.min(3)].to_vec();
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    format!("[{}]", want.join(","))
                );
            }
        }
        assert_eq!(r.column_types_json(), b"[\"INTEGER\"]");
    }

    #[test]
    fn the_row_index_finds_every_row_of_any_length() {
        // Lengths around the one-byte limit, across several checkpoints.
        let rows: Vec<String> = (0..300)
            .map(|i| format!("[\"{}\"]", "x".repeat((i * 37) % 600)))
            .collect();
        let refs: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
        let r = build(&refs);
        assert_eq!(r.row_count(), rows.len());
        for (a, b) in [
            (0, 300),
            (0, 1),
            (63, 65),
            (64, 128),
            (250, 300),
            (299, 300),
            (5, 5),
        ] {
            let want = format!("[{}]", rows[a..b].join(","));
            let mut out = Vec::new();
            r.write_rows(a..b, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{a}..{b}");
            assert_eq!(r.rows_json_len(a..b), want.len());
        }
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(r.rows_slice(i..i + 1), row.as_bytes());
        }
        // About a byte per row of bookkeeping, not four.
        assert!(r.index.heap_bytes() < rows.len() * 2 + 16 * r.index.long.len() + 64);
    }

    #[test]
    fn empty_result_and_limit() {
        let r = build(&[]);
        let mut out = Vec::new();
        r.write_rows(0..10, &mut out);
        assert_eq!(out, b"[]");
        let mut b = ResultBuilder::new(8);
        b.rows.extend_from_slice(b"[1234]");
        assert!(b.end_row().is_ok());
        b.rows.extend_from_slice(b"[5]");
        assert!(b.end_row().is_err());
    }
}

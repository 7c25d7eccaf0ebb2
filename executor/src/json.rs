//! Low-level JSON text writers: strings, integers, decimals, floats, base64,
//! dates and times.
//!
//! Owns the exact text forms the API documents (see README.md, "Value
//! forms"). Every writer appends to a `Vec<u8>` and emits strict RFC 8259
//! JSON: no NaN/Infinity literals, every control character escaped. It knows
//! nothing about DuckDB's vectors.

/// For each byte: 0 = copy as is, otherwise the escape class.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string. `s` must be UTF-8 (callers validate); bytes
/// that need no escaping are copied in runs.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let e = ESCAPE[b as usize];
        if e == 0 {
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        match e {
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]),
            c => out.extend_from_slice(&[b'\\', c]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Appends possibly-invalid UTF-8 as a JSON string; invalid sequences become
/// U+FFFD so the output stays valid JSON. DuckDB guarantees valid UTF-8 for
/// VARCHAR, so the check almost always passes on the fast path.
#[inline]
pub fn write_str_checked(out: &mut Vec<u8>, s: &[u8]) {
    match std::str::from_utf8(s) {
        Ok(_) => write_str(out, s),
        Err(_) => write_str(out, String::from_utf8_lossy(s).as_bytes()),
    }
}

/// The most bytes [`write_str_checked`] can write for `len` input bytes
/// (every byte a control character: `\u00XX`), quotes included.
#[inline]
pub fn str_worst_len(len: usize) -> usize {
    len.saturating_mul(6).saturating_add(2)
}

/// Exactly the bytes [`write_str_checked`] writes for `s`, quotes included.
pub fn str_len_checked(s: &[u8]) -> usize {
    fn escaped(s: &[u8]) -> usize {
        2 + s
            .iter()
            .map(|&b| match ESCAPE[b as usize] {
                0 => 1,
                b'u' => 6,
                _ => 2,
            })
            .sum::<usize>()
    }
    match std::str::from_utf8(s) {
        Ok(_) => escaped(s),
        Err(_) => escaped(String::from_utf8_lossy(s).as_bytes()),
    }
}

/// Exactly the bytes [`write_base64`] writes for `len` input bytes.
#[inline]
pub fn base64_len(len: usize) -> usize {
    len.div_ceil(3).saturating_mul(4).saturating_add(2)
}

/// Exactly the bytes [`write_bit`] writes for DuckDB's BIT bytes `raw`.
#[inline]
pub fn bit_len(raw: &[u8]) -> usize {
    match raw.split_first() {
        Some((&pad, data)) if !data.is_empty() => {
            (data.len().saturating_mul(8) - (pad.min(8) as usize)).saturating_add(2)
        }
        _ => 2,
    }
}

#[inline]
pub fn write_int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A finite float as its shortest round-trip text; NaN and infinities as the
/// strings `"NaN"`, `"Infinity"`, `"-Infinity"` (DuckDB casts those back).
#[inline]
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        write_nonfinite(out, v.is_nan(), v > 0.0);
    }
}

#[inline]
pub fn write_f32(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        write_nonfinite(out, v.is_nan(), v > 0.0);
    }
}

fn write_nonfinite(out: &mut Vec<u8>, nan: bool, positive: bool) {
    out.extend_from_slice(match (nan, positive) {
        (true, _) => b"\"NaN\"",
        (false, true) => b"\"Infinity\"",
        (false, false) => b"\"-Infinity\"",
    });
}

/// An exact decimal: the unscaled integer `v` with `scale` fractional digits,
/// as a JSON number (`-0.05`, `123.450`, `7`).
pub fn write_decimal(out: &mut Vec<u8>, v: i128, scale: u8) {
    if scale == 0 {
        write_int(out, v);
        return;
    }
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(v.unsigned_abs()).as_bytes();
    if v < 0 {
        out.push(b'-');
    }
    let scale = scale as usize;
    if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as a JSON string.
pub fn write_base64(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len().div_ceil(3) * 4 + 2);
    out.push(b'"');
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
        out.extend_from_slice(&[
            B64[(n >> 18) as usize & 63],
            B64[(n >> 12) as usize & 63],
            B64[(n >> 6) as usize & 63],
            B64[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = (a as u32) << 16;
            out.extend_from_slice(&[
                B64[(n >> 18) as usize & 63],
                B64[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = (a as u32) << 16 | (b as u32) << 8;
            out.extend_from_slice(&[
                B64[(n >> 18) as usize & 63],
                B64[(n >> 12) as usize & 63],
                B64[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
    out.push(b'"');
}

/// Civil date (proleptic Gregorian) from days since 1970-01-01.
/// Howard Hinnant's `civil_from_days` algorithm, written out for i64.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn push2(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&[b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]);
}

/// `YYYY-MM-DD` (ISO 8601; years before 1 use astronomical numbering with a
/// sign, e.g. `-0044-03-15`; years above 9999 are written in full).
fn push_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if y < 0 {
        out.push(b'-');
    }
    let ya = y.unsigned_abs();
    if ya < 1000 {
        out.extend(std::iter::repeat_n(
            b'0',
            4 - itoa::Buffer::new().format(ya).len(),
        ));
    }
    write_int(out, ya);
    out.push(b'-');
    push2(out, m);
    out.push(b'-');
    push2(out, d);
}

/// `HH:MM:SS` plus `.fraction` (trailing zeros trimmed) when non-zero.
/// `sub` is the sub-second part in units of 10^-`digits` seconds.
fn push_time(out: &mut Vec<u8>, secs_of_day: u64, sub: u64, digits: usize) {
    push2(out, (secs_of_day / 3600) as u32);
    out.push(b':');
    push2(out, (secs_of_day / 60 % 60) as u32);
    out.push(b':');
    push2(out, (secs_of_day % 60) as u32);
    if sub != 0 {
        let mut buf = [b'0'; 9];
        let mut v = sub;
        for i in (0..digits).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        let mut n = digits;
        while n > 0 && buf[n - 1] == b'0' {
            n -= 1;
        }
        out.push(b'.');
        out.extend_from_slice(&buf[..n]);
    }
}

/// DuckDB's infinite sentinels for DATE (i32::MAX / -i32::MAX).
pub fn write_date(out: &mut Vec<u8>, days: i32) {
    if days == i32::MAX {
        out.extend_from_slice(b"\"infinity\"");
    } else if days == -i32::MAX {
        out.extend_from_slice(b"\"-infinity\"");
    } else {
        out.push(b'"');
        push_date(out, days as i64);
        out.push(b'"');
    }
}

/// TIME (µs since midnight; 24:00:00 allowed) or TIME_NS (ns), as `"HH:MM:SS[.f]"`.
pub fn write_time(out: &mut Vec<u8>, units: i64, per_sec: i64, digits: usize) {
    out.push(b'"');
    let units = units.max(0) as u64;
    let per = per_sec as u64;
    push_time(out, units / per, units % per, digits);
    out.push(b'"');
}

/// TIMETZ: 40 bits of µs since midnight, 24 bits of offset (seconds, stored
/// inverted and biased as DuckDB does), as `"HH:MM:SS[.f]+HH:MM[:SS]"`.
pub fn write_time_tz(out: &mut Vec<u8>, bits: u64) {
    // DuckDB: bits = (micros << 24) | (MAX_OFFSET - offset), MAX_OFFSET = 16*60*60-1.
    const MAX_OFFSET: i64 = 16 * 60 * 60 - 1;
    let micros = (bits >> 24) as i64;
    let offset = MAX_OFFSET - (bits & 0xFF_FFFF) as i64;
    out.push(b'"');
    push_time(
        out,
        (micros / 1_000_000) as u64,
        (micros % 1_000_000) as u64,
        6,
    );
    out.push(if offset < 0 { b'-' } else { b'+' });
    let o = offset.unsigned_abs();
    push2(out, (o / 3600) as u32);
    out.push(b':');
    push2(out, (o / 60 % 60) as u32);
    if !o.is_multiple_of(60) {
        out.push(b':');
        push2(out, (o % 60) as u32);
    }
    out.push(b'"');
}

/// A timestamp of `units` since the epoch (`per_sec` units per second) as
/// `"YYYY-MM-DDTHH:MM:SS[.f]"`, with a trailing `Z` for TIMESTAMPTZ (UTC).
/// DuckDB's ±infinity sentinels (i64::MAX / -i64::MAX) become
/// `"infinity"` / `"-infinity"`.
pub fn write_timestamp(out: &mut Vec<u8>, units: i64, per_sec: i64, digits: usize, utc: bool) {
    if units == i64::MAX {
        out.extend_from_slice(b"\"infinity\"");
        return;
    }
    if units == -i64::MAX {
        out.extend_from_slice(b"\"-infinity\"");
        return;
    }
    let secs = units.div_euclid(per_sec);
    let sub = units.rem_euclid(per_sec) as u64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    out.push(b'"');
    push_date(out, days);
    out.push(b'T');
    push_time(out, sod, sub, digits);
    if utc {
        out.push(b'Z');
    }
    out.push(b'"');
}

/// INTERVAL as `{"months":m,"days":d,"micros":us}`: DuckDB keeps the three
/// parts separate (a month is not a fixed number of days), so this is lossless.
pub fn write_interval(out: &mut Vec<u8>, months: i32, days: i32, micros: i64) {
    out.extend_from_slice(b"{\"months\":");
    write_int(out, months);
    out.extend_from_slice(b",\"days\":");
    write_int(out, days);
    out.extend_from_slice(b",\"micros\":");
    write_int(out, micros);
    out.push(b'}');
}

/// UUID as its canonical lowercase string. DuckDB stores it as a HUGEINT with
/// the top bit flipped (so that ordering matches).
pub fn write_uuid(out: &mut Vec<u8>, lower: u64, upper: i64) {
    let v = (((upper as u64) ^ (1 << 63)) as u128) << 64 | lower as u128;
    let bytes = v.to_be_bytes();
    out.push(b'"');
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
    out.push(b'"');
}

/// BIT as its `"0101..."` string. DuckDB's layout: byte 0 = number of padding
/// bits in the first data byte; data bytes follow, most significant bit first.
pub fn write_bit(out: &mut Vec<u8>, raw: &[u8]) {
    out.push(b'"');
    if let Some((&pad, data)) = raw.split_first() {
        for (i, byte) in data.iter().enumerate() {
            let skip = if i == 0 { pad.min(8) } else { 0 };
            for bit in (0..8 - skip).rev() {
                out.push(if byte >> bit & 1 == 1 { b'1' } else { b'0' });
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn predicted_lengths_are_exact() {
        let cases: &[&[u8]] = &[
            b"",
            b"plain",
            b"q\"b\\n\n\t\x01\x1f\x7f",
            "\u{e9}\u{1F600}".as_bytes(),
            b"bad \xff\xfe utf8",
        ];
        for c in cases {
            let mut v = Vec::new();
            write_str_checked(&mut v, c);
            assert_eq!(v.len(), str_len_checked(c), "{c:?}");
            assert!(v.len() <= str_worst_len(c.len()), "{c:?}");
        }
        for n in 0..10 {
            let data = vec![7u8; n];
            let mut v = Vec::new();
            write_base64(&mut v, &data);
            assert_eq!(v.len(), base64_len(n));
        }
        for raw in [&[][..], &[0u8][..], &[3u8, 0xff][..], &[0u8, 1, 2][..]] {
            let mut v = Vec::new();
            write_bit(&mut v, raw);
            assert_eq!(v.len(), bit_len(raw), "{raw:?}");
        }
    }

    #[test]
    fn strings_escape_exactly_what_json_requires() {
        assert_eq!(
            s(|o| write_str(o, b"a\"b\\c\n\t\x01\x1f\x7f\xc3\xa9")),
            "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f\x7f\u{e9}\""
        );
        assert_eq!(s(|o| write_str_checked(o, b"ok\xff")), "\"ok\u{fffd}\"");
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(s(|o| write_decimal(o, 12345, 2)), "123.45");
        assert_eq!(s(|o| write_decimal(o, -5, 2)), "-0.05");
        assert_eq!(s(|o| write_decimal(o, 0, 3)), "0.000");
        assert_eq!(s(|o| write_decimal(o, -7, 0)), "-7");
        assert_eq!(
            s(|o| write_decimal(o, i128::MIN + 1, 38)),
            format!("-1.{}", &(i128::MAX).to_string()[1..])
        );
    }

    #[test]
    fn floats_never_emit_bare_nonfinite() {
        assert_eq!(s(|o| write_f64(o, f64::NAN)), "\"NaN\"");
        assert_eq!(s(|o| write_f64(o, f64::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(s(|o| write_f32(o, f32::INFINITY)), "\"Infinity\"");
        assert_eq!(s(|o| write_f32(o, 0.1)), "0.1");
        assert_eq!(s(|o| write_f64(o, 1e300)).parse::<f64>().unwrap(), 1e300);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(s(|v| write_base64(v, i.as_bytes())), format!("\"{o}\""));
        }
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(s(|o| write_date(o, 0)), "\"1970-01-01\"");
        assert_eq!(s(|o| write_date(o, 19_723)), "\"2024-01-01\"");
        assert_eq!(s(|o| write_date(o, -719_528)), "\"0000-01-01\"");
        assert_eq!(s(|o| write_date(o, i32::MAX)), "\"infinity\"");
        assert_eq!(
            s(|o| write_time(o, 45_296_500_000, 1_000_000, 6)),
            "\"12:34:56.5\""
        );
        assert_eq!(
            s(|o| write_timestamp(o, -1, 1_000_000, 6, true)),
            "\"1969-12-31T23:59:59.999999Z\""
        );
        assert_eq!(
            s(|o| write_timestamp(o, 1_700_000_000, 1, 0, false)),
            "\"2023-11-14T22:13:20\""
        );
        assert_eq!(
            s(|o| write_interval(o, 14, -3, 5)),
            "{\"months\":14,\"days\":-3,\"micros\":5}"
        );
        assert_eq!(s(|o| write_bit(o, &[3, 0b0001_0110])), "\"10110\"");
    }
}

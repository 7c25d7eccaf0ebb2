//! RFC 3339 UTC timestamps for `completed_at`, formatted by hand (no date crate needed
//! for one function).
//!
//! Output matches Go's `time.RFC3339Nano` in UTC: fraction trimmed of trailing zeros and
//! left out when zero, e.g. "2026-11-26T12:43:00.5Z". Never reads the clock itself.

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `t` as a quoted-free RFC 3339 UTC timestamp (times before 1970 clamp to the epoch).
pub fn write_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
    use std::io::Write;
    let _ = write!(out, "{y:04}-{m:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}");
    if nanos > 0 {
        let mut frac = format!("{nanos:09}");
        while frac.ends_with('0') {
            frac.pop();
        }
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    }
    out.push(b'Z');
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's civil_from_days algorithm).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fmt(secs: u64, nanos: u32) -> String {
        let mut out = Vec::new();
        write_rfc3339(&mut out, UNIX_EPOCH + Duration::new(secs, nanos));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn known_instants() {
        assert_eq!(fmt(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(fmt(1_700_000_000, 500_000_000), "2023-11-14T22:13:20.5Z");
        assert_eq!(
            fmt(1_795_700_580, 123_456_789),
            "2026-11-26T13:43:00.123456789Z"
        );
        assert_eq!(fmt(4_102_444_799, 1_000), "2099-12-31T23:59:59.000001Z");
    }
}

//! RFC 3339 UTC timestamps for `completed_at`.
//!
//! Output matches Go's `time.RFC3339Nano` in UTC: fraction trimmed of trailing zeros and
//! left out when zero, e.g. "2026-11-26T12:43:00.5Z". The calendar arithmetic is the
//! executor's (the one that writes TIMESTAMPTZ values); this module only turns a
//! `SystemTime` into its input. Never reads the clock itself.

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `t` as a quoted RFC 3339 UTC timestamp (times before 1970 clamp to the epoch).
pub fn write_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let nanos = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    // i64 nanoseconds reach the year 2262; later instants clamp there.
    let nanos = i64::try_from(nanos).unwrap_or(i64::MAX - 1);
    executor::json::write_timestamp(out, nanos, 1_000_000_000, 9, true);
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
        assert_eq!(fmt(0, 0), "\"1970-01-01T00:00:00Z\"");
        assert_eq!(fmt(951_782_400, 0), "\"2000-02-29T00:00:00Z\"");
        assert_eq!(
            fmt(1_700_000_000, 500_000_000),
            "\"2023-11-14T22:13:20.5Z\""
        );
        assert_eq!(
            fmt(1_795_700_580, 123_456_789),
            "\"2026-11-26T13:43:00.123456789Z\""
        );
        assert_eq!(fmt(4_102_444_799, 1_000), "\"2099-12-31T23:59:59.000001Z\"");
    }
}

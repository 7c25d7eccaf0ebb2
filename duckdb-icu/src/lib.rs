//! DuckDB's icu extension (time zones, `TIMESTAMPTZ` arithmetic, calendars,
//! collations), linked into the process and registered with the bundled
//! DuckDB as a statically linked extension.
//!
//! Owns [`register`], which every opener of a DuckDB database in the
//! workspace calls before it opens one (the agent's engine, the gateway's
//! local compute and shadow catalog, tests), and [`TimeZone`], the checked
//! name of the extension's `TimeZone` setting that the agent's and the
//! gateway's configurations carry. A database opened after [`register`]
//! loads icu at open, as it loads json and parquet: no file, no download, no
//! `LOAD`, whatever `autoload_known_extensions`, `enable_external_access` or
//! `lock_configuration` say. It never opens a database itself and never
//! loads anything from disk or the network.
//!
//! The extension's C++ is DuckDB's own, vendored as-is in
//! `vendor/duckdb-icu` (where it comes from and why: its README); `build.rs`
//! compiles it against the engine libduckdb-sys bundles and refuses any other
//! DuckDB version.

use std::sync::OnceLock;

// The engine the extension's objects resolve against: named so that rustc
// links libduckdb-sys (and orders it after this crate's library) in every
// binary that calls `register`.
use libduckdb_sys as _;

unsafe extern "C" {
    /// `src/describe.cpp`: `duckdb_register_static_extension` with the icu
    /// extension's describe function. 0 on success.
    fn compute_duckdb_icu_register() -> i32;
}

/// DuckDB refused the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterError;

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // DuckDB keeps the reason and reports it when a database is opened.
        f.write_str(
            "DuckDB refused to register the statically linked icu extension \
             (opening a database reports why)",
        )
    }
}

impl std::error::Error for RegisterError {}

/// Registers the icu extension for every DuckDB database this process opens
/// from now on. Call it before opening one; calls after the first are free
/// and return the first one's outcome. Thread-safe.
pub fn register() -> Result<(), RegisterError> {
    static DONE: OnceLock<Result<(), RegisterError>> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: a C function without arguments that only calls DuckDB's
        // registry, which takes its own lock (safe from any thread, before
        // or while databases are open) and never unwinds: it catches every
        // C++ exception and returns 1 instead.
        match unsafe { compute_duckdb_icu_register() } {
            0 => Ok(()),
            _ => Err(RegisterError),
        }
    })
    .clone()
}

/// A value for icu's `TimeZone` setting (`UTC`, `Europe/Amsterdam`,
/// `America/Argentina/Buenos_Aires`, `Etc/GMT+5`), checked for shape only:
/// 1 to 64 ASCII letters, digits and `/ _ + - : .`. Whether the zone exists
/// is DuckDB's to say when the setting is applied (an unknown zone is
/// refused there, with the nearest names). The shape rules out quotes, so
/// the name is always a plain SQL string literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimeZone(String);

/// A `TimeZone` value of the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTimeZone;

impl std::fmt::Display for BadTimeZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "a time zone name: 1 to 64 ASCII letters, digits and / _ + - : . (e.g. UTC, Europe/Amsterdam)",
        )
    }
}

impl std::error::Error for BadTimeZone {}

impl TimeZone {
    /// UTC: the workspace's default everywhere, so the same SQL gives the
    /// same dates on every engine whatever its host's zone (icu would
    /// otherwise take the host's).
    pub fn utc() -> TimeZone {
        TimeZone("UTC".to_string())
    }

    /// Checks the shape of `name` (surrounding blanks ignored).
    pub fn parse(name: &str) -> Result<TimeZone, BadTimeZone> {
        let name = name.trim();
        let shaped = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-:.".contains(&b));
        if shaped {
            Ok(TimeZone(name.to_string()))
        } else {
            Err(BadTimeZone)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The statement that sets it for every connection of a database, those
    /// already open included (none of them sets its own).
    pub fn set_global_sql(&self) -> String {
        // No quote can occur (see `parse`), so the literal needs no escaping.
        format!("SET GLOBAL TimeZone = '{}'", self.0)
    }
}

impl Default for TimeZone {
    fn default() -> Self {
        TimeZone::utc()
    }
}

impl std::fmt::Display for TimeZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TimeZone {
    type Err = BadTimeZone;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TimeZone::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::{c_char, CStr, CString};
    use std::ptr;

    use libduckdb_sys as ffi;

    /// Runs `sql` on a fresh connection of `db` and returns the first
    /// column of its first row as text ("" when it returns no rows, as a
    /// `SET` does), or DuckDB's error.
    ///
    /// # Safety
    /// `db` is an open database.
    unsafe fn first_value(db: ffi::duckdb_database, sql: &str) -> Result<String, String> {
        let mut conn: ffi::duckdb_connection = ptr::null_mut();
        // SAFETY: open database (caller), out-pointer to a local.
        assert_eq!(
            unsafe { ffi::duckdb_connect(db, &mut conn) },
            ffi::DuckDBSuccess
        );
        let sql = CString::new(sql).unwrap();
        // SAFETY: zeroed is the state duckdb_query expects to fill.
        let mut res: ffi::duckdb_result = unsafe { std::mem::zeroed() };
        // SAFETY: valid connection and NUL-terminated text; `res` is destroyed below.
        let state = unsafe { ffi::duckdb_query(conn, sql.as_ptr(), &mut res) };
        // SAFETY: `res` was filled by duckdb_query (success or not).
        let empty = unsafe {
            ffi::duckdb_column_count(&mut res) == 0 || ffi::duckdb_row_count(&mut res) == 0
        };
        let out = if state == ffi::DuckDBSuccess && empty {
            Ok(String::new())
        } else if state == ffi::DuckDBSuccess {
            // SAFETY: a successful result; DuckDB allocates the text, we free it.
            let p: *mut c_char = unsafe { ffi::duckdb_value_varchar(&mut res, 0, 0) };
            assert!(!p.is_null(), "NULL or no row");
            // SAFETY: a NUL-terminated string DuckDB allocated.
            let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
            // SAFETY: allocated by DuckDB, freed once.
            unsafe { ffi::duckdb_free(p.cast()) };
            Ok(s)
        } else {
            // SAFETY: a failed result carries its error until destroyed.
            let e = unsafe { CStr::from_ptr(ffi::duckdb_result_error(&mut res)) };
            Err(e.to_string_lossy().into_owned())
        };
        // SAFETY: filled by duckdb_query, destroyed once; the connection likewise.
        unsafe {
            ffi::duckdb_destroy_result(&mut res);
            ffi::duckdb_disconnect(&mut conn);
        }
        out
    }

    /// Opens an in-memory database with nothing loaded on demand and, when
    /// `locked`, no external access, the way the agent and the gateway open
    /// theirs.
    fn open(locked: bool) -> ffi::duckdb_database {
        let mut config: ffi::duckdb_config = ptr::null_mut();
        // SAFETY: out-pointer to a local; destroyed below.
        assert_eq!(
            unsafe { ffi::duckdb_create_config(&mut config) },
            ffi::DuckDBSuccess
        );
        for (k, v) in [
            ("autoload_known_extensions", "false"),
            ("autoinstall_known_extensions", "false"),
            (
                "enable_external_access",
                if locked { "false" } else { "true" },
            ),
        ] {
            let (k, v) = (CString::new(k).unwrap(), CString::new(v).unwrap());
            // SAFETY: valid config, NUL-terminated strings outliving the call.
            assert_eq!(
                unsafe { ffi::duckdb_set_config(config, k.as_ptr(), v.as_ptr()) },
                ffi::DuckDBSuccess
            );
        }
        let mut db: ffi::duckdb_database = ptr::null_mut();
        let mut err: *mut c_char = ptr::null_mut();
        // SAFETY: in-memory (null path), valid config, out-pointers to locals.
        let state = unsafe { ffi::duckdb_open_ext(ptr::null(), &mut db, config, &mut err) };
        // SAFETY: created above, destroyed once.
        unsafe { ffi::duckdb_destroy_config(&mut config) };
        assert_eq!(state, ffi::DuckDBSuccess, "open failed");
        db
    }

    #[test]
    fn time_zone_names_are_checked_for_shape() {
        use super::TimeZone;
        for ok in [
            "UTC",
            "Europe/Amsterdam",
            "America/Port-au-Prince",
            "Etc/GMT+5",
            " UTC ",
        ] {
            assert_eq!(TimeZone::parse(ok).unwrap().as_str(), ok.trim());
        }
        for bad in [
            "",
            "   ",
            "UTC'; SET x = 1; --",
            "Europe/Amst erdam",
            "Zürich",
            &"A".repeat(65),
        ] {
            assert!(TimeZone::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(TimeZone::default().as_str(), "UTC");
        assert_eq!(
            TimeZone::parse("Asia/Tokyo").unwrap().set_global_sql(),
            "SET GLOBAL TimeZone = 'Asia/Tokyo'"
        );
    }

    #[test]
    fn a_database_opened_after_register_has_icu_loaded_and_working() {
        super::register().unwrap();
        super::register().unwrap();
        // duckdb_extensions() lists the extension folder too, which needs
        // external access: ask a database that has it.
        let mut open_db = open(false);
        // SAFETY: `open_db` is open until closed right after.
        let listed = unsafe {
            first_value(
                open_db,
                "SELECT loaded::VARCHAR || ' ' || install_mode FROM duckdb_extensions() WHERE extension_name = 'icu'",
            )
        };
        // SAFETY: opened above, closed once.
        unsafe { ffi::duckdb_close(&mut open_db) };
        assert_eq!(listed.unwrap(), "true STATICALLY_LINKED");
        let mut db = open(true);
        // SAFETY: `db` is open until closed at the end of the test.
        let q = |sql: &str| unsafe { first_value(db, sql) };
        assert_eq!(
            q("SELECT current_setting('autoload_known_extensions') OR current_setting('enable_external_access')")
                .unwrap(),
            "false"
        );
        // DuckDB, not the shape check, knows which zones exist.
        let e = q("SET GLOBAL TimeZone = 'Mars/Olympus_Mons'").unwrap_err();
        assert!(e.contains("Mars/Olympus_Mons"), "{e}");
        q(&super::TimeZone::parse("Asia/Tokyo")
            .unwrap()
            .set_global_sql())
        .unwrap();
        assert_eq!(
            q("SELECT current_setting('TimeZone')").unwrap(),
            "Asia/Tokyo"
        );
        assert_eq!(
            q("SELECT TIMESTAMPTZ '2026-01-15 00:00:00+00'::VARCHAR").unwrap(),
            "2026-01-15 09:00:00+09"
        );
        q("SET lock_configuration = true").unwrap();
        // Time zones: Amsterdam is UTC+1 in January and UTC+2 in July.
        assert_eq!(
            q("SELECT (TIMESTAMPTZ '2026-01-15 12:00:00+00' AT TIME ZONE 'Europe/Amsterdam')::VARCHAR")
                .unwrap(),
            "2026-01-15 13:00:00"
        );
        assert_eq!(
            q("SELECT (TIMESTAMPTZ '2026-07-15 12:00:00+00' AT TIME ZONE 'Europe/Amsterdam')::VARCHAR")
                .unwrap(),
            "2026-07-15 14:00:00"
        );
        assert_eq!(q("SELECT current_date = today()").unwrap(), "true");
        // A German collation puts "ä" beside "a", not after "z".
        assert_eq!(
            q("SELECT string_agg(x, ',' ORDER BY x COLLATE de) FROM (VALUES ('z'), ('ä'), ('a')) t(x)")
                .unwrap(),
            "a,ä,z"
        );
        // The configuration stays locked: icu's own settings included.
        assert!(q("SET TimeZone = 'UTC'").is_err());
        // SAFETY: opened above, closed once.
        unsafe { ffi::duckdb_close(&mut db) };
    }
}

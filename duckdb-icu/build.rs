//! Compiles DuckDB's icu extension (vendored in `vendor/duckdb-icu/icu`, see
//! its README) and this crate's describe function into one static library,
//! against the headers of the DuckDB that libduckdb-sys bundles.
//!
//! Owns the extension's compile: its sources, include paths and defines. It
//! must never touch the engine's own build (no define, flag or file of
//! libduckdb-sys's changes, so none of its objects recompile), and must never
//! compile the extension against a DuckDB other than the one it was vendored
//! from: C++ extensions have no stable ABI.

use std::path::{Path, PathBuf};

/// The DuckDB the vendored sources come from (`vendor/duckdb-icu/README.md`):
/// its version and the commit's short id, as the bundled engine's
/// `pragma_version.cpp` defines them.
const DUCKDB_VERSION: &str = "v2.0.0";
const DUCKDB_SOURCE_ID: &str = "d54cbbe3df";

/// The extension's source folders, relative to its root: the ones its own
/// `icu_config.py` lists (every `.cpp` in each is compiled).
const SOURCE_DIRS: &[&str] = &[
    ".",
    "collation",
    "collation/generated",
    "datetime",
    "datetime/generated",
];

/// Its include folders, as its `CMakeLists.txt` lists them.
const INCLUDE_DIRS: &[&str] = &["include", "collation/include", "datetime/include"];

/// The value of `#define NAME "value"` in a C++ source, if any.
fn defined(source: &str, name: &str) -> Option<String> {
    source.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("#define ")?.strip_prefix(name)?;
        let v = rest.trim();
        v.strip_prefix('"')?.strip_suffix('"').map(str::to_string)
    })
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let icu = manifest.join("../vendor/duckdb-icu/icu");
    println!("cargo:rerun-if-changed={}", icu.display());
    println!("cargo:rerun-if-changed=src/describe.cpp");

    // libduckdb-sys (links = "duckdb") publishes `cargo:include=<its unpacked
    // sources>/duckdb/src/include` to the crates that depend on it directly.
    let include = PathBuf::from(std::env::var_os("DEP_DUCKDB_INCLUDE").expect(
        "DEP_DUCKDB_INCLUDE unset: libduckdb-sys must be a direct dependency, built with `bundled`",
    ));
    let duckdb_root = include
        .parent()
        .and_then(Path::parent)
        .expect("DEP_DUCKDB_INCLUDE is <duckdb>/src/include");

    // The engine must be the very DuckDB the extension was vendored from.
    let version_file = duckdb_root.join("src/function/table/version/pragma_version.cpp");
    let version_src = std::fs::read_to_string(&version_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", version_file.display()));
    let version = defined(&version_src, "DUCKDB_VERSION");
    let source_id = defined(&version_src, "DUCKDB_SOURCE_ID");
    if version.as_deref() != Some(DUCKDB_VERSION) || source_id.as_deref() != Some(DUCKDB_SOURCE_ID)
    {
        panic!(
            "libduckdb-sys bundles DuckDB {version:?} ({source_id:?}), but vendor/duckdb-icu holds the \
             icu extension of {DUCKDB_VERSION} ({DUCKDB_SOURCE_ID}): vendor the extension of the new \
             DuckDB (vendor/duckdb-icu/README.md) and update the constants in duckdb-icu/build.rs"
        );
    }

    // The extension decompresses its time zone and collation data with the
    // engine's own zstd (namespace duckdb_zstd, compiled into the engine).
    let zstd = duckdb_root.join("third_party/zstd/include");
    assert!(
        zstd.join("zstd.h").is_file(),
        "no zstd.h under {}",
        zstd.display()
    );

    // DuckDB's own headers include its vendored fmt (cast_helpers.hpp).
    let fmt = duckdb_root.join("third_party/fmt/include");
    assert!(
        fmt.join("fmt/format.h").is_file(),
        "no fmt/format.h under {}",
        fmt.display()
    );

    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        let dir = icu.join(dir);
        for entry in
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "cpp") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 30, "{} icu sources found", files.len());

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .files(&files)
        .file("src/describe.cpp")
        .include(&include)
        .include(&zstd)
        .include(&fmt)
        .includes(INCLUDE_DIRS.iter().map(|d| icu.join(d)))
        // Only this crate's files see it: the describe function reports it.
        .define(
            "COMPUTE_ICU_API_VERSION",
            Some(format!("\"{DUCKDB_VERSION}\"").as_str()),
        )
        // As libduckdb-sys compiles the engine (C++17, no warnings: the
        // extension is DuckDB's code, built with NO_WARNINGS upstream too).
        .flag_if_supported("-std=c++17")
        .warnings(false)
        .flag_if_supported("-w");
    // The same one of DEBUG / NDEBUG as the engine (libduckdb-sys decides it
    // from cargo's DEBUG the same way): DuckDB's headers define some types
    // (the PEG transformer's frame stack) and inline checks differently
    // under DEBUG, and both sides of a C++ call must agree on them.
    let debug = std::env::var("DEBUG").is_ok_and(|v| v != "false" && v != "0");
    build.define(if debug { "DEBUG" } else { "NDEBUG" }, None);
    build.compile("duckdb_icu");
}

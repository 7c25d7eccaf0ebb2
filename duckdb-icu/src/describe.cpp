// The icu extension's describe function for duckdb_register_static_extension,
// and the one call that registers it. Ours, not DuckDB's: the bundled build
// generates describe functions only for the extensions it compiles itself
// (core_functions, json, parquet), so the icu one is written here.
//
// Never include anything but the C-level header: this file must not depend on
// how DuckDB's C++ classes are laid out.

#include "duckdb_static_extension.h"

#include <stdint.h>

#ifndef COMPUTE_ICU_API_VERSION
#error "build.rs defines COMPUTE_ICU_API_VERSION (the DuckDB version the extension was compiled against)"
#endif

namespace duckdb {
class ExtensionLoader;
}

// Defined by DUCKDB_CPP_EXTENSION_ENTRY(icu, loader) in icu_extension.cpp.
extern "C" void icu_duckdb_cpp_init(duckdb::ExtensionLoader &loader);

extern "C" {

static int32_t compute_icu_describe(duckdb_extension_descriptor *descriptor) {
	// Layout 1 holds every field we fill; DuckDB offers its own layout and
	// takes back the one we say we filled.
	if (descriptor->version < 1) {
		descriptor->set_error(descriptor, "the icu extension fills descriptor layout 1, which DuckDB did not offer");
		return 1;
	}
	descriptor->version = 1;
	descriptor->name = "icu";
	// Like the extensions the bundled build links: no version of its own.
	descriptor->extension_version = "";
	descriptor->api_version = COMPUTE_ICU_API_VERSION;
	descriptor->entry_cpp = reinterpret_cast<void (*)(void)>(icu_duckdb_cpp_init);
	return 0;
}

// 0 when registered (again: DuckDB treats the same describe function twice as
// one registration), 1 when DuckDB refused; DuckDB then also refuses to open
// any database, with the reason.
int32_t compute_duckdb_icu_register(void) {
	return duckdb_register_static_extension(compute_icu_describe);
}

} // extern "C"

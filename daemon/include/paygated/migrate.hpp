// Schema migrations: sql/NNNN_name.sql files applied in version order, recorded in schema_migrations.
//
// Each pending file runs in its own transaction together with its schema_migrations row, so a
// migration is either fully applied and recorded or not at all; a pg_advisory_lock serializes
// concurrent migrators; an applied file whose checksum changed is an error (add a new file instead).
// Files therefore must not contain BEGIN/COMMIT, nor statements that refuse to run inside a
// transaction block (CREATE INDEX CONCURRENTLY, ALTER TYPE ... ADD VALUE before PostgreSQL 12, ...).
#pragma once

#include "paygate/digest.hpp"  // sha256_hex: migration checksums

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace paygate::daemon {

struct Migration {
    long version = 0;    // NNNN
    std::string name;    // the part after the underscore, without ".sql"
    std::string file;    // the file name, e.g. "0001_init.sql"
};

// Picks the migrations out of a directory listing and orders them by version (numerically).
// Names starting with '.' and names not ending in ".sql" are ignored. A ".sql" name that is not
// "<digits>_<letters, digits, '_' or '-'>.sql", version 0, or two files with one version is an error.
bool plan_migrations(const std::vector<std::string>& file_names, std::vector<Migration>& out, std::string& error);

// The names of the entries of `dir` (no "." or "..").
bool list_directory(const std::string& dir, std::vector<std::string>& names, std::string& error);


// The advisory lock key every migrator takes ("paygate!" as a big-endian int64).
inline constexpr long long kMigrationLockKey = 0x7061796761746521LL;

// Applies the pending migrations of `dir` to the database, printing one line per migration
// (applied or skipped) and a summary to `out`. On failure returns false with `error` set;
// migrations applied before the failing one stay applied.
bool run_migrations(const std::string& conninfo, const std::string& dir, std::ostream& out, std::string& error);

}  // namespace paygate::daemon

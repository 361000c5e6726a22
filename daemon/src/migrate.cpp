// Migration discovery (pure), checksums and the apply loop over libpq (see migrate.hpp).
#include "paygated/migrate.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>


#include "paygated/config.hpp"
#include "paygated/db.hpp"

namespace paygate::daemon {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool parse_name(const std::string& file, Migration& out) {
    std::string_view s = file;
    s.remove_suffix(4);  // ".sql"
    std::size_t digits = 0;
    while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
    if (digits == 0 || digits > 9 || digits >= s.size() || s[digits] != '_') return false;
    std::string_view name = s.substr(digits + 1);
    if (name.empty()) return false;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) return false;
    }
    out.version = std::stol(std::string(s.substr(0, digits)));
    out.name = std::string(name);
    out.file = file;
    return true;
}

// The server's error message, trimmed (keeps libpq's multi-line detail: this is a CLI).
std::string result_error(const PGresult* r, const PGconn* conn) {
    std::string msg = r ? PQresultErrorMessage(r) : (conn ? PQerrorMessage(conn) : "out of memory");
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    return msg.empty() ? "unknown error" : msg;
}

bool command(PGconn* conn, const char* sql, std::string& error) {
    PgResult r(PQexec(conn, sql));
    ExecStatusType st = PQresultStatus(r.get());
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return true;
    error = std::string(sql) + ": " + result_error(r.get(), conn);
    return false;
}

struct Pending {
    Migration migration;
    std::string sql;
    std::string checksum;
};

bool apply_one(PGconn* conn, const Pending& p, std::string& error) {
    if (!command(conn, "BEGIN", error)) return false;
    PgResult r(PQexec(conn, p.sql.c_str()));
    ExecStatusType st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        error = p.migration.file + ": " + result_error(r.get(), conn);
        PgResult(PQexec(conn, "ROLLBACK"));
        return false;
    }
    if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
        error = p.migration.file + ": the file ended the transaction itself (COMMIT/ROLLBACK/BEGIN are not "
                                   "allowed in migrations)";
        PgResult(PQexec(conn, "ROLLBACK"));
        return false;
    }
    std::string version = std::to_string(p.migration.version);
    const char* values[3] = {version.c_str(), p.migration.name.c_str(), p.checksum.c_str()};
    PgResult ins(PQexecParams(conn,
                              "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                              "VALUES ($1::integer, $2, $3, now())",
                              3, nullptr, values, nullptr, nullptr, 0));
    if (PQresultStatus(ins.get()) != PGRES_COMMAND_OK) {
        error = p.migration.file + ": recording it in schema_migrations: " + result_error(ins.get(), conn);
        PgResult(PQexec(conn, "ROLLBACK"));
        return false;
    }
    if (!command(conn, "COMMIT", error)) {
        error = p.migration.file + ": " + error;
        return false;
    }
    return true;
}

}  // namespace

bool plan_migrations(const std::vector<std::string>& file_names, std::vector<Migration>& out, std::string& error) {
    std::vector<Migration> found;
    for (const std::string& file : file_names) {
        if (file.empty() || file.front() == '.' || !ends_with(file, ".sql")) continue;
        Migration m;
        if (!parse_name(file, m)) {
            error = file + ": a migration file name must look like NNNN_name.sql (name: letters, digits, '_', '-')";
            return false;
        }
        if (m.version == 0) {
            error = file + ": versions start at 1";
            return false;
        }
        found.push_back(std::move(m));
    }
    std::sort(found.begin(), found.end(), [](const Migration& a, const Migration& b) {
        return a.version != b.version ? a.version < b.version : a.file < b.file;
    });
    for (std::size_t i = 1; i < found.size(); ++i) {
        if (found[i].version == found[i - 1].version) {
            error = found[i - 1].file + " and " + found[i].file + " have the same version " +
                    std::to_string(found[i].version);
            return false;
        }
    }
    out = std::move(found);
    return true;
}

bool list_directory(const std::string& dir, std::vector<std::string>& names, std::string& error) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
    if (!d) {
        error = dir + ": cannot open directory: " + std::strerror(errno);
        return false;
    }
    names.clear();
    while (dirent* e = ::readdir(d.get())) {
        std::string name = e->d_name;
        if (name != "." && name != "..") names.push_back(std::move(name));
    }
    return true;
}

bool run_migrations(const std::string& conninfo, const std::string& dir, std::ostream& out, std::string& error) {
    std::vector<std::string> names;
    std::vector<Migration> plan;
    if (!list_directory(dir, names, error) || !plan_migrations(names, plan, error)) return false;

    std::vector<Pending> files;
    for (Migration& m : plan) {
        Pending p;
        if (!read_text_file(dir + "/" + m.file, p.sql, error)) return false;
        p.checksum = sha256_hex(p.sql);
        p.migration = std::move(m);
        files.push_back(std::move(p));
    }

    std::string connect_error;
    PgConn conn = pg_connect(conninfo, "paygatectl", connect_error);
    if (!conn) {
        error = "cannot connect to the database (" + describe_conninfo(conninfo) + "): " + connect_error;
        return false;
    }
    PGconn* c = conn.get();
    if (!command(c, "SET client_min_messages = warning", error)) return false;

    // One migrator at a time; the lock goes with the session if we die.
    std::string key = std::to_string(kMigrationLockKey);
    const char* key_param[1] = {key.c_str()};
    PgResult tried(PQexecParams(c, "SELECT pg_try_advisory_lock($1::bigint)", 1, nullptr, key_param, nullptr, nullptr, 0));
    if (PQresultStatus(tried.get()) != PGRES_TUPLES_OK) {
        error = "taking the migration lock: " + result_error(tried.get(), c);
        return false;
    }
    if (std::strcmp(PQgetvalue(tried.get(), 0, 0), "t") != 0) {
        out << "waiting for another migrator to finish (advisory lock " << key << ")" << std::endl;
        PgResult locked(PQexecParams(c, "SELECT pg_advisory_lock($1::bigint)", 1, nullptr, key_param, nullptr, nullptr, 0));
        if (PQresultStatus(locked.get()) != PGRES_TUPLES_OK) {
            error = "taking the migration lock: " + result_error(locked.get(), c);
            return false;
        }
    }

    if (!command(c,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 " version integer PRIMARY KEY,"
                 " name text NOT NULL,"
                 " checksum text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 error)) {
        return false;
    }
    PgResult applied_rows(PQexec(c, "SELECT version, name, checksum FROM schema_migrations ORDER BY version"));
    if (PQresultStatus(applied_rows.get()) != PGRES_TUPLES_OK) {
        error = "reading schema_migrations: " + result_error(applied_rows.get(), c);
        return false;
    }
    struct Applied {
        std::string name;
        std::string checksum;
    };
    std::map<long, Applied> applied;
    for (int row = 0; row < PQntuples(applied_rows.get()); ++row) {
        applied[std::stol(PQgetvalue(applied_rows.get(), row, 0))] =
            Applied{PQgetvalue(applied_rows.get(), row, 1), PQgetvalue(applied_rows.get(), row, 2)};
    }

    // Refuse before changing anything when an applied file was edited.
    for (const Pending& p : files) {
        auto it = applied.find(p.migration.version);
        if (it != applied.end() && it->second.checksum != p.checksum) {
            error = p.migration.file + ": changed since it was applied (checksum " + it->second.checksum.substr(0, 12) +
                    "... recorded, " + p.checksum.substr(0, 12) +
                    "... now); applied migrations must not be edited: add a new migration instead";
            return false;
        }
    }
    for (const auto& [version, row] : applied) {
        bool has_file = std::any_of(files.begin(), files.end(),
                                    [v = version](const Pending& p) { return p.migration.version == v; });
        if (!has_file) out << "note: version " << version << " (" << row.name << ") is applied but has no file in " << dir << "\n";
    }

    int done = 0, skipped = 0;
    for (const Pending& p : files) {
        if (applied.count(p.migration.version)) {
            out << "skipped " << p.migration.file << " (already applied)" << std::endl;
            ++skipped;
            continue;
        }
        auto started = std::chrono::steady_clock::now();
        if (!apply_one(c, p, error)) return false;
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
        out << "applied " << p.migration.file << " (" << ms.count() << " ms)" << std::endl;
        ++done;
    }
    PgResult(PQexecParams(c, "SELECT pg_advisory_unlock($1::bigint)", 1, nullptr, key_param, nullptr, nullptr, 0));
    out << "migrate: " << done << " applied, " << skipped << " already applied" << std::endl;
    return true;
}

}  // namespace paygate::daemon

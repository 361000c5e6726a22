// paygatectl option parsing and database/sql-dir resolution (see ctl.hpp).
#include "paygated/ctl.hpp"

#include <algorithm>
#include <sys/stat.h>

#include "paygated/config.hpp"

namespace paygate::daemon {

bool parse_options(const std::vector<std::string>& args, const std::vector<std::string>& names,
                   std::map<std::string, std::string>& out, std::string& error) {
    out.clear();
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
            error = "unexpected argument '" + arg + "'";
            return false;
        }
        std::string name = arg.substr(2);
        std::string value;
        bool has_value = false;
        std::size_t eq = name.find('=');
        if (eq != std::string::npos) {
            value = name.substr(eq + 1);
            name.resize(eq);
            has_value = true;
        }
        if (std::find(names.begin(), names.end(), name) == names.end()) {
            error = "unknown option '--" + name + "'";
            return false;
        }
        if (!has_value) {
            if (i + 1 >= args.size()) {
                error = "option '--" + name + "' needs a value";
                return false;
            }
            value = args[++i];
        }
        if (!out.emplace(name, value).second) {
            error = "option '--" + name + "' given twice";
            return false;
        }
    }
    return true;
}

namespace {

bool from_config_file(const std::string& path, DatabaseChoice& out, std::string& error) {
    Config config;
    if (!load_config(path, config, error)) return false;
    if (config.database.empty()) {
        error = path + ": no 'database' key";
        return false;
    }
    out.conninfo = config.database;
    out.source = path;
    return true;
}

}  // namespace

bool resolve_database(const std::map<std::string, std::string>& options, const char* env,
                      const std::string& default_config, DatabaseChoice& out, std::string& error) {
    if (auto it = options.find("database"); it != options.end()) {
        out.conninfo = it->second;
        out.source = "--database";
        return true;
    }
    if (env && *env) {
        out.conninfo = env;
        out.source = "PAYGATE_DATABASE_URL";
        return true;
    }
    if (auto it = options.find("config"); it != options.end()) return from_config_file(it->second, out, error);
    struct stat st {};
    if (::stat(default_config.c_str(), &st) == 0) return from_config_file(default_config, out, error);
    error = "no database given: use --database CONNINFO, PAYGATE_DATABASE_URL or --config FILE (" + default_config +
            " does not exist here)";
    return false;
}

std::string resolve_sql_dir(const std::map<std::string, std::string>& options, const char* env) {
    if (auto it = options.find("dir"); it != options.end()) return it->second;
    if (env && *env) return env;
    return "sql";
}

}  // namespace paygate::daemon

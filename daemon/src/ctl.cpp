// paygatectl option parsing and database/sql-dir resolution (see ctl.hpp).
#include "paygated/ctl.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paygate/curve.hpp"
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

bool is_key_name(const std::string& name) {
    if (name.empty() || name.size() > 64 || name.front() == '.') return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-';
    });
}

bool write_new_file(const std::string& path, const std::string& text, mode_t mode, std::string& error) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        error = path + ": " + std::strerror(errno);
        return false;
    }
    // The mode is exact whatever the umask (a public key file must be readable by nginx's workers).
    bool ok = ::fchmod(fd, mode) == 0;
    std::size_t done = 0;
    while (ok && done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        if (ok) done += static_cast<std::size_t>(n);
    }
    ok = ::fsync(fd) == 0 && ok;
    if (::close(fd) != 0) ok = false;
    if (!ok) {
        error = path + ": write failed: " + std::strerror(errno);
        ::unlink(path.c_str());
    }
    return ok;
}

bool write_key_pair(const std::string& dir, const std::string& name, std::string& public_key, std::string& error) {
    if (!is_key_name(name)) {
        error = "bad key name '" + name + "' (1-64 characters of A-Z a-z 0-9 . _ -, not starting with '.')";
        return false;
    }
    std::string secret_path = dir + "/" + name + ".key";
    std::string public_path = dir + "/" + name + ".pub";
    struct stat st {};
    for (const std::string& path : {secret_path, public_path}) {
        if (::lstat(path.c_str(), &st) == 0) {
            error = path + " exists already (remove it first: keys are never overwritten)";
            return false;
        }
    }
    curve::KeyPair pair = curve::generate();
    if (!write_new_file(secret_path, curve::secret_key_file_text(pair, name), 0600, error)) return false;
    if (!write_new_file(public_path, curve::public_key_file_text(pair, name), 0644, error)) {
        ::unlink(secret_path.c_str());
        return false;
    }
    public_key = pair.public_key;
    return true;
}

}  // namespace paygate::daemon

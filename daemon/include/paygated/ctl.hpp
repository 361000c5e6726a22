// paygatectl's shared plumbing: option parsing and where the database and sql/ come from.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace paygate::daemon {

// The config file paygatectl falls back on, relative to the current directory.
inline constexpr const char* kDevConfig = "conf/paygated.dev.conf";

// Parses "--name VALUE" / "--name=VALUE" options (each name at most once) from args.
// Anything else (positional, unknown option, missing value) is an error.
bool parse_options(const std::vector<std::string>& args, const std::vector<std::string>& names,
                   std::map<std::string, std::string>& out, std::string& error);

struct DatabaseChoice {
    std::string conninfo;
    std::string source;  // where it came from, for messages: "--database", "PAYGATE_DATABASE_URL", a file
};

// --database, else the PAYGATE_DATABASE_URL environment value (`env`, may be null), else the
// `database` key of --config FILE, else that of `default_config` (conf/paygated.dev.conf).
bool resolve_database(const std::map<std::string, std::string>& options, const char* env,
                      const std::string& default_config, DatabaseChoice& out, std::string& error);

// --dir, else the PAYGATE_SQL_DIR environment value (`env`, may be null), else "sql".
std::string resolve_sql_dir(const std::map<std::string, std::string>& options, const char* env);

// Key pair names (file names): 1-64 characters of A-Z a-z 0-9 . _ - , not starting with '.'.
bool is_key_name(const std::string& name);

// Creates `path` with exactly `mode` (never replacing a file, nor following a symlink), writes
// `text` and syncs it; on failure nothing is left behind.
bool write_new_file(const std::string& path, const std::string& text, mode_t mode, std::string& error);

// `paygatectl keys generate`: a new CURVE key pair as DIR/NAME.key (the secret, mode 0600) and
// DIR/NAME.pub (the public key with NAME as its label, mode 0644). Refuses to replace either file.
// `public_key` is the new public key (Z85).
bool write_key_pair(const std::string& dir, const std::string& name, std::string& public_key, std::string& error);

}  // namespace paygate::daemon

// paygatectl: administration commands for paygate's database. One table of subcommands.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "paygated/ctl.hpp"
#include "paygated/db.hpp"
#include "paygated/migrate.hpp"

using namespace paygate::daemon;

namespace {

// Exit statuses: 0 done, 1 the command failed, 2 bad usage.
constexpr int kFailed = 1;
constexpr int kUsage = 2;

int fail(const std::string& message) {
    std::cerr << "paygatectl: " << message << std::endl;
    return kFailed;
}

int usage_error(const std::string& message, const char* usage) {
    std::cerr << "paygatectl: " << message << "\nusage: " << usage << std::endl;
    return kUsage;
}

constexpr const char* kMigrateUsage =
    "paygatectl migrate [--database CONNINFO] [--config FILE] [--dir DIR]\n"
    "  Applies pending sql/NNNN_name.sql migrations in order, each in its own transaction.\n"
    "  Database: --database, else $PAYGATE_DATABASE_URL, else 'database' of --config FILE,\n"
    "  else of conf/paygated.dev.conf. Directory: --dir, else $PAYGATE_SQL_DIR, else ./sql.";

int cmd_migrate(const std::vector<std::string>& args) {
    std::map<std::string, std::string> options;
    std::string error;
    if (!parse_options(args, {"database", "config", "dir"}, options, error)) return usage_error(error, kMigrateUsage);
    DatabaseChoice db;
    if (!resolve_database(options, std::getenv("PAYGATE_DATABASE_URL"), kDevConfig, db, error)) return fail(error);
    if (!check_conninfo(db.conninfo, error)) return fail("bad connection string from " + db.source + ": " + error);
    std::string dir = resolve_sql_dir(options, std::getenv("PAYGATE_SQL_DIR"));
    std::cout << "migrate: database " << describe_conninfo(db.conninfo) << " (from " << db.source << "), directory "
              << dir << std::endl;
    if (!run_migrations(db.conninfo, dir, std::cout, error)) return fail("migrate: " + error);
    return 0;
}

struct Command {
    const char* name;
    const char* summary;
    const char* usage;
    int (*run)(const std::vector<std::string>& args);
};

const Command kCommands[] = {
    {"migrate", "apply pending database migrations", kMigrateUsage, cmd_migrate},
};

void print_help(std::ostream& out) {
    out << "usage: paygatectl COMMAND [options]\n\ncommands:\n";
    for (const Command& c : kCommands) {
        std::string name = c.name;
        name.resize(12, ' ');
        out << "  " << name << c.summary << "\n";
    }
    out << "  help        this help (paygatectl help COMMAND: that command's usage)\n";
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) {
        print_help(std::cerr);
        return kUsage;
    }
    std::string name = args.front();
    args.erase(args.begin());
    if (name == "help" || name == "-h" || name == "--help") {
        for (const Command& c : kCommands) {
            if (!args.empty() && args.front() == c.name) {
                std::cout << "usage: " << c.usage << std::endl;
                return 0;
            }
        }
        print_help(std::cout);
        return 0;
    }
    for (const Command& c : kCommands) {
        if (name != c.name) continue;
        if (!args.empty() && (args.front() == "-h" || args.front() == "--help")) {
            std::cout << "usage: " << c.usage << std::endl;
            return 0;
        }
        try {
            return c.run(args);
        } catch (const std::exception& e) {
            return fail(std::string(c.name) + ": " + e.what());
        }
    }
    std::cerr << "paygatectl: unknown command '" << name << "'\n";
    print_help(std::cerr);
    return kUsage;
}

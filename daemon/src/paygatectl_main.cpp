// paygatectl: administration commands (database, tokens, partner keys, tasks, reconcile; key
// material in paygatectl_keys.cpp). One table of subcommands.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <unistd.h>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "paygate/json.hpp"
#include "paygated/ctl.hpp"
#include "paygated/db.hpp"
#include "paygated/config.hpp"
#include "paygated/http_client.hpp"
#include "paygated/migrate.hpp"
#include "paygated/mserver.hpp"
#include "paygated/tasks.hpp"
#include "paygated/tokens.hpp"
#include "paygatectl.hpp"

using namespace paygate::daemon;

namespace paygate::daemon::paygatectl {

int fail(const std::string& message) {
    std::cerr << "paygatectl: " << message << std::endl;
    return kFailed;
}

int usage_error(const std::string& message, const char* usage) {
    std::cerr << "paygatectl: " << message << "\nusage: " << usage << std::endl;
    return kUsage;
}

}  // namespace paygate::daemon::paygatectl

using namespace paygate::daemon::paygatectl;

namespace {

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

constexpr const char* kTokenUsage =
    "paygatectl token create --client NAME [--database CONNINFO] [--config FILE]\n"
    "       paygatectl token revoke (--token TOKEN | --token - | --client NAME) [--database CONNINFO] [--config FILE]\n"
    "       paygatectl token list [--client NAME] [--database CONNINFO] [--config FILE]\n"
    "  create: makes a client API token (and the client, if it is new) and prints the token on\n"
    "          stdout, once: only its SHA-256 is stored. Client names: 1-64 of A-Z a-z 0-9 . _ -\n"
    "  revoke: revokes one token (--token - reads it from stdin) or every live token of a client;\n"
    "          prints how many. nginx stops accepting it within a second.\n"
    "  list:   prefix, client, created and revoked time (UTC) of every token; never a token or hash.\n"
    "  Database: as for migrate (--database, $PAYGATE_DATABASE_URL, --config, conf/paygated.dev.conf).";

// Connects like `migrate` does; prints why not and returns null on failure.
PgConn connect_for(const std::map<std::string, std::string>& options, const char* what) {
    DatabaseChoice db;
    std::string error;
    if (!resolve_database(options, std::getenv("PAYGATE_DATABASE_URL"), kDevConfig, db, error)) {
        fail(error);
        return nullptr;
    }
    if (!check_conninfo(db.conninfo, error)) {
        fail("bad connection string from " + db.source + ": " + error);
        return nullptr;
    }
    PgConn conn = pg_connect(db.conninfo, "paygatectl", error);
    if (!conn) {
        fail(std::string(what) + ": cannot connect to the database (" + describe_conninfo(db.conninfo) + ", from " +
             db.source + "): " + error);
        return nullptr;
    }
    PgResult quiet(PQexec(conn.get(), "SET client_min_messages = warning"));
    return conn;
}

const char* plural(long n) { return n == 1 ? "" : "s"; }

int cmd_token(const std::vector<std::string>& all) {
    if (all.empty()) return usage_error("token: which action? (create, revoke, list)", kTokenUsage);
    const std::string action = all.front();
    std::vector<std::string> args(all.begin() + 1, all.end());
    std::map<std::string, std::string> options;
    std::string error;
    std::vector<std::string> names{"client", "database", "config"};
    if (action == "revoke") names.push_back("token");
    if (action != "create" && action != "revoke" && action != "list") {
        return usage_error("token: unknown action '" + action + "'", kTokenUsage);
    }
    if (!parse_options(args, names, options, error)) return usage_error("token " + action + ": " + error, kTokenUsage);
    auto client = options.find("client");
    if (client != options.end() && !is_client_name(client->second)) {
        return usage_error("token " + action + ": bad client name '" + client->second +
                               "' (1-64 characters of A-Z a-z 0-9 . _ -)",
                           kTokenUsage);
    }

    if (action == "create") {
        if (client == options.end()) return usage_error("token create: --client NAME is required", kTokenUsage);
        PgConn conn = connect_for(options, "token create");
        if (!conn) return kFailed;
        CreatedToken created;
        if (!create_token(conn.get(), client->second, created, error)) return fail("token create: " + error);
        if (created.client_created) std::cerr << "paygatectl: created client '" << client->second << "'\n";
        std::cerr << "paygatectl: created token " << token_prefix(created.token) << "... for client '"
                  << client->second << "'; it is shown only this once" << std::endl;
        std::cout << created.token << std::endl;
        return 0;
    }

    if (action == "revoke") {
        auto token = options.find("token");
        if ((token == options.end()) == (client == options.end())) {
            return usage_error("token revoke: give either --token TOKEN or --client NAME", kTokenUsage);
        }
        std::string text;
        if (token != options.end()) {
            text = token->second;
            if (text == "-" && !std::getline(std::cin, text)) return fail("token revoke: no token on stdin");
            while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
            if (!is_token_text(text)) {
                return usage_error("token revoke: that is not a paygate token (pgt_ and 64 hex digits)", kTokenUsage);
            }
        }
        PgConn conn = connect_for(options, "token revoke");
        if (!conn) return kFailed;
        if (token != options.end()) {
            RevokeOutcome outcome;
            if (!revoke_token(conn.get(), text, outcome, error)) return fail("token revoke: " + error);
            if (outcome == RevokeOutcome::Unknown) return fail("token revoke: no such token");
            if (outcome == RevokeOutcome::AlreadyRevoked) {
                std::cerr << "paygatectl: token " << token_prefix(text) << "... was revoked already" << std::endl;
            }
            long n = outcome == RevokeOutcome::Revoked ? 1 : 0;
            std::cout << "revoked " << n << " token" << plural(n) << std::endl;
            return 0;
        }
        long n = 0;
        if (!revoke_client_tokens(conn.get(), client->second, n, error)) return fail("token revoke: " + error);
        std::cout << "revoked " << n << " token" << plural(n) << std::endl;
        return 0;
    }

    PgConn conn = connect_for(options, "token list");
    if (!conn) return kFailed;
    std::vector<TokenListRow> rows;
    std::optional<std::string> only;
    if (client != options.end()) only = client->second;
    if (!list_tokens(conn.get(), only, rows, error)) return fail("token list: " + error);
    std::cout << format_token_table(rows) << std::flush;
    return 0;
}

constexpr const char* kPartnerUsage =
    "paygatectl partner key create --partner NAME [--database CONNINFO] [--config FILE]\n"
    "       paygatectl partner key revoke --partner NAME (--key KEY | --key - | --all) [--database CONNINFO] [--config FILE]\n"
    "       paygatectl partner key list --partner NAME [--database CONNINFO] [--config FILE]\n"
    "  create: makes an API key for the partner (X-Api-Key on its routes) and prints it on stdout,\n"
    "          once: only its SHA-256 is stored. Partners: whitebird.\n"
    "  revoke: revokes one key (--key - reads it from stdin) or all of the partner's keys (--all);\n"
    "          prints how many. nginx stops accepting it within a second.\n"
    "  list:   prefix, partner, created and revoked time (UTC) of every key; never a key or hash.";

int cmd_partner(const std::vector<std::string>& all) {
    if (all.size() < 2 || all[0] != "key") return usage_error("partner: expected 'partner key ACTION'", kPartnerUsage);
    const std::string action = all[1];
    if (action != "create" && action != "revoke" && action != "list") {
        return usage_error("partner key: unknown action '" + action + "'", kPartnerUsage);
    }
    std::vector<std::string> args(all.begin() + 2, all.end());
    bool revoke_all = false;
    if (action == "revoke") {
        auto it = std::find(args.begin(), args.end(), "--all");
        if (it != args.end()) {
            revoke_all = true;
            args.erase(it);
        }
    }
    std::map<std::string, std::string> options;
    std::string error;
    std::vector<std::string> names{"partner", "database", "config"};
    if (action == "revoke") names.push_back("key");
    if (!parse_options(args, names, options, error)) return usage_error("partner key " + action + ": " + error, kPartnerUsage);
    auto partner = options.find("partner");
    if (partner == options.end()) return usage_error("partner key " + action + ": --partner NAME is required", kPartnerUsage);
    if (!is_key_partner(partner->second)) {
        return usage_error("partner key " + action + ": unknown partner '" + partner->second + "'", kPartnerUsage);
    }
    std::optional<std::string> key;
    if (action == "revoke") {
        auto given = options.find("key");
        if ((given == options.end()) != revoke_all) {
            return usage_error("partner key revoke: give either --key KEY or --all", kPartnerUsage);
        }
        if (given != options.end()) {
            std::string text = given->second;
            if (text == "-" && !std::getline(std::cin, text)) return fail("partner key revoke: no key on stdin");
            while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
            if (!is_partner_key_text(text)) {
                return usage_error("partner key revoke: that is not a partner key (pgk_ and 64 hex digits)", kPartnerUsage);
            }
            key = text;
        }
    }
    PgConn conn = connect_for(options, "partner key");
    if (!conn) return kFailed;
    if (action == "create") {
        CreatedToken created;
        if (!create_partner_key(conn.get(), partner->second, created, error)) return fail("partner key create: " + error);
        std::cerr << "paygatectl: created key " << token_prefix(created.token) << "... for partner '" << partner->second
                  << "'; it is shown only this once" << std::endl;
        std::cout << created.token << std::endl;
        return 0;
    }
    if (action == "revoke") {
        long n = 0;
        if (!revoke_partner_keys(conn.get(), partner->second, key, n, error)) return fail("partner key revoke: " + error);
        if (key && n == 0) return fail("partner key revoke: no such live key of partner '" + partner->second + "'");
        std::cout << "revoked " << n << " key" << plural(n) << std::endl;
        return 0;
    }
    std::vector<TokenListRow> rows;
    if (!list_partner_keys(conn.get(), partner->second, rows, error)) return fail("partner key list: " + error);
    std::string table = format_token_table(rows);
    table.replace(table.find("CLIENT "), 7, "PARTNER");
    std::cout << table << std::flush;
    return 0;
}

constexpr const char* kTasksUsage =
    "paygatectl tasks list [--state S] [--kind K] [--payment UUID] [--limit N] [--database CONNINFO] [--config FILE]\n"
    "       paygatectl tasks show ID | retry ID | cancel ID --reason TEXT [--database CONNINFO] [--config FILE]\n"
    "  list:   newest first: id, state, kind, payment, attempts, next run, last error. States: pending,\n"
    "          running, done, dead (gave up: needs an operator), cancelled. --state open = pending+running.\n"
    "          Also lists provider operations whose outcome is not known yet (sending, unknown, processing).\n"
    "  show:   every column of one task, and its provider operation.\n"
    "  retry:  a dead, cancelled or pending task runs again now with its attempts reset.\n"
    "  cancel: a pending or dead task is never run (the payment stays as it is).";

int cmd_tasks(const std::vector<std::string>& all) {
    if (all.empty()) return usage_error("tasks: which action? (list, show, retry, cancel)", kTasksUsage);
    const std::string action = all.front();
    std::vector<std::string> args(all.begin() + 1, all.end());
    std::string id;
    if (action == "show" || action == "retry" || action == "cancel") {
        if (args.empty() || args.front().empty() || args.front().find_first_not_of("0123456789") != std::string::npos ||
            args.front().size() > 18) {
            return usage_error("tasks " + action + ": a task id (a number) is required", kTasksUsage);
        }
        id = args.front();
        args.erase(args.begin());
    } else if (action != "list") {
        return usage_error("tasks: unknown action '" + action + "'", kTasksUsage);
    }
    std::map<std::string, std::string> options;
    std::string error;
    std::vector<std::string> names{"database", "config"};
    if (action == "list") names.insert(names.end(), {"state", "kind", "payment", "limit"});
    if (action == "cancel") names.push_back("reason");
    if (!parse_options(args, names, options, error)) return usage_error("tasks " + action + ": " + error, kTasksUsage);
    DatabaseChoice choice;
    if (!resolve_database(options, std::getenv("PAYGATE_DATABASE_URL"), kDevConfig, choice, error)) return fail(error);
    Db db(choice.conninfo, std::make_shared<RetryGate>(std::chrono::milliseconds(100)), "paygatectl");
    if (!db.connection()) return fail("tasks: cannot connect to the database (" + describe_conninfo(choice.conninfo) + ")");
    Session s(db);
    auto print = [](const TaskRow& t) {
        std::cout << t.id << "\t" << t.state << "\t" << t.kind << "\t" << t.payment_id << "\tattempts=" << t.attempts
                  << "\trun_at=" << t.run_at << (t.last_error.empty() ? "" : "\terror=" + t.last_error) << "\n";
    };
    if (action == "list") {
        TaskFilter f;
        auto get = [&](const char* k) -> std::optional<std::string> {
            auto it = options.find(k);
            return it == options.end() ? std::nullopt : std::optional<std::string>(it->second);
        };
        f.state = get("state");
        f.kind = get("kind");
        f.payment_id = get("payment");
        if (auto limit = get("limit")) {
            if (limit->empty() || limit->size() > 6 || limit->find_first_not_of("0123456789") != std::string::npos) {
                return usage_error("tasks list: --limit takes a number", kTasksUsage);
            }
            f.limit = std::stoi(*limit);
        }
        std::vector<TaskRow> rows;
        if (f.state && *f.state == "open") {
            f.state = "pending";
            rows = list_tasks(s, f);
            f.state = "running";
            for (TaskRow& r : list_tasks(s, f)) rows.push_back(std::move(r));
        } else {
            rows = list_tasks(s, f);
        }
        std::cout << "id\tstate\tkind\tpayment\tattempts\tnext run\tlast error\n";
        for (const TaskRow& t : rows) print(t);
        PgResult open = s.exec("SELECT id, payment_id, kind, state, coalesce(last_error, '') FROM provider_operations"
                               " WHERE state IN ('sending', 'unknown', 'processing') ORDER BY created_at");
        if (PQntuples(open.get()) > 0) {
            std::cout << "\nprovider operations with an outcome not known yet:\n";
            for (int i = 0; i < PQntuples(open.get()); ++i) {
                std::cout << value(open.get(), i, 0) << "\t" << value(open.get(), i, 1) << "\t" << value(open.get(), i, 2)
                          << "\t" << value(open.get(), i, 3) << "\t" << value(open.get(), i, 4) << "\n";
            }
        }
        std::cout << std::flush;
        return 0;
    }
    if (action == "show") {
        std::optional<TaskRow> t = find_task(s, id);
        if (!t) return fail("tasks show: no task " + id);
        std::cout << "id: " << t->id << "\nkind: " << t->kind << "\nstate: " << t->state << "\npayment: " << t->payment_id
                  << "\noperation_key: " << t->operation_key << "\npayload: " << t->payload << "\nattempts: " << t->attempts
                  << "\nreschedules: " << t->reschedules << "\nrun_at: " << t->run_at << "\nlease_owner: " << t->lease_owner
                  << "\nlease_expires_at: " << t->lease_expires_at << "\nlast_error: " << t->last_error
                  << "\ncreated_at: " << t->created_at << "\nupdated_at: " << t->updated_at << std::endl;
        return 0;
    }
    if (action == "retry") {
        if (!operator_retry_task(s, id)) return fail("tasks retry: task " + id + " does not exist or is running or done");
        std::cout << "task " << id << " is pending again" << std::endl;
        return 0;
    }
    auto reason = options.find("reason");
    if (reason == options.end() || reason->second.empty()) return usage_error("tasks cancel: --reason TEXT is required", kTasksUsage);
    if (!operator_cancel_task(s, id, reason->second)) {
        return fail("tasks cancel: task " + id + " does not exist or is running or done");
    }
    std::cout << "task " << id << " is cancelled" << std::endl;
    return 0;
}

constexpr const char* kReconcileUsage =
    "paygatectl reconcile mserver --since TIME [--page-size N] [--config FILE] [--database CONNINFO]\n"
    "  Reads mserver's payment history (GET /v1/payments, page by page, every status and type) and\n"
    "  our mserver operations created since TIME (e.g. 2026-12-01T00:00:00Z), and lists every payment\n"
    "  whose status differs, and payments only one side has, one per line:\n"
    "    payment_id  client_payment_id  mserver_id  ours=STATUS  mserver=STATUS\n"
    "  mserver's URL, login and password file come from --config FILE (paygated's config; default\n"
    "  conf/paygated.dev.conf). Exit 0 when both sides agree, 3 when differences were listed.";

int cmd_reconcile(const std::vector<std::string>& all) {
    if (all.empty() || all.front() != "mserver") return usage_error("reconcile: which provider? (mserver)", kReconcileUsage);
    std::vector<std::string> args(all.begin() + 1, all.end());
    std::map<std::string, std::string> options;
    std::string error;
    if (!parse_options(args, {"since", "page-size", "config", "database"}, options, error)) {
        return usage_error("reconcile: " + error, kReconcileUsage);
    }
    if (!options.count("since")) return usage_error("reconcile: --since TIME is required", kReconcileUsage);
    long page_size = 100;
    if (options.count("page-size")) {
        const std::string& v = options["page-size"];
        if (v.empty() || v.size() > 4 || v.find_first_not_of("0123456789") != std::string::npos || std::stol(v) == 0) {
            return usage_error("reconcile: --page-size takes a number 1-9999", kReconcileUsage);
        }
        page_size = std::stol(v);
    }
    Config config;
    std::string config_path = options.count("config") ? options["config"] : kDevConfig;
    if (!load_config(config_path, config, error)) return fail("reconcile: " + error);
    if (config.mserver_url.empty() || config.mserver_login.empty() || config.mserver_password_file.empty()) {
        return fail("reconcile: " + config_path + " lacks mserver_url, mserver_login or mserver_password_file");
    }
    DatabaseChoice choice;
    if (!resolve_database(options, std::getenv("PAYGATE_DATABASE_URL"), kDevConfig, choice, error)) return fail(error);
    Db db(choice.conninfo, std::make_shared<RetryGate>(std::chrono::milliseconds(100)), "paygatectl");
    if (!db.connection()) return fail("reconcile: cannot connect to the database (" + describe_conninfo(choice.conninfo) + ")");
    Session s(db);
    // PostgreSQL reads --since (any timestamptz spelling) and gives it back as mserver writes times.
    std::string since;
    try {
        PgResult t = s.exec("SELECT to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                            {options["since"]});
        since = value(t.get(), 0, 0);
    } catch (const std::exception&) {
        return usage_error("reconcile: --since is not a time", kReconcileUsage);
    }
    std::vector<mserver::OurOperation> ours;
    PgResult rows = s.exec(
        "SELECT o.id, o.payment_id, o.state, p.status, coalesce(o.provider_ref, '') FROM provider_operations o"
        " JOIN payments p ON p.id = o.payment_id WHERE o.provider = 'mserver' AND o.kind <> 'reversal'"
        " AND o.created_at >= $1::timestamptz ORDER BY o.created_at",
        {since});
    for (int i = 0; i < PQntuples(rows.get()); ++i) {
        ours.push_back({value(rows.get(), i, 0), value(rows.get(), i, 1), value(rows.get(), i, 2), value(rows.get(), i, 3),
                        value(rows.get(), i, 4)});
    }

    auto http = std::make_shared<HttpClient>();
    Mserver wallet(config, http);
    std::vector<mserver::WalletPayment> theirs;
    for (long page = 0; page < 100000; ++page) {
        Mserver::Call c = wallet.get("/v1/payments?page=" + std::to_string(page) + "&size=" + std::to_string(page_size) +
                                     "&type=out,p2p,in,inout&status=created,processing,completed,declined");
        if (c.response.outcome != HttpResponse::Outcome::Answered) return fail("reconcile: mserver: " + c.response.error);
        if (!c.parsed || c.response.status != 200 || c.envelope.code != 200 || !c.envelope.data.is(paygate::json::Type::Array)) {
            return fail("reconcile: mserver history: HTTP " + std::to_string(c.response.status) + " " + c.envelope.error_type + c.why);
        }
        bool older = false;
        for (const paygate::json::Value& item : c.envelope.data.items()) {
            mserver::WalletPayment w;
            if (!mserver::read_payment(item, w, error)) return fail("reconcile: mserver history: " + error);
            // Same format on both sides (UTC, milliseconds, Z): text order is time order.
            if (w.created_at < since) {
                older = true;   // newest first: the rest is older still
                continue;
            }
            theirs.push_back(std::move(w));
        }
        if (older || c.envelope.data.items().size() < static_cast<std::size_t>(page_size)) break;
    }
    std::vector<mserver::Difference> diffs = mserver::compare(ours, theirs);
    std::cout << "compared " << ours.size() << " paygate operations with " << theirs.size()
              << " mserver payments since " << since << "\n";
    for (const mserver::Difference& d : diffs) {
        std::cout << (d.payment_id.empty() ? "-" : d.payment_id) << "\t" << d.client_payment_id << "\t" << d.mserver_id
                  << "\tours=" << d.ours << "\tmserver=" << d.theirs << "\n";
    }
    std::cout << diffs.size() << " difference(s)" << std::endl;
    return diffs.empty() ? 0 : 3;
}

struct Command {
    const char* name;
    const char* summary;
    const char* usage;
    int (*run)(const std::vector<std::string>& args);
};

const Command kCommands[] = {
    {"migrate", "apply pending database migrations", kMigrateUsage, cmd_migrate},
    {"token", "create, revoke and list client API tokens", kTokenUsage, cmd_token},
    {"partner", "create, revoke and list partner API keys (WhiteBird)", kPartnerUsage, cmd_partner},
    {"tasks", "list, show, retry and cancel durable tasks", kTasksUsage, cmd_tasks},
    {"keys", "generate CURVE key pairs of the nginx <-> paygated link", kKeysUsage, cmd_keys},
    {"jwt", "make merchant JWT keys and mint test tokens (ZooTicket)", kJwtUsage, cmd_jwt},
    {"reconcile", "list payments whose status differs between paygate and mserver", kReconcileUsage, cmd_reconcile},
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

// paygated: command line, configuration, signals; then the broker (broker.cpp) does the work.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <sys/signalfd.h>
#include <unistd.h>

#include "paygated/broker.hpp"
#include "paygated/config.hpp"
#include "paygated/zooticket.hpp"
#include "paygated/db.hpp"
#include "paygated/link_auth.hpp"
#include "paygated/log.hpp"

using namespace paygate::daemon;

namespace {

constexpr const char* kDefaultConfig = "/etc/paygate/paygated.conf";

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: paygated [-c FILE] [-t]\n"
                 "  -c FILE  configuration file (default %s)\n"
                 "  -t       check the configuration and exit\n"
                 "  -h       this help\n"
                 "Exit status: 0 clean stop, 1 runtime failure, 2 bad usage or configuration.\n",
                 kDefaultConfig);
}

}  // namespace

int main(int argc, char** argv) {
    std::string config_path = kDefaultConfig;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "-c" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (arg == "-t") {
            check_only = true;
        } else if (arg == "-h" || arg == "--help") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "paygated: unexpected argument '%s'\n", arg.c_str());
            usage(stderr);
            return 2;
        }
    }

    Config config;
    std::string error;
    if (!load_config(config_path, config, error) || !validate_for_daemon(config, error)) {
        std::fprintf(stderr, "paygated: %s\n", error.c_str());
        return 2;
    }
    {
        zooticket::Settings zooticket_settings;   // the broker loads its own; this is the early check
        if (!zooticket::load_settings(config, zooticket_settings, error)) {
            std::fprintf(stderr, "paygated: %s: %s\n", config_path.c_str(), error.c_str());
            return 2;
        }
    }
    if (!check_conninfo(config.database, error)) {
        std::fprintf(stderr, "paygated: %s: bad 'database': %s\n", config_path.c_str(), error.c_str());
        return 2;
    }
#ifdef PAYGATED_TEST_HOOKS
    if (!parse_test_fault(std::getenv(kTestFaultEnv), config.test_fault)) {
        std::fprintf(stderr, "paygated: %s: unknown fault (known: kill-after-commit, stop-before-commit, janitor-stall)\n", kTestFaultEnv);
        return 2;
    }
#endif
    if (check_only) {
        // The key files too: a daemon that would refuse to start must not pass the check.
        if (config.curve && !LinkAuth::load(config, error)) {
            std::fprintf(stderr, "paygated: %s: %s\n", config_path.c_str(), error.c_str());
            return 2;
        }
        std::printf("paygated: configuration file %s is ok\n", config_path.c_str());
        return 0;
    }
    log::set_level(config.log_level);

    // SIGTERM/SIGINT arrive through a signalfd the broker polls with its sockets; blocked before
    // any thread exists (ZeroMQ's and ours inherit the mask), so no handler ever runs.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &signals, nullptr) != 0) {
        std::fprintf(stderr, "paygated: cannot block signals\n");
        return 1;
    }
    int stop_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (stop_fd < 0) {
        std::fprintf(stderr, "paygated: signalfd: %s\n", std::strerror(errno));
        return 1;
    }
    std::signal(SIGPIPE, SIG_IGN);

    int status = 1;
    try {
        status = run_daemon(config, stop_fd);
    } catch (const std::exception& e) {
        log::error("fatal").kv("what", e.what());
    }
    ::close(stop_fd);
    return status;
}

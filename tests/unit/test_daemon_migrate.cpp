// Migration discovery and ordering, checksums, and paygatectl's option/database resolution (no database).
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "paygated/ctl.hpp"
#include "paygated/migrate.hpp"

// Last: cmocka's macros (fail, ...) clash with names in standard headers.
#include "cmocka.hpp"

using namespace paygate::daemon;
using paygate::sha256_hex;

namespace {

void orders_numerically(void**) {
    std::vector<Migration> plan;
    std::string error;
    assert_true(plan_migrations({"0010_ten.sql", "0002_two.sql", "0001_init.sql", "9_nine.sql", "00011_eleven.sql"},
                                plan, error));
    assert_int_equal(plan.size(), 5);
    const long versions[] = {1, 2, 9, 10, 11};
    const char* names[] = {"init", "two", "nine", "ten", "eleven"};
    for (std::size_t i = 0; i < plan.size(); ++i) {
        assert_int_equal(plan[i].version, versions[i]);
        assert_string_equal(plan[i].name.c_str(), names[i]);
    }
    assert_string_equal(plan[0].file.c_str(), "0001_init.sql");
}

void ignores_other_files(void**) {
    std::vector<Migration> plan;
    std::string error;
    assert_true(plan_migrations({"README.md", ".0002_lock.sql", ".#0003_x.sql", "0001_init.sql", "0001_init.sql~",
                                 "0004_x.sql.swp", "notes.txt", "0005_y.SQL"},
                                plan, error));
    assert_int_equal(plan.size(), 1);
    assert_string_equal(plan[0].file.c_str(), "0001_init.sql");
    assert_true(plan_migrations({}, plan, error));
    assert_true(plan.empty());
}

void refuses_bad_names(void**) {
    for (const char* bad : {"init.sql", "0001.sql", "0001_.sql", "_init.sql", "0001-init.sql", "0001_in it.sql",
                            "0001_init.v2.sql", "x0001_init.sql", "1234567890_big.sql", ".sql"}) {
        std::vector<Migration> plan;
        std::string error;
        bool ok = plan_migrations({"0001_init.sql", bad}, plan, error);
        if (std::string(bad) == ".sql") {  // a dotfile: ignored
            assert_true(ok);
            continue;
        }
        if (ok) {
            std::fprintf(stderr, "accepted %s\n", bad);
            fail();
        }
        assert_non_null(std::strstr(error.c_str(), bad));
        assert_non_null(std::strstr(error.c_str(), "NNNN_name.sql"));
    }
    std::vector<Migration> plan;
    std::string error;
    assert_false(plan_migrations({"0000_zero.sql"}, plan, error));
    assert_non_null(std::strstr(error.c_str(), "start at 1"));
}

void refuses_duplicate_versions(void**) {
    std::vector<Migration> plan;
    std::string error;
    assert_false(plan_migrations({"0002_b.sql", "0001_init.sql", "2_a.sql"}, plan, error));
    assert_non_null(std::strstr(error.c_str(), "0002_b.sql"));
    assert_non_null(std::strstr(error.c_str(), "2_a.sql"));
    assert_non_null(std::strstr(error.c_str(), "same version 2"));
}

void lists_directory(void**) {
    char dir[] = "/tmp/test_daemon_migrate_XXXXXX";
    assert_non_null(mkdtemp(dir));
    for (const char* name : {"0002_b.sql", "0001_a.sql", "README"}) {
        std::string path = std::string(dir) + "/" + name;
        FILE* f = std::fopen(path.c_str(), "w");
        assert_non_null(f);
        std::fclose(f);
    }
    std::vector<std::string> names;
    std::string error;
    assert_true(list_directory(dir, names, error));
    assert_int_equal(names.size(), 3);
    std::vector<Migration> plan;
    assert_true(plan_migrations(names, plan, error));
    assert_int_equal(plan.size(), 2);
    assert_string_equal(plan[0].file.c_str(), "0001_a.sql");
    for (const std::string& n : names) unlink((std::string(dir) + "/" + n).c_str());
    rmdir(dir);
    assert_false(list_directory(dir, names, error));
    assert_non_null(std::strstr(error.c_str(), "cannot open directory"));
}

void sha256_vectors(void**) {
    assert_string_equal(sha256_hex("").c_str(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_string_equal(sha256_hex("abc").c_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_string_not_equal(sha256_hex("CREATE TABLE a (x int);").c_str(),
                            sha256_hex("CREATE TABLE a (x int); ").c_str());
}

void parses_options(void**) {
    std::map<std::string, std::string> opts;
    std::string error;
    assert_true(parse_options({"--database", "dbname=x", "--dir=sql2"}, {"database", "config", "dir"}, opts, error));
    assert_string_equal(opts["database"].c_str(), "dbname=x");
    assert_string_equal(opts["dir"].c_str(), "sql2");
    assert_true(parse_options({"--database=a=b"}, {"database"}, opts, error));  // only the first '=' splits
    assert_string_equal(opts["database"].c_str(), "a=b");
    assert_false(parse_options({"--bogus", "x"}, {"database"}, opts, error));
    assert_non_null(std::strstr(error.c_str(), "unknown option '--bogus'"));
    assert_false(parse_options({"--database"}, {"database"}, opts, error));
    assert_non_null(std::strstr(error.c_str(), "needs a value"));
    assert_false(parse_options({"--dir", "a", "--dir", "b"}, {"dir"}, opts, error));
    assert_non_null(std::strstr(error.c_str(), "twice"));
    assert_false(parse_options({"positional"}, {"dir"}, opts, error));
    assert_false(parse_options({"-d", "x"}, {"dir"}, opts, error));
}

void resolves_database_in_order(void**) {
    char path[] = "/tmp/test_daemon_ctl_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "listen = tcp://127.0.0.1:1\ndatabase = dbname=fromfile\n";
    assert_int_equal(write(fd, text, sizeof text - 1), sizeof text - 1);
    close(fd);
    const std::string missing = "/nonexistent/paygated.dev.conf";

    DatabaseChoice db;
    std::string error;
    std::map<std::string, std::string> opts{{"database", "dbname=flag"}, {"config", path}};
    assert_true(resolve_database(opts, "dbname=env", missing, db, error));
    assert_string_equal(db.conninfo.c_str(), "dbname=flag");
    assert_string_equal(db.source.c_str(), "--database");

    opts.erase("database");
    assert_true(resolve_database(opts, "dbname=env", missing, db, error));
    assert_string_equal(db.conninfo.c_str(), "dbname=env");
    assert_string_equal(db.source.c_str(), "PAYGATE_DATABASE_URL");

    assert_true(resolve_database(opts, "", missing, db, error));  // empty env counts as unset
    assert_string_equal(db.conninfo.c_str(), "dbname=fromfile");
    assert_string_equal(db.source.c_str(), path);

    opts.clear();
    assert_true(resolve_database(opts, nullptr, path, db, error));  // the default config file
    assert_string_equal(db.conninfo.c_str(), "dbname=fromfile");

    assert_false(resolve_database(opts, nullptr, missing, db, error));
    assert_non_null(std::strstr(error.c_str(), "no database given"));

    opts["config"] = missing;  // an explicit --config must exist
    assert_false(resolve_database(opts, nullptr, path, db, error));
    assert_non_null(std::strstr(error.c_str(), "cannot open"));
    unlink(path);

    assert_string_equal(resolve_sql_dir({}, nullptr).c_str(), "sql");
    assert_string_equal(resolve_sql_dir({}, "/srv/sql").c_str(), "/srv/sql");
    assert_string_equal(resolve_sql_dir({{"dir", "d"}}, "/srv/sql").c_str(), "d");
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(orders_numerically),
        cmocka_unit_test(ignores_other_files),
        cmocka_unit_test(refuses_bad_names),
        cmocka_unit_test(refuses_duplicate_versions),
        cmocka_unit_test(lists_directory),
        cmocka_unit_test(sha256_vectors),
        cmocka_unit_test(parses_options),
        cmocka_unit_test(resolves_database_in_order),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

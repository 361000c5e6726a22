// Capability URLs: keyring parsing, tags, rotation, and the strict query-string parser.
#include "cmocka.hpp"

#include <stdexcept>
#include <string>
#include <unistd.h>

#include "paygate/capability.hpp"
#include "test_material.hpp"
#include "paygate/crypto.hpp"

using namespace paygate;
using namespace paygate::capability;

namespace {

const std::string kNewSecret(32, 'N');
const std::string kOldSecret(40, 'O');
const char* kRef = "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b";

std::string ring_text() {
    return "# capability keys, newest first\n"
           "k2026 " + crypto::base64_encode(kNewSecret) + "\n"
           "\n"
           "k2025 " + crypto::base64_encode(kOldSecret) + "\n";
}

Keyring ring(const std::string& text) {
    std::string error;
    auto keys = Keyring::parse(text, error);
    if (!keys) fail_msg("keyring refused: %s", error.c_str());
    return *keys;
}

using test_material::write_temp;

void tag_is_43_chars_and_deterministic(void**) {
    Key key{"k2026", kNewSecret};
    std::string t = tag(key, kRef);
    assert_int_equal(t.size(), 43);
    assert_string_equal(t.c_str(), tag(key, kRef).c_str());
    assert_true(t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == std::string::npos);
    // Exactly the documented construction, so other implementations can reproduce it.
    std::string expected = crypto::base64url_encode(
        crypto::hmac_sha256(kNewSecret, std::string("paygate-capability-v1\nk2026\n") + kRef));
    assert_string_equal(t.c_str(), expected.c_str());
    // Every input matters: reference, key id, secret.
    assert_string_not_equal(t.c_str(), tag(key, "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6c").c_str());
    assert_string_not_equal(t.c_str(), tag(Key{"k2027", kNewSecret}, kRef).c_str());
    assert_string_not_equal(t.c_str(), tag(Key{"k2026", kOldSecret}, kRef).c_str());
}

void verify_accepts_only_the_exact_tag(void**) {
    Keyring keys = ring(ring_text());
    std::string t = tag(keys.current(), kRef);
    assert_true(verify(keys, "k2026", kRef, t));
    assert_false(verify(keys, "k2026", "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6c", t));
    for (std::size_t i : {std::size_t{0}, std::size_t{20}, std::size_t{42}}) {
        std::string changed = t;
        changed[i] = changed[i] == 'A' ? 'B' : 'A';
        assert_false(verify(keys, "k2026", kRef, changed));
    }
    assert_false(verify(keys, "k2026", kRef, t.substr(0, 42)));
    assert_false(verify(keys, "k2026", kRef, t + "A"));
    assert_false(verify(keys, "k2026", kRef, ""));
    assert_false(verify(keys, "k9999", kRef, t));  // unknown key id
    assert_false(verify(keys, "", kRef, t));
    assert_false(verify(keys, "k2025", kRef, t));  // right tag, wrong key id
}

void rotation(void**) {
    Keyring before = ring("k2025 " + crypto::base64_encode(kOldSecret) + "\n");
    std::string old_query = query(before, kRef);
    Keyring after = ring(ring_text());
    assert_string_equal(after.current().id.c_str(), "k2026");
    // URLs handed out before the rotation still verify ...
    Parsed p;
    assert_true(parse_query(old_query, p));
    assert_string_equal(p.kid.c_str(), "k2025");
    assert_true(verify(after, p.kid, p.ref, p.tag));
    // ... new ones use the first key ...
    std::string new_query = query(after, kRef);
    assert_true(parse_query(new_query, p));
    assert_string_equal(p.kid.c_str(), "k2026");
    assert_true(verify(after, p.kid, p.ref, p.tag));
    // ... and once the old key is dropped, its URLs stop working.
    Keyring later = ring("k2026 " + crypto::base64_encode(kNewSecret) + "\n");
    assert_true(parse_query(old_query, p));
    assert_false(verify(later, p.kid, p.ref, p.tag));
}

void keyring_parsing(void**) {
    Keyring keys = ring(ring_text());
    assert_false(keys.empty());
    assert_string_equal(keys.current().id.c_str(), "k2026");
    assert_true(keys.current().secret == kNewSecret);
    assert_non_null(keys.find("k2025"));
    assert_true(keys.find("k2025")->secret == kOldSecret);
    assert_null(keys.find("k2024"));
    assert_null(keys.find(""));
    // CRLF, tabs, indented comments, no final newline.
    Keyring loose = ring("  # comment\r\n\t\r\nA_b-9\t" + crypto::base64_encode(kNewSecret) + "  \r\n");
    assert_string_equal(loose.current().id.c_str(), "A_b-9");
    assert_true(loose.current().secret == kNewSecret);
}

void keyring_errors(void**) {
    const std::string good = crypto::base64_encode(kNewSecret);
    const std::string short_secret = crypto::base64_encode(std::string(31, 's'));
    struct Bad {
        std::string text;
        const char* mentions;
    } bads[] = {
        {"", "no key"},
        {"# only a comment\n\n", "no key"},
        {"k1 " + short_secret + "\n", "32 bytes"},
        {"k1\n", "<id> <base64 secret>"},
        {"k1 " + good + " extra\n", "<id> <base64 secret>"},
        {"abcdefghijklmnopq " + good + "\n", "key id"},  // 17 characters
        {"bad.id " + good + "\n", "key id"},
        {"k\xc3\xa9 " + good + "\n", "key id"},
        {"k1 " + good.substr(1) + "\n", "base64"},
        {"k1 " + crypto::base64url_encode(std::string(32, '\xff')) + "\n", "base64"},
        {"k1 " + good + "\nk1 " + good + "\n", "duplicate"},
        {"k1 " + good + "\n\nk2 " + short_secret + "\n", "line 3"},
    };
    for (const auto& bad : bads) {
        std::string error;
        if (Keyring::parse(bad.text, error)) fail_msg("accepted: %s", bad.text.c_str());
        if (error.find(bad.mentions) == std::string::npos) fail_msg("error: %s", error.c_str());
        assert_true(error.find(good.substr(0, 8)) == std::string::npos);
        assert_true(error.find(short_secret.substr(0, 8)) == std::string::npos);
    }
}

void keyring_files(void**) {
    std::string path = write_temp(ring_text());
    std::string error;
    auto keys = Keyring::load_file(path, error);
    assert_true(keys.has_value());
    assert_string_equal(keys->current().id.c_str(), "k2026");
    unlink(path.c_str());
    assert_false(Keyring::load_file("/nonexistent/capability.keys", error).has_value());
    assert_true(error.rfind("/nonexistent/capability.keys: ", 0) == 0);
    std::string bad_path = write_temp("k1 c2hvcnQ=\n");
    assert_false(Keyring::load_file(bad_path, error).has_value());
    assert_true(error.rfind(bad_path + ": ", 0) == 0);
    assert_true(error.find("c2hvcnQ") == std::string::npos);
    unlink(bad_path.c_str());
}

void query_format(void**) {
    Keyring keys = ring(ring_text());
    std::string q = query(keys, kRef);
    std::string expected = std::string("ref=") + kRef + "&kid=k2026&tag=" + tag(keys.current(), kRef);
    assert_string_equal(q.c_str(), expected.c_str());
    assert_string_equal(query(keys, std::string(64, 'a')).substr(0, 68).c_str(), ("ref=" + std::string(64, 'a')).c_str());
    for (const std::string& bad : {std::string(), std::string(65, 'a'), std::string("a_b"), std::string("a/b"),
                                   std::string("a&b"), std::string("a=b"), std::string("a b"), std::string("a%20")}) {
        bool threw = false;
        try {
            (void)query(keys, bad);
        } catch (const std::invalid_argument&) {
            threw = true;
        }
        if (!threw) fail_msg("query accepted ref \"%s\"", bad.c_str());
    }
}

void parse_query_strict(void**) {
    Keyring keys = ring(ring_text());
    std::string t = tag(keys.current(), kRef);
    std::string ref = std::string("ref=") + kRef, kid = "kid=k2026", tg = "tag=" + t;
    Parsed p;
    for (const std::string& good : {ref + "&" + kid + "&" + tg, tg + "&" + ref + "&" + kid, kid + "&" + tg + "&" + ref}) {
        p = Parsed{};
        assert_true(parse_query(good, p));
        assert_string_equal(p.ref.c_str(), kRef);
        assert_string_equal(p.kid.c_str(), "k2026");
        assert_string_equal(p.tag.c_str(), t.c_str());
        assert_true(verify(keys, p.kid, p.ref, p.tag));
    }
    const std::string bads[] = {
        "",
        ref + "&" + kid,                             // missing tag
        ref + "&" + tg,                              // missing kid
        ref + "&" + ref + "&" + kid + "&" + tg,      // duplicated
        ref + "&" + kid + "&" + tg + "&" + tg,       // duplicated last
        ref + "&" + kid + "&" + tg + "&x=1",         // extra parameter
        ref + "&" + kid + "&" + tg + "&",            // empty trailing parameter
        "&" + ref + "&" + kid + "&" + tg,            // empty leading parameter
        ref + "&&" + kid + "&" + tg,                 // empty middle parameter
        "ref=&" + kid + "&" + tg,                    // empty value
        ref + "&kid=&" + tg,
        ref + "&" + kid + "&tag=",
        ref + "&kid&" + tg,                          // no '='
        ref + "&" + kid + "&tag=" + t.substr(1),     // short tag
        ref + "&" + kid + "&tag=" + t + "A",         // long tag
        ref + "&" + kid + "&tag=" + t.substr(0, 42) + "%",
        ref + "%2D&" + kid + "&" + tg,               // escaping is never needed, so never accepted
        ref + "=x&" + kid + "&" + tg,
        "REF=" + std::string(kRef) + "&" + kid + "&" + tg,
        ref + "&kid=k.2026&" + tg,
        ref + ";" + kid + "&" + tg,
        ref + "&" + kid + "&" + tg + "#frag",
    };
    for (const auto& bad : bads) {
        Parsed untouched{"r", "k", "t"};
        if (parse_query(bad, untouched)) fail_msg("parse_query accepted \"%s\"", bad.c_str());
        assert_string_equal(untouched.ref.c_str(), "r");  // out is only written on success
    }
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tag_is_43_chars_and_deterministic),
        cmocka_unit_test(verify_accepts_only_the_exact_tag),
        cmocka_unit_test(rotation),
        cmocka_unit_test(keyring_parsing),
        cmocka_unit_test(keyring_errors),
        cmocka_unit_test(keyring_files),
        cmocka_unit_test(query_format),
        cmocka_unit_test(parse_query_strict),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

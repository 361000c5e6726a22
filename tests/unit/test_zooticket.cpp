// The ZooTicket merchant API's plain rules: the session body's validation (field-level errors,
// exact money, one currency, the items' sum), URLs, and the AES-256-GCM sealing of personal data.
#include "cmocka.hpp"

#include <cstdio>
#include <string>
#include <unistd.h>

#include "paygated/zooticket.hpp"
#include "test_material.hpp"

using namespace paygate::daemon;
using namespace paygate::daemon::zooticket;

namespace {

const Rules kRules{"2030-01-01", false};

std::string body(const std::string& total = "2500.00", const std::string& extra_item = "",
                 const std::string& date = "2030-01-02") {
    return "{\"session_id\":\"s1\",\"order\":{\"order_id\":\"ZT-1\",\"total_amount\":{\"value\":\"" + total +
           "\",\"currency\":\"RUB\"}},\"description\":\"d\",\"items\":[{\"ticket_type\":\"adult\",\"quantity\":2,"
           "\"unit_price\":{\"value\":\"1000.00\",\"currency\":\"RUB\"},\"visit_date\":\"" + date +
           "\",\"visit_time\":\"10:00\"},{\"ticket_type\":\"child\",\"quantity\":1,\"unit_price\":{\"value\":\"500.00\","
           "\"currency\":\"RUB\"},\"visit_date\":\"" + date + "\"" + extra_item + "}],"
           "\"customer\":{\"email\":\"v@example.com\",\"phone\":\"+79991111111\"},\"payment_methods\":[\"bank_card\"],"
           "\"confirmation\":{\"type\":\"redirect\",\"return_url\":\"https://z.ru/ok\",\"cancel_url\":\"https://z.ru/no\"}}";
}

bool has_error(const Validation& v, const std::string& field) {
    for (const FieldError& e : v.errors) {
        if (e.field == field) return true;
    }
    return false;
}

void valid_body(void**) {
    Validation v = validate_session(body(), kRules);
    if (!v.request) fail_msg("refused: %s %s", v.errors[0].field.c_str(), v.errors[0].message.c_str());
    assert_string_equal(v.request->total.minor_units.c_str(), "250000");
    assert_int_equal(v.request->items.size(), 2);
    assert_string_equal(v.request->customer_json.c_str(), "{\"email\":\"v@example.com\",\"phone\":\"+79991111111\"}");
    assert_int_equal(v.request->fingerprint.size(), 64);
    // Same data respelled: same fingerprint; one value changed: another.
    std::string spaced = body();
    spaced.insert(1, "  ");
    assert_string_equal(validate_session(spaced, kRules).request->fingerprint.c_str(), v.request->fingerprint.c_str());
    std::string other = body();
    other.replace(other.find("\"d\""), 3, "\"e\"");
    assert_string_not_equal(validate_session(other, kRules).request->fingerprint.c_str(), v.request->fingerprint.c_str());
}

void money_and_sum(void**) {
    assert_true(has_error(validate_session(body("2500.01"), kRules), "order.total_amount.value"));
    assert_true(has_error(validate_session(body("2500"), kRules), "order.total_amount.value"));
    assert_true(has_error(validate_session(body("2500.0"), kRules), "order.total_amount.value"));
    assert_true(has_error(validate_session(body("0.00"), kRules), "order.total_amount.value"));
    // A visit today is fine, yesterday is not.
    assert_non_null(validate_session(body("2500.00", "", "2030-01-01"), kRules).request ? &kRules : nullptr);
    assert_true(has_error(validate_session(body("2500.00", "", "2029-12-31"), kRules), "items[0].visit_date"));
    assert_true(has_error(validate_session(body("2500.00", "", "2030-02-29"), kRules), "items[0].visit_date"));
    assert_true(has_error(validate_session(body("2500.00", ",\"x\":1"), kRules), "items[1].x"));
    // Big quantities and prices do not wrap the sum: 1000 x 999999999999999.99 is far past 64 bits of
    // kopecks and still not equal to a total that 64-bit wrapping could produce.
    std::string huge = body("999999999999999.99");
    huge.replace(huge.find("\"quantity\":2"), 12, "\"quantity\":1000");
    huge.replace(huge.find("\"1000.00\""), 9, "\"999999999999999.99\"");
    assert_true(has_error(validate_session(huge, kRules), "order.total_amount.value"));
}

void not_json(void**) {
    Validation v = validate_session("{\"a\":1,}", kRules);
    assert_true(v.not_json);
    assert_true(has_error(v, "body"));
    assert_true(has_error(validate_session("[]", kRules), "body"));
}

void urls(void**) {
    assert_true(acceptable_url("https://zooticket.ru/payment/success", false));
    assert_true(acceptable_url("https://[2001:db8::1]:8443/x?y=1#z", false));
    assert_false(acceptable_url("http://zooticket.ru/", false));
    assert_false(acceptable_url("http://127.0.0.1:8080/ok", false));
    assert_true(acceptable_url("http://127.0.0.1:8080/ok", true));
    assert_true(acceptable_url("http://localhost/ok", true));
    assert_true(acceptable_url("http://[::1]:80/ok", true));
    assert_false(acceptable_url("http://127.0.0.2/ok", true));
    assert_false(acceptable_url("http://localhost.evil.example/ok", true));
    assert_false(acceptable_url("https://user@evil.example/", false));
    assert_false(acceptable_url("https:///path", false));
    assert_false(acceptable_url("https://a b/", false));
    assert_false(acceptable_url("javascript:alert(1)", true));
    assert_false(acceptable_url("https://x/" + std::string(2048, 'a'), false));
}

void sealing(void**) {
    std::string k1 = test_material::write_temp(std::string(64, 'a') + "\n");
    std::string k2 = test_material::write_temp(std::string(32, '0') + std::string(32, 'F') + "\n");
    std::string bad = test_material::write_temp("not hex\n");
    CustomerKeyring old_ring, ring;
    std::string error;
    assert_true(old_ring.add("c1 " + k1, error));
    std::string sealed_old = old_ring.seal("{\"email\":\"v@example.com\"}", "customer:ZT_1");
    assert_true(sealed_old.find("v@example.com") == std::string::npos);
    // Rotation: the new key seals, the old one still opens.
    assert_true(ring.add("c2 " + k2, error));
    assert_true(ring.add("c1 " + k1, error));
    assert_string_equal(ring.sealing_key_id().c_str(), "c2");
    assert_string_equal(ring.open("c1", sealed_old, "customer:ZT_1")->c_str(), "{\"email\":\"v@example.com\"}");
    std::string sealed_new = ring.seal("x", "customer:ZT_1");
    assert_true(ring.open("c2", sealed_new, "customer:ZT_1").has_value());
    assert_false(old_ring.open("c2", sealed_new, "customer:ZT_1").has_value());    // unknown key id
    assert_false(ring.open("c1", sealed_new, "customer:ZT_1").has_value());        // wrong key id
    assert_false(ring.open("c2", sealed_new, "customer:ZT_2").has_value());        // another payment's context
    std::string tampered = sealed_new;
    tampered[13] ^= 1;
    assert_false(ring.open("c2", tampered, "customer:ZT_1").has_value());
    assert_false(ring.open("c2", sealed_new.substr(0, 20), "customer:ZT_1").has_value());
    // Two seals of the same text differ (fresh nonces).
    assert_string_not_equal(ring.seal("x", "c").c_str(), ring.seal("x", "c").c_str());
    // Bad key specs.
    CustomerKeyring r;
    assert_false(r.add("c1 " + bad, error));
    assert_true(error.find("64 hex digits") != std::string::npos);
    assert_false(r.add("c1", error));
    assert_false(r.add("c1 /nonexistent/key", error));
    assert_true(r.add("c1 " + k1, error));
    assert_false(r.add("c1 " + k2, error));
    assert_true(error.find("twice") != std::string::npos);
    unlink(k1.c_str());
    unlink(k2.c_str());
    unlink(bad.c_str());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_body), cmocka_unit_test(money_and_sum), cmocka_unit_test(not_json),
        cmocka_unit_test(urls),       cmocka_unit_test(sealing),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

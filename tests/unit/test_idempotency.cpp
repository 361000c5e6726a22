// Idempotency keys: what makes two requests "the same key" and "the same request".
#include "cmocka.hpp"

#include <string>

#include "paygate/idempotency.hpp"

using namespace paygate::idempotency;

namespace {

const char* kBody =
    "{\"idempotency_token\":\"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\",\"reason\":\"user_request\"}";
const char* kSameBodyOtherForm =
    " { \"reason\" : \"user_\\u0072equest\",\n \"idempotency_token\":\"0B6F7A52-8C1E-4C1B-9F7E-2F4A1D3C5E6F\" } ";
const char* kPayment = "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b";

void applies_to_mutations_only(void**) {
    for (const char* route : {"payment.create", "payment.cancel", "payment.edit", "payment.accept",
                              "payment.extra_charge", "payment.refund"}) {
        assert_true(applies_to(route));
    }
    for (const char* route : {"payment.retrieve", "payment.status", "health", "ping", "auth.tokens", ""}) {
        assert_false(applies_to(route));
    }
}

void same_request_in_another_form_is_the_same(void**) {
    auto a = key_of("12", "payment.cancel", kPayment, kBody);
    auto b = key_of("12", "payment.cancel", "6F1C2B9E-0D7A-4F3E-8B5C-1A2D3E4F5A6B", kSameBodyOtherForm);
    assert_true(a && b);
    assert_string_equal(a->scope.c_str(), b->scope.c_str());
    assert_string_equal(a->request_hash.c_str(), b->request_hash.c_str());
    assert_int_equal(a->scope.size(), 64);
}

void numbers_compare_by_value(void**) {
    auto a = key_of("1", "payment.edit", kPayment,
                    "{\"idempotency_token\":\"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\",\"amount\":1.50}");
    auto b = key_of("1", "payment.edit", kPayment,
                    "{\"idempotency_token\":\"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\",\"amount\":15e-1}");
    auto c = key_of("1", "payment.edit", kPayment,
                    "{\"idempotency_token\":\"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\",\"amount\":1.500000000000000001}");
    assert_true(a && b && c);
    assert_string_equal(a->request_hash.c_str(), b->request_hash.c_str());
    assert_string_not_equal(a->request_hash.c_str(), c->request_hash.c_str());
}

void scope_parts_each_matter(void**) {
    auto base = key_of("12", "payment.cancel", kPayment, kBody);
    auto other_client = key_of("13", "payment.cancel", kPayment, kBody);
    auto other_route = key_of("12", "payment.accept", kPayment, kBody);
    auto other_payment = key_of("12", "payment.cancel", "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6c", kBody);
    auto other_token = key_of("12", "payment.cancel", kPayment,
                              "{\"idempotency_token\":\"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e60\",\"reason\":\"user_request\"}");
    for (const auto& k : {other_client, other_route, other_payment, other_token}) {
        assert_true(k.has_value());
        assert_string_not_equal(k->scope.c_str(), base->scope.c_str());
    }
    // A different body under the same key: same scope, different request hash.
    auto changed = key_of("12", "payment.cancel", kPayment,
                          "{\"idempotency_token\":\"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\",\"reason\":\"other\"}");
    assert_string_equal(changed->scope.c_str(), base->scope.c_str());
    assert_string_not_equal(changed->request_hash.c_str(), base->request_hash.c_str());
}

void unkeyable_bodies(void**) {
    for (const char* body : {"", "[]", "{", "{}", "{\"idempotency_token\":5}", "{\"idempotency_token\":\"nope\"}",
                             "{\"idempotency_token\":\"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\",\"a\":1,\"a\":2}"}) {
        assert_false(key_of("12", "payment.create", "", body).has_value());
    }
}

void uuids_canonicalized(void**) {
    assert_string_equal(canonical_uuid("0B6F7A52-8C1E-4C1B-9F7E-2F4A1D3C5E6F")->c_str(),
                        "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f");
    for (const char* bad : {"", "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6", "0b6f7a52x8c1e-4c1b-9f7e-2f4a1d3c5e6f",
                            "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6g", "{0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6}"}) {
        assert_false(canonical_uuid(bad).has_value());
    }
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(applies_to_mutations_only),
        cmocka_unit_test(same_request_in_another_form_is_the_same),
        cmocka_unit_test(numbers_compare_by_value),
        cmocka_unit_test(scope_parts_each_matter),
        cmocka_unit_test(unkeyable_bodies),
        cmocka_unit_test(uuids_canonicalized),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

// Durable-task arithmetic and provider routing: retry backoff with jitter and a cap, the growing
// re-check interval, first-match routing by currency.
#include "paygated/provider.hpp"
#include "paygated/tasks.hpp"

#include "cmocka.hpp"   // last: its fail() macro would clash with Session::fail

using namespace paygate::daemon;

namespace {

void retry_delay_doubles_with_equal_jitter_and_a_cap(void**) {
    // jitter 0 -> the lower half's edge, 1 -> the full delay
    assert_int_equal(retry_delay_ms(1, 500, 300000, 1.0), 500);
    assert_int_equal(retry_delay_ms(1, 500, 300000, 0.0), 250);
    assert_int_equal(retry_delay_ms(2, 500, 300000, 1.0), 1000);
    assert_int_equal(retry_delay_ms(4, 500, 300000, 1.0), 4000);
    assert_int_equal(retry_delay_ms(40, 500, 300000, 1.0), 300000);   // capped, no overflow
    assert_int_equal(retry_delay_ms(40, 500, 300000, 0.0), 150000);
    for (double r = 0; r <= 1.0; r += 0.125) {
        unsigned d = retry_delay_ms(3, 500, 300000, r);
        assert_true(d >= 1000 && d <= 2000);
    }
}

void recheck_delay_grows_to_its_cap(void**) {
    assert_int_equal(recheck_delay_ms(0, 1000, 600000), 1000);
    assert_int_equal(recheck_delay_ms(1, 1000, 600000), 2000);
    assert_int_equal(recheck_delay_ms(5, 1000, 600000), 32000);
    assert_int_equal(recheck_delay_ms(1000, 1000, 600000), 600000);
}

void routing_is_first_match_by_currency(void**) {
    std::vector<std::pair<std::string, std::string>> routes = {{"BYN", "mserver"}, {"*", "sky-technologies"}};
    assert_string_equal(route_provider(routes, "BYN")->c_str(), "mserver");
    assert_string_equal(route_provider(routes, "USD")->c_str(), "sky-technologies");
    assert_false(route_provider({{"USD", "sky-technologies"}}, "EUR").has_value());
    assert_false(route_provider({}, "USD").has_value());
}

void each_operation_kind_has_its_sending_task(void**) {
    assert_string_equal(send_task_kind("charge"), "sky_technologies_integration_process_payment");
    assert_string_equal(send_task_kind("extra_charge"), "sky_technologies_integration_process_extra_payment");
    assert_string_equal(send_task_kind("reversal"), "sky_technologies_integration_process_payment_reversal");
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retry_delay_doubles_with_equal_jitter_and_a_cap),
        cmocka_unit_test(recheck_delay_grows_to_its_cap),
        cmocka_unit_test(routing_is_first_match_by_currency),
        cmocka_unit_test(each_operation_kind_has_its_sending_task),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

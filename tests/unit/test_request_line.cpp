// mask_query_parameter: a credential in a request line's query is masked, nothing else changes;
// mask_path_segment, parameter_segment, replace_request_target: the same for a path credential.
#include "cmocka.hpp"

#include <optional>
#include <string>

#include "request_line.hpp"

using paygate::module::mask_path_segment;
using paygate::module::mask_query_parameter;
using paygate::module::parameter_segment;
using paygate::module::replace_request_target;

namespace {

std::string masked(const char* line) {
    std::optional<std::string> out = mask_query_parameter(line, "access_token");
    return out ? *out : std::string("(unchanged)");
}

void masks_the_value_wherever_the_parameter_is(void**) {
    assert_string_equal(masked("POST /callbacks/mserver/notify?app_id=a&access_token=s3cret HTTP/1.1").c_str(),
                        "POST /callbacks/mserver/notify?app_id=a&access_token=*** HTTP/1.1");
    assert_string_equal(masked("POST /n?access_token=s3cret&app_id=a HTTP/2.0").c_str(), "POST /n?access_token=***&app_id=a HTTP/2.0");
    // every occurrence, any case, an empty value too
    assert_string_equal(masked("GET /n?ACCESS_TOKEN=x&access_token=y&access_token= HTTP/1.1").c_str(),
                        "GET /n?ACCESS_TOKEN=***&access_token=***&access_token=*** HTTP/1.1");
    // an HTTP/0.9 line has no protocol
    assert_string_equal(masked("GET /n?access_token=s3cret").c_str(), "GET /n?access_token=***");
}

void leaves_everything_else_alone(void**) {
    assert_string_equal(masked("POST /callbacks/mserver/notify HTTP/1.1").c_str(), "(unchanged)");
    assert_string_equal(masked("GET /n?app_id=a HTTP/1.1").c_str(), "(unchanged)");
    // a parameter without '=', other names that contain it, the name in the path
    assert_string_equal(masked("GET /access_token=x?access_token&my_access_token=x&access_tokens=x HTTP/1.1").c_str(),
                        "(unchanged)");
    // a space inside the query (nginx accepts some malformed lines): the rest is not the query
    assert_string_equal(masked("GET /n?a=1 access_token=x HTTP/1.1").c_str(), "(unchanged)");
    assert_string_equal(masked("GET /n?&&access_token=x&& HTTP/1.1").c_str(), "GET /n?&&access_token=***&& HTTP/1.1");
}

std::string path_masked(const char* path, std::size_t index) {
    std::optional<std::string> out = mask_path_segment(path, index, 6);
    return out ? *out : std::string("(unchanged)");
}

void masks_one_path_segment(void**) {
    const char* token = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";
    assert_string_equal(path_masked((std::string("/pay/") + token).c_str(), 1).c_str(), "/pay/AbCdEf***");
    assert_string_equal(path_masked((std::string("/pay/") + token + "/cancel").c_str(), 1).c_str(),
                        "/pay/AbCdEf***/cancel");
    assert_string_equal(path_masked("/pay/abc/", 1).c_str(), "/pay/abc***/");   // shorter than `keep`
    assert_string_equal(path_masked("/pay/x", 0).c_str(), "/pay***/x");
    // no such segment, or an empty one: nothing to mask
    assert_string_equal(path_masked("/pay", 1).c_str(), "(unchanged)");
    assert_string_equal(path_masked("/pay/", 1).c_str(), "(unchanged)");
    assert_string_equal(path_masked("pay/x", 1).c_str(), "(unchanged)");
    assert_string_equal(path_masked("", 0).c_str(), "(unchanged)");
}

void finds_the_parameter_segment(void**) {
    assert_true(parameter_segment("/pay/{token}") == std::optional<std::size_t>(1));
    assert_true(parameter_segment("/pay/{token}/cancel") == std::optional<std::size_t>(1));
    assert_true(parameter_segment("/api/v1/payment/{payment_id}/retrieve") == std::optional<std::size_t>(3));
    assert_true(parameter_segment("/{x}") == std::optional<std::size_t>(0));
    assert_false(parameter_segment("/health").has_value());
    assert_false(parameter_segment("health/{x}").has_value());
}

void replaces_the_request_target(void**) {
    assert_string_equal(replace_request_target("GET /pay/secret HTTP/1.1", "/pay/sec***").c_str(),
                        "GET /pay/sec*** HTTP/1.1");
    // the raw target may be spelled otherwise (//, %2F): the whole target is replaced
    assert_string_equal(replace_request_target("POST //pay/%73ecret/pay HTTP/2.0", "/pay/sec***/pay").c_str(),
                        "POST /pay/sec***/pay HTTP/2.0");
    assert_string_equal(replace_request_target("GET /pay/secret", "/pay/sec***").c_str(), "GET /pay/sec***");
    assert_string_equal(replace_request_target("garbage", "/x").c_str(), "garbage");
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(masks_the_value_wherever_the_parameter_is),
        cmocka_unit_test(leaves_everything_else_alone),
        cmocka_unit_test(masks_one_path_segment),
        cmocka_unit_test(finds_the_parameter_segment),
        cmocka_unit_test(replaces_the_request_target),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

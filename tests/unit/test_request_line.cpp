// mask_query_parameter: a credential in a request line's query is masked, nothing else changes.
#include "cmocka.hpp"

#include <optional>
#include <string>

#include "request_line.hpp"

using paygate::module::mask_query_parameter;

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

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(masks_the_value_wherever_the_parameter_is),
        cmocka_unit_test(leaves_everything_else_alone),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

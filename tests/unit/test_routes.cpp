// The route table matcher: found, not found, wrong method, path parameters.
#include "cmocka.hpp"

#include <string>

#include "paygate/routes.hpp"

using namespace paygate;
using routes::MatchResult;

namespace {

void health_found(void**) {
    auto m = routes::match("GET", "/health");
    assert_true(m.result == MatchResult::Found);
    assert_string_equal(std::string(m.route->name).c_str(), "health");
    assert_true(m.params.empty());
    // A trailing slash is not significant.
    assert_true(routes::match("GET", "/health/").result == MatchResult::Found);
}

// Found by fuzz_routes: "/health//" (and "ping//", "/api/v1/payment/x/retrieve//") matched as if
// the empty last segment were not there. One trailing slash is not significant; two are an
// empty segment, which no pattern has.
void an_empty_last_segment_is_a_segment(void**) {
    for (const char* path : {"/health//", "health//", "/ping//", "/api/v1/payment/x/retrieve//",
                             "/api/v1/payment/create//", "/api/v1/payment/x//"}) {
        assert_true(routes::match("GET", path).result == MatchResult::NotFound);
        assert_true(routes::match("POST", path).result == MatchResult::NotFound);
    }
    assert_true(routes::match("GET", "/api/v1/payment/x/retrieve/").result == MatchResult::Found);
}

void unknown_paths_not_found(void**) {
    for (const char* path : {"/", "", "/healthz", "/health/x", "/api", "//health/x"}) {
        assert_true(routes::match("GET", path).result == MatchResult::NotFound);
    }
}

void wrong_method_lists_allowed(void**) {
    auto m = routes::match("POST", "/health");
    assert_true(m.result == MatchResult::MethodNotAllowed);
    assert_null(m.route);
    assert_string_equal(m.allowed.c_str(), "GET");
    // Methods paygate never serves are refused the same way, not treated as unknown paths.
    for (const char* method : {"HEAD", "OPTIONS", "get", ""}) {
        assert_true(routes::match(method, "/health").result == MatchResult::MethodNotAllowed);
    }
    assert_true(routes::match("TRACE", "/nowhere").result == MatchResult::NotFound);
}

void merchant_surface_paths(void**) {
    assert_true(routes::merchant_surface("/v1/payments/sessions"));
    assert_true(routes::merchant_surface("/v1/"));
    assert_true(routes::merchant_surface("/v1"));
    assert_false(routes::merchant_surface("/v10/x"));
    assert_false(routes::merchant_surface("/api/v1/payment/create"));
    assert_false(routes::merchant_surface("/pay/abc"));
    // Every MerchantJwt route is on the surface (its errors share the envelope).
    for (const auto& route : routes::table()) {
        if (route.access == routes::Access::MerchantJwt) assert_true(routes::merchant_surface(route.pattern));
    }
}

void every_route_matches_itself(void**) {
    for (const auto& route : routes::table()) {
        std::string path;
        std::string pattern(route.pattern);
        // Replace each {param} with a value and expect it back as a parameter.
        std::size_t params = 0;
        for (std::size_t i = 0; i < pattern.size(); ++i) {
            if (pattern[i] == '{') {
                std::size_t close = pattern.find('}', i);
                path += "v" + std::to_string(params++);
                i = close;
            } else {
                path += pattern[i];
            }
        }
        auto m = routes::match(ipc::method_name(route.method), path);
        assert_true(m.result == MatchResult::Found);
        assert_true(m.route == &route);
        assert_int_equal(m.params.size(), params);
    }
}

void payment_routes_take_the_id(void**) {
    auto m = routes::match("GET", "/api/v1/payment/8a7f/retrieve/status");
    assert_true(m.result == MatchResult::Found);
    assert_string_equal(std::string(m.route->name).c_str(), "payment.status");
    assert_true(m.route->access == routes::Access::Client);
    assert_int_equal(m.params.size(), 1);
    assert_string_equal(m.params[0].first.c_str(), "payment_id");
    assert_string_equal(m.params[0].second.c_str(), "8a7f");
    // "create" is a literal segment, not an id: POST create is create, GET create is 405 there
    // only because retrieve needs one more segment.
    assert_true(routes::match("POST", "/api/v1/payment/create").route->name == "payment.create");
    assert_true(routes::match("GET", "/api/v1/payment//retrieve").result == MatchResult::NotFound);
    assert_true(routes::match("GET", "/api/v1/payment/x/y/retrieve").result == MatchResult::NotFound);
    assert_true(routes::match("DELETE", "/api/v1/payment/x/cancel").result == MatchResult::MethodNotAllowed);
    assert_true(routes::match("GET", "/health").route->access == routes::Access::Public);
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(health_found),
        cmocka_unit_test(an_empty_last_segment_is_a_segment),
        cmocka_unit_test(unknown_paths_not_found),
        cmocka_unit_test(wrong_method_lists_allowed),
        cmocka_unit_test(every_route_matches_itself),
        cmocka_unit_test(merchant_surface_paths),
        cmocka_unit_test(payment_routes_take_the_id),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

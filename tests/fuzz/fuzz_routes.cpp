// The route matcher (ipc/routes.cpp) against a reference written here from routes.hpp's
// contract: a pattern's segments are literals or {name} (one non-empty path segment); the path
// matches when its segments, after dropping one leading and one trailing '/', are the pattern's;
// the first route of the table whose pattern matches and whose method is the request's wins; a
// path that matches only under other methods is 405 with those methods, in table order, as Allow.
//
// Input: byte 0 picks the method (some of them never in the table), the rest is the path.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "paygate/routes.hpp"

namespace ipc = paygate::ipc;
namespace routes = paygate::routes;

namespace {

const char* const kMethods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "get", "", "POS", "GETS"};

std::vector<std::string_view> segments(std::string_view path) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (true) {
        const std::size_t slash = path.find('/', start);
        out.push_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
        if (slash == std::string_view::npos) return out;
        start = slash + 1;
    }
}

std::string_view trimmed(std::string_view path) {
    if (!path.empty() && path.front() == '/') path.remove_prefix(1);
    if (!path.empty() && path.back() == '/') path.remove_suffix(1);
    return path;
}

bool reference_match(std::string_view pattern, std::string_view path, std::vector<ipc::NameValue>& params) {
    params.clear();
    const auto want = segments(trimmed(pattern));
    const auto got = segments(trimmed(path));
    if (want.size() != got.size()) return false;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const std::string_view w = want[i];
        if (w.size() > 2 && w.front() == '{' && w.back() == '}') {
            if (got[i].empty()) return false;
            params.emplace_back(std::string(w.substr(1, w.size() - 2)), std::string(got[i]));
        } else if (w != got[i]) {
            return false;
        }
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::string_view method = kMethods[data[0] % (sizeof kMethods / sizeof kMethods[0])];
    const std::string_view path(reinterpret_cast<const char*>(data) + 1, size - 1);

    routes::Match expected;
    std::vector<ipc::NameValue> params;
    for (const routes::Route& route : routes::table()) {
        if (!reference_match(route.pattern, path, params)) continue;
        if (ipc::method_name(route.method) == method) {
            expected.result = routes::MatchResult::Found;
            expected.route = &route;
            expected.params = params;
            expected.allowed.clear();
            break;
        }
        expected.result = routes::MatchResult::MethodNotAllowed;
        if (!expected.allowed.empty()) expected.allowed += ", ";
        expected.allowed += ipc::method_name(route.method);
    }

    const routes::Match got = routes::match(method, path);
    FUZZ_CHECK(got.result == expected.result, "match result differs from the reference");
    FUZZ_CHECK(got.route == expected.route, "matched another route than the reference");
    FUZZ_CHECK(got.params == expected.params, "path parameters differ from the reference");
    FUZZ_CHECK(got.allowed == expected.allowed, "Allow differs from the reference");
    // A trailing slash is not significant (routes.hpp).
    if (path.empty() || path.back() != '/') {
        const routes::Match slashed = routes::match(method, std::string(path) + "/");
        FUZZ_CHECK(slashed.result == got.result && slashed.route == got.route && slashed.params == got.params,
                   "a trailing slash changed the match");
    }
    return 0;
}

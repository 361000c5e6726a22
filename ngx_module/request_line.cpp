// Masking a query parameter's value in a request line (request_line.hpp).
#include "request_line.hpp"

namespace paygate::module {
namespace {

bool same_ascii_case_insensitive(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

}  // namespace

std::optional<std::string> mask_query_parameter(std::string_view request_line, std::string_view name) {
    std::size_t q = request_line.find('?');
    if (q == std::string_view::npos) return std::nullopt;
    // The query ends at the space before the protocol (an HTTP/0.9 line has none).
    std::size_t end = request_line.find(' ', q);
    if (end == std::string_view::npos) end = request_line.size();
    std::string masked(request_line.substr(0, q + 1));
    std::string_view query = request_line.substr(q + 1, end - q - 1);
    bool changed = false;
    while (true) {
        std::size_t amp = query.find('&');
        std::string_view param = query.substr(0, amp);
        std::size_t eq = param.find('=');
        if (eq != std::string_view::npos && same_ascii_case_insensitive(param.substr(0, eq), name)) {
            masked.append(param.substr(0, eq + 1)).append("***");
            changed = true;
        } else {
            masked.append(param);
        }
        if (amp == std::string_view::npos) break;
        masked.push_back('&');
        query.remove_prefix(amp + 1);
    }
    if (!changed) return std::nullopt;
    masked.append(request_line.substr(end));
    return masked;
}

}  // namespace paygate::module

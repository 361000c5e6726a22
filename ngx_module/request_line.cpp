// Masking a query parameter's value in a request line (request_line.hpp).
#include "request_line.hpp"

#include <algorithm>

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

std::optional<std::string> mask_path_segment(std::string_view path, std::size_t index, std::size_t keep) {
    if (path.empty() || path.front() != '/') return std::nullopt;
    std::size_t start = 1;
    for (std::size_t i = 0; i < index; ++i) {
        std::size_t slash = path.find('/', start);
        if (slash == std::string_view::npos) return std::nullopt;
        start = slash + 1;
    }
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end == start) return std::nullopt;
    std::string masked(path.substr(0, start));
    masked.append(path.substr(start, std::min(keep, end - start))).append("***").append(path.substr(end));
    return masked;
}

std::optional<std::size_t> parameter_segment(std::string_view pattern) {
    if (pattern.empty() || pattern.front() != '/') return std::nullopt;
    pattern.remove_prefix(1);
    for (std::size_t index = 0;; ++index) {
        std::size_t slash = pattern.find('/');
        std::string_view segment = pattern.substr(0, slash);
        if (!segment.empty() && segment.front() == '{') return index;
        if (slash == std::string_view::npos) return std::nullopt;
        pattern.remove_prefix(slash + 1);
    }
}

std::string replace_request_target(std::string_view request_line, std::string_view target) {
    std::size_t first = request_line.find(' ');
    if (first == std::string_view::npos) return std::string(request_line);
    std::size_t second = request_line.find(' ', first + 1);
    std::string out(request_line.substr(0, first + 1));
    out.append(target);
    if (second != std::string_view::npos) out.append(request_line.substr(second));
    return out;
}

}  // namespace paygate::module

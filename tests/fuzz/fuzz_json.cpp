// The strict JSON reader (ipc/json*.cpp) on arbitrary bytes. Beyond "no crash": what it accepts
// has a canonical form that parses back to itself, the compact writer round-trips, and the two
// limits (depth, string bytes) hold exactly at the value's own depth and longest string.
// Python's opinion on the same inputs is json_differential.py's job.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "paygate/json.hpp"

namespace json = paygate::json;

namespace {

struct Shape {
    std::size_t depth = 0;          // containers nested (a scalar alone: 0)
    std::size_t longest = 0;        // longest string or key, in bytes
};

void measure(const json::Value& v, std::size_t level, Shape& shape) {
    switch (v.type()) {
        case json::Type::String:
            shape.longest = std::max(shape.longest, v.text().size());
            return;
        case json::Type::Number: {
            const std::string c = json::canonical_number(v.text());
            FUZZ_CHECK(json::is_number_lexeme(v.text()), "a number whose text is not a JSON number");
            FUZZ_CHECK(json::is_number_lexeme(c), "canonical_number made something that is not a number");
            FUZZ_CHECK(json::canonical_number(c) == c, "canonical_number is not idempotent");
            return;
        }
        case json::Type::Array:
            shape.depth = std::max(shape.depth, level + 1);
            for (const auto& item : v.items()) measure(item, level + 1, shape);
            return;
        case json::Type::Object:
            shape.depth = std::max(shape.depth, level + 1);
            for (const auto& [key, value] : v.members()) {
                shape.longest = std::max(shape.longest, key.size());
                FUZZ_CHECK(v.find(key) == &value, "find() does not return the one member of its key");
                measure(value, level + 1, shape);
            }
            return;
        default:
            return;
    }
}

bool parses(std::string_view text, json::Value& out, const json::ParseLimits& limits = {}) {
    json::ParseError error;
    return json::parse(text, out, error, limits);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    json::Value value;
    json::ParseError error;
    if (!json::parse(text, value, error)) {
        FUZZ_CHECK(error.offset <= size, "error offset past the input");
        FUZZ_CHECK(!error.message.empty(), "a refusal without a reason");
        return 0;
    }

    const std::string canonical = json::canonical(value);
    json::Value again;
    FUZZ_CHECK(parses(canonical, again), "the canonical form does not parse");
    FUZZ_CHECK(json::canonical(again) == canonical, "the canonical form is not a fixed point");
    FUZZ_CHECK(canonical.size() <= size * 6 + 2, "the canonical form grew out of proportion");
    json::Value compact;
    FUZZ_CHECK(parses(json::serialize(value), compact), "the compact form does not parse");
    FUZZ_CHECK(json::canonical(compact) == canonical, "the compact form changed the data");

    // The limits are exact: the value's own depth and longest string pass, one less refuses.
    Shape shape;
    measure(value, 0, shape);
    FUZZ_CHECK(shape.depth <= json::ParseLimits{}.max_depth, "accepted nesting deeper than the default limit");
    json::ParseLimits tight;
    tight.max_depth = shape.depth;
    tight.max_string_bytes = shape.longest;
    json::Value tight_value;
    FUZZ_CHECK(parses(text, tight_value, tight), "refused at limits equal to its own depth and longest string");
    if (shape.depth > 0) {
        json::ParseLimits shallow = tight;
        shallow.max_depth = shape.depth - 1;
        json::Value ignored;
        FUZZ_CHECK(!json::parse(text, ignored, error, shallow) &&
                       error.message.rfind("nesting deeper than", 0) == 0,
                   "not refused for depth one below its own");
    }
    if (shape.longest > 0) {
        json::ParseLimits short_strings = tight;
        short_strings.max_string_bytes = shape.longest - 1;
        json::Value ignored;
        FUZZ_CHECK(!json::parse(text, ignored, error, short_strings) &&
                       error.message.rfind("string longer than", 0) == 0,
                   "not refused for a string one byte over the limit");
    }
    return 0;
}

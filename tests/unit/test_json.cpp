// The strict JSON reader and the canonical writer: every class of bad input rejected with an
// offset and a reason, numbers kept exact, and canonical text equal exactly when the data is.
#include "cmocka.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "paygate/json.hpp"

using namespace paygate::json;

namespace {

Value parse_ok(std::string_view text, const ParseLimits& limits = {}) {
    Value v;
    ParseError error;
    bool ok = parse(text, v, error, limits);
    if (!ok) print_error("unexpected parse failure of [%.*s]: %zu %s\n", static_cast<int>(text.size()), text.data(),
                         error.offset, error.message.c_str());
    assert_true(ok);
    return v;
}

void expect_error(std::string_view text, std::size_t offset, const char* message_part,
                  const ParseLimits& limits = {}) {
    Value v;
    ParseError error;
    bool ok = parse(text, v, error, limits);
    if (ok || error.offset != offset || error.message.find(message_part) == std::string::npos) {
        print_error("input [%.*s]: ok=%d offset=%zu (want %zu) message \"%s\" (want \"%s\")\n",
                    static_cast<int>(std::min<std::size_t>(text.size(), 80)), text.data(), ok, error.offset, offset,
                    error.message.c_str(), message_part);
    }
    assert_false(ok);
    assert_int_equal(error.offset, offset);
    assert_non_null(strstr(error.message.c_str(), message_part));
}

std::string canon(std::string_view text) { return canonical(parse_ok(text)); }

void scalars_and_containers(void**) {
    assert_true(parse_ok("null").is(Type::Null));
    Value t = parse_ok(" true ");
    assert_true(t.is(Type::Bool) && t.boolean());
    Value f = parse_ok("\tfalse\r\n");
    assert_true(f.is(Type::Bool) && !f.boolean());
    Value n = parse_ok("-1.50e3");
    assert_true(n.is(Type::Number));
    assert_string_equal(n.text().c_str(), "-1.50e3");   // the lexeme, as written
    Value s = parse_ok("\"h\\u00e9llo\"");
    assert_true(s.is(Type::String));
    assert_string_equal(s.text().c_str(), "h\xc3\xa9llo");
    Value a = parse_ok("[1, [2, []], {}]");
    assert_true(a.is(Type::Array));
    assert_int_equal(a.items().size(), 3);
    assert_int_equal(a.items()[1].items().size(), 2);
    assert_true(a.items()[1].items()[1].is(Type::Array));
    assert_true(a.items()[2].is(Type::Object));
    Value o = parse_ok("{\"z\": 1, \"a\": {\"b\": null}, \"m\": \"x\"}");
    assert_true(o.is(Type::Object));
    assert_int_equal(o.members().size(), 3);
    assert_string_equal(o.members()[0].first.c_str(), "z");   // document order
    assert_string_equal(o.members()[2].first.c_str(), "m");
    assert_non_null(o.find("a"));
    assert_non_null(o.find("a")->find("b"));
    assert_true(o.find("a")->find("b")->is(Type::Null));
    assert_null(o.find("nope"));
    assert_null(a.find("z"));   // not an object
    assert_null(n.find("z"));
    // Every number form of the grammar.
    for (const char* num : {"0", "-0", "0.0", "10", "1e5", "1E5", "1e+5", "1e-5", "-12.340e-007", "0e0", "9007199254740993"}) {
        Value v = parse_ok(num);
        assert_true(v.is(Type::Number));
        assert_string_equal(v.text().c_str(), num);
    }
}

void type_names(void**) {
    assert_string_equal(std::string(type_name(Type::Null)).c_str(), "null");
    assert_string_equal(std::string(type_name(Type::Bool)).c_str(), "boolean");
    assert_string_equal(std::string(type_name(Type::Number)).c_str(), "number");
    assert_string_equal(std::string(type_name(Type::String)).c_str(), "string");
    assert_string_equal(std::string(type_name(Type::Array)).c_str(), "array");
    assert_string_equal(std::string(type_name(Type::Object)).c_str(), "object");
}

void structure_errors(void**) {
    expect_error("", 0, "unexpected end of input");
    expect_error("   ", 3, "unexpected end of input");
    expect_error("{", 1, "unexpected end of input");
    expect_error("[", 1, "unexpected end of input");
    expect_error("[1", 2, "unexpected end of input");
    expect_error("{\"a\"", 4, "unexpected end of input");
    expect_error("{\"a\":", 5, "unexpected end of input");
    expect_error("{\"a\":1", 6, "unexpected end of input");
    expect_error("[1,]", 3, "trailing comma in array");
    expect_error("{\"a\":1,}", 7, "trailing comma in object");
    expect_error("[,1]", 1, "unexpected character ','");
    expect_error("{,}", 1, "expected a string key");
    expect_error("{\"a\" 1}", 5, "expected ':'");
    expect_error("{1:2}", 1, "expected a string key");
    expect_error("{'a':1}", 1, "expected a string key");
    expect_error("[1 2]", 3, "expected ',' or ']'");
    expect_error("{\"a\":1 \"b\":2}", 7, "expected ',' or '}'");
    expect_error("[1}", 2, "expected ',' or ']'");
    expect_error("{\"a\":1]", 6, "expected ',' or '}'");
    expect_error("]", 0, "unexpected character ']'");
    expect_error("}", 0, "unexpected character '}'");
    expect_error("1 2", 2, "unexpected data after the JSON value");
    expect_error("{} x", 3, "unexpected data after the JSON value");
    expect_error("[]]", 2, "unexpected data after the JSON value");
    expect_error("nullnull", 4, "unexpected data after the JSON value");
    expect_error(std::string_view("{}\0", 3), 2, "unexpected data after the JSON value");
    expect_error(std::string_view("\0", 1), 0, "unexpected byte 0x00");
    expect_error("\xef\xbb\xbf{}", 0, "unexpected byte 0xef");   // no byte order mark
    expect_error("tru", 0, "invalid literal");
    expect_error("nul", 0, "invalid literal");
    expect_error("fals", 0, "invalid literal");
    expect_error("True", 0, "unexpected character 'T'");
    expect_error("NULL", 0, "unexpected character 'N'");
    expect_error("undefined", 0, "unexpected character 'u'");
    expect_error("/* c */ 1", 0, "unexpected character '/'");
    expect_error("\v1", 0, "unexpected byte 0x0b");   // only space, tab, CR, LF are whitespace
    expect_error("\f1", 0, "unexpected byte 0x0c");
}

void number_errors(void**) {
    expect_error("01", 0, "leading zeros");
    expect_error("-01", 1, "leading zeros");
    expect_error("00", 0, "leading zeros");
    expect_error("[007]", 1, "leading zeros");
    expect_error("1.", 2, "after the decimal point");
    expect_error("1.e5", 2, "after the decimal point");
    expect_error(".5", 0, "unexpected character '.'");
    expect_error("+1", 0, "unexpected character '+'");
    expect_error("-", 1, "expected a digit");
    expect_error("-a", 1, "expected a digit");
    expect_error("- 1", 1, "expected a digit");
    expect_error("1e", 2, "exponent");
    expect_error("1e+", 3, "exponent");
    expect_error("1E-x", 3, "exponent");
    expect_error("NaN", 0, "unexpected character 'N'");
    expect_error("Infinity", 0, "unexpected character 'I'");
    expect_error("-Infinity", 1, "expected a digit");
    expect_error("0x10", 1, "unexpected data after");
    expect_error("1,5", 1, "unexpected data after");
    expect_error("1.5.2", 3, "unexpected data after");
    expect_error("[1e5e5]", 4, "expected ',' or ']'");
}

void string_errors(void**) {
    expect_error("\"abc", 4, "unterminated string");
    expect_error("\"abc\\", 5, "unterminated string");
    expect_error("\"a\x01\"", 2, "control character");
    expect_error("\"a\nb\"", 2, "control character");
    expect_error("\"a\tb\"", 2, "control character");
    expect_error(std::string_view("\"a\0b\"", 5), 2, "control character");
    expect_error("\"\\x\"", 1, "invalid escape");
    expect_error("\"\\'\"", 1, "invalid escape");
    expect_error("\"\\U0041\"", 1, "invalid escape");
    expect_error("\"\\u12G4\"", 5, "invalid hex digit");
    expect_error("\"\\u12\"", 5, "invalid hex digit");
    expect_error("\"\\u12", 5, "unexpected end of input in \\u escape");
    expect_error("\"\\udc00\"", 1, "lone low surrogate");
    expect_error("\"\\udfff\"", 1, "lone low surrogate");
    expect_error("\"\\ud800\"", 1, "high surrogate not followed");
    expect_error("\"\\ud800x\"", 1, "high surrogate not followed");
    expect_error("\"\\ud800\\u0041\"", 1, "high surrogate not followed");
    expect_error("\"\\ud800\\ud800\"", 1, "high surrogate not followed");
    expect_error("\"\\ud800\\n\"", 1, "high surrogate not followed");
    expect_error("\"\\ud800\\udc0g\"", 12, "invalid hex digit");
    expect_error("\"ok\\ud83d", 3, "high surrogate not followed");
    // Object keys go through the same checks.
    expect_error("{\"a\x01\":1}", 3, "control character");
    expect_error("{\"\\udc00\":1}", 2, "lone low surrogate");
}

void utf8_validated(void**) {
    // Well-formed: 2, 3 and 4 byte sequences at the edges of their ranges, and DEL.
    for (const char* ok : {"\"\xc2\x80\"", "\"\xdf\xbf\"", "\"\xe0\xa0\x80\"", "\"\xed\x9f\xbf\"", "\"\xee\x80\x80\"",
                           "\"\xef\xbf\xbf\"", "\"\xf0\x90\x80\x80\"", "\"\xf4\x8f\xbf\xbf\"", "\"\x7f\"",
                           "\"\xd0\xbf\xd0\xbb\xd0\xb0\xd1\x82\xd1\x91\xd0\xb6 \xe2\x82\xac \xf0\x9f\x98\x80\""}) {
        Value v = parse_ok(ok);
        assert_string_equal(v.text().c_str(), std::string(ok + 1, strlen(ok) - 2).c_str());
    }
    struct Bad {
        const char* text;
        std::size_t offset;
    };
    const Bad bad[] = {
        {"\"\x80\"", 1},                 // lone continuation byte
        {"\"\xbf\"", 1},
        {"\"\xc0\xaf\"", 1},             // overlong '/'
        {"\"\xc1\xbf\"", 1},             // overlong
        {"\"\xe0\x80\xaf\"", 1},         // overlong 3-byte
        {"\"\xe0\x9f\xbf\"", 1},         // overlong 3-byte, top
        {"\"\xf0\x80\x80\xaf\"", 1},     // overlong 4-byte
        {"\"\xf0\x8f\xbf\xbf\"", 1},     // overlong 4-byte, top
        {"\"\xed\xa0\x80\"", 1},         // UTF-16 surrogate D800 encoded
        {"\"\xed\xbf\xbf\"", 1},         // DFFF
        {"\"\xf4\x90\x80\x80\"", 1},     // above U+10FFFF
        {"\"\xf5\x80\x80\x80\"", 1},
        {"\"\xf8\x88\x80\x80\x80\"", 1}, // 5-byte form
        {"\"\xfe\"", 1},
        {"\"\xff\"", 1},
        {"\"\xc3\"", 1},                 // truncated by the closing quote
        {"\"\xe2\x82\"", 1},
        {"\"\xf0\x9f\x98\"", 1},
        {"\"ab\xc3(\"", 3},              // bad continuation
        {"\"\xe2(\xa1\"", 1},
        {"\"\xc3", 1},                   // truncated by the end of input
        {"\"\xf0\x9f", 1},
    };
    for (const Bad& b : bad) expect_error(b.text, b.offset, "invalid UTF-8 in string");
    expect_error("{\"k\xff\":1}", 3, "invalid UTF-8 in string");
}

void escapes_decoded(void**) {
    Value v = parse_ok("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"");
    assert_string_equal(v.text().c_str(), "\"\\/\b\f\n\r\t");
    assert_string_equal(parse_ok("\"\\u0041\\u00E9\\u20ac\"").text().c_str(), "A\xc3\xa9\xe2\x82\xac");
    // Surrogate pairs become one 4-byte sequence, any hex case.
    assert_string_equal(parse_ok("\"\\ud83d\\ude00\"").text().c_str(), "\xf0\x9f\x98\x80");
    assert_string_equal(parse_ok("\"\\uD83D\\uDE00\"").text().c_str(), "\xf0\x9f\x98\x80");
    assert_string_equal(parse_ok("\"\\udbff\\udfff\"").text().c_str(), "\xf4\x8f\xbf\xbf");
    assert_string_equal(parse_ok("\"\\ud800\\udc00\"").text().c_str(), "\xf0\x90\x80\x80");
    // U+0000 is allowed as an escape and kept.
    Value nul = parse_ok("\"a\\u0000b\"");
    assert_int_equal(nul.text().size(), 3);
    assert_int_equal(nul.text()[1], '\0');
    assert_string_equal(parse_ok("\"\\u007f\\u0080\\u07ff\\u0800\\uffff\"").text().c_str(),
                        "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf");
}

void depth_limited(void**) {
    auto nested = [](std::size_t depth, char open, char close) {
        return std::string(depth, open) + std::string(depth, close);
    };
    parse_ok(nested(32, '[', ']'));
    expect_error(nested(33, '[', ']'), 32, "nesting deeper than 32 levels");
    std::string objects;
    for (int i = 0; i < 32; ++i) objects += "{\"a\":";
    objects += "1";
    for (int i = 0; i < 32; ++i) objects += "}";
    parse_ok(objects);
    expect_error("{\"a\":" + objects + "}", 5 * 32, "nesting deeper than 32 levels");
    // Mixed, and scalars do not count as a level.
    parse_ok("[{\"a\":[{\"b\":[1,\"x\",null]}]}]", ParseLimits{5, 1024});
    expect_error("[{\"a\":[{\"b\":[[1]]}]}]", 13, "nesting deeper than 5 levels", ParseLimits{5, 1024});
    parse_ok("1", ParseLimits{0, 1024});
    expect_error("[]", 0, "nesting deeper than 0 levels", ParseLimits{0, 1024});
    // A huge nesting attempt fails at the limit, without recursion or allocation per level.
    std::string deep(1000000, '[');
    expect_error(deep, 32, "nesting deeper than 32 levels");
    // With a generous limit the reader itself does not recurse (ASan would catch a stack overflow).
    parse_ok(nested(5000, '[', ']'), ParseLimits{5000, 1024});
}

void duplicate_keys_rejected(void**) {
    expect_error("{\"a\":1,\"a\":2}", 7, "duplicate key \"a\"");
    expect_error("{\"a\":1,\"b\":2,\"\\u0061\":3}", 13, "duplicate key \"a\"");   // same after decoding
    expect_error("{\"x\":{\"a\":1,\"a\":1}}", 12, "duplicate key \"a\"");
    expect_error("[{\"\":1,\"\":2}]", 7, "duplicate key \"\"");
    // Large objects (past the linear-scan size) too, wherever the duplicate is.
    std::string big = "{";
    for (int i = 0; i < 100; ++i) big += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
    std::string ok = big;
    ok.back() = '}';
    assert_int_equal(parse_ok(ok).members().size(), 100);
    for (int dup : {0, 15, 16, 17, 99}) {
        std::string text = big + "\"k" + std::to_string(dup) + "\":0}";
        expect_error(text, big.size(), ("duplicate key \"k" + std::to_string(dup) + "\"").c_str());
    }
    // Keys differing only by case or by a byte are distinct.
    assert_int_equal(parse_ok("{\"a\":1,\"A\":2,\"a \":3}").members().size(), 3);
    // A long duplicate key is cut in the message.
    std::string key(300, 'k');
    Value v;
    ParseError error;
    assert_false(parse("{\"" + key + "\":1,\"" + key + "\":2}", v, error));
    assert_true(error.message.size() < 120);
    assert_non_null(strstr(error.message.c_str(), "duplicate key"));
}

void string_size_limited(void**) {
    ParseLimits limits{32, 4};
    parse_ok("\"abcd\"", limits);
    expect_error("\"abcde\"", 0, "string longer than 4 bytes", limits);
    expect_error("[\"ok\",\"abcde\"]", 6, "string longer than 4 bytes", limits);
    expect_error("{\"abcde\":1}", 1, "string longer than 4 bytes", limits);
    // Decoded bytes count: 2 escapes of a 3-byte character are 6 bytes.
    expect_error("\"\\u20ac\\u20ac\"", 0, "string longer than 4 bytes", limits);
    parse_ok("\"\\u20ac\"", limits);
    // The default limit is 64 KiB.
    parse_ok("\"" + std::string(64 * 1024, 'x') + "\"");
    expect_error("\"" + std::string(64 * 1024 + 1, 'x') + "\"", 0, "string longer than 65536 bytes");
}

void every_truncation_rejected(void**) {
    const std::string doc =
        "{\"a\": [1, -2.5e+3, true, false, null, \"x\\u00e9\\ud83d\\ude00\xc3\xa9\"], \"b\": {\"c\": {}}, \"d\": []}";
    parse_ok(doc);
    for (std::size_t n = 0; n < doc.size(); ++n) {
        std::string cut = doc.substr(0, n);   // a copy of exactly n bytes, so ASan sees overreads
        Value v;
        ParseError error;
        assert_false(parse(cut, v, error));
        assert_true(error.offset <= n);
        assert_false(error.message.empty());
    }
}

void garbage_never_crashes(void**) {
    // Deterministic pseudo-random bytes, biased towards JSON punctuation.
    std::uint32_t state = 12345;
    const char alphabet[] = "{}[]:,\"\\u0123456789abcdefe.-+ tnrl\x80\xc3\xed\xf0\xff";
    for (int round = 0; round < 3000; ++round) {
        std::string text;
        std::size_t len = round % 40;
        for (std::size_t i = 0; i < len; ++i) {
            state = state * 1103515245u + 12345u;
            text.push_back(alphabet[(state >> 16) % (sizeof alphabet - 1)]);
        }
        Value v;
        ParseError error;
        if (parse(text, v, error)) {
            // Whatever parses, its canonical form parses again to the same canonical form.
            std::string c = canonical(v);
            assert_string_equal(canon(c).c_str(), c.c_str());
        } else {
            assert_true(error.offset <= text.size());
        }
    }
}

void canonical_number_normalizes(void**) {
    struct Case {
        const char* in;
        const char* out;
    };
    const Case cases[] = {
        {"0", "0"}, {"-0", "0"}, {"0.0", "0"}, {"-0.000", "0"}, {"0e5", "0"}, {"0e-5", "0"}, {"-0E+999", "0"},
        {"1", "1"}, {"-1", "-1"}, {"100", "100"}, {"1e2", "100"}, {"1E+2", "100"}, {"1e+02", "100"},
        {"0.10", "0.1"}, {"1.50", "1.5"}, {"15e-1", "1.5"}, {"0.0015e3", "1.5"}, {"-1.50", "-1.5"},
        {"1.5E+3", "1500"}, {"12300e-2", "123"}, {"12300", "12300"}, {"1.0", "1"}, {"10.0e-1", "1"},
        {"0.000001", "0.000001"}, {"1e-6", "0.000001"}, {"123.456", "123.456"}, {"-0.5e-1", "-0.05"},
        {"1e20", "100000000000000000000"}, {"1e21", "1e21"}, {"1e30", "1e30"}, {"-1e30", "-1e30"},
        {"1e-20", "0.00000000000000000001"}, {"1e-21", "1e-21"}, {"12e20", "1200000000000000000000"},
        {"12e21", "12e21"}, {"1.5e21", "1500000000000000000000"}, {"1.5e22", "15e21"}, {"123e-22", "123e-22"},
        {"1e400", "1e400"}, {"-1e-400", "-1e-400"}, {"100e398", "1e400"}, {"0.01e402", "1e400"},
        {"9007199254740993", "9007199254740993"}, {"0.30000000000000004", "0.30000000000000004"},
        {"1e999999999", "1e999999999"}, {"1e-999999999", "1e-999999999"},
        {"1e000000000000000000000000000001", "10"},
        // Exponents beyond 64 bits stay exact, with carries and borrows across the digits.
        {"1e99999999999999999999999", "1e99999999999999999999999"},
        {"10e9999999999999999999", "1e10000000000000000000"},
        {"0.1e10000000000000000000", "1e9999999999999999999"},
        {"100e-9999999999999999999", "1e-9999999999999999997"},
        {"0.001e-9999999999999999998", "1e-10000000000000000001"},
        {"123.45e-1000000000000000000000000", "12345e-1000000000000000000000002"},
        {"1.0e9999999999999999999", "1e9999999999999999999"},
        {"-0.0e99999999999999999999999", "0"},
    };
    for (const Case& c : cases) {
        std::string got = canonical_number(c.in);
        if (got != c.out) print_error("canonical_number(%s) = %s, want %s\n", c.in, got.c_str(), c.out);
        assert_string_equal(got.c_str(), c.out);
        // The canonical form is itself a valid lexeme and a fixed point.
        assert_true(is_number_lexeme(got));
        assert_string_equal(canonical_number(got).c_str(), c.out);
    }
    // Not a number lexeme: returned unchanged.
    for (const char* bad : {"", "01", "1.", ".5", "+1", "1e", "NaN", " 1", "1 ", "0x1"}) {
        assert_false(is_number_lexeme(bad));
        assert_string_equal(canonical_number(bad).c_str(), bad);
    }
    // A very long mantissa stays exact (no float anywhere).
    std::string digits = "1" + std::string(500, '0') + "1";
    assert_string_equal(canonical_number(digits).c_str(), digits.c_str());
    assert_string_equal(canonical_number("1" + std::string(500, '0')).c_str(), "1e500");
}

void canonical_equal_for_equal_data(void**) {
    const char* expected = "{\"a\":{\"c\":null,\"d\":100},\"b\":[1.5,\"xA\",true]}";
    const char* same[] = {
        "{\"b\": [1.50, \"x\\u0041\", true], \"a\": {\"d\": 1e2, \"c\": null}}",
        "{\"a\":{\"c\":null,\"d\":100},\"b\":[15e-1,\"xA\",true]}",
        " { \"a\" : { \"d\" : 100.000 , \"c\" : null } ,\n\t\"b\" : [ 0.15E1 , \"\\u0078A\" , true ] } ",
        "{\"\\u0062\":[1.5,\"xA\",true],\"\\u0061\":{\"\\u0063\":null,\"d\":1E+2}}",
    };
    for (const char* text : same) assert_string_equal(canon(text).c_str(), expected);

    // Keys sorted by UTF-8 bytes (unsigned), not by locale or signed char.
    assert_string_equal(canon("{\"\xc3\xa9\":1,\"z\":2,\"Z\":3,\"a\":4,\"\":5,\"\\u007f\":6,\"aa\":7}").c_str(),
                        "{\"\":5,\"Z\":3,\"a\":4,\"aa\":7,\"z\":2,\"\x7f\":6,\"\xc3\xa9\":1}");
    // Minimal escaping: only '"', '\\' and control characters; '/' and non-ASCII stay raw.
    assert_string_equal(canon("\"\\/\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001F\\u00e9\\ud83d\\ude00\"").c_str(),
                        "\"/\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\xc3\xa9\xf0\x9f\x98\x80\"");
    std::string all_controls = "\"";
    for (int c = 0; c < 0x20; ++c) {
        char buf[8];
        snprintf(buf, sizeof buf, "\\u%04x", c);
        all_controls += buf;
    }
    all_controls += "\"";
    assert_string_equal(canon(all_controls).c_str(),
                        "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f"
                        "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c"
                        "\\u001d\\u001e\\u001f\"");
    // Canonical text is a fixed point.
    for (const char* text : same) assert_string_equal(canon(canon(text)).c_str(), expected);
}

void canonical_differs_for_different_data(void**) {
    const char* docs[] = {
        "1", "1.1", "-1", "10", "1e21", "1e-21", "\"1\"", "true", "false", "null", "[]", "{}", "\"\"",
        "[1,2]", "[2,1]", "[1,[2]]", "[[1],2]", "{\"a\":1}", "{\"a\":\"1\"}", "{\"a\":1,\"b\":null}",
        "{\"A\":1}", "{\"a\":[]}", "{\"a\":{}}", "\"a\"", "\"a \"", "\"A\"", "\"\\u0000\"", "[null]",
        "{\"a\":{\"b\":1}}", "{\"a.b\":1}", "0.30000000000000004", "0.3", "1e400", "1e401",
    };
    std::vector<std::string> seen;
    for (const char* d : docs) {
        std::string c = canon(d);
        for (const std::string& other : seen) {
            if (other == c) print_error("%s collides with an earlier document\n", d);
            assert_true(other != c);
        }
        seen.push_back(c);
    }
}

void serialize_keeps_document_order(void**) {
    Value v = parse_ok(" {\"z\": 1.50, \"a\": [ \"x\\u0041\\n\", {} , null ], \"m\": -0 } ");
    assert_string_equal(serialize(v).c_str(), "{\"z\":1.50,\"a\":[\"xA\\n\",{},null],\"m\":-0}");
    assert_string_equal(canonical(v).c_str(), "{\"a\":[\"xA\\n\",{},null],\"m\":0,\"z\":1.5}");
    // Round trip: serialize output parses back to the same data.
    assert_string_equal(canon(serialize(v)).c_str(), canonical(v).c_str());
}

void builders(void**) {
    Value v = Value::object({
        {"n", Value::number("1.50")},
        {"s", Value::string("a\"b")},
        {"b", Value::from_bool(true)},
        {"z", Value::null()},
        {"a", Value::array({Value::number("-0"), Value::string("")})},
    });
    assert_true(v.is(Type::Object));
    assert_string_equal(serialize(v).c_str(), "{\"n\":1.50,\"s\":\"a\\\"b\",\"b\":true,\"z\":null,\"a\":[-0,\"\"]}");
    assert_string_equal(canonical(v).c_str(), "{\"a\":[0,\"\"],\"b\":true,\"n\":1.5,\"s\":\"a\\\"b\",\"z\":null}");
    assert_non_null(v.find("s"));
    assert_string_equal(v.find("s")->text().c_str(), "a\"b");
    // A bad lexeme is refused at build time.
    for (const char* bad : {"", "abc", "1.", "01", "+1", " 1", "NaN"}) {
        bool threw = false;
        try {
            Value::number(bad);
        } catch (const std::invalid_argument&) {
            threw = true;
        }
        assert_true(threw);
    }
    // Bytes that are not UTF-8 in a built string are written as U+FFFD, so output stays valid JSON.
    std::string out = serialize(Value::string("a\xff" "b\xc3"));
    assert_string_equal(out.c_str(), "\"a\xef\xbf\xbd" "b\xef\xbf\xbd\"");
    parse_ok(out);
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scalars_and_containers),
        cmocka_unit_test(type_names),
        cmocka_unit_test(structure_errors),
        cmocka_unit_test(number_errors),
        cmocka_unit_test(string_errors),
        cmocka_unit_test(utf8_validated),
        cmocka_unit_test(escapes_decoded),
        cmocka_unit_test(depth_limited),
        cmocka_unit_test(duplicate_keys_rejected),
        cmocka_unit_test(string_size_limited),
        cmocka_unit_test(every_truncation_rejected),
        cmocka_unit_test(garbage_never_crashes),
        cmocka_unit_test(canonical_number_normalizes),
        cmocka_unit_test(canonical_equal_for_equal_data),
        cmocka_unit_test(canonical_differs_for_different_data),
        cmocka_unit_test(serialize_keeps_document_order),
        cmocka_unit_test(builders),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

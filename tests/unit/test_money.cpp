// Exact money: the currency table's exponents, every amount accepted or refused with its reason,
// and formatting back with exactly the currency's digits.
#include "cmocka.hpp"

#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "paygated/money.hpp"

using namespace paygate::daemon;

namespace {

const Currency& currency(const char* code) {
    const Currency* c = find_currency(code);
    if (c == nullptr) print_error("unknown currency %s\n", code);
    assert_non_null(c);
    return *c;
}

std::string minor(const char* text, bool is_number, const char* code) {
    std::string error;
    std::optional<Amount> a = parse_amount(text, is_number, currency(code), error);
    if (!a) print_error("parse_amount(%s, %s) failed: %s\n", text, code, error.c_str());
    assert_true(a.has_value());
    assert_true(a->currency == find_currency(code));
    return a->minor_units;
}

void refused(const char* text, bool is_number, const char* code, const char* message) {
    std::string error;
    std::optional<Amount> a = parse_amount(text, is_number, currency(code), error);
    if (a || error != message) {
        print_error("parse_amount(\"%s\", %s, %s): got %s \"%s\", want \"%s\"\n", text, is_number ? "number" : "string",
                    code, a ? a->minor_units.c_str() : "error", error.c_str(), message);
    }
    assert_false(a.has_value());
    assert_string_equal(error.c_str(), message);
}

void exponents(void**) {
    struct Case {
        const char* code;
        int exponent;
    };
    const Case cases[] = {
        {"USD", 2}, {"EUR", 2}, {"GBP", 2}, {"RUB", 2}, {"CHF", 2}, {"CNY", 2}, {"INR", 2}, {"BRL", 2},
        {"MXN", 2}, {"CAD", 2}, {"AUD", 2}, {"HUF", 2}, {"IDR", 2}, {"COP", 2}, {"TWD", 2}, {"MGA", 2},
        {"MRU", 2}, {"IRR", 2}, {"LAK", 2}, {"SLE", 2}, {"VES", 2}, {"VED", 2}, {"ZWG", 2}, {"XCG", 2},
        {"XCD", 2}, {"STN", 2}, {"BOV", 2}, {"CHE", 2}, {"CHW", 2}, {"COU", 2}, {"MXV", 2}, {"USN", 2},
        {"BHD", 3}, {"IQD", 3}, {"JOD", 3}, {"KWD", 3}, {"LYD", 3}, {"OMR", 3}, {"TND", 3},
        {"BIF", 0}, {"CLP", 0}, {"DJF", 0}, {"GNF", 0}, {"ISK", 0}, {"JPY", 0}, {"KMF", 0}, {"KRW", 0},
        {"PYG", 0}, {"RWF", 0}, {"UGX", 0}, {"UYI", 0}, {"VND", 0}, {"VUV", 0}, {"XAF", 0}, {"XOF", 0},
        {"XPF", 0},
        {"CLF", 4}, {"UYW", 4},
        {"BTC", 8}, {"ETH", 18}, {"USDT", 6},
    };
    for (const Case& c : cases) {
        const Currency& cur = currency(c.code);
        assert_string_equal(std::string(cur.code).c_str(), c.code);
        if (cur.exponent != c.exponent) print_error("%s: exponent %d, want %d\n", c.code, cur.exponent, c.exponent);
        assert_int_equal(cur.exponent, c.exponent);
        assert_true(find_currency(c.code) == &cur);   // stable pointers into the table
    }
}

void unknown_currencies(void**) {
    // Case-sensitive, exact; no metals, funds without a minor unit, test codes or withdrawn codes.
    for (const char* code : {"", "usd", "Usd", "US", "USDD", "USD ", " USD", "XAU", "XAG", "XPT", "XPD", "XDR",
                             "XBA", "XBB", "XBC", "XBD", "XSU", "XUA", "XTS", "XXX", "HRK", "CUC", "ZWL", "SLL",
                             "ANG", "DEM", "FRF", "btc", "ETC", "AAA", "ZZZ"}) {
        if (find_currency(code) != nullptr) print_error("%s should be unknown\n", code);
        assert_null(find_currency(code));
    }
    assert_null(find_currency(std::string_view("USD\0", 4)));
}

void json_numbers(void**) {
    assert_string_equal(minor("1.5", true, "USD").c_str(), "150");
    assert_string_equal(minor("1.50", true, "USD").c_str(), "150");
    assert_string_equal(minor("15e-1", true, "USD").c_str(), "150");
    assert_string_equal(minor("0.0015e3", true, "USD").c_str(), "150");
    assert_string_equal(minor("1.500", true, "USD").c_str(), "150");   // trailing zeros beyond the exponent
    assert_string_equal(minor("1.50000000000000000000000", true, "USD").c_str(), "150");
    assert_string_equal(minor("1e2", true, "USD").c_str(), "10000");
    assert_string_equal(minor("1E+2", true, "USD").c_str(), "10000");
    assert_string_equal(minor("0.01", true, "USD").c_str(), "1");
    assert_string_equal(minor("1e-2", true, "USD").c_str(), "1");
    assert_string_equal(minor("12", true, "USD").c_str(), "1200");
    assert_string_equal(minor("999999999999999.99", true, "USD").c_str(), "99999999999999999");
    assert_string_equal(minor("1e14", true, "USD").c_str(), "10000000000000000");
    assert_string_equal(minor("150", true, "JPY").c_str(), "150");
    assert_string_equal(minor("1.0", true, "JPY").c_str(), "1");
    assert_string_equal(minor("15e1", true, "JPY").c_str(), "150");
    assert_string_equal(minor("1", true, "BTC").c_str(), "100000000");
    assert_string_equal(minor("1.0", true, "BTC").c_str(), "100000000");
    assert_string_equal(minor("0.00000001", true, "BTC").c_str(), "1");
    assert_string_equal(minor("1e-8", true, "BTC").c_str(), "1");
    assert_string_equal(minor("1", true, "ETH").c_str(), "1000000000000000000");
    assert_string_equal(minor("0.000000000000000001", true, "ETH").c_str(), "1");
    // 10^15 - 1 ETH in wei: 33 digits, beyond 64 bits, exact.
    assert_string_equal(minor("999999999999999.999999999999999999", true, "ETH").c_str(),
                        "999999999999999999999999999999999");
    assert_string_equal(minor("1.234", true, "KWD").c_str(), "1234");
    assert_string_equal(minor("1.2345", true, "CLF").c_str(), "12345");
    assert_string_equal(minor("0.000001", true, "USDT").c_str(), "1");
}

void decimal_strings(void**) {
    assert_string_equal(minor("1.50", false, "USD").c_str(), "150");
    assert_string_equal(minor("1.5", false, "USD").c_str(), "150");
    assert_string_equal(minor("1.500", false, "USD").c_str(), "150");
    assert_string_equal(minor("12", false, "USD").c_str(), "1200");
    assert_string_equal(minor("0.5", false, "USD").c_str(), "50");
    assert_string_equal(minor("0.01", false, "USD").c_str(), "1");
    assert_string_equal(minor("123456789012345", false, "USD").c_str(), "12345678901234500");
    assert_string_equal(minor("0.00000150", false, "BTC").c_str(), "150");
    assert_string_equal(minor("150", false, "JPY").c_str(), "150");
    assert_string_equal(minor("150.000", false, "JPY").c_str(), "150");
}

void not_positive(void**) {
    const char* kMsg = "must be greater than zero";
    for (const char* n : {"0", "-0", "0.0", "0.00", "-0.0", "0e5", "0E-5", "-0.0e-3", "0e99999999999999999999",
                          "-1", "-0.01", "-1e2", "-1e999"}) {
        refused(n, true, "USD", kMsg);
    }
    for (const char* s : {"0", "0.0", "0.000", "-0", "-1", "-0.01", "-12.50"}) refused(s, false, "USD", kMsg);
}

void too_precise(void**) {
    refused("1.001", true, "USD", "has more fraction digits than USD allows (at most 2)");
    refused("1.001", false, "USD", "has more fraction digits than USD allows (at most 2)");
    refused("1e-3", true, "USD", "has more fraction digits than USD allows (at most 2)");
    refused("0.000000001", true, "BTC", "has more fraction digits than BTC allows (at most 8)");
    refused("1.0001", true, "KWD", "has more fraction digits than KWD allows (at most 3)");
    refused("0.0000001", false, "USDT", "has more fraction digits than USDT allows (at most 6)");
    refused("0.0000000000000000001", true, "ETH", "has more fraction digits than ETH allows (at most 18)");
    refused("1e-21", true, "ETH", "has more fraction digits than ETH allows (at most 18)");
    refused("1e-999999999", true, "USD", "has more fraction digits than USD allows (at most 2)");
    refused("1e-99999999999999999999999", true, "USD", "has more fraction digits than USD allows (at most 2)");
    refused("1.5", true, "JPY", "must be a whole number of JPY (no fraction digits)");
    refused("1.5", false, "JPY", "must be a whole number of JPY (no fraction digits)");
    refused("15e-1", true, "KRW", "must be a whole number of KRW (no fraction digits)");
}

void too_large(void**) {
    const char* kMsg = "has more than 15 integer digits";
    refused("1000000000000000", true, "USD", kMsg);
    refused("1000000000000000", false, "USD", kMsg);
    refused("1e15", true, "USD", kMsg);
    refused("1234567890123456.5", true, "USD", kMsg);
    refused("1234567890123456", false, "JPY", kMsg);
    refused("1e21", true, "USD", kMsg);
    refused("1e400", true, "USD", kMsg);
    refused("1e999999999", true, "USD", kMsg);
    refused("1e99999999999999999999999", true, "BTC", kMsg);
    // Integer digits are checked before fraction digits.
    refused("1234567890123456.001", true, "USD", kMsg);
    std::string long_digits(5000, '9');
    refused(long_digits.c_str(), true, "USD", kMsg);
    refused(long_digits.c_str(), false, "USD", kMsg);
}

void bad_strings(void**) {
    refused("", false, "USD", "must not be empty");
    refused(" 1", false, "USD", "must not contain spaces");
    refused("1 ", false, "USD", "must not contain spaces");
    refused("1 000", false, "USD", "must not contain spaces");
    refused("1\t", false, "USD", "must not contain spaces");
    refused("+1", false, "USD", "must not have a sign");
    refused("+0.5", false, "USD", "must not have a sign");
    refused("1e2", false, "USD", "must not use exponent notation in a string (send a JSON number, or plain digits)");
    refused("1E2", false, "USD", "must not use exponent notation in a string (send a JSON number, or plain digits)");
    refused("15e-1", false, "USD", "must not use exponent notation in a string (send a JSON number, or plain digits)");
    refused(".5", false, "USD", "must have a digit before the decimal point (\"0.5\", not \".5\")");
    refused("1.", false, "USD", "must have a digit after the decimal point (\"1\" or \"1.0\", not \"1.\")");
    refused("01", false, "USD", "must not have leading zeros");
    refused("00.5", false, "USD", "must not have leading zeros");
    refused("007", false, "JPY", "must not have leading zeros");
    const char* kNotDecimal = "must be a decimal number such as \"12.50\"";
    for (const char* s : {"NaN", "nan", "Infinity", "-Infinity", "inf", "1,5", "1,000.00", "0x10", "1.2.3", "--1",
                          "-", ".", "-.5", "abc", "1a", "\xd9\xa1", "1e", "e5", "1_000", "$1", "1USD", "true",
                          "null", "\xef\xbc\x91"}) {
        refused(s, false, "USD", kNotDecimal);
    }
    // Long junk is refused in linear time and constant stack.
    refused(std::string(100000, '-').c_str(), false, "USD", kNotDecimal);
    refused(("-" + std::string(100000, '1')).c_str(), false, "USD", "must be greater than zero");
    refused((std::string(100000, '1') + ".").c_str(), false, "USD",
            "must have a digit after the decimal point (\"1\" or \"1.0\", not \"1.\")");
}

void bad_number_lexemes(void**) {
    // parse_amount trusts nothing: a caller passing a non-lexeme as a number is refused.
    for (const char* n : {"", "abc", "1.", ".5", "+1", "01", " 1", "NaN"}) refused(n, true, "USD", "must be a number");
}

void formatting(void**) {
    assert_string_equal(format_amount("150", currency("USD")).c_str(), "1.50");
    assert_string_equal(format_amount("150", currency("JPY")).c_str(), "150");
    assert_string_equal(format_amount("150", currency("BTC")).c_str(), "0.00000150");
    assert_string_equal(format_amount("1", currency("USD")).c_str(), "0.01");
    assert_string_equal(format_amount("10", currency("USD")).c_str(), "0.10");
    assert_string_equal(format_amount("100", currency("USD")).c_str(), "1.00");
    assert_string_equal(format_amount("0", currency("USD")).c_str(), "0.00");
    assert_string_equal(format_amount("", currency("USD")).c_str(), "0.00");
    assert_string_equal(format_amount("0", currency("JPY")).c_str(), "0");
    assert_string_equal(format_amount("00150", currency("USD")).c_str(), "1.50");
    assert_string_equal(format_amount("1234", currency("KWD")).c_str(), "1.234");
    assert_string_equal(format_amount("12345", currency("CLF")).c_str(), "1.2345");
    assert_string_equal(format_amount("1", currency("ETH")).c_str(), "0.000000000000000001");
    assert_string_equal(format_amount("999999999999999999999999999999999", currency("ETH")).c_str(),
                        "999999999999999.999999999999999999");
    assert_string_equal(format_amount("100000000", currency("BTC")).c_str(), "1.00000000");
    assert_string_equal(format_amount("1500000", currency("USDT")).c_str(), "1.500000");
}

void subtraction(void**) {
    struct Case {
        const char* a;
        const char* b;
        const char* out;
    };
    const Case cases[] = {
        {"4000", "2750", "1250"}, {"4000", "4000", "0"},   {"4000", "0", "4000"}, {"0", "0", "0"},
        {"1000", "1", "999"},     {"00150", "050", "100"}, {"10", "9", "1"},
        {"1000000000000000000000000000000000", "1", "999999999999999999999999999999999"},
    };
    for (const Case& c : cases) assert_string_equal(subtract_minor(c.a, c.b).c_str(), c.out);
    for (const auto& [a, b] : {std::pair<const char*, const char*>{"1", "2"}, {"99", "100"}, {"", "0"}, {"1x", "0"},
                               {"5", "-1"}}) {
        bool threw = false;
        try {
            subtract_minor(a, b);
        } catch (const std::invalid_argument&) {
            threw = true;
        }
        assert_true(threw);
    }
}

void round_trips(void**) {
    struct Case {
        const char* in;
        const char* code;
        const char* out;
    };
    const Case cases[] = {
        {"1.5", "USD", "1.50"},   {"15e-1", "USD", "1.50"},        {"1", "BTC", "1.00000000"},
        {"0.1", "ETH", "0.100000000000000000"}, {"7", "JPY", "7"}, {"0.5", "CLF", "0.5000"},
        {"123.4", "KWD", "123.400"}, {"1e3", "USDT", "1000.000000"}, {"999999999999999", "VND", "999999999999999"},
    };
    for (const Case& c : cases) {
        std::string error;
        std::optional<Amount> a = parse_amount(c.in, true, currency(c.code), error);
        assert_true(a.has_value());
        std::string text = format_amount(a->minor_units, *a->currency);
        assert_string_equal(text.c_str(), c.out);
        // The formatted text parses back (as a number and as a string) to the same minor units.
        assert_string_equal(minor(text.c_str(), true, c.code).c_str(), a->minor_units.c_str());
        assert_string_equal(minor(text.c_str(), false, c.code).c_str(), a->minor_units.c_str());
    }
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exponents),
        cmocka_unit_test(unknown_currencies),
        cmocka_unit_test(json_numbers),
        cmocka_unit_test(decimal_strings),
        cmocka_unit_test(not_positive),
        cmocka_unit_test(too_precise),
        cmocka_unit_test(too_large),
        cmocka_unit_test(bad_strings),
        cmocka_unit_test(bad_number_lexemes),
        cmocka_unit_test(formatting),
        cmocka_unit_test(subtraction),
        cmocka_unit_test(round_trips),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

// The money parser (daemon/src/money.cpp) against a reference written here from docs/api.md's
// rules: a JSON number lexeme, or a decimal string (digits, one optional '.', no sign, no
// exponent, no leading zeros); greater than zero; no more fraction digits than the currency's
// exponent once trailing zeros are dropped; at most 15 integer digits. Same verdict, same minor
// units, and what it accepts formats and parses back to itself.
//
// Input: byte 0 picks the currency (low bits) and number vs string (high bit); the rest is the text.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "json_respell.hpp"
#include "paygated/money.hpp"

namespace money = paygate::daemon;

namespace {

// One currency of each exponent paygate knows: 0, 2, 3, 4, 6, 8, 18.
const char* const kCodes[] = {"JPY", "USD", "KWD", "CLF", "USDT", "BTC", "ETH", "EUR"};

bool all_digits(std::string_view s) {
    for (char c : s) {
        if (c < '0' || c > '9') return false;
    }
    return !s.empty();
}

// The reference: the minor units, or nothing when the amount is refused.
std::optional<std::string> reference(std::string_view text, bool is_number, int exponent) {
    fuzz::Lexeme p;
    if (is_number) {
        if (!fuzz::split_lexeme(text, p)) return std::nullopt;
    } else {
        const std::size_t point = text.find('.');
        p.int_digits = std::string(text.substr(0, point));
        if (point != std::string_view::npos) {
            p.frac_digits = std::string(text.substr(point + 1));
            if (!all_digits(p.frac_digits)) return std::nullopt;
        }
        if (!all_digits(p.int_digits) || (p.int_digits.size() > 1 && p.int_digits[0] == '0')) return std::nullopt;
    }
    std::string digits = p.int_digits + p.frac_digits;
    const std::size_t lead = digits.find_first_not_of('0');
    if (lead == std::string::npos || p.negative) return std::nullopt;   // zero or negative
    digits.erase(0, lead);
    std::string_view exp = p.exp_digits;
    while (!exp.empty() && exp.front() == '0') exp.remove_prefix(1);
    // A nonzero amount with |exponent| >= 10^17 has far too many integer or fraction digits.
    if (exp.size() > 17) return std::nullopt;
    std::int64_t e = 0;
    for (char c : exp) e = e * 10 + (c - '0');
    if (p.exp_negative) e = -e;
    e -= static_cast<std::int64_t>(p.frac_digits.size());
    while (digits.back() == '0') digits.pop_back(), ++e;   // amount = digits * 10^e
    const std::int64_t shift = e + exponent;               // minor units = digits * 10^shift
    if (shift < 0) return std::nullopt;                    // more fraction digits than the currency has
    const std::int64_t integer_digits = static_cast<std::int64_t>(digits.size()) + e;
    if (integer_digits > money::kMaxIntegerDigits) return std::nullopt;
    return digits + std::string(static_cast<std::size_t>(shift), '0');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const money::Currency* currency = money::find_currency(kCodes[data[0] % (sizeof kCodes / sizeof kCodes[0])]);
    FUZZ_CHECK(currency != nullptr, "a currency of the table is not found");
    const bool is_number = (data[0] & 0x80) != 0;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

    std::string error;
    const std::optional<money::Amount> amount = money::parse_amount(text, is_number, *currency, error);
    const std::optional<std::string> expected = reference(text, is_number, currency->exponent);
    FUZZ_CHECK(amount.has_value() == expected.has_value(), "verdict differs from the documented rules");
    if (!amount) {
        FUZZ_CHECK(!error.empty(), "a refusal without a reason");
        return 0;
    }
    FUZZ_CHECK(amount->minor_units == *expected, "minor units differ from the reference");
    FUZZ_CHECK(amount->currency == currency, "the amount lost its currency");

    // Formats to a decimal string that parses back to the same amount, as a string and as a number.
    const std::string formatted = money::format_amount(amount->minor_units, *currency);
    for (bool as_number : {false, true}) {
        std::string again_error;
        const std::optional<money::Amount> again = money::parse_amount(formatted, as_number, *currency, again_error);
        FUZZ_CHECK(again && again->minor_units == amount->minor_units, "format_amount does not parse back");
    }
    FUZZ_CHECK(money::subtract_minor(amount->minor_units, amount->minor_units) == "0", "a - a is not 0");
    FUZZ_CHECK(money::subtract_minor(amount->minor_units, "0") == amount->minor_units, "a - 0 is not a");
    return 0;
}

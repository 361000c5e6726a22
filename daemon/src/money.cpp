// Exact amounts: decimal text (a JSON number lexeme or a decimal string) to integer minor units
// and back, with no floating point anywhere.
//
// Both kinds of input go through json::canonical_number, which reduces any lexeme to its exact
// shortest form (plain decimal, or digits + exponent when the exponent is beyond +-20); the rules
// are then checked on that form, so "1.50", "15e-1" and "0.0015e3" are the same amount.
//
// Decimal strings follow the JSON number grammar without sign and exponent: "12", "12.5",
// "0.05". Rejected: "", spaces, a sign ("+1", "-1"), an exponent ("1e2"), leading zeros ("01"),
// a bare point (".5", "1."), anything else ("NaN", "1,5", "0x10").
#include "paygated/money.hpp"

#include <stdexcept>
#include <string>

#include "paygate/json.hpp"

namespace paygate::daemon {

namespace {

bool all_digits(std::string_view s) {
    for (char c : s) {
        if (c < '0' || c > '9') return false;
    }
    return !s.empty();
}

// Why `text` is not an acceptable decimal string, or nullptr if it is one.
const char* decimal_string_problem(std::string_view text) {
    constexpr const char* kNotDecimal = "must be a decimal number such as \"12.50\"";
    if (text.empty()) return "must not be empty";
    if (text.find_first_of(" \t\n\r") != std::string_view::npos) return "must not contain spaces";
    if (text[0] == '+') return "must not have a sign";
    if (text[0] == '-') {
        // A negative decimal ("-1", "-0") is refused as not positive; other junk is not a decimal.
        // (One level of recursion at most: the rest may not start with a sign again.)
        const std::string_view rest = text.substr(1);
        const bool decimal = !rest.empty() && rest[0] != '-' && rest[0] != '+' && decimal_string_problem(rest) == nullptr;
        return decimal ? "must be greater than zero" : kNotDecimal;
    }
    if (text.find_first_of("eE") != std::string_view::npos && json::is_number_lexeme(text)) {
        return "must not use exponent notation in a string (send a JSON number, or plain digits)";
    }
    const std::size_t point = text.find('.');
    const std::string_view int_part = text.substr(0, point);
    const std::string_view frac_part = point == std::string_view::npos ? std::string_view() : text.substr(point + 1);
    if (point != std::string_view::npos) {
        if (int_part.empty() && all_digits(frac_part)) {
            return "must have a digit before the decimal point (\"0.5\", not \".5\")";
        }
        if (frac_part.empty() && all_digits(int_part)) {
            return "must have a digit after the decimal point (\"1\" or \"1.0\", not \"1.\")";
        }
        if (!all_digits(frac_part)) return kNotDecimal;
    }
    if (!all_digits(int_part)) return kNotDecimal;
    if (int_part.size() > 1 && int_part[0] == '0') return "must not have leading zeros";
    return nullptr;
}

std::string too_many_fraction_digits(const Currency& currency) {
    if (currency.exponent == 0) return "must be a whole number of " + std::string(currency.code) + " (no fraction digits)";
    return "has more fraction digits than " + std::string(currency.code) + " allows (at most " +
           std::to_string(currency.exponent) + ")";
}

}  // namespace

std::optional<Amount> parse_amount(std::string_view text, bool is_json_number, const Currency& currency,
                                   std::string& error) {
    if (is_json_number) {
        if (!json::is_number_lexeme(text)) {
            error = "must be a number";
            return std::nullopt;
        }
    } else if (const char* problem = decimal_string_problem(text)) {
        error = problem;
        return std::nullopt;
    }

    const std::string c = json::canonical_number(text);
    if (c == "0" || c[0] == '-') {
        error = "must be greater than zero";
        return std::nullopt;
    }
    const std::size_t e = c.find('e');
    if (e != std::string::npos) {
        // Exponent form: the exponent is beyond +-20, so the amount has more than 20 integer
        // digits or more than 20 fraction digits (no currency has that many).
        error = c[e + 1] == '-' ? too_many_fraction_digits(currency)
                                : "has more than " + std::to_string(kMaxIntegerDigits) + " integer digits";
        return std::nullopt;
    }
    const std::size_t point = c.find('.');
    std::string_view int_part = std::string_view(c).substr(0, point);
    std::string_view frac_part =
        point == std::string::npos ? std::string_view() : std::string_view(c).substr(point + 1);
    if (int_part == "0") int_part = std::string_view();
    if (int_part.size() > static_cast<std::size_t>(kMaxIntegerDigits)) {
        error = "has more than " + std::to_string(kMaxIntegerDigits) + " integer digits";
        return std::nullopt;
    }
    if (frac_part.size() > static_cast<std::size_t>(currency.exponent)) {
        error = too_many_fraction_digits(currency);
        return std::nullopt;
    }

    Amount amount;
    amount.currency = &currency;
    std::string& minor = amount.minor_units;
    minor.reserve(int_part.size() + static_cast<std::size_t>(currency.exponent));
    minor.append(int_part);
    minor.append(frac_part);
    minor.append(static_cast<std::size_t>(currency.exponent) - frac_part.size(), '0');
    const std::size_t lead = minor.find_first_not_of('0');
    minor.erase(0, lead);   // lead is never npos: the amount is greater than zero
    return amount;
}

std::string format_amount(std::string_view minor_units, const Currency& currency) {
    const std::size_t lead = minor_units.find_first_not_of('0');
    std::string digits = lead == std::string_view::npos ? std::string("0") : std::string(minor_units.substr(lead));
    const auto exponent = static_cast<std::size_t>(currency.exponent);
    if (exponent == 0) return digits;
    if (digits.size() <= exponent) digits.insert(0, exponent + 1 - digits.size(), '0');
    digits.insert(digits.size() - exponent, 1, '.');
    return digits;
}

std::string subtract_minor(std::string_view a, std::string_view b) {
    auto strip = [](std::string_view s) {
        if (!all_digits(s)) throw std::invalid_argument("subtract_minor: not a count of minor units");
        const std::size_t lead = s.find_first_not_of('0');
        return lead == std::string_view::npos ? std::string_view() : s.substr(lead);
    };
    a = strip(a);
    b = strip(b);
    if (b.size() > a.size() || (b.size() == a.size() && b > a)) {
        throw std::invalid_argument("subtract_minor: the result would be negative");
    }
    std::string out(a);
    int borrow = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
        const std::size_t pos = out.size() - 1 - i;
        int digit = (out[pos] - '0') - borrow - (i < b.size() ? b[b.size() - 1 - i] - '0' : 0);
        borrow = digit < 0 ? 1 : 0;
        out[pos] = static_cast<char>('0' + digit + 10 * borrow);
    }
    const std::size_t lead = out.find_first_not_of('0');
    return lead == std::string::npos ? std::string("0") : out.substr(lead);
}

}  // namespace paygate::daemon

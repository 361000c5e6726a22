// Exact money: currencies with their minor-unit exponents, decimal amounts parsed without floats.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace paygate::daemon {

struct Currency {
    std::string_view code;     // "USD", "BTC"
    int exponent;              // minor-unit digits: USD 2, JPY 0, BTC 8, ETH 18
    int numeric = 0;           // ISO 4217 numeric code: USD 840, BYN 933; 0 for crypto (none)
};

// ISO 4217 alphabetic codes in current use plus BTC (8), ETH (18), USDT (6); nullptr if unknown.
// Exact, case-sensitive: "usd" is unknown.
const Currency* find_currency(std::string_view code);
// The currency whose ISO 4217 numeric code is `numeric` (933 -> BYN), nullptr if none.
const Currency* find_currency_by_numeric(int numeric);

// An amount as an integer count of minor units, in decimal digits (it can exceed 64 bits:
// 10^15 ETH is 10^33 wei). No sign, no leading zeros ("0" only for zero).
struct Amount {
    std::string minor_units;
    const Currency* currency = nullptr;
};

inline constexpr int kMaxIntegerDigits = 15;   // at most 999 999 999 999 999 major units

// Parses a JSON number lexeme or a decimal string ("1.5", "1.50", "15e-1", "0.00000001") into
// minor units of `currency`. Fails with a message naming the rule when the amount is not a
// plain finite decimal (strings: digits with one optional '.', no sign, no exponent, no spaces),
// is zero or negative, has more fraction digits than the currency allows (after dropping trailing
// zeros), or has more than kMaxIntegerDigits integer digits.
std::optional<Amount> parse_amount(std::string_view text, bool is_json_number, const Currency& currency,
                                   std::string& error);

// "150" minor units of USD -> "1.50"; of JPY -> "150"; of BTC -> "0.00000150".
std::string format_amount(std::string_view minor_units, const Currency& currency);

// a - b of two counts of minor units (decimal digits, a >= b), without leading zeros ("0" for
// zero): 4000 - 2750 -> "1250". Throws std::invalid_argument when b > a or either is not digits.
std::string subtract_minor(std::string_view a, std::string_view b);

}  // namespace paygate::daemon

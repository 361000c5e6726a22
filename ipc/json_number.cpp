// JSON number lexemes: the scanner the reader uses, and their exact canonical form.
#include <cstdint>
#include <string>

#include "json_internal.hpp"
#include "paygate/json.hpp"

namespace paygate::json {

namespace detail {

// Scans a number starting at text[pos]. On success sets `end` past it; on failure sets `end` to
// the offending byte and `why` to the reason. Never reads past the end of `text`.
bool scan_number(std::string_view text, std::size_t pos, NumberParts& parts, std::size_t& end, const char*& why) {
    std::size_t i = pos;
    const std::size_t n = text.size();
    if (i < n && text[i] == '-') {
        parts.negative = true;
        ++i;
    }
    std::size_t start = i;
    if (i >= n || !is_digit(text[i])) {
        end = i;
        why = "expected a digit";
        return false;
    }
    if (text[i] == '0') {
        ++i;
        if (i < n && is_digit(text[i])) {
            end = start;
            why = "leading zeros are not allowed in numbers";
            return false;
        }
    } else {
        while (i < n && is_digit(text[i])) ++i;
    }
    parts.int_digits = text.substr(start, i - start);
    if (i < n && text[i] == '.') {
        ++i;
        start = i;
        while (i < n && is_digit(text[i])) ++i;
        if (i == start) {
            end = i;
            why = "expected a digit after the decimal point";
            return false;
        }
        parts.frac_digits = text.substr(start, i - start);
    }
    if (i < n && (text[i] == 'e' || text[i] == 'E')) {
        ++i;
        if (i < n && (text[i] == '+' || text[i] == '-')) {
            parts.exp_negative = text[i] == '-';
            ++i;
        }
        start = i;
        while (i < n && is_digit(text[i])) ++i;
        if (i == start) {
            end = i;
            why = "expected a digit in the exponent";
            return false;
        }
        parts.exp_digits = text.substr(start, i - start);
    }
    end = i;
    return true;
}

bool split_number(std::string_view lexeme, NumberParts& parts) {
    std::size_t end = 0;
    const char* why = nullptr;
    return scan_number(lexeme, 0, parts, end, why) && end == lexeme.size();
}

}  // namespace detail

namespace {

// Decimal magnitude (no leading zeros, at least 19 digits) plus or minus a small amount that is
// smaller than it, so the result stays positive and needs no sign handling.
std::string add_small(std::string mag, std::uint64_t d) {
    std::size_t i = mag.size();
    std::uint64_t carry = d;
    while (carry != 0) {
        if (i == 0) {
            mag.insert(mag.begin(), '0');
            i = 1;
        }
        --i;
        std::uint64_t digit = static_cast<std::uint64_t>(mag[i] - '0') + carry % 10;
        carry /= 10;
        if (digit >= 10) {
            digit -= 10;
            carry += 1;
        }
        mag[i] = static_cast<char>('0' + digit);
    }
    return mag;
}

std::string sub_small(std::string mag, std::uint64_t d) {
    // Precondition: mag > d.
    std::size_t i = mag.size();
    std::uint64_t borrow = 0;
    while ((d != 0 || borrow != 0) && i > 0) {
        --i;
        std::int64_t digit = static_cast<std::int64_t>(mag[i] - '0') - static_cast<std::int64_t>(d % 10) -
                             static_cast<std::int64_t>(borrow);
        d /= 10;
        borrow = 0;
        if (digit < 0) {
            digit += 10;
            borrow = 1;
        }
        mag[i] = static_cast<char>('0' + digit);
    }
    std::size_t lead = mag.find_first_not_of('0');
    return lead == std::string::npos ? std::string("0") : mag.substr(lead);
}

}  // namespace

using detail::NumberParts;
using detail::split_number;

bool is_number_lexeme(std::string_view lexeme) {
    NumberParts parts;
    return split_number(lexeme, parts);
}

std::string canonical_number(std::string_view lexeme) {
    NumberParts parts;
    if (!split_number(lexeme, parts)) return std::string(lexeme);   // not a number: left as is

    // value = digits * 10^(exponent - frac_len), digits without leading or trailing zeros.
    std::string digits;
    digits.reserve(parts.int_digits.size() + parts.frac_digits.size());
    digits.append(parts.int_digits);
    digits.append(parts.frac_digits);
    std::size_t lead = digits.find_first_not_of('0');
    if (lead == std::string::npos) return "0";   // any zero, "-0.0e7" included
    digits.erase(0, lead);
    std::size_t last = digits.find_last_not_of('0');
    const std::size_t trailing = digits.size() - 1 - last;
    digits.resize(last + 1);
    // delta = trailing zeros dropped - fraction digits; |delta| < lexeme size, so it fits.
    const std::int64_t delta = static_cast<std::int64_t>(trailing) - static_cast<std::int64_t>(parts.frac_digits.size());

    std::string out;
    if (parts.negative) out.push_back('-');

    std::string_view exp_digits = parts.exp_digits;
    std::size_t exp_lead = exp_digits.find_first_not_of('0');
    exp_digits = exp_lead == std::string_view::npos ? std::string_view() : exp_digits.substr(exp_lead);

    if (exp_digits.size() > 18) {
        // A huge exponent (|e| >= 10^18 > |delta|): exact decimal arithmetic on its digits, and
        // always exponent notation, so nothing is ever expanded.
        std::string mag(exp_digits);
        // e' = sign*mag + delta. Positive: mag + delta. Negative: -(mag - delta).
        const bool add = parts.exp_negative ? delta < 0 : delta >= 0;
        const std::uint64_t d = delta < 0 ? static_cast<std::uint64_t>(-delta) : static_cast<std::uint64_t>(delta);
        mag = add ? add_small(std::move(mag), d) : sub_small(std::move(mag), d);
        out += digits;
        out += parts.exp_negative ? "e-" : "e";
        out += mag;
        return out;
    }

    std::int64_t e = 0;
    for (char c : exp_digits) e = e * 10 + (c - '0');
    if (parts.exp_negative) e = -e;
    e += delta;

    if (e > 20 || e < -20) {
        out += digits;
        out += 'e';
        out += std::to_string(e);
        return out;
    }
    if (e >= 0) {
        out += digits;
        out.append(static_cast<std::size_t>(e), '0');
        return out;
    }
    const std::size_t k = static_cast<std::size_t>(-e);   // fraction digits
    if (digits.size() > k) {
        out.append(digits, 0, digits.size() - k);
        out.push_back('.');
        out.append(digits, digits.size() - k, k);
    } else {
        out += "0.";
        out.append(k - digits.size(), '0');
        out += digits;
    }
    return out;
}

}  // namespace paygate::json

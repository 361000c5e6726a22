// The currency table: ISO 4217 alphabetic codes in current use with their minor-unit exponents,
// plus the crypto currencies paygate accepts.
//
// Source: ISO 4217 list one (current currency and funds codes). Left out on purpose:
// - codes whose minor unit is "N.A." (precious metals XAU XAG XPD XPT, bond-market units
//   XBA XBB XBC XBD, XDR, XSU, XUA, the testing code XTS and "no currency" XXX): not money
//   with a minor unit, so never a payment currency;
// - withdrawn codes: HRK (Croatia moved to EUR in 2023), CUC (2021), ZWL (replaced by ZWG in
//   2024), SLL (replaced by SLE), ANG (replaced by XCG in 2025).
// Crypto: BTC 8 (satoshi), ETH 18 (wei), USDT 6 (Tether's own precision); no numeric code (0).
// Each ISO entry carries its ISO 4217 numeric code beside the alphabetic one (WhiteBird, seed 004,
// sends currencies as numbers: 933 is BYN).
//
// The table is sorted by code (checked at compile time) and searched by bisection.
#include <algorithm>
#include <cstddef>
#include <iterator>

#include "paygated/money.hpp"

namespace paygate::daemon {

namespace {

constexpr Currency kCurrencies[] = {
    {"AED", 2, 784},      // UAE Dirham
    {"AFN", 2, 971},      // Afghani
    {"ALL", 2, 8},        // Lek
    {"AMD", 2, 51},       // Armenian Dram
    {"AOA", 2, 973},      // Kwanza
    {"ARS", 2, 32},       // Argentine Peso
    {"AUD", 2, 36},       // Australian Dollar
    {"AWG", 2, 533},      // Aruban Florin
    {"AZN", 2, 944},      // Azerbaijan Manat
    {"BAM", 2, 977},      // Convertible Mark
    {"BBD", 2, 52},       // Barbados Dollar
    {"BDT", 2, 50},       // Taka
    {"BGN", 2, 975},      // Bulgarian Lev
    {"BHD", 3, 48},       // Bahraini Dinar
    {"BIF", 0, 108},      // Burundi Franc
    {"BMD", 2, 60},       // Bermudian Dollar
    {"BND", 2, 96},       // Brunei Dollar
    {"BOB", 2, 68},       // Boliviano
    {"BOV", 2, 984},      // Mvdol
    {"BRL", 2, 986},      // Brazilian Real
    {"BSD", 2, 44},       // Bahamian Dollar
    {"BTC", 8, 0},        // Bitcoin (satoshi)
    {"BTN", 2, 64},       // Ngultrum
    {"BWP", 2, 72},       // Pula
    {"BYN", 2, 933},      // Belarusian Ruble
    {"BZD", 2, 84},       // Belize Dollar
    {"CAD", 2, 124},      // Canadian Dollar
    {"CDF", 2, 976},      // Congolese Franc
    {"CHE", 2, 947},      // WIR Euro
    {"CHF", 2, 756},      // Swiss Franc
    {"CHW", 2, 948},      // WIR Franc
    {"CLF", 4, 990},      // Unidad de Fomento
    {"CLP", 0, 152},      // Chilean Peso
    {"CNY", 2, 156},      // Yuan Renminbi
    {"COP", 2, 170},      // Colombian Peso
    {"COU", 2, 970},      // Unidad de Valor Real
    {"CRC", 2, 188},      // Costa Rican Colon
    {"CUP", 2, 192},      // Cuban Peso
    {"CVE", 2, 132},      // Cabo Verde Escudo
    {"CZK", 2, 203},      // Czech Koruna
    {"DJF", 0, 262},      // Djibouti Franc
    {"DKK", 2, 208},      // Danish Krone
    {"DOP", 2, 214},      // Dominican Peso
    {"DZD", 2, 12},       // Algerian Dinar
    {"EGP", 2, 818},      // Egyptian Pound
    {"ERN", 2, 232},      // Nakfa
    {"ETB", 2, 230},      // Ethiopian Birr
    {"ETH", 18, 0},       // Ether (wei)
    {"EUR", 2, 978},      // Euro
    {"FJD", 2, 242},      // Fiji Dollar
    {"FKP", 2, 238},      // Falkland Islands Pound
    {"GBP", 2, 826},      // Pound Sterling
    {"GEL", 2, 981},      // Lari
    {"GHS", 2, 936},      // Ghana Cedi
    {"GIP", 2, 292},      // Gibraltar Pound
    {"GMD", 2, 270},      // Dalasi
    {"GNF", 0, 324},      // Guinean Franc
    {"GTQ", 2, 320},      // Quetzal
    {"GYD", 2, 328},      // Guyana Dollar
    {"HKD", 2, 344},      // Hong Kong Dollar
    {"HNL", 2, 340},      // Lempira
    {"HTG", 2, 332},      // Gourde
    {"HUF", 2, 348},      // Forint
    {"IDR", 2, 360},      // Rupiah
    {"ILS", 2, 376},      // New Israeli Sheqel
    {"INR", 2, 356},      // Indian Rupee
    {"IQD", 3, 368},      // Iraqi Dinar
    {"IRR", 2, 364},      // Iranian Rial
    {"ISK", 0, 352},      // Iceland Krona
    {"JMD", 2, 388},      // Jamaican Dollar
    {"JOD", 3, 400},      // Jordanian Dinar
    {"JPY", 0, 392},      // Yen
    {"KES", 2, 404},      // Kenyan Shilling
    {"KGS", 2, 417},      // Som
    {"KHR", 2, 116},      // Riel
    {"KMF", 0, 174},      // Comorian Franc
    {"KPW", 2, 408},      // North Korean Won
    {"KRW", 0, 410},      // Won
    {"KWD", 3, 414},      // Kuwaiti Dinar
    {"KYD", 2, 136},      // Cayman Islands Dollar
    {"KZT", 2, 398},      // Tenge
    {"LAK", 2, 418},      // Lao Kip
    {"LBP", 2, 422},      // Lebanese Pound
    {"LKR", 2, 144},      // Sri Lanka Rupee
    {"LRD", 2, 430},      // Liberian Dollar
    {"LSL", 2, 426},      // Loti
    {"LYD", 3, 434},      // Libyan Dinar
    {"MAD", 2, 504},      // Moroccan Dirham
    {"MDL", 2, 498},      // Moldovan Leu
    {"MGA", 2, 969},      // Malagasy Ariary
    {"MKD", 2, 807},      // Denar
    {"MMK", 2, 104},      // Kyat
    {"MNT", 2, 496},      // Tugrik
    {"MOP", 2, 446},      // Pataca
    {"MRU", 2, 929},      // Ouguiya
    {"MUR", 2, 480},      // Mauritius Rupee
    {"MVR", 2, 462},      // Rufiyaa
    {"MWK", 2, 454},      // Malawi Kwacha
    {"MXN", 2, 484},      // Mexican Peso
    {"MXV", 2, 979},      // Mexican Unidad de Inversion (UDI)
    {"MYR", 2, 458},      // Malaysian Ringgit
    {"MZN", 2, 943},      // Mozambique Metical
    {"NAD", 2, 516},      // Namibia Dollar
    {"NGN", 2, 566},      // Naira
    {"NIO", 2, 558},      // Cordoba Oro
    {"NOK", 2, 578},      // Norwegian Krone
    {"NPR", 2, 524},      // Nepalese Rupee
    {"NZD", 2, 554},      // New Zealand Dollar
    {"OMR", 3, 512},      // Rial Omani
    {"PAB", 2, 590},      // Balboa
    {"PEN", 2, 604},      // Sol
    {"PGK", 2, 598},      // Kina
    {"PHP", 2, 608},      // Philippine Peso
    {"PKR", 2, 586},      // Pakistan Rupee
    {"PLN", 2, 985},      // Zloty
    {"PYG", 0, 600},      // Guarani
    {"QAR", 2, 634},      // Qatari Rial
    {"RON", 2, 946},      // Romanian Leu
    {"RSD", 2, 941},      // Serbian Dinar
    {"RUB", 2, 643},      // Russian Ruble
    {"RWF", 0, 646},      // Rwanda Franc
    {"SAR", 2, 682},      // Saudi Riyal
    {"SBD", 2, 90},       // Solomon Islands Dollar
    {"SCR", 2, 690},      // Seychelles Rupee
    {"SDG", 2, 938},      // Sudanese Pound
    {"SEK", 2, 752},      // Swedish Krona
    {"SGD", 2, 702},      // Singapore Dollar
    {"SHP", 2, 654},      // Saint Helena Pound
    {"SLE", 2, 925},      // Leone
    {"SOS", 2, 706},      // Somali Shilling
    {"SRD", 2, 968},      // Surinam Dollar
    {"SSP", 2, 728},      // South Sudanese Pound
    {"STN", 2, 930},      // Dobra
    {"SVC", 2, 222},      // El Salvador Colon
    {"SYP", 2, 760},      // Syrian Pound
    {"SZL", 2, 748},      // Lilangeni
    {"THB", 2, 764},      // Baht
    {"TJS", 2, 972},      // Somoni
    {"TMT", 2, 934},      // Turkmenistan New Manat
    {"TND", 3, 788},      // Tunisian Dinar
    {"TOP", 2, 776},      // Pa’anga
    {"TRY", 2, 949},      // Turkish Lira
    {"TTD", 2, 780},      // Trinidad and Tobago Dollar
    {"TWD", 2, 901},      // New Taiwan Dollar
    {"TZS", 2, 834},      // Tanzanian Shilling
    {"UAH", 2, 980},      // Hryvnia
    {"UGX", 0, 800},      // Uganda Shilling
    {"USD", 2, 840},      // US Dollar
    {"USDT", 6, 0},       // Tether USD
    {"USN", 2, 997},      // US Dollar (Next day)
    {"UYI", 0, 940},      // Uruguay Peso en Unidades Indexadas (UI)
    {"UYU", 2, 858},      // Peso Uruguayo
    {"UYW", 4, 927},      // Unidad Previsional
    {"UZS", 2, 860},      // Uzbekistan Sum
    {"VED", 2, 926},      // Bolívar Soberano
    {"VES", 2, 928},      // Bolívar Soberano
    {"VND", 0, 704},      // Dong
    {"VUV", 0, 548},      // Vatu
    {"WST", 2, 882},      // Tala
    {"XAF", 0, 950},      // CFA Franc BEAC
    {"XCD", 2, 951},      // East Caribbean Dollar
    {"XCG", 2, 532},      // Caribbean Guilder
    {"XOF", 0, 952},      // CFA Franc BCEAO
    {"XPF", 0, 953},      // CFP Franc
    {"YER", 2, 886},      // Yemeni Rial
    {"ZAR", 2, 710},      // Rand
    {"ZMW", 2, 967},      // Zambian Kwacha
    {"ZWG", 2, 924},      // Zimbabwe Gold
};

constexpr bool sorted_and_unique() {
    for (std::size_t i = 1; i < std::size(kCurrencies); ++i) {
        if (!(kCurrencies[i - 1].code < kCurrencies[i].code)) return false;
    }
    return true;
}
static_assert(sorted_and_unique(), "kCurrencies must be sorted by code, without duplicates");

constexpr bool numeric_codes_unique() {
    for (std::size_t i = 0; i < std::size(kCurrencies); ++i) {
        if (kCurrencies[i].numeric < 0 || kCurrencies[i].numeric > 999) return false;
        for (std::size_t j = i + 1; j < std::size(kCurrencies); ++j) {
            if (kCurrencies[i].numeric != 0 && kCurrencies[i].numeric == kCurrencies[j].numeric) return false;
        }
    }
    return true;
}
static_assert(numeric_codes_unique(), "kCurrencies: numeric codes must be 0 (none) or unique in 1..999");

}  // namespace

const Currency* find_currency(std::string_view code) {
    const Currency* begin = std::begin(kCurrencies);
    const Currency* end = std::end(kCurrencies);
    const Currency* it =
        std::lower_bound(begin, end, code, [](const Currency& c, std::string_view k) { return c.code < k; });
    return it != end && it->code == code ? it : nullptr;
}

const Currency* find_currency_by_numeric(int numeric) {
    if (numeric <= 0) return nullptr;
    for (const Currency& c : kCurrencies) {
        if (c.numeric == numeric) return &c;
    }
    return nullptr;
}

}  // namespace paygate::daemon

// The ZooTicket session and update bodies (daemon/src/zooticket.cpp) and the hosted page's text
// handling. Properties, whatever the bytes:
//   - validate_session/validate_update never crash; a refusal names at least one field;
//   - an accepted session has a total equal to the exact sum of its items, known methods only,
//     acceptable URLs, and the same fingerprint when its canonical form is validated again;
//   - html_escape leaves no markup character; a page rendered from the input holds the input only
//     escaped; form_value never reads past the body.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "paygate/json.hpp"
#include "paygated/zooticket.hpp"

namespace zt = paygate::daemon::zooticket;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const bool loopback = size > 0 && (data[0] & 1);
    zt::Validation v = zt::validate_session(input, zt::Rules{"2030-01-01", loopback});
    if (!v.request) {
        FUZZ_CHECK(!v.errors.empty(), "a refusal without a field");
    } else {
        const zt::SessionRequest& r = *v.request;
        FUZZ_CHECK(!r.items.empty() && r.total.currency != nullptr, "accepted without items or currency");
        unsigned __int128 sum = 0, total = 0;
        for (char c : r.total.minor_units) total = total * 10 + static_cast<unsigned>(c - '0');
        for (const zt::Item& item : r.items) {
            unsigned __int128 price = 0;
            for (char c : item.unit_price.minor_units) price = price * 10 + static_cast<unsigned>(c - '0');
            sum += price * std::stoul(item.quantity);
            FUZZ_CHECK(item.unit_price.currency == r.total.currency, "two currencies in one session");
        }
        FUZZ_CHECK(sum == total, "total is not the items' sum");
        for (const std::string& m : r.payment_methods) {
            bool known = false;
            for (std::string_view k : zt::known_payment_methods()) known = known || k == m;
            FUZZ_CHECK(known, "unknown payment method accepted");
        }
        FUZZ_CHECK(zt::acceptable_url(r.return_url, loopback) && zt::acceptable_url(r.cancel_url, loopback),
                   "unacceptable URL accepted");
        paygate::json::Value doc;
        paygate::json::ParseError error;
        FUZZ_CHECK(paygate::json::parse(input, doc, error), "accepted input does not parse");
        zt::Validation again = zt::validate_session(paygate::json::canonical(doc), zt::Rules{"2030-01-01", loopback});
        FUZZ_CHECK(again.request && again.request->fingerprint == r.fingerprint, "canonical form judged differently");
    }
    zt::UpdateValidation u = zt::validate_update(input, loopback);
    FUZZ_CHECK(u.request.has_value() != !u.errors.empty(), "update verdict and errors disagree");

    const std::string escaped = zt::html_escape(input);
    FUZZ_CHECK(escaped.find_first_of("<>\"'") == std::string::npos, "markup survived escaping");
    // Markers that never occur in the page's own markup: the description appears exactly escaped.
    const std::string marked = "\x01" + std::string(input) + "\x02";
    zt::PageView view;
    view.description = marked;
    view.total = std::string(input);
    view.items = {{std::string(input), "1", "1.00 RUB", "2030-01-01"}};
    view.methods = {std::string(input)};
    std::string page = zt::render_page(view);
    FUZZ_CHECK(page.find(zt::html_escape(marked)) != std::string::npos, "the description is not in the page, escaped");
    (void)zt::form_value(input, "method");
    return 0;
}

// The ZooTicket hosted payment page's HTML and its form (see zooticket.hpp): plain HTML, no script,
// no third-party asset.
#include <algorithm>
#include <string>

#include "paygated/zooticket.hpp"

namespace paygate::daemon::zooticket {

std::string html_escape(std::string_view text) {
    std::string out;
    for (char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out.push_back(c);
        }
    }
    return out;
}

std::string method_label(std::string_view method) {
    if (method == "bank_card") return "Bank card";
    if (method == "apple_pay") return "Apple Pay";
    if (method == "google_pay") return "Google Pay";
    if (method == "sbp") return "SBP (Faster Payments System)";
    return std::string(method);
}

std::optional<std::string> form_value(std::string_view body, std::string_view name) {
    while (!body.empty()) {
        std::string_view pair = body.substr(0, body.find('&'));
        body.remove_prefix(std::min(body.size(), pair.size() + 1));
        std::string_view key = pair.substr(0, pair.find('='));
        if (key != name) continue;
        std::string_view raw = pair.size() > key.size() ? pair.substr(key.size() + 1) : std::string_view();
        std::string out;
        for (std::size_t i = 0; i < raw.size(); ++i) {
            if (raw[i] == '+') {
                out.push_back(' ');
            } else if (raw[i] == '%') {
                if (i + 2 >= raw.size() || hex_digit(raw[i + 1]) < 0 || hex_digit(raw[i + 2]) < 0) return std::nullopt;
                out.push_back(static_cast<char>(hex_digit(raw[i + 1]) * 16 + hex_digit(raw[i + 2])));
                i += 2;
            } else {
                out.push_back(raw[i]);
            }
        }
        return out;
    }
    return std::nullopt;
}

std::string render_page(const PageView& v) {
    std::string title = v.kind == PageView::Kind::Pay          ? "Pay for your order"
                        : v.kind == PageView::Kind::Processing ? "Payment in progress"
                        : v.kind == PageView::Kind::Expired    ? "This payment link has expired"
                                                               : "This payment link is not valid";
    std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
    if (v.kind == PageView::Kind::Processing) h += "<meta http-equiv=\"refresh\" content=\"1\">\n";
    // Reloaded when its time is up, the page says the link expired (a meta refresh: no script).
    if (v.kind == PageView::Kind::Pay) {
        h += "<meta http-equiv=\"refresh\" content=\"" + std::to_string(v.seconds_left + 1) + "\">\n";
    }
    h += "<title>" + html_escape(title) + "</title>\n<style>\n"
         "body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}\n"
         "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem;border-bottom:1px solid #ccc}\n"
         "fieldset{margin:1rem 0}button{font-size:1rem;padding:.6rem 1.2rem;margin:.3rem 0}\n"
         "button:focus,input:focus,a:focus{outline:3px solid #1a5fb4;outline-offset:2px}\n"
         ".alert{border:2px solid #a51d2d;padding:.5rem;color:#a51d2d}\n</style>\n</head>\n<body>\n<main>\n<h1>" +
         html_escape(title) + "</h1>\n";
    if (!v.error.empty()) h += "<p class=\"alert\" role=\"alert\">" + html_escape(v.error) + "</p>\n";
    if (v.kind == PageView::Kind::Invalid) return h + "</main>\n</body>\n</html>\n";
    if (v.kind == PageView::Kind::Expired) {
        h += "<p id=\"status\">This payment session has expired: nothing was charged.</p>\n";
        if (!v.back_url.empty()) h += "<p><a id=\"back\" href=\"" + html_escape(v.back_url) + "\">Back to the shop</a></p>\n";
        return h + "</main>\n</body>\n</html>\n";
    }
    h += "<p id=\"description\">" + html_escape(v.description) + "</p>\n<table>\n<caption>Your order</caption>\n"
         "<thead><tr><th scope=\"col\">Ticket</th><th scope=\"col\">Quantity</th><th scope=\"col\">Price</th>"
         "<th scope=\"col\">Visit</th></tr></thead>\n<tbody>\n";
    for (const auto& row : v.items) {
        h += "<tr>";
        for (const std::string& cell : row) h += "<td>" + html_escape(cell) + "</td>";
        h += "</tr>\n";
    }
    h += "</tbody>\n</table>\n<p>Total: <strong id=\"total\">" + html_escape(v.total) + "</strong></p>\n";
    if (v.kind == PageView::Kind::Processing) {
        return h + "<p id=\"status\" role=\"status\">Your payment is being processed. This page updates by itself.</p>\n"
                   "</main>\n</body>\n</html>\n";
    }
    long minutes = v.seconds_left / 60, seconds = v.seconds_left % 60;
    h += "<p id=\"time-left\">Time left to pay: " + std::to_string(minutes) + " min " + std::to_string(seconds) + " s</p>\n";
    h += "<form method=\"post\" action=\"" + html_escape(v.token) + "/pay\">\n<fieldset>\n<legend>Payment method</legend>\n";
    for (std::size_t i = 0; i < v.methods.size(); ++i) {
        std::string id = "method-" + html_escape(v.methods[i]);
        h += "<div><input type=\"radio\" name=\"method\" id=\"" + id + "\" value=\"" + html_escape(v.methods[i]) + "\"" +
             (i == 0 ? " checked" : "") + "> <label for=\"" + id + "\">" + html_escape(method_label(v.methods[i])) +
             "</label></div>\n";
    }
    h += "</fieldset>\n<button type=\"submit\" id=\"pay\">Pay " + html_escape(v.total) + "</button>\n</form>\n";
    h += "<form method=\"post\" action=\"" + html_escape(v.token) + "/cancel\">\n"
         "<button type=\"submit\" id=\"cancel\">Cancel and return to the shop</button>\n</form>\n";
    return h + "</main>\n</body>\n</html>\n";
}

}  // namespace paygate::daemon::zooticket

// The ZooTicket merchant API's plain rules (see zooticket.hpp): the validation of sessions and
// updates, and the daemon's settings for it. The hosted page's HTML is in zooticket_page.cpp, the
// sealing of personal data in customer_keyring.cpp.
#include "paygated/zooticket.hpp"

#include <cstdio>
#include <memory>
#include <stdexcept>

#include "paygate/digest.hpp"
#include "paygated/config.hpp"

namespace paygate::daemon::zooticket {
namespace {

using json::Type;
using json::Value;

constexpr std::size_t kMaxItems = 100;
constexpr unsigned kMaxQuantity = 1000;

bool digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
    }
    return true;
}

bool valid_date(std::string_view d) {
    if (d.size() != 10 || d[4] != '-' || d[7] != '-' || !digits(d.substr(0, 4)) || !digits(d.substr(5, 2)) ||
        !digits(d.substr(8, 2))) {
        return false;
    }
    int y = std::stoi(std::string(d.substr(0, 4))), m = std::stoi(std::string(d.substr(5, 2))),
        day = std::stoi(std::string(d.substr(8, 2)));
    static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || day < 1) return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return day <= kDays[m - 1] + (m == 2 && leap ? 1 : 0);
}

bool valid_time(std::string_view t) {
    if (t.size() != 5 || t[2] != ':' || !digits(t.substr(0, 2)) || !digits(t.substr(3, 2))) return false;
    return std::stoi(std::string(t.substr(0, 2))) < 24 && std::stoi(std::string(t.substr(3, 2))) < 60;
}

bool valid_email(std::string_view e) {
    if (e.size() < 3 || e.size() > 254) return false;
    std::size_t at = e.find('@');
    if (at == 0 || at == std::string_view::npos || e.find('@', at + 1) != std::string_view::npos) return false;
    std::string_view domain = e.substr(at + 1);
    if (domain.size() < 3 || domain.find('.') == std::string_view::npos || domain.front() == '.' ||
        domain.back() == '.') {
        return false;
    }
    for (char c : e) {
        if (static_cast<unsigned char>(c) <= ' ' || c == '"' || c == '<' || c == '>' || c == ',' || c == ';' ||
            c == '\\' || c == 0x7f) {
            return false;
        }
    }
    return true;
}

bool valid_phone(std::string_view p) {   // E.164
    return p.size() >= 8 && p.size() <= 16 && p[0] == '+' && p[1] >= '1' && p[1] <= '9' && digits(p.substr(1));
}

unsigned __int128 to_u128(std::string_view minor) {
    unsigned __int128 v = 0;
    for (char c : minor) v = v * 10 + static_cast<unsigned>(c - '0');
    return v;
}

// Reads one object's members, remembering unknown ones: they are refused, not ignored, so a
// misspelt field never silently goes missing.
class Reader {
public:
    Reader(std::vector<FieldError>& errors) : errors_(errors) {}

    void error(const std::string& field, const std::string& message) { errors_.push_back({field, message}); }

    const Value* object(const Value* v, const std::string& field) {
        if (v == nullptr) {
            error(field, "required");
            return nullptr;
        }
        if (!v->is(Type::Object)) {
            error(field, "must be an object");
            return nullptr;
        }
        return v;
    }

    void only(const Value& object, const std::string& prefix, std::initializer_list<std::string_view> known) {
        for (const auto& [name, value] : object.members()) {
            bool ok = false;
            for (std::string_view k : known) ok = ok || k == name;
            if (!ok) error(prefix + name, "unknown field");
        }
    }

    std::optional<std::string> string(const Value& parent, std::string_view name, const std::string& prefix,
                                      bool required = true) {
        const Value* v = parent.find(name);
        std::string field = prefix + std::string(name);
        if (v == nullptr) {
            if (required) error(field, "required");
            return std::nullopt;
        }
        if (!v->is(Type::String)) {
            error(field, "must be a string");
            return std::nullopt;
        }
        return v->text();
    }

    // {"value": "2500.00", "currency": "RUB"}: exactly two decimals, > 0, exact in the currency.
    std::optional<Amount> money(const Value& parent, std::string_view name, const std::string& prefix) {
        std::string field = prefix + std::string(name);
        const Value* m = object(parent.find(name), field);
        if (m == nullptr) return std::nullopt;
        only(*m, field + ".", {"value", "currency"});
        std::optional<std::string> value = string(*m, "value", field + ".");
        std::optional<std::string> code = string(*m, "currency", field + ".");
        const Currency* currency = code ? find_currency(*code) : nullptr;
        if (code && currency == nullptr) error(field + ".currency", "unknown currency");
        if (!value) return std::nullopt;
        const std::size_t dot = value->find('.');
        if (dot == std::string::npos || value->size() - dot != 3 || !digits(value->substr(0, dot)) ||
            !digits(value->substr(dot + 1)) || (dot > 1 && (*value)[0] == '0')) {
            error(field + ".value", "must be a decimal string with exactly two decimals, e.g. \"2500.00\"");
            return std::nullopt;
        }
        if (currency == nullptr) return std::nullopt;
        std::string why;
        std::optional<Amount> amount = parse_amount(*value, false, *currency, why);
        if (!amount) error(field + ".value", why);
        return amount;
    }

private:
    std::vector<FieldError>& errors_;
};

// `customer{email, phone}` of a session or a PATCH: checked, and re-serialized with only those two
// members (the JSON that gets sealed). Nothing when the body has no valid customer object.
std::optional<std::string> read_customer(Reader& r, const Value& doc) {
    const Value* customer = r.object(doc.find("customer"), "customer");
    if (customer == nullptr) return std::nullopt;
    r.only(*customer, "customer.", {"email", "phone"});
    std::optional<std::string> email = r.string(*customer, "email", "customer.");
    std::optional<std::string> phone = r.string(*customer, "phone", "customer.", false);
    if (email && !valid_email(*email)) r.error("customer.email", "must be an email address");
    if (phone && !valid_phone(*phone)) r.error("customer.phone", "must be an E.164 number, e.g. +79991111111");
    std::vector<std::pair<std::string, Value>> members;
    if (email) members.emplace_back("email", Value::string(*email));
    if (phone) members.emplace_back("phone", Value::string(*phone));
    return json::serialize(Value::object(std::move(members)));
}

}  // namespace

bool id_chars(std::string_view s, std::size_t max) {
    if (s.empty() || s.size() > max) return false;
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-' || c == ':';
        if (!ok) return false;
    }
    return true;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

const std::vector<std::string_view>& known_payment_methods() {
    static const std::vector<std::string_view> methods = {"bank_card", "apple_pay", "google_pay", "sbp"};
    return methods;
}

bool acceptable_url(std::string_view url, bool allow_http_loopback) {
    if (url.size() > 2048) return false;
    for (char c : url) {
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return false;
    }
    std::string_view rest;
    bool https = url.substr(0, 8) == "https://";
    if (https) {
        rest = url.substr(8);
    } else if (url.substr(0, 7) == "http://") {
        rest = url.substr(7);
    } else {
        return false;
    }
    std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
    if (authority.empty() || authority.find('@') != std::string_view::npos) return false;
    std::string_view host = authority;
    if (host.front() == '[') {
        std::size_t close = host.find(']');
        if (close == std::string_view::npos) return false;
        host = host.substr(0, close + 1);
    } else {
        host = host.substr(0, host.find(':'));
    }
    if (host.empty()) return false;
    if (https) return true;
    return allow_http_loopback && (host == "127.0.0.1" || host == "localhost" || host == "[::1]");
}

Validation validate_session(std::string_view body, const Rules& rules) {
    Validation out;
    Value doc;
    json::ParseError parse_error;
    if (!json::parse(body, doc, parse_error)) {
        out.not_json = true;
        out.errors.push_back({"body", "not valid JSON at byte " + std::to_string(parse_error.offset) + ": " +
                                          parse_error.message});
        return out;
    }
    Reader r(out.errors);
    if (!doc.is(Type::Object)) {
        r.error("body", "must be a JSON object");
        return out;
    }
    r.only(doc, "", {"session_id", "order", "description", "items", "customer", "payment_methods", "confirmation"});
    SessionRequest req;

    if (auto s = r.string(doc, "session_id", "")) {
        if (!id_chars(*s, 128)) r.error("session_id", "must be 1-128 of A-Z a-z 0-9 . _ : -");
        req.session_id = *s;
    }

    std::optional<Amount> total;
    if (const Value* order = r.object(doc.find("order"), "order")) {
        r.only(*order, "order.", {"order_id", "total_amount"});
        if (auto id = r.string(*order, "order_id", "order.")) {
            if (!id_chars(*id, 128)) r.error("order.order_id", "must be 1-128 of A-Z a-z 0-9 . _ : -");
            req.order_id = *id;
        }
        total = r.money(*order, "total_amount", "order.");
    }

    if (auto d = r.string(doc, "description", "")) {
        if (d->empty() || d->size() > 1024) r.error("description", "must be 1-1024 bytes");
        req.description = *d;
    }

    unsigned __int128 sum = 0;
    bool sum_known = true;
    const Value* items = doc.find("items");
    if (items == nullptr) {
        r.error("items", "required");
    } else if (!items->is(Type::Array) || items->items().empty() || items->items().size() > kMaxItems) {
        r.error("items", "must be an array of 1-100 items");
    } else {
        req.items_value = *items;
        for (std::size_t i = 0; i < items->items().size(); ++i) {
            const std::string p = "items[" + std::to_string(i) + "]";
            const Value* item = r.object(&items->items()[i], p);
            if (item == nullptr) {
                sum_known = false;
                continue;
            }
            r.only(*item, p + ".", {"ticket_type", "quantity", "unit_price", "visit_date", "visit_time"});
            Item it;
            if (auto t = r.string(*item, "ticket_type", p + ".")) {
                if (!id_chars(*t, 64)) r.error(p + ".ticket_type", "must be 1-64 of A-Z a-z 0-9 . _ : -");
                it.ticket_type = *t;
            }
            const Value* q = item->find("quantity");
            if (q == nullptr) {
                r.error(p + ".quantity", "required");
                sum_known = false;
            } else if (!q->is(Type::Number) || !digits(q->text()) || q->text().size() > 4 || q->text()[0] == '0' ||
                       std::stoul(q->text()) > kMaxQuantity) {
                r.error(p + ".quantity", "must be a positive integer up to 1000");
                sum_known = false;
            } else {
                it.quantity = q->text();
            }
            std::optional<Amount> price = r.money(*item, "unit_price", p + ".");
            if (price && total && price->currency != total->currency) {
                r.error(p + ".unit_price.currency", "must be the order's currency (one currency per session)");
            }
            if (price && !it.quantity.empty()) {
                sum += to_u128(price->minor_units) * std::stoul(it.quantity);
                it.unit_price = *price;
            } else {
                sum_known = false;
            }
            if (auto date = r.string(*item, "visit_date", p + ".")) {
                if (!valid_date(*date)) {
                    r.error(p + ".visit_date", "must be a date YYYY-MM-DD");
                } else if (*date < rules.today) {
                    r.error(p + ".visit_date", "must not be in the past");
                }
                it.visit_date = *date;
            }
            if (auto time = r.string(*item, "visit_time", p + ".", false)) {
                if (!valid_time(*time)) r.error(p + ".visit_time", "must be a time HH:MM");
                it.visit_time = *time;
            }
            req.items.push_back(std::move(it));
        }
    }
    if (total && sum_known && out.errors.empty() && sum != to_u128(total->minor_units)) {
        r.error("order.total_amount.value", "must equal the sum of the items (quantity x unit_price)");
    }

    if (std::optional<std::string> customer = read_customer(r, doc)) req.customer_json = std::move(*customer);

    const Value* methods = doc.find("payment_methods");
    if (methods == nullptr) {
        r.error("payment_methods", "required");
    } else if (!methods->is(Type::Array) || methods->items().empty() || methods->items().size() > 8) {
        r.error("payment_methods", "must be an array of 1-8 payment methods");
    } else {
        for (std::size_t i = 0; i < methods->items().size(); ++i) {
            const Value& m = methods->items()[i];
            const std::string field = "payment_methods[" + std::to_string(i) + "]";
            bool known = false;
            for (std::string_view k : known_payment_methods()) known = known || (m.is(Type::String) && m.text() == k);
            if (!known) {
                r.error(field, "unknown payment method (known: bank_card, apple_pay, google_pay, sbp)");
                continue;
            }
            for (const std::string& seen : req.payment_methods) {
                if (seen == m.text()) r.error(field, "listed twice");
            }
            req.payment_methods.push_back(m.text());
        }
    }

    if (const Value* c = r.object(doc.find("confirmation"), "confirmation")) {
        r.only(*c, "confirmation.", {"type", "return_url", "cancel_url"});
        if (auto type = r.string(*c, "type", "confirmation.")) {
            if (*type != "redirect") r.error("confirmation.type", "must be \"redirect\"");
        }
        for (const char* name : {"return_url", "cancel_url"}) {
            if (auto url = r.string(*c, name, "confirmation.")) {
                if (!acceptable_url(*url, rules.allow_http_loopback)) {
                    r.error(std::string("confirmation.") + name, "must be an absolute https URL");
                }
                (std::string_view(name) == "return_url" ? req.return_url : req.cancel_url) = *url;
            }
        }
    }

    if (!out.errors.empty()) return out;
    req.total = *total;
    req.fingerprint = sha256_hex(json::canonical(doc));
    out.request = std::move(req);
    return out;
}

UpdateValidation validate_update(std::string_view body, bool partial) {
    UpdateValidation out;
    Value doc;
    json::ParseError parse_error;
    if (!json::parse(body, doc, parse_error)) {
        out.errors.push_back({"body", "not valid JSON at byte " + std::to_string(parse_error.offset) + ": " +
                                          parse_error.message});
        return out;
    }
    Reader r(out.errors);
    if (!doc.is(Type::Object)) {
        r.error("body", "must be a JSON object");
        return out;
    }
    if (partial) {
        r.only(doc, "", {"amount", "customer", "metadata", "description"});
        if (doc.members().empty()) r.error("body", "name at least one of amount, customer, metadata, description");
    } else {
        r.only(doc, "", {"amount", "metadata", "description"});
    }
    UpdateRequest req;
    for (const auto& [name, value] : doc.members()) req.updated_fields.push_back(name);
    if (doc.find("amount") != nullptr || !partial) req.amount = r.money(doc, "amount", "");
    if (const Value* m = doc.find("metadata")) {
        std::string text = json::serialize(*m);
        if (!m->is(Type::Object) || m->members().size() > 32 || text.size() > 4096) {
            r.error("metadata", "must be an object of at most 32 members and 4 KiB");
        } else if (m->find("updated_fields") != nullptr) {
            r.error("metadata.updated_fields", "is reserved: paygate fills it in answers");
        } else {
            req.metadata_json = text;
        }
    } else if (!partial) {
        r.error("metadata", "required");
    }
    if (doc.find("description") != nullptr || !partial) {
        if (auto d = r.string(doc, "description", "")) {
            if (d->empty() || d->size() > 1024) r.error("description", "must be 1-1024 bytes");
            req.description = *d;
        }
    }
    if (partial && doc.find("customer") != nullptr) {
        req.customer_json = read_customer(r, doc);
    }
    if (!out.errors.empty()) return out;
    out.request = std::move(req);
    return out;
}

bool load_settings(const Config& config, Settings& out, std::string& error) {
    for (const std::string& spec : config.customer_data_keys) {
        if (!out.keyring.add(spec, error)) return false;
    }
    out.page_url = config.zooticket_page_url;
    out.session_lifetime_s = config.zooticket_session_lifetime_s;
    out.allow_http_loopback = config.zooticket_allow_http_loopback;
    return true;
}

}  // namespace paygate::daemon::zooticket

// The Prometheus text exposition format: writing samples, merging the daemons' expositions.
#include "paygate/metrics_text.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

namespace paygate::metrics {
namespace {

void append_escaped(std::string& out, std::string_view text, bool quote) {
    for (char c : text) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '"' && quote) {
            out += "\\\"";
        } else {
            out += c;
        }
    }
}

bool name_char(char c, bool first) {
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    return alpha || (!first && c >= '0' && c <= '9');
}

bool valid_name(std::string_view name) {
    if (name.empty()) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        if (!name_char(name[i], i == 0)) return false;
    }
    return true;
}

// A number as the format writes one (strtod's syntax: also +Inf, -Inf, NaN), the whole token.
bool number_token(std::string_view token) {
    if (token.empty() || token.size() > 64) return false;
    std::string text(token);
    char* end = nullptr;
    std::strtod(text.c_str(), &end);
    return end == text.c_str() + text.size();
}

// The metric name of a sample line (name, optional {labels}, a value, optional timestamp), or ""
// when the line is not one.
std::string_view sample_name(std::string_view line) {
    std::size_t n = 0;
    while (n < line.size() && name_char(line[n], n == 0)) ++n;
    if (n == 0 || n == line.size()) return {};
    std::size_t at = n;
    if (line[at] == '{') {
        bool quoted = false;
        for (++at; at < line.size(); ++at) {
            if (quoted && line[at] == '\\') {
                ++at;
            } else if (line[at] == '"') {
                quoted = !quoted;
            } else if (!quoted && line[at] == '}') {
                break;
            }
        }
        if (at >= line.size()) return {};
        ++at;
    }
    if (at >= line.size() || line[at] != ' ') return {};
    std::string_view rest = line.substr(at + 1);
    std::size_t space = rest.find(' ');
    if (!number_token(rest.substr(0, space))) return {};
    if (space != std::string_view::npos) {
        std::string_view stamp = rest.substr(space + 1);
        if (stamp.empty() || stamp.find_first_not_of("-0123456789") != std::string_view::npos) return {};
    }
    return line.substr(0, n);
}

struct Family {
    std::string help;
    std::string type;
    std::vector<std::string> samples;
};

}  // namespace

std::string format_value(double value) {
    if (std::isnan(value)) return "NaN";
    if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
    if (value == std::floor(value) && std::fabs(value) < 1e15) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.0f", value);
        return buf;
    }
    char buf[32];
    for (int precision = 6; precision <= 17; ++precision) {
        std::snprintf(buf, sizeof buf, "%.*g", precision, value);
        if (std::strtod(buf, nullptr) == value) break;
    }
    return buf;
}

void TextWriter::family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    append_escaped(out_, help, false);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
}

void TextWriter::sample(std::string_view name, std::initializer_list<Label> labels, double value) {
    sample(name, std::vector<Label>(labels), value);
}

void TextWriter::sample(std::string_view name, const std::vector<Label>& labels, double value) {
    out_ += name;
    if (!labels.empty()) {
        out_ += '{';
        bool first = true;
        for (const Label& l : labels) {
            if (!first) out_ += ',';
            first = false;
            out_ += l.name;
            out_ += "=\"";
            append_escaped(out_, l.value, true);
            out_ += '"';
        }
        out_ += '}';
    }
    out_ += ' ';
    out_ += format_value(value);
    out_ += '\n';
}

void TextWriter::histogram(std::string_view name, const std::vector<Label>& labels, const std::vector<double>& bounds,
                           const std::vector<std::uint64_t>& counts, double sum) {
    std::string bucket = std::string(name) + "_bucket";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += i < counts.size() ? counts[i] : 0;
        std::string le = i < bounds.size() ? format_value(bounds[i]) : "+Inf";
        std::vector<Label> with_le = labels;
        with_le.push_back({"le", le});
        sample(bucket, with_le, static_cast<double>(cumulative));
    }
    sample(std::string(name) + "_sum", labels, sum);
    sample(std::string(name) + "_count", labels, static_cast<double>(cumulative));
}

std::string merge_labelled(std::string_view label, const std::vector<std::pair<std::string, std::string>>& sources) {
    std::vector<std::string> order;
    std::map<std::string, Family, std::less<>> families;
    auto family_of = [&](std::string_view name) -> Family& {
        auto it = families.find(name);
        if (it == families.end()) {
            order.emplace_back(name);
            it = families.emplace(std::string(name), Family{}).first;
        }
        return it->second;
    };
    for (const auto& [value, text] : sources) {
        std::string labelled = std::string(label) + "=\"";
        append_escaped(labelled, value, true);
        labelled += '"';
        std::string current;   // the family of the last # TYPE line: its samples follow it
        std::size_t pos = 0;
        while (pos < text.size()) {
            std::size_t end = text.find('\n', pos);
            if (end == std::string::npos) end = text.size();
            std::string_view line(text.data() + pos, end - pos);
            pos = end + 1;
            if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
                std::string_view rest = line.substr(7);
                std::size_t space = rest.find(' ');
                if (space == std::string_view::npos) continue;
                std::string_view name = rest.substr(0, space);
                if (!valid_name(name)) continue;
                Family& f = family_of(name);
                std::string& field = line[2] == 'H' ? f.help : f.type;
                if (field.empty()) field = std::string(rest.substr(space + 1));
                if (line[2] == 'T') current = std::string(name);
                continue;
            }
            std::string_view name = sample_name(line);
            if (name.empty()) continue;
            bool of_current = !current.empty() && name.substr(0, current.size()) == current;
            Family& f = family_of(of_current ? std::string_view(current) : name);
            std::string out(name);
            std::string_view rest = line.substr(name.size());
            if (rest.front() == '{') {
                out += '{';
                out += labelled;
                if (rest.size() > 1 && rest[1] != '}') out += ',';
                out += rest.substr(1);
            } else {
                out += '{';
                out += labelled;
                out += '}';
                out += rest;
            }
            f.samples.push_back(std::move(out));
        }
    }
    std::string out;
    for (const std::string& name : order) {
        const Family& f = families.find(name)->second;
        if (f.samples.empty()) continue;
        if (!f.help.empty()) out += "# HELP " + name + " " + f.help + "\n";
        if (!f.type.empty()) out += "# TYPE " + name + " " + f.type + "\n";
        for (const std::string& s : f.samples) out += s + "\n";
    }
    return out;
}

}  // namespace paygate::metrics

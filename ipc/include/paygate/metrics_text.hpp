// The Prometheus text exposition format (version 0.0.4), written and merged.
//
// Both sides use it: the nginx module formats its shared-memory counters and merges in what each
// paygated answers to `system.metrics` (labelled by daemon); paygated formats its own. Plain C++.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paygate::metrics {

// The route the module asks each daemon for its metrics on; answered by the broker thread at once.
inline constexpr std::string_view kMetricsRoute = "system.metrics";
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

struct Label {
    std::string_view name;
    std::string_view value;
};

// "0.005", "12", "+Inf": the shortest text that reads back as the same double.
std::string format_value(double value);

class TextWriter {
public:
    // Starts a family: its # HELP and # TYPE lines ("counter", "gauge", "histogram").
    void family(std::string_view name, std::string_view type, std::string_view help);
    // One sample line; `name` is the family's or a histogram's _bucket/_sum/_count.
    void sample(std::string_view name, std::initializer_list<Label> labels, double value);
    void sample(std::string_view name, const std::vector<Label>& labels, double value);
    // A histogram's samples: `counts` holds one count per bound plus the +Inf one, each counting
    // only its own bucket (not cumulative); _count is their total, so the lines always agree.
    void histogram(std::string_view name, const std::vector<Label>& labels, const std::vector<double>& bounds,
                   const std::vector<std::uint64_t>& counts, double sum);

    const std::string& text() const { return out_; }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

// One exposition with `label="value"` added to every sample line of each source's text, the
// sources' families merged so each appears once (HELP and TYPE of its first source). Lines that
// are not HELP, TYPE or a sample are dropped; a source's sample lines that do not start with a
// metric name are dropped too (a daemon cannot break the module's exposition).
std::string merge_labelled(std::string_view label, const std::vector<std::pair<std::string, std::string>>& sources);

}  // namespace paygate::metrics

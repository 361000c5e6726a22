// Metrics (docs/operations.md#metrics): the exposition writer and the merge of the daemons'
// expositions (ipc/metrics_text), the module's shared-memory counters and their format
// (ngx_module/module_metrics), paygated's counters and the metered provider (daemon/metrics).
#include "cmocka.hpp"

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "module_metrics.hpp"
#include "paygate/metrics_text.hpp"
#include "paygated/metrics.hpp"

using namespace paygate;
using module::AuthRefusal;
using module::ModuleMetrics;
using module::Unavailable;

namespace {

bool contains(const std::string& text, const std::string& line) { return text.find(line) != std::string::npos; }

void assert_contains(const std::string& text, const std::string& line) {
    if (!contains(text, line)) fail_msg("missing %s in:\n%s", line.c_str(), text.c_str());
}

std::size_t count_of(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

// ---- metrics_text ------------------------------------------------------------------------------

void values_read_back_exactly(void**) {
    assert_string_equal(metrics::format_value(0).c_str(), "0");
    assert_string_equal(metrics::format_value(12).c_str(), "12");
    assert_string_equal(metrics::format_value(0.005).c_str(), "0.005");
    assert_string_equal(metrics::format_value(2.5).c_str(), "2.5");
    assert_string_equal(metrics::format_value(1.0 / 0.0).c_str(), "+Inf");
    assert_string_equal(metrics::format_value(-1).c_str(), "-1");
    for (double v : {0.1, 1.0 / 3, 123456.789, 1e-9, 1e20}) {
        assert_true(std::strtod(metrics::format_value(v).c_str(), nullptr) == v);
    }
}

void label_values_are_escaped(void**) {
    metrics::TextWriter w;
    w.family("paygate_x_total", "counter", "help with \\ and\nnewline");
    w.sample("paygate_x_total", {{"daemon", "a\"b\\c\nd"}}, 3);
    assert_string_equal(w.text().c_str(),
                        "# HELP paygate_x_total help with \\\\ and\\nnewline\n"
                        "# TYPE paygate_x_total counter\n"
                        "paygate_x_total{daemon=\"a\\\"b\\\\c\\nd\"} 3\n");
}

void histogram_buckets_are_cumulative_and_agree_with_count(void**) {
    metrics::TextWriter w;
    w.histogram("h_seconds", {{"route", "r"}}, {0.1, 1}, {2, 3, 4}, 7.5);
    assert_string_equal(w.text().c_str(),
                        "h_seconds_bucket{route=\"r\",le=\"0.1\"} 2\n"
                        "h_seconds_bucket{route=\"r\",le=\"1\"} 5\n"
                        "h_seconds_bucket{route=\"r\",le=\"+Inf\"} 9\n"
                        "h_seconds_sum{route=\"r\"} 7.5\n"
                        "h_seconds_count{route=\"r\"} 9\n");
}

void merge_labels_every_sample_and_groups_families(void**) {
    std::string d1 =
        "# HELP q_depth Queue.\n# TYPE q_depth gauge\nq_depth 1\n"
        "# HELP h_seconds H.\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 0.5\n"
        "h_seconds_count 2\n";
    std::string d2 = "# HELP q_depth Queue.\n# TYPE q_depth gauge\nq_depth{} 4\n";
    std::string out = metrics::merge_labelled("daemon", {{"ipc:///a", d1}, {"tcp://b:1", d2}});
    assert_string_equal(out.c_str(),
                        "# HELP q_depth Queue.\n# TYPE q_depth gauge\n"
                        "q_depth{daemon=\"ipc:///a\"} 1\n"
                        "q_depth{daemon=\"tcp://b:1\"} 4\n"
                        "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
                        "h_seconds_bucket{daemon=\"ipc:///a\",le=\"+Inf\"} 2\n"
                        "h_seconds_sum{daemon=\"ipc:///a\"} 0.5\n"
                        "h_seconds_count{daemon=\"ipc:///a\"} 2\n");
}

void merge_drops_what_is_not_a_sample(void**) {
    std::string bad =
        "garbage line\n{x=\"1\"} 2\n# a comment\n# TYPE 9bad gauge\nok_total 3\nunclosed{a=\"}\" 1\nx_total{} 1 2 3\n"
        "y_total 1 12345\n\n";
    std::string out = metrics::merge_labelled("daemon", {{"d", bad}});
    assert_string_equal(out.c_str(), "ok_total{daemon=\"d\"} 3\ny_total{daemon=\"d\"} 1 12345\n");
    assert_string_equal(metrics::merge_labelled("daemon", {}).c_str(), "");
}

// ---- the module's counters -----------------------------------------------------------------------

struct Block {
    std::unique_ptr<unsigned char[]> memory{new unsigned char[ModuleMetrics::bytes() + 64]};
    void* aligned() { return reinterpret_cast<void*>((reinterpret_cast<std::uintptr_t>(memory.get()) + 63) & ~std::uintptr_t{63}); }
};

const std::vector<std::string_view> kRoutes = {"health", "payment.create", "payment.status"};
const ModuleMetrics::Alive everyone_alive = [](std::int64_t) { return true; };

void module_counters_format(void**) {
    Block block;
    ModuleMetrics m = ModuleMetrics::create(block.aligned());
    m.request(1, 200);
    m.request(1, 200);
    m.request(3, 404);
    m.request(0, 405);
    m.request(2, 42);      // out of range: counted as 599, never out of bounds
    m.request(99, 200);    // an unknown slot: counted under "none"
    m.round_trip(1, 3'000'000);   // 3 ms
    m.round_trip(1, 20'000'000'000ull);   // 20 s: the +Inf bucket
    m.replay_hit(2);
    m.auth_refusal(AuthRefusal::TokenInvalid);
    m.auth_refusal(AuthRefusal::TokenInvalid);
    m.unavailable(Unavailable::NoDaemon);
    m.unavailable(Unavailable::Timeout);
    assert_true(m.claim_worker_slot(100, everyone_alive));
    m.in_flight_add(2);
    m.in_flight_add(-1);
    std::string text = m.format(kRoutes, everyone_alive);
    assert_contains(text, "paygate_requests_total{route=\"health\",status=\"200\"} 2\n");
    assert_contains(text, "paygate_requests_total{route=\"payment.status\",status=\"404\"} 1\n");
    assert_contains(text, "paygate_requests_total{route=\"none\",status=\"405\"} 1\n");
    assert_contains(text, "paygate_requests_total{route=\"payment.create\",status=\"599\"} 1\n");
    assert_contains(text, "paygate_requests_total{route=\"none\",status=\"200\"} 1\n");
    assert_contains(text, "paygate_daemon_round_trip_seconds_bucket{route=\"health\",le=\"0.0025\"} 0\n");
    assert_contains(text, "paygate_daemon_round_trip_seconds_bucket{route=\"health\",le=\"0.005\"} 1\n");
    assert_contains(text, "paygate_daemon_round_trip_seconds_bucket{route=\"health\",le=\"10\"} 1\n");
    assert_contains(text, "paygate_daemon_round_trip_seconds_bucket{route=\"health\",le=\"+Inf\"} 2\n");
    assert_contains(text, "paygate_daemon_round_trip_seconds_count{route=\"health\"} 2\n");
    assert_contains(text, "paygate_daemon_round_trip_seconds_sum{route=\"health\"} 20.003\n");
    // a route with no round trip has no histogram lines
    assert_false(contains(text, "paygate_daemon_round_trip_seconds_count{route=\"payment.status\"}"));
    assert_contains(text, "paygate_replay_hits_total{route=\"payment.create\"} 1\n");
    assert_contains(text, "paygate_auth_refusals_total{kind=\"token_invalid\"} 2\n");
    assert_contains(text, "paygate_auth_refusals_total{kind=\"token_missing\"} 0\n");
    assert_contains(text, "paygate_unavailable_total{status=\"503\",cause=\"no_daemon\"} 1\n");
    assert_contains(text, "paygate_unavailable_total{status=\"504\",cause=\"timeout\"} 1\n");
    assert_contains(text, "paygate_requests_in_flight 1\n");
    // one HELP and one TYPE per family
    assert_int_equal(count_of(text, "# TYPE paygate_requests_total "), 1);
    assert_int_equal(count_of(text, "# TYPE "), count_of(text, "# HELP "));
}

void attach_finds_the_block_or_refuses(void**) {
    Block block;
    ModuleMetrics m = ModuleMetrics::create(block.aligned());
    m.request(1, 201);
    ModuleMetrics again = ModuleMetrics::attach(block.aligned());
    assert_true(again.valid());
    assert_contains(again.format(kRoutes, everyone_alive), "paygate_requests_total{route=\"health\",status=\"201\"} 1\n");
    Block other;
    std::memset(other.aligned(), 0, ModuleMetrics::bytes());
    assert_false(ModuleMetrics::attach(other.aligned()).valid());
}

void counters_never_lose_a_concurrent_increment(void**) {
    Block block;
    ModuleMetrics m = ModuleMetrics::create(block.aligned());
    assert_true(m.claim_worker_slot(100, everyone_alive));
    constexpr int kThreads = 4;
    constexpr int kEach = 20000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&m] {
            for (int i = 0; i < kEach; ++i) {
                m.request(2, 200);
                m.round_trip(2, 1000);
                m.in_flight_add(1);
                m.in_flight_add(-1);
            }
        });
    }
    for (auto& t : threads) t.join();
    std::string text = m.format(kRoutes, everyone_alive);
    assert_contains(text, "paygate_requests_total{route=\"payment.create\",status=\"200\"} 80000\n");
    assert_contains(text, "paygate_daemon_round_trip_seconds_count{route=\"payment.create\"} 80000\n");
    assert_contains(text, "paygate_requests_in_flight 0\n");
}

// Each worker counts its own requests in flight: a worker that died takes its count with it, and
// the next one to start reuses its slot.
void in_flight_counts_live_workers_only(void**) {
    Block block;
    ModuleMetrics::create(block.aligned());
    std::map<std::int64_t, bool> alive{{101, true}, {102, true}, {103, true}};
    ModuleMetrics::Alive is_alive = [&](std::int64_t pid) { return alive[pid]; };
    ModuleMetrics w1 = ModuleMetrics::attach(block.aligned());   // each worker its own handle
    ModuleMetrics w2 = ModuleMetrics::attach(block.aligned());
    assert_true(w1.claim_worker_slot(101, is_alive));
    assert_true(w2.claim_worker_slot(102, is_alive));
    w1.in_flight_add(3);
    w2.in_flight_add(4);
    assert_contains(w1.format(kRoutes, is_alive), "paygate_requests_in_flight 7\n");
    alive[101] = false;   // worker 1 crashed with 3 requests waiting
    assert_contains(w2.format(kRoutes, is_alive), "paygate_requests_in_flight 4\n");
    ModuleMetrics w3 = ModuleMetrics::attach(block.aligned());
    assert_true(w3.claim_worker_slot(103, is_alive));   // takes the dead worker's slot, from 0
    w3.in_flight_add(1);
    alive[101] = true;    // (even were its pid reused, the slot now belongs to 103)
    assert_contains(w3.format(kRoutes, is_alive), "paygate_requests_in_flight 5\n");
    w2.release_worker_slot();   // a worker that exits normally gives its slot back
    assert_contains(w3.format(kRoutes, is_alive), "paygate_requests_in_flight 1\n");
    // a new worker with the pid of a dead one that held a slot takes that slot, from 0
    Block reuse;
    ModuleMetrics::create(reuse.aligned());
    ModuleMetrics crashed = ModuleMetrics::attach(reuse.aligned());
    assert_true(crashed.claim_worker_slot(200, everyone_alive));
    crashed.in_flight_add(5);
    ModuleMetrics successor = ModuleMetrics::attach(reuse.aligned());
    assert_true(successor.claim_worker_slot(200, everyone_alive));
    assert_contains(successor.format(kRoutes, everyone_alive), "paygate_requests_in_flight 0\n");
    // with every slot held by a live process a worker is not counted, never out of bounds
    Block full;
    ModuleMetrics::create(full.aligned());
    for (std::size_t i = 0; i < module::kWorkerSlots; ++i) {
        assert_true(ModuleMetrics::attach(full.aligned()).claim_worker_slot(static_cast<std::int64_t>(1000 + i), everyone_alive));
    }
    ModuleMetrics late = ModuleMetrics::attach(full.aligned());
    assert_false(late.claim_worker_slot(5000, everyone_alive));
    late.in_flight_add(1);
    assert_contains(late.format(kRoutes, everyone_alive), "paygate_requests_in_flight 0\n");
}

// ---- paygated's counters -------------------------------------------------------------------------

class FakeProvider : public daemon::Provider {
public:
    const std::string& name() const override { return name_; }
    daemon::ProviderAnswer charge(const daemon::Operation&) override {
        return daemon::provider_answer(daemon::ProviderAnswer::Kind::Completed, "");
    }
    daemon::ProviderAnswer reverse(const daemon::Operation&) override {
        return daemon::provider_answer(daemon::ProviderAnswer::Kind::Unknown, "timeout");
    }
    daemon::ProviderAnswer status(const daemon::Operation&) override {
        return daemon::provider_answer(daemon::ProviderAnswer::Kind::Processing, "");
    }

private:
    std::string name_ = "sky-technologies";
};

void daemon_counters_format(void**) {
    auto metrics = std::make_shared<daemon::DaemonMetrics>();
    metrics->set_pool_size(3);
    metrics->set_providers({"sky-technologies"});
    metrics->db_connection(1, true);
    metrics->db_connection(2, true);
    metrics->db_connection(2, false);
    daemon::MeteredProvider provider(std::make_unique<FakeProvider>(), metrics);
    daemon::Operation op;
    assert_true(provider.charge(op).kind == daemon::ProviderAnswer::Kind::Completed);   // answers pass through
    provider.charge(op);
    provider.reverse(op);
    metrics->callback("sky-technologies", "accepted");
    metrics->callback("sky-technologies", "duplicate");
    metrics->callback("sky-technologies", "accepted");
    daemon::StateSnapshot snapshot;
    snapshot.tasks.emplace_back("sky_technologies_integration_process_payment", "dead", 2);
    snapshot.operations.emplace_back("sky-technologies", "unknown", 4);
    auto now = daemon::DaemonMetrics::Clock::now();
    metrics->state_sampled(snapshot, now - std::chrono::seconds(2));
    metrics::TextWriter w;
    metrics->format(w, now);
    const std::string& text = w.text();
    assert_contains(text, "paygate_daemon_provider_call_seconds_count{provider=\"sky-technologies\",call=\"charge\","
                          "outcome=\"completed\"} 2\n");
    assert_contains(text, "paygate_daemon_provider_call_seconds_count{provider=\"sky-technologies\",call=\"reverse\","
                          "outcome=\"unknown\"} 1\n");
    assert_contains(text, "paygate_daemon_callbacks_total{partner=\"sky-technologies\",result=\"accepted\"} 2\n");
    assert_contains(text, "paygate_daemon_callbacks_total{partner=\"sky-technologies\",result=\"duplicate\"} 1\n");
    assert_contains(text, "paygate_daemon_db_pool_connections{state=\"open\"} 1\n");
    assert_contains(text, "paygate_daemon_db_pool_connections{state=\"closed\"} 2\n");
    assert_contains(text, "paygate_daemon_tasks{kind=\"sky_technologies_integration_process_payment\",state=\"dead\"} 2\n");
    // known kinds read 0 rather than being absent
    assert_contains(text, "paygate_daemon_tasks{kind=\"mserver_notification\",state=\"pending\"} 0\n");
    assert_contains(text, "paygate_daemon_unknown_outcomes_open{provider=\"sky-technologies\"} 4\n");
    assert_contains(text, "paygate_daemon_provider_operations_open{provider=\"sky-technologies\",state=\"processing\"} 0\n");
    assert_contains(text, "paygate_daemon_state_sample_age_seconds 2\n");
}

void broker_state_formats_first(void**) {
    daemon::DaemonMetrics metrics;
    daemon::BrokerState broker;
    broker.queue_depth = 3;
    broker.queue_max_depth = 1000;
    broker.queue_oldest_age_s = 0.25;
    broker.not_executed["queue_full"] = 7;
    broker.busy_workers = 3;
    broker.workers = 4;
    broker.busy_seconds = 12.5;
    std::string text = daemon::daemon_exposition(broker, metrics, daemon::DaemonMetrics::Clock::now());
    assert_true(text.rfind("# HELP paygate_daemon_queue_depth ", 0) == 0);
    assert_contains(text, "paygate_daemon_queue_depth 3\n");
    assert_contains(text, "paygate_daemon_queue_oldest_age_seconds 0.25\n");
    assert_contains(text, "paygate_daemon_not_executed_total{reason=\"queue_full\"} 7\n");
    assert_contains(text, "paygate_daemon_not_executed_total{reason=\"draining\"} 0\n");
    assert_contains(text, "paygate_daemon_workers{state=\"busy\"} 3\n");
    assert_contains(text, "paygate_daemon_workers{state=\"idle\"} 1\n");
    assert_contains(text, "paygate_daemon_worker_busy_seconds_total 12.5\n");
    assert_contains(text, "# TYPE paygate_daemon_state_sample_age_seconds gauge\n");   // then the counters'
}

void no_sample_yet_reads_minus_one(void**) {
    daemon::DaemonMetrics metrics;
    metrics.set_providers({"mserver"});
    metrics.state_sample_failed();
    metrics::TextWriter w;
    metrics.format(w, daemon::DaemonMetrics::Clock::now());
    assert_contains(w.text(), "paygate_daemon_state_sample_age_seconds -1\n");
    assert_contains(w.text(), "paygate_daemon_state_sample_failures_total 1\n");
    assert_contains(w.text(), "paygate_daemon_unknown_outcomes_open{provider=\"mserver\"} 0\n");
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(values_read_back_exactly),
        cmocka_unit_test(label_values_are_escaped),
        cmocka_unit_test(histogram_buckets_are_cumulative_and_agree_with_count),
        cmocka_unit_test(merge_labels_every_sample_and_groups_families),
        cmocka_unit_test(merge_drops_what_is_not_a_sample),
        cmocka_unit_test(module_counters_format),
        cmocka_unit_test(attach_finds_the_block_or_refuses),
        cmocka_unit_test(counters_never_lose_a_concurrent_increment),
        cmocka_unit_test(in_flight_counts_live_workers_only),
        cmocka_unit_test(daemon_counters_format),
        cmocka_unit_test(broker_state_formats_first),
        cmocka_unit_test(no_sample_yet_reads_minus_one),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

// The task runner threads: take a due task, run it, record what comes next (docs/tasks.md).
#include <random>
#include <unistd.h>

#include "paygated/log.hpp"
#include "paygated/tasks.hpp"

namespace paygate::daemon {

TaskRunner::TaskRunner(TaskSettings settings, std::shared_ptr<Providers> providers)
    : settings_(std::move(settings)), providers_(std::move(providers)) {}

TaskRunner::~TaskRunner() { stop(); }

void TaskRunner::start() {
    for (unsigned i = 1; i <= settings_.workers; ++i) threads_.emplace_back([this, i] { run(i); });
}

void TaskRunner::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
}

bool TaskRunner::stopping() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stop_;
}

void TaskRunner::run(unsigned index) {
    char host[64] = {};
    gethostname(host, sizeof host - 1);
    const std::string owner = std::string(host) + ":" + std::to_string(getpid()) + ":" + std::to_string(index);
    const std::string who = "tasks-" + std::to_string(index);
    std::mt19937_64 rng(std::random_device{}());
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    try {
        Db db(settings_.database, std::make_shared<RetryGate>(std::chrono::milliseconds(settings_.db_retry_max_ms)), who);
        while (!stopping()) {
            std::optional<TaskRow> task;
            try {
                Session s(db);
                task = claim_task(s, owner, settings_.lease_ms);
            } catch (const DbUnavailable&) {
            } catch (const DbError& e) {
                log::warn("task_claim_failed").kv("worker", who).kv("sqlstate", e.sqlstate).kv("error", e.what());
            }
            if (!task) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait_for(lock, std::chrono::milliseconds(settings_.poll_ms), [this] { return stop_; });
                continue;
            }
            auto started = std::chrono::steady_clock::now();
            TaskResult r;
            try {
                Session s(db);
                r = run_task(*task, s, *providers_, settings_, owner);
            } catch (const DbUnavailable& e) {
                r = TaskResult{TaskResult::Next::Retry, std::string("database unavailable: ") + e.what()};
            }
            if (r.next == TaskResult::Next::Retry && task->attempts >= static_cast<int>(settings_.max_attempts)) {
                r = TaskResult{TaskResult::Next::Dead, "gave up after " + std::to_string(task->attempts) +
                                                           " attempts: " + r.note};
            }
            unsigned delay = 0;
            bool recorded = false;
            try {
                Session s(db);
                switch (r.next) {
                    case TaskResult::Next::Done: recorded = finish_task(s, task->id, owner); break;
                    case TaskResult::Next::Retry:
                        delay = retry_delay_ms(static_cast<unsigned>(task->attempts), settings_.backoff_base_ms,
                                               settings_.backoff_max_ms, unit(rng));
                        recorded = retry_task(s, task->id, owner, delay, r.note);
                        break;
                    case TaskResult::Next::Reschedule:
                        delay = recheck_delay_ms(static_cast<unsigned>(task->reschedules), settings_.recheck_base_ms,
                                                 settings_.recheck_max_ms);
                        recorded = reschedule_task(s, task->id, owner, delay, r.note);
                        break;
                    case TaskResult::Next::Dead: recorded = kill_task(s, task->id, owner, r.note); break;
                }
            } catch (const std::exception& e) {
                // The lease runs out and the task is taken again: nothing is lost.
                log::warn("task_record_failed").kv("task_id", task->id).kv("error", e.what());
                continue;
            }
            static const char* const kNext[] = {"done", "retry", "reschedule", "dead"};
            double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
            // A status check that found nothing new (reschedule) is routine: debug (quiet by default).
            auto line = r.next == TaskResult::Next::Dead         ? log::warn("task_dead")
                        : r.next == TaskResult::Next::Reschedule ? log::debug("task_ran")
                                                                 : log::info("task_ran");
            line.kv("task_id", task->id)
                .kv("kind", task->kind)
                .kv("payment_id", task->payment_id)
                .kv("attempt", task->attempts)
                .kv("next", kNext[static_cast<int>(r.next)])
                .kv("delay_ms", delay)
                .kv("lease", recorded ? "held" : "lost")
                .kv("ms", ms);
            if (!r.note.empty()) line.kv("note", r.note);
        }
    } catch (const std::exception& e) {
        log::error("task_runner_failed").kv("worker", who).kv("what", e.what());
    }
}

}  // namespace paygate::daemon

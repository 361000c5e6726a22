// Durable tasks (the seed's "stq") in PostgreSQL: the SQL of taking, finishing and queueing tasks,
// provider operations, and the runner threads. Life cycle: docs/tasks.md.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "paygated/config.hpp"
#include "paygated/provider.hpp"
#include "paygated/store.hpp"

namespace paygate::daemon {

// The task kinds, named as in seed 001.
inline constexpr const char* kTaskProcessPayment = "sky_technologies_integration_process_payment";
inline constexpr const char* kTaskProcessExtraPayment = "sky_technologies_integration_process_extra_payment";
inline constexpr const char* kTaskProcessReversal = "sky_technologies_integration_process_payment_reversal";
inline constexpr const char* kTaskPaymentStatus = "sky_technologies_integration_payment_status";
inline constexpr const char* kTaskHandleCompleted = "sky_technologies_integration_handle_payment_completed";

// mserver's (seed 003; docs/providers/mserver.md): its operations' sending task, and the task
// that re-reads a payment after a notification and applies what mserver says.
inline constexpr const char* kTaskMserverProcessPayment = "mserver_process_payment";
inline constexpr const char* kTaskMserverProcessReversal = "mserver_process_payment_reversal";
inline constexpr const char* kTaskMserverNotification = "mserver_notification";

// The ZooTicket merchant API (docs/partners/zooticket.md): queued with each payment session to run
// at its expires_at; a session still unpaid (`created`) then becomes cancelled with reason expired.
inline constexpr const char* kTaskZooticketSessionExpiry = "zooticket_session_expiry";

// The task that sends an operation of `kind` ("charge", "extra_charge", "reversal") of `provider`.
const char* send_task_kind(const std::string& operation_kind, const std::string& provider = "sky-technologies");

struct TaskRow {
    std::string id;
    std::string kind;
    std::string payment_id;
    std::string operation_key;
    std::string payload;         // jsonb as text
    std::string state;
    int attempts = 0;            // failed or running attempts since the last progress
    int reschedules = 0;         // planned re-checks so far
    std::string run_at;
    std::string lease_owner;
    std::string lease_expires_at;
    std::string last_error;
    std::string created_at;
    std::string updated_at;
};

// --- queueing (inside the caller's transaction: the outbox) -------------------------------------

// Records a provider operation and returns its id (our reference at the provider).
std::string insert_operation(Session& s, const std::string& payment_id, const std::string& provider,
                             const std::string& kind, const std::string& amount_minor, const std::string& currency,
                             const std::optional<std::string>& original_id);

// Queues a task unless one with `operation_key` exists (then nothing happens: false).
bool enqueue_task(Session& s, const std::string& kind, const std::string& payment_id, const std::string& operation_key,
                  const std::string& payload_json, unsigned delay_ms = 0);

// Records an operation and its sending task in one go (call inside the change's transaction).
std::string queue_operation(Session& s, const std::string& payment_id, const std::string& provider,
                            const std::string& kind, const std::string& amount_minor, const std::string& currency,
                            const std::optional<std::string>& original_id);

// --- operations -----------------------------------------------------------------------------

std::optional<Operation> find_operation(Session& s, const std::string& id, bool for_update);
// Moves a not yet final operation to `state` (`sent`: a charge/reversal request goes out now).
void set_operation_state(Session& s, const std::string& id, const std::string& state, const std::string& error,
                         bool sent);
// Counts one paymentStatus call (and its failure, if any); the state is left alone.
void count_status_check(Session& s, const std::string& id, const std::string& error);

// --- the runner's side ------------------------------------------------------------------------

// Takes one due task (pending and due, or running with an expired lease) with FOR UPDATE SKIP
// LOCKED, leases it to `owner` and counts the attempt. Autocommit.
std::optional<TaskRow> claim_task(Session& s, const std::string& owner, unsigned lease_ms);

// Ends `owner`'s lease on task `id`. False when the lease was lost (another runner took the task
// after it expired): then nothing is changed.
bool finish_task(Session& s, const std::string& id, const std::string& owner);                    // done
bool retry_task(Session& s, const std::string& id, const std::string& owner, unsigned delay_ms,
                const std::string& error);                                                        // pending again
bool reschedule_task(Session& s, const std::string& id, const std::string& owner, unsigned delay_ms,
                     const std::string& note);                                                    // progress: attempts reset
bool kill_task(Session& s, const std::string& id, const std::string& owner, const std::string& error);  // dead

// Inside a transaction: locks task `id` if `owner` still holds its lease (the fence that keeps a
// runner whose lease ran out from applying a result twice).
bool lock_own_task(Session& s, const std::string& id, const std::string& owner);

// --- operators (paygatectl tasks) ---------------------------------------------------------------

struct TaskFilter {
    std::optional<std::string> state, kind, payment_id;
    int limit = 100;
};
std::vector<TaskRow> list_tasks(Session& s, const TaskFilter& filter);
std::optional<TaskRow> find_task(Session& s, const std::string& id);
// dead/cancelled/pending -> pending now, attempts 0. False if the task is running or done.
bool operator_retry_task(Session& s, const std::string& id);
// pending/dead -> cancelled. False if running or done.
bool operator_cancel_task(Session& s, const std::string& id, const std::string& reason);

// --- delays ---------------------------------------------------------------------------------

// Retry delay after `attempts` failures: base * 2^(attempts-1), capped, with "equal jitter" (a
// random point in the upper half) so a fleet of failed tasks does not retry in step.
unsigned retry_delay_ms(unsigned attempts, unsigned base_ms, unsigned max_ms, double unit_random);
// Re-check delay of an operation still open after `reschedules` checks: base * 2^n, capped.
unsigned recheck_delay_ms(unsigned reschedules, unsigned base_ms, unsigned max_ms);

// --- the engine -----------------------------------------------------------------------------

// What running a task asks for next.
struct TaskResult {
    enum class Next { Done, Retry, Reschedule, Dead } next = Next::Done;
    std::string note;            // error (Retry/Dead) or why (Reschedule)
};

struct TaskSettings {
    std::string database;
    unsigned workers = 2;
    unsigned lease_ms = 30000;
    unsigned poll_ms = 200;
    unsigned max_attempts = 12;
    unsigned backoff_base_ms = 500;
    unsigned backoff_max_ms = 300000;
    unsigned recheck_base_ms = 1000;
    unsigned recheck_max_ms = 600000;
    unsigned db_retry_max_ms = 2000;
};
TaskSettings task_settings(const Config& config);

// Runs one claimed task (the kinds above) against the providers. Never throws: failures become
// Retry. `owner` fences the writes that apply a provider's answer.
TaskResult run_task(const TaskRow& task, Session& s, const Providers& providers, const TaskSettings& settings,
                    const std::string& owner);

// The runner threads: each with its own PostgreSQL connection (never the API workers'), taking due
// tasks until stop().
class TaskRunner {
public:
    TaskRunner(TaskSettings settings, std::shared_ptr<Providers> providers);
    ~TaskRunner();
    void start();
    void stop();   // the task in hand finishes (its provider call is bounded by provider_timeout_ms)

private:
    void run(unsigned index);
    bool stopping();

    TaskSettings settings_;
    std::shared_ptr<Providers> providers_;
    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;
};

}  // namespace paygate::daemon

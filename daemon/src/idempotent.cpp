// The idempotency wrapper of the mutating payment routes (see idempotent.hpp, docs/idempotency.md).
#include "paygated/idempotent.hpp"

#include <atomic>
#include <csignal>
#include <optional>
#include <unistd.h>

#include "paygate/idempotency.hpp"
#include "paygate/json_error.hpp"
#include "paygated/log.hpp"

namespace paygate::daemon {

namespace {

void add_header(ipc::Reply& reply, std::string_view name, std::string_view value) {
    reply.headers.emplace_back(std::string(name), std::string(value));
}

#ifdef PAYGATED_TEST_HOOKS
// The test-only fault switch (PAYGATED_TEST_FAULT=kill-after-commit): the outcome is committed,
// the reply has not left. SIGKILL, so nothing else runs (no destructors, no reply).
void after_commit(const ipc::Request& request, const WorkerContext& ctx) {
    if (ctx.test_fault != TestFault::KillAfterCommit) return;
    log::warn("test_fault_kill")
        .kv("request_id", request.request_id)
        .kv("route", request.route)
        .kv("worker", std::to_string(ctx.worker))
        .kv("fault", "kill-after-commit");
    ::kill(::getpid(), SIGKILL);
    ::pause();  // SIGKILL cannot be caught: the process is gone before this returns
}

// The test-only fault switch (PAYGATED_TEST_FAULT=stop-before-commit): the work and the key's
// record are written, the transaction is open (holding the key's lock) and idle. SIGSTOP freezes
// the whole process, as a frozen host would; after SIGCONT the COMMIT runs as usual (on a
// connection the lease has ended by then). Once per process: later requests run normally.
void before_commit(const ipc::Request& request, const WorkerContext& ctx) {
    if (ctx.test_fault != TestFault::StopBeforeCommit) return;
    static std::atomic<bool> fired{false};
    if (fired.exchange(true)) return;
    log::warn("test_fault_stop")
        .kv("request_id", request.request_id)
        .kv("route", request.route)
        .kv("worker", std::to_string(ctx.worker))
        .kv("fault", "stop-before-commit");
    // raise(), i.e. tgkill() to this thread, not kill(getpid()): a process-directed signal may be
    // taken by another thread while this one returns to user space and sends the COMMIT before
    // the group stop reaches it. A signal pending on this thread stops it before raise returns.
    ::raise(SIGSTOP);  // returns after SIGCONT
}
#else
// A release build has no fault switch (PAYGATED_TEST_HOOKS is defined by the Debug build only).
void after_commit(const ipc::Request&, const WorkerContext&) {}
void before_commit(const ipc::Request&, const WorkerContext&) {}
#endif

}  // namespace

Keep keep_outcome(std::uint16_t status) {
    if (status >= 200 && status <= 299) return Keep::Work;
    if (status >= 400 && status <= 499 && status != 403) return Keep::Refusal;
    return Keep::Nothing;
}

ipc::Reply in_progress_reply(std::uint64_t id) {
    return ipc::error_reply(id, 409, "idempotency_in_progress",
                            "a request with this idempotency_token is still being processed; retry later");
}

ipc::Reply key_reused_reply(std::uint64_t id) {
    return ipc::error_reply(id, 422, idempotency::kKeyReusedCode, idempotency::kKeyReusedMessage);
}

ipc::Reply replayed_reply(std::uint64_t id, const StoredOutcome& stored) {
    ipc::Reply reply;
    reply.id = id;
    reply.status = stored.status;
    add_header(reply, "content-type", "application/json");
    add_header(reply, idempotency::kReplayedHeader, "true");
    add_header(reply, idempotency::kOutcomeHeader, idempotency::kOutcomeReplayed);
    reply.record_expires_in_ms = stored.expires_in_ms;   // a cached copy must not outlive the row
    reply.body = stored.body;
    return reply;
}

ipc::Reply run_idempotent(const ipc::Request& request, WorkerContext& ctx, const std::string& client_id,
                          const IdempotentWork& work) {
    std::optional<idempotency::Key> key;
    if (idempotency::applies_to(request.route)) {
        const std::string* payment_id = request.param("payment_id");
        key = idempotency::key_of(request.principal, request.route, payment_id ? std::string_view(*payment_id) : "",
                                  request.body);
    }

    if (!key) {
        // No UUID idempotency_token: check refuses the body (before any SQL); nothing to record.
        work.check();
        Session s(ctx.db);
        s.begin();
        ipc::Reply reply = work.execute(s);
        s.commit();
        return reply;
    }

    Session s(ctx.db);  // rolls back whatever is still open when it goes out of scope
    s.begin();

    KeyLookup lookup = lock_and_find_key(s, key->scope);
    if (!lookup.locked) {
        s.rollback();
        return in_progress_reply(request.id);
    }
    if (lookup.stored) {
        s.rollback();  // releases the lock; nothing was written
        if (lookup.stored->request_hash != key->request_hash) return key_reused_reply(request.id);
        return replayed_reply(request.id, *lookup.stored);
    }

    s.savepoint();
    ipc::Reply reply;
    try {
        work.check();
        reply = work.execute(s);
    } catch (const Refusal& r) {
        reply = ipc::error_reply(request.id, r.status, r.code, r.message);
    }
    switch (keep_outcome(reply.status)) {
        case Keep::Nothing:
            s.rollback();
            return reply;
        case Keep::Refusal:
            s.rollback_to_savepoint();
            break;
        case Keep::Work:
            break;
    }
    KeyRecord record{key->scope, client_id, request.route, key->request_hash, reply.status, reply.body,
                     ctx.idempotency_retention_s};
    if (!record_key(s, record)) {
        // A live row appeared although we hold the key's lock: someone recorded this key without
        // it. The primary key forbids a second outcome: undo ours, the retry replays theirs.
        log::error("idempotency_conflict").kv("request_id", request.request_id).kv("route", request.route);
        s.rollback();
        return in_progress_reply(request.id);
    }
    before_commit(request, ctx);
    s.commit();
    after_commit(request, ctx);
    add_header(reply, idempotency::kOutcomeHeader, idempotency::kOutcomeStored);
    // The row's expires_at is now() + retention in this very transaction.
    reply.record_expires_in_ms = std::uint64_t{ctx.idempotency_retention_s} * 1000;
    return reply;
}

}  // namespace paygate::daemon

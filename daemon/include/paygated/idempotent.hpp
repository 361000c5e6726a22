// Exactly-once execution of the mutating payment routes by idempotency_token (docs/idempotency.md).
//
// run_idempotent() owns the transaction of such a request. With the request's key
// (paygate/idempotency.hpp, key_of):
//   BEGIN; pg_try_advisory_xact_lock(hashtextextended(scope, 0))
//     held by another transaction -> ROLLBACK, 409 idempotency_in_progress (nothing runs)
//   the key's live row in idempotency_keys:
//     same request_hash      -> its status and body byte for byte, replayed (nothing runs)
//     another request_hash   -> 422 idempotency_key_reused (nothing runs)
//   none: SAVEPOINT; the handler's work in this transaction; then by the outcome's status
//     2xx                    -> record the reply, COMMIT           (x-paygate-idempotency: stored)
//     4xx (but 403)          -> ROLLBACK TO SAVEPOINT, record, COMMIT (x-paygate-idempotency: stored)
//     403, 5xx, exceptions   -> ROLLBACK, nothing recorded (a retry may execute)
// The advisory lock is the key's in-flight marker; its lease is the transaction (see
// Db's lease_ms). Without a key (the body has no UUID idempotency_token; validation refuses it)
// the work simply runs in a transaction of its own.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "paygate/ipc.hpp"
#include "paygated/handlers.hpp"
#include "paygated/store.hpp"

namespace paygate::daemon {

// A handler's work, in two steps, both refusing by throwing Refusal:
//   check    validates the path and the body (no database);
//   execute  makes the change inside the transaction `s` run_idempotent opened (no BEGIN/COMMIT
//            of its own); database failures propagate.
// With a key both run inside the key's transaction, so a refusal of either is the key's recorded
// outcome. Without one, check runs first and alone, exactly as before idempotency: it refuses
// such a body (no idempotency_token), and the database is never asked.
struct IdempotentWork {
    std::function<void()> check;
    std::function<ipc::Reply(Session& s)> execute;
};

// Runs `work` for `request` (an idempotency::applies_to route, principal already checked: the
// decimal `client_id`) as described above. Returns the reply; throws DbUnavailable / DbError /
// anything `work` throws besides Refusal, after rolling back (guarded() turns those into 503/500).
ipc::Reply run_idempotent(const ipc::Request& request, WorkerContext& ctx, const std::string& client_id,
                          const IdempotentWork& work);

// --- the decisions, exposed for tests ----------------------------------------------------------

// What becomes of a first execution's outcome.
enum class Keep {
    Work,     // 2xx: commit the work and record the reply
    Refusal,  // 4xx but 403: undo the work (to the savepoint), record the reply
    Nothing,  // 403 (an access decision is made afresh every time), 5xx: roll back, record nothing
};
Keep keep_outcome(std::uint16_t status);

// 409 {"code":"idempotency_in_progress",...}: the key's first request is still running.
ipc::Reply in_progress_reply(std::uint64_t id);
// 422 {"code":"idempotency_key_reused",...}: the key was used for a different request.
ipc::Reply key_reused_reply(std::uint64_t id);
// The recorded outcome answered again: its status and body, content-type application/json,
// Idempotent-Replayed: true and x-paygate-idempotency: replayed, and how long the row has left
// (record_expires_in_ms).
ipc::Reply replayed_reply(std::uint64_t id, const StoredOutcome& stored);

}  // namespace paygate::daemon

// The ipc codec (ipc/codec.cpp) from the other side: messages built from the fuzz input, encoded,
// decoded. A message within the documented bounds (fields <= 8 KiB, lists <= 64 items, a known
// method, status 100-599) comes back field for field; one beyond them is refused, never
// truncated or misread.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "paygate/ipc.hpp"

namespace ipc = paygate::ipc;

namespace {

// A string of the input, sometimes repeated past the 8 KiB field limit (inputs are shorter).
std::string field(FuzzedDataProvider& in, bool& over) {
    std::string s = in.ConsumeRandomLengthString(64);
    const unsigned repeat = in.ConsumeIntegralInRange<unsigned>(0, 15) == 0 ? in.ConsumeIntegralInRange<unsigned>(1, 600) : 1;
    std::string out;
    for (unsigned i = 0; i < repeat; ++i) out += s;
    if (out.size() > ipc::kMaxFieldBytes) over = true;
    return out;
}

std::vector<ipc::NameValue> list(FuzzedDataProvider& in, bool& over) {
    std::vector<ipc::NameValue> items(in.ConsumeIntegralInRange<std::size_t>(0, 70));
    if (items.size() > ipc::kMaxListItems) over = true;
    for (auto& [name, value] : items) {
        name = field(in, over);
        value = field(in, over);
    }
    return items;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    std::string error;
    if (in.ConsumeBool()) {
        bool over = false;
        ipc::Request r;
        r.id = in.ConsumeIntegral<std::uint64_t>();
        const auto method = in.ConsumeIntegral<std::uint8_t>();
        r.method = static_cast<ipc::Method>(method);
        if (method < 1 || method > 5) over = true;
        r.route = field(in, over);
        r.request_id = field(in, over);
        r.principal = field(in, over);
        r.timeout_ms = in.ConsumeIntegral<std::uint32_t>();
        r.sent_unix_ms = in.ConsumeIntegral<std::uint64_t>();
        r.params = list(in, over);
        r.headers = list(in, over);
        r.body = in.ConsumeRemainingBytesAsString();
        const std::string frame = ipc::encode(r);
        ipc::Request back;
        const bool ok = ipc::decode(frame, back, error);
        FUZZ_CHECK(ok == !over, "a request within bounds refused, or one beyond them accepted");
        if (ok) {
            FUZZ_CHECK(back.id == r.id && back.method == r.method && back.route == r.route &&
                           back.request_id == r.request_id && back.principal == r.principal &&
                           back.timeout_ms == r.timeout_ms && back.sent_unix_ms == r.sent_unix_ms &&
                           back.params == r.params && back.headers == r.headers && back.body == r.body,
                       "a request came back different");
        } else {
            FUZZ_CHECK(!error.empty(), "a refusal without a reason");
        }
        ipc::Reply wrong_kind;
        FUZZ_CHECK(!ipc::decode(frame, wrong_kind, error), "a request frame decoded as a reply");
    } else {
        bool over = false;
        ipc::Reply r;
        r.id = in.ConsumeIntegral<std::uint64_t>();
        r.status = in.ConsumeIntegral<std::uint16_t>();
        if (r.status < 100 || r.status > 599) over = true;
        r.headers = list(in, over);
        r.body = in.ConsumeRemainingBytesAsString();
        const std::string frame = ipc::encode(r);
        ipc::Reply back;
        const bool ok = ipc::decode(frame, back, error);
        FUZZ_CHECK(ok == !over, "a reply within bounds refused, or one beyond them accepted");
        if (ok) {
            FUZZ_CHECK(back.id == r.id && back.status == r.status && back.headers == r.headers && back.body == r.body,
                       "a reply came back different");
        } else {
            FUZZ_CHECK(!error.empty(), "a refusal without a reason");
        }
        ipc::Request wrong_kind;
        FUZZ_CHECK(!ipc::decode(frame, wrong_kind, error), "a reply frame decoded as a request");
    }
    return 0;
}

// The ipc codec (ipc/codec.cpp) on arbitrary frames, as a Request and as a Reply: a frame is
// either refused with a reason or decodes to fields within the documented bounds, and whatever
// decodes re-encodes to a frame that decodes to the same message (and is its own fixed point).
// Strict framing: the same frame cut short by a byte, or with a byte more, is refused.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "paygate/ipc.hpp"

namespace ipc = paygate::ipc;

namespace {

bool same(const ipc::Request& a, const ipc::Request& b) {
    return a.id == b.id && a.method == b.method && a.route == b.route && a.request_id == b.request_id &&
           a.principal == b.principal && a.timeout_ms == b.timeout_ms && a.sent_unix_ms == b.sent_unix_ms &&
           a.params == b.params && a.headers == b.headers && a.body == b.body;
}

bool same(const ipc::Reply& a, const ipc::Reply& b) {
    return a.id == b.id && a.status == b.status && a.headers == b.headers && a.body == b.body;
}

bool list_in_bounds(const std::vector<ipc::NameValue>& items) {
    if (items.size() > ipc::kMaxListItems) return false;
    for (const auto& [name, value] : items) {
        if (name.size() > ipc::kMaxFieldBytes || value.size() > ipc::kMaxFieldBytes) return false;
    }
    return true;
}

bool in_bounds(const ipc::Request& r) {
    const auto method = static_cast<unsigned>(r.method);
    return method >= 1 && method <= 5 && r.route.size() <= ipc::kMaxFieldBytes &&
           r.request_id.size() <= ipc::kMaxFieldBytes && r.principal.size() <= ipc::kMaxFieldBytes &&
           list_in_bounds(r.params) && list_in_bounds(r.headers) && r.body.size() <= ipc::kMaxFrameBytes;
}

bool in_bounds(const ipc::Reply& r) {
    return r.status >= 100 && r.status <= 599 && list_in_bounds(r.headers) && r.body.size() <= ipc::kMaxFrameBytes;
}

// Decodes `frame` as a Message; if it decodes, checks the round trip and strict framing.
template <typename Message>
void check(std::string_view frame) {
    Message message;
    std::string error;
    if (!ipc::decode(frame, message, error)) {
        FUZZ_CHECK(!error.empty(), "a refused frame without a reason");
        return;
    }
    FUZZ_CHECK(error.empty(), "an accepted frame with an error");
    FUZZ_CHECK(in_bounds(message), "decoded fields outside the documented bounds");

    const std::string encoded = ipc::encode(message);
    // The encoder writes minimal varints, so it is never longer than what it was decoded from.
    FUZZ_CHECK(encoded.size() <= frame.size(), "the re-encoded frame is longer than the decoded one");
    Message again;
    FUZZ_CHECK(ipc::decode(encoded, again, error), "a re-encoded message does not decode");
    FUZZ_CHECK(same(message, again), "the round trip changed the message");
    FUZZ_CHECK(ipc::encode(again) == encoded, "encoding is not a fixed point");

    Message ignored;
    FUZZ_CHECK(!ipc::decode(frame.substr(0, frame.size() - 1), ignored, error), "a truncated frame decoded");
    std::string longer(frame);
    longer.push_back('\0');
    FUZZ_CHECK(!ipc::decode(longer, ignored, error), "a frame with a trailing byte decoded");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view frame(reinterpret_cast<const char*>(data), size);
    check<ipc::Request>(frame);
    check<ipc::Reply>(frame);
    return 0;
}

// The ipc codec: round trips, and every kind of broken frame rejected without reading past it.
#include "cmocka.hpp"

#include <cstring>
#include <string>

#include "paygate/ipc.hpp"
#include "paygate/json_error.hpp"

using namespace paygate::ipc;

namespace {

Request sample_request() {
    Request r;
    r.id = 0x0123456789abcdefULL;
    r.method = Method::Post;
    r.route = "payment.cancel";
    r.request_id = "4f0c2a9d8e7b6a5f4e3d2c1b0a998877";
    r.principal = "client-42";
    r.timeout_ms = 5000;
    r.sent_unix_ms = 1795500000123ULL;
    r.params = {{"payment_id", "8a7f"}};
    r.headers = {{"content-type", "application/json"}, {"x-empty", ""}};
    r.body = std::string("{\"reason\":\"user_request\"}\0binary", 32);
    return r;
}

void request_round_trip(void**) {
    Request in = sample_request();
    std::string frame = encode(in);
    Request out;
    std::string error;
    assert_true(decode(frame, out, error));
    assert_true(out.id == in.id);
    assert_true(out.method == in.method);
    assert_true(out.route == in.route);
    assert_true(out.request_id == in.request_id);
    assert_true(out.principal == in.principal);
    assert_int_equal(out.timeout_ms, 5000);
    assert_true(out.sent_unix_ms == in.sent_unix_ms);
    assert_true(out.params == in.params);
    assert_true(out.headers == in.headers);
    assert_true(out.body == in.body);
    assert_non_null(out.param("payment_id"));
    assert_string_equal(out.param("payment_id")->c_str(), "8a7f");
    assert_null(out.param("nope"));
    assert_string_equal(out.header("x-empty")->c_str(), "");
}

void empty_request_round_trip(void**) {
    Request in;
    Request out;
    std::string error;
    assert_true(decode(encode(in), out, error));
    assert_true(out.route.empty() && out.body.empty() && out.params.empty());
}

void reply_round_trip(void**) {
    Reply in;
    in.id = 7;
    in.status = 201;
    in.record_expires_in_ms = 86'400'000ULL * 365;
    in.headers = {{"content-type", "application/json"}};
    in.body = std::string(100000, 'x');
    Reply out;
    std::string error;
    assert_true(decode(encode(in), out, error));
    assert_true(out.id == 7);
    assert_int_equal(out.status, 201);
    assert_true(out.record_expires_in_ms == in.record_expires_in_ms);
    assert_true(out.headers == in.headers);
    assert_true(out.body == in.body);
}

void every_truncation_rejected(void**) {
    std::string frame = encode(sample_request());
    for (std::size_t n = 0; n < frame.size(); ++n) {
        Request out;
        std::string error;
        // A copy of exactly n bytes, so ASan catches any read past the end.
        std::string cut = frame.substr(0, n);
        assert_false(decode(cut, out, error));
        assert_false(error.empty());
    }
    std::string reply = encode(error_reply(1, 404, "not_found", "x"));
    for (std::size_t n = 0; n < reply.size(); ++n) {
        Reply out;
        std::string error;
        std::string cut = reply.substr(0, n);
        assert_false(decode(cut, out, error));
    }
}

void trailing_bytes_rejected(void**) {
    std::string frame = encode(sample_request()) + "x";
    Request out;
    std::string error;
    assert_false(decode(frame, out, error));
    assert_string_equal(error.c_str(), "trailing bytes after message");
}

void wrong_magic_version_kind_rejected(void**) {
    std::string good = encode(sample_request());
    Request out;
    std::string error;

    std::string bad = good;
    bad[0] = 'X';
    assert_false(decode(bad, out, error));
    assert_string_equal(error.c_str(), "bad magic");

    bad = good;
    bad[2] = static_cast<char>(kVersion + 1);
    assert_false(decode(bad, out, error));
    assert_string_equal(error.c_str(), "unsupported version");

    // A reply frame is not a request, and the other way round.
    Reply reply_out;
    assert_false(decode(good, reply_out, error));
    assert_string_equal(error.c_str(), "unexpected message kind");
    assert_false(decode(encode(Reply{}), out, error));

    bad = good;
    bad[12] = 9;  // method
    assert_false(decode(bad, out, error));
    assert_string_equal(error.c_str(), "unknown method");
}

void oversized_fields_rejected(void**) {
    Request r = sample_request();
    r.route = std::string(kMaxFieldBytes + 1, 'r');
    Request out;
    std::string error;
    assert_false(decode(encode(r), out, error));
    assert_string_equal(error.c_str(), "oversized route");

    r = sample_request();
    r.headers.assign(kMaxListItems + 1, {"a", "b"});
    assert_false(decode(encode(r), out, error));
    assert_string_equal(error.c_str(), "too many items in headers");
}

void huge_length_claims_rejected(void**) {
    // A body length of 2^63 in a short frame must fail on the bounds check, not allocate.
    std::string frame = encode(Reply{});
    frame.resize(frame.size() - 1);  // drop the empty body's length byte
    frame += std::string("\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 9);
    Reply out;
    std::string error;
    assert_false(decode(frame, out, error));

    // An endless varint is rejected too.
    frame = encode(Reply{});
    frame.resize(frame.size() - 1);
    frame += std::string(20, '\xff');
    assert_false(decode(frame, out, error));
}

void garbage_rejected(void**) {
    // Deterministic pseudo-random frames: none may crash or be accepted as a request by chance
    // unless it really is well formed (magic makes that practically impossible).
    std::uint32_t state = 12345;
    for (int i = 0; i < 2000; ++i) {
        std::string frame(state % 64, '\0');
        for (char& c : frame) {
            state = state * 1103515245 + 12345;
            c = static_cast<char>(state >> 16);
        }
        Request out;
        Reply reply;
        std::string error;
        assert_false(decode(frame, out, error));
        assert_false(decode(frame, reply, error));
    }
}

void reply_status_range_checked(void**) {
    Reply r;
    r.status = 99;
    Reply out;
    std::string error;
    assert_false(decode(encode(r), out, error));
    r.status = 600;
    assert_false(decode(encode(r), out, error));
}

void methods_named(void**) {
    Method m;
    assert_true(parse_method("PATCH", m));
    assert_true(m == Method::Patch);
    assert_false(parse_method("get", m));
    assert_false(parse_method("TRACE", m));
    assert_string_equal(std::string(method_name(Method::Delete)).c_str(), "DELETE");
}

void json_errors_escaped(void**) {
    assert_string_equal(json_error("not_found", "payment \"a\\b\"\n not found").c_str(),
                        "{\"code\":\"not_found\",\"message\":\"payment \\\"a\\\\b\\\"\\n not found\"}");
    assert_string_equal(json_error("x", std::string("\x01", 1)).c_str(), "{\"code\":\"x\",\"message\":\"\\u0001\"}");
    // Valid UTF-8 passes through; broken sequences, overlongs and surrogates become U+FFFD.
    assert_string_equal(json_error("x", "платёж €").c_str(), "{\"code\":\"x\",\"message\":\"платёж €\"}");
    for (const char* bad : {"\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
        std::string got = json_error("x", bad);
        assert_true(got.find("\xef\xbf\xbd") != std::string::npos);   // U+FFFD
        assert_true(got.find('\xff') == std::string::npos);
    }
    Reply r = error_reply(9, 503, "service_unavailable", "down");
    assert_int_equal(r.status, 503);
    assert_true(r.id == 9);
    assert_string_equal(r.headers.at(0).second.c_str(), "application/json");
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_round_trip),
        cmocka_unit_test(empty_request_round_trip),
        cmocka_unit_test(reply_round_trip),
        cmocka_unit_test(every_truncation_rejected),
        cmocka_unit_test(trailing_bytes_rejected),
        cmocka_unit_test(wrong_magic_version_kind_rejected),
        cmocka_unit_test(oversized_fields_rejected),
        cmocka_unit_test(huge_length_claims_rejected),
        cmocka_unit_test(garbage_rejected),
        cmocka_unit_test(reply_status_range_checked),
        cmocka_unit_test(methods_named),
        cmocka_unit_test(json_errors_escaped),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

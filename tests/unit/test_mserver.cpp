// The plain parts of the mserver adapter (seed 003): the {meta, data} envelope, payments, rubles
// <-> kopecks without rounding, status / decline reason / error code mapping, request bodies, and
// the notification credential sha1(app_id + app_secret).
#include <cstring>
#include <string>

#include "paygate/json.hpp"
#include "paygate/mserver_token.hpp"
#include "paygated/mserver.hpp"
#include "paygated/tasks.hpp"

#include "cmocka.hpp"   // last: its fail() macro would clash with Session::fail

using namespace paygate;
using namespace paygate::daemon;
using K = ProviderAnswer::Kind;

namespace {

void envelope_success_and_error(void**) {
    mserver::Envelope e;
    std::string why;
    assert_true(mserver::parse_envelope(
        R"({"meta":{"code":200,"next_action":"pay","time":0.4},"data":{"id":25832,"status":"created"}})", e, why));
    assert_int_equal(e.code, 200);
    assert_string_equal(e.next_action.c_str(), "pay");
    assert_true(e.data.is(json::Type::Object));
    assert_string_equal(e.error_type.c_str(), "");

    mserver::Envelope err;
    assert_true(mserver::parse_envelope(
        R"({"meta":{"code":404,"error_type":"service_not_found","error_message":"no"},"data":null})", err, why));
    assert_int_equal(err.code, 404);
    assert_string_equal(err.error_type.c_str(), "service_not_found");
    assert_true(err.data.is(json::Type::Null));
    // codes are echoed into logs: anything odd is neutralised
    assert_true(mserver::parse_envelope(R"({"meta":{"code":400,"error_type":"a b\n"}})", err, why));
    assert_string_equal(err.error_type.c_str(), "a_b_");

    for (const char* bad : {"", "[]", "{}", R"({"meta":1})", R"({"meta":{}})", R"({"meta":{"code":"200"}})",
                            R"({"meta":{"code":2000}})", R"({"meta":{"code":-1}})", R"({"meta":{"code":1.5}})"}) {
        assert_false(mserver::parse_envelope(bad, e, why));
        assert_false(why.empty());
    }
}

void payment_fields_in_kopecks(void**) {
    json::Value doc;
    json::ParseError perr;
    assert_true(json::parse(R"({"id":1401089244809,"client_payment_id":"495e4210-18bc-4301-b388-5dda972865e6",)"
                            R"("amount":5,"total":8.03,"created_at":"2014-10-30T14:21:12.406Z","status":"declined",)"
                            R"("decline_reason":"invalid_data","type":"out"})",
                            doc, perr));
    mserver::WalletPayment p;
    std::string why;
    assert_true(mserver::read_payment(doc, p, why));
    assert_string_equal(p.id.c_str(), "1401089244809");
    assert_string_equal(p.amount_minor.c_str(), "500");
    assert_string_equal(p.total_minor.c_str(), "803");
    assert_string_equal(p.status.c_str(), "declined");
    assert_string_equal(p.decline_reason.c_str(), "invalid_data");
    assert_string_equal(p.type.c_str(), "out");

    assert_true(json::parse(R"({"id":1,"amount":100.005,"status":"created"})", doc, perr));
    assert_false(mserver::read_payment(doc, p, why));   // a fraction of a kopeck is never rounded
    assert_true(json::parse(R"({"amount":1,"status":"created"})", doc, perr));
    assert_false(mserver::read_payment(doc, p, why));   // no id
    assert_true(json::parse(R"({"id":1,"amount":"1","status":"created"})", doc, perr));
    assert_false(mserver::read_payment(doc, p, why));   // amount must be a number
    assert_true(json::parse(R"({"id":1,"amount":1})", doc, perr));
    assert_false(mserver::read_payment(doc, p, why));   // no status
}

void rubles_and_kopecks_are_exact(void**) {
    struct {
        const char* rubles;
        const char* minor;
    } good[] = {{"103", "10300"}, {"8.03", "803"}, {"100.00", "10000"}, {"100.000", "10000"}, {"0.5", "50"},
                {"0.01", "1"}, {"0", "0"}, {"9971.34", "997134"}, {"123456789012345678", "12345678901234567800"}};
    for (const auto& g : good) {
        auto m = mserver::to_minor(g.rubles);
        assert_true(m.has_value());
        assert_string_equal(m->c_str(), g.minor);
    }
    for (const char* bad : {"", "-1", "1e2", "8.035", "1.", ".5", "1,5", "abc", "1234567890123456789"}) {
        assert_false(mserver::to_minor(bad).has_value());
    }
    assert_string_equal(mserver::to_rubles("10300").c_str(), "103.00");
    assert_string_equal(mserver::to_rubles("803").c_str(), "8.03");
    assert_string_equal(mserver::to_rubles("5").c_str(), "0.05");
    assert_string_equal(mserver::to_rubles("50").c_str(), "0.50");
}

void statuses_and_decline_reasons(void**) {
    mserver::WalletPayment p;
    p.status = "completed";
    assert_int_equal(static_cast<int>(mserver::payment_answer(p, "x").kind), static_cast<int>(K::Completed));
    p.status = "processing";
    assert_int_equal(static_cast<int>(mserver::payment_answer(p, "x").kind), static_cast<int>(K::Processing));
    p.status = "created";   // prepared, never paid: safe to pay (or prepare again with the same id)
    assert_int_equal(static_cast<int>(mserver::payment_answer(p, "x").kind), static_cast<int>(K::NotFound));
    p.status = "weird";
    assert_int_equal(static_cast<int>(mserver::payment_answer(p, "x").kind), static_cast<int>(K::Unknown));
    p.status = "declined";
    for (const char* r : {"invalid_data", "insufficient_funds", "internal_error"}) {
        p.decline_reason = r;
        ProviderAnswer a = mserver::payment_answer(p, "x");
        assert_int_equal(static_cast<int>(a.kind), static_cast<int>(K::Declined));
        assert_string_equal(a.decline_reason.c_str(), r);
    }
    p.decline_reason = "";
    assert_string_equal(mserver::payment_answer(p, "x").decline_reason.c_str(), "unspecified");
    assert_string_equal(mserver::decline_reason("card expired").c_str(), "mserver_card_expired");
}

void every_seed_error_code_has_an_outcome(void**) {
    for (const char* code : {"missing_type", "missing_client_payment_id", "missing_amount", "invalid_amount",
                             "missing_service", "service_not_found", "missing_parameters", "missing_destination",
                             "destination_not_found", "invalid_destination", "insufficient_funds", "empty_request"}) {
        for (auto phase : {mserver::Phase::Prepare, mserver::Phase::Pay}) {
            ProviderAnswer a = mserver::error_answer(400, code, phase, "x");
            assert_int_equal(static_cast<int>(a.kind), static_cast<int>(K::Declined));
            assert_string_equal(a.decline_reason.c_str(), code);
        }
    }
    // prepare moves no money and mserver makes one payment per client_payment_id: send again
    assert_int_equal(static_cast<int>(mserver::error_answer(500, "", mserver::Phase::Prepare, "x").kind),
                     static_cast<int>(K::NotSent));
    assert_int_equal(static_cast<int>(mserver::error_answer(401, "unauthorized", mserver::Phase::Prepare, "x").kind),
                     static_cast<int>(K::NotSent));
    // pay: a 5xx or an unknown refusal may have run: only a status read decides
    assert_int_equal(static_cast<int>(mserver::error_answer(500, "", mserver::Phase::Pay, "x").kind),
                     static_cast<int>(K::Unknown));
    assert_int_equal(static_cast<int>(mserver::error_answer(409, "something_new", mserver::Phase::Pay, "x").kind),
                     static_cast<int>(K::Unknown));
    assert_int_equal(static_cast<int>(mserver::error_answer(401, "unauthorized", mserver::Phase::Pay, "x").kind),
                     static_cast<int>(K::NotSent));
}

void request_bodies_from_accept_info(void**) {
    std::string why;
    auto body = mserver::prepare_body(
        R"({"mserver":{"type":"out","service":61,"parameters":{"phoneNumber":"9267101283"},"amount":999999,"x":1}})",
        "e731a7e2-c553-4295-867e-1023359bee28", "10050", why);
    assert_true(body.has_value());
    // our amount, never accept_info's; unknown fields are not passed on
    assert_string_equal(body->c_str(),
                        R"({"type":"out","client_payment_id":"e731a7e2-c553-4295-867e-1023359bee28","amount":100.50,)"
                        R"("service":61,"parameters":{"phoneNumber":"9267101283"}})");
    body = mserver::prepare_body(R"({"mserver":{"type":"p2p","destination":"+79261111112","message":"hi"}})",
                                 "071c6d23-7508-4e35-ad92-852308a47677", "100", why);
    assert_true(body.has_value());
    assert_non_null(std::strstr(body->c_str(), R"("destination":"+79261111112","message":"hi")"));
    assert_false(mserver::prepare_body("{}", "x", "1", why).has_value());
    assert_false(mserver::prepare_body(R"({"mserver":{"service":1}})", "x", "1", why).has_value());
    assert_false(mserver::prepare_body(R"({"mserver":[]})", "x", "1", why).has_value());

    assert_string_equal(mserver::pay_body(R"({"mserver":{"type":"out","pay":{"type":"inout","card":7222,"z":1}}})").c_str(),
                        R"({"type":"inout","card":7222})");
    assert_string_equal(mserver::pay_body(R"({"mserver":{"type":"out"}})").c_str(), "");
}

void access_token_is_sha1_of_app_id_and_secret(void**) {
    // sha1("paygate-dev" + "secret"), lower-case hex (computed independently with sha1sum)
    const std::string token = mserver_token::access_token("paygate-dev", "secret");
    assert_string_equal(token.c_str(), "d4a0b39413b75a867aa66ec463f5cea28f3ca2e4");
    assert_true(mserver_token::check("paygate-dev", "secret", "paygate-dev", token));
    assert_false(mserver_token::check("paygate-dev", "secret", "paygate-dev", "D4A0B39413B75A867AA66EC463F5CEA28F3CA2E4"));
    assert_false(mserver_token::check("paygate-dev", "secret", "paygate-dev2", token));
    assert_false(mserver_token::check("paygate-dev", "secret", "paygate-dev", token.substr(1)));
    assert_false(mserver_token::check("paygate-dev", "secret", "paygate-dev", ""));
    assert_false(mserver_token::check("paygate-dev", "other", "paygate-dev", token));
    assert_false(mserver_token::check("", "", "", mserver_token::access_token("", "")));   // nothing configured
}

void mserver_operations_have_their_own_tasks(void**) {
    assert_string_equal(send_task_kind("charge", "mserver"), "mserver_process_payment");
    assert_string_equal(send_task_kind("extra_charge", "mserver"), "mserver_process_payment");
    assert_string_equal(send_task_kind("reversal", "mserver"), "mserver_process_payment_reversal");
    assert_string_equal(send_task_kind("charge", "sky-technologies"), "sky_technologies_integration_process_payment");
}

void reconcile_lists_only_differences(void**) {
    auto wp = [](const char* id, const char* cid, const char* status) {
        mserver::WalletPayment w;
        w.id = id;
        w.client_payment_id = cid;
        w.status = status;
        return w;
    };
    std::vector<mserver::OurOperation> ours = {
        {"c1", "p1", "completed", "completed", "1"},   // agrees
        {"c2", "p2", "completed", "completed", "2"},   // mserver declined it: differs
        {"c3", "p3", "completed", "reversed", "3"},    // undone on both sides: agrees
        {"c4", "p4", "declined", "declined", ""},      // refused by an error code: nothing at mserver
        {"c5", "p5", "unknown", "bank_processing", "5"},   // open here, final there: differs
        {"c6", "p6", "processing", "bank_processing", "6"},   // missing at mserver: differs
    };
    std::vector<mserver::WalletPayment> theirs = {wp("1", "c1", "completed"), wp("2", "c2", "declined"),
                                                  wp("3", "c3", "declined"), wp("5", "c5", "completed"),
                                                  wp("9", "c9", "completed")};   // not ours
    std::vector<mserver::Difference> d = mserver::compare(ours, theirs);
    assert_int_equal(d.size(), 4);
    assert_string_equal((d[0].payment_id + " " + d[0].ours + " " + d[0].theirs).c_str(), "p2 completed declined");
    assert_string_equal((d[1].payment_id + " " + d[1].ours + " " + d[1].theirs).c_str(), "p5 open:unknown completed");
    assert_string_equal((d[2].payment_id + " " + d[2].ours + " " + d[2].theirs).c_str(), "p6 open:processing -");
    assert_string_equal((d[3].client_payment_id + " " + d[3].ours + " " + d[3].theirs).c_str(), "c9 - completed");
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(envelope_success_and_error),
        cmocka_unit_test(payment_fields_in_kopecks),
        cmocka_unit_test(rubles_and_kopecks_are_exact),
        cmocka_unit_test(statuses_and_decline_reasons),
        cmocka_unit_test(every_seed_error_code_has_an_outcome),
        cmocka_unit_test(request_bodies_from_accept_info),
        cmocka_unit_test(access_token_is_sha1_of_app_id_and_secret),
        cmocka_unit_test(mserver_operations_have_their_own_tasks),
        cmocka_unit_test(reconcile_lists_only_differences),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

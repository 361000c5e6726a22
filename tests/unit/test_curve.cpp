// CURVE key files, the allow list, ZAP decisions and the log throttle (ipc/curve.cpp), and
// paygatectl's key pair writer (ctl.cpp): plain C++, no sockets.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <zmq.h>

#include "paygate/curve.hpp"
#include "paygated/config.hpp"
#include "paygated/ctl.hpp"
#include "paygated/link_auth.hpp"

#include "cmocka.hpp"
#include "log_capture.hpp"
#include "test_material.hpp"

using namespace paygate;

namespace {

// Two fixed key pairs (libzmq's test vectors: the secret keys and their public keys).
const char* kPublicA = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
const char* kSecretA = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs";
const char* kPublicB = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";

bool contains(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

void key_text_is_40_z85_characters(void**) {
    assert_true(curve::is_key_text(kPublicA));
    assert_true(curve::is_key_text("#hash-is-a-z85-character-so-keys-may-be1"));
    assert_false(curve::is_key_text(std::string(kPublicA).substr(1)));          // 39
    assert_false(curve::is_key_text(std::string(kPublicA) + "x"));             // 41
    assert_false(curve::is_key_text("Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{h\"D"));   // '"' is not Z85
    assert_false(curve::is_key_text("Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{h D"));
    assert_false(curve::is_key_text(""));
}

void secret_key_file_derives_the_public_key(void**) {
    curve::KeyPair pair;
    std::string error;
    std::string text = std::string("# comment\n\n  ") + kSecretA + "  \r\n# public key: whatever\n";
    assert_true(curve::parse_secret_key(text, pair, error));
    assert_string_equal(pair.secret_key.c_str(), kSecretA);
    assert_string_equal(pair.public_key.c_str(), kPublicA);

    assert_false(curve::parse_secret_key("# only comments\n", pair, error));
    assert_string_equal(error.c_str(), "no key in the file");
    assert_false(curve::parse_secret_key(std::string(kSecretA) + "\n" + kSecretA + "\n", pair, error));
    assert_true(contains(error, "line 2: a secret key file holds exactly one key"));
    assert_false(curve::parse_secret_key(std::string(kSecretA) + " name\n", pair, error));
    assert_true(contains(error, "line 1: unexpected text after the secret key"));
    // A line that is neither a key nor a comment is named, and the secret never appears.
    assert_false(curve::parse_secret_key(std::string("# ok\n") + std::string(kSecretA).substr(0, 39) + "\n", pair,
                                         error));
    assert_string_equal(error.c_str(), "line 2: expected a 40-character Z85 key or a # comment");
    assert_false(contains(error, std::string(kSecretA).substr(0, 20).c_str()));
}

void public_keys_with_names_and_comments(void**) {
    std::vector<curve::NamedKey> keys;
    std::string error;
    std::string text = std::string("# allowed modules\n") + kPublicA + " nginx-1 (rack 4)\n\n\t" + kPublicB + "\n";
    assert_true(curve::parse_public_keys(text, 100, keys, error));
    assert_int_equal(keys.size(), 2);
    assert_string_equal(keys[0].key.c_str(), kPublicA);
    assert_string_equal(keys[0].name.c_str(), "nginx-1 (rack 4)");
    assert_string_equal(keys[1].key.c_str(), kPublicB);
    assert_string_equal(keys[1].name.c_str(), "");
    // A key may start with '#': it is a key, not a comment, when its first word is 40 Z85 chars.
    std::string hash_key = "#" + std::string(kPublicB).substr(1);
    assert_true(curve::parse_public_keys(hash_key + " odd\n#comment\n", 100, keys, error));
    assert_int_equal(keys.size(), 1);
    assert_string_equal(keys[0].key.c_str(), hash_key.c_str());

    assert_false(curve::parse_public_keys("# nothing\n", 100, keys, error));
    assert_string_equal(error.c_str(), "no key in the file");
    assert_false(curve::parse_public_keys(text, 1, keys, error));   // a public key file holds one
    assert_true(contains(error, "line 4: more than 1 key"));
    assert_false(curve::parse_public_keys("not-a-key\n", 100, keys, error));
    assert_true(contains(error, "line 1: expected a 40-character Z85 key"));
}

void key_files_and_their_permissions(void**) {
    std::string error;
    curve::KeyPair pair;
    std::string path = test_material::write_temp(std::string(kSecretA) + "\n");
    chmod(path.c_str(), 0644);   // a secret others may read is refused, naming the mode
    assert_false(curve::load_secret_key(path, pair, error));
    assert_true(contains(error, path.c_str()));
    assert_true(contains(error, "mode 0644"));
    chmod(path.c_str(), 0640);
    assert_false(curve::load_secret_key(path, pair, error));
    chmod(path.c_str(), 0600);
    assert_true(curve::load_secret_key(path, pair, error));
    assert_string_equal(pair.public_key.c_str(), kPublicA);
    unlink(path.c_str());
    assert_false(curve::load_secret_key(path, pair, error));
    assert_true(contains(error, "No such file"));

    std::string pub = test_material::write_temp(std::string(kPublicB) + " d2\n");
    chmod(pub.c_str(), 0644);   // public keys may be world-readable
    std::string key;
    assert_true(curve::load_public_key(pub, key, error));
    assert_string_equal(key.c_str(), kPublicB);
    unlink(pub.c_str());
}

void generated_pair_round_trips_through_its_files(void**) {
    assert_true(curve::available());
    char dir_template[] = "/tmp/test_curve_XXXXXX";
    std::string dir = mkdtemp(dir_template);
    std::string pub, error;
    assert_true(paygate::daemon::write_key_pair(dir, "nginx-1", pub, error));
    struct stat st {};
    assert_int_equal(stat((dir + "/nginx-1.key").c_str(), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat((dir + "/nginx-1.pub").c_str(), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    curve::KeyPair pair;
    assert_true(curve::load_secret_key(dir + "/nginx-1.key", pair, error));
    assert_string_equal(pair.public_key.c_str(), pub.c_str());
    std::vector<curve::NamedKey> keys;
    assert_true(curve::load_public_keys(dir + "/nginx-1.pub", keys, error));
    assert_int_equal(keys.size(), 1);
    assert_string_equal(keys[0].key.c_str(), pub.c_str());
    assert_string_equal(keys[0].name.c_str(), "nginx-1");
    // Never replaces a key; names are file names without paths.
    assert_false(paygate::daemon::write_key_pair(dir, "nginx-1", pub, error));
    assert_true(contains(error, "exists already"));
    assert_false(paygate::daemon::write_key_pair(dir, "../x", pub, error));
    assert_false(paygate::daemon::write_key_pair(dir, ".hidden", pub, error));
    assert_false(paygate::daemon::write_key_pair(dir, "", pub, error));
    // Two pairs differ.
    std::string other;
    assert_true(paygate::daemon::write_key_pair(dir, "nginx-2", other, error));
    assert_string_not_equal(other.c_str(), pub.c_str());
    for (const char* f : {"nginx-1.key", "nginx-1.pub", "nginx-2.key", "nginx-2.pub"}) unlink((dir + "/" + f).c_str());
    rmdir(dir.c_str());
}

std::string binary_of(const char* z85) {
    std::string out(32, '\0');
    assert_non_null(zmq_z85_decode(reinterpret_cast<std::uint8_t*>(out.data()), z85));
    return out;
}

curve::ZapRequest zap(const std::string& mechanism, std::vector<std::string> credentials) {
    curve::ZapRequest r;
    std::string error;
    std::vector<std::string> frames{"1.0", "req-7", curve::kZapDomain, "127.0.0.1", "", mechanism};
    frames.insert(frames.end(), credentials.begin(), credentials.end());
    assert_true(curve::parse_zap_request(frames, r, error));
    return r;
}

void zap_allows_listed_keys_only(void**) {
    curve::AllowList allowed(std::vector<curve::NamedKey>{{kPublicA, "nginx-1"}});
    assert_int_equal(allowed.size(), 1);

    curve::ZapDecision d = curve::decide(zap("CURVE", {binary_of(kPublicA)}), allowed);
    assert_true(d.allowed);
    assert_string_equal(d.status_code.c_str(), "200");
    assert_string_equal(d.client_key.c_str(), kPublicA);
    assert_string_equal(d.name.c_str(), "nginx-1");
    std::vector<std::string> reply = curve::zap_reply(zap("CURVE", {binary_of(kPublicA)}), d);
    assert_int_equal(reply.size(), 6);
    assert_string_equal(reply[0].c_str(), "1.0");
    assert_string_equal(reply[1].c_str(), "req-7");   // the request's id comes back
    assert_string_equal(reply[2].c_str(), "200");
    assert_string_equal(reply[4].c_str(), "nginx-1");

    d = curve::decide(zap("CURVE", {binary_of(kPublicB)}), allowed);
    assert_false(d.allowed);
    assert_string_equal(d.status_code.c_str(), "400");
    assert_string_equal(d.client_key.c_str(), kPublicB);   // named in the refusal's log line
    assert_string_equal(d.status_text.c_str(), "public key not allowed");
    reply = curve::zap_reply(zap("CURVE", {binary_of(kPublicB)}), d);
    assert_string_equal(reply[2].c_str(), "400");
    assert_string_equal(reply[4].c_str(), "");         // no user id for a refused peer

    // Another mechanism, malformed credentials, an empty list, another ZAP version: refused.
    assert_false(curve::decide(zap("NULL", {}), allowed).allowed);
    assert_false(curve::decide(zap("PLAIN", {"user", "pass"}), allowed).allowed);
    assert_false(curve::decide(zap("CURVE", {binary_of(kPublicA).substr(1)}), allowed).allowed);
    assert_false(curve::decide(zap("CURVE", {binary_of(kPublicA), binary_of(kPublicA)}), allowed).allowed);
    assert_false(curve::decide(zap("CURVE", {binary_of(kPublicA)}), curve::AllowList()).allowed);
    curve::ZapRequest v2 = zap("CURVE", {binary_of(kPublicA)});
    v2.version = "2.0";
    d = curve::decide(v2, allowed);
    assert_false(d.allowed);
    assert_string_equal(d.status_code.c_str(), "500");

    curve::ZapRequest r;
    std::string error;
    assert_false(curve::parse_zap_request({"1.0", "id", "paygate", "addr", ""}, r, error));
    assert_true(contains(error, "at least 6 frames"));
}

void throttle_logs_once_per_key_per_interval(void**) {
    using namespace std::chrono;
    curve::LogThrottle throttle(seconds(10), 2);
    auto t0 = curve::LogThrottle::Clock::now();
    unsigned long suppressed = 99;
    assert_true(throttle.should_log("k1", t0, suppressed));
    assert_int_equal(suppressed, 0);
    assert_false(throttle.should_log("k1", t0 + seconds(1), suppressed));
    assert_false(throttle.should_log("k1", t0 + seconds(9), suppressed));
    assert_true(throttle.should_log("k2", t0 + seconds(9), suppressed));   // keys are apart
    assert_true(throttle.should_log("k1", t0 + seconds(10), suppressed));
    assert_int_equal(suppressed, 2);                                        // the two held back
    assert_false(throttle.should_log("k1", t0 + seconds(11), suppressed));
    // Bounded: a third key starts the table over (k1 then counts as new).
    assert_true(throttle.should_log("k3", t0 + seconds(11), suppressed));
    assert_true(throttle.should_log("k1", t0 + seconds(11), suppressed));
    assert_int_equal(suppressed, 0);
}

std::vector<std::string> zap_frames(const char* z85_key) {
    return {"1.0", "req-1", curve::kZapDomain, "10.0.0.9", "", "CURVE", binary_of(z85_key)};
}

void write_file(const std::string& path, const std::string& text) {
    FILE* f = std::fopen(path.c_str(), "w");
    assert_non_null(f);
    std::fputs(text.c_str(), f);
    std::fclose(f);
}

// The daemon's ZAP logic end to end without sockets: answers, the warning naming a refused key
// (throttled), and the allow list re-read when its file changes (a broken file keeps the old one).
void link_auth_answers_logs_and_reloads(void**) {
    using namespace std::chrono;
    std::string secret = test_material::write_temp(std::string(kSecretA) + "\n");
    std::string allowed = test_material::write_temp(std::string(kPublicA) + " nginx-1\n");
    paygate::daemon::Config config;
    config.curve_secret_key = secret;
    config.curve_allowed_keys = allowed;
    std::string error;
    LogCapture cap;
    std::unique_ptr<paygate::daemon::LinkAuth> auth = paygate::daemon::LinkAuth::load(config, error);
    assert_non_null(auth.get());
    assert_string_equal(auth->keys().public_key.c_str(), kPublicA);
    assert_int_equal(auth->allowed_count(), 1);

    auto t0 = paygate::daemon::LinkAuth::Clock::now();
    std::vector<std::string> reply = auth->on_zap_request(zap_frames(kPublicA), t0);
    assert_string_equal(reply[2].c_str(), "200");
    reply = auth->on_zap_request(zap_frames(kPublicB), t0);
    assert_string_equal(reply[2].c_str(), "400");
    std::string text = cap.text();
    assert_true(contains(text, R"("level":"warn","event":"curve_refused","public_key":")"));
    assert_true(contains(text, kPublicB));
    assert_true(contains(text, R"("address":"10.0.0.9")"));
    assert_int_equal(cap.count(R"("event":"curve_refused")"), 1);
    auth->on_zap_request(zap_frames(kPublicB), t0 + seconds(1));   // throttled
    assert_int_equal(cap.count(R"("event":"curve_refused")"), 1);
    auth->on_zap_request(zap_frames(kPublicB), t0 + seconds(12));
    assert_int_equal(cap.count(R"("event":"curve_refused")"), 2);
    assert_true(contains(cap.text(), R"("refused_since_last":1)"));
    // A malformed request still gets an answer (libzmq waits for one).
    reply = auth->on_zap_request({"1.0", "req-2"}, t0);
    assert_int_equal(reply.size(), 6);
    assert_string_equal(reply[1].c_str(), "req-2");
    assert_string_equal(reply[2].c_str(), "500");

    // B is added to the file: admitted once the daemon looks again (at most once a second).
    write_file(allowed, std::string(kPublicA) + " nginx-1\n" + kPublicB + " nginx-2\n");
    struct timespec later[2] = {{0, UTIME_OMIT}, {time(nullptr) + 5, 0}};
    utimensat(AT_FDCWD, allowed.c_str(), later, 0);   // a distinct mtime even within one tick
    reply = auth->on_zap_request(zap_frames(kPublicB), t0 + seconds(14));
    assert_string_equal(reply[2].c_str(), "200");
    assert_string_equal(reply[4].c_str(), "nginx-2");
    assert_true(contains(cap.text(), R"("level":"info","event":"curve_allowed_keys_reloaded")"));
    // A broken file: an error line, and the keys in force stay.
    write_file(allowed, "this is not a key\n");
    later[1].tv_sec += 5;
    utimensat(AT_FDCWD, allowed.c_str(), later, 0);
    reply = auth->on_zap_request(zap_frames(kPublicB), t0 + seconds(16));
    assert_string_equal(reply[2].c_str(), "200");
    assert_true(contains(cap.text(), R"("level":"error","event":"curve_allowed_keys_reload_failed")"));
    assert_true(contains(cap.text(), R"("kept_keys":2)"));

    // Loading fails on a missing or too open secret, or an empty allow list.
    chmod(secret.c_str(), 0644);
    assert_null(paygate::daemon::LinkAuth::load(config, error).get());
    assert_true(contains(error, "curve_secret_key"));
    chmod(secret.c_str(), 0600);
    write_file(allowed, "# nobody\n");
    assert_null(paygate::daemon::LinkAuth::load(config, error).get());
    assert_true(contains(error, "curve_allowed_keys"));
    assert_true(contains(error, "no key in the file"));
    unlink(secret.c_str());
    unlink(allowed.c_str());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_text_is_40_z85_characters),
        cmocka_unit_test(secret_key_file_derives_the_public_key),
        cmocka_unit_test(public_keys_with_names_and_comments),
        cmocka_unit_test(key_files_and_their_permissions),
        cmocka_unit_test(generated_pair_round_trips_through_its_files),
        cmocka_unit_test(zap_allows_listed_keys_only),
        cmocka_unit_test(throttle_logs_once_per_key_per_interval),
        cmocka_unit_test(link_auth_answers_logs_and_reloads),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}

// CURVE key files, the allow list and ZAP decisions (see curve.hpp).
#include "paygate/curve.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

#include <openssl/crypto.h>
#include <zmq.h>

namespace paygate::curve {

namespace {

constexpr std::string_view kZ85Alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
// An allow list of a few thousand keys fits easily; anything larger is not a key file.
constexpr std::size_t kMaxFileBytes = 1 << 20;

void wipe(std::string& s) {
    if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
    s.clear();
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

std::string binary_of(std::string_view z85) {
    std::string text(z85);
    std::string out(kKeyBytes, '\0');
    if (zmq_z85_decode(reinterpret_cast<std::uint8_t*>(out.data()), text.c_str()) == nullptr) out.clear();
    return out;
}

std::string z85_of(std::string_view binary) {
    char text[kKeyChars + 1] = {};
    if (binary.size() != kKeyBytes ||
        zmq_z85_encode(text, reinterpret_cast<const std::uint8_t*>(binary.data()), binary.size()) == nullptr) {
        return {};
    }
    return std::string(text, kKeyChars);
}

// One line of a key file: a key (with the rest of the line as its name), a comment or blank, or
// an error.
enum class LineKind { Key, Skip, Bad };

LineKind classify(std::string_view line, std::string_view& key, std::string_view& name) {
    line = trim(line);
    if (line.empty()) return LineKind::Skip;
    std::size_t end = line.find_first_of(" \t");
    std::string_view first = line.substr(0, end);
    if (is_key_text(first)) {
        key = first;
        name = end == std::string_view::npos ? std::string_view{} : trim(line.substr(end));
        return LineKind::Key;
    }
    return line.front() == '#' ? LineKind::Skip : LineKind::Bad;
}

template <typename OnKey>
bool for_each_key(std::string_view text, std::string& error, OnKey on_key) {
    std::size_t line_no = 0;
    while (!text.empty()) {
        ++line_no;
        std::size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        std::string_view key, name;
        switch (classify(line, key, name)) {
            case LineKind::Skip: break;
            case LineKind::Bad:
                error = "line " + std::to_string(line_no) + ": expected a 40-character Z85 key or a # comment";
                return false;
            case LineKind::Key:
                if (!on_key(key, name, line_no)) return false;
                break;
        }
    }
    return true;
}

// Reads a key file whole; a secret one must be private to its owner.
bool read_key_file(const std::string& path, bool secret, std::string& out, std::string& error) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        error = path + ": " + std::error_code(errno, std::generic_category()).message();
        return false;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        error = path + ": not a regular file";
        return false;
    }
    if (secret && (st.st_mode & 077) != 0) {
        ::close(fd);
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        error = path + ": a secret key file must not be accessible by group or others (mode " + mode +
                "; chmod 600 it)";
        return false;
    }
    std::string text(kMaxFileBytes + 1, '\0');
    std::size_t used = 0;
    for (;;) {
        ssize_t n = ::read(fd, text.data() + used, text.size() - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ::close(fd);
            wipe(text);
            error = path + ": read error";
            return false;
        }
        if (n == 0) break;
        used += static_cast<std::size_t>(n);
        if (used == text.size()) break;
    }
    ::close(fd);
    if (used > kMaxFileBytes) {
        wipe(text);
        error = path + ": file too large for a key file";
        return false;
    }
    text.resize(used);
    out.swap(text);
    wipe(text);
    return true;
}

}  // namespace

bool is_key_text(std::string_view text) {
    if (text.size() != kKeyChars) return false;
    for (char c : text) {
        if (kZ85Alphabet.find(c) == std::string_view::npos) return false;
    }
    return true;
}

KeyPair::~KeyPair() { wipe(secret_key); }

bool parse_secret_key(std::string_view text, KeyPair& out, std::string& error) {
    std::string secret;
    bool ok = for_each_key(text, error, [&](std::string_view key, std::string_view name, std::size_t line_no) {
        if (!secret.empty()) {
            error = "line " + std::to_string(line_no) + ": a secret key file holds exactly one key";
            return false;
        }
        if (!name.empty()) {
            error = "line " + std::to_string(line_no) + ": unexpected text after the secret key";
            return false;
        }
        secret.assign(key);
        return true;
    });
    if (ok && secret.empty()) {
        error = "no key in the file";
        ok = false;
    }
    char public_text[kKeyChars + 1] = {};
    if (ok && zmq_curve_public(public_text, secret.c_str()) != 0) {
        error = "cannot derive the public key (is libzmq built with CURVE?)";
        ok = false;
    }
    if (ok) {
        out.public_key.assign(public_text, kKeyChars);
        wipe(out.secret_key);
        out.secret_key.swap(secret);
    }
    wipe(secret);
    return ok;
}

bool parse_public_keys(std::string_view text, std::size_t max, std::vector<NamedKey>& out, std::string& error) {
    std::vector<NamedKey> keys;
    bool ok = for_each_key(text, error, [&](std::string_view key, std::string_view name, std::size_t line_no) {
        if (keys.size() == max) {
            error = "line " + std::to_string(line_no) + ": more than " + std::to_string(max) + " key" +
                    (max == 1 ? "" : "s");
            return false;
        }
        keys.push_back({std::string(key), std::string(name)});
        return true;
    });
    if (!ok) return false;
    if (keys.empty()) {
        error = "no key in the file";
        return false;
    }
    out = std::move(keys);
    return true;
}

bool load_secret_key(const std::string& path, KeyPair& out, std::string& error) {
    std::string text;
    if (!read_key_file(path, true, text, error)) return false;
    bool ok = parse_secret_key(text, out, error);
    if (!ok) error = path + ": " + error;
    wipe(text);
    return ok;
}

bool load_public_keys(const std::string& path, std::vector<NamedKey>& out, std::string& error) {
    std::string text;
    if (!read_key_file(path, false, text, error)) return false;
    if (!parse_public_keys(text, static_cast<std::size_t>(-1), out, error)) {
        error = path + ": " + error;
        return false;
    }
    return true;
}

bool load_public_key(const std::string& path, std::string& out, std::string& error) {
    std::string text;
    if (!read_key_file(path, false, text, error)) return false;
    std::vector<NamedKey> keys;
    if (!parse_public_keys(text, 1, keys, error)) {
        error = path + ": " + error;
        return false;
    }
    out = keys.front().key;
    return true;
}

bool available() { return zmq_has("curve") != 0; }

KeyPair generate() {
    char public_text[kKeyChars + 1] = {};
    char secret_text[kKeyChars + 1] = {};
    if (!available() || zmq_curve_keypair(public_text, secret_text) != 0) {
        throw std::runtime_error("libzmq has no CURVE support (built without libsodium)");
    }
    KeyPair pair;
    pair.public_key.assign(public_text, kKeyChars);
    pair.secret_key.assign(secret_text, kKeyChars);
    OPENSSL_cleanse(secret_text, sizeof secret_text);
    return pair;
}

std::string secret_key_file_text(const KeyPair& pair, std::string_view name) {
    return "# paygate CURVE secret key '" + std::string(name) + "' (paygatectl keys generate).\n"
           "# Keep it secret: mode 0600, readable only by the account that loads it.\n"
           "# public key: " + pair.public_key + "\n" +
           pair.secret_key + "\n";
}

std::string public_key_file_text(const KeyPair& pair, std::string_view name) {
    return "# paygate CURVE public key '" + std::string(name) + "' (paygatectl keys generate).\n" +
           pair.public_key + " " + std::string(name) + "\n";
}

bool parse_zap_request(const std::vector<std::string>& frames, ZapRequest& out, std::string& error) {
    if (frames.size() < 6) {
        error = "a ZAP request has at least 6 frames, got " + std::to_string(frames.size());
        return false;
    }
    out.version = frames[0];
    out.request_id = frames[1];
    out.domain = frames[2];
    out.address = frames[3];
    out.routing_id = frames[4];
    out.mechanism = frames[5];
    out.credentials.assign(frames.begin() + 6, frames.end());
    return true;
}

AllowList::AllowList(const std::vector<NamedKey>& keys) {
    for (const NamedKey& k : keys) {
        std::string binary = binary_of(k.key);
        if (binary.size() == kKeyBytes) keys_.emplace(std::move(binary), k);
    }
}

const NamedKey* AllowList::find_binary(std::string_view key) const {
    auto it = keys_.find(std::string(key));
    return it == keys_.end() ? nullptr : &it->second;
}

ZapDecision decide(const ZapRequest& request, const AllowList& allowed) {
    ZapDecision d;
    if (request.version != "1.0") {
        d.status_code = "500";
        d.status_text = "unsupported ZAP version";
        return d;
    }
    d.status_code = "400";
    if (request.mechanism != "CURVE") {
        d.status_text = "CURVE required";
        return d;
    }
    if (request.credentials.size() != 1 || request.credentials[0].size() != kKeyBytes) {
        d.status_text = "malformed CURVE credentials";
        return d;
    }
    d.client_key = z85_of(request.credentials[0]);
    const NamedKey* entry = allowed.find_binary(request.credentials[0]);
    if (entry == nullptr) {
        d.status_text = "public key not allowed";
        return d;
    }
    d.allowed = true;
    d.status_code = "200";
    d.status_text = "OK";
    d.name = entry->name;
    return d;
}

std::vector<std::string> zap_reply(const ZapRequest& request, const ZapDecision& decision) {
    // The user id is what the peer is known as: the key's name, else the key itself.
    std::string user = decision.allowed ? (decision.name.empty() ? decision.client_key : decision.name) : "";
    return {"1.0", request.request_id, decision.status_code, decision.status_text, user, ""};
}

bool LogThrottle::should_log(const std::string& key, Clock::time_point now, unsigned long& suppressed) {
    auto it = entries_.find(key);
    if (it == entries_.end()) {
        if (entries_.size() >= max_keys_) entries_.clear();   // many keys: start over, still bounded
        entries_.emplace(key, Entry{now, 0});
        suppressed = 0;
        return true;
    }
    if (now - it->second.last < interval_) {
        ++it->second.suppressed;
        return false;
    }
    suppressed = it->second.suppressed;
    it->second = Entry{now, 0};
    return true;
}

}  // namespace paygate::curve

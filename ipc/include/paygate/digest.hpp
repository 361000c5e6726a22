// SHA-256 as lower-case hex: token hashes, migration checksums, idempotency keys.
#pragma once

#include <string>
#include <string_view>

namespace paygate {

std::string sha256_hex(std::string_view data);   // throws std::runtime_error if OpenSSL fails

}  // namespace paygate

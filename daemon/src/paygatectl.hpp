// What paygatectl's command files share (paygatectl_main.cpp holds the table of subcommands).
#pragma once

#include <string>
#include <vector>

namespace paygate::daemon::paygatectl {

// Exit statuses: 0 done, 1 the command failed, 2 bad usage.
constexpr int kFailed = 1;
constexpr int kUsage = 2;

int fail(const std::string& message);                            // prints, returns kFailed
int usage_error(const std::string& message, const char* usage);  // prints with the usage, returns kUsage

// paygatectl_keys.cpp: key material (CURVE pairs of the link, merchant JWT keys and test tokens).
extern const char* const kKeysUsage;
extern const char* const kJwtUsage;
int cmd_keys(const std::vector<std::string>& args);
int cmd_jwt(const std::vector<std::string>& args);

}  // namespace paygate::daemon::paygatectl

// Helpers around binding ipc:// endpoints: socket file path, live-owner check, mode, cleanup.
#pragma once

#include <string>
#include <string_view>
#include <sys/types.h>

namespace paygate::daemon {

// The socket file of an ipc:// endpoint; empty for tcp:// and abstract (ipc://@name) endpoints.
std::string ipc_socket_path(std::string_view endpoint);

// libzmq replaces an existing socket file when it binds, which
// is right for a stale file left by a crash but would silently steal the socket of a daemon that
// is still running. Fails when a process accepts connections on `path`; a missing file or one
// nobody listens on (connection refused) is fine.
bool check_socket_file_free(const std::string& path, std::string& error);

// A socket file this process created, remembered so it is removed at exit only if still ours.
struct SocketFile {
    std::string path;
    dev_t dev = 0;
    ino_t ino = 0;
};

// chmod(path, mode) after bind (nginx workers run as another user) and remember the file.
bool adopt_socket_file(const std::string& path, unsigned mode, SocketFile& out, std::string& error);

// Unlinks the file if it is still the one adopted (not a successor daemon's).
void remove_socket_file(const SocketFile& file);

}  // namespace paygate::daemon

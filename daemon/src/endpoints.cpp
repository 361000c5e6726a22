// ipc:// socket file handling for the front end (see endpoints.hpp).
#include "paygated/endpoints.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace paygate::daemon {

std::string ipc_socket_path(std::string_view endpoint) {
    if (endpoint.substr(0, 6) != "ipc://") return {};
    std::string_view path = endpoint.substr(6);
    if (path.empty() || path.front() == '@') return {};
    return std::string(path);
}

bool check_socket_file_free(const std::string& path, std::string& error) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return true;  // nothing there (or unreadable: bind will say)
    if (!S_ISSOCK(st.st_mode)) {
        error = path + " exists and is not a socket";
        return false;
    }
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path) return true;  // bind reports the length problem
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return true;
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    ::close(fd);
    if (rc == 0) {
        error = path + " is in use by a running process (another paygated?)";
        return false;
    }
    return true;  // typically ECONNREFUSED: a stale file from a crash, which libzmq replaces
}

bool adopt_socket_file(const std::string& path, unsigned mode, SocketFile& out, std::string& error) {
    if (::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) {
        error = "chmod " + path + ": " + std::strerror(errno);
        return false;
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        error = "stat " + path + ": " + std::strerror(errno);
        return false;
    }
    out.path = path;
    out.dev = st.st_dev;
    out.ino = st.st_ino;
    return true;
}

void remove_socket_file(const SocketFile& file) {
    struct stat st {};
    if (file.path.empty() || ::lstat(file.path.c_str(), &st) != 0) return;
    if (st.st_dev == file.dev && st.st_ino == file.ino) ::unlink(file.path.c_str());
}

}  // namespace paygate::daemon

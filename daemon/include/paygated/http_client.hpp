// Outbound HTTP for provider calls: one thread drives every call through libcurl's multi
// interface (keep-alive connections reused across calls); callers wait on a future.
#pragma once

#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace paygate::daemon {

struct HttpRequest {
    std::string method = "POST";        // "POST" or "GET" (mserver's status and history reads)
    std::string url;
    std::vector<std::string> headers;   // "Name: value"
    std::string body;                   // POSTed as is (ignored for GET)
    long connect_timeout_ms = 3000;
    long timeout_ms = 10000;            // the whole call
    // A connection of its own, closed afterwards. libcurl silently sends a request again when a
    // reused keep-alive connection dies before any answer; a call that must leave exactly once
    // per attempt of ours (mserver's prepare and pay) asks for this instead.
    bool fresh_connection = false;
};

struct HttpResponse {
    // Transport outcome. NotSent: the connection was never made, so the server cannot have seen
    // the request. Unknown: it may have been sent (timeout, reset, no answer): whatever the server
    // did with it is unknown. Answered: a full HTTP response arrived.
    enum class Outcome { Answered, NotSent, Unknown };
    Outcome outcome = Outcome::Unknown;
    long status = 0;
    std::string body;
    std::string error;                  // libcurl's message when not Answered
    double seconds = 0;
};

class HttpClient {
public:
    HttpClient();
    ~HttpClient();   // stops the thread; calls still running end as Unknown ("client stopped")
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    // Runs `request` (POST or GET, by request.method).
    std::future<HttpResponse> post(HttpRequest request);

private:
    struct Call;
    void run();

    std::mutex mutex_;
    std::deque<std::unique_ptr<Call>> queued_;
    bool stop_ = false;
    void* multi_ = nullptr;   // CURLM*
    std::thread thread_;
};

}  // namespace paygate::daemon

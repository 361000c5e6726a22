// The provider calls' HTTP engine: a libcurl multi handle on a thread of its own.
#include "paygated/http_client.hpp"

#include <curl/curl.h>

#include <chrono>
#include <map>

namespace paygate::daemon {

struct HttpClient::Call {
    HttpRequest request;
    std::promise<HttpResponse> promise;
    HttpResponse response;
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    char error[CURL_ERROR_SIZE] = {};
};

namespace {

std::size_t collect(char* data, std::size_t size, std::size_t n, void* user) {
    auto* out = static_cast<std::string*>(user);
    constexpr std::size_t kMaxBody = 1 << 20;   // providers answer small JSON documents
    if (out->size() + size * n > kMaxBody) return 0;   // aborts the transfer (outcome unknown)
    out->append(data, size * n);
    return size * n;
}

// Errors after which the server cannot have received the request.
bool never_sent(CURLcode code) {
    return code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_CONNECT ||
           code == CURLE_COULDNT_RESOLVE_PROXY || code == CURLE_UNSUPPORTED_PROTOCOL ||
           code == CURLE_URL_MALFORMAT;
}

struct CurlGlobal {
    CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

}  // namespace

HttpClient::HttpClient() {
    static CurlGlobal global;   // thread-safe once, before any handle exists
    multi_ = curl_multi_init();
    if (!multi_) throw std::runtime_error("curl_multi_init failed");
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
    thread_ = std::thread([this] { run(); });
}

HttpClient::~HttpClient() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    curl_multi_wakeup(multi_);
    if (thread_.joinable()) thread_.join();
    curl_multi_cleanup(multi_);
}

std::future<HttpResponse> HttpClient::post(HttpRequest request) {
    auto call = std::make_unique<Call>();
    call->request = std::move(request);
    std::future<HttpResponse> result = call->promise.get_future();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_) {
            call->response.error = "client stopped";
            call->response.outcome = HttpResponse::Outcome::NotSent;
            call->promise.set_value(std::move(call->response));
            return result;
        }
        queued_.push_back(std::move(call));
    }
    curl_multi_wakeup(multi_);
    return result;
}

void HttpClient::run() {
    std::map<CURL*, std::unique_ptr<Call>> running;
    auto finish = [&](std::unique_ptr<Call> call) {
        curl_multi_remove_handle(multi_, call->easy);
        curl_easy_cleanup(call->easy);
        curl_slist_free_all(call->headers);
        call->promise.set_value(std::move(call->response));
    };
    for (;;) {
        std::deque<std::unique_ptr<Call>> fresh;
        bool stopping;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            fresh.swap(queued_);
            stopping = stop_;
        }
        for (auto& call : fresh) {
            if (stopping) {
                call->response.outcome = HttpResponse::Outcome::NotSent;
                call->response.error = "client stopped";
                call->promise.set_value(std::move(call->response));
                continue;
            }
            CURL* e = curl_easy_init();
            call->easy = e;
            for (const std::string& h : call->request.headers) call->headers = curl_slist_append(call->headers, h.c_str());
            call->headers = curl_slist_append(call->headers, "Expect:");   // no 100-continue round trip
            curl_easy_setopt(e, CURLOPT_URL, call->request.url.c_str());
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
            if (call->request.method == "GET") {
                curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
            } else {
                curl_easy_setopt(e, CURLOPT_POST, 1L);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->request.body.data());
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call->request.body.size()));
            }
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, call->request.connect_timeout_ms);
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, call->request.timeout_ms);
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
            if (call->request.fresh_connection) {
                curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
                curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
            }
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
            curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
            curl_easy_setopt(e, CURLOPT_WRITEDATA, &call->response.body);
            curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->error);
            curl_easy_setopt(e, CURLOPT_PRIVATE, call.get());
            curl_multi_add_handle(multi_, e);
            running.emplace(e, std::move(call));
        }
        if (stopping && running.empty()) return;
        if (stopping) {
            for (auto& [easy, call] : running) {
                call->response.outcome = HttpResponse::Outcome::Unknown;
                call->response.error = "client stopped";
                finish(std::move(call));
            }
            running.clear();
            return;
        }
        int still = 0;
        curl_multi_perform(multi_, &still);
        int left = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
            if (msg->msg != CURLMSG_DONE) continue;
            auto it = running.find(msg->easy_handle);
            if (it == running.end()) continue;
            std::unique_ptr<Call> call = std::move(it->second);
            running.erase(it);
            CURLcode code = msg->data.result;
            curl_easy_getinfo(call->easy, CURLINFO_TOTAL_TIME, &call->response.seconds);
            if (code == CURLE_OK) {
                call->response.outcome = HttpResponse::Outcome::Answered;
                curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->response.status);
            } else {
                call->response.outcome = never_sent(code) ? HttpResponse::Outcome::NotSent : HttpResponse::Outcome::Unknown;
                call->response.error = call->error[0] ? call->error : curl_easy_strerror(code);
            }
            finish(std::move(call));
        }
        curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
    }
}

}  // namespace paygate::daemon

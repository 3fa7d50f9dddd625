// An in-process HTTP server for tests that talk to a scripted OpenAI-compatible endpoint, and
// a helper to pick fields out of the prompts such an endpoint receives.
#pragma once

#include <httplib.h>

#include <stdexcept>
#include <string>
#include <thread>

namespace crucible::testutil {

// An HTTP server on an ephemeral port of 127.0.0.1, listening from construction until
// destruction. Register handlers on http() right after constructing it.
class TestServer {
  public:
    TestServer() {
        port_ = server_.bind_to_any_port("127.0.0.1");
        if (port_ <= 0) throw std::runtime_error("test server: cannot bind 127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
    }
    ~TestServer() {
        // stop() is a no-op until the accept loop runs; the socket already accepts meanwhile.
        while (!server_.is_running()) std::this_thread::yield();
        server_.stop();
        thread_.join();
    }
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;

    httplib::Server& http() { return server_; }
    int port() const { return port_; }
    std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

  private:
    httplib::Server server_;
    int port_ = 0;
    std::thread thread_;
};

// The text after the last `marker` up to `end` (or the end of the text); "" without `marker`.
inline std::string between(const std::string& s, const std::string& marker,
                           const std::string& end) {
    const size_t b = s.rfind(marker);
    if (b == std::string::npos) return "";
    const size_t from = b + marker.size();
    const size_t e = s.find(end, from);
    return s.substr(from, e == std::string::npos ? std::string::npos : e - from);
}

}  // namespace crucible::testutil

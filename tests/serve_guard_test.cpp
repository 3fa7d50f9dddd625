// `crucible serve` under hostile clients (issue 22, items 6-8): slow and many connections,
// bodies over the limit or trickling, odd framings, numbers at the edges of their types.
// Clients are raw sockets, several bound to 127.0.0.2 so that "another client address" is
// real on one machine; limits are shrunk so the deadlines pass in a second or two.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "model/model.h"
#include "model_util.h"
#include "serve/server.h"
#include "test_util.h"

extern char** environ;

namespace crucible {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kContext = 128;

template <typename F>
bool eventually(F cond, double seconds = 30) {
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return cond();
}

// A TCP connection to 127.0.0.1:port from `from` (any 127/8 address), or -1.
int connect_from(int port, const char* from = "127.0.0.1") {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_in local{};
    local.sin_family = AF_INET;
    inet_pton(AF_INET, from, &local.sin_addr);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool send_all(int fd, const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
        const ssize_t n = send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
        if (n <= 0) return false;
        done += static_cast<size_t>(n);
    }
    return true;
}

// Everything the server sends until it closes the connection (or `seconds` pass, or the
// text holds `until`).
std::string read_all(int fd, double seconds = 30, const std::string& until = "") {
    std::string got;
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    char buf[4096];
    while (Clock::now() < end) {
        if (!until.empty() && got.find(until) != std::string::npos) break;
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
    }
    return got;
}

// True when the server has closed the connection (EOF or reset) within `seconds`.
bool closed_within(int fd, double seconds) {
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    char buf[4096];
    while (Clock::now() < end) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return true;
    }
    return false;
}

// The JSON body of a raw HTTP answer.
json body_of(const std::string& answer) {
    const size_t at = answer.find("\r\n\r\n");
    if (at == std::string::npos) return json();
    return json::parse(answer.substr(at + 4), nullptr, false);
}

std::string post_request(const std::string& path, const std::string& body,
                         const std::string& extra_headers = "") {
    return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
           extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

const std::string kHealth = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

struct ServeGuard : ::testing::Test {
    testutil::TempDir tmp;
    fs::path dir = tmp.path() / "tiny";
    std::unique_ptr<Model> model = testutil::write_byte_model(dir, kContext, 3);
    std::unique_ptr<Server> server;
    std::thread runner;
    std::atomic<bool> hold{false};  // the engine waits after its second step while set

    void start(ServerOptions o = {}) {
        o.model_dir = dir;
        o.port = 0;
        o.served_model_name = "tiny";
        o.after_step = [this](int64_t step) {
            while (step >= 2 && hold) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        };
        server = std::make_unique<Server>(o);
        runner = std::thread([this] { server->run(); });
    }
    void TearDown() override {
        hold = false;
        if (server) server->stop();
        if (runner.joinable()) runner.join();
        server.reset();
    }
    int port() const { return server->port(); }
    std::pair<int, json> post(const std::string& path, const std::string& body,
                              const char* type = "application/json") const {
        httplib::Client http("127.0.0.1", port());
        http.set_read_timeout(60, 0);
        auto res = http.Post(path.c_str(), body, type);
        if (!res) return {-1, json()};
        return {res->status, json::parse(res->body, nullptr, false)};
    }
    int health(double timeout_s = 10) const {
        httplib::Client http("127.0.0.1", port());
        http.set_connection_timeout(std::chrono::duration<double>(timeout_s));
        http.set_read_timeout(std::chrono::duration<double>(timeout_s));
        auto res = http.Get("/health");
        return res ? res->status : -1;
    }
};

const std::string kSmall = R"({"prompt": "hi", "max_tokens": 2, "temperature": 0})";

// ---- item 6: slow and many clients ----------------------------------------------------------

TEST_F(ServeGuard, SeventySlowClientsAreCutAtTheirDeadlineWhileOthersAreServed) {
    ServerOptions o;
    o.http_threads = 4;  // fewer workers than slow clients: they must not hold any
    o.request_timeout_s = 3;
    start(o);
    constexpr int kSlow = 70;
    std::vector<int> slow;
    for (int i = 0; i < kSlow; i++) {
        const int fd = connect_from(port(), "127.0.0.2");
        ASSERT_GE(fd, 0);
        slow.push_back(fd);
    }
    // One header byte per connection every 100 ms, until the server closes it.
    const std::string request = post_request("/v1/completions", kSmall);
    std::atomic<bool> quit{false};
    std::thread trickle([&] {
        for (size_t at = 0; !quit && at < request.size(); at++) {
            for (int fd : slow) send(fd, &request[at], 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    });
    ASSERT_TRUE(eventually([&] { return server->stats().connections >= kSlow; }));
    // While they are held: the health check and a real request from another address answer.
    EXPECT_EQ(health(), 200);
    const auto [status, j] = post("/v1/completions", kSmall);
    EXPECT_EQ(status, 200) << j;
    // Then every slow one is answered 408 and closed by its deadline (3 s after its first
    // byte; 30 s is a generous bound for a loaded machine).
    for (int fd : slow) {
        const std::string got = read_all(fd, 30);
        EXPECT_NE(got.find("408"), std::string::npos) << got;
        EXPECT_NE(got.find("--request-timeout"), std::string::npos) << got;
    }
    quit = true;
    trickle.join();
    for (int fd : slow) close(fd);
    EXPECT_GE(server->stats().requests_timed_out, kSlow);
    EXPECT_TRUE(eventually([&] { return server->stats().connections == 0; }));
}

TEST_F(ServeGuard, ABodyTricklingAfterFastHeadersIsCutAtTheDeadline) {
    ServerOptions o;
    o.request_timeout_s = 1;
    start(o);
    const int fd = connect_from(port());
    ASSERT_GE(fd, 0);
    const std::string request = post_request("/v1/completions", std::string(4000, ' '));
    ASSERT_TRUE(send_all(fd, request.substr(0, request.find("\r\n\r\n") + 4)));
    const auto t0 = Clock::now();
    std::atomic<bool> quit{false};
    std::thread trickle([&] {
        while (!quit && send(fd, " ", 1, MSG_NOSIGNAL) == 1)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
    });
    const std::string got = read_all(fd, 30);
    const double took = std::chrono::duration<double>(Clock::now() - t0).count();
    quit = true;
    trickle.join();
    close(fd);
    EXPECT_NE(got.find("408 Request Timeout"), std::string::npos) << got;
    EXPECT_EQ(body_of(got)["error"]["type"], "invalid_request_error") << got;
    EXPECT_GT(took, 0.5);  // not before its deadline (1 s after the first byte)
    EXPECT_LT(took, 25);
}

TEST_F(ServeGuard, ConnectionsPerClientAddressAreCapped) {
    ServerOptions o;
    o.max_connections_per_client = 4;
    o.keepalive_timeout_s = 60;
    start(o);
    std::vector<int> held;
    for (int i = 0; i < 4; i++) {
        const int fd = connect_from(port(), "127.0.0.2");
        ASSERT_GE(fd, 0);
        held.push_back(fd);
    }
    ASSERT_TRUE(eventually([&] { return server->stats().connections == 4; }));
    const int extra = connect_from(port(), "127.0.0.2");
    ASSERT_GE(extra, 0);
    ASSERT_TRUE(send_all(extra, kHealth));
    const std::string got = read_all(extra, 30);
    close(extra);
    EXPECT_NE(got.find("429 Too Many Requests"), std::string::npos) << got;
    EXPECT_NE(got.find("Retry-After: 1"), std::string::npos) << got;
    const json e = body_of(got);
    EXPECT_EQ(e["error"]["type"], "rate_limit_exceeded") << got;
    EXPECT_NE(e["error"]["message"].get<std::string>().find("at most 4"), std::string::npos);
    EXPECT_GE(server->stats().connections_refused, 1);
    // Another address is served meanwhile, and so is the capped one once it closes one.
    EXPECT_EQ(health(), 200);
    EXPECT_EQ(post("/v1/completions", kSmall).first, 200);
    close(held.back());
    held.pop_back();
    ASSERT_TRUE(eventually([&] { return server->stats().connections == 3; }));
    const int again = connect_from(port(), "127.0.0.2");
    ASSERT_TRUE(send_all(again, kHealth));
    EXPECT_NE(read_all(again, 30, "}").find("200 OK"), std::string::npos);
    close(again);
    for (int fd : held) close(fd);
}

TEST_F(ServeGuard, IdleConnectionsAreClosedAfterTheKeepAliveTimeout) {
    ServerOptions o;
    o.keepalive_timeout_s = 0.5;
    start(o);
    const int silent = connect_from(port());  // never sends a byte
    const int used = connect_from(port());    // one request, then idles
    ASSERT_TRUE(send_all(used, kHealth));
    EXPECT_NE(read_all(used, 30, "}").find("200 OK"), std::string::npos);
    EXPECT_TRUE(closed_within(silent, 20));
    EXPECT_TRUE(closed_within(used, 20));
    close(silent);
    close(used);
    EXPECT_TRUE(eventually([&] { return server->stats().connections == 0; }));
}

TEST_F(ServeGuard, HealthAnswersWhileEveryWorkerHoldsAStream) {
    ServerOptions o;
    o.http_threads = 2;
    hold = true;
    start(o);
    // Two chat streams (the role chunk goes out at once) that the held engine keeps open, each
    // holding a worker.
    const std::string body =
        R"({"messages": [{"role": "user", "content": "a"}], "max_tokens": 60, "stream": true})";
    std::vector<int> streams;
    for (int i = 0; i < 2; i++) {
        const int fd = connect_from(port());
        ASSERT_TRUE(send_all(fd, post_request("/v1/chat/completions", body)));
        EXPECT_NE(read_all(fd, 30, "data: ").find("data: "), std::string::npos);
        streams.push_back(fd);
    }
    EXPECT_EQ(health(), 200);
    hold = false;
    for (int fd : streams) close(fd);
}

// ---- framing: pipelining, chunked bodies, Expect, odd lengths -------------------------------

TEST_F(ServeGuard, PipelinedRequestsAreAnsweredInOrder) {
    start();
    const int fd = connect_from(port());
    ASSERT_TRUE(send_all(fd, kHealth + post_request("/v1/completions", kSmall) +
                                 "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    const std::string got = read_all(fd, 30);  // keep-alive: read until the third answer
    close(fd);
    const size_t a = got.find("200 OK");
    const size_t b = got.find("text_completion");
    const size_t c = got.rfind("{\"status\":\"ok\"}");
    ASSERT_NE(a, std::string::npos) << got;
    ASSERT_NE(b, std::string::npos) << got;
    ASSERT_NE(c, std::string::npos) << got;
    EXPECT_LT(a, b);
    EXPECT_LT(b, c);
}

TEST_F(ServeGuard, ChunkedBodiesAreReadAndLimited) {
    ServerOptions o;
    o.max_body_bytes = 1000;
    o.request_timeout_s = 1;
    start(o);
    const std::string head =
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    auto chunk = [](const std::string& s) {
        char size[32];
        std::snprintf(size, sizeof size, "%zx\r\n", s.size());
        return size + s + "\r\n";
    };
    {  // a valid chunked request, in two chunks
        const int fd = connect_from(port());
        ASSERT_TRUE(send_all(
            fd, head + chunk(kSmall.substr(0, 10)) + chunk(kSmall.substr(10)) + "0\r\n\r\n"));
        const std::string got = read_all(fd, 30);
        close(fd);
        EXPECT_NE(got.find("200 OK"), std::string::npos) << got;
        EXPECT_NE(got.find("text_completion"), std::string::npos) << got;
    }
    {  // chunks that never end: 413 once past the limit, without waiting for the rest
        const int fd = connect_from(port());
        ASSERT_TRUE(send_all(fd, head));
        std::string got;
        for (int i = 0; i < 20 && got.empty(); i++) {
            send_all(fd, chunk(std::string(100, ' ')));
            got = read_all(fd, 0.05);
        }
        got += read_all(fd, 30);
        close(fd);
        EXPECT_NE(got.find("413"), std::string::npos) << got;
        EXPECT_NE(got.find("1000 bytes"), std::string::npos) << got;
    }
    {  // a chunk size that does not fit: refused at once
        const int fd = connect_from(port());
        ASSERT_TRUE(send_all(fd, head + "ffffffffffffffffff\r\n"));
        const std::string got = read_all(fd, 30);
        close(fd);
        EXPECT_TRUE(got.find("400") != std::string::npos || got.find("413") != std::string::npos)
            << got;
    }
    {  // a chunked body that stops arriving: 408 at the deadline
        const int fd = connect_from(port());
        ASSERT_TRUE(send_all(fd, head + chunk("{\"prompt\"")));
        const std::string got = read_all(fd, 30);
        close(fd);
        EXPECT_NE(got.find("408"), std::string::npos) << got;
    }
    {  // both framings: refused
        const int fd = connect_from(port());
        ASSERT_TRUE(send_all(fd,
                             "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                             "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"));
        const std::string got = read_all(fd, 30);
        close(fd);
        EXPECT_NE(got.find("400"), std::string::npos) << got;
    }
}

TEST_F(ServeGuard, AHugeContentLengthIsRefusedBeforeItsBody) {
    ServerOptions o;
    o.max_body_bytes = 1 << 20;
    o.request_timeout_s = 1;
    start(o);
    {  // over the limit: 413 at once, naming the limit, though the body never comes
        const int fd = connect_from(port());
        ASSERT_TRUE(send_all(fd,
                             "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                             "Content-Length: 99999999999999\r\n\r\n{\"prompt\": \"a\"}"));
        const auto t0 = Clock::now();
        const std::string got = read_all(fd, 30);
        close(fd);
        EXPECT_NE(got.find("413 Payload Too Large"), std::string::npos) << got;
        EXPECT_NE(body_of(got)["error"]["message"].get<std::string>().find("1 MiB"),
                  std::string::npos)
            << got;
        EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 25);
    }
    {  // within the limit but short: 408 at the deadline, not a worker held
        const int fd = connect_from(port());
        ASSERT_TRUE(send_all(fd,
                             "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                             "Content-Length: 5000\r\n\r\n{\"prompt\": \"a\"}"));
        const std::string got = read_all(fd, 30);
        close(fd);
        EXPECT_NE(got.find("408"), std::string::npos) << got;
    }
    {  // a Content-Length that is not a number
        const int fd = connect_from(port());
        ASSERT_TRUE(send_all(fd,
                             "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                             "Content-Length: -1\r\n\r\n"));
        const std::string got = read_all(fd, 30);
        close(fd);
        EXPECT_NE(got.find("400"), std::string::npos) << got;
    }
    {  // headers that never end: 431 past the header limit
        const int fd = connect_from(port());
        std::string head = "GET /health HTTP/1.1\r\n";
        for (int i = 0; i < 70; i++) head += "X-Pad: " + std::string(1000, 'a') + "\r\n";
        send_all(fd, head);  // and never the blank line
        const std::string got = read_all(fd, 30);
        close(fd);
        EXPECT_NE(got.find("431"), std::string::npos) << got;
    }
}

TEST_F(ServeGuard, ExpectContinueIsAnsweredAndOverLimitBodiesAreNotAwaited) {
    ServerOptions o;
    o.max_body_bytes = 1 << 20;
    start(o);
    {
        const int fd = connect_from(port());
        const std::string req = post_request("/v1/completions", kSmall,
                                             "Expect: 100-continue\r\nConnection: close\r\n");
        const size_t head_end = req.find("\r\n\r\n") + 4;
        ASSERT_TRUE(send_all(fd, req.substr(0, head_end)));
        EXPECT_NE(read_all(fd, 30, "\r\n\r\n").find("100 Continue"), std::string::npos);
        ASSERT_TRUE(send_all(fd, req.substr(head_end)));
        const std::string got = read_all(fd, 30);
        close(fd);
        EXPECT_NE(got.find("200 OK"), std::string::npos) << got;
        EXPECT_EQ(got.find("100 Continue"), std::string::npos) << got;  // once, not twice
    }
    {
        const int fd = connect_from(port());
        ASSERT_TRUE(send_all(fd,
                             "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                             "Expect: 100-continue\r\nContent-Length: 2000000\r\n\r\n"));
        const std::string got = read_all(fd, 30);
        close(fd);
        EXPECT_NE(got.find("413"), std::string::npos) << got;
        EXPECT_EQ(got.find("100 Continue"), std::string::npos) << got;
    }
}

// ---- item 7: body limit and memory ----------------------------------------------------------

TEST_F(ServeGuard, BodiesOverTheLimitAnswer413NamingTheLimit) {
    ServerOptions o;
    o.max_body_bytes = 1 << 20;
    start(o);
    const std::string big = json{{"prompt", "a"}, {"pad", std::string(2 << 20, 'x')}}.dump();
    const auto [status, j] = post("/v1/completions", big);
    EXPECT_EQ(status, 413) << j;
    EXPECT_EQ(j["error"]["type"], "invalid_request_error") << j;
    EXPECT_NE(j["error"]["message"].get<std::string>().find("1 MiB"), std::string::npos) << j;
    EXPECT_NE(j["error"]["message"].get<std::string>().find("--max-body-mb"), std::string::npos);
    // Just under the limit is served.
    const std::string fits =
        json{{"prompt", "a"}, {"max_tokens", 1}, {"pad", std::string((1 << 20) - 100, 'x')}}.dump();
    EXPECT_EQ(post("/v1/completions", fits).first, 200);
    // A gzip body is limited by its inflated size (4 MB of zeros is a few KB compressed).
    FILE* p = popen("head -c 4000000 /dev/zero | gzip -c", "r");
    ASSERT_TRUE(p);
    std::string gz;
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) gz.append(buf, n);
    pclose(p);
    ASSERT_LT(gz.size(), 100000u);
    const int fd = connect_from(port());
    ASSERT_TRUE(send_all(fd, post_request("/v1/completions", gz, "Content-Encoding: gzip\r\n")));
    const std::string got = read_all(fd, 30, "}}");
    close(fd);
    EXPECT_NE(got.find("413"), std::string::npos) << got.substr(0, 300);
}

// A `crucible serve` process on an ephemeral port (its own address space, so that its
// resident memory is measured apart from the test's clients).
struct ServeProcess {
    pid_t pid = -1;
    int port = 0;
    ServeProcess(const fs::path& model, const fs::path& log) {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        std::vector<std::string> args = {CRUCIBLE_BINARY, "serve",  "--model",
                                         model.string(),  "--port", "0"};
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        if (posix_spawn(&pid, CRUCIBLE_BINARY, &actions, nullptr, argv.data(), environ) != 0)
            pid = -1;
        posix_spawn_file_actions_destroy(&actions);
        eventually([&] {
            const std::string text = testutil::slurp(log);
            const size_t at = text.find("http://127.0.0.1:");
            if (at != std::string::npos) port = std::atoi(text.c_str() + at + 17);
            return port > 0;
        });
    }
    ~ServeProcess() {
        if (pid <= 0) return;
        kill(pid, SIGTERM);
        int status = 0;
        waitpid(pid, &status, 0);
    }
    size_t resident_bytes() const {
        FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/statm").c_str(), "r");
        long pages = 0, rss = 0;
        if (f) {
            if (std::fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
            std::fclose(f);
        }
        return static_cast<size_t>(rss) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
    }
};

TEST(ServeGuardProcess, LargeBodiesLeaveNoResidentMemoryBehind) {
#ifdef CRUCIBLE_SANITIZED
    // AddressSanitizer keeps freed memory in quarantine, so resident memory does not fall back.
    GTEST_SKIP() << "resident memory is the sanitizer's in a sanitizer build";
#endif
    testutil::TempDir tmp;
    testutil::write_byte_model(tmp.path() / "m", kContext, 3);
    ServeProcess serve(tmp.path() / "m", tmp.path() / "serve.log");  // the default 8 MiB limit
    ASSERT_GT(serve.port, 0) << testutil::slurp(tmp.path() / "serve.log");
    auto post = [&](const std::string& body) {
        httplib::Client http("127.0.0.1", serve.port);
        http.set_read_timeout(120, 0);
        auto res = http.Post("/v1/completions", body, "application/json");
        return res ? res->status : -1;
    };
    // Bodies that are heavy to parse: ~7 MB of small integers (about 3.5 M JSON values).
    std::string pad;
    while (pad.size() < 7'000'000) pad += "1,";
    const std::string body =
        R"({"prompt": "a", "max_tokens": 1, "temperature": 0, "pad": [)" + pad + "1]}";
    ASSERT_LT(body.size(), size_t(8) << 20);
    EXPECT_EQ(post(kSmall), 200);
    const size_t before = serve.resident_bytes();
    for (int round = 0; round < 2; round++) {
        std::vector<std::future<int>> answers;
        for (int i = 0; i < 4; i++)
            answers.push_back(std::async(std::launch::async, [&] { return post(body); }));
        for (auto& a : answers) EXPECT_EQ(a.get(), 200);
    }
    // Four such bodies in flight take the server hundreds of MB up (the bytes, the body, the
    // parsed JSON); once they are answered (the memory is given back just after the answer)
    // what stays must be far less.
    size_t after = 0;
    EXPECT_TRUE(eventually(
        [&] {
            after = serve.resident_bytes();
            return after < before + (64u << 20);
        },
        20))
        << "before " << (before >> 20) << " MiB, after " << (after >> 20) << " MiB";
}

// ---- item 8: numbers at the edges, Content-Types, KV pool -----------------------------------

TEST_F(ServeGuard, MaxTokensNearIntMaxIsRefusedNotWrappedAround) {
    start();
    for (const char* max : {"2147483647", "2147483646", "2147483520"}) {
        const auto [status, j] =
            post("/v1/completions", std::string(R"({"prompt": "hi", "max_tokens": )") + max + "}");
        EXPECT_EQ(status, 400) << max << " " << j;
        EXPECT_EQ(j["error"]["code"], "context_length_exceeded") << j;
        EXPECT_NE(
            j["error"]["message"].get<std::string>().find(std::string("2 in the prompt, ") + max),
            std::string::npos)
            << j;
    }
    const auto [status, j] = post("/v1/chat/completions",
                                  R"({"messages": [{"role": "user", "content": "hi"}],
                                      "max_completion_tokens": 2147483647})");
    EXPECT_EQ(status, 400) << j;
    EXPECT_EQ(j["error"]["code"], "context_length_exceeded") << j;
}

TEST_F(ServeGuard, TinyPositiveTopPIsAcceptedAndKeepsTheMostLikelyToken) {
    start();
    const auto [s1, tiny] = post("/v1/completions",
                                 R"({"prompt": "ab", "max_tokens": 8, "top_p": 1e-300,
                                     "temperature": 1, "seed": 5})");
    ASSERT_EQ(s1, 200) << tiny;
    const auto [s2, greedy] =
        post("/v1/completions", R"({"prompt": "ab", "max_tokens": 8, "temperature": 0})");
    ASSERT_EQ(s2, 200) << greedy;
    EXPECT_EQ(tiny["choices"][0]["text"], greedy["choices"][0]["text"]);
    EXPECT_EQ(post("/v1/completions", R"({"prompt": "a", "top_p": 0})").first, 400);
    EXPECT_EQ(post("/v1/completions", R"({"prompt": "a", "top_p": -1e-300})").first, 400);
}

TEST_F(ServeGuard, AFormContentTypeBodyIsReadAsJson) {
    start();
    // curl -d sends application/x-www-form-urlencoded; httplib refused such bodies over 8 KB
    // with a bare "HTTP 413".
    const std::string body = json{{"prompt", "hi"},
                                  {"max_tokens", 2},
                                  {"temperature", 0},
                                  {"user", std::string(20000, 'u')}}
                                 .dump();
    const auto [status, j] = post("/v1/completions", body, "application/x-www-form-urlencoded");
    EXPECT_EQ(status, 200) << j;
    EXPECT_EQ(j["object"], "text_completion") << j;
    const auto [s2, j2] =
        post("/v1/completions", "--b\r\n\r\n--b--\r\n", "multipart/form-data; boundary=b");
    EXPECT_EQ(s2, 400) << j2;
    EXPECT_NE(j2["error"]["message"].get<std::string>().find("JSON"), std::string::npos) << j2;
}

TEST_F(ServeGuard, OneSequenceBatchServesARequestThatFillsTheContext) {
    ServerOptions o;
    o.max_batch_seqs = 1;
    start(o);
    // Prompt of 3 tokens + 125 = the whole context of 128; a prompt that is not a multiple of
    // the block size needs its copy-on-write block too.
    const auto [status, j] = post("/v1/completions",
                                  R"({"prompt": "abc", "max_tokens": 125, "ignore_eos": true,
                                      "temperature": 1, "seed": 1})");
    ASSERT_EQ(status, 200) << j;
    EXPECT_EQ(j["usage"]["completion_tokens"], 125);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
}

TEST_F(ServeGuard, EveryNumericFieldRefusesOutOfRangeValues) {
    start();
    struct Case {
        const char* field;
        const char* value;
    };
    const std::vector<Case> cases = {
        {"n", "0"},
        {"n", "-1"},
        {"n", "129"},
        {"n", "2.5"},
        {"n", "9223372036854775807"},
        {"n", "18446744073709551615"},
        {"n", "-9223372036854775808"},
        {"n", "1e300"},
        {"max_tokens", "0"},
        {"max_tokens", "-2147483648"},
        {"max_tokens", "2147483648"},
        {"max_tokens", "4294967297"},
        {"max_tokens", "1.0"},
        {"max_tokens", "18446744073709551615"},
        {"temperature", "-0.0001"},
        {"temperature", "2.0001"},
        {"temperature", "1e308"},
        {"temperature", "-1e-300"},
        {"temperature", "\"NaN\""},
        {"top_p", "1.0000001"},
        {"top_p", "0"},
        {"top_p", "-0.0"},
        {"top_k", "-2"},
        {"top_k", "100000"},
        {"top_k", "4294967296"},
        {"top_k", "0.5"},
        {"min_p", "-0.1"},
        {"min_p", "1.5"},
        {"logprobs", "-1"},
        {"logprobs", "21"},
        {"logprobs", "2147483648"},
        {"seed", "0.5"},
    };
    for (const Case& k : cases) {
        const std::string body =
            std::string(R"({"prompt": "a", "max_tokens": 1, ")") + k.field + "\": " + k.value + "}";
        const auto [status, j] = post("/v1/completions", body);
        EXPECT_EQ(status, 400) << body << " -> " << j;
        if (status == 400) {
            EXPECT_EQ(j["error"]["param"], k.field) << body << " -> " << j;
        }
    }
    // Not JSON numbers at all (NaN, Infinity, a number too large for a double).
    for (const char* v : {"NaN", "Infinity", "-Infinity", "1e99999"}) {
        const std::string body = std::string(R"({"prompt": "a", "temperature": )") + v + "}";
        EXPECT_EQ(post("/v1/completions", body).first, 400) << body;
    }
    // Chat's top_logprobs and max_completion_tokens.
    for (const char* extra :
         {R"("logprobs": true, "top_logprobs": 21)", R"("logprobs": true, "top_logprobs": -1)",
          R"("max_completion_tokens": -5)", R"("n": 1000000000000)"}) {
        const std::string body =
            std::string(R"({"messages": [{"role": "user", "content": "x"}], )") + extra + "}";
        EXPECT_EQ(post("/v1/chat/completions", body).first, 400) << body;
    }
}

}  // namespace
}  // namespace crucible

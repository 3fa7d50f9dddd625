// The OpenAI client against a real httplib::Server on 127.0.0.1 whose handlers each test
// scripts: what the client sends, how it parses OpenAI's documented response shapes, and its
// retry, timeout, error, concurrency and usage behaviour. No assertion depends on wall time.
#include "serve/openai_client.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "http_test_server.h"

namespace crucible {
namespace {

using nlohmann::json;
using testutil::TestServer;

// What the server saw, shared with the test thread.
struct Seen {
    std::mutex mutex;
    std::vector<std::string> bodies;
    std::vector<std::string> authorization;  // "" when the header was absent
    std::vector<std::string> content_type;
    void record(const httplib::Request& req) {
        std::lock_guard<std::mutex> lock(mutex);
        bodies.push_back(req.body);
        authorization.push_back(req.get_header_value("Authorization"));
        content_type.push_back(req.get_header_value("Content-Type"));
    }
    size_t count() {
        std::lock_guard<std::mutex> lock(mutex);
        return bodies.size();
    }
};

// Options for tests: no waiting between attempts; the delays chosen are recorded instead.
struct Delays {
    std::mutex mutex;
    std::vector<double> values;
};
ClientOptions test_options(const std::string& base_url, Delays* delays = nullptr) {
    ClientOptions o;
    o.base_url = base_url;
    o.api_key_env = "CRUCIBLE_TEST_NO_SUCH_KEY";
    o.timeout_s = 5;
    o.max_retries = 4;
    o.backoff_initial_s = 0.5;
    o.backoff_max_s = 8;
    o.seed = 7;
    o.sleep_fn = [delays](double s) {
        if (!delays) return;
        std::lock_guard<std::mutex> lock(delays->mutex);
        delays->values.push_back(s);
    };
    return o;
}

// GCC warns on designated initializers that leave members out, so requests are built here.
CompletionRequest completion_request(const std::string& model, const std::string& prompt) {
    CompletionRequest r;
    r.model = model;
    r.prompt = prompt;
    return r;
}
ChatRequest chat_request(const std::string& model, const std::string& user) {
    ChatRequest r;
    r.model = model;
    r.messages = {{"user", user}};
    return r;
}
ClientOptions url_only(const std::string& base_url) {
    ClientOptions o;
    o.base_url = base_url;
    return o;
}

// Shaped exactly like OpenAI's documented responses.
const char* kCompletionResponse = R"({
  "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7",
  "object": "text_completion",
  "created": 1589478378,
  "model": "gpt-3.5-turbo-instruct",
  "system_fingerprint": "fp_44709d6fcb",
  "choices": [
    {"text": "\n\nThis is indeed a test", "index": 0, "logprobs": null, "finish_reason": "length"}
  ],
  "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
})";

const char* kChatResponse = R"({
  "id": "chatcmpl-123",
  "object": "chat.completion",
  "created": 1677652288,
  "model": "gpt-4o-mini",
  "system_fingerprint": "fp_44709d6fcb",
  "choices": [{
    "index": 0,
    "message": {"role": "assistant", "content": "\n\nHello there, how may I assist you today?"},
    "logprobs": null,
    "finish_reason": "stop"
  }],
  "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
            "completion_tokens_details": {"reasoning_tokens": 0}}
})";

const char* kChatLogprobsResponse = R"({
  "id": "chatcmpl-123", "object": "chat.completion", "created": 1702685778, "model": "gpt-4o",
  "choices": [{
    "index": 0,
    "message": {"role": "assistant", "content": "Hello! How"},
    "logprobs": {"content": [
      {"token": "Hello", "logprob": -0.31725305, "bytes": [72, 101, 108, 108, 111],
       "top_logprobs": [{"token": "Hello", "logprob": -0.31725305, "bytes": [72, 101, 108, 108, 111]},
                        {"token": "Hi", "logprob": -1.3190403, "bytes": [72, 105]}]},
      {"token": "!", "logprob": -0.02380986, "bytes": [33],
       "top_logprobs": [{"token": "!", "logprob": -0.02380986, "bytes": [33]},
                        {"token": " there", "logprob": -3.787621, "bytes": [32, 116, 104, 101, 114, 101]}]},
      {"token": " How", "logprob": -0.000054669687, "bytes": [32, 72, 111, 119], "top_logprobs": []}
    ]},
    "finish_reason": "length"
  }],
  "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
})";

const char* kCompletionLogprobsResponse = R"({
  "id": "cmpl-7", "object": "text_completion", "created": 1589478378, "model": "m",
  "choices": [
    {"text": " yes", "index": 1, "finish_reason": "stop",
     "logprobs": {"tokens": [" yes"], "token_logprobs": [-0.5], "text_offset": [0],
                  "top_logprobs": [{" no": -2.0, " yes": -0.5}]}},
    {"text": " no", "index": 0, "finish_reason": "length", "logprobs": null}
  ],
  "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
})";

const char* kErrorBody = R"({"error": {"message": "Invalid value for 'temperature': must be <= 2.",
  "type": "invalid_request_error", "param": "temperature", "code": null}})";

TEST(OpenAIClient, SendsRequestBodyAndHeaders) {
    TestServer server;
    Seen seen;
    server.http().Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
        seen.record(req);
        res.set_content(kCompletionResponse, "application/json");
    });
    server.http().Post("/v1/chat/completions",
                       [&](const httplib::Request& req, httplib::Response& res) {
                           seen.record(req);
                           res.set_content(kChatResponse, "application/json");
                       });
    ::setenv("CRUCIBLE_TEST_API_KEY", "sk-test-123", 1);
    ClientOptions options = test_options(server.base_url() + "/");  // a trailing slash is fine
    options.api_key_env = "CRUCIBLE_TEST_API_KEY";
    OpenAIClient client(options);
    ::unsetenv("CRUCIBLE_TEST_API_KEY");  // read at construction, not per request

    CompletionRequest c;
    c.model = "m1";
    c.prompt = "Say this is a test";
    c.max_tokens = 7;
    c.temperature = 0.5;
    c.top_p = 0.9;
    c.n = 2;
    c.stop = {"\n", "END"};
    c.seed = 42;
    c.logprobs = 3;
    c.extra = {{"echo", false}, {"top_p", nullptr}};  // adds one field, removes another
    client.complete(c);

    ChatRequest chat;
    chat.model = "m2";
    chat.messages = {{"system", "Be brief."}, {"user", "Hi"}};
    chat.max_tokens = 5;
    chat.top_logprobs = 2;
    client.chat(chat);

    ASSERT_EQ(seen.count(), 2u);
    EXPECT_EQ(seen.authorization[0], "Bearer sk-test-123");
    EXPECT_EQ(seen.authorization[1], "Bearer sk-test-123");
    EXPECT_EQ(seen.content_type[0], "application/json");
    EXPECT_EQ(json::parse(seen.bodies[0]), json::parse(R"({"model": "m1",
        "prompt": "Say this is a test", "max_tokens": 7, "temperature": 0.5, "n": 2,
        "stop": ["\n", "END"], "seed": 42, "logprobs": 3, "echo": false})"));
    EXPECT_EQ(json::parse(seen.bodies[1]), json::parse(R"({"model": "m2",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 5, "temperature": 1.0, "top_p": 1.0, "n": 1,
        "logprobs": true, "top_logprobs": 2})"));
}

TEST(OpenAIClient, NoAuthorizationWithoutKey) {
    TestServer server;
    Seen seen;
    server.http().Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
        seen.record(req);
        res.set_content(kCompletionResponse, "application/json");
    });
    OpenAIClient client(test_options(server.base_url()));
    client.complete(completion_request("m", "p"));
    ASSERT_EQ(seen.count(), 1u);
    EXPECT_EQ(seen.authorization[0], "");
}

TEST(OpenAIClient, ParsesCompletionAndChat) {
    TestServer server;
    server.http().Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(kCompletionResponse, "application/json");
    });
    server.http().Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(kChatResponse, "application/json");
    });
    OpenAIClient client(test_options(server.base_url()));

    const CompletionResult c = client.complete(completion_request("m", "p"));
    EXPECT_EQ(c.id, "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7");
    EXPECT_EQ(c.model, "gpt-3.5-turbo-instruct");
    ASSERT_EQ(c.choices.size(), 1u);
    EXPECT_EQ(c.choices[0].text, "\n\nThis is indeed a test");
    EXPECT_EQ(c.choices[0].finish_reason, "length");
    EXPECT_FALSE(c.choices[0].logprobs.has_value());
    EXPECT_EQ(c.usage.prompt_tokens, 5);
    EXPECT_EQ(c.usage.completion_tokens, 7);

    const ChatResult r = client.chat(chat_request("m", "Hello!"));
    EXPECT_EQ(r.id, "chatcmpl-123");
    ASSERT_EQ(r.choices.size(), 1u);
    EXPECT_EQ(r.choices[0].text, "\n\nHello there, how may I assist you today?");
    EXPECT_EQ(r.choices[0].finish_reason, "stop");
    EXPECT_EQ(r.usage.prompt_tokens, 9);
    EXPECT_EQ(r.usage.completion_tokens, 12);
}

TEST(OpenAIClient, ParsesLogprobs) {
    TestServer server;
    server.http().Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(kCompletionLogprobsResponse, "application/json");
    });
    server.http().Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(kChatLogprobsResponse, "application/json");
    });
    OpenAIClient client(test_options(server.base_url()));

    const ChatResult r = client.chat(chat_request("m", "Hi"));
    ASSERT_EQ(r.choices.size(), 1u);
    ASSERT_TRUE(r.choices[0].logprobs.has_value());
    const std::vector<TokenTextLogprob>& lp = *r.choices[0].logprobs;
    ASSERT_EQ(lp.size(), 3u);
    EXPECT_EQ(lp[0].token, "Hello");
    EXPECT_DOUBLE_EQ(lp[0].logprob, -0.31725305);
    ASSERT_EQ(lp[0].top.size(), 2u);
    EXPECT_EQ(lp[0].top[1].first, "Hi");
    EXPECT_DOUBLE_EQ(lp[0].top[1].second, -1.3190403);
    EXPECT_EQ(lp[1].top[1].first, " there");
    EXPECT_TRUE(lp[2].top.empty());

    // Choices come back in index order; a completions top_logprobs dict is sorted by logprob.
    CompletionRequest request = completion_request("m", "p");
    request.logprobs = 2;
    const CompletionResult c = client.complete(request);
    ASSERT_EQ(c.choices.size(), 2u);
    EXPECT_EQ(c.choices[0].text, " no");
    EXPECT_FALSE(c.choices[0].logprobs.has_value());
    ASSERT_TRUE(c.choices[1].logprobs.has_value());
    const std::vector<TokenTextLogprob>& clp = *c.choices[1].logprobs;
    ASSERT_EQ(clp.size(), 1u);
    EXPECT_EQ(clp[0].token, " yes");
    EXPECT_DOUBLE_EQ(clp[0].logprob, -0.5);
    ASSERT_EQ(clp[0].top.size(), 2u);
    EXPECT_EQ(clp[0].top[0].first, " yes");
    EXPECT_EQ(clp[0].top[1].first, " no");
    EXPECT_DOUBLE_EQ(clp[0].top[1].second, -2.0);
}

TEST(OpenAIClient, ListsModels) {
    TestServer server;
    server.http().Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(R"({"object": "list", "data": [
            {"id": "model-id-0", "object": "model", "created": 1686935002, "owned_by": "org-0"},
            {"id": "model-id-1", "object": "model", "created": 1686935002, "owned_by": "org-1"}]})",
                        "application/json");
    });
    OpenAIClient client(test_options(server.base_url()));
    EXPECT_EQ(client.models(), (std::vector<std::string>{"model-id-0", "model-id-1"}));
}

TEST(OpenAIClient, RetriesRateLimitHonouringRetryAfter) {
    TestServer server;
    std::atomic<int> hits{0};
    server.http().Post("/v1/completions", [&](const httplib::Request&, httplib::Response& res) {
        const int n = hits++;
        if (n < 2) {
            res.status = 429;
            res.set_header("Retry-After", n == 0 ? "3" : "30");  // the second exceeds the cap
            res.set_content(R"({"error": {"message": "Rate limit reached", "type": "requests"}})",
                            "application/json");
            return;
        }
        res.set_content(kCompletionResponse, "application/json");
    });
    Delays delays;
    OpenAIClient client(test_options(server.base_url(), &delays));
    const CompletionResult c = client.complete(completion_request("m", "p"));
    EXPECT_EQ(c.choices.at(0).text, "\n\nThis is indeed a test");
    EXPECT_EQ(hits.load(), 3);
    EXPECT_EQ(delays.values, (std::vector<double>{3.0, 8.0}));
    const ClientUsage u = client.usage();
    EXPECT_EQ(u.requests, 1);
    EXPECT_EQ(u.retries, 2);
    EXPECT_EQ(u.failures, 0);
    EXPECT_EQ(u.prompt_tokens, 5);
    EXPECT_EQ(u.completion_tokens, 7);
}

TEST(OpenAIClient, RetriesServerErrorsWithSeededJitteredBackoff) {
    TestServer server;
    std::atomic<int> hits{0};
    server.http().Post(
        "/v1/chat/completions", [&](const httplib::Request&, httplib::Response& res) {
            if (hits++ % 3 < 2) {
                res.status = 500;
                res.set_content(R"({"error": {"message": "internal", "type": "server_error"}})",
                                "application/json");
                return;
            }
            res.set_content(kChatResponse, "application/json");
        });
    Delays first, second;
    const ChatRequest request = chat_request("m", "Hi");
    {
        OpenAIClient client(test_options(server.base_url(), &first));
        EXPECT_EQ(client.chat(request).choices.at(0).finish_reason, "stop");
        EXPECT_EQ(client.usage().retries, 2);
        EXPECT_EQ(client.usage().failures, 0);
    }
    EXPECT_EQ(hits.load(), 3);
    {
        OpenAIClient client(test_options(server.base_url(), &second));
        client.chat(request);
    }
    // Exponential with "equal jitter": attempt k waits in [0.5, 1] x 0.5 x 2^k; same seed,
    // same delays.
    ASSERT_EQ(first.values.size(), 2u);
    EXPECT_GE(first.values[0], 0.25);
    EXPECT_LE(first.values[0], 0.5);
    EXPECT_GE(first.values[1], 0.5);
    EXPECT_LE(first.values[1], 1.0);
    EXPECT_EQ(first.values, second.values);
}

TEST(OpenAIClient, ClientErrorIsNotRetriedAndNamesStatusAndMessage) {
    TestServer server;
    std::atomic<int> hits{0};
    server.http().Post("/v1/chat/completions",
                       [&](const httplib::Request&, httplib::Response& res) {
                           ++hits;
                           res.status = 400;
                           res.set_content(kErrorBody, "application/json");
                       });
    OpenAIClient client(test_options(server.base_url()));
    try {
        ChatRequest request = chat_request("m", "Hi");
        request.temperature = 9;
        client.chat(request);
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find(server.base_url() + "/chat/completions"), std::string::npos)
            << message;
        EXPECT_NE(message.find("400"), std::string::npos) << message;
        EXPECT_NE(message.find("Invalid value for 'temperature': must be <= 2."), std::string::npos)
            << message;
        EXPECT_NE(message.find("invalid_request_error"), std::string::npos) << message;
    }
    EXPECT_EQ(hits.load(), 1);
    const ClientUsage u = client.usage();
    EXPECT_EQ(u.requests, 1);
    EXPECT_EQ(u.retries, 0);
    EXPECT_EQ(u.failures, 1);
}

TEST(OpenAIClient, ReadTimeoutIsAnErrorAfterRetries) {
    TestServer server;
    std::mutex mutex;
    std::condition_variable cv;
    bool released = false;
    std::atomic<int> hits{0};
    server.http().Post("/v1/completions", [&](const httplib::Request&, httplib::Response& res) {
        ++hits;
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait_for(lock, std::chrono::seconds(3), [&] { return released; });
        res.set_content(kCompletionResponse, "application/json");
    });
    ClientOptions options = test_options(server.base_url());
    options.timeout_s = 0.3;
    options.max_retries = 1;
    OpenAIClient client(options);
    try {
        client.complete(completion_request("m", "p"));
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("timed out"), std::string::npos) << message;
        EXPECT_NE(message.find("after 2 attempts"), std::string::npos) << message;
    }
    {
        std::lock_guard<std::mutex> lock(mutex);
        released = true;
    }
    cv.notify_all();
    EXPECT_EQ(hits.load(), 2);
    EXPECT_EQ(client.usage().retries, 1);
    EXPECT_EQ(client.usage().failures, 1);
}

TEST(OpenAIClient, ConnectionRefusedIsAnErrorAfterRetries) {
    // A port that was free a moment ago and has no listener.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    const int port = ntohs(addr.sin_port);
    ::close(fd);

    Delays delays;
    ClientOptions options =
        test_options("http://127.0.0.1:" + std::to_string(port) + "/v1", &delays);
    options.max_retries = 2;
    OpenAIClient client(options);
    try {
        client.models();
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("GET http://127.0.0.1:" + std::to_string(port) + "/v1/models"),
                  std::string::npos)
            << message;
        EXPECT_NE(message.find("could not connect"), std::string::npos) << message;
        EXPECT_NE(message.find("after 3 attempts"), std::string::npos) << message;
    }
    EXPECT_EQ(delays.values.size(), 2u);
    EXPECT_EQ(client.usage().requests, 1);
    EXPECT_EQ(client.usage().retries, 2);
    EXPECT_EQ(client.usage().failures, 1);
}

TEST(OpenAIClient, ConcurrencyLimitAndUsageTotalsAcrossThreads) {
    TestServer server;
    std::atomic<int> in_flight{0}, most{0}, hits{0};
    server.http().Post("/v1/chat/completions",
                       [&](const httplib::Request&, httplib::Response& res) {
                           ++hits;
                           const int now = ++in_flight;
                           int seen = most.load();
                           while (now > seen && !most.compare_exchange_weak(seen, now)) {
                           }
                           std::this_thread::sleep_for(std::chrono::milliseconds(20));
                           --in_flight;
                           res.set_content(kChatResponse, "application/json");
                       });
    ClientOptions options = test_options(server.base_url());
    options.max_concurrency = 3;
    OpenAIClient client(options);
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int t = 0; t < 16; ++t)
        threads.emplace_back([&] {
            if (client.chat(chat_request("m", "Hi")).choices.size() == 1) ++ok;
        });
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(ok.load(), 16);
    EXPECT_EQ(hits.load(), 16);
    EXPECT_GE(most.load(), 1);
    EXPECT_LE(most.load(), 3);
    const ClientUsage u = client.usage();
    EXPECT_EQ(u.requests, 16);
    EXPECT_EQ(u.prompt_tokens, 16 * 9);
    EXPECT_EQ(u.completion_tokens, 16 * 12);
    EXPECT_EQ(u.retries, 0);
    EXPECT_EQ(u.failures, 0);
}

TEST(OpenAIClient, StreamsChatChunks) {
    // OpenAI's documented chunk stream, then a usage-only chunk (stream_options.include_usage).
    const std::string sse =
        R"(data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]})"
        "\n\n"
        R"(data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]})"
        "\r\n\r\n: a comment line\n\n"
        R"(data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":null}]})"
        "\n\n"
        R"(data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]})"
        "\n\n"
        R"(data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}})"
        "\n\n"
        "data: [DONE]\n\n";
    TestServer server;
    Seen seen;
    server.http().Post("/v1/chat/completions",
                       [&](const httplib::Request& req, httplib::Response& res) {
                           seen.record(req);
                           res.set_chunked_content_provider(
                               "text/event-stream", [sse](size_t offset, httplib::DataSink& sink) {
                                   // Odd-sized pieces, so events and lines straddle reads.
                                   if (offset < sse.size()) {
                                       const size_t n = std::min<size_t>(37, sse.size() - offset);
                                       sink.write(sse.data() + offset, n);
                                   } else {
                                       sink.done();
                                   }
                                   return true;
                               });
                       });
    OpenAIClient client(test_options(server.base_url()));
    std::vector<ChatDelta> deltas;
    const ChatResult r = client.chat_stream(chat_request("m", "Hi"),
                                            [&](const ChatDelta& d) { deltas.push_back(d); });
    ASSERT_EQ(deltas.size(), 3u);
    EXPECT_EQ(deltas[0].content, "Hello");
    EXPECT_EQ(deltas[1].content, " there");
    EXPECT_EQ(deltas[2].content, "");
    EXPECT_EQ(deltas[2].finish_reason, "stop");
    EXPECT_EQ(r.id, "chatcmpl-123");
    ASSERT_EQ(r.choices.size(), 1u);
    EXPECT_EQ(r.choices[0].text, "Hello there");
    EXPECT_EQ(r.choices[0].finish_reason, "stop");
    EXPECT_EQ(r.usage.prompt_tokens, 9);
    EXPECT_EQ(r.usage.completion_tokens, 2);
    EXPECT_EQ(client.usage().completion_tokens, 2);

    ASSERT_EQ(seen.count(), 1u);
    const json body = json::parse(seen.bodies[0]);
    EXPECT_EQ(body["stream"], true);
    EXPECT_EQ(body["stream_options"]["include_usage"], true);
}

TEST(OpenAIClient, StreamErrorStatusAndCallbackExceptions) {
    TestServer server;
    std::atomic<int> hits{0};
    server.http().Post("/v1/chat/completions", [&](const httplib::Request& req,
                                                   httplib::Response& res) {
        ++hits;
        if (json::parse(req.body)["model"] == "bad") {
            res.status = 404;
            res.set_content(
                R"({"error": {"message": "The model `bad` does not exist", "type": "invalid_request_error"}})",
                "application/json");
            return;
        }
        res.set_content(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n"
            "data: [DONE]\n\n",
            "text/event-stream");
    });
    OpenAIClient client(test_options(server.base_url()));
    try {
        client.chat_stream(chat_request("bad", "Hi"), [](const ChatDelta&) {});
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("404"), std::string::npos) << message;
        EXPECT_NE(message.find("does not exist"), std::string::npos) << message;
    }
    EXPECT_EQ(hits.load(), 1);
    // The callback's own exception comes back unchanged.
    EXPECT_THROW(client.chat_stream(chat_request("ok", "Hi"),
                                    [](const ChatDelta&) { throw std::logic_error("stop"); }),
                 std::logic_error);
    EXPECT_EQ(client.usage().requests, 2);
    EXPECT_EQ(client.usage().failures, 2);
}

TEST(OpenAIClient, RejectsMalformedBaseUrl) {
    EXPECT_THROW(OpenAIClient(url_only("127.0.0.1:8000/v1")), Error);
    EXPECT_THROW(OpenAIClient(url_only("ftp://example.com/v1")), Error);
    EXPECT_THROW(OpenAIClient(url_only("http:///v1")), Error);
    EXPECT_NO_THROW(OpenAIClient(url_only("https://api.openai.com/v1")));
}

TEST(OpenAIClient, NonJsonSuccessIsAnError) {
    TestServer server;
    server.http().Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("<html>proxy says hi</html>", "text/html");
    });
    OpenAIClient client(test_options(server.base_url()));
    EXPECT_THROW(client.complete(completion_request("m", "p")), Error);
    EXPECT_EQ(client.usage().failures, 1);
}

}  // namespace
}  // namespace crucible

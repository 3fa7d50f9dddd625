// The server's HTTP front: one event-loop thread owns every connection while a request is
// being received, and hands only complete requests to a pool of worker threads.
//
// cpp-httplib gives each connection a pool thread from accept to close, and its read timeout
// is per read() call: a client sending one header byte a second holds a thread for as long as
// it likes, and enough of them starve the server. Here a connection costs no thread while its
// request arrives: the loop reads with non-blocking sockets, frames the request itself
// (headers, Content-Length or chunked body), enforces a total deadline for headers and body
// and the size limits, and only then gives the buffered bytes to a worker, which runs
// httplib's own request processing (routing, handlers, response writing, streaming) over
// them. Between requests of a keep-alive connection the socket goes back to the loop. The
// loop answers a few fixed GET paths (the health check) itself, so they answer while every
// worker is busy. Limits and what they cover: docs/SERVING.md.
#pragma once

#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace crucible {

struct HttpLimits {
    double request_timeout_s = 30;           // first byte of a request to its last body byte
    double keepalive_timeout_s = 5;          // an idle connection waiting for its next request
    double write_timeout_s = 10;             // one write to a client that does not read
    size_t max_body_bytes = 8 << 20;         // request body (decoded chunked / gzip size); else 413
    size_t max_header_bytes = 64 << 10;      // request line and headers; else 431
    size_t max_buffered_bytes = 512u << 20;  // all requests being received or processed
    int max_connections = 1024;              // open connections, all clients
    int max_connections_per_client = 128;    // open connections from one address
    int max_requests_per_connection = 1000;  // then the connection is closed after the answer
    int workers = 64;                        // requests processed at once (a stream holds one)
};

// A JSON error body for an answer the front writes itself (status, message).
using HttpErrorBody = std::function<std::string(int status, const std::string& message)>;

class HttpFront : public httplib::Server {
  public:
    explicit HttpFront(HttpLimits limits, HttpErrorBody error_body);
    ~HttpFront() override;

    // Binds host:port (0: an ephemeral port) and listens. Returns the bound port, or -1 with
    // the reason in *why (when given): the resolver's or the last bind/listen error.
    int bind_and_listen(const std::string& host, int port, std::string* why = nullptr);
    // `GET path` (query ignored) answered by the loop itself with 200 and this body.
    void answer_on_loop(const std::string& path, std::string json_body);
    // Runs the loop until shutdown(); then stops accepting, closes connections that are idle
    // or still sending a request, lets every request being processed finish and returns.
    void serve();
    // Makes serve() drain and return. Thread-safe; may be called before serve().
    void shutdown();
    const HttpLimits& limits() const { return limits_; }

    // Counters for tests and logs (any thread).
    struct Counters {
        int64_t accepted = 0;
        int64_t refused_per_client = 0;  // over max_connections_per_client (429)
        int64_t refused_total = 0;       // over max_connections or max_buffered_bytes (503)
        int64_t timed_out = 0;           // request deadline passed (408)
        int64_t too_large = 0;           // body or headers over the limit (413, 431)
        int open = 0;                    // connections open now
    };
    Counters counters() const;

  private:
    struct Loop;
    friend struct Loop;
    HttpLimits limits_;
    HttpErrorBody error_body_;
    std::map<std::string, std::string> loop_answers_;
    std::unique_ptr<Loop> loop_;
};

}  // namespace crucible

#include "serve/http_front.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/strings.h"
#include "core/unique_fd.h"

namespace crucible {

namespace {

using Clock = std::chrono::steady_clock;

Clock::duration seconds(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// HTTP's optional whitespace (RFC 9110 OWS) is spaces and tabs only.
std::string trim_ows(std::string_view s) {
    return trim(s, " \t");
}

void address_of(const sockaddr_storage& a, std::string& ip, int& port) {
    char buf[INET6_ADDRSTRLEN] = {0};
    if (a.ss_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
        inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
        port = ntohs(in->sin_port);
    } else if (a.ss_family == AF_INET6) {
        const auto* in = reinterpret_cast<const sockaddr_in6*>(&a);
        inet_ntop(AF_INET6, &in->sin6_addr, buf, sizeof buf);
        port = ntohs(in->sin6_port);
    }
    ip = buf;
    // An IPv4 client on a dual-stack socket is the same client as over IPv4.
    if (ip.rfind("::ffff:", 0) == 0 && ip.find('.') != std::string::npos) ip = ip.substr(7);
}

const char* reason(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 400:
            return "Bad Request";
        case 408:
            return "Request Timeout";
        case 413:
            return "Payload Too Large";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 501:
            return "Not Implemented";
        case 503:
            return "Service Unavailable";
        default:
            return "Error";
    }
}

// One request's bytes, framed by the loop, replayed to httplib; answers go to the socket.
// httplib never reads past what the loop framed, so a request cannot reach into the next.
class BufferedStream : public httplib::Stream {
  public:
    BufferedStream(int fd, const std::string& bytes, const std::string& ip, int port,
                   double write_timeout_s)
        : fd_(fd), bytes_(bytes), ip_(ip), port_(port), write_timeout_(seconds(write_timeout_s)) {}

    bool is_readable() const override { return pos_ < bytes_.size(); }
    // Writable within the write timeout, and the client has not closed its side.
    bool is_writable() const override {
        if (!wait_writable(Clock::now() + write_timeout_)) return false;
        char c;
        const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
    }
    ssize_t read(char* ptr, size_t size) override {
        size = std::min(size, bytes_.size() - pos_);
        std::memcpy(ptr, bytes_.data() + pos_, size);
        pos_ += size;
        return static_cast<ssize_t>(size);
    }
    // All of it within the write timeout, or -1.
    ssize_t write(const char* ptr, size_t size) override {
        const Clock::time_point deadline = Clock::now() + write_timeout_;
        size_t done = 0;
        while (done < size) {
            const ssize_t n = ::send(fd_, ptr + done, size - done, MSG_NOSIGNAL);
            if (n > 0) {
                done += static_cast<size_t>(n);
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!wait_writable(deadline)) return -1;
            } else {
                return -1;
            }
        }
        return static_cast<ssize_t>(size);
    }
    void get_remote_ip_and_port(std::string& ip, int& port) const override {
        ip = ip_;
        port = port_;
    }
    void get_local_ip_and_port(std::string& ip, int& port) const override {
        sockaddr_storage a{};
        socklen_t len = sizeof a;
        ip.clear();
        port = 0;
        if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) address_of(a, ip, port);
    }
    socket_t socket() const override { return fd_; }

  private:
    bool wait_writable(Clock::time_point deadline) const {
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            pollfd p{fd_, POLLOUT, 0};
            const int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
            if (r < 0 && errno == EINTR) continue;
            return r > 0 && (p.revents & POLLOUT) && !(p.revents & (POLLERR | POLLNVAL));
        }
    }
    int fd_;
    const std::string& bytes_;
    size_t pos_ = 0;
    std::string ip_;
    int port_;
    Clock::duration write_timeout_;
};

}  // namespace

struct HttpFront::Loop {
    enum class State { idle, reading, busy, draining };
    // Where the loop is in the framing of a connection's current request.
    struct Framing {
        size_t scan = 0;        // "\n\r\n" searched up to here
        size_t header_end = 0;  // 0: headers not complete
        int64_t content_length = -1;
        bool chunked = false;
        bool expect = false;  // Expect: 100-continue (answered here, removed for httplib)
        bool sent_continue = false;
        bool close = false;  // the client asked to close after the answer
        std::string loop_answer;
        std::vector<std::pair<size_t, size_t>> strip;  // header lines httplib must not see
        size_t chunk_pos = 0;
        uint64_t decoded = 0;
        bool trailers = false;
    };
    struct Conn {
        UniqueFd fd;  // closing it also takes it out of the epoll set
        std::string ip;
        int port = 0;
        State state = State::idle;
        Clock::time_point deadline;
        std::string in;  // received, not yet handed to a worker
        Framing f;
        int requests = 0;
        size_t busy_bytes = 0;  // held by the worker processing its request
        bool eof = false;       // the client has closed its side: answer what came, then close
    };
    struct Job {
        int fd;
        std::string bytes;
        std::string ip;
        int port;
        bool close;
    };
    struct Outcome {
        int fd;
        bool keep;
    };

    HttpFront& front;
    const HttpLimits& lim;
    UniqueFd listen_fd;
    UniqueFd epoll_fd;
    UniqueFd wake_fd;
    std::atomic<bool> stopping{false};
    std::unordered_map<int, Conn> conns;
    std::unordered_map<std::string, int> per_client;
    size_t buffered = 0;
    bool accept_paused = false;
    Clock::time_point accept_resume;

    // Workers: long-lived threads fed by the loop through `jobs` for the life of the server
    // (not core/worker_pool's run_parallel, which runs a batch known in advance and returns).
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Job> jobs;
    std::vector<Outcome> outcomes;
    bool workers_quit = false;
    std::vector<std::thread> workers;
    int busy = 0;  // loop thread only

    mutable std::mutex counters_mu;
    Counters counters;

    Loop(HttpFront& f, const HttpLimits& l) : front(f), lim(l) {
        epoll_fd.reset(::epoll_create1(EPOLL_CLOEXEC));
        wake_fd.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    }

    void count(int64_t Counters::*field) {
        std::lock_guard<std::mutex> lock(counters_mu);
        counters.*field += 1;
    }
    void set_open() {
        std::lock_guard<std::mutex> lock(counters_mu);
        counters.open = static_cast<int>(conns.size());
    }
    void wake() {
        const uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = ::write(wake_fd.get(), &one, sizeof one);
    }
    void watch(int fd, bool on) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.fd = fd;
        ::epoll_ctl(epoll_fd.get(), on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, on ? &ev : nullptr);
    }

    std::string response(int status, const std::string& body, bool close) {
        std::string r =
            "HTTP/1.1 " + std::to_string(status) + " " + reason(status) +
            "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\n";
        if (status == 429 || status == 503) r += "Retry-After: 1\r\n";
        r += close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n";
        return r + body;
    }
    // Writes what the socket takes now; true when all of it went.
    static bool send_now(int fd, const std::string& s) {
        size_t done = 0;
        while (done < s.size()) {
            const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
            if (n > 0) {
                done += static_cast<size_t>(n);
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else {
                return false;
            }
        }
        return true;
    }

    void close_conn(int fd) {
        const auto it = conns.find(fd);
        if (it == conns.end()) return;
        Conn& c = it->second;
        buffered -= c.in.size() + c.busy_bytes;
        if (--per_client[c.ip] <= 0) per_client.erase(c.ip);
        conns.erase(it);  // closes the socket (which also leaves the epoll set)
        set_open();
    }
    // An error answer, then the connection is closed: its write side at once, and after a
    // short time reading (and dropping) what the client still sends, so that the answer is
    // not lost to a reset.
    void refuse(Conn& c, int status, const std::string& message) {
        if (status == 408) count(&Counters::timed_out);
        if (status == 413 || status == 431) count(&Counters::too_large);
        send_now(c.fd.get(), response(status, front.error_body_(status, message), true));
        ::shutdown(c.fd.get(), SHUT_WR);
        buffered -= c.in.size();
        c.in = std::string();
        c.state = State::draining;
        c.deadline = Clock::now() + std::chrono::seconds(1);
    }

    std::string limit_text(size_t bytes) {
        if (bytes % (1 << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
        return std::to_string(bytes) + " bytes";
    }

    void accept_all() {
        for (int i = 0; i < 256; i++) {
            sockaddr_storage a{};
            socklen_t len = sizeof a;
            const int fd = ::accept4(listen_fd.get(), reinterpret_cast<sockaddr*>(&a), &len,
                                     SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    // Out of descriptors: stop accepting for a moment rather than spin.
                    watch(listen_fd.get(), false);
                    accept_paused = true;
                    accept_resume = Clock::now() + std::chrono::milliseconds(100);
                }
                return;
            }
            const int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            Conn c;
            c.fd.reset(fd);
            address_of(a, c.ip, c.port);
            if ((int)conns.size() >= lim.max_connections) {
                count(&Counters::refused_total);
                send_now(fd,
                         response(503,
                                  front.error_body_(503, "The server has " +
                                                             std::to_string(lim.max_connections) +
                                                             " connections open. Retry "
                                                             "later."),
                                  true));
                continue;  // `c` closes the socket
            }
            count(&Counters::accepted);
            const int mine = ++per_client[c.ip];
            c.deadline = Clock::now() + seconds(lim.keepalive_timeout_s);
            const std::string ip = c.ip;
            Conn& in = conns.emplace(fd, std::move(c)).first->second;
            watch(fd, true);
            set_open();
            if (mine > lim.max_connections_per_client) {
                count(&Counters::refused_per_client);
                refuse(in, 429,
                       "Too many connections from " + ip + ": at most " +
                           std::to_string(lim.max_connections_per_client) +
                           " at once. Retry later.");
            }
        }
    }

    // Reads what a connection has sent, then frames it.
    void on_readable(Conn& c) {
        const int fd = c.fd.get();  // `c` is gone once the connection is closed
        char buf[64 << 10];
        size_t got = 0;
        bool eof = false;
        while (got < (1u << 20)) {
            const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
            if (n > 0) {
                got += static_cast<size_t>(n);
                if (c.state == State::draining) continue;
                if (c.state == State::idle) {
                    c.state = State::reading;
                    c.deadline = Clock::now() + seconds(lim.request_timeout_s);
                }
                if (buffered + static_cast<size_t>(n) > lim.max_buffered_bytes) {
                    count(&Counters::refused_total);
                    refuse(c, 503,
                           "The server is receiving too many request bytes at once. Retry "
                           "later.");
                    continue;
                }
                c.in.append(buf, static_cast<size_t>(n));
                buffered += static_cast<size_t>(n);
                if (c.f.header_end == 0 && c.in.size() > lim.max_header_bytes + 4) break;
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            } else if (n == 0) {  // closed its side: complete requests are still answered
                eof = true;
                break;
            } else {
                close_conn(c.fd.get());
                return;
            }
        }
        if (c.state != State::draining) advance(c);
        if (!eof || !conns.count(fd)) return;
        if (c.state == State::busy) {
            c.eof = true;  // closed when its worker is done
        } else {
            close_conn(c.fd.get());  // a partial request is dropped
        }
    }

    enum class Step { more, complete, refused };

    // Finds the end of the request at the front of c.in (Content-Length or chunked framing).
    Step frame(Conn& c, size_t& end) {
        Framing& f = c.f;
        const std::string& in = c.in;
        if (f.header_end == 0) {
            const size_t at = in.find("\n\r\n", f.scan);
            if (at == std::string::npos) {
                f.scan = in.size() >= 2 ? in.size() - 2 : 0;
                if (in.size() > lim.max_header_bytes) {
                    refuse(c, 431,
                           "The request line and headers are longer than " +
                               limit_text(lim.max_header_bytes) + ".");
                    return Step::refused;
                }
                return Step::more;
            }
            if (at + 3 > lim.max_header_bytes) {
                refuse(c, 431,
                       "The request line and headers are longer than " +
                           limit_text(lim.max_header_bytes) + ".");
                return Step::refused;
            }
            f.header_end = at + 3;
            if (!parse_headers(c)) return Step::refused;
            f.chunk_pos = f.header_end;
        }
        if (!f.chunked) {
            const uint64_t body = f.content_length < 0 ? 0 : (uint64_t)f.content_length;
            if (in.size() - f.header_end >= body) {
                end = f.header_end + body;
                return Step::complete;
            }
            send_continue(c);
            return Step::more;
        }
        // Chunked: size line (hex digits, optional extension, CRLF), data, CRLF; a zero size
        // ends the chunks, then trailer lines up to an empty one.
        if (in.size() - f.header_end > 2 * lim.max_body_bytes + (64 << 10)) {
            refuse(c, 413, body_too_large());
            return Step::refused;
        }
        for (;;) {
            const size_t nl = in.find('\n', f.chunk_pos);
            if (nl == std::string::npos) {
                if (in.size() - f.chunk_pos > 8192) {
                    refuse(c, 400, "Invalid chunked body: a chunk size line is too long.");
                    return Step::refused;
                }
                send_continue(c);
                return Step::more;
            }
            if (nl == f.chunk_pos || in[nl - 1] != '\r') {
                refuse(c, 400, "Invalid chunked body: lines must end with CRLF.");
                return Step::refused;
            }
            if (f.trailers) {
                if (nl == f.chunk_pos + 1) {
                    end = nl + 1;
                    return Step::complete;
                }
                f.chunk_pos = nl + 1;
                continue;
            }
            uint64_t size = 0;
            size_t digits = 0;
            for (size_t i = f.chunk_pos; i < nl && std::isxdigit((unsigned char)in[i]); i++) {
                const char ch = static_cast<char>(std::tolower((unsigned char)in[i]));
                size = size * 16 + (uint64_t)(ch <= '9' ? ch - '0' : ch - 'a' + 10);
                if (++digits > 15) break;
            }
            const char after = in[f.chunk_pos + digits];
            if (digits == 0 || digits > 15 || (after != '\r' && after != ';')) {
                refuse(c, 400, "Invalid chunked body: bad chunk size.");
                return Step::refused;
            }
            if (size == 0) {
                f.trailers = true;
                f.chunk_pos = nl + 1;
                continue;
            }
            f.decoded += size;
            if (f.decoded > lim.max_body_bytes) {
                refuse(c, 413, body_too_large());
                return Step::refused;
            }
            const size_t data_end = nl + 1 + size;
            if (in.size() < data_end + 2) {
                f.decoded -= size;  // counted again when the chunk is complete
                send_continue(c);
                return Step::more;
            }
            if (in.compare(data_end, 2, "\r\n") != 0) {
                refuse(c, 400, "Invalid chunked body: a chunk does not end with CRLF.");
                return Step::refused;
            }
            f.chunk_pos = data_end + 2;
        }
    }

    std::string body_too_large() {
        return "The request body is larger than the server's limit of " +
               limit_text(lim.max_body_bytes) + " (--max-body-mb).";
    }

    void send_continue(Conn& c) {
        if (!c.f.expect || c.f.sent_continue) return;
        c.f.sent_continue = true;
        send_now(c.fd.get(), "HTTP/1.1 100 Continue\r\n\r\n");
    }

    // The request line and the headers that frame the body. httplib parses them again (it
    // skips header lines that do not end with CRLF; so do we).
    bool parse_headers(Conn& c) {
        Framing& f = c.f;
        const std::string& in = c.in;
        size_t at = in.find('\n');
        const std::string line = in.substr(0, at);
        const size_t sp1 = line.find(' ');
        const size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
        const std::string method = line.substr(0, sp1);
        std::string target = sp1 == std::string::npos ? "" : line.substr(sp1 + 1, sp2 - sp1 - 1);
        const std::string version =
            sp2 == std::string::npos ? "" : trim_ows(line.substr(sp2 + 1, line.size() - sp2 - 2));
        bool keep_alive_10 = false;
        for (at = at + 1; at < f.header_end - 2;) {
            const size_t nl = in.find('\n', at);
            const size_t next = nl + 1;
            if (nl == at || in[nl - 1] != '\r') {
                at = next;
                continue;
            }
            const std::string h = in.substr(at, nl - 1 - at);
            const size_t colon = h.find(':');
            if (colon != std::string::npos) {
                const std::string key = lower(trim_ows(h.substr(0, colon)));
                const std::string value = trim_ows(h.substr(colon + 1));
                if (key == "content-length") {
                    if (value.empty() || value.size() > 18 ||
                        !std::all_of(value.begin(), value.end(), ::isdigit)) {
                        refuse(c, 400, "Invalid Content-Length header: '" + value + "'.");
                        return false;
                    }
                    const int64_t n = std::stoll(value);
                    if (f.content_length >= 0 && f.content_length != n) {
                        refuse(c, 400, "Conflicting Content-Length headers.");
                        return false;
                    }
                    f.content_length = n;
                } else if (key == "transfer-encoding") {
                    if (lower(value) != "chunked") {
                        refuse(
                            c, 501,
                            "Transfer-Encoding '" + value + "' is not supported (only 'chunked').");
                        return false;
                    }
                    f.chunked = true;
                } else if (key == "expect") {
                    f.strip.emplace_back(at, next);
                    if (lower(value) == "100-continue") f.expect = true;
                } else if (key == "connection") {
                    const std::string v = lower(value);
                    if (v == "close") f.close = true;
                    if (v == "keep-alive") keep_alive_10 = true;
                }
            }
            at = next;
        }
        if (version == "HTTP/1.0" && !keep_alive_10) f.close = true;
        if (f.chunked && f.content_length >= 0) {
            refuse(c, 400, "A request may not carry both Content-Length and Transfer-Encoding.");
            return false;
        }
        if (f.content_length >= 0 && (uint64_t)f.content_length > lim.max_body_bytes) {
            refuse(c, 413, body_too_large());
            return false;
        }
        const size_t q = target.find('?');
        if (method == "GET" && front.loop_answers_.count(target.substr(0, q)))
            f.loop_answer = target.substr(0, q);
        return true;
    }

    // Frames and dispatches every complete request at the front of c.in.
    void advance(Conn& c) {
        while (c.state == State::reading && !c.in.empty()) {
            size_t end = 0;
            const Step s = frame(c, end);
            if (s != Step::complete) return;
            c.requests++;
            const bool last =
                c.f.close || c.requests >= lim.max_requests_per_connection || stopping.load();
            if (!c.f.loop_answer.empty()) {
                const std::string& body = front.loop_answers_.at(c.f.loop_answer);
                const bool sent = send_now(c.fd.get(), response(200, body, last));
                take(c, end);
                if (!sent || last) {
                    close_conn(c.fd.get());
                    return;
                }
                continue;
            }
            Job job{c.fd.get(), take(c, end), c.ip, c.port, last};
            c.busy_bytes = job.bytes.size();
            buffered += c.busy_bytes;
            c.state = State::busy;
            watch(c.fd.get(), false);
            busy++;
            {
                std::lock_guard<std::mutex> lock(mu);
                jobs.push_back(std::move(job));
            }
            cv.notify_one();
            return;
        }
        if (c.state == State::reading && c.in.empty()) {
            c.state = State::idle;
            c.deadline = Clock::now() + seconds(lim.keepalive_timeout_s);
        }
    }

    // Removes the request [0, end) from c.in and returns it (without the stripped headers);
    // what follows (a pipelined request) stays.
    std::string take(Conn& c, size_t end) {
        std::string req;
        if (end == c.in.size() && c.f.strip.empty()) {
            req = std::move(c.in);
            c.in = std::string();
        } else {
            size_t from = 0;
            for (const auto& [b, e] : c.f.strip) {
                req.append(c.in, from, b - from);
                from = e;
            }
            req.append(c.in, from, end - from);
            c.in = c.in.substr(end);
        }
        buffered -= end;
        c.f = Framing{};
        if (!c.in.empty()) c.deadline = Clock::now() + seconds(lim.request_timeout_s);
        return req;
    }

    void worker() {
        for (;;) {
            Job job;
            {
                std::unique_lock<std::mutex> lock(mu);
                cv.wait(lock, [&] { return workers_quit || !jobs.empty(); });
                if (jobs.empty()) return;
                job = std::move(jobs.front());
                jobs.pop_front();
            }
            bool keep = false;
            try {
                BufferedStream strm(job.fd, job.bytes, job.ip, job.port, lim.write_timeout_s);
                bool closed = false;
                keep = front.process_request(strm, job.close, closed, nullptr) && !closed &&
                       !job.close;
            } catch (...) {
                keep = false;
            }
            const bool large = job.bytes.size() > (256u << 10);
            job.bytes = std::string();
            // A large body left large free blocks in this thread's malloc arena; give the
            // pages back, or each worker keeps its peak for the life of the server.
            if (large) ::malloc_trim(0);
            {
                std::lock_guard<std::mutex> lock(mu);
                outcomes.push_back({job.fd, keep});
            }
            wake();
        }
    }

    void on_outcomes() {
        std::vector<Outcome> done;
        {
            std::lock_guard<std::mutex> lock(mu);
            done.swap(outcomes);
        }
        for (const Outcome& o : done) {
            busy--;
            const auto it = conns.find(o.fd);
            if (it == conns.end()) continue;
            Conn& c = it->second;
            buffered -= c.busy_bytes;
            c.busy_bytes = 0;
            if (!o.keep || stopping || c.eof) {
                close_conn(c.fd.get());
                continue;
            }
            watch(c.fd.get(), true);
            c.state = State::reading;
            c.deadline = Clock::now() + seconds(lim.request_timeout_s);
            advance(c);  // a pipelined request may be complete already
        }
    }

    void expire() {
        const Clock::time_point now = Clock::now();
        std::vector<int> due;
        for (auto& [fd, c] : conns)
            if (c.state != State::busy && now >= c.deadline) due.push_back(fd);
        for (int fd : due) {
            Conn& c = conns.at(fd);
            if (c.state == State::reading) {
                refuse(c, 408,
                       "The request was not received in full within " +
                           std::to_string(static_cast<int>(std::ceil(lim.request_timeout_s))) +
                           " s (--request-timeout).");
            } else {
                close_conn(fd);
            }
        }
    }

    int next_timeout_ms() const {
        Clock::time_point next = Clock::now() + std::chrono::seconds(1);
        for (const auto& [fd, c] : conns)
            if (c.state != State::busy) next = std::min(next, c.deadline);
        if (accept_paused) next = std::min(next, accept_resume);
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count();
        return static_cast<int>(std::clamp<int64_t>(ms + 1, 0, 1000));
    }

    void run() {
        watch(listen_fd.get(), true);
        watch(wake_fd.get(), true);
        const int nworkers = std::max(lim.workers, 1);
        for (int i = 0; i < nworkers; i++) workers.emplace_back([this] { worker(); });
        bool draining = false;
        std::vector<epoll_event> events(256);
        for (;;) {
            if (stopping && !draining) {
                draining = true;
                watch(listen_fd.get(), false);
                listen_fd.reset();
                std::vector<int> idle;
                for (auto& [fd, c] : conns)
                    if (c.state != State::busy) idle.push_back(fd);
                for (int fd : idle) close_conn(fd);
            }
            if (draining && busy == 0) break;
            const int n =
                ::epoll_wait(epoll_fd.get(), events.data(), (int)events.size(), next_timeout_ms());
            for (int i = 0; i < n; i++) {
                const int fd = events[i].data.fd;
                if (fd == listen_fd.get()) {
                    if (!draining) accept_all();
                } else if (fd == wake_fd.get()) {
                    uint64_t v;
                    [[maybe_unused]] const ssize_t r = ::read(wake_fd.get(), &v, sizeof v);
                    on_outcomes();
                } else {
                    const auto it = conns.find(fd);
                    if (it != conns.end() && it->second.state != State::busy)
                        on_readable(it->second);
                }
            }
            if (accept_paused && Clock::now() >= accept_resume && listen_fd) {
                accept_paused = false;
                watch(listen_fd.get(), true);
            }
            expire();
        }
        {
            std::lock_guard<std::mutex> lock(mu);
            workers_quit = true;
        }
        cv.notify_all();
        for (std::thread& t : workers) t.join();
        std::vector<int> rest;
        for (auto& [fd, c] : conns) rest.push_back(fd);
        for (int fd : rest) close_conn(fd);
    }
};

HttpFront::HttpFront(HttpLimits limits, HttpErrorBody error_body)
    : limits_(limits), error_body_(std::move(error_body)) {
    loop_ = std::make_unique<Loop>(*this, limits_);
    // Request bodies and their parsed JSON are a server's largest transient allocations. With
    // glibc's dynamic thresholds, after a few large frees each malloc arena (one per busy
    // thread) serves up to 32 MiB blocks from its heap and keeps up to 64 MiB of freed top,
    // which malloc_trim does not return for a thread's arena: every worker kept its peak.
    // Fixed thresholds (process-wide): blocks over 4 MiB are mapped and unmapped with their
    // owner, and an arena's free top over 8 MiB goes back to the system.
    ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
    ::mallopt(M_TRIM_THRESHOLD, 8 << 20);
    // Bodies are framed and limited by the loop; httplib's own limit is a second line (a
    // gzip body is inflated by httplib: the handlers cap what they read).
    set_payload_max_length(limits_.max_body_bytes);
    // What httplib advertises in its Keep-Alive header.
    set_keep_alive_max_count(static_cast<size_t>(std::max(limits_.max_requests_per_connection, 1)));
    set_keep_alive_timeout(std::max<time_t>(1, static_cast<time_t>(limits_.keepalive_timeout_s)));
}

HttpFront::~HttpFront() = default;

void HttpFront::answer_on_loop(const std::string& path, std::string json_body) {
    loop_answers_[path] = std::move(json_body);
}

int HttpFront::bind_and_listen(const std::string& host, int port, std::string* why) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    if (const int rc =
            ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
        rc != 0) {
        if (why) *why = std::string("cannot resolve the host: ") + gai_strerror(rc);
        return -1;
    }
    UniqueFd fd;
    std::string last_error = "no address to bind";
    for (addrinfo* a = res; a && !fd; a = a->ai_next) {
        fd.reset(
            ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
        if (!fd) {
            last_error = std::string("socket: ") + std::strerror(errno);
            continue;
        }
        const int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0) {
            last_error = std::string("bind: ") + std::strerror(errno);
            fd.reset();
        } else if (::listen(fd.get(), 1024) != 0) {
            last_error = std::string("listen: ") + std::strerror(errno);
            fd.reset();
        }
    }
    ::freeaddrinfo(res);
    if (!fd) {
        if (why) *why = last_error;
        return -1;
    }
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    std::string ip;
    int bound = -1;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0) {
        address_of(a, ip, bound);
    }
    // httplib ends a streaming response before it starts when its own listening socket is
    // invalid (its "shutting down" test): it never listens here, so it is given ours, and keeps
    // it while the loop drains, so that in-flight streams finish. (The loop owns the socket.)
    svr_sock_ = fd.get();
    loop_->listen_fd = std::move(fd);
    return bound;
}

void HttpFront::serve() {
    if (!loop_->listen_fd) return;
    loop_->run();
}

void HttpFront::shutdown() {
    loop_->stopping = true;
    loop_->wake();
}

HttpFront::Counters HttpFront::counters() const {
    std::lock_guard<std::mutex> lock(loop_->counters_mu);
    return loop_->counters;
}

}  // namespace crucible

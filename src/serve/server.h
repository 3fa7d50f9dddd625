// `crucible serve`: an OpenAI-compatible HTTP server over the batched engine.
//
// One engine thread owns the model and loops Engine::step(). An event loop (serve/http_front.h)
// receives every request within a deadline and size limits; worker threads then parse and
// validate it (serve/request_parse.h), tokenize it, queue it for the engine thread and wait on
// a per-request channel that the engine's callbacks fill, writing the answer or the stream's
// chunks as they come (serve/response_write.h). Requests join the running batch at the next
// step (continuous batching) and leave it when they finish or their client goes away.
// Endpoints, fields and errors: docs/SERVING.md.
//
// The header names no engine or tokenizer type: a caller (a test, the CLI) needs only the
// options and the port.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace crucible {

class Model;
struct TextTokenizer;
class RlSessionHub;

struct ServerOptions {
    std::filesystem::path model_dir;  // config.json + model.safetensors (+ tokenizer files)
    std::string dtype = "float32";    // the loaded model's matmuls: float32, bfloat16 or q8_0
    std::string host = "127.0.0.1";
    int port = 8000;                // 0: an ephemeral port, see Server::port()
    std::string served_model_name;  // the id clients send as "model"; empty: the folder's name
    int max_queue = 256;            // requests waiting to join the batch; past it, 429
    int max_batch_seqs = 256;       // sequences decoding at once
    int max_batch_tokens = 512;     // rows per forward pass (decode tokens + prefill chunks)
    int http_threads = 64;          // requests processed at once (a stream holds one)
    // What a client may cost before its request is processed (docs/SERVING.md, threat model).
    size_t max_body_bytes = 8u << 20;      // request body; past it, 413
    double request_timeout_s = 30;         // first byte of a request to its last; past it, 408
    double keepalive_timeout_s = 5;        // an idle keep-alive connection is closed after it
    int max_connections = 1024;            // open connections; past it, 503 and closed
    int max_connections_per_client = 128;  // open connections from one address; past it, 429
    // A streaming response with nothing to send for this long writes an SSE comment line:
    // a write is how a vanished client is noticed when no tokens are flowing.
    double heartbeat_s = 1.0;
    // Called by the engine thread after every step with the step count (tests pause the
    // engine here to make queueing and disconnects deterministic).
    std::function<void(int64_t step)> after_step;
    // Called once per completions request when its answer is complete (or refused) with one
    // log line: id, endpoint, status, token counts, latency (docs/SERVING.md, "Logs and
    // metrics"). Empty: no log. May be called from several threads at once.
    std::function<void(const std::string& line)> request_log;
    // In-process use (`crucible train rl --env server`): serve this model and tokenizer, which
    // outlive the server, instead of loading model_dir; `stop_ids` end generation. The model's
    // weights may change only while the server is paused (Server::pause).
    Model* model = nullptr;
    const TextTokenizer* tokenizer = nullptr;
    std::vector<int32_t> stop_ids;
    // The RL endpoints (/v1/rl/*) and the recording of sessions' completions
    // (serve/rl_sessions.h); answers then carry their policy version. Null: neither.
    std::shared_ptr<RlSessionHub> rl_sessions;
};

// A snapshot of the engine thread's state.
struct ServerStats {
    int64_t steps = 0;              // forward passes
    int max_step_sequences = 0;     // most sequences that shared one forward pass
    int step_threads = 0;           // OpenMP team of the last forward pass (engine/team_size.h)
    int running = 0;                // sequences in the batch (prompts being prefilled included)
    int waiting = 0;                // requests queued, not yet in the batch
    int kv_blocks = 0;              // KV cache pool size
    int free_kv_blocks = 0;         // ... and what is free
    int64_t requests = 0;           // generation requests accepted
    int64_t cancelled = 0;          // requests whose client went away before they finished
    int64_t completion_tokens = 0;  // tokens generated (all samples)
    int64_t prompt_tokens = 0;      // prompt tokens of the requests accepted
    int64_t requests_answered = 0;  // requests whose whole answer or stream was written
    double request_seconds = 0;     // their latency, summed (from parsed to answered)
    int64_t requests_rejected = 0;  // completions requests answered with an error (4xx/5xx)
    // The HTTP front.
    int connections = 0;              // open now
    int64_t connections_refused = 0;  // over max_connections or max_connections_per_client
    int64_t requests_timed_out = 0;   // not received within request_timeout_s (408)
    int64_t requests_too_large = 0;   // body or headers over the limits (413, 431)
};

class Server {
  public:
    // Loads the model folder, binds host:port and starts the engine thread. Throws Error naming
    // the folder or the address.
    explicit Server(ServerOptions options);
    ~Server();  // stops as stop() does and waits for the threads
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    int port() const;                       // the bound port
    const std::string& model_name() const;  // the served model id
    // Serves until stop(); then stops accepting, lets every in-flight request finish (streams
    // included) and returns.
    void run();
    // Makes run() drain and return. Thread-safe; may be called before run().
    void stop();
    ServerStats stats() const;
    // Stops starting requests (they wait in the queue) and returns once every request already
    // running has finished, on the weights it started with: the engine is idle and the model
    // may change. Requests keep arriving and queueing meanwhile. Thread-safe.
    void pause();
    // Starts the queued requests again; what runs from now on is tagged `policy_version`.
    void resume(int64_t policy_version);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace crucible

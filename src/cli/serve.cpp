// `crucible serve`: the OpenAI-compatible HTTP server (src/serve/server.h, docs/SERVING.md).
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <thread>

#include "cli/commands.h"
#include "run/run_folder.h"
#include "serve/server.h"

namespace crucible::cli {

std::function<int()> add_serve(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
    auto o = std::make_shared<ServerOptions>();
    cmd->add_option("--model", o->model_dir, "model folder (config.json + model.safetensors)")
        ->required()
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--dtype", o->dtype, "the matmuls' precision: float32, bfloat16 or q8_0")
        ->check(CLI::IsMember({"float32", "bfloat16", "q8_0"}))
        ->capture_default_str();
    cmd->add_option("--host", o->host, "address to listen on")->capture_default_str();
    cmd->add_option("--port", o->port, "port (0: any free port, printed at start)")
        ->capture_default_str();
    cmd->add_option("--served-model-name", o->served_model_name,
                    "the model id clients send (default: the folder's name)");
    cmd->add_option("--max-queue", o->max_queue, "requests waiting for the batch before 429")
        ->capture_default_str();
    cmd->add_option("--max-batch-seqs", o->max_batch_seqs, "sequences decoding at once")
        ->capture_default_str();
    cmd->add_option("--max-batch-tokens", o->max_batch_tokens, "rows per forward pass")
        ->capture_default_str();
    cmd->add_option("--http-threads", o->http_threads,
                    "requests processed at once (a stream holds one for its length)")
        ->capture_default_str();
    auto body_mb = std::make_shared<double>(8);
    cmd->add_option("--max-body-mb", *body_mb, "request body limit in MiB; past it, 413")
        ->capture_default_str()
        ->check(CLI::Range(1.0 / 1024, 4096.0));
    cmd->add_option("--request-timeout", o->request_timeout_s,
                    "seconds from a request's first byte to its last (headers and body); "
                    "past it, 408")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--keepalive-timeout", o->keepalive_timeout_s,
                    "seconds an idle connection may wait for its next request")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--max-connections", o->max_connections, "open connections, all clients")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--max-connections-per-client", o->max_connections_per_client,
                    "open connections from one client address; past it, 429")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    auto quiet = std::make_shared<bool>(false);
    cmd->add_flag("--no-request-log", *quiet,
                  "do not log one line per request on stderr (id, status, tokens, latency)");
    return [o, body_mb, quiet]() {
        if (!*quiet) {
            o->request_log = [](const std::string& line) {
                // One write per line: lines from concurrent requests do not interleave.
                const std::string out = "crucible serve: " + line + "\n";
                std::fwrite(out.data(), 1, out.size(), stderr);
            };
        }
        o->model_dir = resolve_model_dir(o->model_dir).string();  // a run: its latest checkpoint
        o->max_body_bytes = static_cast<size_t>(*body_mb * (1 << 20));
        // SIGTERM/SIGINT are taken by one thread (sigwait), never by a handler: every thread
        // created from here on inherits the blocked mask.
        sigset_t signals;
        sigemptyset(&signals);
        sigaddset(&signals, SIGTERM);
        sigaddset(&signals, SIGINT);
        pthread_sigmask(SIG_BLOCK, &signals, nullptr);
        Server server(*o);
        std::fprintf(stderr, "crucible serve: model '%s' on http://%s:%d/v1\n",
                     server.model_name().c_str(), o->host.c_str(), server.port());
        std::fflush(stderr);
        std::atomic<bool> finished{false};
        std::thread waiter([&] {
            const timespec tick{0, 100 * 1000 * 1000};
            while (!finished) {
                const int sig = sigtimedwait(&signals, nullptr, &tick);
                if (sig == SIGTERM || sig == SIGINT) {
                    std::fprintf(stderr, "crucible serve: %s, draining in-flight requests\n",
                                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
                    std::fflush(stderr);
                    server.stop();
                    return;
                }
            }
        });
        server.run();
        finished = true;
        waiter.join();
        std::fprintf(stderr, "crucible serve: stopped\n");
        return 0;
    };
}

}  // namespace crucible::cli

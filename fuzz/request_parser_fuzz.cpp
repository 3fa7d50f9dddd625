// libFuzzer target for the server's request parser (parse_request, src/serve/request_parse.h)
// and what a valid request goes on to: generation and the answer written for it. It drives a
// Server with a tiny random model on an ephemeral 127.0.0.1 port, one POST per input.
// The first byte picks /v1/completions or /v1/chat/completions; the rest is the body. A bad
// request must get a 4xx answer (the server's clean failure, ApiError or Error); a 5xx answer
// (an unexpected exception, or a failed generation), no answer, or a sanitizer report is a bug.
#include <httplib.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "model/checkpoint.h"
#include "model/model.h"
#include "serve/server.h"
#include "tokenizer/byte_tokenizer.h"

namespace {

constexpr int kContext = 96;  // a valid request generates at most this many tokens

struct Fixture {
    std::unique_ptr<crucible::Server> server;
    std::unique_ptr<httplib::Client> client;
};

// The server and a keep-alive client, started once and never stopped (the process exits).
Fixture& fixture() {
    static Fixture* f = [] {
        char tmpl[] = "/dev/shm/crucible-fuzz-XXXXXX";
        char tmpl2[] = "/tmp/crucible-fuzz-XXXXXX";
        const char* made = mkdtemp(tmpl);
        if (!made) made = mkdtemp(tmpl2);
        if (!made) std::abort();
        const std::filesystem::path dir = made;
        // tests/model_util.h's write_byte_model: 2 layers, 32 wide, the byte tokenizer's ids.
        crucible::ModelConfig c;
        c.vocab_size = 264;
        c.hidden_size = 32;
        c.intermediate_size = 48;
        c.num_hidden_layers = 2;
        c.num_attention_heads = 4;
        c.num_key_value_heads = 2;
        c.head_dim = 8;
        c.max_position_embeddings = kContext;
        c.tie_word_embeddings = true;
        crucible::Model model(c);
        model.init_random(3, 0.2f);
        crucible::save_model(model, dir);
        crucible::ByteTokenizer::save_hf_files(dir, kContext);
        auto* fx = new Fixture;
        crucible::ServerOptions o;
        o.model_dir = dir;
        o.port = 0;
        o.served_model_name = "tiny";
        o.http_threads = 4;
        fx->server = std::make_unique<crucible::Server>(o);
        std::filesystem::remove_all(dir);  // everything is loaded
        crucible::Server* s = fx->server.get();
        std::thread([s] { s->run(); }).detach();
        fx->client = std::make_unique<httplib::Client>("127.0.0.1", s->port());
        fx->client->set_keep_alive(true);
        fx->client->set_tcp_nodelay(true);  // else each small request waits on a delayed ACK
        fx->client->set_read_timeout(60, 0);
        return fx;
    }();
    return *f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    Fixture& f = fixture();
    const bool chat = data[0] & 1;
    const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
    const char* path = chat ? "/v1/chat/completions" : "/v1/completions";
    httplib::Result res = f.client->Post(path, body, "application/json");
    if (!res) {
        std::fprintf(stderr, "request_parser_fuzz: POST %s got no answer: %s\n", path,
                     httplib::to_string(res.error()).c_str());
        std::abort();
    }
    static const bool verbose = std::getenv("CRUCIBLE_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "%s %d %.300s\n", path, res->status, res->body.c_str());
    if (res->status >= 500 || (res->status != 200 && (res->status < 400))) {
        std::fprintf(stderr, "request_parser_fuzz: POST %s answered %d: %s\n", path, res->status,
                     res->body.c_str());
        std::abort();
    }
    return 0;
}

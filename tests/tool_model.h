// A tiny byte-level model trained to answer a few chat prompts with given completions, so the
// server's tool calling can be tested end to end on real generations (a random model never
// writes a well-formed <tool_call>). The trained folder is cached under the build tree, keyed
// by what it was trained on: the first test that needs it trains it (about half a minute on
// one core), the others load it.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "engine/reference_generate.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model_util.h"
#include "run/optimizer.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible::testutil {

struct Memorized {
    std::string prompt;      // the whole prompt text (chat template applied)
    std::string completion;  // what the model must answer, greedily; <|im_end|> follows
};

// Trains (or loads from `cache_root`) a byte model of `context` positions that greedily
// answers every prompt of `items` with its completion and then <|im_end|>. Returns the
// folder. Fails the calling test (returns "") if training does not reach that.
inline std::filesystem::path memorizing_model(const std::filesystem::path& cache_root,
                                              const std::vector<Memorized>& items, int context) {
    namespace fs = std::filesystem;
    std::string key = std::to_string(context);
    for (const Memorized& m : items) key += "\x1f" + m.prompt + "\x1e" + m.completion;
    const std::string name = "memorized-" + std::to_string(std::hash<std::string>{}(key));
    const fs::path dir = cache_root / name;
    // One process trains; the others (ctest runs each test as its own process) wait for it.
    fs::create_directories(cache_root);
    const int lock = ::open((cache_root / (name + ".lock")).c_str(), O_CREAT | O_RDWR, 0644);
    if (lock >= 0) ::flock(lock, LOCK_EX);
    struct Unlock {
        int fd;
        ~Unlock() {
            if (fd >= 0) ::close(fd);  // releases the lock
        }
    } unlock{lock};
    if (fs::exists(dir / "model.safetensors")) return dir;

    ModelConfig c = tiny_model_config(264, context);
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.head_dim = 16;
    c.tie_word_embeddings = true;
    Model model(c);
    model.init_random(7, 0.02f);
    ByteTokenizer tok;
    PackedBatch batch;
    std::vector<std::vector<int32_t>> prompts, answers;
    for (const Memorized& m : items) {
        std::vector<int32_t> ids = tok.encode(m.prompt);
        const size_t prompt_len = ids.size();
        std::vector<int32_t> answer = tok.encode(m.completion);
        answer.push_back(ByteTokenizer::kImEnd);
        ids.insert(ids.end(), answer.begin(), answer.end());
        std::vector<int32_t> in(ids.begin(), ids.end() - 1), next(ids.begin() + 1, ids.end());
        std::vector<float> w(in.size(), 0.0f);
        for (size_t i = prompt_len - 1; i < in.size(); i++) w[i] = 1.0f;
        batch.add_sequence(in, next, w);
        prompts.push_back(tok.encode(m.prompt));
        answers.push_back(answer);
    }
    std::vector<float> mom(model.num_params(), 0.0f), vel(model.num_params(), 0.0f);
    const kernels::AdamWParams hp{3e-3f, 0.9f, 0.98f, 1e-8f, 0.0f};
    size_t longest = 0;
    double targets = 0;
    for (const auto& a : answers) {
        longest = std::max(longest, a.size());
        targets += (double)a.size();
    }
    auto memorized = [&] {
        return greedy_generate_reference(model, prompts, (int)longest, ByteTokenizer::kImEnd) ==
               answers;
    };
    bool ok = false;
    for (int step = 1; step <= 1500 && !ok; step++) {
        model.zero_grads();
        const double loss = model.forward(batch);
        model.backward();
        adamw_step(model, mom, vel, hp, step);
        if (step % 50 == 0 && loss / targets < 0.02) ok = memorized();
    }
    if (!ok) {
        ADD_FAILURE() << "the tool-calling test model did not memorize its answers";
        return {};
    }
    const fs::path tmp = cache_root / ("tmp-" + std::to_string(getpid()));
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    save_model(model, tmp);
    ByteTokenizer::save_hf_files(tmp, context);
    std::error_code ec;
    fs::rename(tmp, dir, ec);  // a concurrent test may have published it first: keep that one
    if (ec) fs::remove_all(tmp);
    return dir;
}

}  // namespace crucible::testutil
